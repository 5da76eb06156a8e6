"""An in-memory network for the simulator: the `Network` protocol over simulated links.

One `SimNetwork` is the fabric; every node (and the "clients" endpoint) gets a
`NodeNetwork` view that knows who it is, so each connection has a source and a target.
A connection is two `_Pipe`s, one per direction, bounded to `PIPE_BYTES_MAX` buffered
bytes (a sender blocks while its peer's buffer is full, like a full TCP window).

TCP semantics, as far as a test of a replicated log can tell:
- Bytes of one connection arrive in order, exactly once, after a per-link latency drawn
  once from the seeded RNG (no reordering, no loss, no duplication inside a connection).
- A cut link (`cut`) is an iptables DROP: bytes in both directions of every connection
  the source opened to the target are held (TCP retransmits them), the connection is
  not reset, and `heal` delivers what was held. A new connection across a cut link
  hangs (a SYN into a DROP rule) until the caller's timeout, or until the heal.
- A paused node's links hold everything in both directions (see SimCluster).
- Connecting to an address nobody listens on fails at once with `NetworkError`
  (ECONNREFUSED), unless the link to the node that owned it is cut (no RST comes back
  through a DROP rule: it hangs); a killed node's connections are closed (its
  kernel's FIN, subject to cuts like any byte).
"""

from __future__ import annotations

import math
import random
from collections import Counter, deque
from dataclasses import dataclass, field

import trio

from impl.runtime.net import Address, Handler, NetworkError
from impl.sim.guard import SimulatedClock, WakeToken

PIPE_BYTES_MAX = 1 << 20
LATENCY_MS_MIN = 0.1
LATENCY_MS_MAX = 2.0

Endpoint = int | str


class _Pipe:
    """One direction of a connection: chunks with delivery times, then maybe EOF.

    The reader parks until the head chunk's delivery time, which a writer sets when it
    adds the first chunk: one wakeup per delivery (of every chunk due by then), none
    for the write itself (the simulator's steps are its cost). On a SimulatedClock the
    clock itself reschedules the reader (`SimulatedClock.wake_at`); on any other clock
    (MockClock in guest mode) the park is a cancel scope with that deadline.
    """

    def __init__(self, fabric: SimNetwork, link: tuple[Endpoint, Endpoint], latency_s: float):
        self.fabric = fabric
        self.link = link
        self.latency_s = latency_s
        self.chunks: deque[tuple[float, bytes]] = deque()
        self.buffered_bytes = 0
        self.eof_at: float | None = None
        self.reader_closed = False
        self.space = trio.Event()
        self._token = WakeToken()
        self._reader: trio.lowlevel.Task | None = None
        # The run's clock, read directly (trio.current_time() reaches it through two
        # more calls); a SimulatedClock also wakes the parked reader itself.
        clock = trio.lowlevel.current_clock()
        self._now = clock.current_time
        self._clock = clock if isinstance(clock, SimulatedClock) else None
        self._reader_scope: trio.CancelScope | None = None

    def wake_reader(self, at: float) -> None:
        """The parked reader (if any) has something to look at from `at` on."""
        if not self._token.sleeping:
            return
        assert self._reader is not None
        if at <= self._now():
            self._token.woken()
            trio.lowlevel.reschedule(self._reader)
        elif self._clock is not None:
            self._clock.wake_at(at, self._reader, self._token)
        elif self._reader_scope is not None and at < self._reader_scope.deadline:
            self._reader_scope.deadline = at

    def _deliver_at(self) -> float:
        last = self.chunks[-1][0] if self.chunks else 0.0
        return max(last, self._now() + self.latency_s)

    async def write(self, data: bytes) -> None:
        while self.full:
            await self.space.wait()
        self.write_nowait(data)

    @property
    def full(self) -> bool:
        """A write would wait for the reader to take bytes."""
        return self.buffered_bytes >= PIPE_BYTES_MAX and not self.reader_closed

    def write_nowait(self, data: bytes) -> None:
        assert not self.full, "a full pipe's writer waits for space"
        if self.reader_closed:
            raise trio.BrokenResourceError("connection reset by peer")
        if self.link in self.fabric.cut_links:
            self.fabric.cut_held_bytes[self.link] += len(data)
        due = self._deliver_at()
        self.chunks.append((due, data))
        self.buffered_bytes += len(data)
        if len(self.chunks) == 1:
            self.wake_reader(due)

    def write_eof(self) -> None:
        if self.eof_at is None:
            self.eof_at = self._deliver_at()
            if not self.chunks:
                self.wake_reader(self.eof_at)

    def close_reader(self) -> None:
        self.reader_closed = True
        self.wake_reader(-math.inf)
        self._free_space()

    def lose_if_held(self) -> None:
        """Its writer's machine is gone: bytes a held link kept (its kernel was to
        retransmit them) will never arrive."""
        if self.chunks and self.fabric.holds(self.link):
            self.chunks.clear()
            self.buffered_bytes = 0
            self._free_space()

    def _free_space(self) -> None:
        self.space.set()
        self.space = trio.Event()

    def _wake_at(self) -> float:
        if self.chunks:
            return self.chunks[0][0]
        return math.inf if self.eof_at is None else self.eof_at

    async def read(self, max_bytes: int) -> bytes:
        blocked = False
        while True:
            if self.reader_closed:
                raise trio.ClosedResourceError("stream closed")
            if self.fabric.holds(self.link):
                self.fabric.held_readers[self] = None
                try:
                    await self._park(math.inf)
                finally:
                    self.fabric.held_readers.pop(self, None)
            else:
                now = self._now()
                if self.chunks:
                    if self.chunks[0][0] <= now:
                        data = self._take(max_bytes, now)
                        break
                elif self.eof_at is not None and self.eof_at <= now:
                    data = b""
                    break
                await self._park(self._wake_at())
            blocked = True
        if not blocked:
            await trio.lowlevel.checkpoint_if_cancelled()
        return data

    async def _park(self, due: float) -> None:
        """Sleep until `due` or an earlier `wake_reader`; a cancellation ends it too."""
        task = trio.lowlevel.current_task()
        self._reader = task
        self._token.parking()
        clock = self._clock
        if clock is not None:
            if due < math.inf:
                clock.wake_at(due, task, self._token)
            await trio.lowlevel.wait_task_rescheduled(self._abort)
            return
        with trio.CancelScope(deadline=due) as scope:
            self._reader_scope = scope
            try:
                await trio.lowlevel.wait_task_rescheduled(self._abort)
            finally:
                self._reader_scope = None

    def _abort(self, _: object) -> trio.lowlevel.Abort:
        self._token.woken()
        return trio.lowlevel.Abort.SUCCEEDED

    def _take(self, max_bytes: int, now: float) -> bytes:
        """Every chunk due by `now`, up to `max_bytes`: one wakeup for all that arrived."""
        parts = []
        taken = 0
        while self.chunks and self.chunks[0][0] <= now and taken < max_bytes:
            due, data = self.chunks.popleft()
            if taken + len(data) > max_bytes:
                keep = max_bytes - taken
                self.chunks.appendleft((due, data[keep:]))
                data = data[:keep]
            parts.append(data)
            taken += len(data)
        was_full = self.buffered_bytes >= PIPE_BYTES_MAX
        self.buffered_bytes -= taken
        if was_full and self.buffered_bytes < PIPE_BYTES_MAX:
            self._free_space()
        return parts[0] if len(parts) == 1 else b"".join(parts)


