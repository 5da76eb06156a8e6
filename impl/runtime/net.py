"""The network as the broker sees it: listen for and open byte streams.

The real implementation is loopback TCP through trio; the simulator ([8]) provides an
in-memory one with the same two calls, so the broker and client code never touch
sockets directly.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import math
import os
from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

Handler = Callable[[trio.abc.Stream], Awaitable[None]]

log = logging.getLogger("replog.net")

# What accept(2) returns when the process or the system is out of descriptors or memory.
ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
ACCEPT_RETRY_S = 0.1
LOG_INTERVAL_S = 10.0


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


def peer_host(stream: trio.abc.Stream) -> str | None:
    """The remote address of a TCP stream; None for other streams (the simulator's)."""
    sock = getattr(stream, "socket", None)
    if sock is None:
        return None
    try:
        return str(sock.getpeername()[0])
    except OSError:
        return None


class LogLimiter:
    """At most one warning per kind per interval, so a misbehaving peer cannot flood the
    log; the next line of a kind, or `flush`, says how many were suppressed."""

    def __init__(self, logger: logging.Logger, interval_s: float = LOG_INTERVAL_S) -> None:
        self.logger = logger
        self.interval_s = interval_s
        # kind -> (when its last line was logged, lines suppressed since)
        self._kinds: dict[str, tuple[float, int]] = {}

    def warning(self, kind: str, message: str, *args: object) -> None:
        self._log(logging.WARNING, kind, message, args, exc_info=False)

    def error(self, kind: str, message: str, *args: object) -> None:
        """An ERROR line with the current exception's traceback (rate-limited the same)."""
        self._log(logging.ERROR, kind, message, args, exc_info=True)

    def _log(
        self, level: int, kind: str, message: str, args: tuple[object, ...], *, exc_info: bool
    ) -> None:
        now = trio.current_time()
        logged_s, suppressed = self._kinds.get(kind, (-math.inf, 0))
        if now - logged_s < self.interval_s:
            self._kinds[kind] = (logged_s, suppressed + 1)
            return
        if suppressed:
            message += " (%d more %s suppressed in the last %.0f s)"
            args += (suppressed, kind, now - logged_s)
        self._kinds[kind] = (now, 0)
        self.logger.log(level, message, *args, exc_info=exc_info)

    def flush(self) -> None:
        """Report the kinds whose interval ended with lines suppressed."""
        now = trio.current_time()
        for kind, (logged_s, suppressed) in self._kinds.items():
            if suppressed and now - logged_s >= self.interval_s:
                self.logger.warning(
                    "%d more %s suppressed in the last %.0f s", suppressed, kind, now - logged_s
                )
                self._kinds[kind] = (now, 0)


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
        try:
            listeners = await trio.open_tcp_listeners(port, host=host)
        except OSError as error:
            raise NetworkError(f"cannot listen on {host}:{port}: {error.strerror}") from error
        bound_port = listeners[0].socket.getsockname()[1]
        limiter = LogLimiter(log)
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(_accept_forever, listener, handler, nursery, limiter)
            task_status.started(bound_port)

    async def connect(self, host: str, port: int) -> trio.abc.Stream:
        host, port = self.link_map.get((host, port), (host, port))
        try:
            return await trio.open_tcp_stream(host, port)
        except OSError as error:
            raise NetworkError(f"cannot connect to {host}:{port}: {error}") from error


async def _accept_forever(
    listener: trio.SocketListener,
    handler: Handler,
    nursery: trio.Nursery,
    limiter: LogLimiter,
) -> None:
    """trio.serve_listeners, but its retry warning (a traceback every 100 ms while the
    process is out of descriptors) rate-limited."""
    async with listener:
        while True:
            try:
                stream = await listener.accept()
            except OSError as error:
                if error.errno not in ACCEPT_CAPACITY_ERRNOS:
                    raise
                # The connection stays in the listen backlog; retrying at once would spin.
                limiter.warning(
                    "accept failures",
                    "cannot accept a connection: %s; retrying every %.0f ms",
                    os.strerror(error.errno),
                    ACCEPT_RETRY_S * 1000,
                )
                await trio.sleep(ACCEPT_RETRY_S)
            else:
                limiter.flush()
                nursery.start_soon(_handle, handler, stream)


async def _handle(handler: Handler, stream: trio.SocketStream) -> None:
    try:
        await handler(stream)
    finally:
        await trio.aclose_forcefully(stream)
