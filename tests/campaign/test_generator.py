"""Generator combinators, run by a pure simulation: every op takes a fixed time."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from jepsen_py.campaign import generator as g
from jepsen_py.campaign import nemesis

THREADS = (0, 1, 2, "nemesis")
Run = list[tuple[float, g.Thread, str, object]]


def simulate(
    gen: g.Gen, threads: tuple[g.Thread, ...] = THREADS, op_s: float = 0.1, seed: int = 0
) -> Run:
    """Every op the generator emits: (start time, thread, f, value), until exhausted."""
    rng = random.Random(seed)
    now, busy_until = 0.0, {}
    ran: Run = []
    for _ in range(100_000):
        busy_until = {t: end for t, end in busy_until.items() if end > now}
        step = gen.op(g.Context(now, threads, frozenset(threads) - busy_until.keys(), rng))
        if step is None:
            return ran
        gen = step.next
        if isinstance(step, g.Pending):
            wake = [*busy_until.values(), *([step.until_s] if step.until_s is not None else [])]
            assert wake, "a generator waits for nothing"
            now = min(wake)
            continue
        op = step.invocation
        now = max(now, op.at_s)
        assert op.thread not in busy_until, "ops go to free threads only"
        busy_until[op.thread] = now + op_s
        ran.append((now, op.thread, op.f, op.value))
    raise AssertionError("the generator never ended")


def fs(ran: Run) -> list[str]:
    return [f for _, _, f, _ in ran]


def test_templates_and_seq_run_in_order() -> None:
    ran = simulate(g.seq({"f": "a"}, {"f": "b", "value": 1}, {"f": "c"}))
    assert fs(ran) == ["a", "b", "c"]
    assert ran[1][3] == 1


def test_limit_and_counter_give_unique_numbered_ops() -> None:
    ran = simulate(g.limit(5, g.counter(lambda n, ctx: {"f": "send", "value": n})))
    assert [v for *_, v in ran] == [0, 1, 2, 3, 4]


def test_function_generators_run_until_they_return_none() -> None:
    values = iter(range(3))
    ran = simulate(g.lift(lambda ctx: next((({"f": "x", "value": v}) for v in values), None)))
    assert len(ran) == 3


def test_time_limit_stops_ops_due_at_or_after_the_deadline() -> None:
    ran = simulate(g.time_limit(2.0, g.delay(0.5, lambda ctx: {"f": "tick"})))
    assert [t for t, *_ in ran] == [0.0, 0.5, 1.0, 1.5]


def test_rate_staggers_ops_around_the_mean() -> None:
    ran = simulate(g.time_limit(100.0, g.rate(20, lambda ctx: {"f": "op"})), op_s=0.01)
    assert 1800 <= len(ran) <= 2200
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(ran)]
    assert max(gaps) < 0.1 + 1e-9


def test_clients_and_nemesis_route_to_their_threads() -> None:
    ran = simulate(
        g.any_of(
            g.clients(g.limit(6, lambda ctx: {"f": "c"})),
            g.nemesis(g.limit(2, lambda ctx: {"f": "n"})),
        )
    )
    assert {t for _, t, f, _ in ran if f == "c"} <= {0, 1, 2}
    assert {t for _, t, f, _ in ran if f == "n"} == {"nemesis"}
    assert Counter(fs(ran)) == {"c": 6, "n": 2}


def test_sleep_in_parallel_with_a_busy_stream_still_ends() -> None:
    """A side-by-side sleep keeps its deadline while the other generator emits."""
    ran = simulate(
        g.time_limit(
            3.0,
            g.any_of(
                g.clients(g.delay(0.05, lambda ctx: {"f": "c"})),
                g.nemesis(g.seq(g.sleep(1.0), {"f": "fault"})),
            ),
        )
    )
    (fault_at,) = [t for t, _, f, _ in ran if f == "fault"]
    assert 1.0 <= fault_at < 1.1


def test_phases_wait_for_every_thread() -> None:
    ran = simulate(g.phases(g.clients(g.limit(3, lambda ctx: {"f": "a"})), {"f": "b"}), op_s=1.0)
    assert fs(ran) == ["a", "a", "a", "b"]
    assert ran[-1][0] >= 1.0


def test_each_thread_runs_its_own_copy() -> None:
    ran = simulate(g.clients(g.each_thread(g.seq({"f": "open"}, {"f": "close"}))))
    for thread in (0, 1, 2):
        assert [f for _, t, f, _ in ran if t == thread] == ["open", "close"]


def test_mix_uses_every_generator_and_one_of_runs_one_to_its_end() -> None:
    mixed = simulate(g.limit(200, g.mix([lambda ctx: {"f": "a"}, lambda ctx: {"f": "b"}])))
    assert set(fs(mixed)) == {"a", "b"}
    for seed in range(10):
        chosen = simulate(
            g.one_of([g.seq({"f": "a1"}, {"f": "a2"}), g.seq({"f": "b1"}, {"f": "b2"})]),
            seed=seed,
        )
        assert fs(chosen) in (["a1", "a2"], ["b1", "b2"])


def test_repeat_restarts_from_the_beginning() -> None:
    ran = simulate(g.repeat(g.seq({"f": "start"}, g.sleep(1.0), {"f": "stop"}), times=3))
    assert fs(ran) == ["start", "stop"] * 3
    assert [t for t, *_ in ran][:3] == [0.0, 1.0, 1.0]


def test_same_seed_same_choices() -> None:
    def run(seed: int) -> Run:
        gen = g.limit(50, g.counter(lambda n, ctx: {"f": "x", "value": ctx.rng.random()}))
        return simulate(g.stagger(0.1, gen), seed=seed)

    assert run(1) == run(1)
    assert run(1) != run(2)


def _schedule_ops(kinds: tuple[str, ...], overlap: bool, seed: int = 0) -> list[tuple]:
    gen = g.time_limit(200.0, nemesis.schedule(kinds, 5.0, overlap))
    return [(at, f, value) for at, _, f, value in simulate(gen, seed=seed)]


def test_overlap_nests_the_later_kind_inside_the_earlier_one() -> None:
    ops = _schedule_ops(("partition:inbound", "crash:leader"), overlap=True)
    fs = [f for _, f, _ in ops]
    cycle = ["partition", "crash", "restart", "heal"]
    assert fs[: 4 * (len(fs) // 4)] == cycle * (len(fs) // 4) and len(fs) >= 8
    assert {value for _, f, value in ops if f == "partition"} == {"inbound"}
    assert {value for _, f, value in ops if f == "crash"} == {"leader"}
    start, crash = ops[0][0], ops[1][0]
    assert crash - start == pytest.approx(5.0, abs=0.2), "the crash waits for the ISR to shrink"


def test_without_overlap_one_fault_at_a_time_of_any_variant() -> None:
    ops = _schedule_ops(("kill", "clock:all"), overlap=False, seed=3)
    ends = {"kill": "restart", "clock-bump": "clock-reset", "clock-strobe": "clock-reset"}
    starts = [(f, value) for _, f, value in ops[::2]]
    assert [f for _, f, _ in ops[1::2]] == [ends[f] for f, _ in starts][: len(ops[1::2])]
    assert {value for f, value in starts if f.startswith("clock")} == {"all"}
    assert {value for f, value in starts if f == "kill"} <= set(nemesis.KILL_TARGETS)
    assert len({f for f, _ in starts}) > 1
