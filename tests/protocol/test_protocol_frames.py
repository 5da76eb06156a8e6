"""Size-prefixed framing: FrameReader and receive_frame, their limits and their failures."""

from __future__ import annotations

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from impl.protocol import FrameReader, FrameTooLargeError, ProtocolError, receive_frame

LIMIT = 1024


def framed(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big", signed=True) + payload


@settings(max_examples=200, derandomize=True, database=None)
@given(
    st.lists(st.binary(max_size=64), max_size=8),
    st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=20),
)
def test_frames_survive_any_split(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(framed(p) for p in payloads)
    reader = FrameReader(LIMIT)
    out: list[bytes] = []
    position = 0
    for cut in cuts * (len(stream) // sum(cuts) + 1):
        out += reader.feed(stream[position : position + cut])
        position += cut
    assert out == payloads
    assert reader.buffered_bytes == 0


def test_oversized_prefix_is_refused_before_the_frame_arrives() -> None:
    reader = FrameReader(LIMIT)
    assert reader.feed(framed(b"x" * LIMIT)) == [b"x" * LIMIT]
    with pytest.raises(FrameTooLargeError, match="1025"):
        reader.feed((LIMIT + 1).to_bytes(4, "big"))


def test_negative_prefix_is_refused() -> None:
    with pytest.raises(FrameTooLargeError, match="negative"):
        FrameReader(LIMIT).feed(b"\xff\xff\xff\xfe")


def test_one_whole_frame_per_arrival_and_a_frame_after_a_partial_one() -> None:
    reader = FrameReader(LIMIT)
    assert reader.feed(framed(b"one")) == [b"one"]
    assert reader.feed(framed(b"two")[:5]) == []
    assert reader.feed(framed(b"two")[5:] + framed(b"three")) == [b"two", b"three"]
    assert reader.feed(framed(b"")) == [b""]
    assert reader.buffered_bytes == 0
    with pytest.raises(FrameTooLargeError):
        reader.feed(framed(b"x" * (LIMIT + 1)))


def test_empty_frames_are_frames() -> None:
    assert FrameReader(LIMIT).feed(framed(b"") * 3) == [b"", b"", b""]


class ChunkedStream(trio.abc.ReceiveStream):
    """Hands out `data` at most `chunk` bytes at a time, then end of stream."""

    def __init__(self, data: bytes, chunk: int) -> None:
        self.data = data
        self.chunk = chunk

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        size = min(self.chunk, max_bytes or self.chunk)
        piece, self.data = self.data[:size], self.data[size:]
        return piece

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def _receive_all(data: bytes, chunk: int, limit: int = LIMIT) -> list[bytes | None]:
    stream = ChunkedStream(data, chunk)
    frames: list[bytes | None] = []
    while not frames or frames[-1] is not None:
        frames.append(await receive_frame(stream, limit))
    return frames


@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_receive_frame_reads_frames_then_none_at_a_clean_end(chunk: int) -> None:
    data = framed(b"first") + framed(b"") + framed(b"x" * 700)
    assert trio.run(_receive_all, data, chunk) == [b"first", b"", b"x" * 700, None]


@pytest.mark.parametrize("data", [b"\x00\x00", framed(b"abc")[:-1]])
def test_receive_frame_refuses_an_end_inside_a_frame(data: bytes) -> None:
    with pytest.raises(ProtocolError, match="closed"):
        trio.run(_receive_all, data, 1)


def test_receive_frame_refuses_an_oversized_prefix() -> None:
    with pytest.raises(FrameTooLargeError):
        trio.run(_receive_all, framed(b"y" * 11), 100, 10)
