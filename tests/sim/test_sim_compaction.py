"""`__consumer_offsets` is compacted on disk by every replica's log cleaner, a follower
that was down while its leader cleaned catches up across the gaps, and after the
coordinator's kill the next one still answers the latest commit of every partition."""

from __future__ import annotations

import posixpath

import trio

from impl.broker.group_coordinator import OFFSETS_TOPIC
from impl.client import Consumer, Producer, TopicPartition
from impl.client.admin import create_topics, wait_for_leaders
from impl.client.errors import ClientError, KafkaError
from impl.client.metadata import ClusterSession
from impl.protocol import group_data
from impl.sim.cluster import DATA_ROOT, SimCluster
from impl.sim.guard import run
from impl.storage.batch import decode_records
from impl.storage.log import PartitionLog
from model.config import Config
from model.errors import Errors

TOPIC = "events"
PARTITIONS = 4
ROUNDS = 150
GROUP = "compacted-group"
BROKERS = (
    "min.insync.replicas=2",
    "offsets.topic.num.partitions=1",
    "offsets.topic.segment.bytes=2048",
    "log.cleaner.backoff.ms=1000",
    "replica.lag.time.max.ms=3000",
    "group.initial.rebalance.delay.ms=0",
)
CLIENT = Config.parse(["request.timeout.ms=3000", "metadata.max.age.ms=1000"])
WAIT_S = 120
OFFSETS_DIR = f"{OFFSETS_TOPIC}-0"
TPS = [TopicPartition(TOPIC, i) for i in range(PARTITIONS)]


def _offsets_log(cluster: SimCluster, node: int) -> PartitionLog:
    broker = cluster.brokers[node]
    assert broker is not None, f"broker {node} is up"
    return broker.logs.partitions[(OFFSETS_TOPIC, 0)].log


def _log_file_bytes(cluster: SimCluster, node: int) -> int:
    """What the partition's `.log` files hold on this broker's disk."""
    fs = cluster.fs(node)
    directory = posixpath.join(DATA_ROOT, f"node-{node}", OFFSETS_DIR)
    return sum(
        fs.size(posixpath.join(directory, n)) for n in fs.list_dir(directory) if n.endswith(".log")
    )


def _replayed_commits(log: PartitionLog) -> dict[tuple[str, int], int]:
    """The group's committed offsets, read from a replica's log keep-latest-per-key."""
    latest: dict[bytes, bytes | None] = {}
    for _, raw in log.batches():
        for _, record in decode_records(raw):
            latest[record.key] = record.value
    commits = {}
    for key, value in latest.items():
        if group_data.read_version(key) == group_data.GROUP_METADATA_KEY_VERSION:
            continue
        body = group_data.decode(group_data.OFFSET_COMMIT_KEY, key)[1]
        if body["group"] == GROUP and value is not None:
            stored = group_data.decode(group_data.OFFSET_COMMIT_VALUE, value)[1]
            commits[(body["topic"], body["partition"])] = stored["offset"]
    return commits


async def _offsets_leader(cluster: SimCluster) -> int:
    async with ClusterSession(cluster.runtime(), cluster.bootstrap, CLIENT, "probe") as s:
        with trio.fail_after(WAIT_S):
            while True:
                await s.cluster.refresh([OFFSETS_TOPIC])
                leader = s.cluster.leader(TopicPartition(OFFSETS_TOPIC, 0))
                if leader is not None and cluster.brokers[leader.leader_id] is not None:
                    return leader.leader_id
                await trio.sleep(0.5)


async def _retrying(action):
    with trio.fail_after(WAIT_S):
        while True:
            try:
                return await action()
            except ClientError:
                await trio.sleep(0.5)


async def _until(done, what: str) -> None:
    with trio.fail_after(WAIT_S):
        while not done():
            await trio.sleep(0.5)


async def _scenario(seed: int) -> dict[str, object]:
    facts: dict[str, object] = {}
    async with trio.open_nursery() as nursery:
        cluster = SimCluster(3, seed=seed, config=BROKERS, topic=TOPIC)
        await cluster.start(nursery)
        await cluster.wait_for_brokers()
        runtime = cluster.runtime()
        await create_topics(runtime, cluster.bootstrap, [(TOPIC, PARTITIONS, 3, {})])
        await wait_for_leaders(runtime, cluster.bootstrap, [TOPIC])
        async with Consumer(runtime, cluster.bootstrap, CLIENT, group_id=GROUP) as consumer:
            await _retrying(lambda: consumer.commit({tp: 0 for tp in TPS}))
            coordinator = await _offsets_leader(cluster)
            late = next(n for n in cluster.nodes if n != coordinator)
            await cluster.kill(late)
            expected = {}
            for round_ in range(1, ROUNDS + 1):
                expected = {tp: round_ * 10 + tp.partition for tp in TPS}
                await _retrying(lambda offsets=expected: consumer.commit(offsets))
            leader_log = _offsets_log(cluster, coordinator)
            facts["segments_written"] = len(leader_log.segment_base_offsets)
            facts["bytes_written"] = leader_log.size_bytes
            live = [n for n in cluster.nodes if n != late]
            # Every live replica's cleaner runs on its own timer, on its own copy.
            await _until(
                lambda: all(
                    _offsets_log(cluster, n).size_bytes * 4 < facts["bytes_written"] for n in live
                ),
                "the live replicas cleaned",
            )
            facts["bytes_cleaned"] = {n: _log_file_bytes(cluster, n) for n in live}
            await cluster.restart(late)
            await _until(
                lambda: (
                    cluster.brokers[late] is not None
                    and (OFFSETS_TOPIC, 0) in cluster.brokers[late].logs.partitions
                    and _offsets_log(cluster, late).log_end_offset
                    == _offsets_log(cluster, coordinator).log_end_offset
                ),
                "the late follower caught up",
            )
            facts["late_replay"] = _replayed_commits(_offsets_log(cluster, late))
            facts["late_bytes"] = _offsets_log(cluster, late).size_bytes
            await cluster.kill(coordinator)
            facts["new_coordinator"] = await _offsets_leader(cluster)
            committed = await _retrying(lambda: consumer.committed(TPS))
            facts["fetched"] = {tp: c.offset for tp, c in committed.items() if c}
            facts["expected"] = expected
        await cluster.stop()
        nursery.cancel_scope.cancel()
    return facts


