"""The active controller's decisions: fencing, elections (clean, ELR, unclean), AlterPartition.

Brokers are 1, 2, 3 (A, B, C in KAFKA-RULES.md's stories); `orders-0` has replicas
(1, 2, 3), so broker 1 is its first leader.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from impl.controller.controller import (
    AlterPartitionRequest,
    BrokerHeartbeatRequest,
    BrokerRegistrationRequest,
    ControllerError,
    ControllerState,
    CreateTopicRequest,
    Decision,
    Sessions,
    alter_partition,
    create_topic,
    fence_expired_brokers,
    heartbeat,
    register_broker,
)
from impl.controller.metadata import (
    NO_LEADER,
    CreateTopic,
    FenceBroker,
    MetadataImage,
    PartitionChange,
    PartitionRegistration,
    RegisterBroker,
    UnfenceBroker,
    apply_all,
    decode_batch,
    encode_batch,
)
from model.config import Config
from model.errors import Errors

A, B, C = 1, 2, 3
CONFIG = Config()  # replication.factor=3, min.insync.replicas=2, replog.elr=true
SESSION_MS = CONFIG.broker_session_timeout_ms


def accepted(decision: Decision) -> ControllerState:
    assert decision.error == Errors.NONE, f"refused with {decision.error!r}"
    return decision.state


def cluster(
    config: Config = CONFIG,
    brokers: int = 3,
    replication_factor: int = 3,
    topic_configs: tuple[tuple[str, str], ...] = (),
) -> ControllerState:
    """Registered, unfenced brokers (heartbeats at t=0) and topic `orders`, 1 partition."""
    state = ControllerState()
    for broker in range(1, brokers + 1):
        request = BrokerRegistrationRequest(broker, f"host-{broker}", 9092)
        state = accepted(register_broker(state, request, 0, config))
        state = accepted(heartbeat(state, BrokerHeartbeatRequest(broker, 1), 0, config))
    topic = CreateTopicRequest("orders", "topic-id", 1, replication_factor, topic_configs)
    return accepted(create_topic(state, topic, config))


def partition(state: ControllerState) -> PartitionRegistration:
    registration = state.image.partition("orders", 0)
    assert registration is not None
    return registration


def set_isr(state: ControllerState, isr: tuple[int, ...], config: Config = CONFIG) -> Decision:
    """The current leader's AlterPartition at the current epochs."""
    p = partition(state)
    request = AlterPartitionRequest("orders", 0, p.leader, p.leader_epoch, p.partition_epoch, isr)
    return alter_partition(state, request, config)


def fence(state: ControllerState, broker: int, config: Config = CONFIG) -> Decision:
    """Everyone but `broker` heartbeats; its session runs out."""
    now_ms = max(state.sessions.last_heartbeat_ms.values()) + SESSION_MS + 1
    for other in state.image.unfenced_brokers():
        if other != broker:
            incarnation = state.image.brokers[other].incarnation
            request = BrokerHeartbeatRequest(other, incarnation)
            state = accepted(heartbeat(state, request, now_ms, config))
    return fence_expired_brokers(state, now_ms, config)


def restart(state: ControllerState, broker: int, clean: bool, config: Config = CONFIG) -> Decision:
    """Register a new incarnation (clean: it saved its incarnation on shutdown), heartbeat."""
    incarnation = state.image.brokers[broker].incarnation
    previous = incarnation if clean else -1
    request = BrokerRegistrationRequest(broker, f"host-{broker}", 9092, previous)
    state = accepted(register_broker(state, request, 0, config))
    return heartbeat(state, BrokerHeartbeatRequest(broker, incarnation + 1), 0, config)


# --- sessions and fencing -------------------------------------------------------------------


def test_registration_starts_fenced_and_the_first_heartbeat_unfences() -> None:
    state = ControllerState()
    decision = register_broker(state, BrokerRegistrationRequest(A, "h", 9092), 0, CONFIG)
    assert decision.records == (RegisterBroker(A, 1, "h", 9092),)
    assert decision.state.image.brokers[A].fenced
    decision = heartbeat(decision.state, BrokerHeartbeatRequest(A, 1), 10, CONFIG)
    assert decision.records == (UnfenceBroker(A, 1),)
    assert decision.state.image.is_unfenced(A)
    assert heartbeat(decision.state, BrokerHeartbeatRequest(A, 1), 20, CONFIG).records == ()


def test_a_broker_is_fenced_only_after_missing_its_whole_session() -> None:
    state = cluster()
    for other in (B, C):
        state = accepted(heartbeat(state, BrokerHeartbeatRequest(other, 1), SESSION_MS, CONFIG))
    assert fence_expired_brokers(state, SESSION_MS, CONFIG).records == ()
    decision = fence_expired_brokers(state, SESSION_MS + 1, CONFIG)
    assert decision.records == (
        FenceBroker(A, 1),
        PartitionChange("orders", 0, B, 1, 1, (B, C), (), B),
    )


