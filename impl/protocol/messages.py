"""Requests and responses: headers, the supported versions, and the public encode/decode calls.

Header rules (Kafka's): a request header is v1 (api_key int16, api_version int16,
correlation_id int32, client_id nullable int16-length string) or, when the API's version is
flexible, v2 (v1 + tagged fields; client_id keeps its int16 length). A response header is
v0 (correlation_id int32) or, for flexible versions, v1 (+ tagged fields) — except that
ApiVersions always answers with header v0, so that a client can read the answer before it
knows what the broker speaks. An ApiVersions request at a version the broker does not
support is answered with the v0 body (KIP-511).

Bytes after a complete body are ignored (logged at DEBUG), as Kafka's parsers ignore them;
unknown tagged fields are skipped. Everything else Kafka rejects (a truncated body, a bad
length or count) stays an error.

Frames passed to the decoders exclude the 4-byte size prefix; encoders include it.
"""

from __future__ import annotations

import logging
import struct
from functools import cache, lru_cache
from typing import Any, NamedTuple

from impl.protocol import config_apis, group_apis, internal, schemas
from impl.protocol.codec import (
    ENCODE_FAILURES,
    INT16,
    INT32,
    Reader,
    Writer,
    decode_body,
    encode_body,
    is_flexible,
    read_client_id,
    write_client_id,
)
from impl.protocol.errors import (
    Errors,
    InvalidRequestError,
    ProtocolError,
    UnknownApiError,
    UnsupportedVersionError,
)
from impl.protocol.frames import SIZE_PREFIX_BYTES
from impl.protocol.schema_types import Message, in_versions

_ALL_MESSAGES = (
    *schemas.MESSAGES,
    *group_apis.MESSAGES,
    *config_apis.MESSAGES,
    *internal.MESSAGES,
)
REQUESTS: dict[int, Message] = {m.api_key: m for m in _ALL_MESSAGES if m.kind == "request"}
RESPONSES: dict[int, Message] = {m.api_key: m for m in _ALL_MESSAGES if m.kind == "response"}
API_KEYS: dict[str, int] = {m.name.removesuffix("Request"): k for k, m in REQUESTS.items()}
API_VERSIONS_KEY = API_KEYS["ApiVersions"]

# What replog answers in ApiVersions. Lowest: what Kafka 4.0 still accepts (KIP-896).
# Highest: what kafka-python 3.0.12 and librdkafka 2.16 send when offered everything, capped
# below the first version that needs a feature replog lacks (table in __init__.py).
SUPPORTED: dict[int, tuple[int, int]] = {
    API_KEYS["Produce"]: (3, 10),
    API_KEYS["Fetch"]: (4, 12),
    API_KEYS["ListOffsets"]: (1, 7),
    API_KEYS["Metadata"]: (0, 12),
    API_KEYS["OffsetCommit"]: (2, 9),
    API_KEYS["OffsetFetch"]: (1, 9),
    API_KEYS["FindCoordinator"]: (0, 4),
    API_KEYS["JoinGroup"]: (2, 7),
    API_KEYS["Heartbeat"]: (0, 4),
    API_KEYS["LeaveGroup"]: (0, 5),
    API_KEYS["SyncGroup"]: (0, 5),
    API_KEYS["ApiVersions"]: (0, 4),
    API_KEYS["CreateTopics"]: (2, 7),
    API_KEYS["InitProducerId"]: (0, 4),
    **group_apis.SUPPORTED,
    **config_apis.SUPPORTED,
    **internal.SUPPORTED,
}

_log = logging.getLogger(__name__)

_REQUEST_PREFIX = struct.Struct(">hhi")
_NO_TAGS: dict[int, Any] = {}


# NamedTuples, not frozen dataclasses: two are built per request, and a frozen
# dataclass's __init__ (an object.__setattr__ per field) costs several tuples.
class RequestHeader(NamedTuple):
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None


class Request(NamedTuple):
    header: RequestHeader
    body: dict[str, Any]


def api_versions_body(error_code: int = Errors.NONE) -> dict[str, Any]:
    """An ApiVersions response body listing `SUPPORTED`."""
    return {
        "error_code": int(error_code),
        "api_keys": [
            {"api_key": key, "min_version": low, "max_version": high}
            for key, (low, high) in sorted(SUPPORTED.items())
        ],
    }


def _message(table: dict[int, Message], api_key: int, api_version: int) -> Message:
    message = table.get(api_key)
    if message is None:
        raise ProtocolError(f"no schema for api key {api_key}")
    if not in_versions(api_version, message.valid_versions):
        raise ProtocolError(f"{message.name} has no version {api_version}")
    return message


def _response_version(header: RequestHeader) -> int:
    """The request's version, except ApiVersions beyond SUPPORTED: answered in v0 (KIP-511)."""
    if header.api_key == API_VERSIONS_KEY:
        low, high = SUPPORTED[API_VERSIONS_KEY]
        if not low <= header.api_version <= high:
            return 0
    return header.api_version


def _has_tagged_header(message: Message, version: int) -> bool:
    return is_flexible(message, version) and message.api_key != API_VERSIONS_KEY


def _framed(w: Writer) -> bytes:
    """The writer's bytes with the size prefix (reserved as its first 4 bytes) filled in."""
    if not w.parts:  # the usual frame: no blob kept by reference
        INT32.pack_into(w.buf, 0, len(w.buf) - SIZE_PREFIX_BYTES)
        return bytes(w.buf)
    chunks = w.chunks()
    INT32.pack_into(chunks[0], 0, w.size() - SIZE_PREFIX_BYTES)
    return b"".join(chunks)


