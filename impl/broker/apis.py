"""Request handlers: one function per Kafka API, from a decoded request body to a
response body (plain dicts with the schema's snake_case field names).

Handlers decide per partition and never raise for bad input: every refusal is a Kafka
error code in the response. The group APIs answer COORDINATOR_NOT_AVAILABLE until the
group coordinator exists, which is what a client sees from a cluster still starting.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from impl.broker.partition import Appended, Diverging, FetchedData, Partition
from impl.protocol import API_KEYS, SUPPORTED, Request
from model.errors import Errors

if TYPE_CHECKING:
    from impl.broker.broker import Broker

Body = dict[str, Any]
Handler = Callable[["Broker", Request], Awaitable[Body | None]]

FETCH_WAIT_MS_MAX = 30_000
PRODUCE_TIMEOUT_MS_MAX = 300_000
_ZERO_UUID = bytes(16)


# ---- ApiVersions, Metadata, CreateTopics -----------------------------------------------


async def api_versions(broker: Broker, request: Request) -> Body:
    return {"error_code": Errors.NONE, "api_keys": supported_api_keys()}


def supported_api_keys() -> list[Body]:
    """The versions the codec supports, for the APIs this broker handles."""
    return [
        {"api_key": key, "min_version": low, "max_version": high}
        for key, (low, high) in sorted(SUPPORTED.items())
        if key in HANDLERS
    ]


async def metadata(broker: Broker, request: Request) -> Body:
    wanted = request.body.get("topics")
    auto_create = request.body.get("allow_auto_topic_creation", True)
    topics = []
    if wanted is None:
        names = list(broker.logs.topics)
    else:
        names = [_topic_name(broker, entry) for entry in wanted]
    for name in names:
        topics.append(_topic_metadata(broker, name, auto_create))
    return {
        "brokers": [broker.endpoint()],
        "cluster_id": broker.cluster_id,
        "controller_id": broker.broker_id,
        "topics": topics,
    }


def _topic_name(broker: Broker, entry: Body, field: str = "name") -> str:
    """The topic an entry names, by name (`field`) or, from newer versions, by topic id."""
    if entry.get(field):
        return entry[field]
    topic_id = entry.get("topic_id", _ZERO_UUID)
    for topic in broker.logs.topics.values():
        if topic.topic_id == topic_id:
            return topic.name
    return ""


def _topic_metadata(broker: Broker, name: str, auto_create: bool) -> Body:
    config = broker.config
    if name not in broker.logs.topics and auto_create and config.auto_create_topics_enable:
        broker.create_topic(name, config.num_partitions, 1, {})
    topic = broker.logs.topics.get(name)
    if topic is None:
        return {"error_code": Errors.UNKNOWN_TOPIC_OR_PARTITION, "name": name, "partitions": []}
    partitions = [
        _partition_metadata(broker.logs.partitions[(name, index)])
        for index in range(topic.partitions)
    ]
    return {
        "error_code": Errors.NONE,
        "name": name,
        "topic_id": topic.topic_id,
        "partitions": partitions,
    }


def _partition_metadata(partition: Partition) -> Body:
    return {
        "error_code": Errors.NONE,
        "partition_index": partition.index,
        "leader_id": partition.leader_id,
        "leader_epoch": partition.leader_epoch,
        "replica_nodes": list(partition.replicas),
        "isr_nodes": sorted(partition.isr),
        "offline_replicas": [],
    }


async def create_topics(broker: Broker, request: Request) -> Body:
    results = []
    validate_only = request.body.get("validate_only", False)
    for entry in request.body["topics"]:
        name = entry["name"]
        partitions = entry["num_partitions"]
        if partitions == -1:
            partitions = broker.config.num_partitions
        replication_factor = entry["replication_factor"]
        if replication_factor == -1:
            replication_factor = 1
        overrides = {c["name"]: c["value"] for c in entry.get("configs", []) if c["value"]}
        if entry.get("assignments"):
            error, message = Errors.INVALID_REQUEST, "manual replica assignment is not supported"
        elif validate_only:
            error, message = broker.logs.validate_topic(
                name, partitions, replication_factor, overrides
            )
        else:
            error, message = broker.create_topic(name, partitions, replication_factor, overrides)
        topic = broker.logs.topics.get(name)
        results.append(
            {
                "name": name,
                "topic_id": topic.topic_id if topic and error == Errors.NONE else _ZERO_UUID,
                "error_code": error,
                "error_message": message,
                "num_partitions": partitions if error == Errors.NONE else -1,
                "replication_factor": replication_factor if error == Errors.NONE else -1,
            }
        )
    return {"topics": results}


# ---- Produce ---------------------------------------------------------------------------


async def produce(broker: Broker, request: Request) -> Body | None:
    body = request.body
    acks = body["acks"]
    timeout_ms = min(max(body["timeout_ms"], 0), PRODUCE_TIMEOUT_MS_MAX)
    now_ms = broker.clock.wall_ms()
    outcomes: list[tuple[str, int, Partition | None, Appended | Errors]] = []
    for topic in body["topic_data"]:
        for entry in topic["partition_data"]:
            partition = broker.logs.partitions.get((topic["name"], entry["index"]))
            outcome = _append(broker, partition, acks, body, entry["records"], now_ms)
            outcomes.append((topic["name"], entry["index"], partition, outcome))
    if acks == 0:
        return None
    if acks == -1:
        outcomes = await _await_replication(broker, outcomes, timeout_ms)
    return {"responses": _produce_responses(outcomes)}


def _append(
    broker: Broker,
    partition: Partition | None,
    acks: int,
    body: Body,
    records: bytes | memoryview | None,
    now_ms: int,
) -> Appended | Errors:
    if acks not in (-1, 0, 1):
        return Errors.INVALID_REQUIRED_ACKS
    if body.get("transactional_id") is not None:
        return Errors.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    if partition is None:
        return Errors.UNKNOWN_TOPIC_OR_PARTITION
    if partition.leader_id != broker.broker_id:
        return Errors.NOT_LEADER_OR_FOLLOWER
    if not records:
        return Errors.CORRUPT_MESSAGE
    if len(records) > partition.log.config.message_max_bytes:
        return Errors.MESSAGE_TOO_LARGE
    refused = partition.check_min_isr(acks)
    if refused != Errors.NONE:
        return refused
    return partition.append_as_leader(records, now_ms)


async def _await_replication(
    broker: Broker,
    outcomes: list[tuple[str, int, Partition | None, Appended | Errors]],
    timeout_ms: int,
) -> list[tuple[str, int, Partition | None, Appended | Errors]]:
    """acks=all: wait until the HW passes every appended batch, or time out."""

    def pending() -> bool:
        return any(
            isinstance(o, Appended) and p is not None and p.high_watermark <= o.last_offset
            for _, _, p, o in outcomes
        )

    with trio.move_on_after(timeout_ms / 1000):
        while pending():
            await broker.changes.wait()
    return [
        (
            topic,
            index,
            partition,
            Errors.REQUEST_TIMED_OUT
            if isinstance(outcome, Appended)
            and partition is not None
            and partition.high_watermark <= outcome.last_offset
            else outcome,
        )
        for topic, index, partition, outcome in outcomes
    ]


def _produce_responses(
    outcomes: list[tuple[str, int, Partition | None, Appended | Errors]],
) -> list[Body]:
    by_topic: dict[str, list[Body]] = {}
    for topic, index, _, outcome in outcomes:
        if isinstance(outcome, Appended):
            row = {
                "index": index,
                "error_code": Errors.NONE,
                "base_offset": outcome.first_offset,
                "log_start_offset": outcome.log_start_offset,
            }
        else:
            row = {"index": index, "error_code": outcome, "base_offset": -1}
        by_topic.setdefault(topic, []).append(row)
    return [{"name": t, "partition_responses": rows} for t, rows in by_topic.items()]


# ---- Fetch -----------------------------------------------------------------------------


async def fetch(broker: Broker, request: Request) -> Body:
    """Read until min_bytes are available or max_wait_ms passes (a delayed fetch)."""
    body = request.body
    deadline = trio.current_time() + min(max(body["max_wait_ms"], 0), FETCH_WAIT_MS_MAX) / 1000
    while True:
        responses, total_bytes = _fetch_once(broker, body)
        if total_bytes >= body["min_bytes"] or trio.current_time() >= deadline:
            break
        with trio.move_on_at(deadline):
            await broker.changes.wait()
    return {"error_code": Errors.NONE, "session_id": 0, "responses": responses}


def _fetch_once(broker: Broker, body: Body) -> tuple[list[Body], int]:
    remaining = body.get("max_bytes", 0x7FFFFFFF)
    replica_id = _fetching_replica(body)
    now_ms = broker.clock.monotonic_ms()
    responses = []
    total_bytes = 0
    for topic in body["topics"]:
        name = _topic_name(broker, topic, "topic")
        rows = []
        for entry in topic["partitions"]:
            partition = broker.logs.partitions.get((name, entry["partition"]))
            # KIP-74: the first partition may exceed max_bytes so progress is possible.
            limit = entry["partition_max_bytes"]
            if total_bytes:
                limit = min(limit, remaining)
            row = _fetch_partition(broker, partition, entry, limit, replica_id, now_ms)
            size = len(row.get("records") or b"")
            total_bytes += size
            remaining -= size
            rows.append(row)
        responses.append(
            {"topic": name, "topic_id": topic.get("topic_id", _ZERO_UUID), "partitions": rows}
        )
    return responses, total_bytes


def _fetching_replica(body: Body) -> int:
    """The follower's broker id (-1 for consumers); v15+ moved it into replica_state."""
    state = body.get("replica_state")
    if state is not None and state.get("replica_id", -1) >= 0:
        return state["replica_id"]
    return body.get("replica_id", -1)


