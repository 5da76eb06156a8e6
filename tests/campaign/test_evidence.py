"""A run earns its verdict only if it tested what it was asked: synthetic histories with a
nemesis that never fired, an op kind that never succeeded or final reads that never
completed come out "unknown" (exit 2) with what was missing, in results.json, the
report, junit.xml and on the terminal; an interrupted run is "incomplete"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jepsen_py.campaign import cli, evidence, outputs, runner
from jepsen_py.history import Op
from jepsen_py.result import Result

TIME_LIMIT_S = 10.0
S = 1_000_000_000
KINDS = ("kill", "partition:inbound")


class History:
    """Builds a history op by op: each op invoked and completed at once."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def op(
        self, at_s: float, process: int | str, f: str, value: Any, outcome: str, result: Any
    ) -> None:
        time = int(at_s * S)
        self.ops.append(Op(len(self.ops), time, process, "invoke", f, value))
        self.ops.append(Op(len(self.ops), time + 1, process, outcome, f, result))


def complete_run(**drop: bool) -> list[Op]:
    """A queue run that tested everything: both nemeses fired, every op kind succeeded,
    the final reads read both sends; `drop` leaves out a part."""
    h = History()
    h.op(0.5, 0, "send", [0, 1], "ok", [0, 1])
    h.op(0.6, 1, "send", [1, 2], "ok", [0, 2])
    h.op(0.7, 0, "poll", None, "ok", {"0": [[0, 1]]})
    h.op(0.8, 1, "assign", [0, 1], "fail" if drop.get("assign") else "ok", [0, 1])
    kill = {"target": "one", "nodes": [] if drop.get("kill") else [2], "processes": {}}
    h.op(2.0, "nemesis", "kill", "one", "ok", kill)
    h.op(4.0, "nemesis", "restart", "all", "ok", {"nodes": [2], "processes": {}})
    variant = "halves" if drop.get("inbound") else "inbound"
    h.op(5.0, "nemesis", "partition", variant, "ok", {"kind": variant, "cut": [["0", "1"]]})
    h.op(7.0, "nemesis", "heal", "network", "ok", {"links": 1})
    h.op(11.0, "nemesis", "heal", "all", "ok", {"links": 0})
    if not drop.get("final"):
        h.op(12.0, 10, "assign", [0, 1], "ok", [0, 1])
        h.op(12.1, 10, "poll", "final", "ok", {"0": [[0, 1]], "1": [[0, 2]]})
    return h.ops


def spec(tmp_path: Path) -> dict[str, Any]:
    return runner.CampaignSpec(
        nemeses=KINDS, time_limit_s=TIME_LIMIT_S, seed=3, out=tmp_path, nemesis_interval_s=1.0
    ).to_json()


def test_a_run_that_tested_everything_has_no_gaps_and_counts_its_faults(tmp_path: Path) -> None:
    history = complete_run()
    assert evidence.gaps(spec(tmp_path), history) == {}
    assert evidence.fired(history) == {"kill": 1, "partition": 1}


@pytest.mark.parametrize(
    ("drop", "missing", "said"),
    [
        ({"kill": True}, {"nemeses_not_fired": ["kill"]}, "nemesis never fired: kill"),
        (
            {"inbound": True},
            {"nemeses_not_fired": ["partition:inbound"]},
            "nemesis never fired: partition:inbound",
        ),
        ({"assign": True}, {"ops_without_ok": ["assign"]}, "no ok assign op"),
        ({"final": True}, {"final_reads": "not completed"}, "final reads not completed"),
    ],
)
def test_a_gap_makes_the_verdict_unknown_everywhere(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    drop: dict[str, bool],
    missing: dict[str, Any],
    said: str,
) -> None:
    history = complete_run(**drop)
    results = outputs.write(tmp_path, spec(tmp_path), history, {})
    assert results["facts"]["missing"] == missing
    assert (results["valid"], results["verdict"], results["exit_code"]) == ("unknown", "unknown", 2)
    stored = json.loads((tmp_path / outputs.RESULTS_FILE).read_text())
    assert stored["facts"]["missing"] == missing and stored["verdict"] == "unknown"
    page = (tmp_path / outputs.REPORT_FILE).read_text()
    assert "UNKNOWN" in page and "Not tested as asked" in page and said in page
    assert 'name="evidence"' in (tmp_path / outputs.JUNIT_FILE).read_text()
    assert said in (tmp_path / outputs.JUNIT_FILE).read_text()
    # `replog report` re-checks the stored history and comes to the same verdict.
    (tmp_path / runner.HISTORY_FILE).write_text(
        "".join(json.dumps(op.to_json()) + "\n" for op in history)
    )
    assert cli.report_main([str(tmp_path)]) == 2
    assert f"verdict: unknown: {said}" in capsys.readouterr().out


