"""Run the explorer over a suite of scopes for one configuration: `replog check`."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path

from model.config import Config
from model.machine import ReplicationModel, Scope
from specs import explorer
from specs.invariants import select
from specs.trace import render_mermaid, render_text

NEVER = 2**31 - 1  # no violation found yet


@dataclass
class ScopeRun:
    name: str
    scope: Scope
    outcome: explorer.Outcome


@dataclass
class CheckResult:
    config: Config
    runs: list[ScopeRun] = field(default_factory=list)

    @property
    def violation(self) -> explorer.Violation | None:
        """The shortest counterexample over all scopes (the earlier scope on a tie)."""
        found = [run.outcome.violation for run in self.runs if run.outcome.violation]
        return min(found, key=lambda v: len(v.trace)) if found else None

    @property
    def exhausted(self) -> bool:
        return all(run.outcome.stats.exhausted for run in self.runs)


@dataclass(frozen=True)
class Task:
    name: str
    config: Config
    scope: Scope
    invariants: tuple[str, ...]
    limits: explorer.Limits
    mode: str
    seed: int
    walks_max: int
    collect: bool = False
    position: int = 0  # in the suite: ties between equally short violations go to the first


# The best violation any worker has found so far, shared by the pool's workers, encoded
# as length * _POSITIONS + suite position so that `min` prefers shorter, then earlier.
_shortest: Synchronized | None = None
_POSITIONS = 64


def _share_shortest(shortest: Synchronized) -> None:
    global _shortest
    _shortest = shortest


def _longest_worth_searching(position: int) -> int:
    """The longest trace this scope may still report: as long as the best known if this
    scope comes first in the suite (it would win the tie), one step shorter otherwise."""
    best = _shortest.value if _shortest is not None else NEVER
    if best == NEVER:
        return NEVER
    length, found_at = divmod(best, _POSITIONS)
    return length if position < found_at else length - 1


def explore(task: Task) -> ScopeRun:
    """One scope's search; a top-level function so worker processes can run it."""
    model = ReplicationModel(task.config, task.scope)
    invariants = select(list(task.invariants))
    if task.mode == "bfs":
        known = None if task.collect else partial(_longest_worth_searching, task.position)
        outcome = explorer.bfs(
            model, invariants, task.limits, collect=task.collect, shortest_known=known
        )
        if outcome.violation is not None and _shortest is not None:
            encoded = len(outcome.violation.trace) * _POSITIONS + task.position
            with _shortest.get_lock():
                _shortest.value = min(_shortest.value, encoded)
    else:
        outcome = explorer.random_walks(model, invariants, task.limits, task.seed, task.walks_max)
    return ScopeRun(task.name, task.scope, outcome)


def run_check(
    config: Config,
    scopes: list[tuple[str, Scope, int]],
    invariants: list[str],
    limits: explorer.Limits,
    *,
    mode: str = "bfs",
    seed: int = 1,
    walks_max: int = 10_000,
    jobs: int | None = None,
) -> CheckResult:
    """Explore every scope (depth bound: the smaller of the scope's and `limits`'),
    in `jobs` worker processes (default: one per core)."""
    tasks = [
        Task(
            name,
            config,
            scope,
            tuple(invariants),
            replace(limits, depth_max=min(limits.depth_max, depth)),
            mode,
            seed,
            walks_max,
            position=position,
        )
        for position, (name, scope, depth) in enumerate(scopes)
    ]
    workers = max(1, min(len(tasks), jobs or os.cpu_count() or 1))
    shortest = multiprocessing.Value("i", NEVER)
    if workers == 1:
        _share_shortest(shortest)
        return CheckResult(config, [explore(task) for task in tasks])
    with ProcessPoolExecutor(
        max_workers=workers, initializer=_share_shortest, initargs=(shortest,)
    ) as pool:
        return CheckResult(config, list(pool.map(explore, tasks)))


def describe_run(run: ScopeRun) -> str:
    s = run.outcome.stats
    stopped = {
        "depth": "every trace up to this depth",
        "": "stopped at the violation",
        "shorter found elsewhere": "stopped: a shorter violation was found in another scope",
    }
    coverage = stopped.get(s.stopped_by, f"{s.stopped_by} limit hit")
    if s.exhausted:
        coverage = "exhausted"
    verdict = "VIOLATED" if run.outcome.violation else "held"
    return (
        f"scope {run.name:7s} {verdict:8s} {s.explored:>9,} transitions  {s.distinct:>9,} distinct "
        f"states  depth {s.depth:>3}  {s.elapsed_s:6.1f} s  {s.states_per_s:>8,.0f} states/s  "
        f"({coverage})"
    )


def write_counterexample(violation: explorer.Violation, out_dir: Path) -> tuple[Path, Path]:
    """trace.txt and trace.mmd (Mermaid sequenceDiagram) in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    text_path, diagram_path = out_dir / "trace.txt", out_dir / "trace.mmd"
    text_path.write_text(render_text(violation) + "\n")
    diagram_path.write_text(render_mermaid(violation))
    return text_path, diagram_path


def to_json(result: CheckResult, trace_paths: tuple[Path, Path] | None) -> dict:
    violation = result.violation
    out: dict = {
        "config": result.config.differences(),
        "verdict": "violated" if violation else "held",
        "exhausted": result.exhausted,
        "scopes": [
            {
                "name": run.name,
                "transitions": run.outcome.stats.explored,
                "distinct_states": run.outcome.stats.distinct,
                "depth": run.outcome.stats.depth,
                "seconds": round(run.outcome.stats.elapsed_s, 3),
                "exhausted": run.outcome.stats.exhausted,
                "violated": run.outcome.violation is not None,
            }
            for run in result.runs
        ],
    }
    if violation:
        out["violation"] = {
            "invariant": violation.invariant,
            "message": violation.message,
            "length": len(violation.trace),
            "steps": [action.describe() for action, _ in violation.trace],
        }
    if trace_paths:
        out["trace"], out["diagram"] = (str(p) for p in trace_paths)
    return out
