"""`Flag.wait_until`: set wins, the deadline wins, outer cancellation still ends the wait,
and it resumes exactly when `trio.move_on_at` would, on the SimulatedClock (a clock
timer) and on MockClock (a cancel scope)."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

from impl.runtime.waits import Flag, sleep_until
from impl.sim.guard import SimulatedClock, deterministic, run


@pytest.fixture(params=["simulated", "mock"])
def clock(request):
    return request.param


def _simulate(fn, clock: str):
    if clock == "simulated":
        return run(fn, seed=1)
    with deterministic(1):
        return trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))


def test_set_before_the_deadline_wakes_the_waiter_at_the_set(clock):
    async def main():
        flag = Flag()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_set_after, flag, 0.25)
            woken = await flag.wait_until(trio.current_time() + 1.0)
        return woken, trio.current_time(), flag.is_set()

    assert _simulate(main, clock) == (True, 0.25, True)


def test_the_deadline_ends_the_wait_and_a_later_set_wakes_nobody(clock):
    async def main():
        flag = Flag()
        woken = await flag.wait_until(trio.current_time() + 0.5)
        at = trio.current_time()
        flag.set()
        assert not flag._waiters, "a timed-out waiter is forgotten"
        return woken, at

    assert _simulate(main, clock) == (False, 0.5)


def test_a_passed_deadline_wins_over_a_set_flag_at_the_next_checkpoint(clock):
    async def main():
        flag = Flag()
        passed = await flag.wait_until(trio.current_time())
        flag.set()
        soon = trio.current_time() + 1.0
        return passed, await flag.wait_until(soon), await flag.wait_until(trio.current_time())

    # As `with trio.move_on_at(deadline): await event.wait()`: a passed deadline wins
    # even over a set event.
    assert _simulate(main, clock) == (False, True, False)


def test_outer_cancellation_ends_the_wait_and_voids_its_timer(clock):
    async def main():
        flag = Flag()
        with trio.move_on_after(0.1):
            await flag.wait_until(trio.current_time() + 5.0)
        cancelled_at = trio.current_time()
        flag.set()
        assert not flag._waiters
        # The voided 5 s timer does not keep the clock from jumping straight on.
        await trio.sleep(0.2)
        return cancelled_at, trio.current_time()

    assert _simulate(main, clock) == (0.1, pytest.approx(0.3))


def test_one_set_wakes_every_waiter_and_no_deadline_means_forever(clock):
    async def main():
        flag = Flag()
        results = []

        async def waiter(deadline):
            results.append(await flag.wait_until(deadline))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter, math.inf)
            nursery.start_soon(waiter, trio.current_time() + 2.0)
            await trio.sleep(1.0)
            flag.set()
        return results, trio.current_time()

    assert _simulate(main, clock) == ([True, True], 1.0)


def test_resumes_in_the_same_scheduling_pass_as_move_on_at():
    """Trajectories must not move: a Flag timer and a cancel scope's deadline, racing a
    sleeper due at the same instant, wake in the same batch."""

    async def race(use_flag: bool):
        order = []

        async def sleeper():
            await trio.sleep(0.5)
            order.append(("sleeper", trio.current_time()))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sleeper)
            if use_flag:
                await Flag().wait_until(trio.current_time() + 0.5)
            else:
                with trio.move_on_after(0.5):
                    await trio.Event().wait()
            order.append(("waiter", trio.current_time()))
        return order

    for seed in range(8):
        flagged = run(race, True, seed=seed)
        scoped = run(race, False, seed=seed)
        assert flagged == scoped, seed


def test_sleep_until_wakes_at_the_deadline_and_a_passed_one_is_a_checkpoint(clock):
    async def main():
        await sleep_until(trio.current_time() + 0.75)
        woke = trio.current_time()
        await sleep_until(woke - 1.0)
        return woke, trio.current_time()

    assert _simulate(main, clock) == (0.75, 0.75)


async def _set_after(flag: Flag, delay_s: float) -> None:
    await trio.sleep(delay_s)
    flag.set()


def test_the_simulated_clock_is_what_offers_wake_at():
    assert hasattr(SimulatedClock(), "wake_at")
    assert not hasattr(trio.testing.MockClock(), "wake_at")
