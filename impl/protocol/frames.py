"""Size-prefixed framing: every Kafka request and response is an int32 size, then the frame.

A size above the limit (or negative) is refused as soon as the 4 prefix bytes are in, before
any of the frame is buffered, so a bad or hostile peer cannot make the broker allocate.
"""

from __future__ import annotations

import trio

from impl.protocol.codec import INT32
from impl.protocol.errors import FrameTooLargeError, ProtocolError

# Kafka's socket.request.max.bytes default.
DEFAULT_MAX_FRAME_BYTES = 104_857_600
SIZE_PREFIX_BYTES = INT32.size
RECEIVE_CHUNK_BYTES = 256 * 1024
# Every connection may read this much, whatever the pool (a Produce of one 16 KiB batch).
RECEIVE_MIN_BYTES = 32 * 1024


def _check_size(size: int, max_frame_bytes: int) -> int:
    if size < 0:
        raise FrameTooLargeError(f"negative frame size {size}")
    if size > max_frame_bytes:
        raise FrameTooLargeError(f"frame of {size} bytes exceeds the limit of {max_frame_bytes}")
    return size


class FrameReader:
    """Incremental deframer for bytes arriving in arbitrary pieces."""

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        assert max_frame_bytes >= 0, "max_frame_bytes must be >= 0"
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()
        self._next_size: int | None = None

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    @property
    def pending_frame_bytes(self) -> int:
        """The declared size of the frame arriving now; 0 before its size prefix is in."""
        return self._next_size or 0

    def feed(self, data: bytes) -> list[bytes]:
        """Every frame `data` completes, size prefix stripped, in arrival order."""
        # The usual arrival, exactly one whole frame, is sliced without buffering.
        if (
            not self._buffer
            and self._next_size is None
            and type(data) is bytes
            and len(data) >= SIZE_PREFIX_BYTES
        ):
            size = _check_size(INT32.unpack_from(data)[0], self.max_frame_bytes)
            if len(data) - SIZE_PREFIX_BYTES == size:
                return [data[SIZE_PREFIX_BYTES:]]
        self._buffer += data
        frames: list[bytes] = []
        position = 0
        with memoryview(self._buffer) as view:
            while True:
                if self._next_size is None:
                    if len(view) - position < SIZE_PREFIX_BYTES:
                        break
                    size = INT32.unpack_from(view, position)[0]
                    self._next_size = _check_size(size, self.max_frame_bytes)
                    position += SIZE_PREFIX_BYTES
                if len(view) - position < self._next_size:
                    break
                frames.append(bytes(view[position : position + self._next_size]))
                position += self._next_size
                self._next_size = None
        # One compaction per feed, not per frame: many small frames stay linear.
        del self._buffer[:position]
        return frames


class RequestBytesPool:
    """`queued.max.request.bytes`: the bytes all connections may hold for frames still
    arriving. A connection reserves a frame's declared size once its size prefix is in
    and reads no further until the reservation is granted, as Kafka's memory pool mutes a
    channel; frames then complete one at a time instead of all stalling half-read. A
    frame larger than the pool is granted when nobody else holds anything, so every
    frame `socket.request.max.bytes` allows can still arrive.

    A receive may bring the start of a frame that must then wait for its reservation, so
    each connection reads at most its share of the pool beyond the frame it holds:
    frames waiting for a grant hold no more than the pool itself in all.
    """

    def __init__(self, capacity_bytes: int, max_connections: int) -> None:
        # -1 is Kafka's "unlimited".
        self.capacity_bytes = capacity_bytes
        self.used_bytes = 0
        self._released = trio.Event()
        share = capacity_bytes // max_connections if capacity_bytes >= 0 else RECEIVE_CHUNK_BYTES
        self.share_bytes = min(max(share, RECEIVE_MIN_BYTES), RECEIVE_CHUNK_BYTES)

    def receive_limit(self, reader: FrameReader) -> int:
        """How much one receive may bring: the rest of the reserved frame plus a share."""
        rest = reader.pending_frame_bytes - reader.buffered_bytes
        return min(max(rest, 0) + self.share_bytes, RECEIVE_CHUNK_BYTES)

    def _grantable(self, size: int) -> bool:
        return (
            self.capacity_bytes < 0
            or self.used_bytes == 0
            or self.used_bytes + size <= self.capacity_bytes
        )

    async def acquire(self, size: int) -> None:
        if not size:
            return
        while not self._grantable(size):
            await self._released.wait()
        self.used_bytes += size

    def release(self, size: int) -> None:
        if size:
            self.used_bytes -= size
            self._released.set()
            self._released = trio.Event()


async def _receive_exactly(stream: trio.abc.ReceiveStream, size: int) -> bytes | None:
    """`size` bytes, or None if the stream ended before the first byte."""
    chunks: list[bytes] = []
    received = 0
    while received < size:
        chunk = await stream.receive_some(min(size - received, RECEIVE_CHUNK_BYTES))
        if not chunk:
            if received == 0:
                return None
            raise ProtocolError(f"connection closed after {received} of {size} bytes")
        chunks.append(chunk)
        received += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def receive_frame(stream: trio.abc.ReceiveStream, max_frame_bytes: int) -> bytes | None:
    """One frame (prefix stripped); None on a clean end of stream between frames."""
    prefix = await _receive_exactly(stream, SIZE_PREFIX_BYTES)
    if prefix is None:
        return None
    size = _check_size(INT32.unpack(prefix)[0], max_frame_bytes)
    if size == 0:
        return b""
    frame = await _receive_exactly(stream, size)
    if frame is None:
        raise ProtocolError(f"connection closed before a frame of {size} bytes")
    return bytes(frame)
