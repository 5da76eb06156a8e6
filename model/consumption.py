"""Consumer processes in a group, and retention, as transitions on `State.consumption`.

Each consumer is an application loop over the Java client's API: poll, process the
records, and commit (after processing: at-least-once; before: at-most-once, by
`replog.consumer.commit`), with the client's background heartbeats, its poll timer
(max.poll.interval.ms) and the rebalance protocol of `partition.assignment.strategy`
(eager `range`: revoke everything before rejoining; `cooperative-sticky`: KIP-429's
revoke-then-assign). The explorer's actions and the client-level calls of
`model.client` are the same functions. Rules live in `model.groups` and
`model.retention`; this module only wires them to the state.
"""

from __future__ import annotations

from typing import NamedTuple

from model import groups, retention
from model.config import Config
from model.errors import Errors
from model.state import (
    COMPLETING_REBALANCE,
    FAILED,
    JOINING,
    MEMBER,
    NO_LEADER,
    STABLE,
    SYNCING,
    UNJOINED,
    Consumer,
    Consumption,
    GroupBudget,
    PartitionLog,
    Reset,
    State,
)

EAGER = "range"


def leader_of(state: State, partition: int) -> int:
    """The live broker that believes it leads `partition` at the highest epoch, or -1."""
    best, best_epoch = NO_LEADER, -1
    for b, broker in enumerate(state.brokers):
        view = broker.views[partition]
        if (
            broker.alive
            and view is not None
            and view.leader == b
            and view.leader_epoch > best_epoch
        ):
            best, best_epoch = b, view.leader_epoch
    return best


def fresh_consumer(partitions: int, now_ms: int) -> Consumer:
    return Consumer(
        True,
        UNJOINED,
        groups.NO_MEMBER,
        groups.NO_GENERATION,
        (),
        (-1,) * partitions,
        (),
        False,
        now_ms,
    )


def initial(consumers: int, partitions: int, committed_at_start: bool = False) -> Consumption:
    """No member yet; with `committed_at_start` the group has offset 0 committed on
    every partition (as an operator's --reset-offsets --to-earliest leaves it)."""
    group = groups.new_group(partitions)
    if committed_at_start:
        group = group._replace(offsets=(0,) * partitions)
    return Consumption(
        group=group,
        consumers=tuple(fresh_consumer(partitions, 0) for _ in range(consumers)),
        logs=(retention.EMPTY_LOG,) * partitions,
        delivered=((),) * partitions,
        processed=((),) * partitions,
        reprocessed=(),
        starts=(-1,) * partitions,
        resets=(),
        budget=GroupBudget(),
    )


def _at(items: tuple, index: int, value: object) -> tuple:
    out = list(items)
    out[index] = value
    return tuple(out)


def _with(state: State, world: Consumption) -> State:
    return state._replace(consumption=world)


def _set_consumer(world: Consumption, c: int, consumer: Consumer) -> Consumption:
    return world._replace(consumers=_at(world.consumers, c, consumer))


# --- the log side ---------------------------------------------------------------------


def record_append(
    state: State, partition: int, offset: int, timestamp_ms: int, size_bytes: int, config: Config
) -> State:
    """The leader appended a record: its segment layout follows (and may roll)."""
    world = state.consumption
    log = retention.append(world.logs[partition], offset, timestamp_ms, size_bytes, config)
    return _with(state, world._replace(logs=_at(world.logs, partition, log)))


def partition_bounds(state: State, partition: int) -> tuple[int, int, int, int]:
    """(leader, log start, high watermark, log end) of a partition, leader -1 if none."""
    leader = leader_of(state, partition)
    if leader == NO_LEADER:
        return NO_LEADER, -1, -1, -1
    replica = state.replicas[leader][partition]
    log_start = state.consumption.logs[partition].log_start
    return leader, log_start, replica.hw, len(replica.log)


def retention_deletes(state: State, partition: int, config: Config) -> int:
    """How many segments a retention pass on `partition` would delete now."""
    leader, _, hw, _ = partition_bounds(state, partition)
    if leader == NO_LEADER:
        return 0
    log = state.consumption.logs[partition]
    return retention.deletable_segments(log, hw, state.now_ms, config)


