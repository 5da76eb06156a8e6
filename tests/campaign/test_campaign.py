"""Short campaigns against real broker processes, one per nemesis (seconds each).

Each checks that the fault really happened (the process was dead or stopped, the proxy
held bytes back, the broker's clock moved), that the history is complete and parses,
and that results.json, junit.xml and report.html exist and hang together. The safe
default configuration must come out valid. Seeds are fixed; every assertion message
names the seed and the run directory to replay.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from campaign_checks import (
    assert_history_and_windows,
    assert_report_files,
    assert_sends_progress_through_faults,
    campaign_spec,
    nemesis_ops,
    why,
)

from jepsen_py.campaign import cli, runner
from jepsen_py.history import Op, read_jsonl

TIME_LIMIT_S = 5.0
INTERVAL_S = 1.5
CHROMIUM_TIMEOUT_S = 60


def campaign(
    tmp_path: Path, nemeses: tuple[str, ...], seed: int, **changes: Any
) -> runner.Campaign:
    settings = {"time_limit_s": TIME_LIMIT_S, "nemesis_interval_s": INTERVAL_S, **changes}
    return runner.run(campaign_spec(tmp_path, nemeses, seed, **settings), show_progress=False)


def assert_complete(run: runner.Campaign) -> list[Op]:
    """The run is valid, its history parses and is complete, its files hang together."""
    history = read_jsonl(run.run_dir / "history.jsonl")
    assert_history_and_windows(run, history)
    assert run.results["spec"]["command"].startswith("replog campaign"), why(run)
    if run.results["workload"] != "log":
        assert_sends_progress_through_faults(history, run)
    assert_report_files(run)
    assert (Path(run.run_dir).parent / "latest").resolve() == run.run_dir.resolve()
    return history


def assert_restarted_with_new_pids(history: list[Op], start_f: str, run: runner.Campaign) -> None:
    """Each node the fault killed (exit -9) came back as a new process."""
    killed = {}
    for op in nemesis_ops(history, start_f):
        for node, process in op.value["processes"].items():
            assert process["exit_code"] == -9, why(run)
            killed[node] = process["pid"]
    assert killed, why(run)
    restarted = {}
    for op in nemesis_ops(history, "restart"):
        restarted.update(op.value["processes"])
    assert set(restarted) == set(killed), why(run)
    assert all(restarted[n]["pid"] != pid for n, pid in killed.items()), why(run)
    assert any(seconds > 0 for seconds in run.results["facts"]["down_s"].values())


def test_kill_kills_and_restarts_brokers(tmp_path: Path) -> None:
    run = campaign(tmp_path, ("kill",), seed=101)
    history = assert_complete(run)
    assert_restarted_with_new_pids(history, "kill", run)
    assert all("lost_bytes" not in p for op in nemesis_ops(history, "kill") for p in op.value)


def test_crash_loses_unsynced_bytes_and_the_safe_configuration_survives_it(
    tmp_path: Path,
) -> None:
    run = campaign(tmp_path, ("crash",), seed=106)
    history = assert_complete(run)
    assert_restarted_with_new_pids(history, "crash", run)
    crashes = [p for op in nemesis_ops(history, "crash") for p in op.value["processes"].values()]
    # The first crash comes after an interval of sends to every broker: it loses their
    # unsynced tails. A later one may hit a broker restarted a moment before, with
    # nothing unsynced yet.
    assert crashes[0]["lost_bytes"] > 0 and crashes[0]["files_cut"] > 0, why(run)


def test_pause_stops_and_resumes_brokers(tmp_path: Path) -> None:
    run = campaign(tmp_path, ("pause",), seed=102)
    history = assert_complete(run)
    pauses = nemesis_ops(history, "pause")
    assert pauses, why(run)
    states = [p["state"] for op in pauses for p in op.value["processes"].values()]
    assert states and all(state == "T" for state in states), why(run)
    resumed = [
        p["state"] for op in nemesis_ops(history, "resume") for p in op.value["processes"].values()
    ]
    assert resumed and "T" not in resumed, why(run)


def test_partition_blackholes_links(tmp_path: Path) -> None:
    run = campaign(tmp_path, ("partition",), seed=103)
    history = assert_complete(run)
    cuts = nemesis_ops(history, "partition")
    assert cuts and all(op.value["cut"] for op in cuts), why(run)
    proxies = run.results["facts"]["proxies"]
    cut_names = {f"{a}->{b}" for op in cuts for a, b in op.value["cut"]}
    held = sum(proxies[name]["blocked_bytes"] for name in cut_names)
    assert held > 0, f"no bytes were held back on the cut links; {why(run)}"
    uncut = set(proxies) - cut_names
    assert all(proxies[name]["blocked_bytes"] == 0 for name in uncut), why(run)


def test_clock_moves_broker_wall_clocks(tmp_path: Path) -> None:
    run = campaign(tmp_path, ("clock",), seed=104)
    history = assert_complete(run)
    bumps = nemesis_ops(history, "clock-bump")
    strobes = nemesis_ops(history, "clock-strobe")
    assert bumps or strobes, why(run)
    for op in bumps:
        assert op.value["skew_ms"] and all(s != 0 for s in op.value["skew_ms"].values())
    for op in strobes:
        assert op.value["nodes"] and op.value["delta_ms"] != 0 and op.value["flips"] > 0
    resets = nemesis_ops(history, "clock-reset")
    assert resets and all(s == 0 for op in resets for s in op.value["skew_ms"].values())


def test_log_workload_is_linearizable_and_report_rerenders(tmp_path: Path) -> None:
    run = campaign(tmp_path, (), seed=105, workload="log", time_limit_s=3.0)
    history = assert_complete(run)
    assert run.results["checkers"]["linearizable"]["valid"] is True, why(run)
    assert any(op.f == "read" and op.type == "ok" and op.value[1] is not None for op in history)
    (run.run_dir / "report.html").unlink()
    assert cli.report_main([str(run.run_dir)]) == 0
    assert (run.run_dir / "report.html").is_file()
    if shutil.which("chromium"):
        _screenshot(run.run_dir / "report.html", tmp_path / "report.png")


def _screenshot(page: Path, png: Path) -> None:
    """Render the page in headless Chromium (when the machine has it)."""
    command = [
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={png.parent / 'chromium-profile'}",
        "--window-size=1050,2000",
        f"--screenshot={png}",
        page.as_uri(),
    ]
    subprocess.run(command, capture_output=True, timeout=CHROMIUM_TIMEOUT_S, check=True)
    assert png.stat().st_size > 10_000, "the rendered report is (nearly) blank"


@pytest.mark.parametrize(
    "argv",
    [["--nemesis", "flood"], ["--config", "acks=7"], ["--time-limit", "0"]],
)
def test_campaign_rejects_bad_arguments_with_exit_2(argv: list[str], tmp_path: Path) -> None:
    assert cli.campaign_main([*argv, "--out", str(tmp_path)]) == 2
    assert not list(tmp_path.iterdir()), "nothing is started for bad arguments"