def test_a_new_controller_gives_every_broker_a_fresh_session() -> None:
    image = cluster().image
    state = ControllerState(image, Sessions.fresh(image, now_ms=50_000))
    assert fence_expired_brokers(state, 50_000 + SESSION_MS, CONFIG).records == ()
    assert len(fence_expired_brokers(state, 50_001 + SESSION_MS, CONFIG).records) > 3


def test_a_fenced_follower_leaves_the_isr_and_the_leader_stays() -> None:
    decision = fence(cluster(), C)
    assert decision.records[1] == PartitionChange("orders", 0, A, 0, 1, (A, B), (), A)


def test_heartbeats_from_unknown_or_old_incarnations_are_refused() -> None:
    state = cluster()
    unknown = heartbeat(state, BrokerHeartbeatRequest(9, 1), 0, CONFIG)
    assert unknown.error == ControllerError.BROKER_ID_NOT_REGISTERED
    state = accepted(register_broker(state, BrokerRegistrationRequest(A, "h", 1, 1), 0, CONFIG))
    stale = heartbeat(state, BrokerHeartbeatRequest(A, 1), 0, CONFIG)
    assert stale.error == ControllerError.STALE_BROKER_EPOCH and stale.records == ()


def test_a_new_incarnation_fences_the_old_one_and_rejoins_isr_only_by_alter_partition() -> None:
    state = cluster()
    decision = register_broker(state, BrokerRegistrationRequest(A, "h", 9092, 1), 0, CONFIG)
    assert decision.records == (
        FenceBroker(A, 1),
        PartitionChange("orders", 0, B, 1, 1, (B, C), (), B),
        RegisterBroker(A, 2, "h", 9092),
    )
    state = accepted(heartbeat(decision.state, BrokerHeartbeatRequest(A, 2), 0, CONFIG))
    assert partition(state).isr == (B, C)
    state = accepted(set_isr(state, (A, B, C)))
    assert partition(state).isr == (A, B, C) and partition(state).leader == B


def test_a_malformed_registration_is_refused() -> None:
    bad = BrokerRegistrationRequest(A, "", 9092)
    assert register_broker(ControllerState(), bad, 0, CONFIG).error == Errors.INVALID_REQUEST


# --- elections ----------------------------------------------------------------------------


def test_clean_election_takes_the_first_live_isr_member_in_replica_order() -> None:
    state = accepted(set_isr(cluster(), (A, C)))
    decision = fence(state, A)
    assert decision.records[1] == PartitionChange("orders", 0, C, 1, 2, (C,), (A,), C)


def test_without_a_live_isr_member_the_partition_goes_offline() -> None:
    config = CONFIG.with_values(elr=False)
    state = accepted(set_isr(cluster(config), (A,), config))
    decision = fence(state, A, config)
    assert decision.records[1:] == (PartitionChange("orders", 0, NO_LEADER, 1, 2, (A,), (), A),)


def test_bug_6_without_elr_the_replica_that_lost_its_disk_is_re_elected() -> None:
    """KAFKA-RULES #6, replog.elr=false: ISR={A}; A restarts with an empty disk and, as the
    only ISR member, becomes leader again: m0, on B and C only, will be truncated."""
    config = CONFIG.with_values(elr=False)
    state = accepted(set_isr(cluster(config), (A, C), config))
    state = accepted(set_isr(state, (A,), config))
    state = accepted(restart(state, A, clean=False, config=config))
    assert partition(state).leader == A and partition(state).isr == (A,)


def test_bug_6_with_elr_an_eligible_replica_leads_and_the_empty_one_is_dropped() -> None:
    """KAFKA-RULES #6, replog.elr=true: C left the ISR when it fell below
    min.insync.replicas, so it is in the ELR and has m0; A's unclean restart removes A
    from ISR and ELR, and C leads."""
    state = accepted(set_isr(cluster(), (A, C)))
    state = accepted(set_isr(state, (A,)))
    assert partition(state).elr == (C,)
    state = accepted(restart(state, A, clean=False))
    p = partition(state)
    assert (p.leader, p.isr, p.elr) == (C, (C,), ())


def test_an_elr_member_returning_leads_an_offline_partition() -> None:
    state = accepted(set_isr(cluster(), (A, C)))
    state = accepted(set_isr(state, (A,)))
    state = fence(state, C).state
    state = accepted(fence(state, A))
    assert (partition(state).leader, partition(state).elr) == (NO_LEADER, (A, C))
    state = accepted(heartbeat(state, BrokerHeartbeatRequest(C, 1), 0, CONFIG))
    p = partition(state)
    assert (p.leader, p.isr, p.elr, p.leader_epoch) == (C, (C,), (A,), 2)


