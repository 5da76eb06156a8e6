"""The group coordinator and the assignors, one pure function per rule.

The coordinator follows Kafka's classic protocol (GroupCoordinator, GroupMetadata): a
group is Empty, PreparingRebalance (waiting for every member to rejoin),
CompletingRebalance (a new generation, waiting for the leader's SyncGroup), Stable, or
Dead (deleted). JoinGroup, SyncGroup, Heartbeat, LeaveGroup and OffsetCommit answer
with Kafka's errors, so a member of an older generation is fenced (ILLEGAL_GENERATION)
and a removed one learns it (UNKNOWN_MEMBER_ID). Simplifications, each invisible to a
single client: a new member is given its id in its first JoinGroup (no
MEMBER_ID_REQUIRED round trip, KIP-394), there is no static membership, and a known
member's JoinGroup always starts a rebalance outside PreparingRebalance.
"""

from __future__ import annotations

from typing import NamedTuple

from model.config import Config
from model.errors import Errors
from model.state import (
    COMPLETING_REBALANCE,
    DEAD,
    EMPTY,
    PREPARING_REBALANCE,
    STABLE,
    Group,
    Member,
)

NO_MEMBER = -1
NO_GENERATION = -1


def new_group(partitions: int) -> Group:
    return Group(EMPTY, 0, NO_MEMBER, (), 0, -1, (-1,) * partitions)


def member_index(group: Group, member_id: int) -> int:
    """Where `member_id` is in `group.members`, -1 if it is not a member."""
    for index, member in enumerate(group.members):
        if member.member_id == member_id:
            return index
    return -1


# --- assignors (the leader runs one at SyncGroup) -----------------------------------


def range_assign(member_ids: tuple[int, ...], partitions: int) -> tuple[tuple[int, ...], ...]:
    """RangeAssignor for one topic: members in id order each take a consecutive range,
    the first `partitions % members` one partition more."""
    count = len(member_ids)
    if count == 0:
        return ()
    quota, extra = divmod(partitions, count)
    out, start = [], 0
    for index in range(count):
        size = quota + (1 if index < extra else 0)
        out.append(tuple(range(start, start + size)))
        start += size
    return tuple(out)


def sticky_assign(
    owned: tuple[tuple[int, ...], ...], partitions: int
) -> tuple[tuple[int, ...], ...]:
    """The sticky target (AbstractStickyAssignor's constrained assignment): balanced
    (sizes differ by at most one), each member keeping as many of the partitions it owns
    as balance allows; the rest go, in partition order, to the member with the fewest
    (ties: the earlier member). `owned` is per member, in member id order; a partition
    claimed by two members stays with the first."""
    count = len(owned)
    if count == 0:
        return ()
    quota, extra = divmod(partitions, count)
    claimed: set[int] = set()
    kept: list[list[int]] = []
    at_max = 0
    for claims in owned:
        valid = [p for p in sorted(claims) if p < partitions and p not in claimed]
        limit = quota + 1 if at_max < extra else quota
        keep = valid[:limit]
        if len(keep) == quota + 1:
            at_max += 1
        claimed.update(keep)
        kept.append(keep)
    for p in range(partitions):
        if p not in claimed:
            fewest = min(range(count), key=lambda index: (len(kept[index]), index))
            kept[fewest].append(p)
    return tuple(tuple(sorted(k)) for k in kept)


def cooperative_adjust(
    owned: tuple[tuple[int, ...], ...], target: tuple[tuple[int, ...], ...]
) -> tuple[tuple[int, ...], ...]:
    """KIP-429's first phase: a partition moving from one member to another is left out
    of the new owner's assignment (and is not in the old owner's): the old owner revokes
    it, rejoins, and the follow-up rebalance hands it over. Partitions that stay are
    never revoked."""
    owner = {p: index for index, claims in enumerate(owned) for p in claims}
    return tuple(
        tuple(p for p in assigned if owner.get(p, index) == index)
        for index, assigned in enumerate(target)
    )


def assign(
    strategy: str, members: tuple[Member, ...], partitions: int
) -> tuple[tuple[int, ...], ...]:
    """The assignment per member (in `members` order) under partition.assignment.strategy."""
    if strategy == "range":
        return range_assign(tuple(m.member_id for m in members), partitions)
    if strategy == "cooperative-sticky":
        owned = tuple(m.owned for m in members)
        return cooperative_adjust(owned, sticky_assign(owned, partitions))
    raise ValueError(f"unknown partition.assignment.strategy {strategy!r}")


