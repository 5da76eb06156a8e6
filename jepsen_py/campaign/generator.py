"""Jepsen-style generators: pure values that say which op a free thread runs next.

`gen.op(ctx)` answers with one of
- `None`: the generator is exhausted;
- `Pending(until_s, next)`: nothing to run now; ask `next` again once an op completes,
  or at `until_s` (None: only after a completion);
- `Emit(invocation, next)`: run `invocation` on its thread, not before `invocation.at_s`,
  and continue with `next`.

Generators never mutate themselves; state (a counter, a deadline) lives in the `next`
value they return, so a generator can be stored, restarted and tested as plain data.
Randomness comes from `ctx.rng`, which the scheduler seeds, so the choices replay from
the campaign's seed.

Threads are the scheduler's workers: integers for clients, "nemesis" for the nemesis.
A plain dict `{"f": ..., "value": ...}` is a generator of that one op on any free
thread; a function `ctx -> dict | None` is a generator that calls it for every op.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Union

NEMESIS = "nemesis"
Thread = int | str
Template = Mapping[str, Any]


@dataclass(frozen=True)
class Context:
    """What a generator may look at: the time since the campaign started, every thread,
    the threads free to take an op now, and the campaign's seeded RNG."""

    time_s: float
    threads: tuple[Thread, ...]
    free: frozenset[Thread]
    rng: random.Random = field(compare=False)

    def restrict(self, keep: Callable[[Thread], bool]) -> Context:
        threads = tuple(t for t in self.threads if keep(t))
        return replace(self, threads=threads, free=frozenset(t for t in self.free if keep(t)))

    def all_free(self) -> bool:
        return self.free >= set(self.threads)


@dataclass(frozen=True)
class Invocation:
    f: str
    value: Any
    thread: Thread
    at_s: float


@dataclass(frozen=True)
class Pending:
    until_s: float | None
    next: Gen


@dataclass(frozen=True)
class Emit:
    invocation: Invocation
    next: Gen


Step = Pending | Emit | None
GenLike = Union["Gen", Template, Callable[["Context"], Template | None]]


class Gen:
    """Base of every combinator; subclasses are frozen dataclasses."""

    def op(self, ctx: Context) -> Step:
        raise NotImplementedError


def lift(source: GenLike) -> Gen:
    """A Gen from a Gen, an op template or a template function."""
    if isinstance(source, Gen):
        return source
    if isinstance(source, Mapping):
        return Once(source)
    if callable(source):
        return FromFunction(source)
    raise TypeError(f"not a generator: {source!r}")


def _on_free_thread(template: Template, ctx: Context) -> Invocation:
    """The template on a free thread, chosen by the RNG."""
    thread = ctx.rng.choice(sorted(ctx.free, key=str))
    return Invocation(template["f"], template.get("value"), thread, ctx.time_s)


@dataclass(frozen=True)
class Nothing(Gen):
    def op(self, ctx: Context) -> Step:
        return None


@dataclass(frozen=True)
class Once(Gen):
    template: Template

    def op(self, ctx: Context) -> Step:
        if not ctx.free:
            return Pending(None, self)
        return Emit(_on_free_thread(self.template, ctx), Nothing())


@dataclass(frozen=True)
class FromFunction(Gen):
    """Calls `make(ctx)` for each op, until it returns None."""

    make: Callable[[Context], Template | None]

    def op(self, ctx: Context) -> Step:
        if not ctx.free:
            return Pending(None, self)
        template = self.make(ctx)
        return None if template is None else Emit(_on_free_thread(template, ctx), self)


@dataclass(frozen=True)
class Counter(Gen):
    """Ops numbered from `start`: `make(n, ctx)` builds the n-th (for unique values)."""

    make: Callable[[int, Context], Template]
    start: int = 0

    def op(self, ctx: Context) -> Step:
        if not ctx.free:
            return Pending(None, self)
        invocation = _on_free_thread(self.make(self.start, ctx), ctx)
        return Emit(invocation, replace(self, start=self.start + 1))


