"""Header rules, version checks, defaults, tagged fields and error reporting."""

from __future__ import annotations

import logging

import pytest

from impl.protocol import (
    API_KEYS,
    SUPPORTED,
    Errors,
    InvalidRequestError,
    ProtocolError,
    RequestHeader,
    UnknownApiError,
    UnsupportedVersionError,
    api_versions_body,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)

PRODUCE = API_KEYS["Produce"]
FETCH = API_KEYS["Fetch"]
METADATA = API_KEYS["Metadata"]
HEARTBEAT = API_KEYS["Heartbeat"]
API_VERSIONS = API_KEYS["ApiVersions"]
CLIENT_ID = "cid"
CLIENT_ID_BYTES = b"\x00\x03cid"
TOPICS = {"topics": [{"name": "t"}]}


def _header_prefix(api_key: int, version: int, correlation_id: int) -> bytes:
    return api_key.to_bytes(2, "big") + version.to_bytes(2, "big") + correlation_id.to_bytes(4)


def test_request_header_v1_for_classic_versions() -> None:
    frame = encode_request(METADATA, 8, 5, CLIENT_ID, TOPICS)
    assert int.from_bytes(frame[:4]) == len(frame) - 4
    header = _header_prefix(METADATA, 8, 5) + CLIENT_ID_BYTES
    assert frame[4:].startswith(header)
    assert frame[4 + len(header) : 4 + len(header) + 4] == b"\x00\x00\x00\x01"


def test_request_header_v2_adds_tagged_fields_but_keeps_an_int16_client_id() -> None:
    frame = encode_request(METADATA, 9, 5, CLIENT_ID, TOPICS)
    header = _header_prefix(METADATA, 9, 5) + CLIENT_ID_BYTES + b"\x00"
    assert frame[4:].startswith(header)
    assert frame[4 + len(header)] == 2, "compact array: one topic is count+1"


def test_null_client_id() -> None:
    frame = encode_request(METADATA, 1, 5, None, TOPICS)
    assert frame[4 + 8 : 4 + 10] == b"\xff\xff"
    assert decode_request(frame[4:]).header.client_id is None


def test_response_header_v0_for_classic_versions_and_v1_for_flexible() -> None:
    body = {"throttle_time_ms": 7, "error_code": 0}
    classic = encode_response(RequestHeader(HEARTBEAT, 3, 42, None), body)
    flexible = encode_response(RequestHeader(HEARTBEAT, 4, 42, None), body)
    assert classic[4:] == (42).to_bytes(4) + (7).to_bytes(4) + b"\x00\x00"
    assert flexible[4:] == (42).to_bytes(4) + b"\x00" + (7).to_bytes(4) + b"\x00\x00" + b"\x00"


@pytest.mark.parametrize("version", [3, 4])
def test_api_versions_response_header_is_always_v0(version: int) -> None:
    frame = encode_response(RequestHeader(API_VERSIONS, version, 42, None), api_versions_body())
    assert frame[4:8] == (42).to_bytes(4)
    assert frame[8:10] == b"\x00\x00", "the error code follows the correlation id directly"
    correlation_id, body = decode_response(API_VERSIONS, version, frame[4:])
    assert correlation_id == 42
    assert {(k["api_key"], k["min_version"], k["max_version"]) for k in body["api_keys"]} == {
        (key, low, high) for key, (low, high) in SUPPORTED.items()
    }


def test_unsupported_api_versions_request_is_answered_in_v0() -> None:
    frame = encode_request(API_VERSIONS, 4, 9, CLIENT_ID, {})[4:]
    future = _header_prefix(API_VERSIONS, 99, 9) + frame[8:]
    with pytest.raises(UnsupportedVersionError) as caught:
        decode_request(future)
    error = caught.value
    assert (error.api_key, error.api_version, error.correlation_id) == (API_VERSIONS, 99, 9)
    header = RequestHeader(error.api_key, error.api_version, error.correlation_id, None)
    response = encode_response(header, api_versions_body(Errors.UNSUPPORTED_VERSION))
    v0 = encode_response(RequestHeader(API_VERSIONS, 0, 9, None), api_versions_body(35))
    assert response == v0
    correlation_id, body = decode_response(API_VERSIONS, 4, response[4:])
    assert correlation_id == 9
    assert body["error_code"] == Errors.UNSUPPORTED_VERSION
    assert len(body["api_keys"]) == len(SUPPORTED)


@pytest.mark.parametrize(
    ("api_key", "version"), [(PRODUCE, 2), (FETCH, 13), (API_KEYS["ListOffsets"], 0)]
)
def test_unsupported_versions_are_refused_with_header_fields(api_key: int, version: int) -> None:
    frame = _header_prefix(api_key, version, 77) + CLIENT_ID_BYTES + b"garbage"
    with pytest.raises(UnsupportedVersionError) as caught:
        decode_request(frame)
    assert (caught.value.api_key, caught.value.api_version) == (api_key, version)
    assert caught.value.correlation_id == 77


@pytest.mark.parametrize("api_key", [7, 50, -1, 0x7FFF])
def test_unknown_api_keys_are_refused(api_key: int) -> None:
    with pytest.raises(UnknownApiError) as caught:
        decode_request(_header_prefix(api_key & 0xFFFF, 0, 78))
    assert caught.value.correlation_id == 78


def test_a_malformed_body_reports_the_header_and_the_field() -> None:
    records = b"r" * 100
    body = {"acks": -1, "topic_data": [{"name": "t", "partition_data": [{"records": records}]}]}
    frame = encode_request(PRODUCE, 9, 3, CLIENT_ID, body)[4:]
    with pytest.raises(InvalidRequestError) as caught:
        decode_request(frame[:-20])
    assert caught.value.header == RequestHeader(PRODUCE, 9, 3, CLIENT_ID)
    assert "topic_data[0].partition_data[0].records" in str(caught.value)


