"""A bounded model checker of the core replication rules with z3: `replog check
--engine smt`.

The transition relation of `specs.smt_actions.Encoding` is unrolled one step at a time on
one incremental solver; at each depth k a query asks whether a pending invariant can be
violated after exactly k steps, so the first satisfiable depth is a shortest
counterexample. Each SMT step is one `model.machine.Action`; a satisfying assignment is
decoded into those actions and replayed in `ReplicationModel`, state by state, before it
is reported: a trace the model does not reproduce is an encoding bug (`EncodingError`),
never a violation.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import z3

from model.machine import Action, ReplicationModel
from model.state import State
from specs.explorer import Progress, Violation
from specs.invariants import INVARIANTS
from specs.smt_actions import Encoding, Option
from specs.smt_invariants import VIOLATED
from specs.smt_state import (
    Dims,
    SymState,
    abstract,
    equal,
    evaluate,
    fresh,
    leaves,
    literal,
    normalize,
    rebuild,
)


class EncodingError(AssertionError):
    """The SMT encoding and the model disagree: a bug, never a verdict."""


@dataclass
class SmtStats:
    bound: int  # the depth asked for
    depth: int = -1  # every trace of at most this many steps is covered
    elapsed_s: float = 0.0
    solver_s: float = 0.0  # time inside z3's check()
    queries: int = 0
    stopped_by: str = ""  # "" (bound reached or violation found), "time" or "solver (...)"


@dataclass
class SmtOutcome:
    stats: SmtStats
    violations: dict[str, Violation] = field(default_factory=dict)  # per invariant, shortest

    @property
    def violation(self) -> Violation | None:
        """A shortest counterexample over all invariants."""
        return min(self.violations.values(), key=lambda v: len(v.trace), default=None)


class Unrolling:
    """State terms s0..sk with s0 the model's initial state and one action per step.

    The step relation is built once over placeholder states and copied for each step by
    substitution, which z3 does natively: building the terms in Python for every step
    would cost more than solving the shallow depths.
    """

    def __init__(self, model: ReplicationModel, *, reduce: bool = True) -> None:
        self.model = model
        self.encoding = Encoding(model)
        # The incremental SAT solver (bit-blasting) rather than the general SMT core.
        self.solver = z3.SolverFor("QF_FD")
        self.template = self.encoding.initial()
        self._before = fresh(self.template, "before")
        self._after = fresh(self.template, "after")
        options = self.encoding.options(self._before)
        self.actions: list[Action] = [option.action for option in options]
        self._picks = [z3.Bool(f"pick.{i}") for i in range(len(options))]
        self._step = self._relation(options)
        self.independent = (
            _independence(self.encoding, self._before, options)
            if reduce
            else [set() for _ in options]
        )
        self._violated: dict[str, z3.BoolRef] = {}
        start = fresh(self.template, "s0")
        self.solver.add(equal(start, literal(self.template)))
        self.states: list[SymState] = [start]
        self.choices: list[list[z3.BoolRef]] = []

    @property
    def dims(self) -> Dims:
        return self.encoding.dims

    def _relation(self, options: list[Option]) -> z3.BoolRef:
        """One step from `_before` to `_after`: exactly one option is picked (one Bool
        each, so the SAT solver decides actions directly), its guard holds, and every
        field takes its value (unchanged by options that leave it)."""
        picks = self._picks
        moved = _merge(self._before, list(zip(picks, (o.after for o in options), strict=True)))
        after = self._after
        # Completing waiting produces reads only fields the step already fixed, so it can
        # read them from the next state's constants and keep the terms small.
        completed = self.encoding.complete_produces(after._replace(writes=moved.writes))
        return z3.And(
            z3.PbEq([(p, 1) for p in picks], 1),
            *(z3.Implies(p, o.guard) for p, o in zip(picks, options, strict=True)),
            *equal(after._replace(writes=()), moved._replace(writes=())),
            *equal(after.writes, completed.writes),
        )

    def _instantiate(
        self, term: z3.BoolRef, before: SymState, after: SymState, picks: list[z3.BoolRef]
    ) -> z3.BoolRef:
        pairs = [
            *zip(leaves(self._before), leaves(before), strict=True),
            *zip(leaves(self._after), leaves(after), strict=True),
            *zip(self._picks, picks, strict=True),
        ]
        return z3.substitute(term, *pairs)

    def extend(self) -> None:
        """Add step k -> k+1."""
        k = len(self.choices)
        after = fresh(self.template, f"s{k + 1}")
        choice = [z3.Bool(f"a{k}.{i}") for i in range(len(self.actions))]
        self.solver.add(self._instantiate(self._step, self.states[k], after, choice))
        if k >= 2:
            self._order(self.choices[k - 2], self.choices[k - 1])
        self.states.append(after)
        self.choices.append(choice)

    def violated(self, invariant: str, k: int) -> z3.BoolRef:
        """The invariant is violated in state k (reached from state k-1)."""
        if k == 0:
            return VIOLATED[invariant](None, self.states[0])
        if invariant not in self._violated:
            self._violated[invariant] = VIOLATED[invariant](self._before, self._after)
        term = self._violated[invariant]
        return self._instantiate(term, self.states[k - 1], self.states[k], self._picks)

    def _order(self, first: list[z3.BoolRef], second: list[z3.BoolRef]) -> None:
        """Partial-order reduction: two adjacent independent actions only in index order.
        Swapping them reaches the same state, so every state reachable in k steps is
        still reached in k steps (the trace's normal form). The last step is left free,
        as a transition invariant also reads the state before it."""
        for x, others in enumerate(self.independent):
            for y in others:
                if y < x:
                    self.solver.add(z3.Or(z3.Not(first[x]), z3.Not(second[y])))

    def decode(self, solution: z3.ModelRef) -> tuple[list[Action], list[SymState]]:
        actions = [
            next(
                a for a, c in zip(self.actions, choice, strict=True) if z3.is_true(solution.eval(c))
            )
            for choice in self.choices
        ]
        return actions, [evaluate(solution, state) for state in self.states]


def _independence(encoding: Encoding, state: SymState, options: list[Option]) -> list[set[int]]:
    """For each option, the options independent of it: neither writes a field the other
    reads or writes. Completing acks=all produces reads each waiting write's leader's
    view and HW, so two options that change view or HW of one broker are dependent."""
    position = {leaf.get_id(): i for i, leaf in enumerate(leaves(state))}
    base = list(leaves(state))
    footprints = []
    for option in options:
        writes = set()
        terms = [option.guard]
        for index, (before, value) in enumerate(zip(base, leaves(option.after), strict=True)):
            if not value.eq(before):
                writes.add(index)
                terms.append(value)
        reads = {position[c] for c in _constants(terms) if c in position}
        footprints.append((reads, writes, _completion_brokers(encoding, state, writes)))
    return [
        {
            j
            for j, (reads_b, writes_b, brokers_b) in enumerate(footprints)
            if j != i
            and not writes_a & (reads_b | writes_b)
            and not writes_b & reads_a
            and not brokers_a & brokers_b
        }
        for i, (reads_a, writes_a, brokers_a) in enumerate(footprints)
    ]


def _completion_brokers(encoding: Encoding, state: SymState, writes: set[int]) -> set[int]:
    if encoding.config.acks != -1:
        return set()
    base = list(leaves(state))
    index = {leaf.get_id(): i for i, leaf in enumerate(base)}
    out = set()
    for b, broker in enumerate(state.brokers):
        read = [*leaves(broker.view), broker.replica.hw]
        if any(index[leaf.get_id()] in writes for leaf in read):
            out.add(b)
    return out


def _constants(terms: list) -> set[int]:
    """Ids of the uninterpreted constants the terms mention."""
    seen: set[int] = set()
    found: set[int] = set()
    stack = list(terms)
    while stack:
        term = stack.pop()
        key = term.get_id()
        if key in seen:
            continue
        seen.add(key)
        if z3.is_const(term) and term.decl().kind() == z3.Z3_OP_UNINTERPRETED:
            found.add(key)
        else:
            stack.extend(term.children())
    return found


def _merge(old: SymState, options: list[tuple[z3.BoolRef, SymState]]) -> SymState:
    base = list(leaves(old))
    merged = list(base)
    for chosen, after in options:
        for index, (before, value) in enumerate(zip(base, leaves(after), strict=True)):
            if not value.eq(before):
                merged[index] = z3.If(chosen, value, merged[index])
    return rebuild(old, iter(merged))


def search(
    model: ReplicationModel,
    invariants: list[str],
    depth: int,
    *,
    collect: bool = False,
    time_limit_s: float | None = None,
    progress: Progress[SmtStats] | None = None,
) -> SmtOutcome:
    """Iterative deepening from 0 to `depth` steps. Stops at the first violation, or with
    `collect` finds each invariant's shortest one. Raises Unsupported for scopes the
    encoding does not cover and EncodingError if a counterexample does not replay.
    `progress` hears how far it got on time, even while the solver works."""
    started = time.perf_counter()
    deadline = math.inf if time_limit_s is None else started + time_limit_s
    stats = SmtStats(bound=depth)
    outcome = SmtOutcome(stats)
    unrolling = Unrolling(model)
    solver = unrolling.solver
    pending = list(invariants)

    def snapshot() -> SmtStats:
        return replace(stats, elapsed_s=time.perf_counter() - started)

    with _heartbeat(progress, snapshot):
        for k in range(depth + 1):
            if k:
                unrolling.extend()
            while pending:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    stats.stopped_by = "time"
                    break
                flags = {name: unrolling.violated(name, k) for name in pending}
                solver.push()
                solver.add(z3.Or(list(flags.values())))
                if remaining < math.inf:
                    solver.set("timeout", max(1, int(remaining * 1000)))
                checked = time.perf_counter()
                result = solver.check()
                stats.solver_s += time.perf_counter() - checked
                stats.queries += 1
                if result == z3.sat:
                    solution = solver.model()
                    hit = [n for n, f in flags.items() if z3.is_true(solution.eval(f, True))]
                    actions, states = unrolling.decode(solution)
                solver.pop()
                if result == z3.unknown:
                    reason = solver.reason_unknown()
                    timeout = "timeout" in reason or "canceled" in reason
                    stats.stopped_by = "time" if timeout else f"solver ({reason})"
                    break
                if result == z3.unsat:
                    # Proven for every path of k steps, so for every prefix of a longer one:
                    # telling the solver spares it re-deriving this at greater depths.
                    solver.add(z3.Not(z3.Or(list(flags.values()))))
                    break
                for name in hit:
                    outcome.violations[name] = replay(model, unrolling.dims, actions, states, name)
                pending = [name for name in pending if name not in hit]
                if not collect:
                    pending = []
            if stats.stopped_by:
                break
            stats.depth = k
            if not pending:
                break
    stats.elapsed_s = time.perf_counter() - started
    return outcome


@contextmanager
def _heartbeat(
    progress: Progress[SmtStats] | None, snapshot: Callable[[], SmtStats]
) -> Iterator[None]:
    """Report `snapshot()` to `progress` on a thread while the body runs: a single
    solver call can take minutes, and z3 releases the GIL while it works."""
    if progress is None:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(progress.every_s):
            progress.report(snapshot())

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def replay(
    model: ReplicationModel,
    dims: Dims,
    actions: list[Action],
    states: list[SymState],
    invariant: str,
) -> Violation:
    """Run the decoded actions through the model from its initial state, checking that
    each is enabled and leads to the state the solver claimed, and that the invariant
    is violated at the end; the model's states make the reported trace."""
    start = model.initial_state()
    _same(model, dims, start, states[0], "the initial state")
    state: State = start
    previous: State | None = None
    trace: list[tuple[Action, State]] = []
    for number, (action, claimed) in enumerate(zip(actions, states[1:], strict=True), 1):
        if action not in model.enabled_actions(state):
            raise EncodingError(f"step {number}: {action} is not enabled in the model")
        previous, state = state, model.step(state, action)
        trace.append((action, state))
        _same(model, dims, state, claimed, f"step {number} ({action.describe()})")
    inv = INVARIANTS[invariant]
    if inv.check is not None:
        message = inv.check(state)
    else:
        message = inv.transition(previous, state) if previous is not None else None
    if message is None:
        raise EncodingError(f"the model does not violate {invariant} at the end of the trace")
    return Violation(invariant, message, trace, start)


def _same(model: ReplicationModel, dims: Dims, state: State, claimed: SymState, at: str) -> None:
    real = normalize(abstract(state, dims), dims)
    where = difference(normalize(claimed, dims), real)
    if where is not None:
        raise EncodingError(f"{at}: the solver's state differs from the model's at {where}")


def difference(smt: object, real: object, path: str = "state") -> str | None:
    """The first field where two concrete trees differ, as a path with both values."""
    if isinstance(smt, tuple) and isinstance(real, tuple):
        names = getattr(smt, "_fields", None) or [str(i) for i in range(len(smt))]
        for name, a, b in zip(names, smt, real, strict=True):
            found = difference(a, b, f"{path}.{name}")
            if found is not None:
                return found
        return None
    return None if smt == real else f"{path} (smt {smt}, model {real})"
