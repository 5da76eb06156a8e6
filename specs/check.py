"""Run the explorer over a suite of scopes for one configuration: `replog check`."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from multiprocessing.queues import SimpleQueue
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import TypeVar

from model.config import Config
from model.machine import ReplicationModel, Scope
from specs import explorer
from specs.invariants import select
from specs.trace import render_mermaid, render_text
from specs.verdict import GO_FURTHER, HELD, UNKNOWN, VIOLATED, overall

NEVER = 2**31 - 1  # no violation found yet

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class ScopeRun:
    name: str
    scope: Scope
    outcome: explorer.Outcome
    bound: int  # the depth bound this search had
    mode: str = "bfs"

    @property
    def verdict(self) -> str:
        """Held only when the bound was reached; random walks never show it."""
        s = self.outcome.stats
        if self.outcome.violation is not None:
            return VIOLATED
        if self.mode == "bfs" and (s.exhausted or s.stopped_by == "depth"):
            return HELD
        return UNKNOWN

    def coverage(self) -> str:
        """What the search covered, and for an unknown scope how to go further."""
        s = self.outcome.stats
        if self.outcome.violation is not None:
            return f"violated after {len(self.outcome.violation.trace)} steps"
        if self.mode == "random":
            timed_out = ", stopped by --time-limit" if s.stopped_by == "time" else ""
            return (
                f"no violation in {s.walks:,} random walks of <= {self.bound} steps{timed_out}: "
                "a sample, not a proof"
            )
        if s.exhausted:
            return "state space exhausted"
        if s.stopped_by == "depth":
            return f"every trace of <= {s.depth} steps explored: the depth bound"
        if s.stopped_by == "shorter found elsewhere":
            return (
                f"stopped after every trace of <= {s.depth} steps: a shorter violation "
                "was found in another scope"
            )
        return (
            f"{s.stopped_by} limit hit before the depth bound: every trace of <= {s.depth} "
            f"of {self.bound} steps explored, {s.distinct:,} distinct states; "
            f"{GO_FURTHER[s.stopped_by]}"
        )


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

    @property
    def verdict(self) -> str:
        return overall(run.verdict for run in self.runs)


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
    progress_every_s: float | None = None  # None: no progress reports
    title: str = ""  # what progress lines call this search (default: scope NAME)


# A long search reports how far it got at least this often (the promise).
PROGRESS_EVERY_S = 10.0

# Called in the parent process with each progress line of a worker's search.
OnProgress = Callable[[str], None]

# The best violation any worker has found so far, shared by the pool's workers, encoded
# as length * _POSITIONS + suite position so that `min` prefers shorter, then earlier.
_shortest: Synchronized | None = None
_POSITIONS = 64
# Where the workers send their progress lines; the parent relays them to its callback.
_progress: SimpleQueue | None = None


def _share(shortest: Synchronized | None, progress: SimpleQueue | None) -> None:
    global _shortest, _progress
    _shortest, _progress = shortest, progress


def _share_in_worker(shortest: Synchronized, progress: SimpleQueue | None) -> None:
    """A worker's start: Ctrl-C reaches the whole process group, and only the parent
    acts on it (by terminating the pool), so a worker prints no traceback of its own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _share(shortest, progress)


def progress_interval(on_progress: OnProgress | None) -> float | None:
    """How often searches report: PROGRESS_EVERY_S, read when the tasks are made (tests
    shorten it), or never when nobody listens."""
    return PROGRESS_EVERY_S if on_progress is not None else None


def send_progress(line: str) -> None:
    """Report from a search running under `run_in_workers` (nowhere if nobody listens)."""
    if _progress is not None:
        _progress.put(line)


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
    progress = None
    if task.progress_every_s is not None:
        progress = explorer.Progress(partial(_report, task), task.progress_every_s)
    if task.mode == "bfs":
        known = None if task.collect else partial(_longest_worth_searching, task.position)
        outcome = explorer.bfs(
            model,
            invariants,
            task.limits,
            collect=task.collect,
            shortest_known=known,
            progress=progress,
        )
        if outcome.violation is not None and _shortest is not None:
            encoded = len(outcome.violation.trace) * _POSITIONS + task.position
            with _shortest.get_lock():
                _shortest.value = min(_shortest.value, encoded)
    else:
        outcome = explorer.random_walks(
            model, invariants, task.limits, task.seed, task.walks_max, progress
        )
    return ScopeRun(task.name, task.scope, outcome, task.limits.depth_max, task.mode)


def _report(task: Task, stats: explorer.Stats) -> None:
    send_progress(describe_progress(task, stats))


