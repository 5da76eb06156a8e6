"""`replog produce` / `replog consume` as a person runs them: subprocesses and pipes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from client_support import new_topic, run

from impl.broker.process import BrokerProcess
from impl.runtime.runtime import Runtime

ROOT = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_S = 30


def _replog(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "replog_cli", *args],
        input=stdin,
        capture_output=True,
        cwd=ROOT,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def _topic(broker: BrokerProcess, partitions: int) -> str:
    async def main(runtime: Runtime) -> str:
        return await new_topic(runtime, broker.bootstrap, partitions)

    return run(main)


def test_lines_round_trip_with_keys(broker: BrokerProcess) -> None:
    topic = _topic(broker, 3)
    lines = [f"key-{i % 5}:value {i}" for i in range(200)]
    produced = _replog(
        "produce",
        "--bootstrap",
        broker.bootstrap,
        "--topic",
        topic,
        "--key-separator",
        ":",
        "--config",
        "compression.type=lz4",
        stdin="\n".join(lines).encode() + b"\n",
    )
    assert produced.returncode == 0, produced.stderr.decode()
    consumed = _replog(
        "consume",
        "--bootstrap",
        broker.bootstrap,
        "--topic",
        topic,
        "--from-beginning",
        "--max-messages",
        "200",
        "--print-key",
    )
    assert consumed.returncode == 0, consumed.stderr.decode()
    printed = consumed.stdout.decode().splitlines()
    assert sorted(printed) == sorted(line.replace(":", "\t", 1) for line in lines)
    for key in {line.split(":")[0] for line in lines}:
        in_order = [line for line in printed if line.startswith(key + "\t")]
        assert in_order == [line.replace(":", "\t", 1) for line in lines if line.startswith(key)]
    assert b"Processed a total of 200 messages" in consumed.stderr


def test_consume_stops_after_the_idle_timeout(broker: BrokerProcess) -> None:
    topic = _topic(broker, 1)
    assert (
        _replog(
            "produce", "--bootstrap", broker.bootstrap, "--topic", topic, stdin=b"a\r\nb"
        ).returncode
        == 0
    )
    consumed = _replog(
        "consume",
        "--bootstrap",
        broker.bootstrap,
        "--topic",
        topic,
        "--from-beginning",
        "--timeout-ms",
        "500",
    )
    assert (consumed.returncode, consumed.stdout) == (0, b"a\nb\n")


def test_failures_give_exit_codes_and_one_line_reasons(broker: BrokerProcess) -> None:
    topic = _topic(broker, 1)
    missing = _replog("produce", "--bootstrap", broker.bootstrap, "--topic", "absent", stdin=b"x\n")
    assert missing.returncode == 2 and b"UNKNOWN_TOPIC_OR_PARTITION" in missing.stderr
    unkeyed = _replog(
        "produce",
        "--bootstrap",
        broker.bootstrap,
        "--topic",
        topic,
        "--key-separator",
        ":",
        stdin=b"k:v\nno separator\n",
    )
    assert unkeyed.returncode == 1 and b"line 2: no key separator" in unkeyed.stderr
    bad_config = _replog("consume", "--topic", topic, "--config", "acks=7")
    assert bad_config.returncode == 2 and b"bad value '7' for acks" in bad_config.stderr
    unreadable = _replog(
        "consume", "--bootstrap", broker.bootstrap, "--topic", "absent", "--timeout-ms", "100"
    )
    assert unreadable.returncode == 2 and b"UNKNOWN_TOPIC_OR_PARTITION" in unreadable.stderr