class SimStream(trio.abc.HalfCloseableStream):
    """One end of a simulated connection."""

    def __init__(self, outgoing: _Pipe, incoming: _Pipe, owner: Endpoint) -> None:
        self.owner = owner
        self._out = outgoing
        self._in = incoming
        self._closed = False
        self._sending = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise trio.ClosedResourceError("stream closed")
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._sending = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            if data:
                await self._out.write(bytes(data))
        finally:
            self._sending = False

    def send_all_nowait(self, data: bytes | bytearray | memoryview) -> bool:
        """`send_all` where it would not wait (the peer's buffer has room): True once
        the bytes are on their way, False (nothing sent) where it would wait; errors as
        `send_all`'s. A caller need not set a deadline on what cannot wait."""
        if self._closed:
            raise trio.ClosedResourceError("stream closed")
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        if self._out.full:
            return False
        if data:
            self._out.write_nowait(bytes(data))
        return True

    async def wait_send_all_might_not_block(self) -> None:
        while self._out.buffered_bytes >= PIPE_BYTES_MAX and not self._out.reader_closed:
            await self._out.space.wait()
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._closed:
            raise trio.ClosedResourceError("stream closed")
        return await self._in.read(max_bytes or PIPE_BYTES_MAX)

    async def send_eof(self) -> None:
        self._out.write_eof()
        await trio.lowlevel.checkpoint()

    def lose_held_input_from(self, writer: Endpoint) -> None:
        opener, listener = self._in.link
        if writer == (opener if self.owner == listener else listener):
            self._in.lose_if_held()

    def close_now(self) -> None:
        """Close without a checkpoint (a crashed process's sockets, closed by the kernel)."""
        if self._closed:
            return
        self._closed = True
        self._out.write_eof()
        self._in.close_reader()
        self._out.fabric.forget(self)

    async def aclose(self) -> None:
        self.close_now()
        await trio.lowlevel.checkpoint()


@dataclass
class _Listener:
    node: Endpoint
    handler: Handler
    nursery: trio.Nursery


