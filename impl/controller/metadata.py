"""Cluster metadata: the records of the controller's log and the image they build.

The metadata log is the Raft log: each Raft entry holds one batch of records that the
active controller decided together (a fencing and the elections it causes, say), so a
broker applying entries never sees half a decision. `MetadataImage` is the state after
applying records in order with the pure `apply`; brokers cache one, the controller
decides against one.

Records follow KRaft's (RegisterBrokerRecord, FenceBrokerRecord, UnfenceBrokerRecord,
TopicRecord + PartitionRecord, PartitionChangeRecord) with two simplifications: a
`CreateTopic` carries the replica assignment of all its partitions, and a
`PartitionChange` carries the partition's whole new state rather than changed fields
only. Heartbeats are not records (as in KRaft): they live in the active controller's
memory, and only their consequences (fence, unfence) are logged.

Encoding: a batch is compact JSON, `{"v": 1, "records": [{"type": ..., fields...}]}`.
Decoding checks every field's type; anything else raises MetadataError.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

NO_LEADER = -1
BATCH_VERSION = 1
BATCH_BYTES_MAX = 1 << 20


class MetadataError(ValueError):
    """A record that does not decode, or does not fit the image it is applied to."""


# --- records ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegisterBroker:
    """A new incarnation of a broker (KRaft's broker epoch); it starts fenced."""

    broker_id: int
    incarnation: int
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class FenceBroker:
    broker_id: int
    incarnation: int


@dataclass(frozen=True, slots=True)
class UnfenceBroker:
    broker_id: int
    incarnation: int


@dataclass(frozen=True, slots=True)
class CreateTopic:
    """A topic and its partitions: `assignments[p]` lists partition p's replicas, the
    first being the preferred leader. Every partition starts led by its first replica,
    with all replicas in the ISR, at leader and partition epoch 0."""

    name: str
    topic_id: str
    assignments: tuple[tuple[int, ...], ...]
    configs: tuple[tuple[str, str], ...] = ()

    @property
    def partitions(self) -> int:
        return len(self.assignments)

    @property
    def replication_factor(self) -> int:
        return len(self.assignments[0]) if self.assignments else 0


@dataclass(frozen=True, slots=True)
class PartitionChange:
    """The partition's new leader, epochs, ISR, ELR and last known leader. Every change
    raises the partition epoch by one; a new leader (or none) raises the leader epoch."""

    topic: str
    partition: int
    leader: int
    leader_epoch: int
    partition_epoch: int
    isr: tuple[int, ...]
    elr: tuple[int, ...]
    last_known_leader: int


MetadataRecord = RegisterBroker | FenceBroker | UnfenceBroker | CreateTopic | PartitionChange
RECORD_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (RegisterBroker, FenceBroker, UnfenceBroker, CreateTopic, PartitionChange)
}


# --- image ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BrokerRegistration:
    broker_id: int
    incarnation: int
    host: str
    port: int
    fenced: bool


@dataclass(frozen=True, slots=True)
class PartitionRegistration:
    """KRaft's PartitionRegistration. ISR and ELR are kept in replica order."""

    replicas: tuple[int, ...]
    leader: int
    leader_epoch: int
    partition_epoch: int
    isr: tuple[int, ...]
    elr: tuple[int, ...]
    last_known_leader: int


@dataclass(frozen=True, slots=True)
class TopicImage:
    name: str
    topic_id: str
    configs: tuple[tuple[str, str], ...]
    partitions: tuple[PartitionRegistration, ...]


@dataclass(frozen=True, slots=True)
class MetadataImage:
    """Never mutated: `apply` returns a new image sharing what did not change."""

    brokers: Mapping[int, BrokerRegistration] = field(default_factory=dict)
    topics: Mapping[str, TopicImage] = field(default_factory=dict)

    def partition(self, topic: str, partition: int) -> PartitionRegistration | None:
        image = self.topics.get(topic)
        if image is None or not 0 <= partition < len(image.partitions):
            return None
        return image.partitions[partition]

    def is_unfenced(self, broker_id: int) -> bool:
        registration = self.brokers.get(broker_id)
        return registration is not None and not registration.fenced

    def unfenced_brokers(self) -> tuple[int, ...]:
        return tuple(sorted(b for b, r in self.brokers.items() if not r.fenced))


def apply(image: MetadataImage, record: MetadataRecord) -> MetadataImage:
    """The image after one record; MetadataError if the record does not fit it."""
    match record:
        case RegisterBroker():
            return _apply_register(image, record)
        case FenceBroker() | UnfenceBroker():
            return _apply_fencing(image, record)
        case CreateTopic():
            return _apply_create_topic(image, record)
        case PartitionChange():
            return _apply_partition_change(image, record)
    raise MetadataError(f"not a metadata record: {record!r}")


def apply_all(image: MetadataImage, records: Iterable[MetadataRecord]) -> MetadataImage:
    for record in records:
        image = apply(image, record)
    return image


def _apply_register(image: MetadataImage, record: RegisterBroker) -> MetadataImage:
    old = image.brokers.get(record.broker_id)
    if old is not None and record.incarnation <= old.incarnation:
        raise MetadataError(
            f"broker {record.broker_id}: incarnation {record.incarnation} "
            f"does not follow {old.incarnation}"
        )
    registration = BrokerRegistration(
        record.broker_id, record.incarnation, record.host, record.port, fenced=True
    )
    return replace(image, brokers={**image.brokers, record.broker_id: registration})


