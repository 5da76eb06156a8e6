"""The group state machine (impl/broker/groups.py) step by step, with explicit time, and
the coordinator's placement rule and record codec."""

from __future__ import annotations

import pytest

from impl.broker.group_coordinator import java_string_hash, offsets_partition_for
from impl.broker.groups import WAIT, Group, GroupState, JoinRequest, JoinResult
from impl.client.assignors import MemberSubscription, assign
from impl.protocol import group_data
from model.errors import Errors

SESSION_MS = 10_000
REBALANCE_MS = 30_000


def request(member_id: str = "", protocols: tuple[str, ...] = ("range",)) -> JoinRequest:
    return JoinRequest(
        member_id,
        None,
        "client",
        "",
        SESSION_MS,
        REBALANCE_MS,
        "consumer",
        [(name, name.encode()) for name in protocols],
    )


def join_new(group: Group, new_id: str, now_ms: int) -> JoinResult | object:
    """KIP-394: the first JoinGroup gets MEMBER_ID_REQUIRED, the second joins."""
    first = group.join(request(), new_id, True, now_ms)
    assert isinstance(first, JoinResult) and first.error == Errors.MEMBER_ID_REQUIRED
    assert first.member_id == new_id
    return group.join(request(new_id), "unused", True, now_ms)


def stable_group_of(*members: str) -> Group:
    group = Group("g")
    for member in members:
        join_new(group, member, 0)
    assert group.state is GroupState.COMPLETING_REBALANCE or len(members) > 1
    # Members that joined later must rejoin before the generation completes.
    for member in members:
        if group.state is GroupState.PREPARING_REBALANCE:
            group.join(request(member), "unused", True, 0)
    assert group.state is GroupState.COMPLETING_REBALANCE
    leader = group.leader
    assert leader is not None
    assert (
        group.sync(leader, group.generation, {m: m.encode() for m in members}, None, None, 0)
        is WAIT
    )
    assert group.storing_generation == group.generation
    group.assignment_stored(group.generation, Errors.NONE)
    assert group.state is GroupState.STABLE
    return group


def test_the_first_member_completes_a_generation_and_leads() -> None:
    group = Group("g")
    assert join_new(group, "a", 0) is WAIT
    assert group.state is GroupState.COMPLETING_REBALANCE and group.generation == 1
    result = group.join_results["a"]
    assert (result.error, result.leader, result.protocol) == (Errors.NONE, "a", "range")
    assert [m[0] for m in result.members] == ["a"]


def test_a_second_member_rebalances_and_only_the_leader_gets_the_members() -> None:
    group = stable_group_of("a")
    assert join_new(group, "b", 1) is WAIT
    assert group.state is GroupState.PREPARING_REBALANCE
    assert group.heartbeat("a", 1, 2) == Errors.REBALANCE_IN_PROGRESS
    assert group.join(request("a"), "unused", True, 3) is WAIT
    assert group.state is GroupState.COMPLETING_REBALANCE and group.generation == 2
    assert len(group.join_results["a"].members) == 2 and group.join_results["b"].members == ()
    assert group.sync("b", 2, {}, None, None, 4) is WAIT
    assert group.sync("a", 2, {"a": b"A", "b": b"B"}, None, None, 4) is WAIT
    group.assignment_stored(2, Errors.NONE)
    assert group.sync_results == {"a": (Errors.NONE, b"A"), "b": (Errors.NONE, b"B")}


def test_stale_generations_and_unknown_members_are_refused() -> None:
    group = stable_group_of("a")
    assert group.heartbeat("a", 0, 1) == Errors.ILLEGAL_GENERATION
    assert group.heartbeat("x", 1, 1) == Errors.UNKNOWN_MEMBER_ID
    assert group.sync("a", 7, {}, None, None, 1) == (Errors.ILLEGAL_GENERATION, b"")
    assert group.check_commit("a", 0) == Errors.ILLEGAL_GENERATION
    assert group.check_commit("", -1) == Errors.UNKNOWN_MEMBER_ID
    assert group.join(request("x"), "unused", True, 1) == JoinResult(
        Errors.UNKNOWN_MEMBER_ID, member_id="x"
    )
    assert group.join(request("", ("roundrobin",)), "y", False, 1) == JoinResult(
        Errors.INCONSISTENT_GROUP_PROTOCOL
    )


def test_session_expiry_removes_a_silent_member_and_the_generation_moves_on() -> None:
    group = stable_group_of("a", "b")
    generation = group.generation
    assert group.heartbeat("a", generation, SESSION_MS) == Errors.NONE
    assert not group.tick(SESSION_MS)
    assert group.tick(SESSION_MS + 1), "b's last heartbeat was at 0"
    assert "b" not in group.members
    # Only `a` is left and it must rejoin; then it leads the next generation alone.
    assert group.state is GroupState.PREPARING_REBALANCE
    assert group.join(request("a"), "unused", True, SESSION_MS + 2) is WAIT
    assert group.generation == generation + 1 and group.leader == "a"


def test_the_rebalance_timeout_drops_members_that_did_not_rejoin() -> None:
    group = stable_group_of("a", "b")
    assert join_new(group, "c", 100) is WAIT
    group.join(request("a"), "unused", True, 100)
    # b keeps heartbeating (so its session holds) but never rejoins.
    for now_ms in range(5_000, REBALANCE_MS, 5_000):
        assert group.heartbeat("b", group.generation, now_ms) == Errors.REBALANCE_IN_PROGRESS
        assert not group.tick(now_ms)
    assert group.heartbeat("b", group.generation, REBALANCE_MS) == Errors.REBALANCE_IN_PROGRESS
    assert not group.tick(100 + REBALANCE_MS - 1)
    assert group.tick(100 + REBALANCE_MS)
    assert set(group.members) == {"a", "c"} and group.state is GroupState.COMPLETING_REBALANCE
    assert [m[0] for m in group.join_results["a"].members] == ["a", "c"]


