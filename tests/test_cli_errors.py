"""Every `replog` subcommand, given bad arguments, as a person runs it: one clear line on
stderr and the documented exit code (docs/exit-codes.md), never a Python traceback.

Each case is a real subprocess (bounded by CASE_TIMEOUT_S); they run in parallel once per
module, and each case is then its own test. Network cases use 127.0.0.1 only: a port
nothing listens on, and one live broker for unknown topics and groups.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from impl.broker.process import BrokerProcess, start_broker
from impl.client.admin import create_topics, wait_for_leaders
from impl.runtime.fs import RealFileSystem
from impl.runtime.runtime import real_runtime
from impl.storage.batch import Record
from impl.storage.log import PartitionLog
from model.config import Config

ROOT = Path(__file__).resolve().parents[1]
CASE_TIMEOUT_S = 30
PARALLEL_CASES = 4
# An error is one line; produce/consume add their "Processed a total of N" line.
ERROR_LINES_MAX = 2
SEGMENT_BATCHES = 1000
HISTORY_WRITES = 3000
SIGNAL_WAIT_S = 15
POLL_S = 0.05

USAGE, HARNESS, LAG_UNKNOWN = 2, 2, 3


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]
    exit_code: int
    says: str = ""
    stdin: bytes = b""


def _case(name: str, argv: str, exit_code: int = USAGE, says: str = "", stdin: bytes = b"") -> Case:
    return Case(name, tuple(argv.split()), exit_code, says, stdin)


# Placeholders filled in per run: {FILE} an ordinary file, {DIR} an empty directory,
# {MISSING} a path that does not exist, {GARBAGE} a text file, {HISTORY} a valid history,
# {PORT} a loopback port nothing listens on, {LIVE} a live broker's bootstrap.
CASES = [
    _case("replog-unknown-command", "nosuch", says="unknown command 'nosuch'"),
    _case("bench-unknown-command", "bench nosuch", says="unknown command 'nosuch'"),
    _case("check-unknown-flag", "check --nosuch"),
    _case("check-negative-bound", "check --brokers -1"),
    _case("check-bad-number", "check --max-writes x"),
    _case("check-negative-time", "check --time-limit -1"),
    _case(
        "check-bad-config-value",
        "check --config retention.ms=abc",
        says="retention.ms: expected an integer number of milliseconds (-1 for no limit)",
    ),
    _case(
        "check-unknown-config-key",
        "check --config retention.msx=1",
        says="did you mean 'retention.ms'?",
    ),
    _case("check-out-is-a-file", "check --config acks=1 --scope elect --out {FILE}"),
    _case("matrix-unknown-flag", "matrix --nosuch"),
    _case("matrix-zero-jobs", "matrix --jobs 0"),
    _case("matrix-negative-depth", "matrix --depth -1"),
    _case("broker-unknown-flag", "broker --nosuch"),
    _case("broker-data-dir-is-a-file", "broker --id 0 --data-dir {FILE} --listen 127.0.0.1:0"),
    _case("broker-negative-id", "broker --id -1 --data-dir {DIR}/b --listen 127.0.0.1:0"),
    _case("broker-bad-port", "broker --id 0 --data-dir {DIR}/b --listen 127.0.0.1:99999"),
    _case(
        "broker-bad-config",
        "broker --id 0 --data-dir {DIR}/b --listen 127.0.0.1:0 --config retention.ms=abc",
        says="retention.ms",
    ),
    _case("cluster-unknown-flag", "cluster --nosuch"),
    _case("cluster-zero-brokers", "cluster --brokers 0 --data-dir {DIR}/c"),
    _case("cluster-data-dir-is-a-file", "cluster --brokers 1 --data-dir {FILE}"),
    _case("cluster-bad-config", "cluster --data-dir {DIR}/c --config acks=7", says="acks"),
    _case("dump-log-unknown-flag", "dump-log --nosuch {FILE}"),
    _case("dump-log-missing-file", "dump-log {MISSING}", says="No such file"),
    _case("dump-log-directory", "dump-log {DIR}", says="directory"),
    _case("dump-log-not-a-segment", "dump-log {GARBAGE}", says="not a Kafka segment"),
    _case("produce-unknown-flag", "produce --nosuch --topic t"),
    _case("produce-bad-bootstrap", "produce --bootstrap nohost --topic t", says="HOST:PORT"),
    _case(
        "produce-port-out-of-range",
        "produce --bootstrap 127.0.0.1:99999 --topic t",
        says="a port from 1 to 65535",
    ),
    _case(
        "produce-unreachable",
        "produce --bootstrap 127.0.0.1:{PORT} --topic t",
        says="cannot reach 127.0.0.1:{PORT}: connection refused",
        stdin=b"a\n",
    ),
    _case(
        "produce-unknown-topic",
        "produce --bootstrap {LIVE} --topic absent",
        says="UNKNOWN_TOPIC_OR_PARTITION",
        stdin=b"a\n",
    ),
    _case("produce-bad-config", "produce --topic t --config acks=7", says="acks"),
    _case("consume-unknown-flag", "consume --nosuch --topic t"),
    _case("consume-negative-count", "consume --topic t --max-messages -1"),
    _case("consume-negative-timeout", "consume --topic t --timeout-ms -5"),
    _case(
        "consume-unreachable",
        "consume --bootstrap 127.0.0.1:{PORT} --topic t",
        says="cannot reach 127.0.0.1:{PORT}: connection refused",
    ),
    _case(
        "consume-unknown-topic",
        "consume --bootstrap {LIVE} --topic absent --timeout-ms 100",
        says="UNKNOWN_TOPIC_OR_PARTITION",
    ),
    _case("campaign-unknown-flag", "campaign --nosuch"),
    _case("campaign-negative-time", "campaign --time-limit -1 --out {DIR}/r"),
    _case("campaign-zero-rate", "campaign --rate 0 --out {DIR}/r"),
    _case("campaign-zero-brokers", "campaign --brokers 0 --out {DIR}/r"),
    _case("campaign-out-is-a-file", "campaign --time-limit 1 --out {FILE}"),
    _case("campaign-bad-config", "campaign --config retention.ms=abc --out {DIR}/r"),
    _case("report-missing-dir", "report {MISSING}", says="no such directory (a run directory"),
    _case("report-file", "report {FILE}", says="not a campaign run"),
    _case("report-not-a-run", "report {DIR}", says="not a campaign run"),
    _case("analyze-unknown-flag", "analyze --nosuch {HISTORY}"),
    _case("analyze-missing-file", "analyze {MISSING}"),
    _case("analyze-directory", "analyze {DIR}"),
    _case("analyze-not-a-history", "analyze {GARBAGE}"),
    _case("analyze-negative-time", "analyze --model register --time-limit -1 {HISTORY}"),
    _case(
        "analyze-export-nowhere", "analyze --model register --export-edn {MISSING}/x.edn {HISTORY}"
    ),
    _case("lag-unknown-flag", "lag --nosuch", LAG_UNKNOWN),
    _case("lag-bad-bootstrap", "lag --bootstrap nohost", LAG_UNKNOWN, says="HOST:PORT"),
    _case("lag-port-zero", "lag --bootstrap 127.0.0.1:0", LAG_UNKNOWN, says="1 to 65535"),
    _case(
        "lag-unreachable",
        "lag --bootstrap 127.0.0.1:{PORT}",
        LAG_UNKNOWN,
        says="UNKNOWN: cannot reach 127.0.0.1:{PORT}: connection refused",
    ),
    _case("lag-zero-timeout", "lag --bootstrap {LIVE} --timeout-ms 0", LAG_UNKNOWN),
    _case(
        "lag-bad-config",
        "lag --bootstrap {LIVE} --config retention.msx=1",
        LAG_UNKNOWN,
        says="did you mean",
    ),
    _case(
        "lag-unknown-group",
        "lag --bootstrap {LIVE} --group nosuch",
        LAG_UNKNOWN,
        says="group nosuch: no committed offsets",
    ),
    _case("bench-model-unknown-flag", "bench model --nosuch"),
    _case("bench-model-zero-walks", "bench model --walks 0"),
    _case("bench-model-negative-steps", "bench model --steps -1"),
    _case("bench-check-unknown-flag", "bench check --nosuch"),
    _case("bench-check-bad-scope", "bench check --scope nosuch"),
    _case("bench-storage-unknown-flag", "bench storage --nosuch"),
    _case("bench-storage-missing-dir", "bench storage --dir {MISSING}", says="{MISSING}"),
    _case("bench-storage-dir-is-a-file", "bench storage --dir {FILE}", says="{FILE}"),
    _case("bench-storage-zero-size", "bench storage --size-mib 0"),
    _case("bench-protocol-unknown-flag", "bench protocol --nosuch"),
    _case("bench-protocol-zero-size", "bench protocol --records-mib 0"),
    _case("bench-protocol-negative-repeat", "bench protocol --repeat -1"),
    _case("bench-broker-unknown-flag", "bench broker --nosuch"),
    _case("bench-broker-negative-records", "bench broker --small-records -1"),
    _case("bench-broker-zero-partitions", "bench broker --partitions 0"),
    _case("bench-cluster-unknown-flag", "bench cluster --nosuch"),
    _case("bench-cluster-zero-records", "bench cluster --records 0"),
    _case("bench-cluster-negative-kills", "bench cluster --kills -1"),
    _case("bench-sim-unknown-flag", "bench sim --nosuch"),
    _case("bench-sim-negative-seconds", "bench sim --seconds -1"),
    _case("bench-sim-zero-producers", "bench sim --producers 0"),
    _case("bench-sim-profile-nowhere", "bench sim --profile {MISSING}/x.prof"),
    _case("bench-checker-unknown-flag", "bench checker --nosuch"),
    _case("bench-checker-missing-corpus", "bench checker --corpus {MISSING}"),
    _case("bench-checker-zero-reps", "bench checker --reps 0"),
]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    env.pop("REPLOG_TRACEBACK", None)
    return env


def _replog(*argv: str) -> list[str]:
    return [sys.executable, "-m", "replog_cli", *argv]


def _spawn(*argv: str, stdin: int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    """`replog ARGV` with piped output, in its own process group, so a signal or a kill
    reaches whatever it started too, as a terminal's Ctrl-C does."""
    return subprocess.Popen(
        _replog(*argv),
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
        cwd=ROOT,
        start_new_session=True,
    )


