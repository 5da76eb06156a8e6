"""What makes a simulation reproducible, enforced rather than hoped for.

`deterministic(seed)` is a context manager for the length of one simulated `trio.run`:

- trio's scheduler runs each batch of runnable tasks in an order that depends on an
  OS-seeded module RNG (trio._core._run._r) and on the order tasks were woken, which
  follows object addresses (trio.Event keeps its waiters in a set of tasks). The guard
  sets the two private hooks pytest-trio's Hypothesis plugin uses:
  `_ALLOW_DETERMINISTIC_SCHEDULING` (each batch is sorted by task creation order, then
  shuffled) and `_r`, seeded from the simulation, so interleavings vary with the seed
  and repeat with it.
- Guarded, failing loudly with `NondeterminismError`:
  * `time.time`, `time.time_ns`, `time.monotonic`, `time.monotonic_ns` called from
    project code (files under impl/, model/, jepsen_py/, specs/, tests/). trio itself,
    logging and the standard library may still read clocks: their readings decide
    nothing a test observes (the simulated clock drives every deadline).
  * the module-level `random` functions (`random.random`, `randint`, `choice`, ...), from
    anywhere: every draw must come from a seeded `random.Random`.
  * starting a thread (`threading.Thread.start`, which `trio.to_thread` uses).
  * real sockets: `socket.socket.connect`/`connect_ex`/`bind` and `socket.getaddrinfo`.
"""

from __future__ import annotations

import heapq
import math
import os
import random
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import trio

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PROJECT_DIRS = tuple(
    str(PROJECT_ROOT / name) + os.sep for name in ("impl", "model", "jepsen_py", "specs", "tests")
)
CLOCK_READS = ("time", "time_ns", "monotonic", "monotonic_ns")
RANDOM_FUNCTIONS = (
    "random",
    "randint",
    "randrange",
    "choice",
    "choices",
    "shuffle",
    "sample",
    "uniform",
    "getrandbits",
    "randbytes",
    "gauss",
)
SOCKET_METHODS = ("connect", "connect_ex", "bind")


class NondeterminismError(RuntimeError):
    """Code inside a simulation reached something the seed does not decide."""


def _caller_is_project(depth: int = 2) -> bool:
    return sys._getframe(depth).f_code.co_filename.startswith(PROJECT_DIRS)


def _guarded_clock(name: str, real: Callable[[], Any]) -> Callable[[], Any]:
    def read() -> Any:
        if _caller_is_project():
            raise NondeterminismError(f"time.{name}() read by project code in a simulation")
        return real()

    return read


def _forbidden(what: str) -> Callable[..., Any]:
    def refuse(*_: Any, **__: Any) -> Any:
        raise NondeterminismError(f"{what} in a simulation")

    return refuse


def _patch(stack: ExitStack, owner: Any, name: str, value: Any) -> None:
    original = getattr(owner, name)
    setattr(owner, name, value)
    stack.callback(setattr, owner, name, original)


@contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Seed trio's scheduler and refuse every source of nondeterminism listed above."""
    run_module = sys.modules["trio._core._run"]
    with ExitStack() as stack:
        _patch(stack, run_module, "_r", random.Random(seed))
        _patch(stack, run_module, "_ALLOW_DETERMINISTIC_SCHEDULING", True)
        for name in CLOCK_READS:
            _patch(stack, time, name, _guarded_clock(name, getattr(time, name)))
        for name in RANDOM_FUNCTIONS:
            _patch(stack, random, name, _forbidden(f"random.{name}()"))
        _patch(stack, threading.Thread, "start", _forbidden("starting a thread"))
        for name in SOCKET_METHODS:
            _patch(stack, socket.socket, name, _forbidden(f"a real socket's {name}()"))
        _patch(stack, socket, "getaddrinfo", _forbidden("a real DNS lookup"))
        yield


