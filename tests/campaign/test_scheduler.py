"""The scheduler with in-memory clients and nemesis, on trio's mock clock."""

from __future__ import annotations

import random
from typing import Any

import trio
import trio.testing

from jepsen_py.campaign import generator as g
from jepsen_py.campaign import nemesis as nemeses
from jepsen_py.campaign.recorder import Recorder
from jepsen_py.campaign.scheduler import Completion, Scheduler
from jepsen_py.history import Op, pair_positions, validate

CONCURRENCY = 3


class FakeClient:
    """`write` succeeds, `flaky` is unknown (info), `slow` never returns."""

    def __init__(self, process: int, opened: list[int]) -> None:
        opened.append(process)

    async def __aenter__(self) -> FakeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def invoke(self, f: str, value: Any) -> Completion:
        await trio.sleep(0.01)
        if f == "flaky":
            return Completion("info", None, "lost")
        if f == "slow":
            await trio.sleep_forever()
        return Completion("ok", value)


class FakeClients:
    def __init__(self) -> None:
        self.opened: list[int] = []

    def open(self, process: int) -> FakeClient:
        return FakeClient(process, self.opened)

    def timeout_type(self, f: str) -> str:
        return "info"


class FakeNemesis:
    async def invoke(self, f: str, value: Any) -> Completion:
        return Completion("ok", {"did": f})


def run(gen: g.Gen, op_timeout_s: float = 1.0) -> tuple[list[Op], FakeClients]:
    clients = FakeClients()

    async def main() -> list[Op]:
        recorder = Recorder()
        scheduler = Scheduler(CONCURRENCY, clients, FakeNemesis(), recorder, random.Random(7))
        await scheduler.run(gen, op_timeout_s)
        return recorder.ops

    history = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    validate(history)
    return history, clients


def test_every_op_completes_and_processes_stay_single_threaded() -> None:
    history, _ = run(g.clients(g.limit(30, g.counter(lambda n, ctx: {"f": "write", "value": n}))))
    pairs = pair_positions(history)
    assert len(pairs) == 30
    assert all(history[ret].type == "ok" for _, ret in pairs if ret is not None)
    assert {op.process for op in history} <= set(range(CONCURRENCY))


def test_info_retires_the_process_and_the_thread_goes_on_as_a_new_one() -> None:
    history, clients = run(
        g.clients(g.each_thread(g.seq({"f": "flaky"}, {"f": "write"}, {"f": "write"})))
    )
    infos = [op.process for op in history if op.type == "info"]
    assert sorted(infos) == [0, 1, 2]
    later = {op.process for op in history if op.f == "write"}
    assert later == {3, 4, 5}, "each thread continues as process + concurrency"
    assert sorted(clients.opened)[:6] == [0, 1, 2, 3, 4, 5]


def test_an_op_out_of_time_ends_as_the_factory_says() -> None:
    history, _ = run(g.clients({"f": "slow"}), op_timeout_s=2.0)
    (done,) = [op for op in history if op.type != "invoke"]
    assert done.type == "info" and "2.0 s" in done.error
    assert done.time >= 2_000_000_000


def test_nemesis_ops_run_as_process_nemesis_beside_clients() -> None:
    gen = g.time_limit(
        10.0,
        g.any_of(
            g.clients(g.rate(10, lambda ctx: {"f": "write"})),
            nemeses.schedule(("kill", "partition"), interval_s=2.0),
        ),
    )
    history, _ = run(gen)
    faults = [op for op in history if op.process == "nemesis"]
    assert faults and all(op.value == {"did": op.f} for op in faults if op.type == "ok")
    starts = [op for op in faults if op.type == "invoke"]
    assert [op.time // 1_000_000_000 for op in starts][:2] == [2, 4]
    for start, end in zip(starts[::2], starts[1::2], strict=False):
        assert (start.f, end.f) in (("kill", "restart"), ("partition", "heal"))
