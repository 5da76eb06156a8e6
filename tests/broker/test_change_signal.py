"""Per-partition change signals: a waiter wakes for the signals it waits on, only those."""

from __future__ import annotations

import trio
import trio.testing

from impl.broker.partition import ChangeSignal, wait_for_any


def _run(main) -> None:
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_waiter_wakes_for_its_own_signals_only():
    _run(_waiters_wake_for_their_own_signals)


def test_a_cancelled_waiter_leaves_every_signal():
    _run(_cancelled_waiter_leaves)


def test_a_notify_before_the_wait_is_not_remembered():
    _run(_notify_before_wait)


async def _waiters_wake_for_their_own_signals() -> None:
    a, b, c = ChangeSignal(), ChangeSignal(), ChangeSignal()
    woken: list[str] = []

    async def waiter(name: str, signals: list[ChangeSignal]) -> None:
        await wait_for_any(signals)
        woken.append(name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter, "on a", [a])
        nursery.start_soon(waiter, "on b or c", [b, c])
        await trio.testing.wait_all_tasks_blocked()
        a.notify()
        await trio.testing.wait_all_tasks_blocked()
        assert woken == ["on a"]
        c.notify()
        await trio.testing.wait_all_tasks_blocked()
        assert woken == ["on a", "on b or c"]
    # A waiter woken by one signal leaves the others: nothing piles up on a quiet one.
    assert not a._waiters and not b._waiters and not c._waiters


async def _cancelled_waiter_leaves() -> None:
    a, b = ChangeSignal(), ChangeSignal()
    with trio.move_on_after(1):
        await wait_for_any([a, b])
    assert not a._waiters and not b._waiters


async def _notify_before_wait() -> None:
    signal = ChangeSignal()
    signal.notify()
    with trio.move_on_after(1) as scope:
        await signal.wait()
    assert scope.cancelled_caught