def run_in_workers(
    work: Callable[[T], R],
    tasks: list[T],
    jobs: int | None = None,
    on_progress: OnProgress | None = None,
) -> list[R]:
    """`work` on every task, in `jobs` worker processes (default: one per core). What
    the searches report with `send_progress` comes back through a queue to
    `on_progress`, called in this process."""
    workers = max(1, min(len(tasks), jobs or os.cpu_count() or 1))
    shortest = multiprocessing.Value("i", NEVER)
    progress, relay = None, None
    if on_progress is not None:
        progress = multiprocessing.SimpleQueue()
        relay = threading.Thread(target=_relay, args=(progress, on_progress), daemon=True)
        relay.start()
    try:
        if workers == 1:
            _share(shortest, progress)
            return [work(task) for task in tasks]
        # A Pool, not a ProcessPoolExecutor: leaving its block terminates the workers,
        # so an interrupted or failed check stops at once instead of waiting for every
        # running search to end. chunksize 1 keeps the costliest-first task order.
        with multiprocessing.Pool(
            workers, initializer=_share_in_worker, initargs=(shortest, progress)
        ) as pool:
            return pool.map(work, tasks, chunksize=1)
    finally:
        _share(None, None)
        if progress is not None and relay is not None:
            progress.put(None)
            relay.join()


def _relay(progress: SimpleQueue, on_progress: OnProgress) -> None:
    while (line := progress.get()) is not None:
        on_progress(line)


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
    on_progress: OnProgress | None = None,
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
            progress_every_s=progress_interval(on_progress),
        )
        for position, (name, scope, depth) in enumerate(scopes)
    ]
    return CheckResult(config, run_in_workers(explore, tasks, jobs, on_progress))


def describe_progress(task: Task, stats: explorer.Stats) -> str:
    """One progress line of a running search."""
    if task.mode == "random":
        done = f"{stats.walks:,} walks, {stats.explored:,} steps"
    else:
        done = (
            f"{stats.explored:,} transitions, {stats.distinct:,} distinct states, every trace "
            f"of <= {stats.depth} of {task.limits.depth_max} steps explored"
        )
    title = task.title or f"scope {task.name}"
    return f"{title}: {done}, {stats.elapsed_s:.0f} s, {stats.states_per_s:,.0f} states/s"


def describe_run(run: ScopeRun) -> str:
    s = run.outcome.stats
    if run.mode == "random":
        searched = f"{s.walks:>9,} walks        {s.explored:>9,} steps          "
    else:
        searched = f"{s.explored:>9,} transitions  {s.distinct:>9,} distinct states"
    return (
        f"scope {run.name:7s} {run.verdict.upper():8s} {searched}  depth {s.depth:>3}/"
        f"{run.bound:<3} {s.elapsed_s:6.1f} s  {s.states_per_s:>8,.0f} states/s  "
        f"({run.coverage()})"
    )


def summary(result: CheckResult) -> str:
    """The verdict line when no scope found a violation."""
    if result.verdict == HELD:
        exhausted = sum(run.outcome.stats.exhausted for run in result.runs)
        bounded = len(result.runs) - exhausted
        return (
            f"held: no violation; {exhausted} scope(s) exhausted, {bounded} searched to "
            "their depth bound"
        )
    if all(run.mode == "random" for run in result.runs):
        walks = sum(run.outcome.stats.walks for run in result.runs)
        return (
            f"unknown: no violation in {walks:,} random walks; walks sample the space and "
            "prove nothing (--mode bfs searches it to a bound)"
        )
    short = [run for run in result.runs if run.verdict == UNKNOWN]
    stopped = {run.outcome.stats.stopped_by for run in short}
    return (
        f"unknown: no violation found, but scope {', '.join(run.name for run in short)} "
        "stopped before its bound; "
        + "; ".join(GO_FURTHER[limit] for limit in sorted(stopped) if limit in GO_FURTHER)
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
        "verdict": result.verdict,
        "exhausted": result.exhausted,
        "scopes": [
            {
                "name": run.name,
                "verdict": run.verdict,
                "coverage": run.coverage(),
                "mode": run.mode,
                "transitions": run.outcome.stats.explored,
                "distinct_states": run.outcome.stats.distinct,
                "depth": run.outcome.stats.depth,
                "bound": run.bound,
                "seconds": round(run.outcome.stats.elapsed_s, 3),
                "exhausted": run.outcome.stats.exhausted,
                "stopped_by": run.outcome.stats.stopped_by,
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
