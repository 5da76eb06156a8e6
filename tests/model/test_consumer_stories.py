"""Consumer-group stories driven through the model's actions, each with its safe
counterpart: a consumer lagging behind retention under each auto.offset.reset, a crash
between commit and processing under each commit discipline, max.poll.interval.ms
ejection and a zombie consumer fenced by its generation."""

from dataclasses import replace

from model import client, consumption
from model.config import Config
from model.errors import Errors
from model.machine import Action, ReplicationModel, Scope
from model.state import FAILED, MEMBER, PREPARING_REBALANCE, STABLE, UNJOINED
from specs.invariants import (
    at_least_once,
    at_most_once,
    no_silent_skip,
    one_partition_one_owner,
)

ONE_BROKER = ("replication.factor=1", "min.insync.replicas=1")
LAGGY = ("retention.ms=60000", "segment.bytes=100")
STORY_SCOPE = Scope(
    brokers=1,
    max_writes=5,
    group_consumers=2,
    max_polls=10,
    max_consumer_crashes=2,
    max_leaves=2,
    max_time_advances=20,
    clock_step_ms=30_000,
    retention=True,
)


def story_model(
    *settings: str, partitions: int = 1, committed_at_start: bool = False
) -> ReplicationModel:
    scope = replace(STORY_SCOPE, partitions=partitions, committed_at_start=committed_at_start)
    return ReplicationModel(Config.parse([*ONE_BROKER, *settings]), scope)


def act(kind: str, consumer: int = -1, partition: int = -1) -> Action:
    return Action(kind, -1, partition, consumer)


def run(m: ReplicationModel, state, *actions: Action):
    return client.apply(m, state, *actions)


def produce(m, state, count=1):
    for _ in range(count):
        state = run(m, state, Action("produce", 0, 0))
    return state


def joined(m, consumer=0, state=None):
    state = m.initial_state() if state is None else state
    return run(m, state, act("join", consumer), act("sync", consumer))


# --- a consumer behind retention -------------------------------------------------------


def lagging(*settings):
    """The consumer starts at the group's committed offset 0, two records arrive in two
    segments, three minutes pass without a poll, and retention runs if anything is
    deletable."""
    m = story_model(*settings, committed_at_start=True)
    s = run(m, joined(m), act("poll", 0), act("commit", 0))
    s = produce(m, s, 2)
    for _ in range(6):
        s = run(m, s, act("advance"))
        if s.consumption.consumers[0].phase == MEMBER:
            s = run(m, s, act("heartbeat", 0))
    if act("retention", partition=0) in m.enabled_actions(s):
        s = run(m, s, act("retention", partition=0))
    return m, run(m, s, act("poll", 0))


def test_latest_after_falling_off_the_log_skips_to_the_head_and_is_reported():
    _, s = lagging(*LAGGY, "auto.offset.reset=latest")
    assert s.consumption.logs[0].log_start == 1
    reset = s.consumption.resets[-1]
    assert (reset.from_offset, reset.to_offset, reset.policy) == (0, 2, "latest")
    assert s.consumption.delivered == ((),)
    assert no_silent_skip(s) == (
        "p0: offsets [0, 2) were skipped: auto.offset.reset=latest moved consumer 0 from 0 "
        "to 2 after OFFSET_OUT_OF_RANGE (log start 1, HW 2)"
    )


def test_earliest_after_falling_off_the_log_skips_only_what_retention_deleted():
    _, s = lagging(*LAGGY, "auto.offset.reset=earliest")
    assert s.consumption.delivered == ((1,),)
    assert no_silent_skip(s).startswith("p0: offsets [0, 1) were skipped: auto.offset.reset=")


def test_none_fails_loudly_and_skips_nothing():
    m, s = lagging(*LAGGY, "auto.offset.reset=none")
    consumer = s.consumption.consumers[0]
    assert consumer.phase == FAILED and consumer.positions == (0,)
    assert s.consumption.resets[-1].to_offset == -1
    assert no_silent_skip(s) is None
    assert act("poll", 0) not in m.enabled_actions(s)