def test_bug_7_unclean_election_picks_a_live_out_of_sync_replica() -> None:
    """KAFKA-RULES #7: B fell out of the ISR; A dies; with unclean election B leads."""
    config = CONFIG.with_values(unclean_leader_election_enable=True, elr=False)
    state = accepted(set_isr(cluster(config, replication_factor=2), (A,), config))
    decision = fence(state, A, config)
    assert decision.records[-1] == PartitionChange("orders", 0, B, 1, 2, (B,), (), B)


def test_bug_7_without_unclean_election_the_partition_waits_for_its_isr() -> None:
    config = CONFIG.with_values(elr=False)
    state = accepted(set_isr(cluster(config, replication_factor=2), (A,), config))
    state = accepted(fence(state, A, config))
    assert partition(state).leader == NO_LEADER
    state = accepted(restart(state, A, clean=True, config=config))
    p = partition(state)
    assert (p.leader, p.leader_epoch, p.isr) == (A, 2, (A,))


def test_last_known_leader_leads_when_isr_and_elr_are_empty() -> None:
    """model/rules.py's election_candidates: with ELR on and both sets empty, the last
    known leader may lead again (here after an unclean restart; see the report)."""
    topic_configs = (("min.insync.replicas", "1"),)
    state = accepted(set_isr(cluster(topic_configs=topic_configs), (A,)))
    state = accepted(fence(state, A))
    assert (partition(state).isr, partition(state).elr) == ((), (A,))
    state = accepted(restart(state, A, clean=False))
    p = partition(state)
    assert (p.leader, p.isr, p.elr, p.last_known_leader) == (A, (A,), (), A)


def test_topic_min_insync_replicas_decides_when_removals_become_eligible() -> None:
    state = cluster(topic_configs=(("min.insync.replicas", "1"),))
    state = accepted(set_isr(state, (A,)))
    assert partition(state).elr == ()


# --- AlterPartition -------------------------------------------------------------------------


def test_alter_partition_returns_the_new_partition_epoch() -> None:
    decision = set_isr(cluster(), (A, B))
    assert decision.records == (PartitionChange("orders", 0, A, 0, 1, (A, B), (), A),)
    assert partition(decision.state).partition_epoch == 1


def test_alter_partition_with_no_change_writes_nothing() -> None:
    decision = set_isr(cluster(), (C, A, B))
    assert decision.error == Errors.NONE and decision.records == ()


def test_alter_partition_at_a_stale_partition_epoch_is_invalid_update_version() -> None:
    state = accepted(set_isr(cluster(), (A, B)))
    stale = AlterPartitionRequest("orders", 0, A, 0, 0, (A,))
    decision = alter_partition(state, stale, CONFIG)
    assert decision.error == ControllerError.INVALID_UPDATE_VERSION == 96
    assert decision.records == () and decision.state == state


def test_a_zombie_leader_is_fenced_by_its_leader_epoch() -> None:
    state = accepted(fence(cluster(), A))
    zombie = AlterPartitionRequest("orders", 0, A, 0, 0, (A,))
    assert alter_partition(state, zombie, CONFIG).error == Errors.FENCED_LEADER_EPOCH


def test_alter_partition_from_the_future_means_we_are_not_the_controller() -> None:
    state = cluster()
    for leader_epoch, partition_epoch in ((1, 0), (0, 1)):
        ahead = AlterPartitionRequest("orders", 0, A, leader_epoch, partition_epoch, (A,))
        assert alter_partition(state, ahead, CONFIG).error == Errors.NOT_CONTROLLER


def test_alter_partition_rejects_bad_isrs() -> None:
    state = cluster()

    def error(leader: int, isr: tuple[int, ...], topic: str = "orders") -> int:
        request = AlterPartitionRequest(topic, 0, leader, 0, 0, isr)
        return alter_partition(state, request, CONFIG).error

    assert error(B, (A, B)) == Errors.INVALID_REQUEST  # not the leader
    assert error(A, (B, C)) == Errors.INVALID_REQUEST  # leader not in its own ISR
    assert error(A, (A, 7)) == Errors.INVALID_REQUEST  # not a replica
    assert error(A, (A, A)) == Errors.INVALID_REQUEST
    assert error(A, (A,), topic="nope") == Errors.UNKNOWN_TOPIC_OR_PARTITION
    state = fence(state, C).state
    p = partition(state)
    request = AlterPartitionRequest("orders", 0, A, p.leader_epoch, p.partition_epoch, (A, C))
    assert alter_partition(state, request, CONFIG).error == ControllerError.INELIGIBLE_REPLICA


