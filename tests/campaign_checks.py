"""Checks of a finished campaign's files and fault windows, shared by the real-process
campaign tests (tests/campaign) and the simulated ones (tests/sim)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from jepsen_py.campaign import runner
from jepsen_py.history import Op, pair_positions

RESULTS_FIELDS = {
    "run_id", "valid", "exit_code", "workload", "seed", "config", "spec", "versions",
    "anomalies", "checkers", "stats", "facts",
}  # fmt: skip
FAULT_ENDS = {
    "kill": "restart",
    "crash": "restart",
    "pause": "resume",
    "partition": "heal",
    "clock-bump": "clock-reset",
    "clock-strobe": "clock-reset",
}


def campaign_spec(
    tmp_path: Path, nemeses: tuple[str, ...], seed: int, **changes: Any
) -> runner.CampaignSpec:
    """A short campaign's spec: 100 ops/s by 4 clients on 2 partitions, reports under
    tmp_path; `changes` set the time limit, the nemesis interval, `sim` and the rest."""
    settings: dict[str, Any] = {
        "rate_per_s": 100.0,
        "concurrency": 4,
        "partitions": 2,
        "out": tmp_path / "reports",
    }
    return runner.CampaignSpec(nemeses=nemeses, seed=seed, **{**settings, **changes})


def why(run: runner.Campaign) -> str:
    anomalies = json.dumps(run.results["anomalies"])[:2000]
    error = run.results["facts"].get("harness_error", "")[-2000:]
    return f"seed {run.results['seed']}, run {run.run_dir}: {anomalies} {error}"


def nemesis_ops(history: list[Op], f: str) -> list[Op]:
    return [op for op in history if op.process == "nemesis" and op.f == f and op.type == "ok"]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.targets: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.targets += [v for k, v in attrs if k in ("href", "src") and v]


def nemesis_invokes(history: list[Op]) -> list[Op]:
    return [op for op in history if op.process == "nemesis" and op.type == "invoke"]


def assert_history_and_windows(run: runner.Campaign, history: list[Op]) -> list[Op]:
    """Valid; the history is complete, ends with a heal of everything, every fault ended,
    the perf checker saw one window per fault, no broker logged an ERROR; results.json
    has its fields.
    Returns the nemesis' invocations."""
    assert run.results["valid"] is True and run.exit_code == 0, why(run)
    assert len(history) == run.results["stats"]["ops"], why(run)
    assert all(ret is not None for _, ret in pair_positions(history)), "an op never completed"
    nemesis = nemesis_invokes(history)
    assert nemesis[-1].f == "heal" and nemesis[-1].value == "all", why(run)
    assert_faults_end(nemesis, run)
    assert set(run.results) >= RESULTS_FIELDS, sorted(RESULTS_FIELDS - set(run.results))
    windows = run.results["checkers"]["perf"]["stats"]["nemesis_windows"]
    assert len(windows) == sum(op.f in FAULT_ENDS for op in nemesis), why(run)
    # A broker's internal error is a finding even when the history checks out.
    errors = run.results["facts"]["broker_errors"]
    assert errors["count"] == 0, f"brokers logged errors: {errors['first']}; {why(run)}"
    return nemesis


def assert_faults_end(nemesis: list[Op], run: runner.Campaign) -> None:
    """Every fault the nemesis started has its end op later (the final heal ends all)."""
    active: set[str] = set()
    for op in nemesis:
        if op.f in FAULT_ENDS:
            active.add(op.f)
        elif op.f == "heal" and op.value == "all":
            active.clear()
        else:
            active -= {fault for fault, end in FAULT_ENDS.items() if end == op.f}
    assert not active, f"faults never ended: {active}; {why(run)}"


def assert_sends_progress_through_faults(history: list[Op], run: runner.Campaign) -> None:
    """Writes were acknowledged before the first fault, and writes invoked after it
    started were acknowledged too: the workload kept going through the faults (a
    count-free check, so a loaded machine's lower throughput cannot fail it)."""
    faults = [op.time for op in nemesis_invokes(history) if op.f in FAULT_ENDS]
    assert faults, f"the nemesis never faulted; {why(run)}"
    first_fault = min(faults)
    invoked_at = [
        history[invoke].time
        for invoke, ret in pair_positions(history)
        if ret is not None and history[ret].f == "send" and history[ret].type == "ok"
    ]
    assert any(t < first_fault for t in invoked_at), f"no send before the faults; {why(run)}"
    assert any(t > first_fault for t in invoked_at), f"no send acked once faults began; {why(run)}"


def assert_report_files(run: runner.Campaign) -> list[str]:
    """junit.xml names every checker and fails none; report.html is a valid run's page
    with a chart, and every file it links exists. Returns the link targets."""
    suite = ET.parse(run.run_dir / "junit.xml").getroot()
    assert {case.get("name") for case in suite} == set(run.results["checkers"])
    assert suite.get("failures") == "0"
    page = (run.run_dir / "report.html").read_text()
    assert "<svg" in page and "VALID" in page
    links = _Links()
    links.feed(page)
    assert links.targets, "the report links to the run's files"
    for target in links.targets:
        assert (run.run_dir / target).is_file(), f"report.html links to missing {target}"
    return links.targets
