"""Request handlers: one function per Kafka API, from a decoded request body to a
response body (plain dicts with the schema's snake_case field names).

Handlers decide per partition and never raise for bad input: every refusal is a Kafka
error code in the response. The group APIs hand over to the broker's GroupCoordinator.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from impl.broker import configs
from impl.broker.group_coordinator import OFFSETS_TOPIC, OffsetToCommit
from impl.broker.groups import GroupState, JoinRequest
from impl.broker.partition import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    Appended,
    Diverging,
    FetchedData,
    Partition,
    WaitOn,
    wait_for_any,
)
from impl.controller import controller as decide
from impl.protocol import API_KEYS, SUPPORTED, Request
from impl.protocol.errors import TRANSACTIONS_REFUSED
from impl.storage.batch import CorruptBatchError
from model.errors import Errors

if TYPE_CHECKING:
    from impl.broker.broker import Broker, PartitionView, TopicView

Body = dict[str, Any]
Handler = Callable[["Broker", Request], Awaitable[Body | None]]

FETCH_WAIT_MS_MAX = 30_000
CREATE_TOPICS_TIMEOUT_MS_MAX = 60_000
METADATA_FETCH_BYTES_MAX = 4 * 1024 * 1024
METADATA_FETCH_WAIT_MS_MAX = 1_000
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
    views = broker.topic_views()
    wanted = request.body.get("topics")
    auto_create = request.body.get("allow_auto_topic_creation", True)
    names = list(views) if wanted is None else [_topic_name(views, entry) for entry in wanted]
    missing = [n for n in names if n not in views]
    if missing and auto_create and broker.config.auto_create_topics_enable:
        for name in missing:
            await _create_topic(
                broker, {"name": name, "num_partitions": -1, "replication_factor": -1}
            )
        views = broker.topic_views()
    return {
        "brokers": broker.brokers(),
        "cluster_id": broker.cluster_id,
        "controller_id": broker.controller_id(),
        "topics": [_topic_metadata(views.get(name), name) for name in names],
    }


def _topic_name(views: dict[str, TopicView], entry: Body, field: str = "name") -> str:
    """The topic an entry names, by name (`field`) or, from newer versions, by topic id."""
    if entry.get(field):
        return entry[field]
    topic_id = entry.get("topic_id", _ZERO_UUID)
    for view in views.values():
        if view.topic_id == topic_id:
            return view.name
    return ""


def _topic_metadata(view: TopicView | None, name: str) -> Body:
    if view is None:
        return {"error_code": Errors.UNKNOWN_TOPIC_OR_PARTITION, "name": name, "partitions": []}
    return {
        "error_code": Errors.NONE,
        "name": name,
        "topic_id": view.topic_id,
        "is_internal": name == OFFSETS_TOPIC,
        "partitions": [_partition_metadata(p) for p in view.partitions],
    }


def _partition_metadata(view: PartitionView) -> Body:
    return {
        "error_code": Errors.NONE if view.leader >= 0 else Errors.LEADER_NOT_AVAILABLE,
        "partition_index": view.index,
        "leader_id": view.leader,
        "leader_epoch": view.leader_epoch,
        "replica_nodes": list(view.replicas),
        "isr_nodes": list(view.isr),
        "offline_replicas": [],
    }


async def create_topics(broker: Broker, request: Request) -> Body:
    validate_only = request.body.get("validate_only", False)
    timeout_ms = min(max(request.body.get("timeout_ms", 0), 0), CREATE_TOPICS_TIMEOUT_MS_MAX)
    results = []
    for entry in request.body["topics"]:
        if entry.get("assignments"):
            error: int = Errors.INVALID_REQUEST
            message: str | None = "manual replica assignment is not supported"
        elif validate_only:
            error, message = broker.logs.validate_topic(*_topic_request(broker, entry))
        else:
            error, message = await _create_topic(broker, entry, timeout_ms)
        view = broker.topic_views().get(entry["name"])
        created = error == Errors.NONE and view is not None
        results.append(
            {
                "name": entry["name"],
                "topic_id": view.topic_id if created and view else _ZERO_UUID,
                "error_code": error,
                "error_message": message,
                "num_partitions": len(view.partitions) if created and view else -1,
                "replication_factor": len(view.partitions[0].replicas) if created and view else -1,
            }
        )
    return {"topics": results}


def _topic_request(broker: Broker, entry: Body) -> tuple[str, int, int, dict[str, str]]:
    partitions = entry["num_partitions"]
    if partitions == -1:
        partitions = broker.config.num_partitions
    replication_factor = entry["replication_factor"]
    if replication_factor == -1:
        replication_factor = 1 if broker.standalone else broker.config.replication_factor
    overrides = {c["name"]: c["value"] for c in entry.get("configs", []) if c["value"]}
    return entry["name"], partitions, replication_factor, overrides


async def _create_topic(
    broker: Broker, entry: Body, timeout_ms: int = CREATE_TOPICS_TIMEOUT_MS_MAX
) -> tuple[int, str | None]:
    name, partitions, replication_factor, overrides = _topic_request(broker, entry)
    if broker.standalone:
        return broker.create_topic(name, partitions, replication_factor, overrides)
    return await broker.create_topic_in_cluster(
        name, partitions, replication_factor, overrides, timeout_ms
    )


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
        return TRANSACTIONS_REFUSED
    if partition is None:
        return Errors.UNKNOWN_TOPIC_OR_PARTITION
    if not partition.is_leader:
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
    """acks=all: wait until the HW passes every appended batch (`produce_completion`), or
    time out with REQUEST_TIMED_OUT (the write stays in the log: its fate is unknown)."""

    def completion(partition: Partition | None, outcome: Appended | Errors) -> Appended | Errors:
        if not isinstance(outcome, Appended) or partition is None:
            return outcome
        if not partition.is_leader:
            return Errors.NOT_LEADER_OR_FOLLOWER
        verdict = partition.produce_completion(outcome.last_offset)
        if verdict is None:
            return Errors.REQUEST_TIMED_OUT
        return outcome if verdict == Errors.NONE else verdict

    def pending() -> bool:
        return any(completion(p, o) == Errors.REQUEST_TIMED_OUT for _, _, p, o in outcomes)

    # Only a change to a partition written to can complete the request.
    written = [p.changes for _, _, p, o in outcomes if p is not None and isinstance(o, Appended)]
    deadline = trio.current_time() + timeout_ms / 1000
    while pending() and await wait_for_any(written, WaitOn.HIGH_WATERMARK, deadline):
        pass
    return [(t, i, p, completion(p, o)) for t, i, p, o in outcomes]


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
                "log_append_time_ms": outcome.log_append_time_ms,
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
    # A consumer reads below the HW, a follower to the log end (Kafka's fetch isolation):
    # a change to the other one cannot answer it.
    on = WaitOn.HIGH_WATERMARK if _fetching_replica(body) < 0 else WaitOn.LOG_END
    while True:
        responses, total_bytes, read = _fetch_once(broker, body)
        # Kafka answers at once when a partition has an error: waiting cannot fix it.
        failed = any(p["error_code"] != Errors.NONE for t in responses for p in t["partitions"])
        if failed or total_bytes >= body["min_bytes"] or trio.current_time() >= deadline:
            return _fetch_response(responses)
        if not await wait_for_any((p.changes for p in read), on, deadline):
            responses, _, _ = _fetch_once(broker, body)
            return _fetch_response(responses)


def _fetch_response(responses: list[Body]) -> Body:
    return {"error_code": Errors.NONE, "session_id": 0, "responses": responses}


def _fetch_once(broker: Broker, body: Body) -> tuple[list[Body], int, list[Partition]]:
    """The responses, their record bytes, and the partitions read (all of them exist:
    a missing one is an error row, which answers the fetch at once)."""
    remaining = body.get("max_bytes", 0x7FFFFFFF)
    replica_id = _fetching_replica(body)
    # Kafka tracks follower catch-up on the wall clock, so a clock jump shrinks the ISR.
    now_ms = broker.clock.wall_ms()
    responses = []
    read = []
    total_bytes = 0
    for topic in body["topics"]:
        # Only a fetch by topic id needs the views (building them costs per topic).
        name = topic.get("topic") or _topic_name(broker.topic_views(), topic, "topic")
        rows = []
        for entry in topic["partitions"]:
            partition = broker.logs.partitions.get((name, entry["partition"]))
            # KIP-74: the first partition may exceed max_bytes so progress is possible.
            limit = entry["partition_max_bytes"]
            if total_bytes:
                limit = min(limit, remaining)
            row = _fetch_partition(broker, partition, entry, limit, replica_id, now_ms)
            if partition is not None:
                read.append(partition)
            size = len(row["records"])
            total_bytes += size
            remaining -= size
            rows.append(row)
        responses.append(
            {"topic": name, "topic_id": topic.get("topic_id", _ZERO_UUID), "partitions": rows}
        )
    return responses, total_bytes, read


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
        broker.maybe_expand_isr(partition, replica_id)
    if isinstance(read, Diverging):
        row = _fetch_data(index, partition, b"")
        row["diverging_epoch"] = {"epoch": read.epoch, "end_offset": read.end_offset}
        return row
    if isinstance(read, Errors):
        return _fetch_error(index, read, partition)
    return _fetch_data(index, partition, read.records, read)


def _fetch_error(index: int, error: Errors, partition: Partition | None = None) -> Body:
    """An error row. Its records are empty, not null, as Kafka's (MemoryRecords.EMPTY):
    librdkafka cannot parse a null record set and never resets or fails over after one."""
    return {
        "partition_index": index,
        "error_code": error,
        "high_watermark": -1 if partition is None else partition.high_watermark,
        "last_stable_offset": -1 if partition is None else partition.high_watermark,
        "log_start_offset": -1 if partition is None else partition.log.log_start_offset,
        "aborted_transactions": None,
        "records": b"",
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
            rows.append(_list_offset(partition, entry, request.body.get("replica_id", -1)))
        topics.append({"name": topic["name"], "partitions": rows})
    return {"topics": topics}


def _list_offset(partition: Partition | None, entry: Body, replica_id: int) -> Body:
    index = entry["partition_index"]
    if partition is None:
        return {"partition_index": index, "error_code": Errors.UNKNOWN_TOPIC_OR_PARTITION}
    if not partition.is_leader:
        return {"partition_index": index, "error_code": Errors.NOT_LEADER_OR_FOLLOWER}
    fenced = partition.check_leader_epoch(entry.get("current_leader_epoch", -1))
    if fenced != Errors.NONE:
        return {"partition_index": index, "error_code": fenced}
    # Kafka's fetchOffsetForTimestamp: while a new leader's HW lags its epoch start, a
    # client's latest, and a lookup with nothing below the HW, are OFFSET_NOT_AVAILABLE;
    # earliest is the log start offset regardless.
    timestamp = entry["timestamp"]
    lagging = replica_id < 0 and not partition.offsets_available()
    if lagging and timestamp == LATEST_TIMESTAMP:
        return {"partition_index": index, "error_code": Errors.OFFSET_NOT_AVAILABLE}
    if replica_id >= 0 and timestamp == LATEST_TIMESTAMP:
        # A follower asks for the leader's log end, to truncate to it.
        found: tuple[int, int] | None = (partition.log.log_end_offset, -1)
    else:
        try:
            found = partition.offset_for_timestamp(timestamp)
        except CorruptBatchError as error:
            partition.report_damage(f"a lookup of timestamp {timestamp}", error)
            return {"partition_index": index, "error_code": Errors.CORRUPT_MESSAGE}
    if found is None:
        if lagging and timestamp != EARLIEST_TIMESTAMP:
            return {"partition_index": index, "error_code": Errors.OFFSET_NOT_AVAILABLE}
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
        return {"error_code": TRANSACTIONS_REFUSED, "producer_epoch": -1}
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


# ---- the group coordinator's APIs (impl/broker/group_coordinator.py) ----------------

KEY_TYPE_GROUP = 0
KEY_TYPE_TRANSACTION = 1
# KIP-394: from JoinGroup v4 a new member first gets MEMBER_ID_REQUIRED and its id.
JOIN_GROUP_KNOWN_MEMBER_ID_VERSION = 4


async def find_coordinator(broker: Broker, request: Request) -> Body:
    body = request.body
    keys = body.get("coordinator_keys") or [body.get("key", "")]
    rows = [await _coordinator_of(broker, key, body.get("key_type", 0)) for key in keys]
    first = rows[0]
    return {
        "error_code": first["error_code"],
        "error_message": first["error_message"],
        "node_id": first["node_id"],
        "host": first["host"],
        "port": first["port"],
        "coordinators": rows,
    }


async def _coordinator_of(broker: Broker, key: str, key_type: int) -> Body:
    def refusal(error: Errors, message: str) -> Body:
        return {
            "key": key,
            "node_id": -1,
            "host": "",
            "port": -1,
            "error_code": error,
            "error_message": message,
        }

    if key_type == KEY_TYPE_TRANSACTION:
        return refusal(
            TRANSACTIONS_REFUSED,
            "replog does not support transactions (it has no transaction coordinator); "
            "unset transactional.id",
        )
    if key_type != KEY_TYPE_GROUP:
        return refusal(
            Errors.INVALID_REQUEST,
            f"key type {key_type}: only 0 (group) and 1 (transaction) exist",
        )
    if not key:
        return refusal(Errors.INVALID_REQUEST, "empty group id")
    coordinator = broker.coordinator
    error = await coordinator.ensure_offsets_topic()
    if error != Errors.NONE:
        return refusal(error, f"{OFFSETS_TOPIC} cannot be created yet")
    view = broker.topic_views().get(OFFSETS_TOPIC)
    index = coordinator.partition_for(key)
    leader = view.partitions[index].leader if view and index < len(view.partitions) else -1
    endpoint = next((b for b in broker.brokers() if b["node_id"] == leader), None)
    if endpoint is None:
        return refusal(Errors.COORDINATOR_NOT_AVAILABLE, f"{OFFSETS_TOPIC}-{index} has no leader")
    return {
        "key": key,
        "node_id": leader,
        "host": endpoint["host"],
        "port": endpoint["port"],
        "error_code": Errors.NONE,
        "error_message": None,
    }


async def join_group(broker: Broker, request: Request) -> Body:
    body = request.body
    # v0 has no rebalance timeout: Kafka uses the session timeout for both.
    rebalance_timeout_ms = body.get("rebalance_timeout_ms", -1)
    if rebalance_timeout_ms <= 0:
        rebalance_timeout_ms = body["session_timeout_ms"]
    join = JoinRequest(
        body["member_id"],
        body.get("group_instance_id"),
        request.header.client_id or "",
        "",
        body["session_timeout_ms"],
        rebalance_timeout_ms,
        body["protocol_type"],
        [(p["name"], bytes(p["metadata"])) for p in body["protocols"]],
    )
    known_id = request.header.api_version >= JOIN_GROUP_KNOWN_MEMBER_ID_VERSION
    result = await broker.coordinator.join(body["group_id"], join, known_id)
    # The protocol name is nullable from v7 only; before it, "" means "none yet".
    unset = None if request.header.api_version >= 7 else ""
    return {
        "error_code": result.error,
        "generation_id": result.generation,
        "protocol_type": result.protocol_type,
        "protocol_name": unset if result.protocol is None else result.protocol,
        "leader": result.leader,
        "member_id": result.member_id,
        "members": [
            {"member_id": m, "group_instance_id": instance, "metadata": metadata}
            for m, instance, metadata in result.members
        ],
    }


async def sync_group(broker: Broker, request: Request) -> Body:
    body = request.body
    assignments = {a["member_id"]: bytes(a["assignment"]) for a in body["assignments"]}
    error, assignment = await broker.coordinator.sync(
        body["group_id"],
        body["member_id"],
        body["generation_id"],
        assignments,
        body.get("protocol_type"),
        body.get("protocol_name"),
    )
    group = broker.coordinator.groups.get(body["group_id"])
    return {
        "error_code": error,
        "protocol_type": group.protocol_type if group else None,
        "protocol_name": group.protocol if group else None,
        "assignment": assignment,
    }


async def heartbeat(broker: Broker, request: Request) -> Body:
    body = request.body
    coordinator = broker.coordinator
    error = coordinator.status(body["group_id"])
    if error == Errors.NONE:
        error = coordinator.heartbeat(body["group_id"], body["member_id"], body["generation_id"])
    return {"error_code": error}


async def leave_group(broker: Broker, request: Request) -> Body:
    body = request.body
    members = body.get("members") or [{"member_id": body.get("member_id", "")}]
    ids = [m["member_id"] for m in members]
    error = broker.coordinator.status(body["group_id"])
    if error != Errors.NONE:
        return {"error_code": error, "members": []}
    errors = broker.coordinator.leave(body["group_id"], ids)
    rows = [
        {
            "member_id": m["member_id"],
            "group_instance_id": m.get("group_instance_id"),
            "error_code": e,
        }
        for m, e in zip(members, errors, strict=True)
    ]
    # Before v3 one member left and its error was the request's.
    top = errors[0] if request.header.api_version < 3 else Errors.NONE
    return {"error_code": top, "members": rows}


async def offset_commit(broker: Broker, request: Request) -> Body:
    body = request.body
    wanted = [
        OffsetToCommit(
            t["name"],
            p["partition_index"],
            p["committed_offset"],
            p.get("committed_leader_epoch", -1),
            p.get("committed_metadata") or "",
        )
        for t in body["topics"]
        for p in t["partitions"]
    ]
    # Kafka answers a partition its metadata does not have before asking the group
    # coordinator, whatever the group's state, and stores nothing for it.
    views = broker.topic_views()
    known = [o.topic in views and 0 <= o.partition < len(views[o.topic].partitions) for o in wanted]
    existing = [o for o, k in zip(wanted, known, strict=True) if k]
    stored = iter(
        await broker.coordinator.commit(
            body["group_id"],
            body.get("member_id", ""),
            body.get("generation_id_or_member_epoch", -1),
            existing,
        )
        if existing
        else []
    )
    errors = [next(stored) if k else Errors.UNKNOWN_TOPIC_OR_PARTITION for k in known]
    by_topic: dict[str, list[Body]] = {}
    for o, error in zip(wanted, errors, strict=True):
        by_topic.setdefault(o.topic, []).append(
            {"partition_index": o.partition, "error_code": error}
        )
    return {"topics": [{"name": t, "partitions": rows} for t, rows in by_topic.items()]}


async def offset_fetch(broker: Broker, request: Request) -> Body:
    body = request.body
    if request.header.api_version >= 8:
        groups = [
            _offset_fetch_group(broker, g["group_id"], g.get("topics")) for g in body["groups"]
        ]
        return {"groups": groups}
    group = _offset_fetch_group(broker, body["group_id"], body.get("topics"))
    return {"error_code": group["error_code"], "topics": group["topics"]}


def _offset_fetch_group(broker: Broker, group_id: str, topics: list[Body] | None) -> Body:
    wanted = None
    if topics is not None:
        wanted = [(t["name"], index) for t in topics for index in t["partition_indexes"]]
    error, found = broker.coordinator.fetch_offsets(group_id, wanted)
    by_topic: dict[str, list[Body]] = {}
    for (topic, index), committed in sorted(found.items()):
        by_topic.setdefault(topic, []).append(
            {
                "partition_index": index,
                "committed_offset": committed.offset if committed else -1,
                "committed_leader_epoch": committed.leader_epoch if committed else -1,
                "metadata": committed.metadata if committed else "",
                "error_code": Errors.NONE,
            }
        )
    if error != Errors.NONE and topics is not None:
        # Kafka reports a coordinator error on every partition asked for, too.
        by_topic = {
            t["name"]: [
                {"partition_index": i, "committed_offset": -1, "error_code": error}
                for i in t["partition_indexes"]
            ]
            for t in topics
        }
    return {
        "group_id": group_id,
        "error_code": error,
        "topics": [{"name": t, "partitions": rows} for t, rows in by_topic.items()],
    }


async def describe_groups(broker: Broker, request: Request) -> Body:
    return {"groups": [_describe_group(broker, g) for g in request.body["groups"]]}


def _describe_group(broker: Broker, group_id: str) -> Body:
    """Kafka's summary: an unknown group is Dead; members' protocol metadata and
    assignments only while the group is Stable."""
    coordinator = broker.coordinator
    error = coordinator.status(group_id) if group_id else Errors.INVALID_GROUP_ID
    group = coordinator.groups.get(group_id) if error == Errors.NONE else None
    if group is None:
        state = "Dead" if error == Errors.NONE else ""
        return {
            "error_code": error,
            "group_id": group_id,
            "group_state": state,
            "protocol_type": "",
            "protocol_data": "",
            "members": [],
        }
    stable = group.state is GroupState.STABLE
    members = [
        {
            "member_id": m.member_id,
            "group_instance_id": m.group_instance_id,
            "client_id": m.client_id,
            "client_host": m.client_host,
            "member_metadata": m.metadata(group.protocol) if stable and group.protocol else b"",
            "member_assignment": m.assignment if stable else b"",
        }
        for m in group.members.values()
    ]
    return {
        "error_code": Errors.NONE,
        "group_id": group_id,
        "group_state": group.state.value,
        "protocol_type": group.protocol_type or "",
        "protocol_data": group.protocol or "",
        "members": members,
    }


async def list_groups(broker: Broker, request: Request) -> Body:
    """The groups this broker coordinates (Kafka's answer is per broker too), filtered by
    state (v4+) and type (v5+; every replog group is "classic")."""
    states = {s.lower() for s in request.body.get("states_filter") or []}
    types = {t.lower() for t in request.body.get("types_filter") or []}
    groups = [
        {
            "group_id": g.group_id,
            "protocol_type": g.protocol_type or "",
            "group_state": g.state.value,
            "group_type": "classic",
        }
        for g in broker.coordinator.groups.values()
        if (not states or g.state.value.lower() in states) and (not types or "classic" in types)
    ]
    return {"error_code": Errors.NONE, "groups": groups}


# ---- DescribeConfigs -------------------------------------------------------------------


async def describe_configs(broker: Broker, request: Request) -> Body:
    """Topics from this broker's metadata (Kafka forwards no describe), and its own
    broker configs; see impl/broker/configs.py."""
    body = request.body
    options = configs.Options(body["include_synonyms"], body.get("include_documentation", False))
    results = [
        configs.describe_resource(
            resource, broker.broker_id, broker.config, broker.topic_overrides, options
        )
        for resource in body["resources"]
    ]
    return {"throttle_time_ms": 0, "results": results}


# ---- the controller quorum's own APIs (brokers and controllers only) ------------------


def _not_controller(broker: Broker) -> Body:
    hint = broker.quorum.leader_hint() if broker.quorum is not None else -1
    return {"error_code": Errors.NOT_CONTROLLER, "leader_id": hint}


async def raft_message(broker: Broker, request: Request) -> Body:
    if broker.quorum is None:
        return {"error_code": Errors.INVALID_REQUEST}
    return {"error_code": broker.quorum.receive_raft_message(bytes(request.body["data"]))}


async def metadata_fetch(broker: Broker, request: Request) -> Body:
    """Committed metadata entries; any voter serves them (they never change)."""
    quorum = broker.quorum
    if quorum is None:
        return _not_controller(broker)
    body = request.body
    max_bytes = min(max(body["max_bytes"], 1), METADATA_FETCH_BYTES_MAX)
    wait_ms = min(max(body["max_wait_ms"], 0), METADATA_FETCH_WAIT_MS_MAX)
    if wait_ms:
        await quorum.wait_for_commit(max(body["from_index"], 1), wait_ms)
    entries = quorum.committed_entries(max(body["from_index"], 1), max_bytes)
    return {
        "error_code": Errors.NONE,
        "leader_id": quorum.leader_hint(),
        "commit_index": quorum.node.commit_index,
        "entries": [{"index": e.index, "term": e.term, "data": e.data} for e in entries],
    }


async def broker_registration(broker: Broker, request: Request) -> Body:
    quorum = broker.quorum
    if quorum is None or quorum.active is None:
        return _not_controller(broker)
    body = request.body
    registration = decide.BrokerRegistrationRequest(
        body["broker_id"], body["host"], body["port"], body["previous_incarnation"]
    )
    now_ms = broker.clock.monotonic_ms()
    outcome = await quorum.commit(
        decide.register_broker(quorum.active, registration, now_ms, broker.config)
    )
    if outcome.error != Errors.NONE or outcome.image is None:
        return {"error_code": outcome.error, "leader_id": quorum.leader_hint()}
    incarnation = outcome.image.brokers[body["broker_id"]].incarnation
    return {"error_code": Errors.NONE, "leader_id": broker.broker_id, "incarnation": incarnation}


async def broker_heartbeat(broker: Broker, request: Request) -> Body:
    quorum = broker.quorum
    if quorum is None or quorum.active is None:
        return _not_controller(broker)
    body = request.body
    beat = decide.BrokerHeartbeatRequest(body["broker_id"], body["incarnation"])
    now_ms = broker.clock.monotonic_ms()
    outcome = await quorum.commit(decide.heartbeat(quorum.active, beat, now_ms, broker.config))
    if outcome.error != Errors.NONE or outcome.image is None:
        return {"error_code": outcome.error, "leader_id": quorum.leader_hint()}
    registration = outcome.image.brokers[body["broker_id"]]
    return {
        "error_code": Errors.NONE,
        "leader_id": broker.broker_id,
        "is_fenced": registration.fenced,
    }


async def alter_partition(broker: Broker, request: Request) -> Body:
    quorum = broker.quorum
    if quorum is None or quorum.active is None:
        return _not_controller(broker)
    body = request.body
    change = decide.AlterPartitionRequest(
        body["topic"],
        body["partition"],
        body["broker_id"],
        body["leader_epoch"],
        body["partition_epoch"],
        tuple(body["new_isr"]),
    )
    outcome = await quorum.commit(decide.alter_partition(quorum.active, change, broker.config))
    if outcome.error != Errors.NONE or outcome.image is None:
        return {"error_code": outcome.error, "leader_id": quorum.leader_hint()}
    registration = outcome.image.partition(body["topic"], body["partition"])
    assert registration is not None, "an accepted AlterPartition names an existing partition"
    return {
        "error_code": Errors.NONE,
        "leader_id": registration.leader,
        "leader_epoch": registration.leader_epoch,
        "partition_epoch": registration.partition_epoch,
        "isr": list(registration.isr),
    }


async def clock_adjust(broker: Broker, request: Request) -> Body:
    """The clock nemesis: jump this node's wall clock (monotonic time is untouched)."""
    clock = broker.clock
    if request.body["reset"]:
        clock.reset()
    clock.bump(request.body["delta_ms"])
    return {"error_code": Errors.NONE, "skew_ms": clock.skew_ms, "wall_ms": clock.wall_ms()}


HANDLERS: dict[int, Handler] = {
    API_KEYS["ApiVersions"]: api_versions,
    API_KEYS["Metadata"]: metadata,
    API_KEYS["CreateTopics"]: create_topics,
    API_KEYS["Produce"]: produce,
    API_KEYS["Fetch"]: fetch,
    API_KEYS["ListOffsets"]: list_offsets,
    API_KEYS["InitProducerId"]: init_producer_id,
    API_KEYS["OffsetForLeaderEpoch"]: offset_for_leader_epoch,
    API_KEYS["RaftMessage"]: raft_message,
    API_KEYS["MetadataFetch"]: metadata_fetch,
    API_KEYS["BrokerRegistration"]: broker_registration,
    API_KEYS["BrokerHeartbeat"]: broker_heartbeat,
    API_KEYS["AlterPartition"]: alter_partition,
    API_KEYS["ClockAdjust"]: clock_adjust,
    API_KEYS["FindCoordinator"]: find_coordinator,
    API_KEYS["JoinGroup"]: join_group,
    API_KEYS["SyncGroup"]: sync_group,
    API_KEYS["Heartbeat"]: heartbeat,
    API_KEYS["LeaveGroup"]: leave_group,
    API_KEYS["OffsetCommit"]: offset_commit,
    API_KEYS["OffsetFetch"]: offset_fetch,
    API_KEYS["DescribeGroups"]: describe_groups,
    API_KEYS["ListGroups"]: list_groups,
    API_KEYS["DescribeConfigs"]: describe_configs,
}
