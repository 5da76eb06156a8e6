"""A run's files: results.json, junit.xml and report.html, from the history and what
the runner observed (`facts`: cluster exits, proxies, downtime, a harness error).

`write` is also what `replog report RUN_DIR` calls, with the history and facts read
back from the run directory, so a report can be re-rendered (or re-checked after a
checker changed) without running the campaign again.
"""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import trio

from jepsen_py.campaign import evidence, junit, report, workloads
from jepsen_py.history import HistoryError, Op
from jepsen_py.result import Result, Validity, combine
from model.config import Config

RESULTS_FILE = "results.json"
JUNIT_FILE = "junit.xml"
REPORT_FILE = "report.html"
LATEST_LINK = "latest"
EXAMPLES_PER_ANOMALY = 5
EXIT_CODES = {True: 0, False: 1, "unknown": 2}
VERDICT_WORDS = {True: "valid", False: "invalid", "unknown": "unknown"}


def write(
    run_dir: Path,
    spec: dict[str, Any],
    history: list[Op],
    facts: dict[str, Any],
    check: bool = True,
) -> dict[str, Any]:
    """Check the history (unless `check` is False), write every output file, return
    results.json's content."""
    checkers = _check(spec, history, facts) if check else {}
    facts["missing"] = evidence.gaps(spec, history)
    valid, verdict = judge(checkers, facts)
    results = {
        "run_id": run_dir.name,
        "valid": valid,
        "verdict": verdict,
        "exit_code": EXIT_CODES[valid],
        "workload": spec["workload"],
        "seed": spec["seed"],
        "sim": spec.get("sim", False),
        "config": spec["effective_config"],
        "spec": spec,
        "versions": versions(),
        "anomalies": _anomalies(checkers),
        "checkers": {name: r.summary() for name, r in checkers.items()},
        "stats": _history_stats(history),
        "facts": facts,
    }
    (run_dir / RESULTS_FILE).write_text(json.dumps(results, indent=1, default=str) + "\n")
    (run_dir / JUNIT_FILE).write_text(junit.render(results))
    (run_dir / REPORT_FILE).write_text(report.render(results, history), encoding="utf-8")
    return results


def judge(checkers: dict[str, Result], facts: dict[str, Any]) -> tuple[Validity, str]:
    """Jepsen's validity and the verdict word. "incomplete": the run was interrupted;
    "unknown": the harness failed, a checker could not decide, or the run did not test
    what it was asked (facts["missing"]) while finding nothing wrong."""
    if facts.get("interrupted"):
        return "unknown", "incomplete"
    valid = combine(checkers).valid if checkers else "unknown"
    if "harness_error" in facts or (valid is True and facts["missing"]):
        valid = "unknown"
    return valid, VERDICT_WORDS[valid]


def read_results(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / RESULTS_FILE).read_text())


def exit_code(results: dict[str, Any]) -> int:
    return EXIT_CODES[results["valid"]]


def link_latest(out: Path, run_dir: Path) -> None:
    """`reports/latest` -> this run (replaced atomically, so readers never see none)."""
    link = out / LATEST_LINK
    temporary = out / f".{LATEST_LINK}.tmp"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(run_dir.name)
    temporary.replace(link)


def versions() -> dict[str, str]:
    return {
        "replog": metadata.version("replog"),
        "python": platform.python_version(),
        "trio": trio.__version__,
    }


def _check(spec: dict[str, Any], history: list[Op], facts: dict[str, Any]) -> dict[str, Result]:
    config = Config.from_pairs(spec["effective_config"])
    try:
        results = workloads.check(spec["workload"], history, config)
    except HistoryError as error:
        facts.setdefault("harness_error", f"the recorded history is malformed: {error}")
        return {}
    # An interrupted run's brokers may have had the terminal's Ctrl-C too: not a finding.
    if "cluster" in facts and not facts.get("interrupted"):
        results["cluster"] = _cluster_check(facts["cluster"])
    return results


def _cluster_check(cluster: dict[str, Any]) -> Result:
    """A broker that died on its own, or did not stop cleanly on SIGTERM, is a bug too."""
    anomalies = {}
    if cluster["crashed"]:
        anomalies["broker-crashed"] = [{"node": n} for n in cluster["crashed"]]
    unclean = {n: c for n, c in cluster["exit_codes"].items() if c != 0}
    if unclean:
        anomalies["unclean-stop"] = [{"node": n, "exit_code": c} for n, c in unclean.items()]
    return Result(not anomalies, anomalies, {"exit_codes": cluster["exit_codes"]})


def _anomalies(checkers: dict[str, Result]) -> dict[str, dict[str, Any]]:
    return {
        f"{name}/{kind}": {"count": result.count(kind), "examples": cases[:EXAMPLES_PER_ANOMALY]}
        for name, result in checkers.items()
        for kind, cases in result.anomalies.items()
    }


def _history_stats(history: list[Op]) -> dict[str, Any]:
    by_outcome: dict[str, dict[str, int]] = {}
    for op in history:
        if op.is_client and op.type != "invoke":
            counts = by_outcome.setdefault(op.f, {"ok": 0, "fail": 0, "info": 0})
            counts[op.type] += 1
    processes = {op.process for op in history if op.is_client}
    faults = sum(1 for op in history if not op.is_client and op.type == "invoke")
    return {
        "ops": len(history),
        "by_f": by_outcome,
        "processes": len(processes),
        "nemesis_ops": faults,
        "faults": evidence.fired(history),
        "duration_s": history[-1].time / 1e9 if history else 0.0,
    }
