"""The model's state: immutable, hashable, plain tuples of ints.

Brokers are numbered 0..N-1 (shown as A, B, C, ...); sets of brokers (ISR, ELR,
fenced) are bitmasks. A record is `(leader_epoch, value, producer_id, producer_epoch,
sequence)`; its offset is its index in the replica's log.
"""

from __future__ import annotations

from typing import NamedTuple

Record = tuple[int, int, int, int, int]
NO_LEADER = -1
UNKNOWN = -1

# A follower's fetch phase for one partition.
IDLE = 0  # not following anyone
TRUNCATING = 1  # must agree with the leader (OffsetsForLeaderEpoch) before fetching
FETCHING = 2

# Message kinds in a follower's single in-flight slot.
FETCH_REQUEST = 0
FETCH_RESPONSE = 1
LOOKUP_REQUEST = 2
LOOKUP_RESPONSE = 3

# Crash kinds: what a crash does to the disk.
KILL = 0  # kill -9: the page cache survives, nothing is lost
POWER = 1  # power loss: everything after the last fsync is lost
DISK = 2  # the disk is gone: the broker restarts empty
CRASH_KINDS = {"kill": KILL, "power": POWER, "disk": DISK}
CRASH_NAMES = {v: k for k, v in CRASH_KINDS.items()}

# Producer request states.
RETRYABLE = 0  # failed or unknown: the client may send it again
IN_FLIGHT = 1  # appended, waiting in the leader's purgatory for the HW


def broker_name(broker: int) -> str:
    return chr(ord("A") + broker) if 0 <= broker < 26 else f"b{broker}"


def members(mask: int) -> tuple[int, ...]:
    """The broker ids in a bitmask, ascending."""
    out = []
    broker = 0
    while mask:
        if mask & 1:
            out.append(broker)
        mask >>= 1
        broker += 1
    return tuple(out)


def mask_name(mask: int) -> str:
    return "{" + ",".join(broker_name(b) for b in members(mask)) + "}"


class Replica(NamedTuple):
    """One broker's copy of one partition, plus its leader- and follower-side state."""

    log: tuple[Record, ...]
    hw: int
    flushed: int  # recovery point: a power loss keeps log[:flushed]
    epochs: tuple[tuple[int, int], ...]  # leader-epoch cache: (epoch, start offset)
    phase: int  # IDLE / TRUNCATING / FETCHING, as a follower
    follower_leo: tuple[int, ...]  # as leader: each follower's last fetch offset
    caught_up_ms: tuple[int, ...]  # as leader: when each follower was last caught up


class View(NamedTuple):
    """What a broker believes about a partition (delivered from the controller)."""

    leader: int
    leader_epoch: int
    partition_epoch: int
    isr: int


class Broker(NamedTuple):
    alive: bool
    registered: bool  # this incarnation has registered with the controller
    unclean: bool  # the last crash lost data; the controller hears it on registration
    views: tuple[View | None, ...]  # per partition; None until the first delivery


class PartitionRegistration(NamedTuple):
    """The controller's record of a partition (KRaft PartitionRecord)."""

    leader: int
    leader_epoch: int
    partition_epoch: int
    isr: int
    elr: int
    last_leader: int


class Controller(NamedTuple):
    partitions: tuple[PartitionRegistration, ...]
    fenced: int


class Message(NamedTuple):
    """A fetch or epoch lookup, request or response, between a follower and a leader."""

    kind: int
    leader: int  # the broker the follower sent it to
    epoch: int  # the follower's leader epoch when it sent the request
    offset: int  # fetch offset; in a lookup response, the end offset
    last_epoch: int  # last fetched epoch; in responses, the diverging/lookup epoch
    error: int
    records: tuple[Record, ...]
    leader_hw: int
    leader_leo: int
    diverging: bool  # a fetch response carrying (last_epoch, offset) to truncate to


class Pending(NamedTuple):
    """A record a producer has sent and not yet seen acknowledged."""

    value: int
    sequence: int
    state: int  # RETRYABLE or IN_FLIGHT


class Producer(NamedTuple):
    """The idempotent producer of one partition: sequences are assigned when a record
    is first sent, and several records may be in flight (Kafka allows 5)."""

    producer_id: int
    next_sequence: int
    pending: tuple[Pending, ...]


class Purgatory(NamedTuple):
    """An acks=all produce appended at `offset`, waiting for the leader's HW."""

    partition: int
    broker: int
    leader_epoch: int
    offset: int
    value: int


class Budget(NamedTuple):
    writes: int = 0
    retries: int = 0
    crashes: int = 0
    data_loss_crashes: int = 0
    elections: int = 0
    network_changes: int = 0
    clock_advances: int = 0


class Ack(NamedTuple):
    partition: int
    offset: int
    value: int
    leader_epoch: int


class State(NamedTuple):
    replicas: tuple[tuple[Replica, ...], ...]  # [broker][partition]
    brokers: tuple[Broker, ...]
    controller: Controller
    isolated: int  # brokers cut off from everyone (brokers, controller, clients)
    controller_cut: int  # brokers cut off from the controller only
    slots: tuple[tuple[tuple[Message, ...], ...], ...]  # [broker][partition]: responses in flight
    producers: tuple[Producer, ...]
    purgatory: tuple[Purgatory, ...]
    now_ms: int
    budget: Budget
    acked: tuple[Ack, ...]
    committed: tuple[tuple[tuple[int, int], ...], ...]  # [p]: (value, epoch) per offset
    consumed: tuple[tuple[int, ...], ...]  # [p]: values a consumer read, by offset
    read_conflict: bool  # a consumer read a different value at an offset it had read
    consumption: Consumption | None = None  # consumer groups and retention, if in scope


