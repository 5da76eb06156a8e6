"""Stock admin clients read topic configs from one broker process: kafka-python's
KafkaAdminClient.describe_configs (which sends DescribeConfigs v4) and confluent-kafka's
AdminClient.describe_configs (librdkafka sends v1) see a topic's retention.ms override
as a topic config and a topic without one at the broker's default."""

from __future__ import annotations

import pytest

from impl.broker.process import BrokerProcess
from model.config import Config

RETENTION_MS = "60000"
DEFAULT_RETENTION_MS = str(Config().retention_ms)
DEADLINE_S = 10


def test_kafka_python_describe_configs(broker: BrokerProcess) -> None:
    admin_module = pytest.importorskip("kafka.admin")
    admin = admin_module.KafkaAdminClient(
        bootstrap_servers=broker.bootstrap, request_timeout_ms=DEADLINE_S * 1000
    )
    try:
        admin.create_topics(
            [
                admin_module.NewTopic(
                    "kp-overridden", 1, 1, topic_configs={"retention.ms": RETENTION_MS}
                ),
                admin_module.NewTopic("kp-defaulted", 1, 1),
            ]
        )
        topic = admin_module.ConfigResourceType.TOPIC
        resources = [
            admin_module.ConfigResource(topic, "kp-overridden"),
            admin_module.ConfigResource(topic, "kp-defaulted", ["retention.ms"]),
        ]
        everything = admin.describe_configs(resources, config_filter="all")["topic"]
        modified = admin.describe_configs(resources)["topic"]
    finally:
        admin.close()
    overridden = everything["kp-overridden"]["retention.ms"]
    assert (overridden["value"], overridden["config_source"]) == (
        RETENTION_MS,
        "DYNAMIC_TOPIC_CONFIG",
    )
    assert overridden["read_only"] is False and overridden["is_sensitive"] is False
    defaulted = everything["kp-defaulted"]
    assert list(defaulted) == ["retention.ms"], "configuration_keys honoured"
    assert defaulted["retention.ms"]["value"] == DEFAULT_RETENTION_MS
    assert defaulted["retention.ms"]["config_source"] == "DEFAULT_CONFIG"
    assert {name: list(found) for name, found in modified.items()} == {
        "kp-overridden": ["retention.ms"],
        "kp-defaulted": [],
    }, "kafka-python's default filter keeps only what the topic overrides"


def test_confluent_kafka_describe_configs(broker: BrokerProcess) -> None:
    admin_module = pytest.importorskip("confluent_kafka.admin")
    admin = admin_module.AdminClient({"bootstrap.servers": broker.bootstrap})
    new_topics = [
        admin_module.NewTopic("ck-overridden", 1, 1, config={"retention.ms": RETENTION_MS}),
        admin_module.NewTopic("ck-defaulted", 1, 1),
    ]
    for future in admin.create_topics(new_topics).values():
        assert future.result(DEADLINE_S) is None
    topic = admin_module.ResourceType.TOPIC
    resources = [
        admin_module.ConfigResource(topic, "ck-overridden"),
        admin_module.ConfigResource(topic, "ck-defaulted"),
        admin_module.ConfigResource(admin_module.ResourceType.BROKER, str(broker.broker_id)),
    ]
    answers = {r.name: f.result(DEADLINE_S) for r, f in admin.describe_configs(resources).items()}
    overridden = answers["ck-overridden"]["retention.ms"]
    assert overridden.value == RETENTION_MS
    assert overridden.source == admin_module.ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert not overridden.is_default and not overridden.is_read_only
    defaulted = answers["ck-defaulted"]["retention.ms"]
    assert defaulted.value == DEFAULT_RETENTION_MS
    assert defaulted.source == admin_module.ConfigSource.DEFAULT_CONFIG.value
    assert defaulted.is_default
    broker_retention = answers[str(broker.broker_id)]["log.retention.ms"]
    assert (broker_retention.value, broker_retention.is_read_only) == (DEFAULT_RETENTION_MS, True)
