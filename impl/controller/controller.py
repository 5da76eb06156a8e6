"""The active controller's decisions, pure: (state, input, clock reading) -> records.

Every decision function takes a `ControllerState` (the metadata image, including records
this controller proposed and not yet saw committed, plus broker sessions) and returns a
`Decision`: the records to propose as one Raft entry (`metadata.encode_batch`), an error
code, and the state after those records. The driver keeps the returned state, proposes
the records, and answers the request once the entry commits (NOT_CONTROLLER if this node
lost leadership first, after which it rebuilds its state from the committed log). A node
that becomes the active controller waits for `RaftNode.is_leader_ready()`, applies the
committed log, and starts from `ControllerState(image, Sessions.fresh(image, now_ms))`:
as in KRaft, every broker gets a whole new session from a new controller.

The partition rules mirror `model/rules.py` by name and meaning (written again here:
impl/ never runs the model's transition logic):
- `isr_after_removal`: with `replog.elr=true` (KIP-966) a removal that leaves fewer than
  min.insync.replicas puts the removed, caught-up member into the ELR and may empty the
  ISR; without ELR the last ISR member is never removed.
- `isr_after_addition`: a member back in the ISR leaves the ELR; an ISR back at
  min.insync.replicas clears the ELR.
- `election_candidates`: for an offline partition, unfenced ISR members (clean); else
  unfenced ELR members; else, if ISR and ELR are both empty, the last known leader; else,
  with unclean.leader.election.enable, any unfenced replica. Where the model lets the
  environment pick any candidate, the controller takes the first in replica order.
A clean election keeps ISR and ELR; any other makes the new leader the only ISR member.

Choices (where Kafka or the brief left room):
- Fencing a broker (missed session, or a new incarnation registering) removes it from
  every ISR by `isr_after_removal` and elects a successor for each partition it led, in
  one PartitionChange per partition (leader epoch + 1, partition epoch + 1).
- A registration whose `previous_incarnation` is not the broker's current incarnation is
  an unclean shutdown: with `replog.elr=true` the broker leaves every ISR and ELR
  (KIP-966); without ELR nothing happens, which is how bug #6 loses data.
- A registered broker starts fenced; its first heartbeat unfences it (KRaft also waits
  until it has caught up with the metadata log). Unfencing elects leaders for offline
  partitions it can lead; it rejoins an ISR only through its leader's AlterPartition.
- Errors Kafka has and `model.errors.Errors` lacks are in `ControllerError`.
"""

from __future__ import annotations

import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import IntEnum

from impl.controller.metadata import (
    NO_LEADER,
    CreateTopic,
    FenceBroker,
    MetadataImage,
    MetadataRecord,
    PartitionChange,
    PartitionRegistration,
    RegisterBroker,
    TopicImage,
    UnfenceBroker,
    apply,
)
from model.config import Config, ConfigError, topic_config
from model.errors import Errors

TOPIC_NAME_CHARACTERS = frozenset(string.ascii_letters + string.digits + "._-")
TOPIC_NAME_LENGTH_MAX = 249
PARTITIONS_MAX = 10_000
PORT_MAX = 65_535


class ControllerError(IntEnum):
    """Kafka's wire codes for controller answers that model.errors.Errors does not have."""

    STALE_BROKER_EPOCH = 77
    INVALID_UPDATE_VERSION = 96
    BROKER_ID_NOT_REGISTERED = 102
    INELIGIBLE_REPLICA = 107


ErrorCode = Errors | ControllerError


# --- state and decisions -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sessions:
    """When the active controller last heard each broker's heartbeat (not replicated)."""

    last_heartbeat_ms: Mapping[int, int] = field(default_factory=dict)

    @classmethod
    def fresh(cls, image: MetadataImage, now_ms: int) -> Sessions:
        return cls({broker_id: now_ms for broker_id in image.brokers})

    def touch(self, broker_id: int, now_ms: int) -> Sessions:
        return Sessions({**self.last_heartbeat_ms, broker_id: now_ms})

    def expired(self, image: MetadataImage, now_ms: int, timeout_ms: int) -> tuple[int, ...]:
        """Unfenced brokers not heard from for more than `timeout_ms` (or never)."""
        expired = []
        for broker_id in image.unfenced_brokers():
            last_ms = self.last_heartbeat_ms.get(broker_id)
            if last_ms is None or now_ms - last_ms > timeout_ms:
                expired.append(broker_id)
        return tuple(expired)


@dataclass(frozen=True, slots=True)
class ControllerState:
    image: MetadataImage = field(default_factory=MetadataImage)
    sessions: Sessions = field(default_factory=Sessions)


@dataclass(frozen=True, slots=True)
class Decision:
    """Records to propose together (none when there is nothing to change or on error)."""

    records: tuple[MetadataRecord, ...]
    state: ControllerState
    error: ErrorCode = Errors.NONE


