"""ListOffsets against partition leaders: earliest (log start), latest (HW) or by time."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import trio

from impl.client.errors import (
    METADATA_ERRORS,
    NotSent,
    OutcomeUnknown,
    RequestTimeout,
    kafka_error,
)
from impl.client.metadata import Cluster, TopicPartition
from impl.protocol import API_KEYS
from model.errors import Errors

LIST_OFFSETS = API_KEYS["ListOffsets"]
EARLIEST_TIMESTAMP = -2
LATEST_TIMESTAMP = -1
ISOLATION_LEVELS = {"read_uncommitted": 0, "read_committed": 1}


async def list_offsets(
    cluster: Cluster,
    partitions: Iterable[TopicPartition],
    timestamp_ms: int,
    timeout_ms: int,
) -> dict[TopicPartition, int]:
    """The offset for `timestamp_ms` (or EARLIEST_/LATEST_TIMESTAMP) of each partition,
    -1 where no record is that recent. Leader changes are retried until `timeout_ms`;
    raises RequestTimeout then, or a KafkaError for any other refusal."""
    remaining = set(partitions)
    found: dict[TopicPartition, int] = {}
    cluster.add_interest(tp.topic for tp in remaining)
    with trio.move_on_after(timeout_ms / 1000):
        while True:
            await cluster.refresh_if_stale()
            for node, group in _by_leader(cluster, remaining).items():
                found.update(await _ask(cluster, node, group, timestamp_ms))
            remaining -= found.keys()
            if not remaining:
                return found
            await trio.sleep(cluster.config.retry_backoff_ms / 1000)
    raise RequestTimeout(f"no offsets for {sorted(map(str, remaining))} within {timeout_ms} ms")


def _by_leader(
    cluster: Cluster, partitions: set[TopicPartition]
) -> dict[int, list[tuple[TopicPartition, int]]]:
    groups: dict[int, list[tuple[TopicPartition, int]]] = defaultdict(list)
    for tp in sorted(partitions):
        if cluster.topic_missing(tp.topic):
            raise kafka_error(Errors.UNKNOWN_TOPIC_OR_PARTITION, f"no topic {tp.topic}")
        leader = cluster.leader(tp)
        if leader is None:
            cluster.request_update()
            continue
        groups[leader.leader_id].append((tp, leader.leader_epoch))
    return groups


async def _ask(
    cluster: Cluster, node: int, group: list[tuple[TopicPartition, int]], timestamp_ms: int
) -> dict[TopicPartition, int]:
    topics: dict[str, list[dict]] = defaultdict(list)
    for tp, epoch in group:
        topics[tp.topic].append(
            {
                "partition_index": tp.partition,
                "current_leader_epoch": epoch,
                "timestamp": timestamp_ms,
            }
        )
    body = {
        "replica_id": -1,
        "isolation_level": ISOLATION_LEVELS[cluster.config.isolation_level],
        "topics": [{"name": name, "partitions": rows} for name, rows in topics.items()],
        "timeout_ms": cluster.config.request_timeout_ms,
    }
    try:
        response = await (await cluster.connection(node)).request(LIST_OFFSETS, body)
    except (NotSent, OutcomeUnknown):
        cluster.request_update()
        return {}
    found = {}
    for topic in response["topics"]:
        for row in topic["partitions"]:
            tp = TopicPartition(topic["name"], row["partition_index"])
            code = row["error_code"]
            if code == Errors.NONE:
                found[tp] = row["offset"]
            elif code in METADATA_ERRORS:
                cluster.request_update()
            else:
                raise kafka_error(code, f"ListOffsets {tp}")
    return found
