"""The network as the broker sees it: listen for and open byte streams.

The real implementation is loopback TCP through trio; the simulator ([8]) provides an
in-memory one with the same two calls, so the broker and client code never touch
sockets directly.
"""

from __future__ import annotations

import ipaddress
import json
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


Address = tuple[str, int]


def load_link_map(path: str) -> dict[Address, Address]:
    """A JSON object {"HOST:PORT": "HOST:PORT"}: where to connect instead of an address.

    A fault-injection harness gives each process its own map, pointing every outgoing
    link at a proxy it controls, so it can cut one link without touching the others.
    """
    with open(path, encoding="utf-8") as file:
        raw = json.load(file)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object of HOST:PORT -> HOST:PORT")
    return {_address(key, path): _address(value, path) for key, value in raw.items()}


def _address(text: object, path: str) -> Address:
    host, separator, port = str(text).rpartition(":")
    if not separator or not port.isdigit():
        raise ValueError(f"{path}: {text!r} is not HOST:PORT")
    return host, int(port)


class TcpNetwork:
    """Plain TCP; outgoing connections may be redirected through a link map."""

    def __init__(self, link_map: dict[Address, Address] | None = None) -> None:
        self.link_map = link_map or {}

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
        host, port = self.link_map.get((host, port), (host, port))
        try:
            return await trio.open_tcp_stream(host, port)
        except OSError as error:
            raise NetworkError(f"cannot connect to {host}:{port}: {error}") from error
