"""Topic configs through stock clients against one broker process: kafka-python's and
confluent-kafka's admin create topics with max.message.bytes and message.timestamp.type
and read them back; a bad value is INVALID_CONFIG naming the key; confluent-kafka's
producer gets MESSAGE_TOO_LARGE for an oversized record (a delivery error, not endless
retries) and its consumer reads a LogAppendTime topic's records with the broker's time."""

from __future__ import annotations

import re
import time

import pytest

from impl.broker.process import BrokerProcess

DEADLINE_S = 10
SETTINGS = {"max.message.bytes": "2000", "message.timestamp.type": "LogAppendTime"}
# The broker's wall clock runs with its monotonic one from start-up: close to ours.
CLOCK_SLACK_MS = 1_000


def test_kafka_python_creates_with_topic_configs(broker: BrokerProcess) -> None:
    admin_module = pytest.importorskip("kafka.admin")
    admin = admin_module.KafkaAdminClient(
        bootstrap_servers=broker.bootstrap, request_timeout_ms=DEADLINE_S * 1000
    )
    try:
        admin.create_topics([admin_module.NewTopic("kp-configs", 1, 1, topic_configs=SETTINGS)])
        resource = admin_module.ConfigResource(admin_module.ConfigResourceType.TOPIC, "kp-configs")
        found = admin.describe_configs([resource])["topic"]["kp-configs"]
        errors = pytest.importorskip("kafka.errors")
        with pytest.raises(errors.InvalidConfigurationError, match=re.escape("max.message.bytes")):
            bad = {"max.message.bytes": "-5"}
            admin.create_topics([admin_module.NewTopic("kp-bad", 1, 1, topic_configs=bad)])
    finally:
        admin.close()
    assert {k: v["value"] for k, v in found.items()} == SETTINGS, "only the overrides"
    assert {v["config_source"] for v in found.values()} == {"DYNAMIC_TOPIC_CONFIG"}


def test_confluent_kafka_creates_with_topic_configs(broker: BrokerProcess) -> None:
    admin_module = pytest.importorskip("confluent_kafka.admin")
    kafka = pytest.importorskip("confluent_kafka")
    admin = admin_module.AdminClient({"bootstrap.servers": broker.bootstrap})
    new_topics = [
        admin_module.NewTopic("ck-configs", 1, 1, config=SETTINGS),
        admin_module.NewTopic("ck-bad-size", 1, 1, config={"max.message.bytes": "-5"}),
        admin_module.NewTopic("ck-bad-type", 1, 1, config={"message.timestamp.type": "Foo"}),
    ]
    futures = admin.create_topics(new_topics)
    assert futures["ck-configs"].result(DEADLINE_S) is None
    for name, key in (
        ("ck-bad-size", "max.message.bytes"),
        ("ck-bad-type", "message.timestamp.type"),
    ):
        with pytest.raises(kafka.KafkaException) as raised:
            futures[name].result(DEADLINE_S)
        error = raised.value.args[0]
        assert error.code() == kafka.KafkaError.INVALID_CONFIG and key in error.str()
    resource = admin_module.ConfigResource(admin_module.ResourceType.TOPIC, "ck-configs")
    (future,) = admin.describe_configs([resource]).values()
    found = future.result(DEADLINE_S)
    for key, value in SETTINGS.items():
        assert found[key].value == value
        assert found[key].source == admin_module.ConfigSource.DYNAMIC_TOPIC_CONFIG.value


def test_confluent_kafka_oversized_record_is_message_too_large(broker: BrokerProcess) -> None:
    kafka = pytest.importorskip("confluent_kafka")
    admin_module = pytest.importorskip("confluent_kafka.admin")
    admin = admin_module.AdminClient({"bootstrap.servers": broker.bootstrap})
    new_topic = admin_module.NewTopic("ck-small", 1, 1, config={"max.message.bytes": "500"})
    assert admin.create_topics([new_topic])["ck-small"].result(DEADLINE_S) is None
    producer = kafka.Producer(
        {"bootstrap.servers": broker.bootstrap, "linger.ms": 0, "message.timeout.ms": 20_000}
    )
    reports: list[tuple[bytes, object]] = []
    for value in (b"s" * 10, b"L" * 2_000):
        producer.produce(
            "ck-small", value, on_delivery=lambda err, msg: reports.append((msg.value(), err))
        )
        producer.flush(DEADLINE_S)
    started = time.monotonic()
    assert producer.flush(DEADLINE_S) == 0
    assert time.monotonic() - started < DEADLINE_S
    assert [(v[:1], e is None) for v, e in reports] == [(b"s", True), (b"L", False)]
    error = reports[1][1]
    assert error.code() == kafka.KafkaError.MSG_SIZE_TOO_LARGE and not error.retriable()


def test_confluent_kafka_reads_log_append_time(broker: BrokerProcess) -> None:
    kafka = pytest.importorskip("confluent_kafka")
    admin_module = pytest.importorskip("confluent_kafka.admin")
    admin = admin_module.AdminClient({"bootstrap.servers": broker.bootstrap})
    settings = {"message.timestamp.type": "LogAppendTime"}
    new_topic = admin_module.NewTopic("ck-append-time", 1, 1, config=settings)
    assert admin.create_topics([new_topic])["ck-append-time"].result(DEADLINE_S) is None
    producer = kafka.Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    delivered: list[tuple[int, int]] = []
    before_ms = int(time.time() * 1000)
    producer.produce(
        "ck-append-time",
        b"v",
        timestamp=1_000,
        on_delivery=lambda err, msg: delivered.append(msg.timestamp()),
    )
    assert producer.flush(DEADLINE_S) == 0
    after_ms = int(time.time() * 1000)
    consumer = kafka.Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "ck-append-time",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([kafka.TopicPartition("ck-append-time", 0, 0)])
    message = None
    deadline = time.monotonic() + DEADLINE_S
    while message is None and time.monotonic() < deadline:
        message = consumer.poll(1.0)
    consumer.close()
    assert message is not None and message.error() is None
    kind, timestamp_ms = message.timestamp()
    assert kind == kafka.TIMESTAMP_LOG_APPEND_TIME
    assert before_ms - CLOCK_SLACK_MS <= timestamp_ms <= after_ms + CLOCK_SLACK_MS
    assert delivered == [(kafka.TIMESTAMP_LOG_APPEND_TIME, timestamp_ms)]