def test_the_complete_run_is_valid(tmp_path: Path) -> None:
    results = outputs.write(tmp_path, spec(tmp_path), complete_run(), {})
    assert (results["valid"], results["verdict"], results["exit_code"]) == (True, "valid", 0)
    assert "Not tested as asked" not in (tmp_path / outputs.REPORT_FILE).read_text()


def test_the_main_phase_must_succeed_on_its_own() -> None:
    """The final reads' assign and poll do not make up for none in the main phase."""
    h = History()
    h.op(0.5, 0, "send", [0, 1], "ok", [0, 1])
    h.op(11.0, "nemesis", "heal", "all", "ok", {"links": 0})
    h.op(12.0, 10, "assign", [0], "ok", [0])
    h.op(12.1, 10, "poll", "final", "ok", {"0": [[0, 1]]})
    job = {"nemeses": (), "time_limit_s": TIME_LIMIT_S, "workload": "queue"}
    assert evidence.gaps(job, h.ops) == {"ops_without_ok": ["poll", "assign"]}


def test_log_final_reads_complete_only_when_every_one_succeeded() -> None:
    h = History()
    h.op(0.5, 0, "append", [0, 1], "ok", [0, 0])
    h.op(0.6, 0, "read", [0, 0], "ok", [0, 1])
    h.op(0.7, 0, "end-offset", [0, None], "ok", [0, 1])
    h.op(11.0, "nemesis", "heal", "all", "ok", {"links": 0})
    h.op(12.0, 10, "end-offset", [0, None], "ok", [0, 1])
    job = {"nemeses": (), "time_limit_s": TIME_LIMIT_S, "workload": "log"}
    h.op(12.1, 10, "read", [0, 0], "fail", None)
    assert evidence.gaps(job, h.ops) == {"final_reads": "not completed"}
    h.ops[-1] = Op(h.ops[-1].index, h.ops[-1].time, 10, "ok", "read", [0, 1])
    assert evidence.gaps(job, h.ops) == {}


def test_anomalies_found_stay_invalid_and_an_interrupted_run_is_incomplete() -> None:
    found = {"queue": Result(False, {"lost-write": [{}]})}
    assert outputs.judge(found, {"missing": {"final_reads": "not completed"}}) == (
        False,
        "invalid",
    )
    interrupted = {"missing": {}, "interrupted": "SIGINT"}
    assert outputs.judge(found, interrupted) == ("unknown", "incomplete")
    assert outputs.judge({"queue": Result(True)}, interrupted) == ("unknown", "incomplete")
    assert outputs.judge({"queue": Result(True)}, {"missing": {}}) == (True, "valid")


def test_a_harness_failure_is_exit_2_with_one_line_and_the_traceback_in_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def broken(*args: object) -> None:
        raise RuntimeError("the harness broke")

    monkeypatch.setattr(runner, "_run_phases", broken)
    argv = ["--sim", "--nemesis", "none", "--time-limit", "1", "--seed", "1", "--quiet"]
    assert cli.campaign_main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "harness failure: RuntimeError: the harness broke (details in" in err
    assert "Traceback" not in err
    results = json.loads((tmp_path / "latest" / outputs.RESULTS_FILE).read_text())
    assert "Traceback" in results["facts"]["harness_error"]
    assert (results["verdict"], results["exit_code"]) == ("unknown", 2)


def test_a_round_that_cannot_fit_is_said_up_front_and_ends_unknown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the command line on the simulator: a 5 s interval in a 2 s run."""
    argv = ["--sim", "--nemesis", "kill", "--nemesis-interval", "5", "--time-limit", "2"]
    argv += ["--rate", "50", "--concurrency", "2", "--partitions", "1", "--seed", "4"]
    assert cli.campaign_main([*argv, "--quiet", "--out", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert "warning: firing each nemesis kind asked for (1) once takes 2 x" in captured.err
    assert "verdict: unknown: nemesis never fired: kill" in captured.out
    assert "faults fired: none" in captured.out
    results = json.loads((tmp_path / "latest" / outputs.RESULTS_FILE).read_text())
    assert results["facts"]["missing"] == {"nemeses_not_fired": ["kill"]}