def _fetch_partition(
    broker: Broker,
    partition: Partition | None,
    entry: Body,
    limit: int,
    replica_id: int,
    now_ms: int,
) -> Body:
    """Consumers read below the HW (without transactions the last stable offset is the
    HW, so both isolation levels read the same); followers read to the LEO."""
    index = entry["partition"]
    if partition is None:
        return _fetch_error(index, Errors.UNKNOWN_TOPIC_OR_PARTITION)
    if not partition.is_leader:
        return _fetch_error(index, Errors.NOT_LEADER_OR_FOLLOWER, partition)
    if replica_id < 0 or partition.config.fetch_epoch_fencing:
        fenced = partition.check_leader_epoch(entry.get("current_leader_epoch", -1))
        if fenced != Errors.NONE:
            return _fetch_error(index, fenced, partition)
    if limit <= 0:
        return _fetch_data(index, partition, b"")
    if replica_id < 0:
        read = partition.read(entry["fetch_offset"], limit, partition.high_watermark)
    else:
        read = partition.serve_follower_fetch(
            replica_id, entry["fetch_offset"], entry.get("last_fetched_epoch", -1), limit, now_ms
        )
    if isinstance(read, Diverging):
        row = _fetch_data(index, partition, b"")
        row["diverging_epoch"] = {"epoch": read.epoch, "end_offset": read.end_offset}
        return row
    if isinstance(read, Errors):
        return _fetch_error(index, read, partition)
    return _fetch_data(index, partition, read.records, read)


