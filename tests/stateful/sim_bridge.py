"""A simulated trio run that synchronous code (Hypothesis rules) drives one step at a time.

Why trio's guest mode: Hypothesis calls each rule as a plain function and decides the
next rule from what the previous one did, so the simulation must stay alive across
rules while the rules themselves block. Threads are out (the determinism guard refuses
them, and a scheduler thread is a source of nondeterminism), and replaying the whole
prefix in a fresh `trio.run` for every rule costs O(steps^2). In guest mode the trio
run's scheduler ticks are callbacks handed to a host loop, and here the host loop is
the caller itself: `call(fn)` hands `fn` to the driver task inside the run and runs
ticks until `fn` has finished, then stops. Between two calls no tick runs, so
simulated time stands still while Hypothesis thinks, and a run is a pure function of
(seed, sequence of calls).

Under `MockClock(autojump_threshold=0)` the run never has to wait for I/O with a
timeout (the autojumper is always either runnable or waiting for idle with a zero
cushion), so guest mode never hands an I/O wait to its thread; if it ever did, the
call fails loudly rather than let real time in (the guard refuses a new thread, and a
host queue that runs dry raises BridgeError).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import outcome
import trio
import trio.testing

from impl.sim.guard import deterministic

TICKS_MAX = 50_000_000  # a call that needs more scheduler ticks is stuck


class BridgeError(RuntimeError):
    """The guest run ended or got stuck when a call needed it."""


class SimBridge:
    """One guest-mode trio run on a MockClock; `call` runs one coroutine function in it."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._ticks: deque[Callable[[], object]] = deque()
        self._calls = 0
        self._finished: outcome.Outcome | None = None
        self._request: tuple[Callable[..., Awaitable[Any]], tuple[Any, ...]] | None = None
        self._reply: outcome.Outcome | None = None
        self._wakeup: trio.Event | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        with deterministic(self._step_seed()):
            trio.lowlevel.start_guest_run(
                self._driver,
                run_sync_soon_threadsafe=self._ticks.append,
                run_sync_soon_not_threadsafe=self._ticks.append,
                done_callback=self._done,
                clock=trio.testing.MockClock(autojump_threshold=0),
            )
            self._pump(lambda: self._token is not None)

    @property
    def nursery(self) -> trio.Nursery:
        """The run's long-lived nursery (for cluster nodes and clients)."""
        assert self._nursery is not None
        return self._nursery

    def _step_seed(self) -> int:
        # Each call reseeds trio's scheduler RNG: still a function of (seed, call index).
        return self.seed * 1_000_003 + self._calls

    def _done(self, result: outcome.Outcome) -> None:
        self._finished = result

    async def _driver(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._wakeup = trio.Event()
            self._token = trio.lowlevel.current_trio_token()
            while True:
                await self._wakeup.wait()
                self._wakeup = trio.Event()
                assert self._request is not None
                fn, args = self._request
                self._request = None
                self._reply = await outcome.acapture(fn, *args)

    def _pump(self, until: Callable[[], bool]) -> None:
        for _ in range(TICKS_MAX):
            if until():
                return
            if self._finished is not None:
                raise BridgeError(f"the simulation ended: {self._finished!r}")
            if not self._ticks:
                raise BridgeError("the simulation waits for something outside it")
            self._ticks.popleft()()
        raise BridgeError(f"a call did not finish within {TICKS_MAX} scheduler ticks")

    def call(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run `await fn(*args)` inside the simulation; return its result or raise."""
        assert self._token is not None and self._wakeup is not None
        self._calls += 1
        self._request, self._reply = (fn, args), None
        with deterministic(self._step_seed()):
            self._token.run_sync_soon(self._wakeup.set)
            self._pump(lambda: self._reply is not None)
        assert self._reply is not None
        return self._reply.unwrap()

    def close(self) -> None:
        """Cancel everything still running and let the run end."""
        if self._finished is not None or self._nursery is None:
            return

        async def cancel() -> None:
            self.nursery.cancel_scope.cancel()

        self._calls += 1
        self._request, self._reply = (cancel, ()), None
        with deterministic(self._step_seed()):
            assert self._token is not None and self._wakeup is not None
            self._token.run_sync_soon(self._wakeup.set)
            self._pump(lambda: self._finished is not None)
        self._finished.unwrap()