def _free_port() -> int:
    """A loopback port nothing listens on (bound and released at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _write_segment(directory: Path) -> Path:
    """A real segment, made by the storage API, large enough to fill a pipe."""
    fs = RealFileSystem()
    log = PartitionLog.open(fs, str(directory), Config())
    for i in range(SEGMENT_BATCHES):
        log.append_as_leader([Record(b"value %d" % i, key=b"k", timestamp_ms=i)], leader_epoch=0)
    log.close()
    fs.close()
    return next(directory.glob("*.log"))


def _write_history(path: Path) -> Path:
    """A register written once a second: analyze judges it valid, and its per-second
    throughput fills a pipe."""
    with path.open("w") as out:
        for i in range(HISTORY_WRITES):
            for kind in ("invoke", "ok"):
                op = {"index": 2 * i + (kind == "ok"), "time": (2 * i + (kind == "ok")) * 10**9}
                op |= {"process": i % 4, "type": kind, "f": "write", "value": i}
                out.write(json.dumps(op) + "\n")
    return path


@dataclass(frozen=True)
class Places:
    values: dict[str, str]

    def fill(self, text: str) -> str:
        for name, value in self.values.items():
            text = text.replace("{" + name + "}", value)
        return text


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    data_dir = tmp_path_factory.mktemp("broker") / "data"
    process = start_broker(0, data_dir, config=["min.insync.replicas=1"])
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory, broker: BrokerProcess) -> Places:
    root = tmp_path_factory.mktemp("places")
    (root / "file").write_text("an ordinary file\n")
    (root / "dir").mkdir()
    (root / "garbage.log").write_text("this is not a segment, " * 20)
    return Places(
        {
            "FILE": str(root / "file"),
            "DIR": str(root / "dir"),
            "MISSING": str(root / "missing"),
            "GARBAGE": str(root / "garbage.log"),
            "HISTORY": str(_write_history(root / "history.jsonl")),
            "PORT": str(_free_port()),
            "LIVE": broker.bootstrap,
        }
    )


def _run(case: Case, places: Places) -> subprocess.CompletedProcess[bytes]:
    """Run one case in its own process group: past CASE_TIMEOUT_S the whole group is
    killed, brokers a command may have started included."""
    argv = [places.fill(arg) for arg in case.argv]
    with _spawn(*argv, stdin=subprocess.PIPE) as process:
        try:
            stdout, stderr = process.communicate(case.stdin, timeout=CASE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, _ = process.communicate()
            stderr = f"timed out after {CASE_TIMEOUT_S} s".encode()
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def outcomes(places: Places) -> dict[str, subprocess.CompletedProcess[bytes]]:
    with ThreadPoolExecutor(PARALLEL_CASES) as pool:
        done = pool.map(lambda case: (case.name, _run(case, places)), CASES)
        return dict(done)


def _error_lines(stderr: str) -> list[str]:
    """stderr's non-empty lines without usage text (argparse's, or replog's command list)."""
    kept = []
    in_usage = False
    for line in stderr.splitlines():
        if line.startswith("usage:"):
            in_usage = True
        elif in_usage and (line.startswith(" ") or line == "commands:"):
            continue
        elif line.strip():
            in_usage = False
            kept.append(line)
    return kept


