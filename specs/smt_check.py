"""`replog check --engine smt|both`: the SMT engine over a suite of scopes, and the
comparison of its verdict with the explicit-state explorer's."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from model.config import Config
from model.machine import ReplicationModel, Scope
from specs import smt
from specs.check import CheckResult
from specs.explorer import Violation
from specs.smt_rules import check_supported
from specs.smt_state import MAX_DEPTH

# Each extra step multiplies the solver's work by 2.5 to 3 on the default scopes; at 7
# the whole default suite costs about 100 s of CPU.
DEFAULT_DEPTH = 7


@dataclass
class SmtRun:
    name: str
    scope: Scope
    outcome: smt.SmtOutcome


@dataclass(frozen=True)
class SmtTask:
    name: str
    config: Config
    scope: Scope
    invariants: tuple[str, ...]
    depth: int
    time_limit_s: float


def validate(
    config: Config, scopes: list[tuple[str, Scope, int]], depth: int, other_search: bool
) -> None:
    """Raise ValueError for arguments the SMT engine cannot honour."""
    if other_search:
        raise ValueError(
            "--engine smt|both checks the invariants breadth-first: "
            "not with --liveness, --graph or --mode random"
        )
    if not 1 <= depth <= MAX_DEPTH:
        raise ValueError(f"--smt-depth must be between 1 and {MAX_DEPTH}")
    for name, scope, _ in scopes:
        try:
            check_supported(ReplicationModel(config, scope))
        except ValueError as error:
            raise ValueError(f"scope {name}: {error}") from None


def search_scope(task: SmtTask) -> SmtRun:
    """One scope's search; a top-level function so worker processes can run it."""
    model = ReplicationModel(task.config, task.scope)
    outcome = smt.search(model, list(task.invariants), task.depth, time_limit_s=task.time_limit_s)
    return SmtRun(task.name, task.scope, outcome)


def run_smt_check(
    config: Config,
    scopes: list[tuple[str, Scope, int]],
    invariants: list[str],
    depth: int,
    *,
    time_limit_s: float = 600.0,
    jobs: int | None = None,
) -> list[SmtRun]:
    """Each scope up to the smaller of `depth` and its own bound, stopping at its first
    (shortest) violation, in `jobs` worker processes (default: one per core)."""
    tasks = [
        SmtTask(name, config, scope, tuple(invariants), min(depth, bound), time_limit_s)
        for name, scope, bound in scopes
    ]
    workers = max(1, min(len(tasks), jobs or os.cpu_count() or 1))
    if workers == 1:
        return [search_scope(task) for task in tasks]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(search_scope, tasks))


def shortest(runs: list[SmtRun]) -> Violation | None:
    """The shortest counterexample over all scopes (the earlier scope on a tie)."""
    found = [run.outcome.violation for run in runs if run.outcome.violation]
    return min(found, key=lambda v: len(v.trace)) if found else None


def describe_run(run: SmtRun) -> str:
    s = run.outcome.stats
    violation = run.outcome.violation
    if violation is not None:
        coverage = f"violated after {len(violation.trace)} steps"
    elif s.stopped_by:
        coverage = f"{s.stopped_by} limit: every trace of <= {s.depth} steps covered"
    else:
        coverage = f"no violation within {s.depth} steps"
    verdict = "VIOLATED" if violation else "held"
    return (
        f"scope {run.name:7s} {verdict:8s} depth {s.depth:>3}/{s.bound:<3} "
        f"{s.queries:>3} queries  solver {s.solver_s:6.1f} s  total {s.elapsed_s:6.1f} s  "
        f"({coverage})"
    )


def covered(runs: list[SmtRun]) -> int:
    """Every trace of at most this many steps is covered in every scope."""
    return min(run.outcome.stats.depth for run in runs)


def summary(runs: list[SmtRun]) -> str:
    """The verdict line when no scope found a violation."""
    short = [run.name for run in runs if run.outcome.stats.stopped_by]
    line = f"no violation within {covered(runs)} steps"
    if short:
        return f"{line} (limit reached before the bound in scope {', '.join(short)})"
    return f"{line} (every scope searched to its bound)"


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
        "verdict": "violated" if violation else "held",
        "depth": covered(runs),
        "scopes": [
            {
                "name": run.name,
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