def _fetch_error(index: int, error: Errors, partition: Partition | None = None) -> Body:
    return {
        "partition_index": index,
        "error_code": error,
        "high_watermark": -1 if partition is None else partition.high_watermark,
        "last_stable_offset": -1 if partition is None else partition.high_watermark,
        "log_start_offset": -1 if partition is None else partition.log.log_start_offset,
        "aborted_transactions": None,
        "records": None,
    }


def _fetch_data(
    index: int, partition: Partition, records: bytes, read: FetchedData | None = None
) -> Body:
    hw = partition.high_watermark if read is None else read.high_watermark
    return {
        "partition_index": index,
        "error_code": Errors.NONE,
        "high_watermark": hw,
        "last_stable_offset": hw,
        "log_start_offset": partition.log.log_start_offset,
        "aborted_transactions": None,
        "records": records,
    }


# ---- ListOffsets, InitProducerId -------------------------------------------------------


async def list_offsets(broker: Broker, request: Request) -> Body:
    topics = []
    for topic in request.body["topics"]:
        rows = []
        for entry in topic["partitions"]:
            partition = broker.logs.partitions.get((topic["name"], entry["partition_index"]))
            rows.append(_list_offset(partition, entry))
        topics.append({"name": topic["name"], "partitions": rows})
    return {"topics": topics}


def _list_offset(partition: Partition | None, entry: Body) -> Body:
    index = entry["partition_index"]
    if partition is None:
        return {"partition_index": index, "error_code": Errors.UNKNOWN_TOPIC_OR_PARTITION}
    fenced = partition.check_leader_epoch(entry.get("current_leader_epoch", -1))
    if fenced != Errors.NONE:
        return {"partition_index": index, "error_code": fenced}
    found = partition.offset_for_timestamp(entry["timestamp"])
    if found is None:
        return {"partition_index": index, "error_code": Errors.NONE, "timestamp": -1, "offset": -1}
    offset, timestamp = found
    return {
        "partition_index": index,
        "error_code": Errors.NONE,
        "timestamp": timestamp,
        "offset": offset,
        "old_style_offsets": [offset],
        "leader_epoch": partition.epoch_at(offset),
    }


