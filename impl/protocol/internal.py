"""The messages brokers and controllers exchange among themselves, in the same schema
language as `schemas.py` and on the same Kafka framing.

OffsetForLeaderEpoch is Kafka's own (key 23, versions 3-4, written from Kafka's
definition): followers use it to truncate, and librdkafka uses it to validate
positions after a leader change. The rest belong to replog's controller quorum and are
not Kafka's KRaft messages: they carry replog's Raft (push-based, etcd style) rather
than KRaft's pull-based one, so they use keys from 1000 up, which no Kafka release
assigns, instead of pretending to be Kafka's keys with different layouts.
"""

from __future__ import annotations

from impl.protocol.schema_types import Field, Message

OFFSET_FOR_LEADER_EPOCH_KEY = 23
RAFT_MESSAGE_KEY = 1000
METADATA_FETCH_KEY = 1001
BROKER_REGISTRATION_KEY = 1002
BROKER_HEARTBEAT_KEY = 1003
ALTER_PARTITION_KEY = 1004
CLOCK_ADJUST_KEY = 1005

_ERROR_CODE_ONLY = (Field("error_code", "int16", "0+"),)


def _pair(
    name: str, key: int, versions: str, flexible: str, request: tuple, response: tuple
) -> tuple[Message, Message]:
    return (
        Message(f"{name}Request", key, "request", versions, flexible, request),
        Message(f"{name}Response", key, "response", versions, flexible, response),
    )


OFFSET_FOR_LEADER_EPOCH = _pair(
    "OffsetForLeaderEpoch",
    OFFSET_FOR_LEADER_EPOCH_KEY,
    "3-4",
    "4+",
    (
        Field("replica_id", "int32", "3+", default=-2),
        Field(
            "topics",
            "[]OffsetForLeaderTopic",
            "0+",
            fields=(
                Field("topic", "string", "0+"),
                Field(
                    "partitions",
                    "[]OffsetForLeaderPartition",
                    "0+",
                    fields=(
                        Field("partition", "int32", "0+"),
                        Field("current_leader_epoch", "int32", "2+", default=-1),
                        Field("leader_epoch", "int32", "0+"),
                    ),
                ),
            ),
        ),
    ),
    (
        Field("throttle_time_ms", "int32", "2+"),
        Field(
            "topics",
            "[]OffsetForLeaderTopicResult",
            "0+",
            fields=(
                Field("topic", "string", "0+"),
                Field(
                    "partitions",
                    "[]EpochEndOffset",
                    "0+",
                    fields=(
                        Field("error_code", "int16", "0+"),
                        Field("partition", "int32", "0+"),
                        Field("leader_epoch", "int32", "1+", default=-1),
                        Field("end_offset", "int64", "0+", default=-1),
                    ),
                ),
            ),
        ),
    ),
)

RAFT_MESSAGE = _pair(
    "RaftMessage",
    RAFT_MESSAGE_KEY,
    "0",
    "0+",
    (
        Field("cluster_id", "string", "0+"),
        Field("data", "bytes", "0+"),
    ),
    _ERROR_CODE_ONLY,
)

METADATA_FETCH = _pair(
    "MetadataFetch",
    METADATA_FETCH_KEY,
    "0",
    "0+",
    (
        Field("from_index", "int64", "0+"),
        Field("max_bytes", "int32", "0+"),
        # Long poll: wait up to this long for an entry at from_index to commit.
        Field("max_wait_ms", "int32", "0+", tagged_versions="0+", tag=0, default=0),
    ),
    (
        Field("error_code", "int16", "0+"),
        Field("leader_id", "int32", "0+", default=-1),
        Field("commit_index", "int64", "0+"),
        Field(
            "entries",
            "[]MetadataEntry",
            "0+",
            fields=(
                Field("index", "int64", "0+"),
                Field("term", "int64", "0+"),
                Field("data", "bytes", "0+"),
            ),
        ),
    ),
)

BROKER_REGISTRATION = _pair(
    "BrokerRegistration",
    BROKER_REGISTRATION_KEY,
    "0",
    "0+",
    (
        Field("broker_id", "int32", "0+"),
        Field("host", "string", "0+"),
        Field("port", "int32", "0+"),
        # KIP-966's PreviousBrokerEpoch: the incarnation saved at the last clean
        # shutdown, -1 after a crash (the broker may have lost unflushed data).
        Field("previous_incarnation", "int64", "0+", default=-1),
    ),
    (
        Field("error_code", "int16", "0+"),
        Field("leader_id", "int32", "0+", default=-1),
        Field("incarnation", "int64", "0+", default=-1),
    ),
)

BROKER_HEARTBEAT = _pair(
    "BrokerHeartbeat",
    BROKER_HEARTBEAT_KEY,
    "0",
    "0+",
    (
        Field("broker_id", "int32", "0+"),
        Field("incarnation", "int64", "0+"),
        Field("metadata_offset", "int64", "0+"),
    ),
    (
        Field("error_code", "int16", "0+"),
        Field("leader_id", "int32", "0+", default=-1),
        Field("is_fenced", "bool", "0+"),
    ),
)

ALTER_PARTITION = _pair(
    "AlterPartition",
    ALTER_PARTITION_KEY,
    "0",
    "0+",
    (
        Field("broker_id", "int32", "0+"),
        Field("topic", "string", "0+"),
        Field("partition", "int32", "0+"),
        Field("leader_epoch", "int32", "0+"),
        Field("partition_epoch", "int32", "0+"),
        Field("new_isr", "[]int32", "0+"),
    ),
    (
        Field("error_code", "int16", "0+"),
        Field("leader_id", "int32", "0+", default=-1),
        Field("leader_epoch", "int32", "0+", default=-1),
        Field("partition_epoch", "int32", "0+", default=-1),
        Field("isr", "[]int32", "0+"),
    ),
)

# A nemesis moves a node's skewable wall clock (record timestamps, retention, ISR lag).
CLOCK_ADJUST = _pair(
    "ClockAdjust",
    CLOCK_ADJUST_KEY,
    "0",
    "0+",
    (
        # Added to the current skew; with `reset` the skew goes back to 0 first.
        Field("delta_ms", "int64", "0+"),
        Field("reset", "bool", "0+"),
    ),
    (
        Field("error_code", "int16", "0+"),
        Field("skew_ms", "int64", "0+"),
        Field("wall_ms", "int64", "0+"),
    ),
)

MESSAGES: tuple[Message, ...] = (
    *OFFSET_FOR_LEADER_EPOCH,
    *RAFT_MESSAGE,
    *METADATA_FETCH,
    *BROKER_REGISTRATION,
    *BROKER_HEARTBEAT,
    *ALTER_PARTITION,
    *CLOCK_ADJUST,
)

# Keys only replog speaks: no other implementation to compare their bytes with.
REPLOG_ONLY_KEYS = frozenset(
    {
        RAFT_MESSAGE_KEY,
        METADATA_FETCH_KEY,
        BROKER_REGISTRATION_KEY,
        BROKER_HEARTBEAT_KEY,
        ALTER_PARTITION_KEY,
        CLOCK_ADJUST_KEY,
    }
)

SUPPORTED: dict[int, tuple[int, int]] = {
    OFFSET_FOR_LEADER_EPOCH_KEY: (3, 4),
    RAFT_MESSAGE_KEY: (0, 0),
    METADATA_FETCH_KEY: (0, 0),
    BROKER_REGISTRATION_KEY: (0, 0),
    BROKER_HEARTBEAT_KEY: (0, 0),
    ALTER_PARTITION_KEY: (0, 0),
    CLOCK_ADJUST_KEY: (0, 0),
}
