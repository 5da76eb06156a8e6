"""offsets.retention.minutes (KIP-211) on the simulator: a group with members keeps its
offsets however old; an empty group loses them once the retention passed since it became
empty (a standalone committer's since its commit); the tombstones are replicated, so the
next coordinator after a kill knows them expired too, and the cleaner drops them."""

from __future__ import annotations

import trio

from impl.broker.group_coordinator import OFFSETS_TOPIC
from impl.client import Consumer, TopicPartition
from impl.client.admin import create_topics, wait_for_leaders
from impl.client.errors import ClientError
from impl.client.metadata import ClusterSession
from impl.protocol import group_data
from impl.sim.cluster import SimCluster
from impl.sim.guard import run
from impl.storage.batch import decode_records
from model.config import Config

TOPIC = "events"
RETENTION_S = 60
BROKERS = (
    "min.insync.replicas=2",
    "offsets.topic.num.partitions=1",
    # About one batch per segment, so that the cleaner gets to the tombstones soon.
    "offsets.topic.segment.bytes=200",
    f"offsets.retention.minutes={RETENTION_S // 60}",
    "offsets.retention.check.interval.ms=1000",
    "log.cleaner.backoff.ms=1000",
    "delete.retention.ms=1000",
    "group.initial.rebalance.delay.ms=0",
)
CLIENT = Config.parse(
    [
        "request.timeout.ms=3000",
        "metadata.max.age.ms=1000",
        "session.timeout.ms=10000",
        "heartbeat.interval.ms=1000",
    ]
)
WAIT_S = 60
TP = TopicPartition(TOPIC, 0)


async def _retrying(action):
    with trio.fail_after(WAIT_S):
        while True:
            try:
                return await action()
            except ClientError:
                await trio.sleep(0.5)


async def _committed(cluster: SimCluster, group: str) -> int | None:
    async with Consumer(cluster.runtime(), cluster.bootstrap, CLIENT, group_id=group) as c:
        committed = await _retrying(lambda: c.committed([TP]))
    found = committed.get(TP)
    return None if found is None else found.offset


async def _offsets_leader(cluster: SimCluster) -> int:
    async with ClusterSession(cluster.runtime(), cluster.bootstrap, CLIENT, "probe") as s:
        with trio.fail_after(WAIT_S):
            while True:
                await s.cluster.refresh([OFFSETS_TOPIC])
                leader = s.cluster.leader(TopicPartition(OFFSETS_TOPIC, 0))
                if leader is not None and cluster.brokers[leader.leader_id] is not None:
                    return leader.leader_id
                await trio.sleep(0.5)


def _groups_in_log(cluster: SimCluster, node: int) -> set[str]:
    """The groups any record of the offsets partition on `node` still names."""
    broker = cluster.brokers[node]
    assert broker is not None
    log = broker.logs.partitions[(OFFSETS_TOPIC, 0)].log
    groups = set()
    for _, raw in log.batches():
        for _, record in decode_records(raw):
            schema = (
                group_data.GROUP_METADATA_KEY
                if group_data.read_version(record.key) == group_data.GROUP_METADATA_KEY_VERSION
                else group_data.OFFSET_COMMIT_KEY
            )
            groups.add(group_data.decode(schema, record.key)[1]["group"])
    return groups


async def _scenario(seed: int) -> dict[str, object]:
    seen: dict[str, object] = {}
    async with trio.open_nursery() as nursery:
        cluster = SimCluster(3, seed=seed, config=BROKERS, topic=TOPIC)
        await cluster.start(nursery)
        await cluster.wait_for_brokers()
        runtime = cluster.runtime()
        await create_topics(runtime, cluster.bootstrap, [(TOPIC, 1, 3, {})])
        await wait_for_leaders(runtime, cluster.bootstrap, [TOPIC])
        async with Consumer(runtime, cluster.bootstrap, CLIENT, group_id="solo") as solo:
            await _retrying(lambda: solo.commit({TP: 11}))
        member = Consumer(runtime, cluster.bootstrap, CLIENT)
        async with member:
            member.subscribe([TOPIC], "live")
            with trio.fail_after(WAIT_S):
                while not member.assignment():
                    await member.poll(100)
            await _retrying(lambda: member.commit({TP: 22}))
            with trio.fail_after(WAIT_S * 3):
                end = trio.current_time() + RETENTION_S * 1.5
                while trio.current_time() < end:
                    await member.poll(500)
            seen["solo_after_retention"] = await _committed(cluster, "solo")
            seen["live_while_a_member"] = await _committed(cluster, "live")
        left_at = trio.current_time()
        await trio.sleep(RETENTION_S / 2)
        seen["live_half_a_retention_after_leaving"] = await _committed(cluster, "live")
        await trio.sleep(left_at + RETENTION_S + 5 - trio.current_time())
        seen["live_after_retention"] = await _committed(cluster, "live")
        async with Consumer(runtime, cluster.bootstrap, CLIENT, group_id="later") as later:
            await _retrying(lambda: later.commit({TP: 33}))
        coordinator = await _offsets_leader(cluster)
        seen["groups_before_cleaning"] = _groups_in_log(cluster, coordinator)
        await trio.sleep(10)
        seen["groups_after_cleaning"] = _groups_in_log(cluster, coordinator)
        await cluster.kill(coordinator)
        seen["after_failover"] = (
            await _committed(cluster, "solo"),
            await _committed(cluster, "live"),
        )
        await cluster.stop()
        nursery.cancel_scope.cancel()
    return seen


def test_offsets_expire_only_in_empty_groups_and_stay_expired_after_a_failover() -> None:
    seen = run(_scenario, 8, seed=8)
    assert seen["solo_after_retention"] is None, seen
    assert seen["live_while_a_member"] == 22, seen
    assert seen["live_half_a_retention_after_leaving"] == 22, seen
    assert seen["live_after_retention"] is None, seen
    assert seen["groups_before_cleaning"] == {"solo", "live", "later"}, seen
    assert seen["groups_after_cleaning"] == {"later"}, "the cleaner dropped the tombstones"
    assert seen["after_failover"] == (None, None), seen