@dataclass(frozen=True)
class Seq(Gen):
    """Each generator until it is exhausted, then the next, without waiting in between."""

    gens: tuple[Gen, ...]

    def op(self, ctx: Context) -> Step:
        for position, gen in enumerate(self.gens):
            step = gen.op(ctx)
            if step is not None:
                return _with_next(step, Seq((step.next, *self.gens[position + 1 :])))
        return None


@dataclass(frozen=True)
class Phases(Gen):
    """Like Seq, but each phase starts only once every thread finished the one before."""

    gens: tuple[Gen, ...]
    started: bool = True

    def op(self, ctx: Context) -> Step:
        if not self.gens:
            return None
        if not self.started:
            if not ctx.all_free():
                return Pending(None, self)
            return replace(self, started=True).op(ctx)
        step = self.gens[0].op(ctx)
        if step is None:
            return Phases(self.gens[1:], started=False).op(ctx)
        return _with_next(step, Phases((step.next, *self.gens[1:])))


@dataclass(frozen=True)
class Repeat(Gen):
    """`gen` from its start again each time it is exhausted, `times` times (None: forever)."""

    gen: Gen
    times: int | None = None
    current: Gen | None = None

    def op(self, ctx: Context) -> Step:
        step = (self.gen if self.current is None else self.current).op(ctx)
        if step is not None:
            return _with_next(step, replace(self, current=step.next))
        left = None if self.times is None else self.times - 1
        if (left is not None and left <= 0) or self.current is None:
            return None
        return Repeat(self.gen, left).op(ctx)


@dataclass(frozen=True)
class Mix(Gen):
    """Each op from a randomly chosen generator; exhausted ones are dropped."""

    gens: tuple[Gen, ...]

    def op(self, ctx: Context) -> Step:
        gens = self.gens
        while gens:
            position = ctx.rng.randrange(len(gens))
            step = gens[position].op(ctx)
            if step is None:
                gens = gens[:position] + gens[position + 1 :]
                continue
            return _with_next(step, Mix((*gens[:position], step.next, *gens[position + 1 :])))
        return None


@dataclass(frozen=True)
class Rounds(Gen):
    """Round after round, forever: `make_round(rng, number)` gives round `number`'s
    generators (from 0), which run one after another; the next round is made once the
    last one is exhausted. A round whose generators are all exhausted at once ends it
    (no endless loop)."""

    make_round: Callable[[random.Random, int], tuple[Gen, ...]]
    made: int = 0
    left: tuple[Gen, ...] = ()

    def op(self, ctx: Context) -> Step:
        left, made, fresh = self.left, self.made, False
        while True:
            if not left:
                if fresh:
                    return None
                left, made, fresh = self.make_round(ctx.rng, made), made + 1, True
                continue
            step = left[0].op(ctx)
            if step is not None:
                return _with_next(step, replace(self, made=made, left=(step.next, *left[1:])))
            left = left[1:]


@dataclass(frozen=True)
class Anchored(Gen):
    """`make(origin_s)`, where `origin_s` is the time it is first asked: for a
    generator that keeps to a timeline of its own (sleeps until fixed times after it
    began, so that an op that ran long delays no later one)."""

    make: Callable[[float], Gen]

    def op(self, ctx: Context) -> Step:
        return self.make(ctx.time_s).op(ctx)


@dataclass(frozen=True)
class OneOf(Gen):
    """One generator chosen at random when first asked, then run alone to its end."""

    gens: tuple[Gen, ...]
    chosen: Gen | None = None

    def op(self, ctx: Context) -> Step:
        if not self.gens:
            return None
        chosen = (
            self.gens[ctx.rng.randrange(len(self.gens))] if self.chosen is None else self.chosen
        )
        step = chosen.op(ctx)
        return None if step is None else _with_next(step, replace(self, chosen=step.next))