def revoked_partitions(owned: tuple[int, ...], assignment: tuple[int, ...]) -> tuple[int, ...]:
    """What a member must give up on receiving `assignment`: under the eager protocol it
    gave up everything before joining, under the cooperative one only what moved."""
    return tuple(p for p in owned if p not in assignment)


# --- timers -------------------------------------------------------------------------


def session_expired(member: Member, now_ms: int, config: Config) -> bool:
    """The coordinator's heartbeat deadline (DelayedHeartbeat) fires session.timeout.ms
    after the last heartbeat."""
    return now_ms - member.heartbeat_ms >= config.session_timeout_ms


def poll_interval_expired(polled_ms: int, now_ms: int, config: Config) -> bool:
    """The client's poll timer: max.poll.interval.ms without a poll and the consumer
    leaves the group (its heartbeat thread sends LeaveGroup)."""
    return now_ms - polled_ms >= config.max_poll_interval_ms


def rebalance_expired(group: Group, now_ms: int, config: Config) -> bool:
    """The join phase waits for every member at most the rebalance timeout, which the
    Java client sets to max.poll.interval.ms."""
    return (
        group.state == PREPARING_REBALANCE
        and now_ms - group.rebalance_started_ms >= config.max_poll_interval_ms
    )


# --- state changes --------------------------------------------------------------------


def prepare_rebalance(group: Group, now_ms: int) -> Group:
    """Start a rebalance: every member must rejoin (no-op while one is under way)."""
    if group.state == PREPARING_REBALANCE:
        return group
    members = tuple(m._replace(rejoined=False) for m in group.members)
    return group._replace(state=PREPARING_REBALANCE, members=members, rebalance_started_ms=now_ms)


def try_complete_join(group: Group) -> Group:
    """Once every member has rejoined: the next generation (Empty if nobody is left),
    CompletingRebalance, the old leader kept if it is still a member."""
    if group.state != PREPARING_REBALANCE or not all(m.rejoined for m in group.members):
        return group
    members = tuple(m._replace(assignment=()) for m in group.members)
    if not members:
        return group._replace(
            state=EMPTY,
            generation=group.generation + 1,
            leader=NO_MEMBER,
            members=(),
            rebalance_started_ms=-1,
        )
    ids = [m.member_id for m in members]
    leader = group.leader if group.leader in ids else ids[0]
    return group._replace(
        state=COMPLETING_REBALANCE,
        generation=group.generation + 1,
        leader=leader,
        members=members,
        rebalance_started_ms=-1,
    )


def remove_member(group: Group, member_id: int, now_ms: int) -> Group:
    """A member leaves (LeaveGroup) or its session expires: the others rebalance."""
    index = member_index(group, member_id)
    assert index >= 0, "only a member can be removed"
    members = group.members[:index] + group.members[index + 1 :]
    leader = group.leader if group.leader != member_id else NO_MEMBER
    group = group._replace(members=members, leader=leader)
    if group.state in (STABLE, COMPLETING_REBALANCE):
        group = prepare_rebalance(group, now_ms)
    return try_complete_join(group)


def join(
    group: Group, member_id: int, owned: tuple[int, ...], now_ms: int
) -> tuple[Group, Errors, int]:
    """JoinGroup: (group, error, member id). A new member (id -1) gets the next id."""
    if group.state == DEAD:
        return group, Errors.COORDINATOR_NOT_AVAILABLE, member_id
    if member_id == NO_MEMBER:
        member_id = group.next_member_id
        group = group._replace(next_member_id=member_id + 1)
        group = prepare_rebalance(group, now_ms)
        member = Member(member_id, True, tuple(sorted(owned)), (), now_ms)
        members = tuple(sorted((*group.members, member)))
        return try_complete_join(group._replace(members=members)), Errors.NONE, member_id
    index = member_index(group, member_id)
    if index < 0:
        return group, Errors.UNKNOWN_MEMBER_ID, member_id
    group = prepare_rebalance(group, now_ms)
    member = group.members[index]._replace(
        rejoined=True, owned=tuple(sorted(owned)), heartbeat_ms=now_ms
    )
    members = (*group.members[:index], member, *group.members[index + 1 :])
    return try_complete_join(group._replace(members=members)), Errors.NONE, member_id


def rebalance_timeout(group: Group, now_ms: int) -> Group:
    """The join phase ran out of time: members that did not rejoin are removed."""
    members = tuple(m for m in group.members if m.rejoined)
    leader = group.leader if any(m.member_id == group.leader for m in members) else NO_MEMBER
    return try_complete_join(group._replace(members=members, leader=leader))