def _assert_clean(stdout: bytes, stderr: bytes | str) -> str:
    err = stderr if isinstance(stderr, str) else stderr.decode(errors="replace")
    assert "Traceback" not in err, err
    assert b"Traceback" not in stdout, stdout[-2000:]
    return err


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_arguments_give_one_clear_line(
    case: Case, places: Places, outcomes: dict[str, subprocess.CompletedProcess[bytes]]
) -> None:
    outcome = outcomes[case.name]
    err = _assert_clean(outcome.stdout, outcome.stderr)
    lines = _error_lines(err)
    assert outcome.returncode == case.exit_code, err
    assert 1 <= len(lines) <= ERROR_LINES_MAX, err
    assert places.fill(case.says) in err


def test_lag_json_says_unknown_and_why(places: Places) -> None:
    port = places.values["PORT"]
    case = _case("lag-json", f"lag --json --bootstrap 127.0.0.1:{port}", LAG_UNKNOWN)
    outcome = _run(case, places)
    reason = f"cannot reach 127.0.0.1:{port}: connection refused"
    assert outcome.returncode == LAG_UNKNOWN
    assert outcome.stderr.decode() == f"replog lag: UNKNOWN: {reason}\n"
    document = json.loads(outcome.stdout)
    assert (document["status"], document["exit_code"], document["reason"]) == (
        "UNKNOWN",
        LAG_UNKNOWN,
        reason,
    )


