"""The guest-mode bridge: calls run inside one simulated trio run, errors come back out,
and the same seed and calls give the same run."""

from __future__ import annotations

import pytest
import trio
from sim_bridge import SimBridge
from stateful_harness import SimWorld


def test_calls_share_one_run_and_errors_come_back():
    bridge = SimBridge(seed=1)

    async def sleep_then_now(seconds: float) -> float:
        await trio.sleep(seconds)
        return trio.current_time()

    async def fail() -> None:
        await trio.sleep(1)
        raise ValueError("inside")

    try:
        first = bridge.call(sleep_then_now, 5.0)
        with pytest.raises(ValueError, match="inside"):
            bridge.call(fail)
        second = bridge.call(sleep_then_now, 3600.0)
    finally:
        bridge.close()
    assert first == pytest.approx(5.0, abs=0.01)
    assert second == pytest.approx(first + 1 + 3600, abs=0.01)


def _script(seed: int) -> list:
    world = SimWorld(seed, ("min.insync.replicas=2",))
    seen = []
    try:
        seen.append(world.produce(1, -1))
        leader = world.observe().believed_leader()
        world.crash(leader)
        seen.append(world.settle())
        seen.append(world.produce(2, 1))
        world.restart(leader)
        seen.append(world.settle())
        seen.append(world.bridge.call(_now))
    finally:
        world.close()
    return seen


async def _now() -> float:
    return trio.current_time()


def test_the_same_seed_and_calls_give_the_same_run():
    first = _script(4)
    assert first == _script(4)
    assert first[-1] != _script(5)[-1]