def test_commits_are_refused_while_completing_and_allowed_while_preparing() -> None:
    group = stable_group_of("a", "b")
    assert group.check_commit("a", group.generation) == Errors.NONE
    group.prepare_rebalance(5)
    assert group.check_commit("a", group.generation) == Errors.NONE
    empty = Group("simple")
    assert empty.check_commit("", -1) == Errors.NONE


def test_everyone_leaving_empties_the_group_and_advances_the_generation() -> None:
    group = stable_group_of("a", "b")
    generation = group.generation
    assert group.leave("a", 1) == Errors.NONE
    assert group.leave("b", 1) == Errors.NONE
    assert group.state is GroupState.EMPTY and group.generation == generation + 1
    assert group.leave("b", 1) == Errors.UNKNOWN_MEMBER_ID


def test_a_failed_assignment_write_answers_the_syncs_with_the_error() -> None:
    group = Group("g")
    join_new(group, "a", 0)
    assert group.sync("a", 1, {"a": b"A"}, None, None, 0) is WAIT
    group.assignment_stored(1, Errors.NOT_COORDINATOR)
    assert group.sync_results["a"] == (Errors.NOT_COORDINATOR, b"")
    assert group.state is GroupState.COMPLETING_REBALANCE


def test_the_initial_delay_holds_the_first_generation_back() -> None:
    group = Group("g", initial_delay_ms=3_000)
    join_new(group, "a", 0)
    assert group.state is GroupState.PREPARING_REBALANCE
    join_new(group, "b", 2_000)
    assert not group.tick(4_999)
    assert group.tick(5_000) and group.generation == 1 and len(group.members) == 2


@pytest.mark.parametrize(
    ("text", "java"),
    [("", 0), ("a", 97), ("hello", 99162322), ("Hello World", -862545276), ("ü", 252)],
)
def test_java_string_hash_code(text: str, java: int) -> None:
    assert java_string_hash(text) == java


def test_offsets_partition_masks_the_sign_bit_like_kafka() -> None:
    assert offsets_partition_for("Hello World", 50) == (-862545276 & 0x7FFFFFFF) % 50
    assert all(0 <= offsets_partition_for(f"g{i}", 3) < 3 for i in range(100))


def test_consumer_protocol_bytes_agree_with_kafka_python() -> None:
    metadata = pytest.importorskip("kafka.protocol.consumer.metadata")
    ours = group_data.encode_subscription(["a", "b"], {"a": [0, 1]}, 5)
    theirs = metadata.ConsumerProtocolSubscription(
        version=2,
        topics=["a", "b"],
        user_data=None,
        owned_partitions=[("a", [0, 1])],
        generation_id=5,
    )
    assert ours == theirs.encode(version=2), "version prefix and body, byte for byte"
    assignment = metadata.ConsumerProtocolAssignment(
        version=0, assigned_partitions=[("t", [0, 2])], user_data=None
    )
    assert group_data.encode_assignment({"t": [2, 0]}) == assignment.encode(version=0)
    assert group_data.decode_assignment(assignment.encode(version=0)) == {"t": [0, 2]}


def test_offset_records_round_trip_and_newer_versions_read_as_ours() -> None:
    key = group_data.encode(
        group_data.OFFSET_COMMIT_KEY, 1, {"group": "g", "topic": "t", "partition": 3}
    )
    assert group_data.decode(group_data.OFFSET_COMMIT_KEY, key) == (
        1,
        {"group": "g", "topic": "t", "partition": 3},
    )
    value = group_data.encode(
        group_data.OFFSET_COMMIT_VALUE,
        3,
        {"offset": 42, "leader_epoch": 2, "metadata": "m", "commit_timestamp": 7},
    )
    newer = b"\x00\x09" + value[2:] + b"trailing fields of a later version"
    assert group_data.decode(group_data.OFFSET_COMMIT_VALUE, newer)[1]["offset"] == 42


def test_cooperative_sticky_withholds_moving_partitions_and_keeps_the_rest() -> None:
    counts = {"t": 4}
    owner = MemberSubscription("a", ("t",), {"t": [0, 1, 2, 3]}, 1)
    newcomer = MemberSubscription("b", ("t",))
    first = assign("cooperative-sticky", [owner, newcomer], counts)
    assert first == {"a": {"t": [0, 1]}, "b": {}}, "moving partitions wait one generation"
    kept = MemberSubscription("a", ("t",), {"t": [0, 1]}, 2)
    second = assign("cooperative-sticky", [kept, newcomer], counts)
    assert second == {"a": {"t": [0, 1]}, "b": {"t": [2, 3]}}
    assert assign("range", [owner, newcomer], {"t": 5}) == {
        "a": {"t": [0, 1, 2]},
        "b": {"t": [3, 4]},
    }


def test_a_rejoin_never_gets_an_answer_left_from_an_earlier_join() -> None:
    group = stable_group_of("a", "b")
    assert "a" in group.join_results, "the earlier generation's answer was never taken"
    assert group.join(request("a"), "unused", True, 1) is WAIT
    assert "a" not in group.join_results, "the leader's rejoin waits for the next generation"