@dataclass(frozen=True, slots=True)
class BrokerRegistrationRequest:
    """`previous_incarnation` is the incarnation the broker saved at its last clean
    shutdown, -1 if it has none (KIP-966's PreviousBrokerEpoch)."""

    broker_id: int
    host: str
    port: int
    previous_incarnation: int = -1


@dataclass(frozen=True, slots=True)
class BrokerHeartbeatRequest:
    broker_id: int
    incarnation: int


@dataclass(frozen=True, slots=True)
class CreateTopicRequest:
    """-1 partitions or replication factor means the configured default."""

    name: str
    topic_id: str
    partitions: int = -1
    replication_factor: int = -1
    configs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class AlterPartitionRequest:
    topic: str
    partition: int
    leader_id: int
    leader_epoch: int
    partition_epoch: int
    new_isr: tuple[int, ...]


class _Changes:
    """Records decided so far and the image they lead to, so each later decision in the
    same batch sees the earlier ones."""

    def __init__(self, image: MetadataImage) -> None:
        self.image = image
        self.records: list[MetadataRecord] = []

    def add(self, record: MetadataRecord) -> None:
        self.image = apply(self.image, record)
        self.records.append(record)

    def decision(self, sessions: Sessions) -> Decision:
        return Decision(tuple(self.records), ControllerState(self.image, sessions))


def _refuse(state: ControllerState, error: ErrorCode) -> Decision:
    return Decision((), state, error)


# --- the partition rules (model/rules.py's names) ------------------------------------------