def _new_framed_writer() -> Writer:
    return Writer(reserve=SIZE_PREFIX_BYTES)


@cache
def _request_schema(api_key: int, api_version: int) -> tuple[Message, bool]:
    """The request's schema and whether its header is v2 (tagged fields), looked up once
    per API and version: every request asks."""
    message = _message(REQUESTS, api_key, api_version)
    return message, is_flexible(message, api_version)


@cache
def _response_schema(api_key: int, version: int) -> tuple[Message, bool]:
    """The response's schema and whether its header is v1 (tagged fields), once each."""
    message = _message(RESPONSES, api_key, version)
    return message, _has_tagged_header(message, version)


@lru_cache(maxsize=256)
def _client_id_bytes(client_id: str | None) -> bytes:
    """The request header's client_id field, encoded once per client id."""
    w = Writer()
    write_client_id(w, client_id)
    return bytes(w.buf)


def _read_request_header(r: Reader) -> tuple[RequestHeader, Message]:
    try:
        api_key, api_version, correlation_id = _REQUEST_PREFIX.unpack_from(
            r.buf, r.advance(_REQUEST_PREFIX.size)
        )
    except ProtocolError as error:
        raise ProtocolError(f"request header: {error}") from None
    ids = (api_key, api_version, correlation_id)
    if api_key not in SUPPORTED:
        raise UnknownApiError(f"unknown api key {api_key} (version {api_version})", *ids)
    message = REQUESTS[api_key]
    low, high = SUPPORTED[api_key]
    if not low <= api_version <= high:
        text = f"{message.name} v{api_version} unsupported (supported: v{low}-v{high})"
        raise UnsupportedVersionError(text, *ids)
    try:
        client_id = read_client_id(r)
        if is_flexible(message, api_version):
            r.tagged(_NO_TAGS, {})
    except ProtocolError as error:
        raise ProtocolError(f"{message.name} v{api_version} request header: {error}") from None
    return RequestHeader(api_key, api_version, correlation_id, client_id), message


def _ignore_trailing(r: Reader, message: Message, version: int) -> None:
    """Bytes after a complete body are ignored, as Kafka ignores them: its parsers read the
    message's fields from the buffer and never check that the buffer is used up (librdkafka
    2.15+ sends MetadataRequest v12 with 3 extra bytes, and Kafka answers it)."""
    if r.remaining:
        _log.debug("%s v%d: %d trailing bytes ignored", message.name, version, r.remaining)


def decode_request(frame: bytes | memoryview) -> Request:
    """A request frame (size prefix stripped) as header and body; raises only ProtocolError."""
    r = Reader(frame)
    header, message = _read_request_header(r)
    try:
        body = decode_body(message, header.api_version, r)
    except ProtocolError as error:
        raise InvalidRequestError(str(error), header) from None
    _ignore_trailing(r, message, header.api_version)
    return Request(header, body)


def encode_request(
    api_key: int,
    api_version: int,
    correlation_id: int,
    client_id: str | None,
    body: dict[str, Any],
) -> bytes:
    """A size-prefixed request frame with header v1, or v2 for flexible versions."""
    message, tagged_header = _request_schema(api_key, api_version)
    w = _new_framed_writer()
    try:
        w.buf += _REQUEST_PREFIX.pack(api_key, api_version, correlation_id)
        w.buf += _client_id_bytes(client_id)
    except ENCODE_FAILURES as error:
        raise ProtocolError(f"{message.name} v{api_version} request header: {error}") from None
    if tagged_header:
        w.uvarint(0)
    encode_body(message, api_version, w, body)
    return _framed(w)


def encode_response(header: RequestHeader, body: dict[str, Any]) -> bytes:
    """A size-prefixed response to `header`, with response header v0 or v1 by Kafka's rules."""
    version = _response_version(header)
    message, tagged_header = _response_schema(header.api_key, version)
    w = _new_framed_writer()
    try:
        w.buf += INT32.pack(header.correlation_id)
    except struct.error as error:
        raise ProtocolError(f"{message.name} response header: {error}") from None
    if tagged_header:
        w.uvarint(0)
    encode_body(message, version, w, body)
    return _framed(w)


def _peek_error_code(r: Reader) -> int | None:
    """The int16 at the cursor (ApiVersions' first field in every version), if present."""
    if r.remaining < INT16.size:
        return None
    return INT16.unpack_from(r.buf, r.pos)[0]


def decode_response(
    api_key: int, api_version: int, frame: bytes | memoryview
) -> tuple[int, dict[str, Any]]:
    """(correlation_id, body) of a response frame (size prefix stripped) to a request we sent."""
    message, tagged_header = _response_schema(api_key, api_version)
    r = Reader(frame)
    try:
        correlation_id = r.unpack(INT32)
        if tagged_header:
            r.tagged(_NO_TAGS, {})
    except ProtocolError as error:
        raise ProtocolError(f"{message.name} v{api_version} response header: {error}") from None
    version = api_version
    if api_key == API_VERSIONS_KEY and _peek_error_code(r) == Errors.UNSUPPORTED_VERSION:
        version = 0
    body = decode_body(message, version, r)
    _ignore_trailing(r, message, version)
    return correlation_id, body