def test_retention_sized_above_the_lag_never_skips():
    _, s = lagging("retention.ms=600000", "segment.bytes=100", "auto.offset.reset=latest")
    assert s.consumption.logs[0].log_start == 0
    assert s.consumption.delivered == ((0, 1),)
    assert no_silent_skip(s) is None


def test_latest_for_a_group_without_a_committed_offset_is_a_choice_not_a_skip():
    m = story_model("auto.offset.reset=latest")
    s = produce(m, m.initial_state(), 2)
    s = run(m, joined(m, state=s), act("poll", 0))
    reset = s.consumption.resets[0]
    assert (reset.from_offset, reset.to_offset) == (-1, 2)
    s = produce(m, s, 1)
    s = run(m, s, act("commit", 0), act("poll", 0))
    assert s.consumption.delivered == ((2,),) and no_silent_skip(s) is None


# --- commit discipline -------------------------------------------------------------------


def crash_after_commit(*settings):
    """Poll one record, commit before processing, crash: at-most-once loses it."""
    m = story_model("replog.consumer.commit=before-processing", *settings)
    s = run(m, joined(m), act("poll", 0), act("commit", 0))
    s = produce(m, s, 1)
    s = run(m, s, act("poll", 0), act("commit", 0))
    assert s.consumption.group.offsets == (1,) and s.consumption.consumers[0].buffer == ((0, 0),)
    return m, run(m, s, act("consumer_crash", 0))


def test_at_most_once_loses_a_record_when_it_crashes_between_commit_and_processing():
    _, s = crash_after_commit()
    assert at_least_once(s) == (
        "p0: offset 0 is below the committed offset 1 but was never processed"
    )
    assert at_most_once(s) is None and no_silent_skip(s) is None


def test_at_most_once_without_the_crash_processes_everything():
    m = story_model("replog.consumer.commit=before-processing")
    s = run(m, joined(m), act("poll", 0), act("commit", 0))
    s = produce(m, s, 1)
    s = run(m, s, act("poll", 0), act("commit", 0))
    assert at_least_once(s) is None  # polled, committed, about to be processed
    s = run(m, s, act("process", 0))
    assert s.consumption.processed == ((0,),) and at_least_once(s) is None


def restarted_after_processing(*settings):
    """At-least-once: process, crash before the commit, restart: the record comes again."""
    m = story_model("replog.consumer.commit=after-processing", *settings)
    s = run(m, joined(m), act("poll", 0), act("commit", 0))
    s = produce(m, s, 1)
    s = run(m, s, act("poll", 0), act("process", 0), act("consumer_crash", 0))
    s = run(m, s, act("advance"), act("advance"), act("consumer_restart", 0))
    # The dead member's session expires before the new incarnation can form a group.
    s = run(m, s, act("session_expire", 0), act("join", 0), act("sync", 0), act("poll", 0))
    return m, run(m, s, act("process", 0))


def test_at_least_once_processes_twice_after_a_crash_before_the_commit_and_loses_nothing():
    _, s = restarted_after_processing()
    assert s.consumption.delivered == ((0,),) and s.consumption.processed == ((0,),)
    assert at_most_once(s) == "p0: offset 0 was processed twice"
    assert at_least_once(s) is None


# --- ejection and fencing ---------------------------------------------------------------