def test_dump_log_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    segment = _write_segment(tmp_path / "t-0")
    with _spawn("dump-log", str(segment)) as dump:
        assert dump.stdout is not None and dump.stderr is not None
        first = dump.stdout.readline()
        dump.stdout.close()  # `| head -n 1`
        stderr = dump.stderr.read()
        code = dump.wait(CASE_TIMEOUT_S)
    assert first.startswith(b"Dumping ")
    assert (code, stderr) == (HARNESS, b"")


def test_analyze_json_into_a_closed_pipe_is_quiet(places: Places) -> None:
    with _spawn("analyze", "--model", "register", "--json", places.values["HISTORY"]) as analyze:
        assert analyze.stdout is not None and analyze.stderr is not None
        first = analyze.stdout.read(16)
        analyze.stdout.close()
        stderr = analyze.stderr.read()
        code = analyze.wait(CASE_TIMEOUT_S)
    assert first.startswith(b"{")
    # One large write the kernel cuts short when the reader leaves need not fail: then the
    # verdict's 0 (valid) stands; a write that fails is the closed pipe's quiet 2.
    assert code in (0, HARNESS)
    assert stderr == b""


def _has_children(pid: int) -> bool:
    return bool(Path(f"/proc/{pid}/task/{pid}/children").read_text().split())


