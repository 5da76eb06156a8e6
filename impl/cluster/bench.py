"""`replog bench cluster`: what replication costs, on three broker processes.

- produce throughput and per-request latency for RF=3, acks=all, min.insync.replicas=2
  next to RF=1, acks=1 on the same cluster in the same run (the ratio is the figure);
- failover: kill -9 the leader of an RF=3 partition, time until the first acks=all
  produce succeeds on its successor; p50 and max over `--kills` kills (each victim is
  restarted and back in the ISR before the next).
The load runs in a separate process (`replog bench broker --load produce`).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from contextlib import suppress
from pathlib import Path

import trio

from impl.broker.bench import load_process
from impl.client.admin import create_topics, wait_for_leaders
from impl.client.errors import ClientError
from impl.client.metadata import ClusterSession, TopicPartition
from impl.client.producer import Producer
from impl.cluster.launcher import Cluster, ClusterSpec
from impl.runtime.runtime import real_runtime
from model.arguments import integer
from model.config import Config

# Tuned for tests and benchmarks: a dead broker is fenced within ~1 s.
CLUSTER_CONFIG = (
    "broker.session.timeout.ms=1000",
    "broker.heartbeat.interval.ms=200",
    "replica.lag.time.max.ms=3000",
)
FAILOVER_TIMEOUT_S = 60
PROBE_INTERVAL_S = 0.02


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="replog bench cluster", description=__doc__)
    parser.add_argument(
        "--records", type=integer(1), default=200_000, help="100-byte records"
    )
    parser.add_argument("--partitions", type=integer(1), default=3)
    parser.add_argument(
        "--kills", type=integer(0), default=10, help="leader kills (0: no failover figure)"
    )
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="replog-bench-cluster-") as root:
        cluster = Cluster.planned(ClusterSpec(Path(root), config=CLUSTER_CONFIG)).start()
        try:
            trio.run(_create, cluster.bootstrap, args.partitions)
            base = ["--bootstrap", cluster.bootstrap]
            single = load_process("produce", [*base, "--acks", "1"], "single", 100, args.records)
            replicated = load_process(
                "produce", [*base, "--acks", "all"], "replicated", 100, args.records
            )
            failovers = [_failover(cluster) for _ in range(args.kills)]
        finally:
            cluster.stop()
    _print(single, replicated, failovers)
    return 0


async def _create(bootstrap: str, partitions: int) -> None:
    runtime = real_runtime()
    topics = [
        ("single", partitions, 1, {}),
        ("replicated", partitions, 3, {"min.insync.replicas": "2"}),
        ("failover", 1, 3, {"min.insync.replicas": "2"}),
    ]
    await wait_for_leaders(runtime, bootstrap, [])
    await create_topics(runtime, bootstrap, topics)
    await wait_for_leaders(runtime, bootstrap, [name for name, *_ in topics])


def _failover(cluster: Cluster) -> float:
    leader = trio.run(_leader, cluster.bootstrap)
    cluster.kill(leader)
    seconds = trio.run(_time_to_first_ack, cluster.bootstrap)
    cluster.restart(leader)
    trio.run(_wait_until_registered, cluster, leader)
    return seconds


async def _leader(bootstrap: str) -> int:
    async with ClusterSession(real_runtime(), bootstrap, Config(), "bench") as session:
        await session.cluster.refresh(["failover"])
        entry = session.cluster.leader(TopicPartition("failover", 0))
        assert entry is not None and entry.leader_id >= 0, "the failover topic has a leader"
        return entry.leader_id


async def _time_to_first_ack(bootstrap: str) -> float:
    """From now (just after the kill) until an acks=all produce succeeds."""
    config = Config.parse(
        ["acks=all", "linger.ms=0", "request.timeout.ms=1000", "delivery.timeout.ms=2000"]
    )
    started = trio.current_time()
    with trio.fail_after(FAILOVER_TIMEOUT_S):
        async with Producer(real_runtime(), bootstrap, config) as producer:
            while True:
                with suppress(ClientError):
                    await (await producer.send("failover", b"probe")).wait()
                    return trio.current_time() - started
                await trio.sleep(PROBE_INTERVAL_S)


async def _wait_until_registered(cluster: Cluster, restarted: int) -> None:
    """Until the restarted broker is registered and unfenced again."""
    with trio.fail_after(FAILOVER_TIMEOUT_S):
        while True:
            async with ClusterSession(real_runtime(), cluster.bootstrap, Config(), "bench") as s:
                with suppress(ClientError):
                    await s.cluster.refresh(["failover"])
                    if restarted in s.cluster.brokers:
                        return
            await trio.sleep(0.2)


def _print(single: dict, replicated: dict, failovers: list[float]) -> None:
    ratio = 100 * replicated["records_per_s"] / single["records_per_s"]
    print(f"{'figure':<28}{'records/s':>12}{'MB/s':>8}  notes")
    for name, r in (("RF=1 acks=1", single), ("RF=3 acks=all min.isr=2", replicated)):
        print(f"{name:<28}{r['records_per_s']:>12,.0f}{r['mb_per_s']:>8.1f}  {r['note']}")
    print(f"replicated / unreplicated: {ratio:.0f}%")
    if failovers:
        p50 = statistics.median(failovers)
        print(
            f"failover (kill -9 leader -> first acks=all ack): p50 {p50:.2f} s, "
            f"max {max(failovers):.2f} s over {len(failovers)} kills"
        )