class SimulatedClock(trio.abc.Clock):
    """Simulated time, starting at 0, that jumps to the next deadline as soon as every
    task is blocked: what `MockClock(autojump_threshold=0)` does, in one pass of trio's
    run loop instead of two (MockClock's autojump takes an extra pass, with an I/O poll
    and a statistics snapshot, per jump; a simulation jumps at almost every step).

    trio asks a clock how long to sleep only when no task is runnable, so that is when
    the jump happens. Nothing simulated waits for real I/O that a zero-length poll
    could miss. Tasks in `wait_all_tasks_blocked` wake before time moves, as with
    MockClock; with no deadline at all, nothing can ever run again and trio sleeps.

    `wake_at(when, task, token)` is a timer without a cancel scope, for the simulated
    network's parked readers: the clock counts it as a deadline and, when it jumps to it,
    reschedules the task if the token says it still sleeps in the same park (it may have
    been woken otherwise, or cancelled, meanwhile). A cancel scope's expiry costs a
    Cancelled raised through the sleeping task; this costs a heap entry.

    Most entries go void long before they are due (a delayed fetch answered in a
    millisecond leaves its 500 ms deadline behind): once the heap has doubled since it
    was last swept, the void ones are dropped, which keeps every push and pop shallow.
    A void entry never comes back to life (a park's number is not reused), so the
    sweep changes no wakeup.
    """

    IDLE_SLEEP_S = 3600.0
    SWEEP_SIZE_MIN = 256

    def __init__(self) -> None:
        self._now = 0.0
        self._seq = 0
        self._wakeups: list[tuple[float, int, trio.lowlevel.Task, WakeToken, int]] = []
        self._sweep_at = self.SWEEP_SIZE_MIN
        # trio's run loop, for its wait_all_tasks_blocked waiters (set by start_clock).
        self._runner: Any = None

    def wake_at(self, when: float, task: trio.lowlevel.Task, token: WakeToken) -> None:
        """Reschedule `task` at simulated time `when` unless `token` moved on by then."""
        assert when > self._now, "a wakeup due now is a direct reschedule"
        self._seq += 1
        heapq.heappush(self._wakeups, (when, self._seq, task, token, token.park))
        if len(self._wakeups) >= self._sweep_at:
            self._sweep()

    def _sweep(self) -> None:
        live = [entry for entry in self._wakeups if entry[3].parked_as(entry[4])]
        heapq.heapify(live)
        self._wakeups = live
        self._sweep_at = max(self.SWEEP_SIZE_MIN, 2 * len(live))

    def _next_wakeup(self) -> float:
        wakeups = self._wakeups
        while wakeups:
            when, _, _, token, park = wakeups[0]
            if token.parked_as(park):
                return when
            heapq.heappop(wakeups)
        return math.inf

    def _fire_due(self) -> None:
        wakeups = self._wakeups
        while wakeups and wakeups[0][0] <= self._now:
            _, _, task, token, park = heapq.heappop(wakeups)
            if token.parked_as(park):
                token.woken()
                trio.lowlevel.reschedule(task)

    def start_clock(self) -> None:
        self._runner = sys.modules["trio._core._run"].GLOBAL_RUN_CONTEXT.runner

    def current_time(self) -> float:
        return self._now

    def deadline_to_sleep_time(self, deadline: float) -> float:
        deadline = min(deadline, self._next_wakeup())
        if deadline == math.inf:
            return self.IDLE_SLEEP_S
        if deadline <= self._now:
            self._fire_due()
            return 0.0
        if self._runner.waiting_for_idle:
            return deadline - self._now
        self._now = deadline
        self._fire_due()
        return 0.0


class WakeToken:
    """Which park of one sleeper a `SimulatedClock.wake_at` entry is for: each park gets
    a new number, and a wakeup for an earlier one (or after the sleeper left) is void."""

    __slots__ = ("park", "sleeping")

    def __init__(self) -> None:
        self.park = 0
        self.sleeping = False

    def parking(self) -> int:
        self.park += 1
        self.sleeping = True
        return self.park

    def parked_as(self, park: int) -> bool:
        return self.sleeping and self.park == park

    def woken(self) -> None:
        self.sleeping = False


def run(async_fn: Callable[..., Any], *args: Any, seed: int) -> Any:
    """`trio.run` on a `SimulatedClock`, guarded."""
    with deterministic(seed):
        return trio.run(async_fn, *args, clock=SimulatedClock())
