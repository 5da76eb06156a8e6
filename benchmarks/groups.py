"""Consumer-group costs on a 3-broker cluster of real processes (RF=3 offsets topic):

    .venv/bin/python benchmarks/groups.py [--commits 200] [--joins 5]

- join: subscribe() to the first assignment of a lone native member (FindCoordinator,
  JoinGroup with MEMBER_ID_REQUIRED, SyncGroup with the assignment stored acks=all);
- rebalance: a second member subscribes until both own a share, per assignor
  (cooperative-sticky takes two generations);
- commit: synchronous OffsetCommit round trips of one member (acks=all on the offsets
  topic), p50 and p99;
- failover: SIGKILL of the group's coordinator to the next successful commit (fencing
  by the controller, election of a new offsets-partition leader, its load).

Settings: group.initial.rebalance.delay.ms=0, heartbeat.interval.ms=200, the test-tuned
broker timeouts of tests/cluster (broker.session.timeout.ms=2000).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import trio

from impl.broker.group_coordinator import OFFSETS_TOPIC, offsets_partition_for
from impl.client.admin import create_topics, wait_for_leaders
from impl.client.consumer import Consumer
from impl.client.errors import ClientError
from impl.client.metadata import ClusterSession, TopicPartition
from impl.cluster.launcher import Cluster, ClusterSpec
from impl.runtime.runtime import Runtime, real_runtime
from model.config import Config

BROKER_CONFIG = (
    "broker.session.timeout.ms=2000",
    "broker.heartbeat.interval.ms=300",
    "replica.lag.time.max.ms=1500",
    "offsets.topic.num.partitions=3",
    "group.initial.rebalance.delay.ms=0",
)
CLIENT = Config.parse(
    ["session.timeout.ms=6000", "heartbeat.interval.ms=200", "request.timeout.ms=2000"]
)
TOPIC = "bench"
PARTITIONS = 6
STEP_S = 0.01
RUN_LIMIT_S = 300


async def _until(consumers: list[Consumer], done: Callable[[], bool]) -> float:
    started = trio.current_time()
    while not done():
        for consumer in consumers:
            await consumer.poll(10)
    return trio.current_time() - started


async def _join_s(runtime: Runtime, bootstrap: str, group: str) -> float:
    async with Consumer(runtime, bootstrap, CLIENT) as consumer:
        consumer.subscribe([TOPIC], group)
        return await _until([consumer], lambda: len(consumer.assignment()) == PARTITIONS)


async def _rebalance_s(runtime: Runtime, bootstrap: str, strategy: str) -> float:
    config = CLIENT.with_values(partition_assignment_strategy=strategy)
    group = f"rebalance-{strategy}"
    async with Consumer(runtime, bootstrap, config) as first:
        first.subscribe([TOPIC], group)
        await _until([first], lambda: len(first.assignment()) == PARTITIONS)
        async with Consumer(runtime, bootstrap, config) as second:
            second.subscribe([TOPIC], group)

            def shared() -> bool:
                a, b = set(first.assignment()), set(second.assignment())
                return bool(a and b) and len(a | b) == PARTITIONS and not a & b

            return await _until([first, second], shared)


async def _commit_latencies_ms(runtime: Runtime, bootstrap: str, count: int) -> list[float]:
    tp = TopicPartition(TOPIC, 0)
    latencies = []
    async with Consumer(runtime, bootstrap, CLIENT, group_id="commits") as consumer:
        consumer.assign([tp])
        for offset in range(count):
            started = trio.current_time()
            await consumer.commit({tp: offset})
            latencies.append((trio.current_time() - started) * 1000)
    return latencies


async def _coordinator(runtime: Runtime, bootstrap: str, group: str) -> int:
    async with ClusterSession(runtime, bootstrap, CLIENT, "bench") as session:
        await session.cluster.refresh([OFFSETS_TOPIC])
        leader = session.cluster.leader(
            TopicPartition(OFFSETS_TOPIC, offsets_partition_for(group, 3))
        )
        assert leader is not None, "the offsets partition has a leader"
        return leader.leader_id


async def _failover_s(runtime: Runtime, cluster: Cluster) -> float:
    tp = TopicPartition(TOPIC, 0)
    config = CLIENT.with_values(default_api_timeout_ms=30_000)
    async with Consumer(runtime, cluster.bootstrap, config, group_id="failover") as consumer:
        consumer.assign([tp])
        await consumer.commit({tp: 1})
        victim = await _coordinator(runtime, cluster.bootstrap, "failover")
        cluster.kill(victim)
        killed = trio.current_time()
        while True:
            try:
                await consumer.commit({tp: 2})
                return trio.current_time() - killed
            except ClientError:
                await trio.sleep(STEP_S)


async def _bench(cluster: Cluster, commits: int, joins: int) -> None:
    runtime = real_runtime(0)
    bootstrap = cluster.bootstrap
    await create_topics(runtime, bootstrap, [(TOPIC, PARTITIONS, 3, {})])
    await wait_for_leaders(runtime, bootstrap, [TOPIC])
    await _join_s(runtime, bootstrap, "warm-up")
    join = [await _join_s(runtime, bootstrap, f"join-{i}") for i in range(joins)]
    print(f"join: median {statistics.median(join) * 1000:.0f} ms over {joins} groups")
    for strategy in ("range", "cooperative-sticky"):
        elapsed = await _rebalance_s(runtime, bootstrap, strategy)
        print(f"rebalance to two members ({strategy}): {elapsed * 1000:.0f} ms")
    latencies = sorted(await _commit_latencies_ms(runtime, bootstrap, commits))
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(
        f"commit: p50 {statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms ({commits} commits)"
    )
    print(f"coordinator failover: {await _failover_s(runtime, cluster):.2f} s to the next commit")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=200)
    parser.add_argument("--joins", type=int, default=5)
    args = parser.parse_args(argv)
    if args.commits < 1 or args.joins < 1:
        parser.error("--commits and --joins must be >= 1")
    with tempfile.TemporaryDirectory() as root:
        spec = ClusterSpec(Path(root), brokers=3, controllers=0, config=BROKER_CONFIG)
        cluster = Cluster.planned(spec).start()
        try:
            time.sleep(3)
            trio.run(_bounded, cluster, args.commits, args.joins)
        finally:
            cluster.stop()
    return 0


async def _bounded(cluster: Cluster, commits: int, joins: int) -> None:
    with trio.fail_after(RUN_LIMIT_S):
        await _bench(cluster, commits, joins)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
