"""Consumer groups on the simulator (MockClock, in-memory network, the guard): session
expiry counted on the runtime clock, and a coordinator kill, all in simulated time and
the same for the same seed."""

from __future__ import annotations

from collections.abc import Callable

import trio

from impl.broker.group_coordinator import OFFSETS_TOPIC, offsets_partition_for
from impl.client import Consumer, TopicPartition
from impl.client.admin import create_topics, wait_for_leaders
from impl.client.errors import ClientError
from impl.client.metadata import ClusterSession
from impl.sim.cluster import SimCluster
from impl.sim.guard import run
from model.config import Config

TOPIC = "events"
PARTITIONS = 4
SESSION_MS = 10_000
BROKERS = (
    "min.insync.replicas=2",
    "offsets.topic.num.partitions=3",
    "group.initial.rebalance.delay.ms=0",
)
CLIENT = Config.parse(
    [
        f"session.timeout.ms={SESSION_MS}",
        "heartbeat.interval.ms=500",
        "request.timeout.ms=3000",
        "metadata.max.age.ms=1000",
        "auto.offset.reset=earliest",
    ]
)
GROUP = "sim-group"
WAIT_S = 60


async def _ready(nursery: trio.Nursery, seed: int) -> SimCluster:
    cluster = SimCluster(3, seed=seed, config=BROKERS, topic=TOPIC)
    await cluster.start(nursery)
    await cluster.wait_for_brokers()
    runtime = cluster.runtime()
    await create_topics(runtime, cluster.bootstrap, [(TOPIC, PARTITIONS, 3, {})])
    await wait_for_leaders(runtime, cluster.bootstrap, [TOPIC])
    return cluster


async def _until(consumer: Consumer, done: Callable[[], bool]) -> None:
    with trio.fail_after(WAIT_S):
        while not done():
            await consumer.poll(100)


async def _member(
    cluster: SimCluster,
    client_id: str,
    scope: trio.CancelScope,
    task_status: trio.TaskStatus[Consumer],
) -> None:
    """A member that joins, reports itself, and polls until `scope` is cancelled, which
    it does not survive: no LeaveGroup, as when its process dies."""
    runtime = cluster.runtime()
    with scope:
        async with Consumer(runtime, cluster.bootstrap, CLIENT, client_id=client_id) as c:
            c.subscribe([TOPIC], GROUP)
            await _until(c, lambda: bool(c.assignment()))
            task_status.started(c)
            while True:
                await c.poll(100)


async def _session_expiry(seed: int) -> tuple[int, int]:
    """(simulated ms from the dead member's last poll to the survivor owning everything,
    generation then)."""
    async with trio.open_nursery() as nursery:
        cluster = await _ready(nursery, seed)
        async with Consumer(cluster.runtime(), cluster.bootstrap, CLIENT, client_id="b") as b:
            b.subscribe([TOPIC], GROUP)
            await _until(b, lambda: len(b.assignment()) == PARTITIONS)
            doomed = trio.CancelScope()
            dead = await nursery.start(_member, cluster, "a", doomed)
            await _until(b, lambda: len(b.assignment()) < PARTITIONS)
            doomed.cancel()
            assert dead.assignment(), "the dead member owned partitions"
            died_ms = cluster.runtime().clock.monotonic_ms()
            await _until(b, lambda: len(b.assignment()) == PARTITIONS)
            took_ms = cluster.runtime().clock.monotonic_ms() - died_ms
            generation = b.generation
        await cluster.stop()
        nursery.cancel_scope.cancel()
    return took_ms, generation


def test_a_dead_member_is_expired_after_its_session_timeout_in_simulated_time() -> None:
    took_ms, generation = run(_session_expiry, 11, seed=11)
    # Its last heartbeat was at most one interval before it died; the survivor learns
    # of the rebalance at its next heartbeat and rejoins.
    assert SESSION_MS - 500 <= took_ms <= SESSION_MS + 3_000, took_ms
    assert generation == 3, "generation 1: b alone; 2: a joined; 3: a expired"
    assert run(_session_expiry, 11, seed=11) == (took_ms, generation), "deterministic"


async def _coordinator_kill(seed: int) -> dict[TopicPartition, int]:
    tp = TopicPartition(TOPIC, 0)
    async with trio.open_nursery() as nursery:
        cluster = await _ready(nursery, seed)
        async with Consumer(cluster.runtime(), cluster.bootstrap, CLIENT) as consumer:
            consumer.subscribe([TOPIC], GROUP)
            await _until(consumer, lambda: len(consumer.assignment()) == PARTITIONS)
            await consumer.commit({tp: 7})
            coordinator = await _offsets_leader(cluster)
            await cluster.kill(coordinator)
            with trio.fail_after(WAIT_S):
                while True:
                    try:
                        await consumer.commit({tp: 8})
                        break
                    except ClientError:
                        await trio.sleep(0.5)
            committed = await consumer.committed([tp])
        await cluster.stop()
        nursery.cancel_scope.cancel()
    return {t: c.offset for t, c in committed.items() if c}


async def _offsets_leader(cluster: SimCluster) -> int:
    async with ClusterSession(cluster.runtime(), cluster.bootstrap, CLIENT, "probe") as s:
        await s.cluster.refresh([OFFSETS_TOPIC])
        index = offsets_partition_for(GROUP, 3)
        leader = s.cluster.leader(TopicPartition(OFFSETS_TOPIC, index))
        assert leader is not None
        return leader.leader_id


def test_commits_continue_on_the_next_coordinator_after_a_kill() -> None:
    committed = run(_coordinator_kill, 5, seed=5)
    assert committed == {TopicPartition(TOPIC, 0): 8}
