"""Versioned data that rides inside group messages and the offsets topic, in the schema
language of `schemas.py` (written from Kafka's definitions, which are "data" schemas with
no API key, so tools/gen_protocol.py does not take them).

- The "consumer" embedded protocol (clients/.../ConsumerProtocolSubscription.json and
  ConsumerProtocolAssignment.json): the bytes a member puts in JoinGroup's metadata and
  the leader hands out in SyncGroup's assignments. The broker never looks inside them;
  the native client encodes and decodes them.
- The records of `__consumer_offsets` (group-coordinator/.../OffsetCommitKey.json,
  OffsetCommitValue.json, GroupMetadataKey.json, GroupMetadataValue.json): the key's
  int16 version says which record it is (0-1 an offset commit, 2 a group).

Every value is an int16 version followed by the body. Like Kafka, a decoder reads a
version newer than it knows as its newest (later versions only append fields) and
raises ProtocolError for anything it cannot parse.
"""

from __future__ import annotations

import struct
from typing import Any

from impl.protocol.codec import Reader, Writer, decode_body, encode_body
from impl.protocol.errors import ProtocolError
from impl.protocol.schema_types import Field, Message, parse_versions

_VERSION = struct.Struct(">h")
# The internal topic whose records these are (brokers write it, tools read its name).
OFFSETS_TOPIC = "__consumer_offsets"

CONSUMER_PROTOCOL_SUBSCRIPTION = Message(
    "ConsumerProtocolSubscription",
    -1,
    "data",
    "0-3",
    "none",
    (
        Field("topics", "[]string", "0+"),
        Field("user_data", "bytes", "0+", nullable_versions="0+", default=None),
        Field(
            "owned_partitions",
            "[]TopicPartition",
            "1+",
            fields=(Field("topic", "string", "1+"), Field("partitions", "[]int32", "1+")),
        ),
        Field("generation_id", "int32", "2+", default=-1),
        Field("rack_id", "string", "3+", nullable_versions="3+", default=None),
    ),
)

CONSUMER_PROTOCOL_ASSIGNMENT = Message(
    "ConsumerProtocolAssignment",
    -1,
    "data",
    "0-3",
    "none",
    (
        Field(
            "assigned_partitions",
            "[]TopicPartition",
            "0+",
            fields=(Field("topic", "string", "0+"), Field("partitions", "[]int32", "0+")),
        ),
        Field("user_data", "bytes", "0+", nullable_versions="0+", default=None),
    ),
)

OFFSET_COMMIT_KEY = Message(
    "OffsetCommitKey",
    -1,
    "data",
    "0-1",
    "none",
    (
        Field("group", "string", "0-1"),
        Field("topic", "string", "0-1"),
        Field("partition", "int32", "0-1"),
    ),
)

OFFSET_COMMIT_VALUE = Message(
    "OffsetCommitValue",
    -1,
    "data",
    "0-3",
    "none",
    (
        Field("offset", "int64", "0+"),
        Field("leader_epoch", "int32", "3+", default=-1),
        Field("metadata", "string", "0+"),
        Field("commit_timestamp", "int64", "0+"),
        Field("expire_timestamp", "int64", "1", default=-1),
    ),
)

GROUP_METADATA_KEY = Message(
    "GroupMetadataKey", -1, "data", "2", "none", (Field("group", "string", "2"),)
)

GROUP_METADATA_VALUE = Message(
    "GroupMetadataValue",
    -1,
    "data",
    "0-3",
    "none",
    (
        Field("protocol_type", "string", "0+"),
        Field("generation", "int32", "0+"),
        Field("protocol", "string", "0+", nullable_versions="0+"),
        Field("leader", "string", "0+", nullable_versions="0+"),
        Field("current_state_timestamp", "int64", "2+", default=-1),
        Field(
            "members",
            "[]MemberMetadata",
            "0+",
            fields=(
                Field("member_id", "string", "0+"),
                Field("group_instance_id", "string", "3+", nullable_versions="3+", default=None),
                Field("client_id", "string", "0+"),
                Field("client_host", "string", "0+"),
                Field("rebalance_timeout", "int32", "1+"),
                Field("session_timeout", "int32", "0+"),
                Field("subscription", "bytes", "0+"),
                Field("assignment", "bytes", "0+"),
            ),
        ),
    ),
)

OFFSET_COMMIT_KEY_VERSION = 1
OFFSET_COMMIT_VALUE_VERSION = 3
GROUP_METADATA_KEY_VERSION = 2
GROUP_METADATA_VALUE_VERSION = 3


def encode(message: Message, version: int, body: dict[str, Any]) -> bytes:
    """The int16 version, then the body at that version."""
    low, high = parse_versions(message.valid_versions)
    assert low <= version <= high, f"{message.name} has no version {version}"
    w = Writer()
    w.blob(_VERSION.pack(version))
    encode_body(message, version, w, body)
    return w.getvalue()


def decode(message: Message, data: bytes | memoryview) -> tuple[int, dict[str, Any]]:
    """(version as written, body); a version above ours is read as our newest."""
    version = read_version(data)
    low, high = parse_versions(message.valid_versions)
    if version < low:
        raise ProtocolError(f"{message.name}: version {version} is below {low}")
    r = Reader(data, _VERSION.size)
    return version, decode_body(message, min(version, high), r)


def read_version(data: bytes | memoryview) -> int:
    if len(data) < _VERSION.size:
        raise ProtocolError(f"{len(data)} bytes cannot hold a version")
    return int(_VERSION.unpack_from(data)[0])


def encode_subscription(
    topics: list[str], owned: dict[str, list[int]] | None = None, generation_id: int = -1
) -> bytes:
    """Subscription v2: topics, owned partitions (cooperative rebalancing), generation."""
    body = {
        "topics": sorted(topics),
        "owned_partitions": [
            {"topic": t, "partitions": sorted(p)} for t, p in (owned or {}).items()
        ],
        "generation_id": generation_id,
    }
    return encode(CONSUMER_PROTOCOL_SUBSCRIPTION, 2, body)


def decode_subscription(data: bytes | memoryview) -> dict[str, Any]:
    return decode(CONSUMER_PROTOCOL_SUBSCRIPTION, data)[1]


def encode_assignment(partitions: dict[str, list[int]], version: int = 0) -> bytes:
    body = {
        "assigned_partitions": [
            {"topic": t, "partitions": sorted(p)} for t, p in sorted(partitions.items())
        ]
    }
    return encode(CONSUMER_PROTOCOL_ASSIGNMENT, version, body)


def decode_assignment(data: bytes | memoryview) -> dict[str, list[int]]:
    """An empty byte string is Kafka's "nothing assigned"."""
    if not data:
        return {}
    body = decode(CONSUMER_PROTOCOL_ASSIGNMENT, data)[1]
    return {entry["topic"]: list(entry["partitions"]) for entry in body["assigned_partitions"]}