def _validate_member(group: Group, member_id: int, generation: int) -> Errors:
    if group.state == DEAD:
        return Errors.COORDINATOR_NOT_AVAILABLE
    if member_index(group, member_id) < 0:
        return Errors.UNKNOWN_MEMBER_ID
    if generation != group.generation:
        return Errors.ILLEGAL_GENERATION
    return Errors.NONE


class SyncResult(NamedTuple):
    error: Errors
    assignment: tuple[int, ...]
    waiting: bool  # a follower's SyncGroup waits for the leader's


def sync(
    group: Group, member_id: int, generation: int, strategy: str, partitions: int, now_ms: int
) -> tuple[Group, SyncResult]:
    """SyncGroup: the leader's (it runs the assignor) makes the group Stable; a
    follower's is answered once the group is Stable."""
    error = _validate_member(group, member_id, generation)
    if error == Errors.NONE and group.state == PREPARING_REBALANCE:
        error = Errors.REBALANCE_IN_PROGRESS
    if error == Errors.NONE and group.state == EMPTY:
        error = Errors.UNKNOWN_MEMBER_ID
    if error != Errors.NONE:
        return group, SyncResult(error, (), False)
    group = _heartbeat_seen(group, member_id, now_ms)
    if group.state == COMPLETING_REBALANCE:
        if member_id != group.leader:
            return group, SyncResult(Errors.NONE, (), True)
        assignments = assign(strategy, group.members, partitions)
        members = tuple(
            m._replace(assignment=a) for m, a in zip(group.members, assignments, strict=True)
        )
        group = group._replace(state=STABLE, members=members)
    member = group.members[member_index(group, member_id)]
    return group, SyncResult(Errors.NONE, member.assignment, False)


def _heartbeat_seen(group: Group, member_id: int, now_ms: int) -> Group:
    index = member_index(group, member_id)
    member = group.members[index]._replace(heartbeat_ms=now_ms)
    return group._replace(members=(*group.members[:index], member, *group.members[index + 1 :]))


def heartbeat(group: Group, member_id: int, generation: int, now_ms: int) -> tuple[Group, Errors]:
    """Heartbeat: keeps the session; REBALANCE_IN_PROGRESS tells a member to rejoin."""
    error = _validate_member(group, member_id, generation)
    if error != Errors.NONE:
        return group, error
    if group.state == EMPTY:
        return group, Errors.UNKNOWN_MEMBER_ID
    group = _heartbeat_seen(group, member_id, now_ms)
    if group.state == PREPARING_REBALANCE:
        return group, Errors.REBALANCE_IN_PROGRESS
    return group, Errors.NONE


def leave(group: Group, member_id: int, now_ms: int) -> tuple[Group, Errors]:
    if group.state == DEAD:
        return group, Errors.COORDINATOR_NOT_AVAILABLE
    if member_index(group, member_id) < 0:
        return group, Errors.UNKNOWN_MEMBER_ID
    return remove_member(group, member_id, now_ms), Errors.NONE


def commit_error(group: Group, member_id: int, generation: int) -> Errors:
    """Whether OffsetCommit is accepted (GroupCoordinator.handleCommitOffsets): a group
    that only stores offsets (Empty, generation -1) takes any commit; otherwise the
    member and its generation must be current, and not while CompletingRebalance."""
    if group.state == DEAD:
        return Errors.COORDINATOR_NOT_AVAILABLE
    if generation < 0 and member_id == NO_MEMBER and group.state == EMPTY:
        return Errors.NONE
    error = _validate_member(group, member_id, generation)
    if error != Errors.NONE:
        return error
    if group.state == COMPLETING_REBALANCE:
        return Errors.REBALANCE_IN_PROGRESS
    return Errors.NONE


def commit(
    group: Group, member_id: int, generation: int, offsets: tuple[tuple[int, int], ...]
) -> tuple[Group, Errors]:
    """OffsetCommit of (partition, offset) pairs, all or nothing."""
    error = commit_error(group, member_id, generation)
    if error != Errors.NONE:
        return group, error
    committed = list(group.offsets)
    for partition, offset in offsets:
        if not 0 <= partition < len(committed):
            return group, Errors.UNKNOWN_TOPIC_OR_PARTITION
        committed[partition] = offset
    return group._replace(offsets=tuple(committed)), Errors.NONE


def delete(group: Group) -> tuple[Group, Errors]:
    """DeleteGroups: only an Empty group can go (Dead); its offsets go with it."""
    if group.state == DEAD:
        return group, Errors.GROUP_ID_NOT_FOUND
    if group.state != EMPTY:
        return group, Errors.NON_EMPTY_GROUP
    return group._replace(state=DEAD, offsets=(-1,) * len(group.offsets)), Errors.NONE
