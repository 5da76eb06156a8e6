"""A follower's fetcher for one leader (Kafka's ReplicaFetcherThread).

It loops while this broker follows some partition of that leader: partitions waiting
to truncate ask OffsetForLeaderEpoch first, the rest fetch from their log end offset.
A response is applied only if the partition still follows the same leader in the same
epoch; without fetch fencing (`replog.fetch.epoch-fencing=false`, before KIP-320) the
follower cannot tell and applies it anyway, as the model does.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from impl.broker.partition import Partition, Phase
from impl.client.connection import Connection
from impl.client.errors import ClientError
from impl.protocol import API_KEYS
from impl.runtime import waits
from model.errors import Errors

if TYPE_CHECKING:
    from impl.broker.member import ClusterMember

log = logging.getLogger("replog.broker")

REPLICA_FETCH_WAIT_MAX_MS = 500
REPLICA_FETCH_MIN_BYTES = 1
REPLICA_FETCH_MAX_BYTES = 10 * 1024 * 1024
REPLICA_FETCH_BACKOFF_MS = 100
FETCH_REQUEST_TIMEOUT_MS = 10_000

Body = dict[str, Any]
# (leader id, leader epoch) a request was sent under, per partition.
Sent = dict[tuple[str, int], tuple[int, int]]


async def run_fetcher(member: ClusterMember, leader_id: int) -> None:
    """Fetch from `leader_id` until no local partition follows it."""
    while member.following(leader_id):
        address = member.endpoint_of(leader_id)
        if address is None:
            await waits.sleep(REPLICA_FETCH_BACKOFF_MS / 1000)
            continue
        try:
            async with trio.open_nursery() as nursery:
                connection = await Connection.open(
                    member.broker.runtime,
                    nursery,
                    *address,
                    client_id=f"replica-fetcher-{member.broker.broker_id}",
                    request_timeout_ms=FETCH_REQUEST_TIMEOUT_MS,
                )
                try:
                    await _fetch_loop(member, leader_id, connection)
                finally:
                    with trio.CancelScope(shield=True):
                        await connection.aclose()
        except* ClientError as group:
            log.debug("fetching from broker %d: %s", leader_id, group.exceptions[0])
            await waits.sleep(REPLICA_FETCH_BACKOFF_MS / 1000)


async def _fetch_loop(member: ClusterMember, leader_id: int, connection: Connection) -> None:
    while partitions := member.following(leader_id):
        truncating = [p for p in partitions if p.phase is Phase.TRUNCATING]
        if truncating:
            await _look_up_epochs(member, leader_id, connection, truncating)
        fetching = [p for p in partitions if p.phase is Phase.FETCHING]
        if fetching and not await _fetch(member, leader_id, connection, fetching):
            await waits.sleep(REPLICA_FETCH_BACKOFF_MS / 1000)


def _request_epoch(partition: Partition) -> int:
    return partition.leader_epoch if partition.config.fetch_epoch_fencing else -1


def _still_current(partition: Partition, leader_id: int, epoch: int) -> bool:
    if not partition.config.fetch_epoch_fencing:
        return True
    return (partition.leader_id, partition.leader_epoch) == (leader_id, epoch)


async def _look_up_epochs(
    member: ClusterMember, leader_id: int, connection: Connection, partitions: list[Partition]
) -> None:
    sent: Sent = {(p.topic, p.index): (p.leader_id, p.leader_epoch) for p in partitions}
    topics: dict[str, list[Body]] = {}
    for p in partitions:
        topics.setdefault(p.topic, []).append(
            {
                "partition": p.index,
                "current_leader_epoch": _request_epoch(p),
                "leader_epoch": p.log.latest_epoch,
            }
        )
    body = {
        "replica_id": member.broker.broker_id,
        "topics": [{"topic": t, "partitions": rows} for t, rows in topics.items()],
    }
    response = await connection.request(API_KEYS["OffsetForLeaderEpoch"], body)
    by_key = {(p.topic, p.index): p for p in partitions}
    for topic in response["topics"]:
        for row in topic["partitions"]:
            key = (topic["topic"], row["partition"])
            partition = by_key.get(key)
            if partition is None or row["error_code"] != Errors.NONE:
                continue
            if partition.phase is Phase.TRUNCATING and _still_current(partition, *sent[key]):
                partition.apply_lookup(row["leader_epoch"], row["end_offset"])


async def _fetch(
    member: ClusterMember, leader_id: int, connection: Connection, partitions: list[Partition]
) -> bool:
    """One fetch round trip; False if every partition came back with an error."""
    sent: Sent = {(p.topic, p.index): (p.leader_id, p.leader_epoch) for p in partitions}
    topics: dict[str, list[Body]] = {}
    for p in partitions:
        offset, last_epoch = p.fetch_position()
        topics.setdefault(p.topic, []).append(
            {
                "partition": p.index,
                "current_leader_epoch": _request_epoch(p),
                "fetch_offset": offset,
                "last_fetched_epoch": last_epoch,
                "log_start_offset": p.log.log_start_offset,
                "partition_max_bytes": p.config.replica_fetch_max_bytes,
            }
        )
    body = {
        "replica_id": member.broker.broker_id,
        "max_wait_ms": REPLICA_FETCH_WAIT_MAX_MS,
        "min_bytes": REPLICA_FETCH_MIN_BYTES,
        "max_bytes": REPLICA_FETCH_MAX_BYTES,
        "isolation_level": 0,
        "session_id": 0,
        "session_epoch": -1,
        "topics": [{"topic": t, "partitions": rows} for t, rows in topics.items()],
    }
    response = await connection.request(API_KEYS["Fetch"], body)
    by_key = {(p.topic, p.index): p for p in partitions}
    progress = False
    for topic in response["responses"]:
        for row in topic["partitions"]:
            key = (topic["topic"], row["partition_index"])
            partition = by_key.get(key)
            if partition is None or not _still_current(partition, *sent[key]):
                continue
            applied = await _apply(member, leader_id, connection, partition, row)
            progress = progress or applied
    return progress


async def _apply(
    member: ClusterMember,
    leader_id: int,
    connection: Connection,
    partition: Partition,
    row: Body,
) -> bool:
    error = row["error_code"]
    leader_start = row.get("log_start_offset", -1)
    if error == Errors.OFFSET_OUT_OF_RANGE and leader_start > partition.log.log_end_offset:
        partition.follow_leader_log_start(leader_start)
        return True
    if error == Errors.OFFSET_OUT_OF_RANGE:
        leader_end = await _leader_log_end(member, connection, partition)
        if leader_end is not None:
            partition.truncate_to_leader_end(leader_end)
        return True
    if error != Errors.NONE:
        log.debug(
            "fetch of %s-%d from %d: error %d", partition.topic, partition.index, leader_id, error
        )
        return False
    diverging = row.get("diverging_epoch") or {}
    if diverging.get("epoch", -1) >= 0:
        partition.truncate_on_divergence(diverging["epoch"], diverging["end_offset"])
        return True
    now_ms = member.broker.clock.wall_ms()
    partition.append_as_follower(row["records"] or b"", row["high_watermark"], now_ms)
    if leader_start >= 0:
        partition.follow_leader_log_start(leader_start)
    return True


async def _leader_log_end(
    member: ClusterMember, connection: Connection, partition: Partition
) -> int | None:
    """The leader's LEO (ListOffsets latest from a replica answers the LEO, not the HW)."""
    body = {
        "replica_id": member.broker.broker_id,
        "isolation_level": 0,
        "topics": [
            {
                "name": partition.topic,
                "partitions": [{"partition_index": partition.index, "timestamp": -1}],
            }
        ],
    }
    response = await connection.request(API_KEYS["ListOffsets"], body)
    row = response["topics"][0]["partitions"][0]
    return row["offset"] if row["error_code"] == Errors.NONE else None
