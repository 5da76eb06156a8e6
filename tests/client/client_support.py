"""Shared helpers of the client tests: topics, bounded runs, record checks."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from impl.client.admin import create_topics, wait_for_leaders
from impl.client.consumer import Consumer, ConsumerRecord
from impl.client.metadata import TopicPartition
from impl.runtime.runtime import Runtime, real_runtime
from model.config import Config

# Every network loop of a test is bounded by this, so a hang fails instead of stalling CI.
TEST_TIMEOUT_S = 30
SINGLE_BROKER_CONFIG = ["min.insync.replicas=1"]
T = TypeVar("T")
_topic_numbers = itertools.count()


def run(main: Callable[[Runtime], Awaitable[T]], seed: int = 0) -> T:
    """`main(runtime)` under trio, failing after TEST_TIMEOUT_S."""

    async def bounded() -> T:
        with trio.fail_after(TEST_TIMEOUT_S):
            return await main(real_runtime(seed))

    return trio.run(bounded)


def config(*assignments: str) -> Config:
    return Config.parse(list(assignments))


async def new_topic(
    runtime: Runtime, bootstrap: str, partitions: int, configs: dict[str, str] | None = None
) -> str:
    """A fresh topic with live leaders; names never repeat within a test run."""
    name = f"topic-{next(_topic_numbers)}"
    await create_topics(runtime, bootstrap, [(name, partitions, 1, configs or {})])
    await wait_for_leaders(runtime, bootstrap, [name])
    return name


async def consume_all(
    runtime: Runtime, bootstrap: str, topic: str, partitions: int, expected: int
) -> list[ConsumerRecord]:
    """Every record of the topic from the beginning, stopping at `expected` records or
    once a poll returns nothing after the end offsets were reached."""
    records: list[ConsumerRecord] = []
    consumer_config = config("auto.offset.reset=earliest", "fetch.max.wait.ms=100")
    async with Consumer(runtime, bootstrap, consumer_config) as consumer:
        consumer.assign(TopicPartition(topic, p) for p in range(partitions))
        ends = await consumer.end_offsets(consumer.assignment())
        while len(records) < expected:
            batch = await consumer.poll(500)
            records += batch
            if not batch and all([await consumer.position(tp) >= end for tp, end in ends.items()]):
                break
    return records
