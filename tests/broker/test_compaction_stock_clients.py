"""A topic created with cleanup.policy=compact on one broker process: the cleaner shrinks
it on disk (lz4 batches rewritten with gaps inside and between them), kafka-python and
confluent-kafka read the latest value of every key across the gaps, and the cleaned log
recovers from a restart and from a kill -9."""

from __future__ import annotations

import time
from pathlib import Path

import confluent_kafka
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from impl.broker.process import BrokerProcess, start_broker
from impl.storage.batch import iter_batches

TOPIC = "table"
KEYS = 40
ROUNDS = 50
DEADLINE_S = 60
CONFIG = ["min.insync.replicas=1", "log.cleaner.backoff.ms=200"]


def _log_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in (data_dir / f"{TOPIC}-0").glob("*.log"))


def _produce(bootstrap: str) -> tuple[dict[bytes, bytes], int]:
    """(key -> latest value, records sent): one lz4 batch per round, each round skipping
    a fifth of the keys, so the newest records of the keys end up in different batches
    and cleaning leaves batches with some of their records."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", compression_type="lz4", linger_ms=5
    )
    latest = {}
    sent = 0
    for round_ in range(ROUNDS):
        for k in (k for k in range(KEYS) if (k * 7 + round_) % 5):
            sent += 1
            key, value = b"key-%d" % k, b"round-%d-key-%d-" % (round_, k) + b"x" * 40
            producer.send(TOPIC, key=key, value=value, partition=0)
            latest[key] = value
        producer.flush(DEADLINE_S)
    producer.close()
    return latest, sent


def _partial_batches(data_dir: Path) -> int:
    """Batches on disk that lost records from inside their offset range."""
    count = 0
    for path in (data_dir / f"{TOPIC}-0").glob("*.log"):
        raw = path.read_bytes()
        count += sum(h.record_count < h.last_offset_delta + 1 for _, h in iter_batches(raw))
    return count


def _kafka_python_read(bootstrap: str, end: int) -> list[tuple[int, bytes, bytes]]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5_000,
    )
    tp = TopicPartition(TOPIC, 0)
    consumer.assign([tp])
    seen = []
    deadline = time.monotonic() + DEADLINE_S
    for message in consumer:
        seen.append((message.offset, message.key, message.value))
        if message.offset >= end - 1 or time.monotonic() > deadline:
            break
    consumer.close()
    return seen


def _confluent_read(bootstrap: str, end: int) -> list[tuple[int, bytes, bytes]]:
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "unused",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([confluent_kafka.TopicPartition(TOPIC, 0, confluent_kafka.OFFSET_BEGINNING)])
    seen = []
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline and (not seen or seen[-1][0] < end - 1):
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            seen.append((message.offset(), message.key(), message.value()))
    consumer.close()
    return seen


def _check(seen: list[tuple[int, bytes, bytes]], latest: dict[bytes, bytes], who: str) -> None:
    offsets = [o for o, _, _ in seen]
    assert offsets == sorted(set(offsets)), f"{who}: offsets increase"
    assert len(seen) < KEYS * ROUNDS / 3, f"{who} read {len(seen)}: the log was not cleaned"
    assert {k: v for _, k, v in seen} == latest, f"{who}: the latest value of every key"


def _wait_cleaned(data_dir: Path, written: int) -> int:
    deadline = time.monotonic() + DEADLINE_S
    while _log_bytes(data_dir) * 3 > written:
        assert time.monotonic() < deadline, f"not cleaned: {_log_bytes(data_dir)} of {written}"
        time.sleep(0.2)
    return _log_bytes(data_dir)


def test_stock_clients_read_a_cleaned_compacted_topic(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    broker: BrokerProcess = start_broker(0, data_dir, config=CONFIG)
    try:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)
        configs = {
            "cleanup.policy": "compact",
            "segment.bytes": "4096",
            "min.cleanable.dirty.ratio": "0.01",
        }
        admin.create_topics([NewTopic(TOPIC, 1, 1, topic_configs=configs)])
        admin.close()
        latest, end = _produce(broker.bootstrap)
        _wait_cleaned(data_dir, _log_bytes(data_dir))
        _check(_kafka_python_read(broker.bootstrap, end), latest, "kafka-python")
        _check(_confluent_read(broker.bootstrap, end), latest, "confluent-kafka")
        assert broker.stop() == 0, broker.log_path.read_text()[-2000:]
        assert _partial_batches(data_dir) > 0, "some batches keep part of their records"
        broker = start_broker(0, data_dir, config=CONFIG)
        _check(_kafka_python_read(broker.bootstrap, end), latest, "after a restart")
        broker.kill()
        broker = start_broker(0, data_dir, config=CONFIG)
        _check(_confluent_read(broker.bootstrap, end), latest, "after a kill -9")
    finally:
        broker.stop()
