"""Stock Kafka clients against one broker process: kafka-python and confluent-kafka
(librdkafka) each create a topic, produce 10 000 keyed lz4 records with acks=all and
read every one back from the beginning."""

from __future__ import annotations

import logging
import time

import confluent_kafka
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.admin import NewTopic as KafkaPythonNewTopic

from impl.broker.process import BrokerProcess
from model.partitioner import default_partition

RECORDS = 10_000
PARTITIONS = 3
DEADLINE_S = 60


def expected_records(prefix: str) -> list[tuple[bytes, bytes, bytes]]:
    """(key, value, header value): 50 keys, so every partition sees many records."""
    return [
        (f"key-{i % 50}".encode(), f"{prefix}-{i}".encode(), f"h{i}".encode())
        for i in range(RECORDS)
    ]


def check_consumed(
    sent: list[tuple[bytes, bytes, bytes]],
    consumed: list[tuple[int, int, bytes, bytes, list[tuple[str, bytes]]]],
) -> None:
    """Every record exactly once, in its key's partition, in send order per partition."""
    assert len(consumed) == len(sent), f"consumed {len(consumed)} of {len(sent)}"
    by_partition: dict[int, list[tuple[int, bytes, bytes, bytes]]] = {}
    for partition, offset, key, value, headers in consumed:
        assert headers == [("h", headers[0][1])], headers
        by_partition.setdefault(partition, []).append((offset, key, value, headers[0][1]))
    for partition, rows in by_partition.items():
        assert [r[0] for r in rows] == list(range(len(rows))), "offsets 0.. with no gap"
        expected = [(k, v, h) for k, v, h in sent if default_partition(k, PARTITIONS) == partition]
        assert [(k, v, h) for _, k, v, h in rows] == expected, f"partition {partition} order"
    assert sum(len(rows) for rows in by_partition.values()) == len(sent)


def test_kafka_python_round_trip(broker: BrokerProcess):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)
    admin.create_topics([KafkaPythonNewTopic("kafka-python", PARTITIONS, 1)])
    admin.close()
    sent = expected_records("kp")
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        acks="all",
        compression_type="lz4",
        enable_idempotence=True,
        linger_ms=5,
    )
    futures = [
        producer.send("kafka-python", key=k, value=v, headers=[("h", h)]) for k, v, h in sent
    ]
    producer.flush(DEADLINE_S)
    metadata = [f.get(timeout=DEADLINE_S) for f in futures]
    producer.close()
    for m, (key, _, _) in zip(metadata, sent, strict=True):
        assert m.partition == default_partition(key, PARTITIONS)

    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5_000,
    )
    consumer.assign([TopicPartition("kafka-python", p) for p in range(PARTITIONS)])
    consumed = []
    deadline = time.monotonic() + DEADLINE_S
    for message in consumer:
        consumed.append(
            (message.partition, message.offset, message.key, message.value, list(message.headers))
        )
        if len(consumed) >= RECORDS or time.monotonic() > deadline:
            break
    consumer.close()
    check_consumed(sent, consumed)


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_confluent_kafka_round_trip(broker: BrokerProcess):
    collect = Collect()
    logger = logging.getLogger("replog.test.librdkafka")
    logger.addHandler(collect)
    logger.setLevel(logging.DEBUG)
    common = {"bootstrap.servers": broker.bootstrap, "logger": logger}

    admin = AdminClient(common)
    for future in admin.create_topics([NewTopic("confluent", PARTITIONS, 1)]).values():
        assert future.result(DEADLINE_S) is None

    sent = expected_records("ck")
    delivered: list[tuple[bytes, int, int]] = []
    errors: list[object] = []

    def on_delivery(error: object, message: confluent_kafka.Message) -> None:
        if error is not None:
            errors.append(error)
        else:
            delivered.append((message.key(), message.partition(), message.offset()))

    producer = confluent_kafka.Producer(
        common
        | {
            "acks": "all",
            "compression.type": "lz4",
            "enable.idempotence": True,
            "linger.ms": 5,
            # librdkafka's default partitioner is CRC32-based; Java's (and replog's) murmur2.
            "partitioner": "murmur2_random",
        }
    )
    for key, value, header in sent:
        producer.produce(
            "confluent", key=key, value=value, headers=[("h", header)], on_delivery=on_delivery
        )
        producer.poll(0)
    assert producer.flush(DEADLINE_S) == 0
    assert errors == []
    assert len(delivered) == RECORDS
    assert all(p == default_partition(k, PARTITIONS) for k, p, _ in delivered)

    consumer = confluent_kafka.Consumer(
        common
        | {"group.id": "replog-test", "enable.auto.commit": False, "auto.offset.reset": "earliest"}
    )
    consumer.assign([confluent_kafka.TopicPartition("confluent", p, 0) for p in range(PARTITIONS)])
    consumed = []
    deadline = time.monotonic() + DEADLINE_S
    while len(consumed) < RECORDS and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        assert message.error() is None, message.error()
        consumed.append(
            (
                message.partition(),
                message.offset(),
                message.key(),
                message.value(),
                message.headers(),
            )
        )
    consumer.close()
    check_consumed(sent, consumed)
    problems = [
        line for line in collect.lines if "error" in line.lower() or "unsupported" in line.lower()
    ]
    assert problems == [], problems