def _interrupt(argv: list[str], workers: bool = False) -> tuple[int, bytes, str]:
    """Start `replog ARGV`, wait for its first line of stdout (it is running) and, with
    `workers`, for its worker processes, then send SIGINT to its process group as a
    terminal's Ctrl-C does; (exit code, the rest of stdout, stderr)."""
    with _spawn(*argv) as process:
        assert process.stdout is not None
        assert process.stdout.readline(), "no output before the signal"
        deadline = time.monotonic() + SIGNAL_WAIT_S
        while workers and not _has_children(process.pid) and time.monotonic() < deadline:
            time.sleep(POLL_S)
        os.killpg(process.pid, signal.SIGINT)
        try:
            stdout, stderr = process.communicate(timeout=SIGNAL_WAIT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            return -1, stdout, f"still running {SIGNAL_WAIT_S} s after SIGINT"
    return process.returncode, stdout, stderr.decode(errors="replace")


def _new_topic(bootstrap: str, topic: str) -> None:
    async def main() -> None:
        runtime = real_runtime(0)
        with trio.fail_after(CASE_TIMEOUT_S):
            await create_topics(runtime, bootstrap, [(topic, 1, 1, {})])
            await wait_for_leaders(runtime, bootstrap, [topic])

    trio.run(main)


def test_ctrl_c_stops_a_producer_waiting_for_stdin_and_a_consumer(places: Places) -> None:
    """A person typing records ends with Ctrl-C, not an end of file."""
    bootstrap = places.values["LIVE"]
    _new_topic(bootstrap, "interrupted")
    with _spawn(
        "produce", "--bootstrap", bootstrap, "--topic", "interrupted", stdin=subprocess.PIPE
    ) as producer:
        assert producer.stdin is not None
        producer.stdin.write(b"one\n")
        producer.stdin.flush()
        # The consumer's first line is the record: the producer sent it and waits for more.
        code, stdout, stderr = _interrupt(
            ["consume", "--bootstrap", bootstrap, "--topic", "interrupted", "--from-beginning"]
        )
        _assert_clean(stdout, stderr)
        assert code == HARNESS, stderr
        assert "replog consume: interrupted" in stderr
        os.killpg(producer.pid, signal.SIGINT)
        try:
            code = producer.wait(SIGNAL_WAIT_S)
        except subprocess.TimeoutExpired:
            os.killpg(producer.pid, signal.SIGKILL)
            raise
        assert producer.stdout is not None and producer.stderr is not None
        stderr = _assert_clean(producer.stdout.read(), producer.stderr.read())
    assert code == HARNESS, stderr
    assert _error_lines(stderr) == ["replog produce: interrupted"]


def test_ctrl_c_stops_a_model_check_with_one_line() -> None:
    code, stdout, stderr = _interrupt(["check", "--jobs", "2"], workers=True)
    _assert_clean(stdout, stderr)
    assert code == HARNESS, stderr
    assert _error_lines(stderr) == ["replog check: interrupted"]


def test_ctrl_c_stops_a_broker_cleanly(tmp_path: Path) -> None:
    """SIGINT and SIGTERM are how a server is stopped: a clean shutdown, exit 0."""
    broker = start_broker(1, tmp_path / "data")
    assert broker.popen is not None
    broker.popen.send_signal(signal.SIGINT)
    assert broker.popen.wait(SIGNAL_WAIT_S) == 0
    log = broker.log_path.read_text()
    assert "Traceback" not in log and "stopped; logs flushed and checkpointed" in log
