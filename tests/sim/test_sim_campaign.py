"""`replog campaign --sim`: the real campaign (generators, nemeses, workloads, checkers,
report) on the deterministic simulator, a few simulated seconds each.

Each nemesis' campaign on the safe default configuration is valid and its fault really
happened in the SimCluster (a killed or paused broker was down, cut links held bytes,
clocks moved); one seed gives the same history.jsonl byte for byte, in this process and
in another one with another hash seed that runs the printed replay command; acks=1
under leader kills loses acknowledged writes where the defaults do not. Seeds are
fixed; every assertion message names the seed and the run directory.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import campaign_checks as checks
import pytest
from campaign_checks import FAULT_ENDS, nemesis_ops, why

from jepsen_py.campaign import cli, report, runner, sim
from jepsen_py.history import Op, read_jsonl

ROOT = Path(__file__).resolve().parents[2]
TIME_LIMIT_S = 6.0
INTERVAL_S = 1.5
RESULTS_FIELDS = {*checks.RESULTS_FIELDS, "sim"}
LOSS_SEEDS = (1, 2, 3)
ZOMBIE_INTERVAL_S = 4
ZOMBIE_TIME_LIMIT_S = 9
REPLAY_TIMEOUT_S = 120


def spec_of(
    tmp_path: Path, nemeses: tuple[str, ...], seed: int, **changes: Any
) -> runner.CampaignSpec:
    settings = {"time_limit_s": TIME_LIMIT_S, "nemesis_interval_s": INTERVAL_S, "sim": True}
    return checks.campaign_spec(tmp_path, nemeses, seed, **{**settings, **changes})


def campaign(
    tmp_path: Path, nemeses: tuple[str, ...], seed: int, **changes: Any
) -> runner.Campaign:
    return sim.run(spec_of(tmp_path, nemeses, seed, **changes), show_progress=False)


def assert_complete(run: runner.Campaign) -> list[Op]:
    """Valid, the history complete and in simulated time, the report files whole."""
    history = read_jsonl(run.run_dir / "history.jsonl")
    checks.assert_history_and_windows(run, history)
    assert set(run.results) >= RESULTS_FIELDS, sorted(RESULTS_FIELDS - set(run.results))
    assert run.results["sim"] is True
    facts = run.results["facts"]
    # Simulated time: the run lasted the time limit and more (setup, recovery, final
    # reads) in simulated seconds, and the history's clock is that one.
    assert facts["sim_duration_s"] > TIME_LIMIT_S, why(run)
    assert TIME_LIMIT_S <= history[-1].time / 1e9 < facts["sim_duration_s"], why(run)
    assert facts["duration_s"] > 0 and "harness_error" not in facts, why(run)
    command = run.results["spec"]["command"]
    assert command.startswith("replog campaign --sim "), command
    assert f"--seed {run.results['seed']}" in command, command
    checks.assert_sends_progress_through_faults(history, run)
    # Simulated time does not depend on the machine's load: the count is exact per seed.
    assert run.results["stats"]["by_f"]["send"]["ok"] > 50, why(run)
    targets = checks.assert_report_files(run)
    assert "sim.log" in targets, "the report links the simulated brokers' log"
    assert "broker 0 listening" in (run.run_dir / "sim.log").read_text()
    return history


def faulted_nodes(history: list[Op], f: str) -> dict[str, dict[str, Any]]:
    return {n: p for op in nemesis_ops(history, f) for n, p in op.value["processes"].items()}


@pytest.mark.parametrize(
    ("nemesis", "seed"),
    [("kill", 201), ("crash", 202), ("pause", 203), ("partition", 204), ("clock", 205)],
)
def test_each_nemesis_really_faults_the_sim_cluster_and_the_defaults_stay_valid(
    tmp_path: Path, nemesis: str, seed: int
) -> None:
    run = campaign(tmp_path, (nemesis,), seed)
    history = assert_complete(run)
    facts = run.results["facts"]
    if nemesis in ("kill", "crash", "pause"):
        stopped = faulted_nodes(history, nemesis)
        expected = {"kill": "killed", "crash": "crashed", "pause": "paused"}[nemesis]
        assert stopped and all(p["state"] == expected for p in stopped.values()), why(run)
        # The SimCluster's own accounting: each such broker spent simulated time down.
        assert all(facts["down_s"][n] > 0 for n in stopped), (facts["down_s"], why(run))
        ended = faulted_nodes(history, "resume" if nemesis == "pause" else "restart")
        assert set(ended) == set(stopped), why(run)
        assert all(p["state"] == "running" for p in ended.values()), why(run)
    if nemesis == "crash":
        lost = [p["unsynced_bytes"] for p in faulted_nodes(history, "crash").values()]
        assert any(size > 0 for size in lost), f"no crash lost unsynced bytes; {why(run)}"
    if nemesis == "partition":
        cuts = nemesis_ops(history, "partition")
        assert cuts and all(op.value["cut"] for op in cuts), why(run)
        cut_names = {f"{a}->{b}" for op in cuts for a, b in op.value["cut"]}
        held = facts["cut_held_bytes"]
        assert sum(held.get(name, 0) for name in cut_names) > 0, why(run)
        assert set(held) <= cut_names, f"bytes held on links never cut; {why(run)}"
    if nemesis == "clock":
        bumps, strobes = nemesis_ops(history, "clock-bump"), nemesis_ops(history, "clock-strobe")
        assert bumps or strobes, why(run)
        for op in bumps:
            assert op.value["skew_ms"] and all(s != 0 for s in op.value["skew_ms"].values())
        for op in strobes:
            assert op.value["nodes"] and op.value["delta_ms"] != 0 and op.value["flips"] > 0
        resets = nemesis_ops(history, "clock-reset")
        assert resets and all(s == 0 for op in resets for s in op.value["skew_ms"].values())


def test_one_seed_one_history_here_quietly_and_in_a_replay_under_another_hash_seed(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The printed replay command reproduces the history byte for byte, whatever the
    hash seed of the replaying process and whether the progress line is drawn."""
    nemeses = ("kill", "pause", "partition", "clock", "crash")
    spec = spec_of(tmp_path / "here", nemeses, 301, nemesis_overlap=True)
    check = sim.check_determinism(spec, show_progress=False)
    assert check.identical, (check.line, check.first, check.second)
    first = check.runs[0]
    history = (first.run_dir / "history.jsonl").read_bytes()
    started = {op.f for op in read_jsonl(first.run_dir / "history.jsonl") if op.f in FAULT_ENDS}
    assert len(started) >= 2, f"a nested cycle starts two faults: {started}; {why(first)}"
    drawn = sim.run(spec, show_progress=True)
    assert "s left]" in capfd.readouterr().err
    assert (drawn.run_dir / "history.jsonl").read_bytes() == history
    replay = shlex.split(first.results["spec"]["command"])
    assert replay[:3] == ["replog", "campaign", "--sim"]
    out = tmp_path / "replay"
    hash_seed = str(int(os.environ.get("PYTHONHASHSEED", "0") or 0) + 1)
    done = subprocess.run(
        [sys.executable, "-m", "replog_cli", *replay[1:], "--out", str(out), "--quiet"],
        cwd=ROOT,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
        capture_output=True,
        text=True,
        timeout=REPLAY_TIMEOUT_S,
    )
    assert done.returncode == first.exit_code, done.stdout + done.stderr
    assert (out / "latest" / "history.jsonl").read_bytes() == history


