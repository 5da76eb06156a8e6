"""Native producer -> broker -> native consumer, record for record."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict

import pytest
import trio
from client_support import config, consume_all, new_topic, run

from impl.broker.process import BrokerProcess
from impl.client.consumer import Consumer
from impl.client.errors import DefiniteFailure, RecordTooLarge
from impl.client.metadata import TopicPartition
from impl.client.producer import Producer
from impl.runtime.runtime import Runtime
from model.partitioner import default_partition

RECORDS = 10_000
PARTITIONS = 6


def _record(i: int) -> tuple[bytes, bytes, tuple[tuple[str, bytes | None], ...]]:
    key = f"key-{i % 997}".encode()
    value = f"value-{i}-".encode() * (1 + i % 7)
    headers = (("index", str(i).encode()), ("empty", None)) if i % 3 else ()
    return key, value, headers


def test_ten_thousand_keyed_lz4_records_round_trip(broker: BrokerProcess) -> None:
    async def main(runtime: Runtime) -> None:
        topic = await new_topic(runtime, broker.bootstrap, PARTITIONS)
        producer_config = config("acks=all", "compression.type=lz4", "linger.ms=5")
        async with Producer(runtime, broker.bootstrap, producer_config) as producer:
            deliveries = []
            for i in range(RECORDS):
                key, value, headers = _record(i)
                deliveries.append(await producer.send(topic, value, key=key, headers=headers))
        sent = [delivery.metadata() for delivery in deliveries]
        records = await consume_all(runtime, broker.bootstrap, topic, PARTITIONS, RECORDS)

        assert len(records) == RECORDS
        by_offset = {(r.partition, r.offset): r for r in records}
        for i, metadata in enumerate(sent):
            key, value, headers = _record(i)
            assert metadata.partition == default_partition(key, PARTITIONS)
            record = by_offset[(metadata.partition, metadata.offset)]
            assert (record.key, record.value, record.headers) == (key, value, headers)
            assert record.timestamp_ms == metadata.timestamp_ms
        for partition in range(PARTITIONS):
            offsets = [r.offset for r in records if r.partition == partition]
            assert offsets == list(range(len(offsets))), "per-partition order and no gaps"
            indexes = [i for i, m in enumerate(sent) if m.partition == partition]
            assert [sent[i].offset for i in indexes] == sorted(sent[i].offset for i in indexes)

    run(main)


@pytest.mark.parametrize("acks", ["0", "1"])
def test_acks_zero_and_one_deliver_every_record(broker: BrokerProcess, acks: str) -> None:
    async def main(runtime: Runtime) -> None:
        topic = await new_topic(runtime, broker.bootstrap, 2)
        async with Producer(runtime, broker.bootstrap, config(f"acks={acks}")) as producer:
            deliveries = [await producer.send(topic, b"%d" % i) for i in range(500)]
        places = {(d.metadata().partition, d.metadata().offset) for d in deliveries}
        if acks == "0":
            assert {offset for _, offset in places} == {-1}, "acks=0: the broker does not say"
        else:
            assert len(places) == 500
        records = await consume_all(runtime, broker.bootstrap, topic, 2, 500)
        assert Counter(r.value for r in records) == Counter(b"%d" % i for i in range(500))

    run(main)


def test_linger_batches_records_and_batch_size_splits_them(broker: BrokerProcess) -> None:
    async def requests_for(runtime: Runtime, topic: str, *assignments: str) -> int:
        latencies: list[float] = []
        producer = Producer(
            runtime,
            broker.bootstrap,
            config(*assignments),
            request_observer=lambda latency_ms, records: latencies.append(latency_ms),
        )
        async with producer:
            for _ in range(100):
                await producer.send(topic, b"x" * 100, partition=0)
        return len(latencies)

    async def main(runtime: Runtime) -> None:
        topic = await new_topic(runtime, broker.bootstrap, 1)
        assert await requests_for(runtime, topic, "linger.ms=200") == 1
        assert await requests_for(runtime, topic, "linger.ms=200", "batch.size=1300") >= 10

    run(main)


def test_keyless_records_stick_to_a_partition_per_batch(broker: BrokerProcess) -> None:
    async def main(runtime: Runtime) -> None:
        topic = await new_topic(runtime, broker.bootstrap, 4)
        producer_config = config("batch.size=2000", "linger.ms=50")
        async with Producer(runtime, broker.bootstrap, producer_config) as producer:
            deliveries = [await producer.send(topic, b"v" * 100) for _ in range(400)]
        partitions = [d.metadata().partition for d in deliveries]
        runs = sum(1 for a, b in itertools.pairwise(partitions) if a != b) + 1
        assert set(partitions) == {0, 1, 2, 3}, "spread over every partition"
        assert runs <= 400 // 10, "consecutive keyless records share a partition"

    run(main)


def test_consumer_skips_records_below_the_position_inside_a_batch(
    broker: BrokerProcess,
) -> None:
    async def main(runtime: Runtime) -> None:
        topic = await new_topic(runtime, broker.bootstrap, 1)
        async with Producer(runtime, broker.bootstrap, config("linger.ms=100")) as producer:
            for i in range(50):
                await producer.send(topic, b"%d" % i, partition=0)
        tp = TopicPartition(topic, 0)
        async with Consumer(runtime, broker.bootstrap, config("max.poll.records=7")) as consumer:
            consumer.assign([tp])
            consumer.seek(tp, 23)
            records = await consumer.poll(5_000)
            assert [r.offset for r in records] == list(range(23, 30))
            assert await consumer.position(tp) == 30
            assert await consumer.beginning_offsets([tp]) == {tp: 0}
            assert await consumer.end_offsets([tp]) == {tp: 50}

    run(main)


def test_records_larger_than_the_limits_fail_definitely(broker: BrokerProcess) -> None:
    async def main(runtime: Runtime) -> None:
        topic = await new_topic(runtime, broker.bootstrap, 1, {"max.message.bytes": "2000"})
        producer_config = config("max.request.size=100000", "linger.ms=0")
        async with Producer(runtime, broker.bootstrap, producer_config) as producer:
            too_big_here = await producer.send(topic, b"x" * 200_000)
            too_big_there = await producer.send(topic, b"x" * 50_000)
            fine = await producer.send(topic, b"x" * 100)
        with pytest.raises(RecordTooLarge):
            too_big_here.metadata()
        with pytest.raises(DefiniteFailure, match="MESSAGE_TOO_LARGE"):
            await too_big_there.wait()
        assert fine.metadata().offset == 0

    run(main)


def test_delivery_order_per_partition_matches_send_order(broker: BrokerProcess) -> None:
    async def main(runtime: Runtime) -> None:
        topic = await new_topic(runtime, broker.bootstrap, 3)
        producer_config = config("batch.size=500", "linger.ms=1")
        sent: dict[int, list[int]] = defaultdict(list)
        async with Producer(runtime, broker.bootstrap, producer_config) as producer:
            deliveries = []
            for i in range(2_000):
                deliveries.append(await producer.send(topic, b"%d" % i, key=b"%d" % i))
                if i % 100 == 0:
                    await trio.sleep(0.002)
        for delivery in deliveries:
            sent[delivery.metadata().partition].append(delivery.metadata().offset)
        for offsets in sent.values():
            assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)

    run(main)
