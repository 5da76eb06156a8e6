"""One connection to one broker: handshake, pipelined requests, ordered responses.

Kafka answers a connection's requests in the order they were sent, so the connection
keeps a FIFO of requests awaiting an answer and a single reader task pops one per
response frame (the correlation id is checked, not searched for). Writers serialise
on a lock; a write cut short leaves half a frame on the wire, after which nothing can
be framed, so it breaks the connection.

A request that gets no answer within its timeout breaks the connection too, as Kafka's
NetworkClient does: every other request on it fails with `ConnectionLost`, and the
next user opens a fresh one. A caller cancelled from outside while waiting leaves its
slot in the FIFO; the late response is read and dropped, and the connection lives on.

Outcomes, for the error taxonomy: a request that was never written raises `NotSent`;
one that was written (or partly written) and got no answer raises `RequestTimeout` or
`ConnectionLost`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import trio

from impl.client.errors import (
    ClientError,
    ConnectionLost,
    IncompatibleBroker,
    NotSent,
    OutcomeUnknown,
    RequestTimeout,
)
from impl.protocol import (
    API_KEYS,
    DEFAULT_MAX_FRAME_BYTES,
    SUPPORTED,
    FrameReader,
    ProtocolError,
    decode_response,
    encode_request,
)
from impl.runtime.runtime import Runtime
from impl.runtime.waits import Flag
from model.errors import Errors

API_VERSIONS = API_KEYS["ApiVersions"]
CORRELATION_ID_MAX = 2**31 - 1
RECEIVE_CHUNK_BYTES = 256 * 1024
CLIENT_SOFTWARE_NAME = "replog"
CLIENT_SOFTWARE_VERSION = "0.1.0"

Body = dict[str, Any]


class PendingRequest:
    """One request on its way: written (or not yet), then answered or failed."""

    __slots__ = (
        "api_key",
        "body",
        "correlation_id",
        "done",
        "error",
        "frame",
        "on_settled",
        "version",
        "written",
    )

    def __init__(self, api_key: int, version: int, correlation_id: int, frame: bytes) -> None:
        self.api_key = api_key
        self.version = version
        self.correlation_id = correlation_id
        self.frame = frame
        # Set once the first byte may have left: from then on the outcome is unknown.
        self.written = False
        self.done = Flag()
        self.body: Body | None = None
        self.error: OutcomeUnknown | None = None
        self.on_settled: Callable[[PendingRequest], None] | None = None

    def resolve(self, body: Body) -> None:
        # A request that timed out stays failed: its late answer changes nothing.
        if not self.done.is_set():
            self.body = body
            self._settled()

    def fail(self, error: OutcomeUnknown) -> None:
        if not self.done.is_set():
            self.error = error
            self._settled()

    def _settled(self) -> None:
        self.done.set()
        if self.on_settled is not None:
            on_settled, self.on_settled = self.on_settled, None
            on_settled(self)

    def call_when_settled(self, on_settled: Callable[[PendingRequest], None]) -> None:
        """Run `on_settled(self)` once the request is answered or failed (now, if it
        is): in the task that settles it, so nobody has to wake up to await it."""
        assert self.on_settled is None, "one callback per request"
        if self.done.is_set():
            on_settled(self)
        else:
            self.on_settled = on_settled


def negotiate_versions(broker_ranges: list[Body]) -> dict[int, int]:
    """Per API, the highest version both sides speak (APIs with no overlap are left out)."""
    versions = {}
    for entry in broker_ranges:
        ours = SUPPORTED.get(entry["api_key"])
        if ours is None:
            continue
        low = max(ours[0], entry["min_version"])
        high = min(ours[1], entry["max_version"])
        if low <= high:
            versions[entry["api_key"]] = high
    return versions


class Connection:
    """Open with `await Connection.open(...)`; its reader task lives in the given nursery."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        address: str,
        client_id: str,
        request_timeout_ms: int,
        max_frame_bytes: int,
    ) -> None:
        self.address = address
        self.client_id = client_id
        self.request_timeout_ms = request_timeout_ms
        self.versions: dict[int, int] = {}
        self._stream = stream
        # The simulator's streams can write without waiting; a socket stream cannot.
        self._send_nowait: Callable[[bytes], bool] | None = getattr(stream, "send_all_nowait", None)
        self._frames = FrameReader(max_frame_bytes)
        self._send_lock = trio.Lock()
        self._pending: deque[PendingRequest] = deque()
        self._next_correlation_id = 0
        self._broken: str | None = None

    @classmethod
    async def open(
        cls,
        runtime: Runtime,
        nursery: trio.Nursery,
        host: str,
        port: int,
        *,
        client_id: str,
        request_timeout_ms: int,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> Connection:
        """Connect, start the reader, negotiate versions. Raises NotSent or IncompatibleBroker."""
        address = f"{host}:{port}"
        with trio.move_on_after(request_timeout_ms / 1000):
            try:
                stream = await runtime.net.connect(host, port)
            except OSError as error:
                raise NotSent(f"cannot connect to {address}: {error}") from error
            connection = cls(stream, address, client_id, request_timeout_ms, max_frame_bytes)
            nursery.start_soon(connection._read_loop)
            try:
                await connection._handshake()
            except BaseException as error:
                with trio.CancelScope(shield=True):
                    await connection.aclose()
                if isinstance(error, OutcomeUnknown):
                    # Nothing but ApiVersions went out: no write can have happened.
                    raise NotSent(f"handshake with {address} failed: {error}") from error
                raise
            return connection
        raise NotSent(f"cannot connect to {address} within {request_timeout_ms} ms")

    @property
    def alive(self) -> bool:
        return self._broken is None

    def version(self, api_key: int) -> int:
        version = self.versions.get(api_key)
        if version is None:
            raise IncompatibleBroker(f"{self.address} shares no version of API {api_key}")
        return version

    async def request(self, api_key: int, body: Body, timeout_ms: int | None = None) -> Body:
        """Send and wait for the response body. Raises NotSent, RequestTimeout, ConnectionLost."""
        deadline = self._deadline(timeout_ms)
        pending = self._prepare(api_key, body)
        await self._write_by(pending, True, deadline)
        return await self.receive(pending, deadline)

    async def send(
        self, api_key: int, body: Body, deadline: float, expect_response: bool = True
    ) -> PendingRequest:
        """Write a request; its response is then awaited with `receive`. Callers that
        need requests on the wire in a given order call this in that order."""
        pending = self._prepare(api_key, body)
        await self._write_by(pending, expect_response, deadline)
        return pending

    def send_nowait(
        self, api_key: int, body: Body, expect_response: bool = True
    ) -> PendingRequest | None:
        """`send` where nothing could make it wait (a free lock, a stream with room for
        the frame: the simulator's): the request, written; None where it could wait or
        fails, with nothing written (then `send` waits, or meets the error and breaks the
        connection as it should)."""
        if not self._can_write_at_once() or self._broken is not None:
            return None
        try:
            pending = self._prepare(api_key, body)
            if not self._write_nowait(pending, expect_response):
                return None
        except (ClientError, trio.BrokenResourceError, trio.ClosedResourceError):
            return None
        return pending

    async def receive(self, pending: PendingRequest, deadline: float) -> Body:
        """The response to a request `send` wrote, by `deadline` (trio time)."""
        # A Flag's deadline, not a cancel scope (which costs about as much as a step).
        if not await pending.done.wait_until(deadline):
            raise await self._timed_out()
        if pending.error is not None:
            raise pending.error
        assert pending.body is not None
        return pending.body

    async def _write_by(
        self, pending: PendingRequest, expect_response: bool, deadline: float
    ) -> None:
        """Write `pending` unless `deadline` passes first (then NotSent or ConnectionLost).
        What cannot wait (a free lock, a stream with room for the frame) needs no
        deadline, hence no cancel scope."""
        if await self._write_at_once(pending, expect_response, deadline):
            return
        with trio.move_on_at(deadline):
            await self._write(pending, expect_response)
            return
        raise self._write_cut_off(pending)

    def _write_cut_off(self, pending: PendingRequest) -> OutcomeUnknown | NotSent:
        if not pending.written:
            return NotSent(f"could not write to {self.address} before the deadline")
        return ConnectionLost(f"write to {self.address} cut off at the deadline")

    async def _timed_out(self) -> RequestTimeout:
        message = f"no response from {self.address} in time"
        await self._break(message)
        return RequestTimeout(message)

    async def time_out(self, pending: PendingRequest) -> None:
        """`pending` (written by `send`) passed its deadline unanswered: it fails with
        RequestTimeout, the connection breaks (as `receive` past its deadline does)."""
        message = f"no response from {self.address} in time"
        pending.fail(RequestTimeout(message))
        await self._break(message)

    def _deadline(self, timeout_ms: int | None) -> float:
        timeout_ms = self.request_timeout_ms if timeout_ms is None else timeout_ms
        return trio.current_time() + timeout_ms / 1000

    async def wait_for_responses(self) -> None:
        """Until every request written so far is answered or failed. Responses come in
        order, so the last one's settling settles all before it; a request written
        meanwhile is waited for too."""
        while self._pending:
            await self._pending[-1].done.wait()

    async def aclose(self) -> None:
        await self._break("closed by the client")

    # ---- internals ---------------------------------------------------------------------

    async def _handshake(self) -> None:
        """ApiVersions at our highest version; a broker that cannot parse it answers v0
        with its ranges (KIP-511), and we ask again at the highest version it lists."""
        self.versions = {API_VERSIONS: SUPPORTED[API_VERSIONS][1]}
        body = {
            "client_software_name": CLIENT_SOFTWARE_NAME,
            "client_software_version": CLIENT_SOFTWARE_VERSION,
        }
        response = await self.request(API_VERSIONS, body)
        if response["error_code"] == Errors.UNSUPPORTED_VERSION:
            self.versions = negotiate_versions(response["api_keys"])
            self.version(API_VERSIONS)
            response = await self.request(API_VERSIONS, body)
        if response["error_code"] != Errors.NONE:
            raise IncompatibleBroker(f"{self.address} ApiVersions error {response['error_code']}")
        self.versions = negotiate_versions(response["api_keys"])

    def _correlation_id(self) -> int:
        correlation_id = self._next_correlation_id
        self._next_correlation_id = (correlation_id + 1) % (CORRELATION_ID_MAX + 1)
        return correlation_id

    def _check_alive(self) -> None:
        if self._broken is not None:
            raise NotSent(f"connection to {self.address} is broken: {self._broken}")

    def _prepare(self, api_key: int, body: Body) -> PendingRequest:
        self._check_alive()
        version = self.version(api_key)
        correlation_id = self._correlation_id()
        frame = encode_request(api_key, version, correlation_id, self.client_id, body)
        return PendingRequest(api_key, version, correlation_id, frame)

    async def _write(self, pending: PendingRequest, expect_response: bool) -> None:
        await self._acquire_send_lock()
        try:
            self._check_alive()
            if expect_response:
                self._pending.append(pending)
            pending.written = True
            try:
                await self._stream.send_all(pending.frame)
            except BaseException as error:
                # Half a frame may be on the wire: nothing after it could be framed.
                with trio.CancelScope(shield=True):
                    await self._break(f"write failed: {error!r}")
                if isinstance(error, (trio.BrokenResourceError, trio.ClosedResourceError)):
                    raise ConnectionLost(f"write to {self.address} failed: {error}") from error
                raise
        finally:
            self._send_lock.release()
        pending.frame = b""

    async def _write_at_once(
        self, pending: PendingRequest, expect_response: bool, deadline: float
    ) -> bool:
        """`_write` where nothing can make it wait: True once written; False (nothing
        done) where it could wait, the stream has no `send_all_nowait` (the simulator's
        has) or `deadline` has passed (which `_write` under its scope answers)."""
        if not self._can_write_at_once() or deadline <= trio.current_time():
            return False
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_alive()
        try:
            return self._write_nowait(pending, expect_response)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
            pending.written = True
            with trio.CancelScope(shield=True):
                await self._break(f"write failed: {error!r}")
            raise ConnectionLost(f"write to {self.address} failed: {error}") from error

    def _can_write_at_once(self) -> bool:
        """The stream can write without waiting (the simulator's) and no writer holds it."""
        return self._send_nowait is not None and not self._send_lock.locked()

    def _write_nowait(self, pending: PendingRequest, expect_response: bool) -> bool:
        """Put the whole frame on the stream now: True once written; False (nothing
        written) where it would wait; the stream's errors (nothing written) propagate."""
        assert self._send_nowait is not None
        if not self._send_nowait(pending.frame):
            return False
        if expect_response:
            self._pending.append(pending)
        pending.written = True
        pending.frame = b""
        return True

    async def _acquire_send_lock(self) -> None:
        """`async with lock` without its scheduling pass when nobody holds it: send_all,
        right after, yields anyway. A cancelled caller still stops here, before anything
        counts as written."""
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self._send_lock.acquire_nowait()
        except trio.WouldBlock:
            await self._send_lock.acquire()

    async def _read_loop(self) -> None:
        reason = "closed by the broker"
        try:
            while self._broken is None:
                data = await self._stream.receive_some(RECEIVE_CHUNK_BYTES)
                if not data:
                    break
                for frame in self._frames.feed(data):
                    self._deliver(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
            reason = f"read failed: {error!r}"
        except ProtocolError as error:
            reason = f"unreadable response: {error}"
        await self._break(reason)

    def _deliver(self, frame: bytes) -> None:
        if not self._pending:
            raise ProtocolError(f"a response from {self.address} that nobody asked for")
        pending = self._pending.popleft()
        correlation_id, body = decode_response(pending.api_key, pending.version, frame)
        if correlation_id != pending.correlation_id:
            raise ProtocolError(
                f"correlation id {correlation_id}, expected {pending.correlation_id}"
            )
        pending.resolve(body)

    async def _break(self, reason: str) -> None:
        """Fail every waiting request and close; later requests raise NotSent."""
        if self._broken is None:
            self._broken = reason
        while self._pending:
            self._pending.popleft().fail(
                ConnectionLost(f"connection to {self.address} lost: {reason}")
            )
        await trio.aclose_forcefully(self._stream)