def run_retention(state: State, partition: int, config: Config) -> State:
    """The partition leader's retention pass (LogManager's cleanup timer)."""
    leader, _, hw, _ = partition_bounds(state, partition)
    if leader == NO_LEADER:
        return state
    world = state.consumption
    log: PartitionLog = retention.run_retention(world.logs[partition], hw, state.now_ms, config)
    return _with(state, world._replace(logs=_at(world.logs, partition, log)))


# --- group membership -------------------------------------------------------------------


def _propagate(world: Consumption) -> Consumption:
    """Deliver JoinGroup responses: once a join completes, every consumer waiting in it
    learns its generation (or, removed meanwhile, UNKNOWN_MEMBER_ID)."""
    group = world.group
    consumers = list(world.consumers)
    for c, consumer in enumerate(consumers):
        if not consumer.alive or consumer.phase != JOINING:
            continue
        if groups.member_index(group, consumer.member_id) < 0:
            consumers[c] = _lose_partitions(consumer, ())._replace(
                phase=UNJOINED, member_id=groups.NO_MEMBER, generation=groups.NO_GENERATION
            )
        elif (
            group.state in (COMPLETING_REBALANCE, STABLE) and group.generation > consumer.generation
        ):
            consumers[c] = consumer._replace(phase=SYNCING, generation=group.generation)
    return world._replace(consumers=tuple(consumers))


def _lose_partitions(consumer: Consumer, keep: tuple[int, ...]) -> Consumer:
    """Give up every owned partition not in `keep`: its position and polled records go."""
    positions = tuple(pos if p in keep else -1 for p, pos in enumerate(consumer.positions))
    buffer = tuple(entry for entry in consumer.buffer if entry[0] in keep)
    owned = tuple(p for p in consumer.owned if p in keep)
    return consumer._replace(owned=owned, positions=positions, buffer=buffer)


def join(state: State, c: int, config: Config) -> tuple[State, Errors]:
    """The consumer (re)joins: eager protocols revoke everything first; cooperative
    members report what they own and keep consuming it through the rebalance."""
    world = state.consumption
    consumer = world.consumers[c]
    if config.partition_assignment_strategy == EAGER:
        consumer = _lose_partitions(consumer, ())
    group, error, member_id = groups.join(
        world.group, consumer.member_id, consumer.owned, state.now_ms
    )
    if error == Errors.UNKNOWN_MEMBER_ID:
        consumer = _lose_partitions(consumer, ())._replace(
            member_id=groups.NO_MEMBER, generation=groups.NO_GENERATION, phase=UNJOINED
        )
    elif error == Errors.NONE:
        consumer = consumer._replace(member_id=member_id, phase=JOINING)
    world = _set_consumer(world._replace(group=group), c, consumer)
    return _with(state, _propagate(world)), error


def sync(state: State, c: int, config: Config, partitions: int) -> tuple[State, Errors]:
    """SyncGroup; with its assignment the consumer starts (or keeps) consuming. Under
    cooperative-sticky a member that had to revoke something rejoins at once."""
    world = state.consumption
    consumer = world.consumers[c]
    group, result = groups.sync(
        world.group,
        consumer.member_id,
        consumer.generation,
        config.partition_assignment_strategy,
        partitions,
        state.now_ms,
    )
    if result.error != Errors.NONE:
        consumer = _after_group_error(consumer, result.error)
    elif not result.waiting:
        revoked = groups.revoked_partitions(consumer.owned, result.assignment)
        consumer = _lose_partitions(consumer, result.assignment)
        consumer = consumer._replace(owned=result.assignment, phase=UNJOINED if revoked else MEMBER)
    return _with(state, _set_consumer(world._replace(group=group), c, consumer)), result.error


def _after_group_error(consumer: Consumer, error: Errors) -> Consumer:
    """REBALANCE_IN_PROGRESS: rejoin (eager revokes on rejoining). A fenced or removed
    member has lost its partitions (onPartitionsLost); a removed one needs a new id."""
    if error == Errors.REBALANCE_IN_PROGRESS:
        return consumer._replace(phase=UNJOINED)
    if error in (Errors.ILLEGAL_GENERATION, Errors.UNKNOWN_MEMBER_ID):
        consumer = _lose_partitions(consumer, ())._replace(phase=UNJOINED)
        if error == Errors.UNKNOWN_MEMBER_ID:
            consumer = consumer._replace(
                member_id=groups.NO_MEMBER, generation=groups.NO_GENERATION
            )
        return consumer
    return consumer


