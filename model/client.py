"""Client-level calls with results, for differential tests against the impl.

These are the same transitions the explorer takes (`ReplicationModel.leader_append`,
the fetch path, the actions), seen from a client: produce -> offset | error, fetch ->
records + HW | error, list_offsets; and, in a model whose scope has consumer groups or
retention (`Scope(group_consumers=..., retention=True)`), the group coordinator's
calls by member id (join_group, sync_group, heartbeat, leave_group, commit_offsets,
fetch_offsets), its session timer (expire_sessions), a consumer process's poll, the
clock and retention. Every function is pure: it takes a state and returns results
(and, where something changes, the new state).
"""

from __future__ import annotations

from dataclasses import dataclass

from model import consumption, groups, retention, rules
from model.consumption import PollResult as PollResult
from model.consumption import leader_of as leader_of
from model.errors import Errors
from model.groups import SyncResult as SyncResult
from model.machine import Action, ReplicationModel
from model.state import NO_LEADER, PREPARING_REBALANCE, UNKNOWN, Consumption, State


@dataclass(frozen=True)
class ProduceResult:
    error: Errors
    offset: int
    leader_epoch: int
    pending: bool  # acks=all: appended, acknowledged only once the HW passes it


@dataclass(frozen=True)
class FetchResult:
    error: Errors
    records: tuple[tuple[int, int], ...]  # (offset, value)
    high_watermark: int
    log_end_offset: int
    log_start_offset: int


def produce(
    model: ReplicationModel,
    state: State,
    partition: int,
    value: int,
    *,
    broker: int | None = None,
    producer: tuple[int, int, int] | None = None,
    timestamp_ms: int | None = None,
    size_bytes: int = retention.RECORD_BATCH_BYTES,
) -> tuple[State, ProduceResult]:
    """Send one record to `broker` (default: the current leader). `producer` is
    (producer id, producer epoch, sequence) for an idempotent send; `timestamp_ms` the
    record's CreateTime (default: the broker's clock, `state.now_ms`), which with
    `size_bytes` decides its segment."""
    target = leader_of(state, partition) if broker is None else broker
    if target == NO_LEADER:
        return state, ProduceResult(Errors.NOT_LEADER_OR_FOLLOWER, UNKNOWN, UNKNOWN, False)
    producer_id, producer_epoch, sequence = producer or (-1, -1, -1)
    record = (0, value, producer_id, producer_epoch, sequence)
    state, error, offset, epoch = model.leader_append(
        state, target, partition, record, timestamp_ms=timestamp_ms, size_bytes=size_bytes
    )
    if error != Errors.NONE:
        return state, ProduceResult(error, UNKNOWN, epoch, False)
    hw = state.replicas[target][partition].hw
    pending = model.config.acks == -1 and hw <= offset
    return state, ProduceResult(Errors.NONE, offset, epoch, pending)


def produce_outcome(
    model: ReplicationModel, state: State, partition: int, broker: int, result: ProduceResult
) -> Errors | None:
    """What a pending acks=all produce has come to: None while waiting, NONE when
    acknowledged, an error when it failed or its leader moved on (outcome unknown)."""
    if not result.pending:
        return result.error
    view = state.brokers[broker].views[partition]
    if not state.brokers[broker].alive or view is None or view.leader != broker:
        return Errors.NOT_LEADER_OR_FOLLOWER
    if view.leader_epoch != result.leader_epoch:
        return Errors.NOT_LEADER_OR_FOLLOWER
    hw = state.replicas[broker][partition].hw
    return rules.produce_completion(hw, result.offset, view.isr, model.config)


def log_start_offset(state: State, partition: int) -> int:
    """Where the partition's log starts: retention moves it; 0 without retention."""
    if state.consumption is None:
        return 0
    return state.consumption.logs[partition].log_start


