"""Per-link TCP proxies: network partitions without root.

Each directed link (source, target) - every connection one broker, or the clients,
open to one broker - gets its own listener in the harness process. The source is told
(through its link map) to connect there instead of to the target, and the proxy
forwards bytes both ways. Cutting a link blackholes it like an iptables DROP rule, not
a reset: sockets stay open, nothing is forwarded in either direction and new
connections are accepted but not passed on, so peers see silence and time out. Bytes
that arrive meanwhile are held (one chunk per direction; the rest waits in the kernel's
buffers, as unacknowledged TCP segments would) and delivered after the heal, as TCP
retransmission would deliver them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

CHUNK_BYTES = 64 * 1024
LISTEN_BACKLOG = 128

Address = tuple[str, int]


@dataclass
class LinkStats:
    connections: int = 0
    forwarded_bytes: int = 0
    # Bytes that reached the proxy while the link was cut (delivered only after a heal).
    blocked_bytes: int = 0


@dataclass
class LinkProxy:
    """One directed link. `start` binds a loopback port; `cut`/`heal` switch it."""

    name: str
    upstream: Address
    host: str = "127.0.0.1"
    port: int = 0
    stats: LinkStats = field(default_factory=LinkStats)
    _open: trio.Event = field(default_factory=trio.Event)

    def __post_init__(self) -> None:
        self._open.set()

    @property
    def is_cut(self) -> bool:
        return not self._open.is_set()

    def cut(self) -> None:
        if not self.is_cut:
            self._open = trio.Event()

    def heal(self) -> None:
        self._open.set()

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host=self.host, backlog=LISTEN_BACKLOG)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._relay, listeners)
            task_status.started(self.port)

    async def _relay(self, downstream: trio.SocketStream) -> None:
        self.stats.connections += 1
        async with downstream:
            await self._open.wait()
            try:
                upstream = await trio.open_tcp_stream(*self.upstream)
            except OSError:
                return
            async with upstream, trio.open_nursery() as nursery:
                nursery.start_soon(self._pump, downstream, upstream, nursery.cancel_scope)
                nursery.start_soon(self._pump, upstream, downstream, nursery.cancel_scope)

    async def _pump(
        self, source: trio.SocketStream, sink: trio.SocketStream, both: trio.CancelScope
    ) -> None:
        """Copy until either side closes, then close both (Kafka never half-closes)."""
        try:
            while data := await source.receive_some(CHUNK_BYTES):
                if self.is_cut:
                    self.stats.blocked_bytes += len(data)
                    await self._open.wait()
                await sink.send_all(data)
                self.stats.forwarded_bytes += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        both.cancel()


class ProxyNetwork:
    """Every link's proxy, by (source, target)."""

    def __init__(self) -> None:
        self.links: dict[tuple[object, object], LinkProxy] = {}

    async def add(
        self, nursery: trio.Nursery, source: object, target: object, upstream: Address
    ) -> LinkProxy:
        proxy = LinkProxy(f"{source}->{target}", upstream)
        await nursery.start(proxy.serve)
        self.links[(source, target)] = proxy
        return proxy

    def cut(self, links: set[tuple[object, object]]) -> None:
        """Cut exactly `links`; every other link is healed."""
        unknown = links - set(self.links)
        assert not unknown, f"no proxy for links {sorted(map(str, unknown))}"
        for key, proxy in self.links.items():
            if key in links:
                proxy.cut()
            else:
                proxy.heal()

    def heal(self) -> None:
        for proxy in self.links.values():
            proxy.heal()

    def stats(self) -> dict[str, dict[str, int]]:
        return {proxy.name: vars(proxy.stats).copy() for proxy in self.links.values()}
