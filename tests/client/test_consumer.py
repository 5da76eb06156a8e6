"""Consumer positions: auto.offset.reset none / earliest / latest, seeks, max.poll.records."""

from __future__ import annotations

import pytest
from client_support import config, new_topic, run

from impl.broker.process import BrokerProcess
from impl.client.consumer import Consumer, ConsumerRecord
from impl.client.errors import NoOffsetForPartition, OffsetOutOfRange
from impl.client.metadata import TopicPartition
from impl.client.producer import Producer
from impl.runtime.runtime import Runtime

POLL_MS = 2_000
BEYOND_THE_END = 1_000


async def _topic_with(runtime: Runtime, bootstrap: str, count: int) -> TopicPartition:
    topic = await new_topic(runtime, bootstrap, 1)
    await _produce(runtime, bootstrap, topic, range(count))
    return TopicPartition(topic, 0)


async def _produce(runtime: Runtime, bootstrap: str, topic: str, values: range) -> None:
    async with Producer(runtime, bootstrap, config("linger.ms=0")) as producer:
        for value in values:
            await producer.send(topic, b"%d" % value, partition=0)


async def _poll_until(consumer: Consumer, count: int) -> list[ConsumerRecord]:
    records: list[ConsumerRecord] = []
    for _ in range(20):
        records += await consumer.poll(POLL_MS)
        if len(records) >= count:
            break
    return records


def test_none_raises_without_a_position_and_when_out_of_range(broker: BrokerProcess) -> None:
    async def main(runtime: Runtime) -> None:
        tp = await _topic_with(runtime, broker.bootstrap, 10)
        async with Consumer(runtime, broker.bootstrap, config("auto.offset.reset=none")) as c:
            c.assign([tp])
            with pytest.raises(NoOffsetForPartition):
                await c.poll(POLL_MS)
            c.seek(tp, BEYOND_THE_END)
            with pytest.raises(OffsetOutOfRange) as raised:
                await c.poll(POLL_MS)
            assert (raised.value.topic, raised.value.offset) == (tp.topic, BEYOND_THE_END)
            c.seek(tp, 4)
            assert [r.offset for r in await c.poll(POLL_MS)] == list(range(4, 10))

    run(main)


def test_earliest_starts_at_the_log_start_and_recovers_from_out_of_range(
    broker: BrokerProcess,
) -> None:
    async def main(runtime: Runtime) -> None:
        tp = await _topic_with(runtime, broker.bootstrap, 10)
        async with Consumer(
            runtime, broker.bootstrap, config("auto.offset.reset=earliest")
        ) as consumer:
            consumer.assign([tp])
            assert await consumer.position(tp) == 0
            consumer.seek(tp, BEYOND_THE_END)
            records = await _poll_until(consumer, 10)
            assert [r.value for r in records] == [b"%d" % i for i in range(10)]

    run(main)


def test_latest_starts_at_the_end_and_sees_only_new_records(broker: BrokerProcess) -> None:
    async def main(runtime: Runtime) -> None:
        tp = await _topic_with(runtime, broker.bootstrap, 10)
        # The broker holds an errored fetch for fetch.max.wait.ms (Kafka answers at once),
        # so the wait is kept below the poll below.
        latest = config("auto.offset.reset=latest", "fetch.max.wait.ms=50")
        async with Consumer(runtime, broker.bootstrap, latest) as c:
            c.assign([tp])
            assert await c.position(tp) == 10
            c.seek(tp, BEYOND_THE_END)
            assert await c.poll(300) == []
            assert await c.position(tp) == 10
            await _produce(runtime, broker.bootstrap, tp.topic, range(10, 15))
            records = await _poll_until(c, 5)
            assert [r.offset for r in records] == list(range(10, 15))

    run(main)


def test_seek_to_beginning_and_end_and_max_poll_records(broker: BrokerProcess) -> None:
    async def main(runtime: Runtime) -> None:
        tp = await _topic_with(runtime, broker.bootstrap, 30)
        async with Consumer(runtime, broker.bootstrap, config("max.poll.records=8")) as c:
            c.assign([tp])
            c.seek_to_beginning()
            first = await c.poll(POLL_MS)
            assert [r.offset for r in first] == list(range(8))
            c.seek_to_end([tp])
            assert await c.position(tp) == 30
            c.seek_to_beginning([tp])
            assert [r.offset for r in await c.poll(POLL_MS)] == list(range(8))

    run(main)
