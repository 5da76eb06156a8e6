"""Impossible setups are refused before anything starts: `replog campaign` and `replog
cluster` exit 2 with one line on stderr naming the flag or key (no traceback), and
leave no run directory, data directory or process behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from impl.cluster import cli as cluster_cli
from jepsen_py.campaign import cli

ROOT = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_S = 60


def replog(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "replog_cli", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], *named: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert all(name in lines[0] for name in named), (named, lines[0])


def test_campaign_refuses_an_rf_above_the_brokers_in_a_line_naming_the_keys(
    tmp_path: Path,
) -> None:
    """Once through the real command line; the other setups below in-process."""
    out = tmp_path / "reports"
    done = replog("campaign", "--brokers", "1", "--out", str(out))
    assert_one_line_error(done, "--brokers 1", "replication.factor=3", "min.insync.replicas=2")
    assert not out.exists(), "nothing is started or written for a bad setup"


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--brokers", "2", "--config", "replication.factor=3"], ("replication.factor=3",)),
        (["--brokers", "0"], ("--brokers", "[1, 32]")),
        (["--partitions", "0"], ("--partitions",)),
        (["--concurrency", "-1"], ("--concurrency",)),
        (["--workload", "consumer", "--concurrency", "1"], ("--concurrency", "[2,")),
        (["--rate", "0"], ("--rate",)),
        (["--time-limit", "-5"], ("--time-limit",)),
        (["--time-limit", "nan"], ("--time-limit",)),
        (["--nemesis-interval", "0"], ("--nemesis-interval",)),
        (["--nemesis", "flood"], ("--nemesis", "flood", "kill, pause")),
        (["--nemesis", "kill:everyone"], ("--nemesis", "everyone")),
        (["--config", "acks=7"], ("acks",)),
    ],
)
def test_campaign_refuses_impossible_setups(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], named: tuple[str, ...]
) -> None:
    out = tmp_path / "reports"
    code = cli.campaign_main([*argv, "--out", str(out)])
    captured = capsys.readouterr()
    assert_one_line_error(subprocess.CompletedProcess([], code, captured.out, captured.err), *named)
    assert not out.exists(), "nothing is started or written for a bad setup"


def test_campaign_refuses_an_out_that_is_a_file(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    assert_one_line_error(replog("campaign", "--out", str(afile)), "--out", "not a directory")
    assert_one_line_error(replog("campaign", "--out", str(afile / "under")), "--out")
    assert afile.read_text() == "mine\n"


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--brokers", "1"], ("--brokers 1", "replication.factor=3", "offsets.topic")),
        (["--brokers", "0"], ("--brokers",)),
        (["--quorum-size", "5"], ("--quorum-size", "5")),
        (["--config", "acks=9"], ("acks",)),
    ],
)
def test_cluster_refuses_impossible_setups(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], named: tuple[str, ...]
) -> None:
    data = tmp_path / "data"
    code = cluster_cli.main([*argv, "--data-dir", str(data)])
    captured = capsys.readouterr()
    assert_one_line_error(subprocess.CompletedProcess([], code, captured.out, captured.err), *named)
    assert not data.exists()


def test_cluster_refuses_a_data_dir_that_is_a_file(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    assert_one_line_error(replog("cluster", "--data-dir", str(afile)), "--data-dir")