def test_offsets_are_compacted_on_disk_and_survive_a_failover() -> None:
    facts = run(_scenario, 3, seed=3)
    written = facts["bytes_written"]
    assert facts["segments_written"] > 10, facts
    for node, size in facts["bytes_cleaned"].items():
        assert size * 4 < written, f"broker {node}: {size} bytes on disk of {written} written"
    assert facts["late_bytes"] * 4 < written, "the late follower copied the cleaned log"
    assert facts["late_replay"] == {
        (tp.topic, tp.partition): o for tp, o in facts["expected"].items()
    }
    assert facts["fetched"] == facts["expected"], "OffsetFetch after the failover"


TABLE = "table"
KEYS = 12


async def _compacted_topic(seed: int) -> dict[str, object]:
    facts: dict[str, object] = {}
    async with trio.open_nursery() as nursery:
        cluster = SimCluster(3, seed=seed, config=BROKERS, topic=TABLE)
        await cluster.start(nursery)
        await cluster.wait_for_brokers()
        runtime = cluster.runtime()
        configs = {"cleanup.policy": "compact", "segment.bytes": "2048"}
        await create_topics(runtime, cluster.bootstrap, [(TABLE, 1, 3, configs)])
        await wait_for_leaders(runtime, cluster.bootstrap, [TABLE])
        expected: dict[bytes, bytes | None] = {}
        async with Producer(runtime, cluster.bootstrap, CLIENT) as producer:
            # Written once, so it stays at offset 0 with a gap after it.
            await (await producer.send(TABLE, b"pinned", key=b"pinned", partition=0)).wait()
            expected[b"pinned"] = b"pinned"
            for round_ in range(40):
                deliveries = []
                for k in range(KEYS):
                    key = b"key-%d" % k
                    value = None if (round_ == 39 and k % 4 == 0) else b"%d-%d" % (round_, k)
                    expected[key] = value
                    deliveries.append(await producer.send(TABLE, value, key=key, partition=0))
                await producer.flush()
                for delivery in deliveries:
                    await delivery.wait()
            keyless = await producer.send(TABLE, b"no key", partition=0)
            await producer.flush()
            try:
                await keyless.wait()
                facts["keyless"] = "accepted"
            except KafkaError as error:
                facts["keyless"] = error.code
        leader = cluster.partition_state(TABLE, 0)
        leader_id = next(n for n, state in leader.items() if state.is_leader)
        log = cluster.brokers[leader_id].logs.partitions[(TABLE, 0)].log
        facts["written"] = log.size_bytes
        await _until(lambda: log.size_bytes * 3 < facts["written"], "the topic was cleaned")
        facts["cleaned"] = log.size_bytes
        tp = TopicPartition(TABLE, 0)
        async with Consumer(runtime, cluster.bootstrap, CLIENT) as consumer:
            consumer.assign([tp])
            consumer.seek_to_beginning([tp])
            end = (await consumer.end_offsets([tp]))[tp]
            seen = []
            with trio.fail_after(WAIT_S):
                while await consumer.position(tp) < end:
                    seen += await consumer.poll(200)
        facts["offsets"] = [r.offset for r in seen]
        facts["replayed"] = {r.key: r.value for r in seen}
        facts["expected"] = expected
        await cluster.stop()
        nursery.cancel_scope.cancel()
    return facts


def test_a_topic_created_compacted_is_cleaned_and_consumed_across_its_gaps() -> None:
    facts = run(_compacted_topic, 4, seed=4)
    assert facts["keyless"] == Errors.INVALID_RECORD, facts["keyless"]
    assert facts["cleaned"] * 3 < facts["written"], (facts["cleaned"], facts["written"])
    offsets = facts["offsets"]
    assert offsets == sorted(set(offsets)), "offsets increase"
    assert len(offsets) < 40 * KEYS / 3, "the consumer read the cleaned log"
    assert offsets[0] == 0 and offsets[1] > 1, "across a gap"
    assert facts["replayed"] == facts["expected"], "the latest value of every key"
