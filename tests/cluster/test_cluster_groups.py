"""Consumer groups on the replicated cluster with stock clients: kafka-python and
confluent-kafka subscribe with a group id, share the partitions after a rebalance,
commit, and read their committed offsets back after the group's coordinator (the
leader of its `__consumer_offsets` partition) is killed with SIGKILL."""

from __future__ import annotations

import signal
import time

import confluent_kafka
import pytest
import trio
from cluster_support import create_topic, leader_of, start_cluster, wait_for
from kafka import KafkaConsumer, KafkaProducer

from impl.broker.group_coordinator import OFFSETS_TOPIC, offsets_partition_for
from impl.client.consumer import Consumer
from impl.client.errors import ClientError
from impl.client.metadata import TopicPartition
from impl.cluster.launcher import Cluster
from impl.runtime.runtime import real_runtime
from model.config import Config

GROUP_CONFIG = (
    "offsets.topic.num.partitions=3",
    "group.initial.rebalance.delay.ms=0",
)
TOPIC = "orders"
PARTITIONS = 3
RECORDS = 60
GROUP = "billing"
POLL_DEADLINE_S = 30


def _produce(bootstrap: str, count: int, start: int) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i in range(start, start + count):
        producer.send(TOPIC, str(i).encode(), partition=i % PARTITIONS)
    producer.flush()
    producer.close()


def _kafka_python_consumer(bootstrap: str) -> KafkaConsumer:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=GROUP,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6_000,
        heartbeat_interval_ms=300,
    )
    # kafka-python 3.0.12 drops a finished join if, while it ran, its own assignment made
    # need_rejoin() false: the assignment is never applied and the member polls forever
    # with no fetch, no OffsetFetch and no heartbeat. That path opens when the member is
    # elected leader before it has the topic's metadata (the join beats its first
    # metadata refresh with group.initial.rebalance.delay.ms=0): an empty generation,
    # then a rejoin that races the poll timeout. Knowing the topic first avoids it.
    assert consumer.partitions_for_topic(TOPIC) == set(range(PARTITIONS))
    consumer.subscribe([TOPIC])
    return consumer


def _share_after_rebalance(first: KafkaConsumer, second: KafkaConsumer) -> tuple[set, set]:
    deadline = time.monotonic() + POLL_DEADLINE_S
    while time.monotonic() < deadline:
        first.poll(timeout_ms=100)
        second.poll(timeout_ms=100)
        a, b = first.assignment(), second.assignment()
        if a and b and len(a | b) == PARTITIONS and not a & b:
            return a, b
    raise AssertionError(f"no rebalance: {first.assignment()} / {second.assignment()}")