@dataclass(frozen=True)
class AnyOf(Gen):
    """Every generator side by side; the earliest op wins (how clients and the nemesis
    share one schedule)."""

    gens: tuple[Gen, ...]

    def op(self, ctx: Context) -> Step:
        live = [(gen, step) for gen in self.gens if (step := gen.op(ctx)) is not None]
        if not live:
            return None
        chosen = _earliest(step for _, step in live)
        nexts = tuple(_advanced(gen, step, chosen) for gen, step in live)
        if chosen is None:
            return Pending(_wake(step for _, step in live), AnyOf(nexts))
        return Emit(chosen.invocation, AnyOf(nexts))


@dataclass(frozen=True)
class OnThreads(Gen):
    """`gen` sees only the threads `keep` accepts (only clients, only the nemesis...)."""

    keep: Callable[[Thread], bool]
    gen: Gen

    def op(self, ctx: Context) -> Step:
        step = self.gen.op(ctx.restrict(self.keep))
        return None if step is None else _with_next(step, replace(self, gen=step.next))


@dataclass(frozen=True)
class EachThread(Gen):
    """Every thread runs its own copy of `gen` (per-process sequencing)."""

    gen: Gen
    copies: tuple[tuple[Thread, Gen], ...] | None = None

    def op(self, ctx: Context) -> Step:
        copies = tuple((t, self.gen) for t in ctx.threads) if self.copies is None else self.copies
        live = [
            (thread, gen, step)
            for thread, gen in copies
            if (step := gen.op(ctx.restrict(lambda t, mine=thread: t == mine))) is not None
        ]
        if not live:
            return None
        chosen = _earliest(step for _, _, step in live)
        nexts = tuple((thread, _advanced(gen, step, chosen)) for thread, gen, step in live)
        if chosen is None:
            return Pending(_wake(step for _, _, step in live), replace(self, copies=nexts))
        return Emit(chosen.invocation, replace(self, copies=nexts))


@dataclass(frozen=True)
class Spaced(Gen):
    """Each op at least `gap(rng)` seconds after the one before (stagger, delay)."""

    gap: Callable[[random.Random], float]
    gen: Gen
    next_s: float | None = None

    def op(self, ctx: Context) -> Step:
        step = self.gen.op(ctx)
        if not isinstance(step, Emit):
            return None if step is None else Pending(step.until_s, replace(self, gen=step.next))
        at_s = max(step.invocation.at_s, self.next_s or 0.0)
        return Emit(
            replace(step.invocation, at_s=at_s),
            replace(self, gen=step.next, next_s=at_s + self.gap(ctx.rng)),
        )


@dataclass(frozen=True)
class Sleep(Gen):
    """No op for `duration_s` from the first time it is asked, then exhausted."""

    duration_s: float
    until_s: float | None = None

    def op(self, ctx: Context) -> Step:
        until_s = ctx.time_s + self.duration_s if self.until_s is None else self.until_s
        if ctx.time_s >= until_s:
            return None
        return Pending(until_s, replace(self, until_s=until_s))


@dataclass(frozen=True)
class Limit(Gen):
    """At most `remaining` ops."""

    remaining: int
    gen: Gen

    def op(self, ctx: Context) -> Step:
        if self.remaining <= 0:
            return None
        step = self.gen.op(ctx)
        if step is None:
            return None
        used = 1 if isinstance(step, Emit) else 0
        return _with_next(step, Limit(self.remaining - used, step.next))


@dataclass(frozen=True)
class TimeLimit(Gen):
    """Ops due within `duration_s` of the first time it is asked; then exhausted."""

    duration_s: float
    gen: Gen
    deadline_s: float | None = None

    def op(self, ctx: Context) -> Step:
        deadline_s = ctx.time_s + self.duration_s if self.deadline_s is None else self.deadline_s
        if ctx.time_s >= deadline_s:
            return None
        step = self.gen.op(ctx)
        if step is None:
            return None
        limited = replace(self, gen=step.next, deadline_s=deadline_s)
        if isinstance(step, Pending):
            until_s = deadline_s if step.until_s is None else min(step.until_s, deadline_s)
            return Pending(until_s, limited)
        if step.invocation.at_s >= deadline_s:
            return Pending(deadline_s, replace(self, deadline_s=deadline_s))
        return Emit(step.invocation, limited)