@dataclass
class SimNetwork:
    """The fabric: listeners, link latencies, cut links, paused nodes, open streams."""

    rng: random.Random
    listeners: dict[Address, _Listener] = field(default_factory=dict)
    # Which endpoint an address belongs to, kept while it is down.
    owners: dict[Address, Endpoint] = field(default_factory=dict)
    cut_links: set[tuple[Endpoint, Endpoint]] = field(default_factory=set)
    paused: set[Endpoint] = field(default_factory=set)
    latency_s: dict[tuple[Endpoint, Endpoint], float] = field(default_factory=dict)
    # Open streams by the endpoint that holds them (dicts: closed in opening order).
    streams: dict[Endpoint, dict[SimStream, None]] = field(default_factory=dict)
    # Readers parked on a held link (a dict: woken in the order they parked).
    held_readers: dict[_Pipe, None] = field(default_factory=dict)
    connections_opened: int = 0
    # Bytes written on a connection while its link was cut (a proxy's blocked_bytes).
    cut_held_bytes: Counter[tuple[Endpoint, Endpoint]] = field(default_factory=Counter)
    _changed: trio.Event = field(default_factory=trio.Event)

    def view(self, node: Endpoint) -> NodeNetwork:
        return NodeNetwork(self, node)

    def link_latency_s(self, source: Endpoint, target: Endpoint) -> float:
        key = (source, target)
        if key not in self.latency_s:
            self.latency_s[key] = self.rng.uniform(LATENCY_MS_MIN, LATENCY_MS_MAX) / 1000
        return self.latency_s[key]

    def holds(self, link: tuple[Endpoint, Endpoint]) -> bool:
        """True while a connection opened by link[0] to link[1] must hold its bytes."""
        return link in self.cut_links or link[0] in self.paused or link[1] in self.paused

    async def wait_for_change(self) -> None:
        await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
        now = trio.current_time()
        for pipe in list(self.held_readers):
            pipe.wake_reader(now)

    def cut(self, links: set[tuple[Endpoint, Endpoint]]) -> None:
        """Blackhole exactly these links (source, target), healing every other one."""
        self.cut_links = set(links)
        self._notify()

    def heal(self) -> None:
        self.cut_links = set()
        self._notify()

    def pause(self, node: Endpoint) -> None:
        self.paused.add(node)
        self._notify()

    def resume(self, node: Endpoint) -> None:
        self.paused.discard(node)
        self._notify()

    def close_node(self, node: Endpoint) -> None:
        """A crash: every socket of the node is closed by its kernel."""
        for stream in list(self.streams.pop(node, {})):
            stream.close_now()

    def lose_held_bytes(self, node: Endpoint) -> None:
        """The node's machine died (not just its process): what it wrote into a cut or
        paused link is lost rather than delivered at the heal, on the connections it
        already closed too (a live kernel would still retransmit those)."""
        for owner, streams in self.streams.items():
            if owner != node:
                for stream in streams:
                    stream.lose_held_input_from(node)

    def forget(self, stream: SimStream) -> None:
        self.streams.get(stream.owner, {}).pop(stream, None)

    async def connect(self, source: Endpoint, host: str, port: int) -> SimStream:
        # A SYN to a node behind a cut hangs even when nothing listens there any more.
        owner = self.owners.get((host, port))
        while owner is not None and self.holds((source, owner)):
            await self.wait_for_change()
        listener = self.listeners.get((host, port))
        if listener is None:
            raise NetworkError(f"cannot connect to {host}:{port}: connection refused")
        link = (source, listener.node)
        latency_s = self.link_latency_s(*link)
        await trio.sleep(2 * latency_s)
        listener = self.listeners.get((host, port))
        if listener is None:
            raise NetworkError(f"cannot connect to {host}:{port}: connection refused")
        forward = _Pipe(self, link, latency_s)
        backward = _Pipe(self, link, latency_s)
        client = SimStream(forward, backward, source)
        server = SimStream(backward, forward, listener.node)
        self.streams.setdefault(source, {})[client] = None
        self.streams.setdefault(listener.node, {})[server] = None
        self.connections_opened += 1
        listener.nursery.start_soon(listener.handler, server)
        return client


class NodeNetwork:
    """The network as one node sees it: `Network` with a known source identity."""

    def __init__(self, fabric: SimNetwork, node: Endpoint) -> None:
        self.fabric = fabric
        self.node = node

    async def serve(
        self,
        handler: Handler,
        host: str,
        port: int,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        assert port != 0, "simulated nodes listen on planned ports"
        address = (host, port)
        if address in self.fabric.listeners:
            raise NetworkError(f"cannot listen on {host}:{port}: address in use")
        async with trio.open_nursery() as nursery:
            self.fabric.listeners[address] = _Listener(self.node, handler, nursery)
            self.fabric.owners[address] = self.node
            try:
                task_status.started(port)
                await trio.sleep_forever()
            finally:
                del self.fabric.listeners[address]

    async def connect(self, host: str, port: int) -> trio.abc.Stream:
        return await self.fabric.connect(self.node, host, port)
