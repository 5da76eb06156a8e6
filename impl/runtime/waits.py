"""A one-shot flag whose waiters can give up at a deadline, without a cancel scope when
the clock can wake a task itself.

A trio cancel scope costs about as much as a task step (entering it registers the
deadline, leaving it unregisters it), and the hot waits of the broker and the client
(a delayed fetch, an acks=all produce, the producer's sender loop) almost never reach
their deadline. On a clock with `wake_at(when, task, token)` (the simulator's
`SimulatedClock`) the deadline is one heap entry that the clock drops once `token`
says the waiter was woken otherwise. On any other clock the deadline is a cancel
scope, as `trio.move_on_at` would make it. Either way the waiter resumes in the same
scheduling pass as with `move_on_at`, and an outer cancellation still ends the wait.

`token` protocol the clock relies on: `park` (the number of the current park),
`parked_as(park)` (the waiter still sleeps in that park) and `woken()`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import trio


class _Waiter:
    """One parked task; `park` never changes (one waiter per wait)."""

    __slots__ = ("by_set", "deadline", "park", "scope", "sleeping", "task")

    def __init__(self, task: trio.lowlevel.Task, deadline: float) -> None:
        self.task = task
        self.park = 1
        self.sleeping = True
        self.by_set = False
        self.deadline = deadline
        # The cancel scope that holds the deadline on a clock without `wake_at`.
        self.scope: trio.CancelScope | None = None

    def parked_as(self, park: int) -> bool:
        return self.sleeping and self.park == park

    def woken(self) -> None:
        self.sleeping = False


class Flag:
    """Like `trio.Event` (set once, waiters wake on `set`), plus `wait_until(deadline)`."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[_Waiter] = []

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if waiter.sleeping:
                waiter.woken()
                waiter.by_set = True
                trio.lowlevel.reschedule(waiter.task)

    def hasten(self, deadline: float) -> None:
        """Bring the waiters' deadline forward to `deadline` (if it is earlier): a
        waiter that must look again at a known time need not be woken now for it."""
        wake_at = getattr(trio.lowlevel.current_clock(), "wake_at", None)
        for waiter in self._waiters:
            if not waiter.sleeping or deadline >= waiter.deadline:
                continue
            if deadline <= trio.current_time() or (wake_at is None and waiter.scope is None):
                self.set()
                return
            waiter.deadline = deadline
            if wake_at is not None:
                wake_at(deadline, waiter.task, waiter)
            else:
                assert waiter.scope is not None
                waiter.scope.deadline = deadline

    async def wait(self) -> None:
        await self.wait_until(math.inf)

    async def wait_until(self, deadline: float) -> bool:
        """True once set; False when trio's clock reaches `deadline` first (like leaving
        `with trio.move_on_at(deadline): await event.wait()` by its deadline)."""
        clock = trio.lowlevel.current_clock()
        if deadline <= clock.current_time():
            # move_on_at with a passed deadline cancels even a set event's checkpoint.
            await trio.lowlevel.checkpoint()
            return False
        if self._set:
            await trio.lowlevel.checkpoint()
            return True
        waiter = _Waiter(trio.lowlevel.current_task(), deadline)
        self._waiters.append(waiter)
        wake_at = getattr(clock, "wake_at", None)
        if wake_at is not None or deadline == math.inf:
            if deadline < math.inf:
                wake_at(deadline, waiter.task, waiter)
            await trio.lowlevel.wait_task_rescheduled(self._abort(waiter))
        else:
            with trio.move_on_at(deadline) as scope:
                waiter.scope = scope
                await trio.lowlevel.wait_task_rescheduled(self._abort(waiter))
        if not waiter.by_set:
            self._forget(waiter)
        return waiter.by_set

    def _abort(self, waiter: _Waiter) -> Callable[[object], trio.lowlevel.Abort]:
        def abort(_: object) -> trio.lowlevel.Abort:
            waiter.woken()
            self._forget(waiter)
            return trio.lowlevel.Abort.SUCCEEDED

        return abort

    def _forget(self, waiter: _Waiter) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)


async def sleep_until(deadline: float) -> None:
    """`trio.sleep_until`, scheduled alike, without its cancel scope on a clock with
    `wake_at` (a flag nobody sets)."""
    await Flag().wait_until(deadline)


async def sleep(seconds: float) -> None:
    """`trio.sleep` as `sleep_until` does it: for periodic loops, whose sleeps always
    run to their end (a cancel scope's expiry raises Cancelled through the task)."""
    await sleep_until(trio.current_time() + seconds)