def test_acks_1_behind_a_zombie_leader_loses_acknowledged_writes_and_the_defaults_do_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """partition:one cuts a broker from the other brokers while clients still reach it;
    with 3 partitions on 3 brokers it leads one. Under acks=1 it goes on acknowledging
    alone until the controller fences it and its log is truncated at the heal; under
    acks=all its followers never fetch, so nothing it could not replicate is acked.
    (Leader kills alone rarely lose under acks=1 here: simulated CPU time is free, so a
    follower is a few simulated ms behind; see the README.)"""
    flags = ["--nemesis", "partition:one", "--nemesis-interval", str(ZOMBIE_INTERVAL_S)]
    flags += ["--time-limit", str(ZOMBIE_TIME_LIMIT_S), "--partitions", "3"]
    flags += ["--rate", "100", "--concurrency", "4"]
    for seed in LOSS_SEEDS:
        argv = ["--sim", "--seed", str(seed), *flags, "--config", "acks=1"]
        if cli.campaign_main([*argv, "--out", str(tmp_path / "acks1"), "--quiet"]) == 1:
            break
    else:
        pytest.fail(f"acks=1 lost no acknowledged write under seeds {LOSS_SEEDS}")
    printed = capsys.readouterr().out
    lossy_dir = (tmp_path / "acks1" / "latest").resolve()
    results = json.loads((lossy_dir / "results.json").read_text())
    assert {"queue/lost-write", "durability/lost-acknowledged"} <= set(results["anomalies"])
    replay = results["spec"]["command"]
    assert f"replay this run exactly: {replay}" in printed
    assert "--config acks=1" in replay and f"--seed {seed}" in replay
    assert cli.campaign_main(["--sim", "--seed", str(seed), *flags, "--out", str(tmp_path)]) == 0
    safe_dir = (tmp_path / "latest").resolve()
    cuts = [
        nemesis_ops(read_jsonl(d / "history.jsonl"), "partition")[0].value
        for d in (lossy_dir, safe_dir)
    ]
    assert cuts[0] == cuts[1], f"seed {seed}: the same fault in both runs: {cuts}"