async def init_producer_id(broker: Broker, request: Request) -> Body:
    body = request.body
    if body.get("transactional_id") is not None:
        return {"error_code": Errors.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "producer_epoch": -1}
    known_id = body.get("producer_id", -1)
    if known_id >= 0 and body.get("producer_epoch", -1) >= 0:
        # KIP-360: a producer that hit an error keeps its id and bumps its epoch.
        return {
            "error_code": Errors.NONE,
            "producer_id": known_id,
            "producer_epoch": body["producer_epoch"] + 1,
        }
    return {
        "error_code": Errors.NONE,
        "producer_id": broker.next_producer_id(),
        "producer_epoch": 0,
    }


async def offset_for_leader_epoch(broker: Broker, request: Request) -> Body:
    """Where a leader epoch ends in the leader's log: a follower truncates by it, a
    consumer validates its position by it after a leader change (KIP-320)."""
    topics = []
    for topic in request.body["topics"]:
        rows = []
        for entry in topic["partitions"]:
            partition = broker.logs.partitions.get((topic["topic"], entry["partition"]))
            rows.append(_epoch_end_offset(partition, entry))
        topics.append({"topic": topic["topic"], "partitions": rows})
    return {"topics": topics}


def _epoch_end_offset(partition: Partition | None, entry: Body) -> Body:
    index = entry["partition"]
    if partition is None:
        return {"partition": index, "error_code": Errors.UNKNOWN_TOPIC_OR_PARTITION}
    if not partition.is_leader:
        return {"partition": index, "error_code": Errors.NOT_LEADER_OR_FOLLOWER}
    fenced = partition.check_leader_epoch(entry.get("current_leader_epoch", -1))
    if fenced != Errors.NONE and partition.config.fetch_epoch_fencing:
        return {"partition": index, "error_code": fenced}
    epoch, end_offset = partition.end_offset_for(entry["leader_epoch"])
    return {
        "partition": index,
        "error_code": Errors.NONE,
        "leader_epoch": epoch,
        "end_offset": end_offset,
    }


# ---- group APIs (until the coordinator exists) -----------------------------------------


async def find_coordinator(broker: Broker, request: Request) -> Body:
    keys = request.body.get("coordinator_keys") or [request.body.get("key", "")]
    error = Errors.COORDINATOR_NOT_AVAILABLE
    return {
        "error_code": error,
        "error_message": "replog has no group coordinator yet",
        "node_id": -1,
        "host": "",
        "port": -1,
        "coordinators": [
            {"key": k, "node_id": -1, "host": "", "port": -1, "error_code": error} for k in keys
        ],
    }


async def offset_commit(broker: Broker, request: Request) -> Body:
    topics = [
        {
            "name": t["name"],
            "partitions": [
                {
                    "partition_index": p["partition_index"],
                    "error_code": Errors.COORDINATOR_NOT_AVAILABLE,
                }
                for p in t["partitions"]
            ],
        }
        for t in request.body["topics"]
    ]
    return {"topics": topics}


async def offset_fetch(broker: Broker, request: Request) -> Body:
    error = Errors.COORDINATOR_NOT_AVAILABLE
    groups = [
        {"group_id": g["group_id"], "topics": [], "error_code": error}
        for g in request.body.get("groups", [])
    ]
    return {"error_code": error, "topics": [], "groups": groups}


HANDLERS: dict[int, Handler] = {
    API_KEYS["ApiVersions"]: api_versions,
    API_KEYS["Metadata"]: metadata,
    API_KEYS["CreateTopics"]: create_topics,
    API_KEYS["Produce"]: produce,
    API_KEYS["Fetch"]: fetch,
    API_KEYS["ListOffsets"]: list_offsets,
    API_KEYS["InitProducerId"]: init_producer_id,
    API_KEYS["OffsetForLeaderEpoch"]: offset_for_leader_epoch,
    API_KEYS["FindCoordinator"]: find_coordinator,
    API_KEYS["OffsetCommit"]: offset_commit,
    API_KEYS["OffsetFetch"]: offset_fetch,
}
