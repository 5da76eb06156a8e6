"""The native consumer in a group against one broker process: join, rebalance with the
range and cooperative-sticky assignors, commits and committed positions, ejection after
max.poll.interval.ms, and the record of every auto.offset.reset."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trio
from client_support import SINGLE_BROKER_CONFIG, config, new_topic, run

from impl.broker.process import BrokerProcess, start_broker
from impl.client.consumer import Consumer, ConsumerRecord
from impl.client.group import CommitFailed, CoordinatorUnavailable, GroupMember
from impl.client.metadata import TopicPartition
from impl.client.producer import Producer
from impl.runtime.runtime import Runtime

PARTITIONS = 4
PER_PARTITION = 5
GROUP_SETTINGS = (
    "session.timeout.ms=6000",
    "heartbeat.interval.ms=200",
    "fetch.max.wait.ms=100",
    "auto.offset.reset=earliest",
)
STEP_MS = 200
STEPS_MAX = 100


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    root = tmp_path_factory.mktemp("group-broker")
    settings = [
        *SINGLE_BROKER_CONFIG,
        "offsets.topic.num.partitions=3",
        "group.initial.rebalance.delay.ms=0",
    ]
    process = start_broker(0, root / "data", config=settings)
    try:
        yield process
    finally:
        assert process.stop() == 0, process.log_path.read_text()[-2000:]


async def _topic(runtime: Runtime, bootstrap: str) -> str:
    topic = await new_topic(runtime, bootstrap, PARTITIONS)
    await _produce(runtime, bootstrap, topic, 0)
    return topic


async def _produce(runtime: Runtime, bootstrap: str, topic: str, start: int) -> None:
    async with Producer(runtime, bootstrap, config("linger.ms=0")) as producer:
        for i in range(start, start + PARTITIONS * PER_PARTITION):
            await producer.send(topic, b"%d" % i, partition=i % PARTITIONS)


async def _poll_until(consumers: list[Consumer], done: Callable[[], bool]) -> list[ConsumerRecord]:
    """Poll every consumer in turn until `done()`; bounded by STEPS_MAX polls each."""
    records: list[ConsumerRecord] = []
    for _ in range(STEPS_MAX):
        for consumer in consumers:
            records += await consumer.poll(STEP_MS // len(consumers))
        if done():
            return records
    raise AssertionError("the group did not get there in time")


def _shared(first: Consumer, second: Consumer) -> bool:
    a, b = set(first.assignment()), set(second.assignment())
    return bool(a) and bool(b) and len(a | b) == PARTITIONS and not a & b


@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
def test_two_members_share_the_partitions_and_resume_at_committed_offsets(
    broker: BrokerProcess, strategy: str
) -> None:
    async def main(runtime: Runtime) -> None:
        topic = await _topic(runtime, broker.bootstrap)
        group = f"group-{strategy}"
        settings = config(*GROUP_SETTINGS, f"partition.assignment.strategy={strategy}")
        async with Consumer(runtime, broker.bootstrap, settings, client_id="c1") as first:
            first.subscribe([topic], group)
            records = await _poll_until([first], lambda: len(first.assignment()) == PARTITIONS)
            wanted = PARTITIONS * PER_PARTITION
            while len(records) < wanted:
                records += await _poll_until([first], lambda: True)
            assert sorted(int(r.value) for r in records) == list(range(wanted))
            await first.commit()
            generation = first.generation
            async with Consumer(runtime, broker.bootstrap, settings, client_id="c2") as second:
                second.subscribe([topic], group)
                await _poll_until([first, second], lambda: _shared(first, second))
                assert first.generation > generation and first.generation == second.generation
                # Nothing new was produced: the second member starts at the commits.
                for tp in second.assignment():
                    assert await second.position(tp) == PER_PARTITION
                moved = set(second.assignment())
                revoked = {tp for e in first.rebalances for tp in e.revoked}
                if strategy == "cooperative-sticky":
                    assert revoked == moved, "only partitions that moved were revoked"
                else:
                    assert revoked == {TopicPartition(topic, p) for p in range(PARTITIONS)}
            # The second member left: the first takes everything back.
            await _poll_until([first], lambda: len(first.assignment()) == PARTITIONS)

    run(main)


def test_a_member_that_stops_polling_is_ejected_and_its_commit_refused(
    broker: BrokerProcess,
) -> None:
    async def main(runtime: Runtime) -> None:
        topic = await _topic(runtime, broker.bootstrap)
        settings = config(*GROUP_SETTINGS, "max.poll.interval.ms=1500")
        async with (
            Consumer(runtime, broker.bootstrap, settings, client_id="slow") as slow,
            Consumer(runtime, broker.bootstrap, settings, client_id="busy") as busy,
        ):
            slow.subscribe([topic], "ejection")
            busy.subscribe([topic], "ejection")
            await _poll_until([slow, busy], lambda: _shared(slow, busy))
            # `slow` stops polling; `busy` keeps going and ends up with every partition.
            await _poll_until([busy], lambda: len(busy.assignment()) == PARTITIONS)
            assert not slow.assignment()
            assert any("max.poll.interval.ms" in e.reason for e in slow.rebalances)
            with pytest.raises(CommitFailed):
                await slow.commit({TopicPartition(topic, 0): 1})

    run(main)


def test_partitions_whose_commits_could_not_be_fetched_are_given_back_not_reset(
    broker: BrokerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed: list[list[TopicPartition]] = []
    fetch_committed = GroupMember.fetch_committed

    async def fails_once(
        self: GroupMember, nursery: trio.Nursery, partitions: list[TopicPartition] | None
    ) -> Any:
        if partitions and not failed:
            failed.append(partitions)
            raise CoordinatorUnavailable("injected: no coordinator answered")
        return await fetch_committed(self, nursery, partitions)

    async def main(runtime: Runtime) -> None:
        topic = await _topic(runtime, broker.bootstrap)
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        settings = config(*GROUP_SETTINGS)
        async with Consumer(runtime, broker.bootstrap, settings, group_id="give-back") as first:
            first.assign(tps)
            await first.commit({tp: 2 for tp in tps})
        monkeypatch.setattr(GroupMember, "fetch_committed", fails_once)
        async with Consumer(runtime, broker.bootstrap, settings, client_id="g1") as member:
            member.subscribe([topic], "give-back")
            records = await _poll_until([member], lambda: len(member.assignment()) == PARTITIONS)
            while len(records) < PARTITIONS * (PER_PARTITION - 2):
                records += await _poll_until([member], lambda: True)
            assert sorted(failed[0]) == tps
            assert any(e.reason == "committed offsets not fetched" for e in member.rebalances)
            # The rejoin fetched the commits: nothing before them, no auto.offset.reset.
            assert min(r.offset for r in records) == 2 and not member.resets
            assert len(records) == PARTITIONS * (PER_PARTITION - 2)

    run(main)


def test_offset_resets_are_recorded_with_from_to_and_policy(broker: BrokerProcess) -> None:
    async def main(runtime: Runtime) -> None:
        topic = await _topic(runtime, broker.bootstrap)
        tp = TopicPartition(topic, 0)
        settings = config(*GROUP_SETTINGS[:3], "auto.offset.reset=latest")
        async with Consumer(runtime, broker.bootstrap, settings, group_id="resets") as consumer:
            consumer.assign([tp])
            assert await consumer.committed([tp]) == {tp: None}
            assert await consumer.position(tp) == PER_PARTITION
            consumer.seek(tp, 10_000)
            assert await consumer.poll(STEP_MS) == []
            assert await consumer.position(tp) == PER_PARTITION
            await consumer.commit()
            assert (await consumer.committed([tp]))[tp].offset == PER_PARTITION
        first, second = consumer.resets
        assert (first.from_offset, first.to_offset, first.policy) == (None, PER_PARTITION, "latest")
        assert first.reason == "no committed offset"
        assert (second.from_offset, second.to_offset) == (10_000, PER_PARTITION)
        assert second.reason == "offset out of range"

    run(main)


def test_stock_admin_lists_and_describes_the_native_group(broker: BrokerProcess) -> None:
    admin_module = pytest.importorskip("kafka.admin")

    async def main(runtime: Runtime) -> None:
        topic = await _topic(runtime, broker.bootstrap)
        async with Consumer(
            runtime, broker.bootstrap, config(*GROUP_SETTINGS), client_id="n1"
        ) as c:
            c.subscribe([topic], "described")
            await _poll_until([c], lambda: len(c.assignment()) == PARTITIONS)
            described = await trio.to_thread.run_sync(_describe, broker.bootstrap, admin_module)
            assert described["listed"]["described"] == "Stable"
            group = described["group"]
            assert group["group_state"] == "Stable" and group["protocol_data"] == "range"
            (member,) = group["members"]
            assert member["member_id"] == c.member_id and member["client_id"] == "n1"
            assigned = member["member_assignment"]["assigned_partitions"]
            assert assigned == [{"topic": topic, "partitions": list(range(PARTITIONS))}]
            assert described["unknown"]["group_state"] == "Dead"

    run(main)


def _describe(bootstrap: str, admin_module: Any) -> dict[str, Any]:
    client = admin_module.KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        listed = {g["group_id"]: g["group_state"] for g in client.list_groups()}
        found = client.describe_groups(["described", "nobody"])
        return {"listed": listed, "group": found["described"], "unknown": found["nobody"]}
    finally:
        client.close()


def test_a_commit_for_a_missing_topic_is_retried_until_the_api_timeout(
    broker: BrokerProcess,
) -> None:
    """The broker answers UNKNOWN_TOPIC_OR_PARTITION (Kafka's KafkaApis check): retriable,
    as a topic just made may not be in the coordinator's metadata yet, so the commit is
    tried again until default.api.timeout.ms and then fails naming the error."""

    async def main(runtime: Runtime) -> None:
        settings = config(*GROUP_SETTINGS, "default.api.timeout.ms=1000")
        async with Consumer(runtime, broker.bootstrap, settings, group_id="gone") as consumer:
            started = trio.current_time()
            with pytest.raises(CoordinatorUnavailable, match="UNKNOWN_TOPIC_OR_PARTITION"):
                await consumer.commit({TopicPartition("no-such-topic", 0): 1})
            assert trio.current_time() - started >= 1.0

    run(main)