def heartbeat(state: State, c: int) -> tuple[State, Errors]:
    world = state.consumption
    consumer = world.consumers[c]
    group, error = groups.heartbeat(
        world.group, consumer.member_id, consumer.generation, state.now_ms
    )
    consumer = _after_group_error(consumer, error)
    return _with(state, _set_consumer(world._replace(group=group), c, consumer)), error


def heartbeat_changes(state: State, c: int) -> bool:
    """Whether a heartbeat now would change anything (the explorer skips the rest)."""
    after, _ = heartbeat(state, c)
    return after.consumption != state.consumption


def leave(state: State, c: int) -> tuple[State, Errors]:
    """The application closes the consumer: LeaveGroup, and the process ends."""
    world = state.consumption
    consumer = world.consumers[c]
    group, error = groups.leave(world.group, consumer.member_id, state.now_ms)
    closed = _lose_partitions(consumer, ())._replace(alive=False, buffer=(), must_commit=False)
    world = world._replace(
        group=group, budget=world.budget._replace(leaves=world.budget.leaves + 1)
    )
    return _with(state, _propagate(_set_consumer(world, c, closed))), error


def poll_timeout(state: State, c: int) -> State:
    """max.poll.interval.ms passed without a poll: the client leaves the group and
    forgets its member id; the application, still busy, keeps its polled records."""
    world = state.consumption
    consumer = world.consumers[c]
    group, _ = groups.leave(world.group, consumer.member_id, state.now_ms)
    buffer = consumer.buffer
    consumer = _lose_partitions(consumer, ())._replace(
        phase=FAILED if consumer.phase == FAILED else UNJOINED,
        member_id=groups.NO_MEMBER,
        generation=groups.NO_GENERATION,
        buffer=buffer,
    )
    return _with(state, _propagate(_set_consumer(world._replace(group=group), c, consumer)))


def crash(state: State, c: int) -> State:
    """The consumer process dies (no LeaveGroup): polled records are lost with it."""
    world = state.consumption
    dead = world.consumers[c]._replace(
        alive=False,
        owned=(),
        buffer=(),
        must_commit=False,
        positions=(-1,) * len(world.logs),
        phase=UNJOINED,
    )
    budget = world.budget._replace(consumer_crashes=world.budget.consumer_crashes + 1)
    return _with(state, _set_consumer(world._replace(budget=budget), c, dead))


def restart(state: State, c: int) -> State:
    """A new incarnation: a new member, positions from the committed offsets."""
    world = state.consumption
    return _with(state, _set_consumer(world, c, fresh_consumer(len(world.logs), state.now_ms)))


def expire_session(state: State, member_id: int) -> State:
    world = state.consumption
    group = groups.remove_member(world.group, member_id, state.now_ms)
    return _with(state, _propagate(world._replace(group=group)))


def expire_rebalance(state: State) -> State:
    world = state.consumption
    group = groups.rebalance_timeout(world.group, state.now_ms)
    return _with(state, _propagate(world._replace(group=group)))


# --- poll, process, commit --------------------------------------------------------------


class PollResult(NamedTuple):
    error: Errors  # OFFSET_OUT_OF_RANGE under auto.offset.reset=none
    records: tuple[tuple[int, int, int], ...]  # (partition, offset, value)
    resets: tuple[Reset, ...]  # the resets this poll applied


def _reset(
    world: Consumption,
    c: int,
    p: int,
    from_offset: int,
    bounds: tuple[int, int, int, int],
    config: Config,
) -> tuple[Consumption, Reset]:
    _, log_start, hw, _ = bounds
    error, to = retention.reset_offset(config.auto_offset_reset, log_start, hw)
    event = Reset(
        p,
        c,
        from_offset,
        to if error == Errors.NONE else -1,
        config.auto_offset_reset,
        log_start,
        hw,
    )
    return world._replace(resets=(*world.resets, event)), event


