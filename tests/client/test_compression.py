"""Every Kafka codec end to end against a broker process: batches confluent-kafka
(librdkafka), kafka-python and replog's native producer compress with gzip, snappy, lz4
and zstd are stored and read back, value for value, by confluent-kafka and the native
consumer."""

from __future__ import annotations

import time

import confluent_kafka
import pytest
from client_support import TEST_TIMEOUT_S, config, consume_all, new_topic, run
from kafka import KafkaProducer

from impl.broker.process import BrokerProcess
from impl.client.producer import Producer
from impl.runtime.fs import RealFileSystem
from impl.runtime.runtime import Runtime
from impl.storage.dump import dump_file

CODECS = ["gzip", "snappy", "lz4", "zstd"]
RECORDS = 300
PARTITIONS = 2


def _values(label: str) -> list[bytes]:
    # Repetitive, so every client really compresses (kafka-python and librdkafka send a
    # batch plain when the codec would not shrink it).
    return [f"{label} record {i} ".encode() * (1 + i % 9) for i in range(RECORDS)]


def _fresh_topic(broker: BrokerProcess, configs: dict[str, str] | None = None) -> str:
    async def main(runtime: Runtime) -> str:
        return await new_topic(runtime, broker.bootstrap, PARTITIONS, configs)

    return run(main)


def _stored_codecs(broker: BrokerProcess, topic: str) -> set[str]:
    """The codecs of the topic's batches on disk, as `replog dump-log` reads them, once
    it decoded every record of them."""
    codecs = set()
    for path in broker.data_dir.glob(f"**/{topic}-*/*.log"):
        for entry in dump_file(RealFileSystem(), str(path), print_data=True):
            assert entry["isvalid"] and entry["records"], entry
            codecs.add(entry["compresscodec"])
    return codecs


def _native_values(broker: BrokerProcess, topic: str) -> list[bytes]:
    async def main(runtime: Runtime) -> list[bytes]:
        records = await consume_all(runtime, broker.bootstrap, topic, PARTITIONS, RECORDS)
        return [r.value or b"" for r in records]

    return run(main)


def _confluent_values(broker: BrokerProcess, topic: str) -> list[bytes]:
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"compression-{topic}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([confluent_kafka.TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    values: list[bytes] = []
    deadline = time.monotonic() + TEST_TIMEOUT_S
    try:
        while len(values) < RECORDS and time.monotonic() < deadline:
            for message in consumer.consume(RECORDS, timeout=0.5):
                assert message.error() is None, message.error()
                values.append(message.value())
    finally:
        consumer.close()
    return values


def _confluent_produce(broker: BrokerProcess, topic: str, codec: str, sent: list[bytes]) -> None:
    errors: list[confluent_kafka.KafkaError] = []
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "compression.type": codec,
            # Sequence numbers checked batch after batch: a recompressed batch keeps them.
            "enable.idempotence": True,
            "linger.ms": 20,
            "message.timeout.ms": TEST_TIMEOUT_S * 1000,
        }
    )
    for i, value in enumerate(sent):
        producer.produce(
            topic, value, key=b"k%d" % i, on_delivery=lambda e, _: e and errors.append(e)
        )
    assert producer.flush(TEST_TIMEOUT_S) == 0
    assert errors == []


@pytest.mark.parametrize("codec", CODECS)
def test_confluent_kafka_codec_round_trips(broker: BrokerProcess, codec: str) -> None:
    topic = _fresh_topic(broker)
    sent = _values(codec)
    _confluent_produce(broker, topic, codec, sent)
    assert _stored_codecs(broker, topic) == {codec}
    assert sorted(_confluent_values(broker, topic)) == sorted(sent)
    assert sorted(_native_values(broker, topic)) == sorted(sent)


@pytest.mark.parametrize("codec", CODECS)
def test_native_producer_codec_round_trips(broker: BrokerProcess, codec: str) -> None:
    sent = _values(f"native {codec}")

    async def main(runtime: Runtime) -> str:
        topic = await new_topic(runtime, broker.bootstrap, PARTITIONS)
        producer_config = config("acks=all", f"compression.type={codec}", "linger.ms=5")
        async with Producer(runtime, broker.bootstrap, producer_config) as producer:
            deliveries = [await producer.send(topic, value) for value in sent]
        for delivery in deliveries:
            await delivery.wait()
        return topic

    topic = run(main)
    assert _stored_codecs(broker, topic) == {codec}
    assert sorted(_confluent_values(broker, topic)) == sorted(sent)
    assert sorted(_native_values(broker, topic)) == sorted(sent)


def test_kafka_python_gzip_round_trips(broker: BrokerProcess) -> None:
    """kafka-python's gzip only: its snappy and zstd need libraries replog does not use."""
    topic = _fresh_topic(broker)
    sent = _values("kafka-python gzip")
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap, compression_type="gzip", acks="all", linger_ms=20
    )
    futures = [producer.send(topic, value) for value in sent]
    for future in futures:
        future.get(timeout=TEST_TIMEOUT_S)
    producer.close(timeout=TEST_TIMEOUT_S)
    assert _stored_codecs(broker, topic) == {"gzip"}
    assert sorted(_confluent_values(broker, topic)) == sorted(sent)
    assert sorted(_native_values(broker, topic)) == sorted(sent)


@pytest.mark.parametrize(
    ("topic_setting", "producer_codec", "stored"),
    [
        ("zstd", "lz4", "zstd"),
        ("gzip", "snappy", "gzip"),
        ("snappy", "gzip", "snappy"),
        ("lz4", "zstd", "lz4"),
        ("uncompressed", "gzip", "none"),
        ("producer", "snappy", "snappy"),
    ],
)
def test_a_topics_compression_type_recompresses_on_append(
    broker: BrokerProcess, topic_setting: str, producer_codec: str, stored: str
) -> None:
    """Kafka's topic-level compression.type: a codec or uncompressed makes the leader
    rewrite every batch in it; producer keeps each batch as its producer wrote it."""
    topic = _fresh_topic(broker, {"compression.type": topic_setting})
    sent = _values(f"{producer_codec} into {topic_setting}")
    _confluent_produce(broker, topic, producer_codec, sent)
    assert _stored_codecs(broker, topic) == {stored}
    assert sorted(_confluent_values(broker, topic)) == sorted(sent)
    assert sorted(_native_values(broker, topic)) == sorted(sent)