# --- consumer groups and retention ----------------------------------------------------

# The group coordinator's states (Kafka's GroupState).
EMPTY = 0
PREPARING_REBALANCE = 1
COMPLETING_REBALANCE = 2
STABLE = 3
DEAD = 4
GROUP_STATE_NAMES = ("Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead")

# A consumer process's phase in the group protocol.
UNJOINED = 0  # no JoinGroup outstanding: must (re)join
JOINING = 1  # JoinGroup sent: waits for the rebalance to complete
SYNCING = 2  # JoinGroup answered: must SyncGroup for its assignment
MEMBER = 3  # has its assignment for its generation
FAILED = 4  # an error reached the application (auto.offset.reset=none): it stopped
CONSUMER_PHASE_NAMES = ("unjoined", "joining", "syncing", "member", "failed")


class Member(NamedTuple):
    """The coordinator's record of one group member."""

    member_id: int
    rejoined: bool  # has sent JoinGroup in the rebalance under way
    owned: tuple[int, ...]  # partitions it said it owns when it joined (cooperative)
    assignment: tuple[int, ...]  # what it was given in the current generation
    heartbeat_ms: int  # the last heartbeat (or join, sync) the coordinator saw


class Group(NamedTuple):
    """One consumer group on its coordinator, with its committed offsets."""

    state: int
    generation: int
    leader: int  # member id of the leader, -1 for none
    members: tuple[Member, ...]  # ascending member id
    next_member_id: int
    rebalance_started_ms: int  # when PreparingRebalance began, -1 otherwise
    offsets: tuple[int, ...]  # committed offset per partition, -1 for none


class PartitionLog(NamedTuple):
    """A partition's segment layout and log start, kept by offset.

    `stamps[o]` is record o's (timestamp ms, size in bytes) as its leader appended it;
    `segments` are base offsets, ascending, the last one the active segment.
    """

    stamps: tuple[tuple[int, int], ...]
    segments: tuple[int, ...]
    log_start: int


class Consumer(NamedTuple):
    """One consumer process of the group, as its application sees it."""

    alive: bool
    phase: int
    member_id: int  # -1 until the coordinator gives one
    generation: int  # the generation it last joined, -1 for none
    owned: tuple[int, ...]  # partitions it consumes now
    positions: tuple[int, ...]  # per partition, -1 until fetched or reset
    buffer: tuple[tuple[int, int], ...]  # (partition, offset) polled, not yet processed
    must_commit: bool  # polled records whose offsets it has not tried to commit
    polled_ms: int  # when the application last called poll


class Reset(NamedTuple):
    """An auto.offset.reset the model applied (the event the state records)."""

    partition: int
    consumer: int
    from_offset: int  # the position that was out of range, -1 for no committed offset
    to_offset: int  # -1 under `none`: the error went to the application
    policy: str
    log_start: int
    high_watermark: int


class GroupBudget(NamedTuple):
    polls: int = 0
    consumer_crashes: int = 0
    leaves: int = 0
    time_advances: int = 0


class Consumption(NamedTuple):
    """Consumer groups and retention: None in scopes without a consumer group."""

    group: Group
    consumers: tuple[Consumer, ...]
    logs: tuple[PartitionLog, ...]  # per partition
    delivered: tuple[tuple[int, ...], ...]  # per partition: offsets poll returned, ascending
    processed: tuple[tuple[int, ...], ...]  # per partition: offsets processed, ascending
    reprocessed: tuple[tuple[int, int], ...]  # (partition, offset) processed a second time
    starts: tuple[int, ...]  # per partition: where the group first started reading, -1
    resets: tuple[Reset, ...]
    budget: GroupBudget


_MISSING = object()


def _install_fast_replace(cls: type) -> None:
    """Give a NamedTuple a generated keyword-only `_replace`.

    The stock one builds a dict and maps `kwds.pop` over every field; the explorer calls
    `_replace` millions of times a minute, and this version is several times faster with
    the same meaning (unknown field names and positional arguments still raise
    TypeError). It unpacks `self` once and reads the sentinel from a local.
    """
    fields = cls._fields
    params = ", ".join(f"{name}=_MISSING" for name in fields)
    current = ", ".join(f"_{index}" for index in range(len(fields)))
    values = ", ".join(
        f"_{index} if {name} is _missing else {name}" for index, name in enumerate(fields)
    )
    source = (
        f"def _replace(self, *, {params}):\n"
        f"    _missing = _MISSING\n"
        f"    {current}, = self\n"
        f"    return _new(_cls, ({values},))\n"
    )
    namespace = {"_MISSING": _MISSING, "_new": tuple.__new__, "_cls": cls}
    exec(source, namespace)
    cls._replace = namespace["_replace"]


for _cls in (
    Replica,
    View,
    Broker,
    PartitionRegistration,
    Controller,
    Message,
    Pending,
    Producer,
    Purgatory,
    Budget,
    Ack,
    Member,
    Group,
    PartitionLog,
    Consumer,
    Reset,
    GroupBudget,
    Consumption,
    State,
):
    _install_fast_replace(_cls)
