"""Explicit-state exploration of the model: breadth-first (shortest counterexample) or
seeded random walks, with symmetry reduction over broker ids.

State invariants are checked once per distinct state; transition invariants on every
edge, since a state reached twice may be reached by a different transition.
"""

from __future__ import annotations

import gc
import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

from model.machine import Action, ReplicationModel
from model.state import State
from specs import symmetry
from specs.invariants import Invariant, first_violation, violations_of
from specs.symmetry import compose, inverse, permute, permute_action


@dataclass(frozen=True)
class Limits:
    """What stops a search. Only `depth_max` belongs to the question asked; a search
    stopped by `states_max` or `time_limit_s` (None: no limit) has no verdict."""

    depth_max: int = 40
    states_max: int = 3_000_000
    time_limit_s: float | None = None

    def deadline(self, started: float) -> float:
        return math.inf if self.time_limit_s is None else started + self.time_limit_s


@dataclass
class Stats:
    explored: int = 0  # transitions taken
    distinct: int = 0  # distinct (canonical) states stored
    depth: int = 0  # deepest BFS level completed or walk length reached
    elapsed_s: float = 0.0
    exhausted: bool = False  # the whole bounded space was covered
    stopped_by: str = ""  # "", "depth", "states", "time", "shorter found elsewhere"
    walks: int = 0  # random walks taken (random mode)

    @property
    def states_per_s(self) -> float:
        return self.distinct / self.elapsed_s if self.elapsed_s > 0 else 0.0


S = TypeVar("S")


@dataclass(frozen=True)
class Progress(Generic[S]):
    """Where a long search reports how far it got: `report(stats)` every `every_s`
    seconds (stats as of then; their `depth` counts the levels completed)."""

    report: Callable[[S], None]
    every_s: float


@dataclass
class Violation:
    invariant: str
    message: str
    trace: list[tuple[Action, State]]  # (action, state after it), from `initial`
    initial: State


@dataclass
class Outcome:
    violation: Violation | None  # the first found (a shortest one)
    stats: Stats = field(default_factory=Stats)
    violations: dict[str, Violation] = field(default_factory=dict)  # per invariant


def bfs(
    model: ReplicationModel,
    invariants: list[Invariant],
    limits: Limits,
    *,
    collect: bool = False,
    shortest_known: Callable[[], int] | None = None,
    progress: Progress[Stats] | None = None,
) -> Outcome:
    """Breadth-first search; the first violation of an invariant has a shortest trace.

    By default the search stops at the first violation. With `collect` it goes on and
    records each invariant's first counterexample, stopping once every invariant has
    one or the bounded space is covered (one search fills a safety-matrix row).
    `shortest_known()` says how long a trace is still worth finding (another search
    found one): this search stops before levels deeper than that.
    """
    with collector_paused():
        return _bfs(model, invariants, limits, collect, shortest_known, progress)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector. A search keeps millions of tuples alive
    and none of them is in a cycle: the collector would traverse them all again and
    again, finding nothing, for a third of the run time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _bfs(
    model: ReplicationModel,
    invariants: list[Invariant],
    limits: Limits,
    collect: bool,
    shortest_known: Callable[[], int] | None,
    progress: Progress[Stats] | None,
) -> Outcome:
    stats = Stats()
    started = time.perf_counter()
    canonical = symmetry.canonical if model.symmetric else _as_is
    enabled_actions, step = model.enabled_actions, model.step
    start = model.initial_state()
    initial, start_perm = canonical(start)
    labels = inverse(start_perm)
    violations: dict[str, Violation] = {
        inv.name: Violation(inv.name, message, [], start)
        for inv, message in violations_of(invariants, None, start)
    }
    pending = [i for i in invariants if i.name not in violations]
    found = len(violations)
    edge_checks = [i for i in pending if i.check is None]
    parents: dict[State, tuple[State, Action] | None] = {initial: None}
    frontier = [initial] if pending and (collect or not violations) else []
    deadline = limits.deadline(started)
    report_at = started + progress.every_s if progress is not None else math.inf
    while frontier:
        if stats.depth >= limits.depth_max:
            stats.stopped_by = "depth"
            break
        if shortest_known is not None and stats.depth + 1 > shortest_known():
            stats.stopped_by = "shorter found elsewhere"
            break
        next_frontier: list[State] = []
        for index, state in enumerate(frontier):
            if (
                shortest_known is not None
                and index % 512 == 0
                and stats.depth + 1 > shortest_known()
            ):
                stats.stopped_by = "shorter found elsewhere"
                frontier = []
                break
            for action in enabled_actions(state):
                after = step(state, action)
                stats.explored += 1
                key = canonical(after)[0]
                # One hash of the key instead of two (a lookup, then an insert).
                size = len(parents)
                parents.setdefault(key, (state, action))
                if len(parents) > size:
                    next_frontier.append(key)
                    broken = violations_of(pending, state, after)
                elif edge_checks:
                    broken = violations_of(edge_checks, state, after)
                else:
                    continue
                if not broken:
                    continue
                for inv, _ in broken:
                    path = [*_path(parents, state), action]
                    violations[inv.name] = _replay(model, canonical, start, labels, path, [inv])
                if len(violations) > found:
                    if not collect or len(violations) == len(invariants):
                        return _finish(stats, started, parents, violations)
                    found = len(violations)
                    pending = [i for i in invariants if i.name not in violations]
                    edge_checks = [i for i in pending if i.check is None]
            now = time.perf_counter()
            if len(parents) >= limits.states_max or now > deadline:
                stats.stopped_by = "states" if len(parents) >= limits.states_max else "time"
                frontier = []
                break
            if now >= report_at:
                report_at = now + progress.every_s
                progress.report(_snapshot(stats, started, len(parents), now))
        else:
            stats.depth += 1
            frontier = next_frontier
    stats.exhausted = not stats.stopped_by
    return _finish(stats, started, parents, violations)