def isr_after_removal(
    isr: tuple[int, ...],
    elr: tuple[int, ...],
    broker: int,
    replicas: tuple[int, ...],
    config: Config,
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if broker not in isr:
        return isr, elr
    remaining = tuple(b for b in isr if b != broker)
    if config.elr:
        if len(remaining) < config.min_insync_replicas:
            elr = _in_replica_order(replicas, {*elr, broker})
        return remaining, elr
    if not remaining:
        return isr, elr
    return remaining, elr


def isr_after_addition(
    isr: tuple[int, ...],
    elr: tuple[int, ...],
    broker: int,
    replicas: tuple[int, ...],
    config: Config,
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    isr = _in_replica_order(replicas, {*isr, broker})
    elr = tuple(b for b in elr if b != broker)
    if len(isr) >= config.min_insync_replicas:
        elr = ()
    return isr, elr


def election_candidates(
    leader: int,
    isr: tuple[int, ...],
    elr: tuple[int, ...],
    last_leader: int,
    replicas: tuple[int, ...],
    fenced: frozenset[int],
    config: Config,
) -> tuple[tuple[int, ...], bool]:
    """Who may lead next (in replica order), and whether the choice is clean (from the ISR)."""
    unfenced = tuple(r for r in replicas if r not in fenced)
    if leader != NO_LEADER:
        return tuple(r for r in unfenced if r in isr and r != leader), True
    from_isr = tuple(r for r in unfenced if r in isr)
    if from_isr:
        return from_isr, True
    if config.elr:
        from_elr = tuple(r for r in unfenced if r in elr)
        if from_elr:
            return from_elr, False
        if not isr and not elr and last_leader in unfenced:
            return (last_leader,), False
    if config.unclean_leader_election_enable:
        return unfenced, False
    return (), False


def _in_replica_order(replicas: tuple[int, ...], members: set[int]) -> tuple[int, ...]:
    return tuple(r for r in replicas if r in members)


def _topic_config(config: Config, topic: TopicImage) -> Config:
    """The cluster config with the topic's overrides (min.insync.replicas, unclean...)."""
    return topic_config(config, dict(topic.configs))


# --- brokers -------------------------------------------------------------------------------


def register_broker(
    state: ControllerState, request: BrokerRegistrationRequest, now_ms: int, config: Config
) -> Decision:
    """A broker (re)starting: a new incarnation, fenced until its first heartbeat."""
    if request.broker_id < 0 or not request.host or not 0 <= request.port <= PORT_MAX:
        return _refuse(state, Errors.INVALID_REQUEST)
    old = state.image.brokers.get(request.broker_id)
    changes = _Changes(state.image)
    if old is not None and not old.fenced:
        _fence(changes, request.broker_id, config)
    if old is not None and request.previous_incarnation != old.incarnation:
        _forget_unclean_replica(changes, request.broker_id, config)
    incarnation = old.incarnation + 1 if old is not None else 1
    changes.add(RegisterBroker(request.broker_id, incarnation, request.host, request.port))
    return changes.decision(state.sessions.touch(request.broker_id, now_ms))


def heartbeat(
    state: ControllerState, request: BrokerHeartbeatRequest, now_ms: int, config: Config
) -> Decision:
    """Renew the session; the first heartbeat of a fenced incarnation unfences it."""
    registration = state.image.brokers.get(request.broker_id)
    if registration is None:
        return _refuse(state, ControllerError.BROKER_ID_NOT_REGISTERED)
    if registration.incarnation != request.incarnation:
        return _refuse(state, ControllerError.STALE_BROKER_EPOCH)
    sessions = state.sessions.touch(request.broker_id, now_ms)
    changes = _Changes(state.image)
    if registration.fenced:
        changes.add(UnfenceBroker(request.broker_id, registration.incarnation))
        _elect_offline_partitions(changes, config)
    return changes.decision(sessions)


def fence_expired_brokers(state: ControllerState, now_ms: int, config: Config) -> Decision:
    """Fence every unfenced broker silent for more than broker.session.timeout.ms."""
    changes = _Changes(state.image)
    timeout_ms = config.broker_session_timeout_ms
    for broker_id in state.sessions.expired(state.image, now_ms, timeout_ms):
        _fence(changes, broker_id, config)
    return changes.decision(state.sessions)


def _fence(changes: _Changes, broker_id: int, config: Config) -> None:
    """Fence the broker, drop it from every ISR, and elect successors where it led."""
    registration = changes.image.brokers[broker_id]
    assert not registration.fenced, f"broker {broker_id} is already fenced"
    changes.add(FenceBroker(broker_id, registration.incarnation))
    for topic, index, partition in _partitions_of(changes.image, broker_id):
        topic_config = _topic_config(config, changes.image.topics[topic])
        isr, elr = isr_after_removal(
            partition.isr, partition.elr, broker_id, partition.replicas, topic_config
        )
        if partition.leader == broker_id:
            leader, isr, elr, last = _elect(changes.image, partition, isr, elr, topic_config)
            _change(changes, topic, index, leader, isr, elr, last)
        elif (isr, elr) != (partition.isr, partition.elr):
            _change(changes, topic, index, partition.leader, isr, elr, partition.last_known_leader)


def _forget_unclean_replica(changes: _Changes, broker_id: int, config: Config) -> None:
    """KIP-966: a replica that may have lost data leaves every ISR and ELR."""
    for topic, index, partition in _partitions_of(changes.image, broker_id):
        if not _topic_config(config, changes.image.topics[topic]).elr:
            continue
        if broker_id not in partition.isr and broker_id not in partition.elr:
            continue
        assert partition.leader != broker_id, "a broker is fenced before it re-registers"
        isr = tuple(b for b in partition.isr if b != broker_id)
        elr = tuple(b for b in partition.elr if b != broker_id)
        _change(changes, topic, index, partition.leader, isr, elr, partition.last_known_leader)


def _elect_offline_partitions(changes: _Changes, config: Config) -> None:
    for topic in sorted(changes.image.topics):
        image = changes.image.topics[topic]
        topic_config = _topic_config(config, image)
        for index, partition in enumerate(image.partitions):
            if partition.leader != NO_LEADER:
                continue
            leader, isr, elr, last = _elect(
                changes.image, partition, partition.isr, partition.elr, topic_config
            )
            if leader != NO_LEADER:
                _change(changes, topic, index, leader, isr, elr, last)


def _elect(
    image: MetadataImage,
    partition: PartitionRegistration,
    isr: tuple[int, ...],
    elr: tuple[int, ...],
    config: Config,
) -> tuple[int, tuple[int, ...], tuple[int, ...], int]:
    """(leader, ISR, ELR, last known leader) for a partition that has lost its leader."""
    fenced = frozenset(r for r in partition.replicas if not image.is_unfenced(r))
    candidates, clean = election_candidates(
        NO_LEADER, isr, elr, partition.last_known_leader, partition.replicas, fenced, config
    )
    if not candidates:
        return NO_LEADER, isr, elr, partition.last_known_leader
    leader = candidates[0]
    if clean:
        return leader, isr, elr, leader
    return leader, (leader,), tuple(b for b in elr if b != leader), leader


def _change(
    changes: _Changes,
    topic: str,
    index: int,
    leader: int,
    isr: tuple[int, ...],
    elr: tuple[int, ...],
    last_known_leader: int,
) -> None:
    old = changes.image.partition(topic, index)
    assert old is not None, f"{topic}-{index} vanished"
    leader_epoch = old.leader_epoch + (1 if leader != old.leader else 0)
    record = PartitionChange(
        topic, index, leader, leader_epoch, old.partition_epoch + 1, isr, elr, last_known_leader
    )
    changes.add(record)


def _partitions_of(
    image: MetadataImage, broker_id: int
) -> Iterator[tuple[str, int, PartitionRegistration]]:
    for topic in sorted(image.topics):
        for index, partition in enumerate(image.topics[topic].partitions):
            if broker_id in partition.replicas:
                yield topic, index, partition


# --- topics and partitions ---------------------------------------------------------------


def topic_config_error(config: Config, configs: tuple[tuple[str, str], ...]) -> str | None:
    """Why CreateTopics refuses these topic configs (INVALID_CONFIG), or None: the same
    table and rules (model.config.TOPIC_KEYS) every broker opens the topic's logs with."""
    try:
        topic_config(config, dict(configs))
    except ConfigError as error:
        return str(error)
    return None


def create_topic(state: ControllerState, request: CreateTopicRequest, config: Config) -> Decision:
    """Assign replicas round-robin over the unfenced brokers (partition p's replica i is
    the (p + i)-th, wrapping), the model's layout; the first replica leads."""
    name = request.name
    if not name or len(name) > TOPIC_NAME_LENGTH_MAX or not set(name) <= TOPIC_NAME_CHARACTERS:
        return _refuse(state, Errors.INVALID_TOPIC_EXCEPTION)
    if name in (".", ".."):
        return _refuse(state, Errors.INVALID_TOPIC_EXCEPTION)
    if name in state.image.topics:
        return _refuse(state, Errors.TOPIC_ALREADY_EXISTS)
    if topic_config_error(config, request.configs) is not None:
        return _refuse(state, Errors.INVALID_CONFIG)
    partitions = config.num_partitions if request.partitions == -1 else request.partitions
    if not 1 <= partitions <= PARTITIONS_MAX:
        return _refuse(state, Errors.INVALID_PARTITIONS)
    factor = (
        config.replication_factor
        if request.replication_factor == -1
        else request.replication_factor
    )
    brokers = state.image.unfenced_brokers()
    if not 1 <= factor <= len(brokers):
        return _refuse(state, Errors.INVALID_REPLICATION_FACTOR)
    assignments = tuple(
        tuple(brokers[(p + i) % len(brokers)] for i in range(factor)) for p in range(partitions)
    )
    changes = _Changes(state.image)
    changes.add(CreateTopic(name, request.topic_id, assignments, request.configs))
    return changes.decision(state.sessions)


def alter_partition(
    state: ControllerState, request: AlterPartitionRequest, config: Config
) -> Decision:
    """A leader's ISR change, accepted only at the current leader and partition epochs.
    The new partition epoch is `decision.state.image.partition(...).partition_epoch`."""
    partition = state.image.partition(request.topic, request.partition)
    if partition is None:
        return _refuse(state, Errors.UNKNOWN_TOPIC_OR_PARTITION)
    error = _alter_partition_error(state.image, partition, request)
    if error != Errors.NONE:
        return _refuse(state, error)
    topic_config = _topic_config(config, state.image.topics[request.topic])
    isr, elr = _isr_and_elr_after(partition, request.new_isr, topic_config)
    changes = _Changes(state.image)
    if (isr, elr) != (partition.isr, partition.elr):
        _change(
            changes,
            request.topic,
            request.partition,
            partition.leader,
            isr,
            elr,
            partition.last_known_leader,
        )
    return changes.decision(state.sessions)


def _isr_and_elr_after(
    partition: PartitionRegistration, new_isr: tuple[int, ...], config: Config
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Removals then additions, one member at a time, as the model's ISR rules go."""
    isr, elr, replicas = partition.isr, partition.elr, partition.replicas
    for broker in replicas:
        if broker in isr and broker not in new_isr:
            isr, elr = isr_after_removal(isr, elr, broker, replicas, config)
    for broker in replicas:
        if broker in new_isr and broker not in isr:
            isr, elr = isr_after_addition(isr, elr, broker, replicas, config)
    assert set(isr) == set(new_isr), "the leader stays, so no removal hit the last member"
    return isr, elr


def _alter_partition_error(
    image: MetadataImage, partition: PartitionRegistration, request: AlterPartitionRequest
) -> ErrorCode:
    # Epochs ahead of ours mean this controller is behind: the leader should find the
    # active one (Kafka answers NOT_CONTROLLER too).
    if (
        request.leader_epoch > partition.leader_epoch
        or request.partition_epoch > partition.partition_epoch
    ):
        return Errors.NOT_CONTROLLER
    if request.leader_epoch < partition.leader_epoch:
        return Errors.FENCED_LEADER_EPOCH
    if request.partition_epoch < partition.partition_epoch:
        return ControllerError.INVALID_UPDATE_VERSION
    if request.leader_id != partition.leader:
        return Errors.INVALID_REQUEST
    new_isr = request.new_isr
    if (
        len(set(new_isr)) != len(new_isr)
        or request.leader_id not in new_isr
        or not set(new_isr) <= set(partition.replicas)
    ):
        return Errors.INVALID_REQUEST
    if any(not image.is_unfenced(broker) for broker in new_isr):
        return ControllerError.INELIGIBLE_REPLICA
    return Errors.NONE