def _with_next(step: Pending | Emit, next_gen: Gen) -> Pending | Emit:
    return replace(step, next=next_gen)


def _earliest(steps: Iterable[Pending | Emit]) -> Emit | None:
    """The emitted op due first (the first listed among equals), or None."""
    emits = [step for step in steps if isinstance(step, Emit)]
    return min(emits, key=lambda step: step.invocation.at_s, default=None)


def _advanced(gen: Gen, step: Pending | Emit, chosen: Emit | None) -> Gen:
    """A side-by-side generator's next state: an op not taken leaves it as it was, so it
    offers that op again; a pending one keeps what it learned (a deadline, say)."""
    if isinstance(step, Emit) and step is not chosen:
        return gen
    return step.next


def _wake(steps: Iterable[Pending | Emit]) -> float | None:
    return min(
        (s.until_s for s in steps if isinstance(s, Pending) and s.until_s is not None), default=None
    )


# ---- the combinator vocabulary, with Jepsen's names --------------------------------------


def seq(*gens: GenLike) -> Gen:
    return Seq(tuple(lift(g) for g in gens))


def phases(*gens: GenLike) -> Gen:
    return Phases(tuple(lift(g) for g in gens))


def repeat(gen: GenLike, times: int | None = None) -> Gen:
    return Repeat(lift(gen), times)


def mix(gens: Iterable[GenLike]) -> Gen:
    return Mix(tuple(lift(g) for g in gens))


def rounds(make_round: Callable[[random.Random, int], Iterable[GenLike]]) -> Gen:
    return Rounds(lambda rng, number: tuple(lift(g) for g in make_round(rng, number)))


def anchored(make: Callable[[float], GenLike]) -> Gen:
    return Anchored(lambda origin_s: lift(make(origin_s)))


def one_of(gens: Iterable[GenLike]) -> Gen:
    return OneOf(tuple(lift(g) for g in gens))


def any_of(*gens: GenLike) -> Gen:
    return AnyOf(tuple(lift(g) for g in gens))


def clients(gen: GenLike) -> Gen:
    return OnThreads(is_client, lift(gen))


def nemesis(gen: GenLike) -> Gen:
    return OnThreads(is_nemesis, lift(gen))


def each_thread(gen: GenLike) -> Gen:
    return EachThread(lift(gen))


def stagger(mean_gap_s: float, gen: GenLike) -> Gen:
    """Ops spaced by random gaps, uniform in [0, 2 * mean_gap_s): 1/mean_gap_s per second."""
    return Spaced(lambda rng: rng.uniform(0, 2 * mean_gap_s), lift(gen))


def rate(ops_per_s: float, gen: GenLike) -> Gen:
    """`ops_per_s` ops per second on average, in total over every thread `gen` uses."""
    assert ops_per_s > 0, "a rate must be positive"
    return stagger(1.0 / ops_per_s, gen)


def delay(gap_s: float, gen: GenLike) -> Gen:
    """Ops exactly `gap_s` apart."""
    return Spaced(lambda _: gap_s, lift(gen))


def sleep(duration_s: float) -> Gen:
    return Sleep(duration_s)


def sleep_until(at_s: float) -> Gen:
    """No op until the campaign clock reads `at_s` (none at all if it already does)."""
    return Sleep(0.0, at_s)


def limit(count: int, gen: GenLike) -> Gen:
    return Limit(count, lift(gen))


def time_limit(duration_s: float, gen: GenLike) -> Gen:
    return TimeLimit(duration_s, lift(gen))


def counter(make: Callable[[int, Context], Template], start: int = 0) -> Gen:
    return Counter(make, start)


def is_client(thread: Thread) -> bool:
    return isinstance(thread, int)


def is_nemesis(thread: Thread) -> bool:
    return thread == NEMESIS
