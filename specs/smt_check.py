"""`replog check --engine smt|both`: the SMT engine over a suite of scopes, and the
comparison of its verdict with the explicit-state explorer's."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

from model.config import Config
from model.machine import ReplicationModel, Scope
from specs import smt
from specs.check import CheckResult, OnProgress, progress_interval, run_in_workers, send_progress
from specs.explorer import Progress, Violation
from specs.smt_rules import check_supported
from specs.verdict import GO_FURTHER, HELD, UNKNOWN, VIOLATED, overall

# Each extra step multiplies the solver's work by 2.5 to 3 on the default scopes; at 7
# the whole default suite costs about 100 s of CPU.
DEFAULT_DEPTH = 7


@dataclass
class SmtRun:
    name: str
    scope: Scope
    outcome: smt.SmtOutcome

    @property
    def verdict(self) -> str:
        """Held only when every depth up to the bound was proven clean."""
        if self.outcome.violation is not None:
            return VIOLATED
        return UNKNOWN if self.outcome.stats.stopped_by else HELD


@dataclass(frozen=True)
class SmtTask:
    name: str
    config: Config
    scope: Scope
    invariants: tuple[str, ...]
    depth: int
    time_limit_s: float | None
    progress_every_s: float | None = None  # None: no progress reports


def validate(config: Config, scopes: list[tuple[str, Scope, int]], other_search: bool) -> None:
    """Raise ValueError for arguments the SMT engine cannot honour."""
    if other_search:
        raise ValueError(
            "--engine smt|both checks the invariants breadth-first: "
            "not with --liveness, --graph or --mode random"
        )
    for name, scope, _ in scopes:
        try:
            check_supported(ReplicationModel(config, scope))
        except ValueError as error:
            raise ValueError(f"scope {name}: {error}") from None


def search_scope(task: SmtTask) -> SmtRun:
    """One scope's search; a top-level function so worker processes can run it."""
    model = ReplicationModel(task.config, task.scope)
    progress = None
    if task.progress_every_s is not None:
        progress = Progress(partial(_report, task.name), task.progress_every_s)
    outcome = smt.search(
        model, list(task.invariants), task.depth, time_limit_s=task.time_limit_s, progress=progress
    )
    return SmtRun(task.name, task.scope, outcome)


def _report(name: str, stats: smt.SmtStats) -> None:
    send_progress(
        f"smt scope {name}: every trace of <= {stats.depth} of {stats.bound} steps proven "
        f"clean, solving depth {stats.depth + 1}; {stats.queries} queries, "
        f"{stats.elapsed_s:.0f} s"
    )


def run_smt_check(
    config: Config,
    scopes: list[tuple[str, Scope, int]],
    invariants: list[str],
    depth: int,
    *,
    time_limit_s: float | None = None,
    jobs: int | None = None,
    on_progress: OnProgress | None = None,
) -> list[SmtRun]:
    """Each scope up to the smaller of `depth` and its own bound, stopping at its first
    (shortest) violation, in `jobs` worker processes (default: one per core)."""
    every_s = progress_interval(on_progress)
    tasks = [
        SmtTask(name, config, scope, tuple(invariants), min(depth, bound), time_limit_s, every_s)
        for name, scope, bound in scopes
    ]
    return run_in_workers(search_scope, tasks, jobs, on_progress)


def shortest(runs: list[SmtRun]) -> Violation | None:
    """The shortest counterexample over all scopes (the earlier scope on a tie)."""
    found = [run.outcome.violation for run in runs if run.outcome.violation]
    return min(found, key=lambda v: len(v.trace)) if found else None


def describe_run(run: SmtRun) -> str:
    s = run.outcome.stats
    violation = run.outcome.violation
    if violation is not None:
        coverage = f"violated after {len(violation.trace)} steps"
    elif s.stopped_by == "time":
        coverage = (
            f"time limit hit before the bound: every trace of <= {s.depth} of {s.bound} "
            f"steps proven clean; {GO_FURTHER['time']}"
        )
    elif s.stopped_by:
        coverage = f"{s.stopped_by} gave up: every trace of <= {s.depth} steps proven clean"
    else:
        coverage = f"no violation within {s.depth} steps: the depth bound"
    return (
        f"scope {run.name:7s} {run.verdict.upper():8s} depth {s.depth:>3}/{s.bound:<3} "
        f"{s.queries:>3} queries  solver {s.solver_s:6.1f} s  total {s.elapsed_s:6.1f} s  "
        f"({coverage})"
    )


def covered(runs: list[SmtRun]) -> int:
    """Every trace of at most this many steps is covered in every scope."""
    return min(run.outcome.stats.depth for run in runs)


def summary(runs: list[SmtRun]) -> str:
    """The verdict line when no scope found a violation."""
    short = [run.name for run in runs if run.verdict == UNKNOWN]
    line = f"no violation within {covered(runs)} steps"
    if short:
        return f"unknown: {line}, but scope {', '.join(short)} stopped before its bound (see above)"
    return f"held: {line} (every scope searched to its bound)"


def _lengths(runs: list) -> dict[str, int]:
    """Scope name -> length of the counterexample found there (either engine's runs)."""
    return {
        run.name: len(run.outcome.violation.trace)
        for run in runs
        if run.outcome.violation is not None
    }


def disagreement(explicit: CheckResult, runs: list[SmtRun]) -> str | None:
    """Why the two engines' verdicts contradict each other, or None. The shorter of the
    two shortest counterexamples must be found by the other engine too, unless a time
    or state limit stopped that engine before that depth in that scope."""
    found_explicit, found_smt = _lengths(explicit.runs), _lengths(runs)
    best_explicit = min(found_explicit.values(), default=None)
    best_smt = min(found_smt.values(), default=None)
    if best_explicit == best_smt:
        return None
    if best_smt is None or (best_explicit is not None and best_explicit < best_smt):
        name = min(found_explicit, key=found_explicit.__getitem__)
        depth = next(run.outcome.stats.depth for run in runs if run.name == name)
        if depth < best_explicit:
            return None
        return (
            f"the explorer found a {best_explicit}-step violation in scope {name} that the "
            f"SMT engine rules out (it covered {depth} steps)"
        )
    name = min(found_smt, key=found_smt.__getitem__)
    stats = next(run.outcome.stats for run in explicit.runs if run.name == name)
    if not stats.exhausted and stats.depth < best_smt:
        return None
    return (
        f"the SMT engine found a {best_smt}-step violation in scope {name} (replayed in the "
        f"model) that the explorer missed (it completed {stats.depth} levels)"
    )


def to_json(config: Config, runs: list[SmtRun], paths: tuple[Path, Path] | None) -> dict:
    violation = shortest(runs)
    out: dict = {
        "engine": "smt",
        "config": config.differences(),
        "verdict": overall(run.verdict for run in runs),
        "depth": covered(runs),
        "scopes": [
            {
                "name": run.name,
                "verdict": run.verdict,
                "bound": run.outcome.stats.bound,
                "depth": run.outcome.stats.depth,
                "queries": run.outcome.stats.queries,
                "solver_seconds": round(run.outcome.stats.solver_s, 3),
                "seconds": round(run.outcome.stats.elapsed_s, 3),
                "stopped_by": run.outcome.stats.stopped_by,
                "violated": run.outcome.violation is not None,
            }
            for run in runs
        ],
    }
    if violation:
        out["violation"] = {
            "invariant": violation.invariant,
            "message": violation.message,
            "length": len(violation.trace),
            "steps": [action.describe() for action, _ in violation.trace],
        }
    if paths:
        out["trace"], out["diagram"] = (str(p) for p in paths)
    return out
