"""The interpreter: runs a generator's ops on trio worker tasks and records the history.

One worker task per thread, all in the scheduler's nursery. A client thread runs one
process at a time, and a process is logically single-threaded: it gets its next op only
after the last one completed. A process whose op ended `info` (outcome unknown) is
retired, as in Jepsen: its client is closed and the thread continues as a new process
(`process + concurrency`), so a process never invokes after an `info`. The nemesis
thread runs fault ops the same way, as process "nemesis".

Nothing here knows about brokers: clients come from a `ClientFactory` and faults from
a `NemesisRunner`, so the same scheduler drives real processes or a simulation.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from jepsen_py.campaign.generator import NEMESIS, Context, Emit, Gen, Invocation, Thread
from jepsen_py.campaign.recorder import Recorder

WORKER_QUEUE_DEPTH = 1


@dataclass(frozen=True)
class Completion:
    """How an op ended: "ok" with its result, "fail" (did not happen) or "info" (unknown)."""

    type: str
    value: Any = None
    error: str | None = None

    def __post_init__(self) -> None:
        assert self.type in ("ok", "fail", "info"), f"bad completion type {self.type!r}"


class Client(Protocol):
    async def invoke(self, f: str, value: Any) -> Completion:
        """Run one op; never raises a client error (it becomes fail or info)."""


class ClientFactory(Protocol):
    def open(self, process: int) -> AbstractAsyncContextManager[Client]:
        """The client of a new process; entering it must not wait on the network."""

    def timeout_type(self, f: str) -> str:
        """What an op that ran out of time is: "info" for writes, "fail" for reads."""


class NemesisRunner(Protocol):
    async def invoke(self, f: str, value: Any) -> Completion:
        """Start or end a fault; the completion's value says what was done to whom."""


class Scheduler:
    """Threads 0..concurrency-1 run clients, "nemesis" runs faults. Process ids survive
    across `run` calls, so phases run one after another never reuse a process."""

    def __init__(
        self,
        concurrency: int,
        clients: ClientFactory,
        nemesis: NemesisRunner,
        recorder: Recorder,
        rng: random.Random,
    ) -> None:
        assert concurrency >= 1, "at least one client thread"
        self.concurrency = concurrency
        self.clients = clients
        self.nemesis = nemesis
        self.recorder = recorder
        self.rng = rng
        self.threads: tuple[Thread, ...] = (*range(concurrency), NEMESIS)
        self.process_of: dict[Thread, int | str] = {t: t for t in self.threads}
        self._busy: set[Thread] = set()
        self._changed = trio.Event()

    def context(self) -> Context:
        free = frozenset(t for t in self.threads if t not in self._busy)
        return Context(self.recorder.now_s(), self.threads, free, self.rng)

    async def run(self, gen: Gen, op_timeout_s: float) -> None:
        """Run `gen` until it is exhausted and every op it started has completed."""
        senders = {}
        async with trio.open_nursery() as nursery:
            for thread in self.threads:
                send, receive = trio.open_memory_channel[Invocation](WORKER_QUEUE_DEPTH)
                senders[thread] = send
                worker = self._nemesis_worker if thread == NEMESIS else self._client_worker
                nursery.start_soon(worker, thread, receive, op_timeout_s)
            try:
                await self._dispatch(gen, senders)
            finally:
                for send in senders.values():
                    send.close()
        for thread in range(self.concurrency):
            # A client's connections closed with its worker: the next phase starts afresh.
            self._retire(thread)

    async def _dispatch(self, gen: Gen, senders: dict[Thread, trio.MemorySendChannel]) -> None:
        while (step := gen.op(self.context())) is not None:
            gen = step.next
            if not isinstance(step, Emit):
                await self._wait_for_change(step.until_s)
                continue
            invocation = step.invocation
            await self._sleep_until(invocation.at_s)
            thread = invocation.thread
            assert thread not in self._busy, f"generator chose busy thread {thread}"
            self._busy.add(thread)
            process = self.process_of[thread]
            self.recorder.record(process, "invoke", invocation.f, invocation.value)
            await senders[thread].send(invocation)

    async def _wait_for_change(self, until_s: float | None) -> None:
        if until_s is None and not self._busy:
            raise RuntimeError("the generator waits for a completion while no op is running")
        deadline = math.inf if until_s is None else self._trio_time(until_s)
        with trio.move_on_at(deadline):
            await self._changed.wait()

    async def _sleep_until(self, at_s: float) -> None:
        await trio.sleep_until(max(trio.current_time(), self._trio_time(at_s)))

    def _trio_time(self, at_s: float) -> float:
        """The trio time at which the campaign clock reads at least `at_s`. The plain sum
        can round down; under a mock clock, which jumps exactly to a deadline, the
        generator would then be asked again at the same instant forever."""
        deadline = self.recorder.origin_s + at_s
        while deadline - self.recorder.origin_s < at_s:
            deadline = math.nextafter(deadline, math.inf)
        return deadline

    async def _client_worker(
        self, thread: int, receive: trio.MemoryReceiveChannel, op_timeout_s: float
    ) -> None:
        async with receive:
            while True:
                process = self.process_of[thread]
                assert isinstance(process, int)
                async with self.clients.open(process) as client:
                    retired = await self._serve(thread, client, receive, op_timeout_s)
                if not retired:
                    return

    async def _serve(
        self, thread: int, client: Client, receive: trio.MemoryReceiveChannel, op_timeout_s: float
    ) -> bool:
        """Run ops until one ends `info` (True: the process retires) or the phase ends."""
        async for invocation in receive:
            completion = await _bounded(
                client.invoke, invocation, op_timeout_s, self.clients.timeout_type(invocation.f)
            )
            self._complete(thread, invocation, completion)
            if completion.type == "info":
                return True
        return False

    async def _nemesis_worker(
        self, thread: str, receive: trio.MemoryReceiveChannel, op_timeout_s: float
    ) -> None:
        async with receive:
            async for invocation in receive:
                completion = await self.nemesis.invoke(invocation.f, invocation.value)
                self._complete(thread, invocation, completion)

    def _complete(self, thread: Thread, invocation: Invocation, completion: Completion) -> None:
        process = self.process_of[thread]
        self.recorder.record(
            process, completion.type, invocation.f, completion.value, completion.error
        )
        if completion.type == "info" and thread != NEMESIS:
            self._retire(thread)
        self._busy.discard(thread)
        self._changed.set()
        self._changed = trio.Event()

    def _retire(self, thread: Thread) -> None:
        process = self.process_of[thread]
        assert isinstance(process, int)
        self.process_of[thread] = process + self.concurrency


async def _bounded(
    invoke: Callable[[str, Any], Any], invocation: Invocation, timeout_s: float, timeout_type: str
) -> Completion:
    with trio.move_on_after(timeout_s):
        return await invoke(invocation.f, invocation.value)
    return Completion(timeout_type, None, f"no outcome within {timeout_s} s")
