"""Fuzzing the decoders: random bytes and mutated valid frames raise ProtocolError or decode.

Any other exception escaping (IndexError, struct.error, UnicodeDecodeError, MemoryError,
RecursionError, ...) is a crash of the connection handler, which is what these rule out.
"""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from protocol_strategies import bodies, versions

from impl.protocol import (
    SUPPORTED,
    FrameReader,
    ProtocolError,
    RequestHeader,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from impl.protocol.messages import REQUESTS, RESPONSES
from impl.protocol.schema_types import Message

FUZZ = settings(
    max_examples=400,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
FRAME_LIMIT = 4096
EXTREME_LENGTHS = [b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x80\x80\x80\x80"]
SUPPORTED_PAIRS = sorted(
    (key, version) for key, (low, high) in SUPPORTED.items() for version in range(low, high + 1)
)
RESPONSE_PAIRS = sorted(
    (key, version) for key, message in RESPONSES.items() for version in versions(message)
)


def _decode_request(frame: bytes | memoryview) -> None:
    with contextlib.suppress(ProtocolError):
        decode_request(frame)


def _decode_response(api_key: int, version: int, frame: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_response(api_key, version, frame)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_as_request(frame: bytes) -> None:
    _decode_request(frame)


@FUZZ
@given(st.sampled_from(SUPPORTED_PAIRS), st.binary(max_size=200))
def test_random_bodies_behind_a_valid_request_header(pair: tuple[int, int], tail: bytes) -> None:
    api_key, version = pair
    header = api_key.to_bytes(2, "big") + version.to_bytes(2, "big") + b"\x00\x00\x00\x01"
    _decode_request(header + b"\x00\x01c" + tail)
    _decode_request(memoryview(header + tail))


@FUZZ
@given(st.sampled_from(RESPONSE_PAIRS), st.binary(max_size=200))
def test_random_bytes_as_response(pair: tuple[int, int], frame: bytes) -> None:
    _decode_response(*pair, frame)


@st.composite
def valid_frames(draw: st.DrawFn) -> tuple[Message, int, bytes]:
    """A valid frame (size prefix stripped) of any supported request or its response."""
    api_key, version = draw(st.sampled_from(SUPPORTED_PAIRS))
    if draw(st.booleans()):
        message = REQUESTS[api_key]
        body: dict[str, Any] = draw(bodies(message, version))
        frame = encode_request(api_key, version, 1, "fuzz", body)
    else:
        message = RESPONSES[api_key]
        body = draw(bodies(message, version))
        frame = encode_response(RequestHeader(api_key, version, 1, None), body)
    return message, version, frame[4:]


@st.composite
def mutations(draw: st.DrawFn, frame: bytes) -> bytes:
    data = bytearray(frame)
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        kind = draw(st.sampled_from(["set", "insert", "delete", "truncate", "extreme"]))
        if kind == "set" and data:
            data[position] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete":
            del data[position : position + draw(st.integers(1, 4))]
        elif kind == "truncate":
            del data[position:]
        else:
            data[position : position + 4] = draw(st.sampled_from(EXTREME_LENGTHS))
    return bytes(data)


@FUZZ
@given(st.data())
def test_mutated_valid_frames(data: st.DataObject) -> None:
    message, version, frame = data.draw(valid_frames())
    mutated = data.draw(mutations(frame))
    if message.kind == "request":
        _decode_request(mutated)
    else:
        _decode_response(message.api_key, version, mutated)


@FUZZ
@given(st.lists(st.binary(max_size=64), max_size=10))
def test_frame_reader_on_random_bytes(pieces: list[bytes]) -> None:
    reader = FrameReader(FRAME_LIMIT)
    with contextlib.suppress(ProtocolError):
        for piece in pieces:
            for frame in reader.feed(piece):
                assert len(frame) <= FRAME_LIMIT
                _decode_request(frame)