def test_groups_share_partitions_commit_and_survive_a_coordinator_kill(tmp_path):
    cluster = start_cluster(tmp_path, 3, 0, *GROUP_CONFIG)
    try:
        create_topic(cluster, TOPIC, PARTITIONS)
        _produce(cluster.bootstrap, RECORDS, 0)

        first = _kafka_python_consumer(cluster.bootstrap)
        seen: list[int] = []
        deadline = time.monotonic() + POLL_DEADLINE_S
        while len(seen) < RECORDS and time.monotonic() < deadline:
            for records in first.poll(timeout_ms=200).values():
                seen += [int(r.value) for r in records]
        assert sorted(seen) == list(range(RECORDS)), "the only member reads every partition"
        assert len(first.assignment()) == PARTITIONS
        first.commit()

        second = _kafka_python_consumer(cluster.bootstrap)
        mine, theirs = _share_after_rebalance(first, second)
        assert len(mine) >= 1 and len(theirs) >= 1
        # The new member starts at the committed offsets: nothing left to read.
        assert all(second.position(tp) == RECORDS // PARTITIONS for tp in theirs)
        first.close()
        second.close()

        coordinator_partition = offsets_partition_for(GROUP, 3)
        coordinator = leader_of(cluster, OFFSETS_TOPIC, coordinator_partition)
        assert coordinator >= 0
        cluster.kill(coordinator)
        wait_for(
            lambda: (
                leader_of(cluster, OFFSETS_TOPIC, coordinator_partition) not in (-1, coordinator)
            ),
            "a new coordinator",
        )
        live = ",".join(
            f"{n.host}:{n.port}" for n in cluster.nodes if n.is_broker and n.node_id != coordinator
        )
        _produce(live, PARTITIONS * 4, RECORDS)
        consumer = confluent_kafka.Consumer(
            {
                "bootstrap.servers": live,
                "group.id": GROUP,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "session.timeout.ms": 6_000,
                "heartbeat.interval.ms": 300,
                "partition.assignment.strategy": "cooperative-sticky",
            }
        )
        try:
            wanted = [confluent_kafka.TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
            committed = wait_for(
                lambda: _committed(consumer, wanted), "committed offsets from the new coordinator"
            )
            assert committed == {p: RECORDS // PARTITIONS for p in range(PARTITIONS)}
            consumer.subscribe([TOPIC])
            fresh = _consume(consumer, PARTITIONS * 4)
            assert sorted(fresh) == list(range(RECORDS, RECORDS + PARTITIONS * 4)), (
                "the group resumes at its committed offsets: no record read twice or skipped"
            )
            consumer.commit(asynchronous=False)
            assert _committed(consumer, wanted) == {
                p: RECORDS // PARTITIONS + 4 for p in range(PARTITIONS)
            }
        finally:
            consumer.close()
    finally:
        cluster.stop()


def _committed(consumer: confluent_kafka.Consumer, wanted: list) -> dict[int, int] | None:
    try:
        found = consumer.committed(wanted, timeout=5)
    except confluent_kafka.KafkaException:
        return None
    if any(tp.error is not None for tp in found):
        return None
    return {tp.partition: tp.offset for tp in found}


def _consume(consumer: confluent_kafka.Consumer, count: int) -> list[int]:
    values: list[int] = []
    deadline = time.monotonic() + POLL_DEADLINE_S
    while len(values) < count and time.monotonic() < deadline:
        message = consumer.poll(0.2)
        if message is not None and message.error() is None:
            values.append(int(message.value()))
    time.sleep(0.5)
    extra = consumer.poll(0.5)
    assert extra is None or extra.error() is not None, "a record beyond the produced ones"
    return values


def test_a_native_member_keeps_its_generation_across_a_coordinator_kill(tmp_path):
    """The group's generation and assignment are stored with its offsets, so the new
    coordinator loads the member and accepts its heartbeats: no rebalance, no re-read."""
    cluster = start_cluster(tmp_path, 3, 0, *GROUP_CONFIG)
    try:
        create_topic(cluster, TOPIC, PARTITIONS)
        _produce(cluster.bootstrap, RECORDS, 0)
        trio.run(_ride_out_a_coordinator_kill, cluster)
    finally:
        cluster.stop()


async def _ride_out_a_coordinator_kill(cluster: Cluster) -> None:
    settings = Config.parse(
        [
            "session.timeout.ms=8000",
            "heartbeat.interval.ms=200",
            "auto.offset.reset=earliest",
            "request.timeout.ms=2000",
            "metadata.max.age.ms=500",
            "fetch.max.wait.ms=100",
        ]
    )
    runtime = real_runtime(0)
    with trio.fail_after(POLL_DEADLINE_S * 2):
        async with Consumer(runtime, cluster.bootstrap, settings) as consumer:
            consumer.subscribe([TOPIC], "native")
            seen = await _native_poll(consumer, RECORDS)
            await consumer.commit()
            generation, member, events = (
                consumer.generation,
                consumer.member_id,
                consumer.rebalances,
            )
            coordinator = leader_of(cluster, OFFSETS_TOPIC, offsets_partition_for("native", 3))
            cluster.kill(coordinator)
            live = ",".join(
                f"{n.host}:{n.port}"
                for n in cluster.nodes
                if n.is_broker and n.node_id != coordinator
            )
            await trio.to_thread.run_sync(_produce, live, RECORDS, RECORDS)
            seen += await _native_poll(consumer, RECORDS)
            await consumer.commit()
            assert sorted(seen) == list(range(2 * RECORDS)), "every record exactly once"
            assert (consumer.generation, consumer.member_id) == (generation, member)
            assert consumer.rebalances == events, "no revocation, no rejoin"
            committed = await consumer.committed()
            expected = {TopicPartition(TOPIC, p): 2 * RECORDS // PARTITIONS for p in range(3)}
            assert {tp: c.offset for tp, c in committed.items() if c} == expected


async def _native_poll(consumer: Consumer, count: int) -> list[int]:
    values: list[int] = []
    while len(values) < count:
        values += [int(r.value) for r in await consumer.poll(200)]
    return values


def test_a_commit_is_answered_only_once_replicated(tmp_path):
    """acks=all on the offsets topic: with both followers of the group's offsets partition
    stopped, a commit cannot succeed and the coordinator keeps serving the last
    replicated offset; once they resume, commits succeed again."""
    cluster = start_cluster(tmp_path, 3, 0, *GROUP_CONFIG)
    try:
        create_topic(cluster, TOPIC, PARTITIONS)
        trio.run(_commit_only_when_replicated, cluster)
    finally:
        cluster.stop()


async def _commit_only_when_replicated(cluster: Cluster) -> None:
    tp = TopicPartition(TOPIC, 0)
    settings = Config.parse(["request.timeout.ms=2000", "default.api.timeout.ms=4000"])
    runtime = real_runtime(0)
    with trio.fail_after(POLL_DEADLINE_S * 2):
        async with Consumer(runtime, cluster.bootstrap, settings, group_id="durable") as c:
            c.assign([tp])
            await c.commit({tp: 1})
            coordinator = leader_of(cluster, OFFSETS_TOPIC, offsets_partition_for("durable", 3))
            followers = [n for n in (0, 1, 2) if n != coordinator]
            for node in followers:
                cluster.processes[node].signal(signal.SIGSTOP)
            try:
                with pytest.raises(ClientError):
                    await c.commit({tp: 2})
                assert (await c.committed([tp]))[tp].offset == 1
            finally:
                for node in followers:
                    cluster.processes[node].signal(signal.SIGCONT)
            await _commit_eventually(c, {tp: 3})
            assert (await c.committed([tp]))[tp].offset == 3


async def _commit_eventually(consumer: Consumer, offsets: dict[TopicPartition, int]) -> None:
    """The followers rejoin the ISR within seconds of SIGCONT; until then commits fail."""
    while True:
        try:
            await consumer.commit(offsets)
            return
        except ClientError:
            await trio.sleep(0.2)