def fetch(state: State, partition: int, offset: int, *, broker: int | None = None) -> FetchResult:
    """A consumer fetch (read_uncommitted): records in [offset, HW) from the leader.
    Offsets in [HW, LEO] return nothing; beyond the LEO or below the log start is
    OFFSET_OUT_OF_RANGE."""
    target = leader_of(state, partition) if broker is None else broker
    view = state.brokers[target].views[partition] if target != NO_LEADER else None
    if view is None or view.leader != target or not state.brokers[target].alive:
        return FetchResult(Errors.NOT_LEADER_OR_FOLLOWER, (), UNKNOWN, UNKNOWN, UNKNOWN)
    replica = state.replicas[target][partition]
    leo = len(replica.log)
    start = log_start_offset(state, partition)
    if not retention.fetch_in_range(start, leo, offset):
        return FetchResult(Errors.OFFSET_OUT_OF_RANGE, (), replica.hw, leo, start)
    records = tuple((o, replica.log[o][1]) for o in range(offset, replica.hw))
    return FetchResult(Errors.NONE, records, replica.hw, leo, start)


def list_offsets(
    state: State, partition: int, spec: str, *, broker: int | None = None
) -> tuple[Errors, int]:
    """ListOffsets: `earliest` is the log start offset, `latest` the HW (what a
    read_uncommitted consumer may read up to), or OFFSET_NOT_AVAILABLE while a new
    leader's HW is below the start of its epoch (KIP-207: the HW it learned as a
    follower may be behind what was acknowledged)."""
    if spec not in ("earliest", "latest"):
        raise ValueError(f"spec must be 'earliest' or 'latest', got {spec!r}")
    start = log_start_offset(state, partition)
    result = fetch(state, partition, start, broker=broker)
    if result.error == Errors.NOT_LEADER_OR_FOLLOWER:
        return result.error, UNKNOWN
    if spec == "earliest":
        return Errors.NONE, start
    target = leader_of(state, partition) if broker is None else broker
    replica = state.replicas[target][partition]
    epoch = state.brokers[target].views[partition].leader_epoch
    epoch_start = next((o for e, o in reversed(replica.epochs) if e == epoch), 0)
    if result.high_watermark < epoch_start:
        return Errors.OFFSET_NOT_AVAILABLE, UNKNOWN
    return Errors.NONE, result.high_watermark


# --- consumer groups, the clock and retention ------------------------------------------


@dataclass(frozen=True)
class JoinResult:
    error: Errors
    member_id: int
    generation: int  # -1 while the join waits
    leader: int  # the leader's member id, -1 while the join waits
    members: tuple[int, ...]  # the leader is told every member id; others get ()
    waiting: bool  # the rebalance waits for other members to rejoin


def _group_world(state: State) -> Consumption:
    if state.consumption is None:
        raise ValueError("this model has no consumer groups: build it with a Scope that has them")
    return state.consumption


def _with_group(state: State, group: groups.Group) -> State:
    return state._replace(consumption=state.consumption._replace(group=group))


def join_group(
    state: State, member_id: int = groups.NO_MEMBER, owned: tuple[int, ...] = ()
) -> tuple[State, JoinResult]:
    """JoinGroup with `member_id` (-1: a new member, given the next id); `owned` is what
    a cooperative member consumes now. Kafka holds the response until the join
    completes: `waiting` says it has not."""
    group, error, member = groups.join(_group_world(state).group, member_id, owned, state.now_ms)
    state = _with_group(state, group)
    return state, join_outcome(state, member) if error == Errors.NONE else JoinResult(
        error, member_id, -1, -1, (), False
    )


def join_outcome(state: State, member_id: int) -> JoinResult:
    """What a JoinGroup of `member_id` that waited is answered now."""
    group = _group_world(state).group
    if groups.member_index(group, member_id) < 0:
        return JoinResult(Errors.UNKNOWN_MEMBER_ID, member_id, -1, -1, (), False)
    if group.state == PREPARING_REBALANCE:
        return JoinResult(Errors.NONE, member_id, -1, -1, (), True)
    everyone = tuple(m.member_id for m in group.members) if member_id == group.leader else ()
    return JoinResult(Errors.NONE, member_id, group.generation, group.leader, everyone, False)


def sync_group(
    model: ReplicationModel, state: State, member_id: int, generation: int
) -> tuple[State, SyncResult]:
    """SyncGroup: the leader computes the assignment (partition.assignment.strategy over
    every partition); a follower's answer waits (`waiting`) until the leader's."""
    group, result = groups.sync(
        _group_world(state).group,
        member_id,
        generation,
        model.config.partition_assignment_strategy,
        model.scope.partitions,
        state.now_ms,
    )
    return _with_group(state, group), result


