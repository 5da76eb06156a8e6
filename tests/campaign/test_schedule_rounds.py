"""The nemesis schedule fires every requested kind within the time limit on every seed.

The schedule runs on the real scheduler under trio's mock clock against a fake nemesis
whose ops take as long as the real ones can: a restart of a killed broker 5 s (3.5 s
seen on a loaded machine), a clock strobe 3 s, a pause's settling up to 1 s.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import trio
import trio.testing

from jepsen_py.campaign import evidence, nemesis
from jepsen_py.campaign import generator as g
from jepsen_py.campaign.recorder import Recorder
from jepsen_py.campaign.scheduler import Completion, Scheduler
from jepsen_py.history import Op

SEEDS = range(200)
DEMO_TIME_LIMIT_S = 30.0
CONCURRENCY = 1
OP_DURATION_S = {"restart": 5.0, "clock-strobe": 3.0, "pause": 1.0, "kill": 0.3, "crash": 0.3}
OTHER_OP_S = 0.05
OP_TIMEOUT_S = 10.0


class SlowNemesis:
    """Every op succeeds after as long as the real one can take, and reports a node."""

    def __init__(self) -> None:
        self.killed = False

    async def invoke(self, f: str, value: Any) -> Completion:
        restarts = f == "restart" and self.killed
        self.killed = f in ("kill", "crash") or (self.killed and f != "restart")
        await trio.sleep(
            OP_DURATION_S.get(f, OTHER_OP_S) if f != "restart" or restarts else OTHER_OP_S
        )
        target = {"target": value} if f != "partition" else {"kind": value}
        return Completion("ok", {**target, "nodes": [0], "cut": [["0", "1"]], "skew_ms": {"0": 1}})


class QuickClients:
    def open(self, process: int) -> QuickClients:
        return self

    async def __aenter__(self) -> QuickClients:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def invoke(self, f: str, value: Any) -> Completion:
        await trio.sleep(0.01)
        return Completion("ok", value)

    def timeout_type(self, f: str) -> str:
        return "info"


def scheduled(kinds: tuple[str, ...], time_limit_s: float, overlap: bool, seed: int) -> list[Op]:
    """The history of `time_limit_s` of the schedule at the default interval."""
    interval_s = nemesis.fitting_interval_s(kinds, time_limit_s, overlap)
    main = nemesis.schedule(kinds, interval_s, overlap)

    async def run() -> list[Op]:
        recorder = Recorder()
        rng = random.Random(seed)
        scheduler = Scheduler(CONCURRENCY, QuickClients(), SlowNemesis(), recorder, rng)
        await scheduler.run(g.time_limit(time_limit_s, main), OP_TIMEOUT_S)
        return recorder.ops

    return trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))


def starts(history: list[Op]) -> list[Op]:
    """The fault-starting invocations, in order."""
    return [
        op
        for op in history
        if op.process == "nemesis" and op.type == "invoke" and op.f in evidence.KIND_OF
    ]


def test_the_demo_fires_all_four_kinds_each_once_before_any_twice_on_every_seed() -> None:
    kinds = nemesis.DEFAULT_KINDS
    interval_s = nemesis.fitting_interval_s(kinds, DEMO_TIME_LIMIT_S, False)
    overrun_s = max(OP_DURATION_S.values()) - interval_s
    orders = set()
    for seed in SEEDS:
        history = scheduled(kinds, DEMO_TIME_LIMIT_S, False, seed)
        order = tuple(evidence.KIND_OF[op.f] for op in starts(history))
        assert sorted(order[: len(kinds)]) == sorted(kinds), f"seed {seed}: {order}"
        spec = {"nemeses": kinds, "time_limit_s": DEMO_TIME_LIMIT_S, "workload": "queue"}
        assert "nemeses_not_fired" not in evidence.gaps(spec, history), f"seed {seed}"
        # The timeline holds: fault k starts at (2k + 1) intervals, later only by as
        # much as an op before it overran its interval, never by the sum of overruns.
        for k, op in enumerate(starts(history)):
            planned_s = (2 * k + 1) * interval_s
            assert planned_s - 1e-6 <= op.time / 1e9 <= planned_s + overrun_s, (seed, k, op)
        # Each fault lasts its whole interval, however late it started.
        nemesis_invokes = [op for op in history if op.process == "nemesis" and op.type == "invoke"]
        for start, end in zip(nemesis_invokes[::2], nemesis_invokes[1::2], strict=False):
            assert (end.time - start.time) / 1e9 >= interval_s - 1e-6, (seed, start, end)
        orders.add(order[: len(kinds)])
    assert len(orders) > 20, "the order is shuffled per seed"


@pytest.mark.parametrize(
    "kinds",
    [
        nemesis.DEFAULT_KINDS,
        nemesis.KINDS,
        ("kill:leader", "kill:one", "pause", "partition:inbound"),
        ("kill:leader", "kill:one", "kill:minority", "clock"),
    ],
)
def test_overlap_rounds_nest_different_kinds_and_name_every_one(kinds: tuple[str, ...]) -> None:
    position = {name: i for i, name in enumerate(kinds)}
    for seed in range(50):
        pairs = nemesis.overlap_pairs(kinds, random.Random(seed))
        assert len(pairs) == nemesis.pairs_per_round(kinds)
        assert {name for pair in pairs for name in pair} == set(kinds), (seed, pairs)
        for outer, inner in pairs:
            assert outer.partition(":")[0] != inner.partition(":")[0], (seed, pairs)
            assert position[outer] < position[inner], "the earlier in --nemesis is outside"
        history = scheduled(kinds, DEMO_TIME_LIMIT_S, True, seed)
        spec = {"nemeses": kinds, "time_limit_s": DEMO_TIME_LIMIT_S, "workload": "queue"}
        assert "nemeses_not_fired" not in evidence.gaps(spec, history), (seed, kinds)


def test_the_default_interval_fits_a_round_and_a_spare_interval() -> None:
    kinds = nemesis.DEFAULT_KINDS
    assert nemesis.round_intervals(kinds, False) == 8
    assert nemesis.fitting_interval_s(kinds, 30.0, False) == 3.334, "30 s / 9, in whole ms"
    assert nemesis.fitting_interval_s(kinds, 600.0, False) == nemesis.INTERVAL_DEFAULT_S
    assert nemesis.round_fits(kinds, 3.334, 30.0, False)
    assert not nemesis.round_fits(kinds, 5.0, 30.0, False), "5 s fit only 3 of 4 in 30 s"
    # Too short for any sensible fault: the interval stays at the minimum, and says so.
    short_s = nemesis.fitting_interval_s(kinds, 4.0, False)
    assert short_s == nemesis.INTERVAL_MIN_S and not nemesis.round_fits(kinds, short_s, 4.0, False)
    assert nemesis.round_intervals((), False) == 0
