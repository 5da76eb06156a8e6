"""The group coordinator's rules and the assignors (model/groups.py), driven through the
client-level calls of model/client.py where a whole protocol exchange is tested."""

import pytest

from model import client, groups
from model.config import Config, ConfigError
from model.errors import Errors
from model.machine import ReplicationModel, Scope
from model.state import (
    COMPLETING_REBALANCE,
    DEAD,
    EMPTY,
    PREPARING_REBALANCE,
    STABLE,
    Member,
)

ONE_BROKER = ("replication.factor=1", "min.insync.replicas=1")


def group_model(*settings: str, partitions: int = 2) -> ReplicationModel:
    scope = Scope(brokers=1, partitions=partitions, group_consumers=1, retention=True)
    return ReplicationModel(Config.parse([*ONE_BROKER, *settings]), scope)


# --- assignors ----------------------------------------------------------------------


def test_range_gives_consecutive_ranges_the_first_members_one_more():
    assert groups.range_assign((3, 7), 3) == ((0, 1), (2,))
    assert groups.range_assign((1, 2, 3), 2) == ((0,), (1,), ())
    assert groups.range_assign((), 4) == ()


def test_sticky_keeps_what_members_own_within_balance():
    # Member 0 owns everything; a newcomer takes only the excess, the highest partition.
    assert groups.sticky_assign(((0, 1, 2, 3), ()), 4) == ((0, 1), (2, 3))
    # Ownership that is already balanced survives whatever the ids say.
    assert groups.sticky_assign(((1, 3), (0, 2)), 4) == ((1, 3), (0, 2))
    # A partition claimed twice stays with the first claimant.
    assert groups.sticky_assign(((0,), (0, 1)), 2) == ((0,), (1,))


def test_cooperative_withholds_a_partition_that_moves_until_it_is_revoked():
    owned = ((0, 1), ())
    target = groups.sticky_assign(owned, 2)
    assert target == ((0,), (1,))
    first = groups.cooperative_adjust(owned, target)
    assert first == ((0,), ())  # p1 is revoked by member 0 before member 1 gets it
    assert groups.revoked_partitions((0, 1), first[0]) == (1,)
    second = groups.cooperative_adjust(((0,), ()), groups.sticky_assign(((0,), ()), 2))
    assert second == ((0,), (1,))


def test_assign_names_the_strategy():
    members = (Member(0, True, (0, 1), (), 0), Member(1, True, (), (), 0))
    assert groups.assign("range", members, 2) == ((0,), (1,))
    assert groups.assign("cooperative-sticky", members, 2) == ((0,), ())
    with pytest.raises(ValueError, match=r"unknown partition\.assignment\.strategy"):
        groups.assign("roundrobin", members, 2)


# --- the coordinator's states and fencing --------------------------------------------


def stable_with_one_member(m):
    s = m.initial_state()
    s, joined = client.join_group(s)
    assert (joined.error, joined.member_id, joined.generation, joined.leader) == (
        Errors.NONE,
        0,
        1,
        0,
    )
    assert s.consumption.group.state == COMPLETING_REBALANCE
    s, synced = client.sync_group(m, s, 0, 1)
    assert synced == groups.SyncResult(Errors.NONE, (0, 1), False)
    assert s.consumption.group.state == STABLE
    return s


def test_a_second_member_rebalances_and_the_first_is_fenced_by_generation():
    m = group_model()
    s = stable_with_one_member(m)
    s, second = client.join_group(s)
    assert second.waiting and s.consumption.group.state == PREPARING_REBALANCE
    s, error = client.heartbeat(s, 0, 1)
    assert error == Errors.REBALANCE_IN_PROGRESS
    # Still generation 1 while preparing: its commit is taken.
    s, error = client.commit_offsets(s, 0, 1, {0: 5})
    assert error == Errors.NONE and client.fetch_offsets(s) == {0: 5, 1: -1}
    s, first = client.join_group(s, 0)
    assert (first.generation, first.leader, first.members) == (2, 0, (0, 1))
    assert client.join_outcome(s, 1).generation == 2
    # Generation 2 is completing: a commit waits for the assignment, an old one is fenced.
    s, error = client.commit_offsets(s, 0, 2, {0: 6})
    assert error == Errors.REBALANCE_IN_PROGRESS
    s, error = client.commit_offsets(s, 0, 1, {0: 6})
    assert error == Errors.ILLEGAL_GENERATION
    s, waiting = client.sync_group(m, s, 1, 2)
    assert waiting.waiting
    s, leader = client.sync_group(m, s, 0, 2)
    assert leader.assignment == (0,)
    s, follower = client.sync_group(m, s, 1, 2)
    assert follower == groups.SyncResult(Errors.NONE, (1,), False)
    s, error = client.commit_offsets(s, 1, 2, {1: 3})
    assert error == Errors.NONE and client.fetch_offsets(s) == {0: 5, 1: 3}
    s, error = client.heartbeat(s, 1, 1)
    assert error == Errors.ILLEGAL_GENERATION


