"""A campaign stopped by SIGTERM or Ctrl-C (SIGINT) while a broker is paused: the paused
broker is resumed and every broker stopped cleanly (none outlives the run), the history
so far is checked and reported with verdict "incomplete", exit 2, no traceback.

One real broker process on loopback, pause faults every second; the signal goes to the
campaign process once /proc shows the broker stopped (state T)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jepsen_py.campaign import runner, sim, workloads

ROOT = Path(__file__).resolve().parents[2]
ONE_BROKER = ("replication.factor=1", "min.insync.replicas=1")
PAUSED_TIMEOUT_S = 60.0
EXIT_TIMEOUT_S = 60.0
POLL_S = 0.02


def campaign_argv(out: Path) -> list[str]:
    argv = [sys.executable, "-m", "replog_cli", "campaign", "--brokers", "1"]
    for assignment in ONE_BROKER:
        argv += ["--config", assignment]
    argv += ["--nemesis", "pause", "--nemesis-interval", "1", "--time-limit", "60"]
    argv += ["--rate", "50", "--concurrency", "2", "--partitions", "1", "--seed", "7"]
    return [*argv, "--quiet", "--out", str(out)]


def state(pid: int) -> str | None:
    """The process's state letter, None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return None


def broker_pids(out: Path) -> list[int]:
    for description in out.glob("*/cluster/cluster.json"):
        try:
            brokers = json.loads(description.read_text())["brokers"]
        except (OSError, ValueError):
            return []
        return [b["pid"] for b in brokers if b["pid"] is not None]
    return []


def wait_until_paused(out: Path, campaign: subprocess.Popen[str]) -> int:
    deadline = time.monotonic() + PAUSED_TIMEOUT_S
    while time.monotonic() < deadline:
        assert campaign.poll() is None, campaign.communicate()
        for pid in broker_pids(out):
            if state(pid) == "T":
                return pid
        time.sleep(POLL_S)
    campaign.kill()
    pytest.fail(f"no broker was paused within {PAUSED_TIMEOUT_S} s: {campaign.communicate()}")


def processes_mentioning(text: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().decode(errors="replace"):
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_cluster_and_reports_the_run_incomplete(
    tmp_path: Path, signum: signal.Signals
) -> None:
    out = tmp_path / "reports"
    campaign = subprocess.Popen(
        campaign_argv(out), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        paused = wait_until_paused(out, campaign)
        campaign.send_signal(signum)
        stdout, stderr = campaign.communicate(timeout=EXIT_TIMEOUT_S)
    finally:
        if campaign.poll() is None:
            campaign.kill()
    said = f"{stdout}\n{stderr}"
    assert campaign.returncode == 2, said
    assert "Traceback" not in said
    assert f"verdict: incomplete: interrupted by {signum.name}" in stdout, said
    (run_dir,) = [d for d in out.iterdir() if d.is_dir() and not d.is_symlink()]
    results = json.loads((run_dir / "results.json").read_text())
    assert (results["valid"], results["verdict"], results["exit_code"]) == (
        "unknown",
        "incomplete",
        2,
    )
    assert results["facts"]["interrupted"] == signum.name
    # The paused broker was resumed and then stopped on SIGTERM like the others.
    assert results["facts"]["cluster"]["exit_codes"] == {"0": 0}, results["facts"]["cluster"]
    # The signal may come before the pause op completed (the broker stops first).
    history = (run_dir / "history.jsonl").read_text().splitlines()
    assert any('"f":"pause"' in line and '"type":"invoke"' in line for line in history)
    page = (run_dir / "report.html").read_text()
    assert "INCOMPLETE" in page and f"interrupted by {signum.name}" in page
    assert state(paused) is None, f"broker {paused} outlived the campaign"
    assert processes_mentioning(str(run_dir)) == [], "a process of the run is still there"


def test_ctrl_c_while_checking_still_writes_an_incomplete_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A simulated run (seconds) whose checkers are stopped by Ctrl-C half-way."""

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(workloads, "check", interrupted)
    spec = runner.CampaignSpec(
        workload="log", nemeses=(), time_limit_s=2.0, rate_per_s=50.0, concurrency=2,
        partitions=1, seed=5, out=tmp_path, sim=True,
    )  # fmt: skip
    run = sim.run(spec, show_progress=False)
    results = json.loads((run.run_dir / "results.json").read_text())
    assert (results["verdict"], results["exit_code"], results["checkers"]) == ("incomplete", 2, {})
    assert results["facts"]["interrupted"] == "SIGINT during the checks"
    assert "interrupted by SIGINT during the checks" in (run.run_dir / "report.html").read_text()
