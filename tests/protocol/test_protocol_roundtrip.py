"""Every message of schemas.py, at every version Kafka defines, survives encode -> decode.

Bodies are drawn from the schema itself (protocol_strategies.py); decoding must give back
exactly the body, and re-encoding the decoded body must give back exactly the bytes.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from protocol_strategies import bodies, versions

from impl.protocol import (
    SUPPORTED,
    RequestHeader,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from impl.protocol.codec import Reader, Writer, decode_body, encode_body
from impl.protocol.messages import API_VERSIONS_KEY
from impl.protocol.schema_types import Message
from impl.protocol.schemas import MESSAGES

EXAMPLES_PER_VERSION = 10


CASES = [
    pytest.param(message, version, id=f"{message.name}-v{version}")
    for message in MESSAGES
    for version in versions(message)
]


def _supported(message: Message, version: int) -> bool:
    low, high = SUPPORTED[message.api_key]
    return low <= version <= high


def _round_trip(message: Message, version: int, body: dict[str, Any]) -> tuple[bytes, Any]:
    """(frame without size prefix, decoded body) through the public calls where they apply."""
    header = RequestHeader(message.api_key, version, 99, "client")
    if message.kind == "request" and _supported(message, version):
        frame = encode_request(message.api_key, version, 99, "client", body)[4:]
        request = decode_request(frame)
        assert request.header == header
        return frame, request.body
    if message.kind == "response" and (
        message.api_key != API_VERSIONS_KEY or _supported(message, version)
    ):
        frame = encode_response(header, body)[4:]
        correlation_id, decoded = decode_response(message.api_key, version, frame)
        assert correlation_id == 99
        return frame, decoded
    w = Writer()
    encode_body(message, version, w, body)
    frame = w.getvalue()
    r = Reader(frame)
    decoded = decode_body(message, version, r)
    assert r.remaining == 0
    return frame, decoded


@pytest.mark.parametrize(("message", "version"), CASES)
def test_round_trip(message: Message, version: int) -> None:
    @settings(
        max_examples=EXAMPLES_PER_VERSION,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(bodies(message, version))
    def check(body: dict[str, Any]) -> None:
        frame, decoded = _round_trip(message, version, body)
        assert decoded == body
        assert _round_trip(message, version, decoded)[0] == frame

    check()