def heartbeat(state: State, member_id: int, generation: int) -> tuple[State, Errors]:
    group, error = groups.heartbeat(_group_world(state).group, member_id, generation, state.now_ms)
    return _with_group(state, group), error


def leave_group(state: State, member_id: int) -> tuple[State, Errors]:
    group, error = groups.leave(_group_world(state).group, member_id, state.now_ms)
    return _with_group(state, group), error


def commit_offsets(
    state: State, member_id: int, generation: int, offsets: dict[int, int]
) -> tuple[State, Errors]:
    """OffsetCommit {partition: offset}; member -1 and generation -1 commit for an Empty
    group (a consumer that only stores offsets)."""
    group, error = groups.commit(
        _group_world(state).group, member_id, generation, tuple(sorted(offsets.items()))
    )
    return _with_group(state, group), error


def fetch_offsets(state: State) -> dict[int, int]:
    """OffsetFetch: the committed offset per partition, -1 for none."""
    return dict(enumerate(_group_world(state).group.offsets))


def delete_group(state: State) -> tuple[State, Errors]:
    group, error = groups.delete(_group_world(state).group)
    return _with_group(state, group), error


def expire_sessions(model: ReplicationModel, state: State) -> tuple[State, tuple[int, ...]]:
    """The coordinator's timers at `state.now_ms`: members whose session.timeout.ms
    passed are removed, and a join that waited longer than the rebalance timeout
    completes without the members that did not rejoin. Returns the removed ids."""
    config = model.config
    removed = tuple(
        m.member_id
        for m in _group_world(state).group.members
        if groups.session_expired(m, state.now_ms, config)
    )
    for member_id in removed:
        state = consumption.expire_session(state, member_id)
    if groups.rebalance_expired(state.consumption.group, state.now_ms, config):
        before = {m.member_id for m in state.consumption.group.members}
        state = consumption.expire_rebalance(state)
        after = {m.member_id for m in state.consumption.group.members}
        removed = (*removed, *sorted(before - after))
    return state, removed


def advance_clock(state: State, delta_ms: int) -> State:
    """The broker's clock moves by `delta_ms` (negative: set back, as a skewed clock
    can be); record timestamps stay as their producers stamped them."""
    return state._replace(now_ms=state.now_ms + delta_ms)


def run_retention(model: ReplicationModel, state: State, partition: int) -> tuple[State, int]:
    """One retention pass on `partition`'s leader; returns the new log start offset."""
    _group_world(state)
    state = consumption.run_retention(state, partition, model.config)
    return state, log_start_offset(state, partition)


def poll(model: ReplicationModel, state: State, consumer: int) -> tuple[State, PollResult]:
    """One poll by consumer process `consumer` of the scope's group (committed offsets,
    auto.offset.reset, records up to the HW), as the explorer's `poll` action."""
    _group_world(state)
    return consumption.poll(state, consumer, model.config)


def replicate(model: ReplicationModel, state: State, rounds_max: int = 50) -> State:
    """Let metadata and fetches flow until a whole round changes nothing: the quiet
    network a client sees between faults. Each round delivers metadata to every broker,
    sends every fetch it can and receives every response."""
    for _ in range(rounds_max):
        before = (state.replicas, state.brokers, state.controller, state.acked)
        for kind in ("deliver", "fetch", "handle_response"):
            for action in [a for a in model.enabled_actions(state) if a.kind == kind]:
                if action in model.enabled_actions(state):
                    state = model.step(state, action)
        if (state.replicas, state.brokers, state.controller, state.acked) == before:
            return state
    raise AssertionError(f"replication did not settle within {rounds_max} rounds")


def apply(model: ReplicationModel, state: State, *actions: Action) -> State:
    """Apply actions in order, each of which must be enabled (a test's script)."""
    for action in actions:
        enabled = model.enabled_actions(state)
        if action not in enabled:
            raise AssertionError(f"{action} is not enabled; enabled: {enabled}")
        state = model.step(state, action)
    return state
