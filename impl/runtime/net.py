"""The network as the broker sees it: listen for and open byte streams.

The real implementation is loopback TCP through trio; the simulator ([8]) provides an
in-memory one with the same two calls, so the broker and client code never touch
sockets directly.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

Handler = Callable[[trio.abc.Stream], Awaitable[None]]


class NetworkError(OSError):
    """A connection that could not be made; the message names the address."""


class Network(Protocol):
    async def serve(
        self,
        handler: Handler,
        host: str,
        port: int,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept connections forever, one `handler(stream)` task each; reports the port."""

    async def connect(self, host: str, port: int) -> trio.abc.Stream:
        """A connected stream, or NetworkError."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class TcpNetwork:
    """Plain TCP with Nagle off (Kafka's request/response traffic is latency bound)."""

    async def serve(
        self,
        handler: Handler,
        host: str,
        port: int,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host)
        bound_port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, handler, listeners)
            task_status.started(bound_port)

    async def connect(self, host: str, port: int) -> trio.abc.Stream:
        try:
            return await trio.open_tcp_stream(host, port)
        except OSError as error:
            raise NetworkError(f"cannot connect to {host}:{port}: {error}") from error
