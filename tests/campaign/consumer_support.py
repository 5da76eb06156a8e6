"""The motivating failure and the rebalance storm, as consumer-workload runs that the
simulator and the real-process tests share: the campaign's scheduler, recorder,
generator and clients against any bootstrap, with no nemesis."""

from __future__ import annotations

import random
from typing import Any

import trio

from impl.client.admin import create_topics, wait_for_leaders
from impl.runtime.runtime import Runtime
from jepsen_py.campaign import consumer_workload
from jepsen_py.campaign import generator as g
from jepsen_py.campaign.recorder import Recorder
from jepsen_py.campaign.scheduler import Completion, Scheduler
from jepsen_py.campaign.workloads import Target
from jepsen_py.history import Op
from model.config import Config

TOPIC = "slow"
PARTITIONS = 2
OP_TIMEOUT_S = 10.0
# Segments roll every 200 ms and retention runs every 100 ms, so retention.ms decides
# (to within a few hundred ms) when a record disappears.
TOPIC_ROLLING = {"segment.ms": "200", "segment.bytes": "4096", "min.insync.replicas": "1"}
BROKER_CONFIG = (
    "log.retention.check.interval.ms=100",
    "group.initial.rebalance.delay.ms=0",
    "group.min.session.timeout.ms=500",
    "offsets.topic.replication.factor=1",
    "offsets.topic.num.partitions=2",
)
# A slow member: 5 records per poll at 40 ms each, 25 records/s against 100 sent/s.
SLOW_MEMBER = (
    "max.poll.records=5",
    "replog.consumer.processing.ms=40",
    "fetch.max.wait.ms=50",
    "session.timeout.ms=6000",
    "heartbeat.interval.ms=500",
    "request.timeout.ms=3000",
    "default.api.timeout.ms=3000",
    "replog.consumer.crash.percent=0",
)
SENDS_PER_S = 100.0


class NoFaults:
    async def invoke(self, f: str, value: Any) -> Completion:
        raise AssertionError(f"no nemesis op expected, got {f}")


def client_config(*extra: str) -> Config:
    return Config.parse([*SLOW_MEMBER, *extra])


async def prepare(
    runtime: Runtime,
    bootstrap: str,
    config: Config,
    retention_ms: int | None,
    topic: str = TOPIC,
    group: str = consumer_workload.GROUP,
) -> None:
    """The topic, with its leaders, and the group's offsets committed at 0, so that even
    auto.offset.reset=none has a starting point. Without `retention_ms`, the topic has
    Kafka's segments (a fetch reads one segment, so small ones make small polls)."""
    topic_config = {**TOPIC_ROLLING, "retention.ms": str(retention_ms)}
    if retention_ms is None:
        topic_config = {"min.insync.replicas": "1"}
    await create_topics(runtime, bootstrap, [(topic, PARTITIONS, 1, topic_config)], config=config)
    await wait_for_leaders(runtime, bootstrap, [topic], config=config)
    await consumer_workload.start_group_at_zero(
        runtime, bootstrap, config, topic, PARTITIONS, group
    )


async def run_consumers(
    runtime: Runtime,
    bootstrap: str,
    config: Config,
    duration_s: float,
    concurrency: int = 2,
    seed: int = 0,
    topic: str = TOPIC,
    group: str = consumer_workload.GROUP,
) -> list[Op]:
    """The consumer workload's members, producers and lag monitor for `duration_s`."""
    recorder = Recorder()
    target = Target(runtime, bootstrap, config, topic, PARTITIONS)
    clients = consumer_workload.ConsumerClients(target, group)
    scheduler = Scheduler(concurrency, clients, NoFaults(), recorder, random.Random(seed))
    recorder.start_clock()
    gen = consumer_workload.client_generator(PARTITIONS, SENDS_PER_S)
    await scheduler.run(g.time_limit(duration_s, gen), OP_TIMEOUT_S)
    assert trio.current_time() - recorder.origin_s < duration_s + 2 * OP_TIMEOUT_S
    return recorder.ops


def failed_consumes(history: list[Op]) -> list[Op]:
    return [op for op in history if op.f == "consume" and op.type == "fail"]


def reset_times(result_stats: dict[str, Any]) -> list[int]:
    return [reset["time"] for reset in result_stats["resets"] if reset["from"] is not None]