def _apply_fencing(image: MetadataImage, record: FenceBroker | UnfenceBroker) -> MetadataImage:
    old = image.brokers.get(record.broker_id)
    if old is None or old.incarnation != record.incarnation:
        raise MetadataError(f"{record!r}: no such broker incarnation")
    registration = replace(old, fenced=isinstance(record, FenceBroker))
    return replace(image, brokers={**image.brokers, record.broker_id: registration})


def _apply_create_topic(image: MetadataImage, record: CreateTopic) -> MetadataImage:
    if record.name in image.topics:
        raise MetadataError(f"topic {record.name!r} exists")
    if not record.assignments:
        raise MetadataError(f"topic {record.name!r}: no partitions")
    partitions = []
    for replicas in record.assignments:
        if not replicas or len(set(replicas)) != len(replicas):
            raise MetadataError(f"topic {record.name!r}: bad replica list {replicas}")
        leader = replicas[0]
        partitions.append(PartitionRegistration(replicas, leader, 0, 0, replicas, (), leader))
    topic = TopicImage(record.name, record.topic_id, record.configs, tuple(partitions))
    return replace(image, topics={**image.topics, record.name: topic})


def _apply_partition_change(image: MetadataImage, record: PartitionChange) -> MetadataImage:
    old = image.partition(record.topic, record.partition)
    if old is None:
        raise MetadataError(f"{record.topic}-{record.partition}: no such partition")
    _check_partition_change(old, record)
    new = PartitionRegistration(
        old.replicas,
        record.leader,
        record.leader_epoch,
        record.partition_epoch,
        record.isr,
        record.elr,
        record.last_known_leader,
    )
    topic = image.topics[record.topic]
    partitions = (
        *topic.partitions[: record.partition],
        new,
        *topic.partitions[record.partition + 1 :],
    )
    return replace(
        image, topics={**image.topics, record.topic: replace(topic, partitions=partitions)}
    )


def _check_partition_change(old: PartitionRegistration, record: PartitionChange) -> None:
    name = f"{record.topic}-{record.partition}"
    if record.partition_epoch != old.partition_epoch + 1:
        raise MetadataError(
            f"{name}: partition epoch {record.partition_epoch} after {old.partition_epoch}"
        )
    expected_leader_epoch = old.leader_epoch + (record.leader != old.leader)
    if record.leader_epoch != expected_leader_epoch:
        raise MetadataError(
            f"{name}: leader epoch {record.leader_epoch}, expected {expected_leader_epoch}"
        )
    replicas = set(old.replicas)
    if record.leader != NO_LEADER and record.leader not in replicas:
        raise MetadataError(f"{name}: leader {record.leader} is not a replica")
    if not set(record.isr) <= replicas or not set(record.elr) <= replicas:
        raise MetadataError(f"{name}: ISR or ELR outside the replicas {old.replicas}")
    if set(record.isr) & set(record.elr):
        raise MetadataError(f"{name}: {set(record.isr) & set(record.elr)} in both ISR and ELR")


# --- encoding ---------------------------------------------------------------------------


def encode_batch(records: Iterable[MetadataRecord]) -> bytes:
    """One Raft entry's data. Never empty: empty data is Raft's no-op."""
    body = [{"type": type(r).__name__, **_plain(r)} for r in records]
    assert body, "a batch holds at least one record"
    data = json.dumps({"v": BATCH_VERSION, "records": body}, separators=(",", ":")).encode()
    if len(data) > BATCH_BYTES_MAX:
        raise MetadataError(f"batch of {len(data)} bytes, more than {BATCH_BYTES_MAX}")
    return data


def decode_batch(data: bytes) -> tuple[MetadataRecord, ...]:
    """The records of one Raft entry; a no-op entry (empty data) holds none."""
    if not data:
        return ()
    if len(data) > BATCH_BYTES_MAX:
        raise MetadataError(f"batch of {len(data)} bytes, more than {BATCH_BYTES_MAX}")
    try:
        batch = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MetadataError(f"batch is not JSON: {error}") from None
    if not isinstance(batch, dict) or batch.get("v") != BATCH_VERSION:
        raise MetadataError(f"batch version is not {BATCH_VERSION}")
    records = batch.get("records")
    if not isinstance(records, list) or not records:
        raise MetadataError("batch has no records list")
    return tuple(_decode_record(raw) for raw in records)


def _plain(record: MetadataRecord) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in fields(record)}


def _decode_record(raw: object) -> MetadataRecord:
    if not isinstance(raw, dict):
        raise MetadataError(f"record is not an object: {raw!r}")
    cls = RECORD_TYPES.get(str(raw.get("type")))
    if cls is None:
        raise MetadataError(f"unknown record type {raw.get('type')!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    if set(raw) - {"type"} != names:
        raise MetadataError(
            f"{cls.__name__}: fields {sorted(set(raw) - {'type'})}, expected {sorted(names)}"
        )
    values = {name: _conform(raw[name], hints[name], f"{cls.__name__}.{name}") for name in names}
    return cls(**values)


def _conform(value: object, hint: Any, where: str) -> Any:
    """`value` (from JSON) as the annotated type: lists become tuples; bools are not ints."""
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is str:
        if isinstance(value, str):
            return value
    elif typing.get_origin(hint) is tuple and isinstance(value, list):
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_conform(item, args[0], where) for item in value)
        if len(args) == len(value):
            return tuple(_conform(v, a, where) for v, a in zip(value, args, strict=True))
    raise MetadataError(f"{where}: {value!r} is not {_type_name(hint)}")


def _type_name(hint: Any) -> str:
    return str(hint) if typing.get_origin(hint) else hint.__name__