def test_check_determinism_needs_sim_and_a_real_run_refuses_a_sim_spec(tmp_path: Path) -> None:
    assert cli.campaign_main(["--check-determinism", "--out", str(tmp_path)]) == 2
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="simulated"):
        runner.run(spec_of(tmp_path, (), 1))


@pytest.mark.parametrize(
    ("second", "line", "shown"),
    [
        (b'{"index":0}\n{"index":1,"time":6}\n', 2, '"time":6'),
        (b'{"index":0}\n', 2, "<end of history>"),
    ],
)
def test_check_determinism_exits_2_at_the_first_differing_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    second: bytes,
    line: int,
    shown: str,
) -> None:
    histories = iter([b'{"index":0}\n{"index":1,"time":5}\n', second])

    def one_run(spec: runner.CampaignSpec, show_progress: bool = True) -> runner.Campaign:
        run_dir = tmp_path / f"run-{len(list(tmp_path.iterdir()))}"
        run_dir.mkdir()
        (run_dir / runner.HISTORY_FILE).write_bytes(next(histories))
        return runner.Campaign(run_dir, {"valid": True})

    monkeypatch.setattr(sim, "run", one_run)
    argv = ["--sim", "--check-determinism", "--seed", "4", "--quiet"]
    assert cli.campaign_main(argv) == 2
    out = capsys.readouterr().out
    assert f"differ first at line {line}:" in out
    assert '"time":5' in out and shown in out
    assert "replay: replog campaign --sim " in out and "--seed 4" in out


def test_broker_error_lines_are_counted_and_shown_in_the_report(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "sim.log").write_text(
        "    1.250000 INFO answered with error NOT_LEADER_OR_FOLLOWER ERROR \n"
        "    2.500000 ERROR closing a connection after an internal error\n"
        "Traceback (most recent call last):\n"
    )
    (logs / "node-1.log").write_text(
        "2026-12-04 02:00:06,552 broker 1 ERROR closing a connection\n"
        "2026-12-04 02:00:07,001 broker 1 CRITICAL storage gone\n"
        "2026-12-04 02:00:07,002 broker 1 WARNING a message that says ERROR \n"
    )
    found = runner.broker_errors(logs, {"all": "sim.log", "1": "node-1.log"})
    assert found == {
        "count": 3,
        "first": [
            "1: 2026-12-04 02:00:06,552 broker 1 ERROR closing a connection",
            "1: 2026-12-04 02:00:07,001 broker 1 CRITICAL storage gone",
            "all: 2.500000 ERROR closing a connection after an internal error",
        ],
    }
    run = campaign(tmp_path, (), seed=106, workload="log", time_limit_s=2.0)
    results = run.results
    assert results["facts"]["broker_errors"] == {"count": 0, "first": []}, why(run)
    assert "ERROR lines" not in (run.run_dir / "report.html").read_text()
    results["facts"]["broker_errors"] = found
    page = report.render(results, read_jsonl(run.run_dir / "history.jsonl"))
    assert "Brokers logged 3 ERROR lines" in page and "storage gone" in page
    assert results["valid"] is True, "the errors warn; they do not change the verdict"