def test_unknown_members_and_leaving():
    m = group_model()
    s = stable_with_one_member(m)
    s, error = client.commit_offsets(s, 9, 1, {0: 1})
    assert error == Errors.UNKNOWN_MEMBER_ID
    s, joined = client.join_group(s, 9)
    assert joined.error == Errors.UNKNOWN_MEMBER_ID
    s, error = client.leave_group(s, 0)
    assert error == Errors.NONE
    group = s.consumption.group
    assert (group.state, group.generation, group.members) == (EMPTY, 2, ())
    s, error = client.heartbeat(s, 0, 1)
    assert error == Errors.UNKNOWN_MEMBER_ID
    # An Empty group stores offsets for a consumer outside any generation.
    s, error = client.commit_offsets(s, -1, -1, {1: 4})
    assert error == Errors.NONE and client.fetch_offsets(s)[1] == 4


def test_session_timeout_removes_a_silent_member_and_rebalances_the_rest():
    m = group_model("session.timeout.ms=10000")
    s = stable_with_one_member(m)
    s, _ = client.join_group(s)
    s, _ = client.join_group(s, 0)
    s, _ = client.sync_group(m, s, 0, 2)
    s, _ = client.sync_group(m, s, 1, 2)
    s = client.advance_clock(s, 6000)
    s, error = client.heartbeat(s, 1, 2)
    assert error == Errors.NONE
    s = client.advance_clock(s, 4000)
    s, removed = client.expire_sessions(m, s)
    assert removed == (0,)  # member 1 heartbeated 4 s ago, member 0 10 s ago
    assert s.consumption.group.state == PREPARING_REBALANCE
    s, error = client.heartbeat(s, 1, 2)
    assert error == Errors.REBALANCE_IN_PROGRESS
    s, rejoined = client.join_group(s, 1)
    assert (rejoined.generation, rejoined.leader, rejoined.members) == (3, 1, (1,))


def test_a_rebalance_that_times_out_drops_the_members_that_did_not_rejoin():
    m = group_model("max.poll.interval.ms=20000", "session.timeout.ms=60000")
    s = stable_with_one_member(m)
    s, second = client.join_group(s)
    s = client.advance_clock(s, 19_999)
    s, removed = client.expire_sessions(m, s)
    assert removed == () and s.consumption.group.state == PREPARING_REBALANCE
    s = client.advance_clock(s, 1)
    s, removed = client.expire_sessions(m, s)
    assert removed == (0,)
    assert client.join_outcome(s, second.member_id).generation == 2


def test_delete_needs_an_empty_group_and_a_dead_group_refuses_everything():
    m = group_model()
    s = stable_with_one_member(m)
    s, error = client.delete_group(s)
    assert error == Errors.NON_EMPTY_GROUP
    s, _ = client.commit_offsets(s, 0, 1, {0: 2})
    s, _ = client.leave_group(s, 0)
    s, error = client.delete_group(s)
    assert error == Errors.NONE and s.consumption.group.state == DEAD
    assert client.fetch_offsets(s) == {0: -1, 1: -1}
    s, joined = client.join_group(s)
    assert joined.error == Errors.COORDINATOR_NOT_AVAILABLE
    s, error = client.commit_offsets(s, -1, -1, {0: 1})
    assert error == Errors.COORDINATOR_NOT_AVAILABLE
    _, error = client.delete_group(s)
    assert error == Errors.GROUP_ID_NOT_FOUND


def test_cooperative_protocol_moves_a_partition_in_two_rebalances():
    m = group_model("partition.assignment.strategy=cooperative-sticky")
    s = stable_with_one_member(m)
    s, _ = client.join_group(s)
    s, first = client.join_group(s, 0, owned=(0, 1))
    s, leader = client.sync_group(m, s, 0, first.generation)
    s, follower = client.sync_group(m, s, 1, first.generation)
    assert (leader.assignment, follower.assignment) == ((0,), ())
    # Member 0 revoked p1 and rejoins; member 1 learns of the rebalance by heartbeat.
    s, again = client.join_group(s, 0, owned=(0,))
    s, error = client.heartbeat(s, 1, first.generation)
    assert again.waiting and error == Errors.REBALANCE_IN_PROGRESS
    s, second = client.join_group(s, 1, owned=())
    s, leader = client.sync_group(m, s, 0, second.generation)
    s, follower = client.sync_group(m, s, 1, second.generation)
    assert (leader.assignment, follower.assignment) == ((0,), (1,))


def test_group_calls_need_a_model_with_groups():
    m = ReplicationModel(Config.parse(list(ONE_BROKER)), Scope(brokers=1))
    with pytest.raises(ValueError, match="no consumer groups"):
        client.join_group(m.initial_state())


def test_timers():
    config = Config.parse(["session.timeout.ms=100", "max.poll.interval.ms=500"])
    member = Member(0, True, (), (), 1000)
    assert not groups.session_expired(member, 1099, config)
    assert groups.session_expired(member, 1100, config)
    assert not groups.poll_interval_expired(1000, 1499, config)
    assert groups.poll_interval_expired(1000, 1500, config)


def test_the_commit_discipline_and_strategy_keys_are_validated():
    config = Config.parse(["replog.consumer.commit=before-processing"])
    assert config.consumer_commit == "before-processing"
    assert Config().consumer_commit == "after-processing"
    with pytest.raises(ConfigError, match=r"bad value 'later' for replog\.consumer\.commit"):
        Config.parse(["replog.consumer.commit=later"])
    with pytest.raises(ConfigError, match=r"partition\.assignment\.strategy"):
        Config.parse(["partition.assignment.strategy=sticky"])