def test_trailing_bytes_after_a_whole_request_are_ignored_as_kafka_does(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # librdkafka 2.15+ sends its all-topics MetadataRequest v12 with 3 extra bytes.
    frame = encode_request(METADATA, 12, 3, CLIENT_ID, {"topics": None})[4:]
    with caplog.at_level(logging.DEBUG, logger="impl.protocol.messages"):
        request = decode_request(frame + b"\x00\x01\x02")
    assert request == decode_request(frame)
    assert request.body["topics"] is None
    assert "MetadataRequest v12: 3 trailing bytes ignored" in caplog.text


def test_a_truncated_request_is_still_malformed() -> None:
    frame = encode_request(METADATA, 12, 3, CLIENT_ID, TOPICS)[4:]
    with pytest.raises(InvalidRequestError, match="truncated"):
        decode_request(frame[:-3])


def test_trailing_bytes_after_a_whole_response_are_ignored() -> None:
    body = {"throttle_time_ms": 7, "error_code": 0}
    frame = encode_response(RequestHeader(HEARTBEAT, 4, 42, None), body)[4:]
    assert decode_response(HEARTBEAT, 4, frame + b"\x07\x07") == (42, body)


def test_records_decode_without_copying_the_frame() -> None:
    records = bytes(range(256)) * 64
    body = {"topic_data": [{"name": "t", "partition_data": [{"index": 1, "records": records}]}]}
    frame = encode_request(PRODUCE, 9, 3, CLIENT_ID, body)[4:]
    decoded = decode_request(frame).body["topic_data"][0]["partition_data"][0]["records"]
    assert isinstance(decoded, memoryview)
    assert decoded.obj is frame
    assert decoded == records


def test_absent_fields_take_their_defaults() -> None:
    fetch = decode_request(encode_request(FETCH, 12, 1, None, {})[4:]).body
    assert fetch["replica_id"] == -1
    assert fetch["max_bytes"] == 0x7FFFFFFF
    assert fetch["session_epoch"] == -1
    assert fetch["rack_id"] == ""
    assert fetch["cluster_id"] is None, "tagged, default null"
    assert fetch["topics"] == []
    assert "replica_state" not in fetch, "versions 15+ only"


def test_a_nullable_field_without_a_default_is_null_only_where_nullable() -> None:
    v0 = decode_request(encode_request(METADATA, 0, 1, None, {})[4:]).body
    v4 = decode_request(encode_request(METADATA, 4, 1, None, {})[4:]).body
    assert v0["topics"] == [], "not nullable in v0: an empty list (= all topics in v0)"
    assert v4["topics"] is None, "nullable from v1: null (= all topics)"
    assert v4["allow_auto_topic_creation"] is True


def test_fields_outside_the_version_are_ignored_on_encode() -> None:
    with_rack = encode_request(FETCH, 4, 1, None, {"rack_id": "r"})
    assert with_rack == encode_request(FETCH, 4, 1, None, {})


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"topic": []}, "unknown fields"),
        ({"topics": None}, "topics: null"),
        ({"max_wait_ms": 2**31}, "max_wait_ms"),
        ({"topics": [{"topic": 5}]}, "topics[0].topic"),
    ],
)
def test_bad_bodies_are_refused_on_encode(body: dict[str, object], reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        encode_request(FETCH, 4, 1, None, body)


def test_tagged_fields_are_written_only_when_not_default_and_read_back() -> None:
    partition = {"partition_index": 0, "records": None}
    plain = {"responses": [{"topic": "t", "partitions": [partition]}]}
    diverging = {**partition, "diverging_epoch": {"epoch": 3, "end_offset": 10}}
    tagged = {"responses": [{"topic": "t", "partitions": [diverging]}]}
    header = RequestHeader(FETCH, 12, 1, None)
    plain_frame = encode_response(header, plain)
    tagged_frame = encode_response(header, tagged)
    assert len(tagged_frame) > len(plain_frame)
    decoded = decode_response(FETCH, 12, tagged_frame[4:])[1]
    assert decoded["responses"][0]["partitions"][0]["diverging_epoch"] == {
        "epoch": 3,
        "end_offset": 10,
    }
    default = decode_response(FETCH, 12, plain_frame[4:])[1]["responses"][0]["partitions"][0]
    assert default["diverging_epoch"] == {"epoch": -1, "end_offset": -1}


def test_unknown_tagged_fields_are_skipped() -> None:
    body = {"group_id": "g", "generation_id": 1, "member_id": "m"}
    frame = encode_request(HEARTBEAT, 4, 1, None, body)[4:]
    assert frame.endswith(b"\x00")
    extended = frame[:-1] + b"\x01" + b"\x63" + b"\x02" + b"ab"
    assert decode_request(extended).body == decode_request(frame).body


def test_a_tagged_field_must_fill_its_declared_size() -> None:
    body = {"responses": [{"topic": "t", "partitions": [{"diverging_epoch": {"epoch": 3}}]}]}
    frame = bytearray(encode_response(RequestHeader(FETCH, 12, 1, None), body)[4:])
    tag_start = frame.index(b"\x00\x0d" + b"\x00\x00\x00\x03")
    frame[tag_start + 1] += 1
    frame[tag_start + 2 : tag_start + 2] = b"\x00"
    with pytest.raises(ProtocolError, match="diverging_epoch"):
        decode_response(FETCH, 12, bytes(frame))