def _finish(
    stats: Stats, started: float, parents: dict, violations: dict[str, Violation]
) -> Outcome:
    stats.elapsed_s = time.perf_counter() - started
    stats.distinct = len(parents)
    first = next(iter(violations.values()), None)
    return Outcome(first, stats, violations)


def _snapshot(stats: Stats, started: float, distinct: int, now: float) -> Stats:
    return replace(stats, distinct=distinct, elapsed_s=now - started)


def _path(parents: dict[State, tuple[State, Action] | None], state: State) -> list[Action]:
    actions: list[Action] = []
    link = parents[state]
    while link is not None:
        parent, action = link
        actions.append(action)
        link = parents[parent]
    actions.reverse()
    return actions


def _as_is(state: State) -> tuple[State, tuple[int, ...]]:
    return state, tuple(range(len(state.brokers)))


def replay(model: ReplicationModel, path: list[Action]) -> list[tuple[Action, State]]:
    """The trace of a path of canonical-space actions, as the explorer and `specs.graph`
    store them: each (action, state after it), re-run from the model's real initial state
    with one consistent broker labeling."""
    canonical = symmetry.canonical if model.symmetric else _as_is
    start = model.initial_state()
    labels = inverse(canonical(start)[1])
    return [(action, after) for action, _, after in _rerun(model, canonical, start, labels, path)]


def _rerun(
    model: ReplicationModel,
    canonical: Callable[[State], tuple[State, tuple[int, ...]]],
    start: State,
    labels: tuple[int, ...],
    path: list[Action],
) -> Iterator[tuple[Action, State, State]]:
    """(concrete action, state before, state after) along a path of canonical-space
    actions, keeping `concrete == permute(canon, labels)` throughout."""
    concrete, canon = start, permute(start, inverse(labels))
    for action in path:
        concrete_action = permute_action(action, labels)
        before = concrete
        concrete = model.step(concrete, concrete_action)
        yield concrete_action, before, concrete
        canon, perm = canonical(model.step(canon, action))
        labels = compose(inverse(perm), labels)


def _replay(
    model: ReplicationModel,
    canonical: Callable[[State], tuple[State, tuple[int, ...]]],
    start: State,
    labels: tuple[int, ...],
    path: list[Action],
    invariants: list[Invariant],
) -> Violation:
    """Re-run a violating path on the real initial state, up to the violation."""
    trace: list[tuple[Action, State]] = []
    for action, before, after in _rerun(model, canonical, start, labels, path):
        trace.append((action, after))
        found = first_violation(invariants, before, after)
        if found:
            return Violation(found[0], found[1], trace, start)
    raise AssertionError("replaying a violating path must violate an invariant")


def random_walks(
    model: ReplicationModel,
    invariants: list[Invariant],
    limits: Limits,
    seed: int,
    walks_max: int,
    progress: Progress[Stats] | None = None,
) -> Outcome:
    """Seeded random walks of up to depth_max steps each, for spaces too big to exhaust.
    They can find a violation, never show there is none."""
    stats = Stats()
    rng = random.Random(seed)
    started = time.perf_counter()
    deadline = limits.deadline(started)
    report_at = started + progress.every_s if progress is not None else math.inf
    initial = model.initial_state()
    for _ in range(walks_max):
        trace = list(_walk(model, initial, rng, limits.depth_max))
        stats.walks += 1
        stats.explored += len(trace)
        stats.depth = max(stats.depth, len(trace))
        before = initial
        for index, (_, after) in enumerate(trace):
            found = first_violation(invariants, before, after)
            if found:
                stats.elapsed_s = time.perf_counter() - started
                return Outcome(Violation(*found, trace[: index + 1], initial), stats)
            before = after
        now = time.perf_counter()
        if now > deadline:
            stats.stopped_by = "time"
            break
        if now >= report_at:
            report_at = now + progress.every_s
            progress.report(_snapshot(stats, started, stats.explored, now))
    stats.elapsed_s = time.perf_counter() - started
    stats.distinct = stats.explored
    return Outcome(None, stats)


def _walk(
    model: ReplicationModel, state: State, rng: random.Random, steps_max: int
) -> Iterator[tuple[Action, State]]:
    for _ in range(steps_max):
        actions = model.enabled_actions(state)
        if not actions:
            return
        action = actions[rng.randrange(len(actions))]
        state = model.step(state, action)
        yield action, state