def test_a_consumer_that_does_not_poll_in_time_leaves_and_its_commit_fails():
    m = story_model("max.poll.interval.ms=60000", "session.timeout.ms=600000")
    s = produce(m, m.initial_state(), 1)
    s = run(m, joined(m, state=s), act("poll", 0), act("commit", 0))
    s = produce(m, s, 1)
    s = run(m, s, act("poll", 0))
    s = run(m, s, act("advance"))
    assert act("poll_timeout", 0) not in m.enabled_actions(s)
    s = run(m, s, act("advance"), act("poll_timeout", 0))
    consumer = s.consumption.consumers[0]
    assert consumer.member_id == -1 and consumer.phase == UNJOINED and consumer.owned == ()
    assert s.consumption.group.members == ()
    s = run(m, s, act("process", 0))
    s, error = _commit(m, s, 0)
    assert error == Errors.UNKNOWN_MEMBER_ID
    assert s.consumption.group.offsets == (1,)


def _commit(m, state, consumer):
    """A commit the explorer would not offer (nothing new to commit), made anyway."""
    return consumption.commit(state, consumer, m.config)


def test_a_zombie_keeps_reading_in_its_generation_but_its_commit_is_fenced():
    m = story_model("session.timeout.ms=45000", partitions=2)
    s = joined(m, 0)
    s = run(m, s, act("join", 1), act("heartbeat", 0), act("join", 0))
    s = run(m, s, act("sync", 0), act("sync", 1))
    assert s.consumption.group.state == STABLE and s.consumption.group.generation == 2
    # Consumer 1 heartbeats, consumer 0 (cut off from the coordinator) cannot.
    s = run(m, s, act("advance"), act("heartbeat", 1), act("advance"), act("session_expire", 0))
    s = run(m, s, act("heartbeat", 1), act("join", 1), act("sync", 1))
    zombie, live = s.consumption.consumers
    assert (zombie.generation, zombie.owned) == (2, (0,))
    assert (live.generation, live.owned) == (3, (0, 1))
    assert one_partition_one_owner(s) is None
    s = run(m, s, act("poll", 0))
    s, error = _commit(m, s, 0)
    assert error == Errors.UNKNOWN_MEMBER_ID and s.consumption.consumers[0].owned == ()


def test_two_owners_in_one_generation_break_one_partition_one_owner():
    m = story_model(partitions=2)
    s = joined(m, 0)
    consumers = s.consumption.consumers
    twin = consumers[0]._replace(member_id=7)
    broken = s._replace(consumption=s.consumption._replace(consumers=(consumers[0], twin)))
    assert (
        one_partition_one_owner(broken) == "p0: consumers 0 and 1 both consume it in generation 1"
    )
    group = s.consumption.group
    doubled = group._replace(members=(group.members[0], group.members[0]._replace(member_id=7)))
    broken = s._replace(consumption=s.consumption._replace(group=doubled))
    assert one_partition_one_owner(broken) == "p0: assigned to members 0 and 7 in generation 1"


def test_none_without_a_committed_offset_fails_at_the_first_poll():
    m = story_model("auto.offset.reset=none")
    s = run(m, joined(m), act("poll", 0))
    consumer = s.consumption.consumers[0]
    assert consumer.phase == FAILED and consumer.positions == (-1,)
    reset = s.consumption.resets[0]
    assert (reset.from_offset, reset.to_offset, reset.policy) == (-1, -1, "none")
    result = client.poll(m, s, 0)[1]
    assert result.error == Errors.OFFSET_OUT_OF_RANGE and result.records == ()


def test_a_consumer_that_closes_hands_its_partitions_over_at_the_next_generation():
    m = story_model(partitions=2)
    s = joined(m, 0)
    s = run(m, s, act("join", 1), act("heartbeat", 0), act("join", 0))
    s = run(m, s, act("sync", 0), act("sync", 1))
    assert [c.owned for c in s.consumption.consumers] == [(0,), (1,)]
    s = run(m, s, act("leave", 0))
    assert not s.consumption.consumers[0].alive
    assert s.consumption.group.state == PREPARING_REBALANCE
    s = run(m, s, act("heartbeat", 1), act("join", 1), act("sync", 1))
    live = s.consumption.consumers[1]
    assert (live.generation, live.owned) == (3, (0, 1))
    assert one_partition_one_owner(s) is None