def test_expanding_back_to_min_insync_replicas_clears_the_elr() -> None:
    state = accepted(set_isr(cluster(), (A, C)))
    state = accepted(set_isr(state, (A,)))
    assert partition(state).elr == (C,)
    state = accepted(set_isr(state, (A, B)))
    assert (partition(state).isr, partition(state).elr) == ((A, B), ())


# --- topics ---------------------------------------------------------------------------------


def test_replicas_are_assigned_round_robin_over_unfenced_brokers() -> None:
    state = fence(cluster(brokers=4), 4).state
    request = CreateTopicRequest("events", "id-2", partitions=4, replication_factor=2)
    decision = create_topic(state, request, CONFIG)
    assert decision.records == (CreateTopic("events", "id-2", ((A, B), (B, C), (C, A), (A, B))),)


def test_create_topic_uses_the_configured_defaults() -> None:
    config = CONFIG.with_values(num_partitions=2)
    decision = create_topic(cluster(), CreateTopicRequest("events", "id-2"), config)
    (record,) = decision.records
    assert isinstance(record, CreateTopic)
    assert (record.partitions, record.replication_factor) == (2, 3)


def test_create_topic_refusals() -> None:
    state = fence(cluster(), C).state

    def error(name: str = "events", partitions: int = 1, factor: int = 2, configs=()) -> int:
        request = CreateTopicRequest(name, "id", partitions, factor, configs)
        return create_topic(state, request, CONFIG).error

    assert error(factor=3) == Errors.INVALID_REPLICATION_FACTOR
    assert error(factor=0) == Errors.INVALID_REPLICATION_FACTOR
    assert error(name="orders") == Errors.TOPIC_ALREADY_EXISTS
    assert error(name="bad/name") == Errors.INVALID_TOPIC_EXCEPTION
    assert error(name="..") == Errors.INVALID_TOPIC_EXCEPTION
    assert error(partitions=0) == Errors.INVALID_PARTITIONS
    assert error(configs=(("no.such.key", "1"),)) == Errors.INVALID_CONFIG
    assert error() == Errors.NONE


# --- every decision replays from its encoded records -----------------------------------------


OPERATIONS = st.tuples(
    st.sampled_from(("register", "heartbeat", "expire", "alter")),
    st.sampled_from((A, B, C)),
    st.booleans(),
    st.frozensets(st.sampled_from((A, B, C))),
    st.integers(0, SESSION_MS),
)


@settings(derandomize=True, max_examples=150, deadline=None)
@given(st.booleans(), st.booleans(), st.lists(OPERATIONS, min_size=1, max_size=25))
def test_decisions_replay_from_the_log_and_keep_partition_invariants(
    elr: bool, unclean: bool, operations: list
) -> None:
    """Random operation sequences: the image built from the encoded records is the
    controller's image; a leader is unfenced and in the ISR; epochs only grow."""
    config = CONFIG.with_values(elr=elr, unclean_leader_election_enable=unclean)
    state = cluster(config)
    replayed = state.image
    now_ms = 0
    for kind, broker, clean, isr, elapsed_ms in operations:
        now_ms += elapsed_ms
        decision = _operate(state, kind, broker, clean, isr, now_ms, config)
        if decision.records:
            replayed = apply_all(replayed, decode_batch(encode_batch(decision.records)))
        assert replayed == decision.state.image
        _check_partition(state.image, decision.state.image)
        state = decision.state


def _operate(
    state: ControllerState,
    kind: str,
    broker: int,
    clean: bool,
    isr: frozenset[int],
    now_ms: int,
    config: Config,
) -> Decision:
    incarnation = state.image.brokers[broker].incarnation
    p = partition(state)
    if kind == "register":
        request = BrokerRegistrationRequest(broker, "h", 9092, incarnation if clean else -1)
        return register_broker(state, request, now_ms, config)
    if kind == "heartbeat":
        return heartbeat(state, BrokerHeartbeatRequest(broker, incarnation), now_ms, config)
    if kind == "alter" and p.leader != NO_LEADER:
        members = {p.leader, *(b for b in isr if state.image.is_unfenced(b))}
        request = AlterPartitionRequest(
            "orders", 0, p.leader, p.leader_epoch, p.partition_epoch, tuple(sorted(members))
        )
        return alter_partition(state, request, config)
    return fence_expired_brokers(state, now_ms, config)


def _check_partition(before: MetadataImage, after: MetadataImage) -> None:
    old, new = before.partition("orders", 0), after.partition("orders", 0)
    assert old is not None and new is not None
    assert new.partition_epoch >= old.partition_epoch
    assert new.leader_epoch >= old.leader_epoch
    if new.leader != NO_LEADER:
        assert new.leader in new.isr, f"leader {new.leader} outside ISR {new.isr}"
        assert after.is_unfenced(new.leader), f"fenced broker {new.leader} leads"
    assert not set(new.isr) & set(new.elr)