def poll(state: State, c: int, config: Config) -> tuple[State, PollResult]:
    """KafkaConsumer.poll over the owned partitions, in order: a partition without a
    position starts at the group's committed offset, or by auto.offset.reset; a
    position out of the log's range is reset by auto.offset.reset (`none`: the error
    reaches the application, which stops); then records up to the HW, at most
    max.poll.records in all. A poll that moved a position is to be committed (the
    application's loop commits after every such poll, records or not)."""
    world = state.consumption
    consumer = world.consumers[c]
    positions = list(consumer.positions)
    delivered = list(world.delivered)
    starts = list(world.starts)
    buffer: list[tuple[int, int]] = []
    records: list[tuple[int, int, int]] = []
    resets: list[Reset] = []
    error = Errors.NONE
    for p in consumer.owned:
        bounds = partition_bounds(state, p)
        leader, log_start, hw, leo = bounds
        if leader == NO_LEADER:
            continue
        position = positions[p]
        if position < 0:
            position = world.group.offsets[p]
            if position < 0:
                world, event = _reset(world, c, p, -1, bounds, config)
                resets.append(event)
                position = event.to_offset
        if position >= 0 and not retention.fetch_in_range(log_start, leo, position):
            world, event = _reset(world, c, p, position, bounds, config)
            resets.append(event)
            position = event.to_offset
        if position < 0:
            error = Errors.OFFSET_OUT_OF_RANGE
            break
        if starts[p] < 0:
            starts[p] = position
        room = config.max_poll_records - len(buffer)
        end = min(hw, position + room)
        log = state.replicas[leader][p].log
        for offset in range(position, end):
            buffer.append((p, offset))
            records.append((p, offset, log[offset][1]))
        if end > position:
            delivered[p] = tuple(sorted({*delivered[p], *range(position, end)}))
            position = end
        positions[p] = position
    budget = world.budget._replace(polls=world.budget.polls + 1)
    if error != Errors.NONE:
        consumer = consumer._replace(phase=FAILED, polled_ms=state.now_ms)
        world = world._replace(budget=budget, starts=tuple(starts))
        return _with(state, _set_consumer(world, c, consumer)), PollResult(error, (), tuple(resets))
    consumer = consumer._replace(
        positions=tuple(positions),
        buffer=tuple(buffer),
        must_commit=consumer.must_commit or tuple(positions) != consumer.positions,
        polled_ms=state.now_ms,
    )
    world = world._replace(delivered=tuple(delivered), starts=tuple(starts), budget=budget)
    return _with(state, _set_consumer(world, c, consumer)), PollResult(
        Errors.NONE, tuple(records), tuple(resets)
    )


def process(state: State, c: int) -> State:
    """The application handles every polled record; one handled before is recorded."""
    world = state.consumption
    consumer = world.consumers[c]
    processed = list(world.processed)
    again = list(world.reprocessed)
    for p, offset in consumer.buffer:
        if offset in processed[p]:
            if (p, offset) not in again:
                again.append((p, offset))
        else:
            processed[p] = tuple(sorted((*processed[p], offset)))
    world = world._replace(processed=tuple(processed), reprocessed=tuple(sorted(again)))
    return _with(state, _set_consumer(world, c, consumer._replace(buffer=())))


def commit(state: State, c: int, config: Config) -> tuple[State, Errors]:
    """commitSync of the positions of the owned partitions, with the consumer's member
    id and generation (none: it fails in the client, as UNKNOWN_MEMBER_ID here): a
    fenced commit fails (and a member that learns it was removed
    or fenced gives up its partitions); an at-most-once consumer then drops what it
    polled, since it must not process what it could not commit."""
    world = state.consumption
    consumer = world.consumers[c]
    offsets = tuple(
        (p, consumer.positions[p]) for p in consumer.owned if consumer.positions[p] >= 0
    )
    if consumer.generation < 0:
        # A subscribed consumer outside any generation fails the commit itself
        # (CommitFailedException) rather than commit as a group that only stores offsets.
        group, error = world.group, Errors.UNKNOWN_MEMBER_ID
    else:
        group, error = groups.commit(world.group, consumer.member_id, consumer.generation, offsets)
    consumer = consumer._replace(must_commit=False)
    if error != Errors.NONE:
        if config.consumer_commit == "before-processing":
            consumer = consumer._replace(buffer=())
        consumer = _after_group_error(consumer, error)
    return _with(state, _set_consumer(world._replace(group=group), c, consumer)), error
