"""The generated codec path (`StructCodec.fast_read`/`fast_write`) against the
step-by-step one it stands in for: same bytes, same bodies, for every message at every
version. The public calls fall back to the step-by-step path on any failure, so the
round-trip tests alone would pass with a generated path that always fails."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from protocol_strategies import bodies, versions

from impl.protocol.codec import (
    BLOB_INLINE_BYTES_MAX,
    Reader,
    Writer,
    body_codec,
    decode_body,
    encode_body,
)
from impl.protocol.errors import ProtocolError
from impl.protocol.schema_types import Message
from impl.protocol.schemas import MESSAGES

EXAMPLES_PER_VERSION = 3

CASES = [
    pytest.param(message, version, id=f"{message.name}-v{version}")
    for message in MESSAGES
    for version in versions(message)
]


@pytest.mark.parametrize(("message", "version"), CASES)
def test_the_generated_path_writes_and_reads_what_the_steps_do(
    message: Message, version: int
) -> None:
    codec = body_codec(message, version)

    @settings(
        max_examples=EXAMPLES_PER_VERSION,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(bodies(message, version))
    def check(body: dict[str, Any]) -> None:
        fast, steps = Writer(), Writer()
        codec.fast_write(fast, body)
        codec.write_steps_one_by_one(steps, body)
        frame = fast.getvalue()
        assert frame == steps.getvalue()
        fast_reader, steps_reader = Reader(frame), Reader(frame)
        decoded = codec.fast_read(fast_reader)
        assert decoded == codec.read_steps_one_by_one(steps_reader) == body
        assert fast_reader.pos == steps_reader.pos == len(frame)

    check()


def test_a_failure_on_the_generated_path_takes_its_bytes_back(monkeypatch) -> None:
    """Whatever the generated writer wrote before it failed (here: all of it, a large
    blob kept by reference included) is taken back before the step path writes."""
    message = next(m for m in MESSAGES if m.name == "ProduceRequest")
    codec = body_codec(message, 9)
    big = bytes(BLOB_INLINE_BYTES_MAX + 1)
    body = {
        "acks": -1,
        "timeout_ms": 100,
        "topic_data": [{"name": "t", "partition_data": [{"index": 0, "records": big}]}],
    }
    expected = Writer()
    codec.write_steps_one_by_one(expected, body)
    generated = codec.fast_write

    def write_then_fail(w: Writer, value: dict[str, Any]) -> None:
        generated(w, value)
        raise ValueError("failed after writing")

    monkeypatch.setattr(codec, "fast_write", write_then_fail)
    w = Writer()
    w.buf += b"prefix"
    codec.write(w, body)
    assert w.getvalue() == b"prefix" + expected.getvalue()


def test_errors_still_name_the_field_through_the_generated_path() -> None:
    message = next(m for m in MESSAGES if m.name == "ProduceRequest")
    partitions = [{"index": 0, "records": b""}, {"index": "x", "records": b""}]
    body = {
        "acks": -1,
        "timeout_ms": 1,
        "topic_data": [{"name": "t", "partition_data": partitions}],
    }
    with pytest.raises(ProtocolError, match=r"topic_data\[0\]\.partition_data\[1\]\.index"):
        encode_body(message, 9, Writer(), body)


def test_the_inlined_cases_and_their_neighbours_match_the_steps() -> None:
    """One-byte lengths are inlined, longer ones and nulls are not; a tagged count of 0
    is inlined, a present tagged field is not: both sides of each, in one body."""
    message = next(m for m in MESSAGES if m.name == "FetchResponse")
    codec = body_codec(message, 12)
    row = {"partition_index": 0, "error_code": 0, "high_watermark": 5, "records": b"r" * 5}
    rows = [
        row,
        {**row, "partition_index": 1, "records": b"r" * 300},
        {**row, "partition_index": 2, "records": None},
        {**row, "partition_index": 3, "diverging_epoch": {"epoch": 2, "end_offset": 9}},
    ]
    body = {"responses": [{"topic": "t", "partitions": rows}, {"topic": "x" * 200}]}
    fast, steps = Writer(), Writer()
    codec.fast_write(fast, body)
    codec.write_steps_one_by_one(steps, body)
    frame = fast.getvalue()
    assert frame == steps.getvalue()
    decoded = codec.fast_read(Reader(frame))
    assert decoded == codec.read_steps_one_by_one(Reader(frame))
    assert decoded["responses"][1]["topic"] == "x" * 200
    assert decoded["responses"][0]["partitions"][3]["diverging_epoch"]["end_offset"] == 9
    assert bytes(decoded["responses"][0]["partitions"][1]["records"]) == b"r" * 300


def test_a_bad_string_is_refused_with_its_field_as_before() -> None:
    message = next(m for m in MESSAGES if m.name == "FetchResponse")
    w = Writer()
    body_codec(message, 12).write(w, {"responses": [{"topic": "ab"}]})
    frame = bytearray(w.getvalue())
    frame[frame.index(b"ab") : frame.index(b"ab") + 2] = b"\xff\xfe"
    with pytest.raises(ProtocolError, match=r"responses\[0\]\.topic: string is not UTF-8"):
        decode_body(message, 12, Reader(bytes(frame)))
