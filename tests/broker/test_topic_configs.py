"""Every Kafka 4.x topic config at creation (model.config.TOPIC_KEYS): each is accepted
and described by one broker process over the wire, a bad value or unknown key is
INVALID_CONFIG naming the key, a simulated cluster's controller refuses exactly what a
broker refuses, and what replog enforces (max.message.bytes, the timestamp keys) shows in
Produce answers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from broker_wire import Wire

from impl.broker.configs import ConfigSource
from impl.broker.process import BrokerProcess
from impl.client.admin import create_topics, describe_topic_configs, wait_for_leaders
from impl.client.errors import KafkaError
from impl.controller.controller import topic_config_error
from impl.sim.cluster import PORT, SimCluster
from impl.sim.guard import run
from impl.storage.batch import Record, encode_batch, parse_header
from model.config import (
    TOPIC_KEYS,
    TOPIC_KEYS_DOC,
    Config,
    ConfigError,
    topic_config,
    topic_keys_markdown,
)
from model.errors import Errors

# A valid value other than Kafka's default for every topic key, as Kafka renders it.
SAMPLES = {
    "cleanup.policy": "compact",
    "compression.type": "lz4",
    "delete.retention.ms": "1000",
    "flush.messages": "100",
    "flush.ms": "1000",
    "max.message.bytes": "2000",
    "message.timestamp.type": "LogAppendTime",
    "message.timestamp.before.max.ms": "86400000",
    "message.timestamp.after.max.ms": "60000",
    "min.cleanable.dirty.ratio": "0.25",
    "min.insync.replicas": "1",
    "retention.bytes": "1048576",
    "retention.ms": "60000",
    "segment.bytes": "1048576",
    "segment.ms": "3600000",
    "unclean.leader.election.enable": "true",
    "compression.gzip.level": "6",
    "compression.lz4.level": "12",
    "compression.zstd.level": "-5",
    "file.delete.delay.ms": "1000",
    "follower.replication.throttled.replicas": "0:0",
    "index.interval.bytes": "8192",
    "leader.replication.throttled.replicas": "*",
    "local.retention.bytes": "1048576",
    "local.retention.ms": "60000",
    "max.compaction.lag.ms": "3600000",
    "min.compaction.lag.ms": "1000",
    "preallocate": "true",
    "remote.log.copy.disable": "true",
    "remote.log.delete.on.disable": "true",
    "remote.storage.enable": "false",
    "segment.index.bytes": "4096",
    "segment.jitter.ms": "100",
}

CLOCK_SLACK_MS = 1_000

# (key, value, what the message says besides the key)
REFUSED = [
    ("max.message.bytes", "-5", "Invalid value -5"),
    ("message.timestamp.type", "Foo", "CreateTime, LogAppendTime"),
    ("message.timestamp.type", "logappendtime", "CreateTime, LogAppendTime"),
    ("message.timestamp.after.max.ms", "-1", "Invalid value -1"),
    ("compression.zstd.level", "23", "[-131072, 22]"),
    ("follower.replication.throttled.replicas", "0-1", "partition:broker"),
    ("min.insync.replicas", "0", ">= 1"),
    ("preallocate", "yes", "true or false"),
    ("remote.storage.enable", "true", "no tiered storage"),
    ("message.downconversion.enable", "true", "Unknown topic config name"),
    ("message.max.bytes", "2000", "Unknown topic config name"),
    ("acks", "1", "Unknown topic config name"),
]


def create(wire: Wire, name: str, configs: dict[str, str]) -> dict:
    topic = {
        "name": name,
        "num_partitions": 1,
        "replication_factor": 1,
        "configs": [{"name": k, "value": v} for k, v in configs.items()],
    }
    return wire.call("CreateTopics", 7, {"topics": [topic], "timeout_ms": 5_000})["topics"][0]


def describe(wire: Wire, name: str) -> dict[str, dict]:
    body = {
        "resources": [{"resource_type": 2, "resource_name": name, "configuration_keys": None}],
        "include_synonyms": True,
        "include_documentation": False,
    }
    (result,) = wire.call("DescribeConfigs", 4, body)["results"]
    assert result["error_code"] == Errors.NONE, result
    return {c["name"]: c for c in result["configs"]}


def produce(wire: Wire, topic: str, batch: bytes) -> dict:
    body = {
        "acks": 1,
        "timeout_ms": 5_000,
        "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": batch}]}],
    }
    return wire.call("Produce", 9, body)["responses"][0]["partition_responses"][0]


def fetch_first_batch(wire: Wire, topic: str) -> bytes:
    partition = {"partition": 0, "fetch_offset": 0, "partition_max_bytes": 1 << 20}
    body = {
        "replica_id": -1,
        "max_wait_ms": 0,
        "min_bytes": 0,
        "max_bytes": 1 << 20,
        "topics": [{"topic": topic, "partitions": [partition]}],
    }
    answer = wire.call("Fetch", 11, body)["responses"][0]["partitions"][0]
    assert answer["error_code"] == Errors.NONE, answer
    return bytes(answer["records"])


def batch_at(timestamp_ms: int, value: bytes = b"v") -> bytes:
    return encode_batch([Record(value, b"k", timestamp_ms=timestamp_ms)])


@pytest.fixture(scope="module")
def wire(broker: BrokerProcess) -> Iterator[Wire]:
    connection = Wire(broker.bootstrap)
    yield connection
    connection.close()


def test_the_samples_cover_every_topic_key() -> None:
    assert set(SAMPLES) == set(TOPIC_KEYS)
    for key, value in SAMPLES.items():
        entry = TOPIC_KEYS[key]
        if entry.attribute is None and key != "remote.storage.enable":
            assert value != entry.default, f"{key}: a sample must differ from the default"


def test_the_topic_keys_doc_is_generated_from_the_table() -> None:
    doc = (Path(__file__).resolve().parents[2] / TOPIC_KEYS_DOC).read_text()
    assert doc == topic_keys_markdown() + "\n", "regenerate: see topic_keys_markdown"


def test_every_topic_key_is_accepted_and_described(wire: Wire) -> None:
    assert create(wire, "every-key", SAMPLES)["error_code"] == Errors.NONE
    found = describe(wire, "every-key")
    assert set(found) == set(TOPIC_KEYS)
    for key, value in SAMPLES.items():
        assert (found[key]["value"], found[key]["config_source"]) == (
            value,
            ConfigSource.TOPIC_CONFIG,
        ), key
    assert found["max.message.bytes"]["synonyms"][1]["name"] == "message.max.bytes"


def test_a_topic_without_overrides_describes_kafkas_defaults(wire: Wire) -> None:
    assert create(wire, "no-overrides", {})["error_code"] == Errors.NONE
    found = describe(wire, "no-overrides")
    # The broker process runs with min.insync.replicas=1 (broker_wire.SINGLE_BROKER_CONFIG).
    static = found.pop("min.insync.replicas")
    assert (static["value"], static["config_source"]) == ("1", ConfigSource.STATIC_BROKER_CONFIG)
    for key, row in found.items():
        entry = TOPIC_KEYS[key]
        assert row["config_source"] == ConfigSource.DEFAULT_CONFIG, key
        if entry.attribute is None:
            assert row["value"] == entry.default, key
    assert found["message.timestamp.type"]["value"] == "CreateTime"
    assert found["message.timestamp.after.max.ms"]["value"] == "3600000"
    assert found["max.message.bytes"]["value"] == "1048588"
    assert found["segment.index.bytes"]["synonyms"] == [
        {"name": "log.index.size.max.bytes", "value": "10485760", "source": 5}
    ]


@pytest.mark.parametrize(("key", "value", "says"), REFUSED)
def test_a_bad_value_or_unknown_key_is_invalid_config_naming_it(
    wire: Wire, key: str, value: str, says: str
) -> None:
    answer = create(wire, "refused", {key: value})
    assert answer["error_code"] == Errors.INVALID_CONFIG
    assert key in answer["error_message"] and says in answer["error_message"]


def test_compaction_lags_in_the_wrong_order_are_refused(wire: Wire) -> None:
    answer = create(wire, "refused", {"min.compaction.lag.ms": "10", "max.compaction.lag.ms": "5"})
    assert answer["error_code"] == Errors.INVALID_CONFIG
    assert answer["error_message"] == (
        "conflict topic config setting min.compaction.lag.ms (10) > max.compaction.lag.ms (5)"
    )


def test_the_controller_refuses_exactly_what_a_broker_refuses() -> None:
    cluster_config = Config.parse(["min.insync.replicas=1"])
    cases = [((k, v),) for k, v in SAMPLES.items()] + [((k, v),) for k, v, _ in REFUSED]
    for configs in cases:
        try:
            topic_config(cluster_config, dict(configs))
            broker_says = None
        except ConfigError as error:
            broker_says = str(error)
        assert topic_config_error(cluster_config, configs) == broker_says, configs
    assert sum(topic_config_error(cluster_config, c) is None for c in cases) == len(SAMPLES)


def test_a_batch_over_max_message_bytes_is_message_too_large(wire: Wire) -> None:
    assert create(wire, "small-batches", {"max.message.bytes": "200"})["error_code"] == 0
    now_ms = int(time.time() * 1000)
    assert produce(wire, "small-batches", batch_at(now_ms, b"x" * 50))["error_code"] == 0
    big = produce(wire, "small-batches", batch_at(now_ms, b"x" * 300))
    assert big["error_code"] == Errors.MESSAGE_TOO_LARGE


def test_log_append_time_stamps_the_batch_with_the_brokers_clock(wire: Wire) -> None:
    settings = {"message.timestamp.type": "LogAppendTime"}
    assert create(wire, "append-time", settings)["error_code"] == Errors.NONE
    before_ms = int(time.time() * 1000)
    answer = produce(wire, "append-time", batch_at(1_000))
    after_ms = int(time.time() * 1000)
    assert answer["error_code"] == Errors.NONE
    # The broker's wall clock runs with its monotonic one from start-up: close to ours.
    assert before_ms - CLOCK_SLACK_MS <= answer["log_append_time_ms"] <= after_ms + CLOCK_SLACK_MS
    header = parse_header(fetch_first_batch(wire, "append-time"))
    assert header.timestamp_type == "LogAppendTime"
    assert header.max_timestamp_ms == answer["log_append_time_ms"]


def test_create_time_outside_the_window_is_invalid_timestamp(wire: Wire) -> None:
    settings = {
        "message.timestamp.after.max.ms": "60000",
        "message.timestamp.before.max.ms": "60000",
    }
    assert create(wire, "create-time", settings)["error_code"] == Errors.NONE
    now_ms = int(time.time() * 1000)
    hour_ms = 3_600_000
    assert produce(wire, "create-time", batch_at(now_ms + hour_ms))["error_code"] == 32
    assert produce(wire, "create-time", batch_at(now_ms - hour_ms))["error_code"] == 32
    answer = produce(wire, "create-time", batch_at(now_ms))
    assert answer["error_code"] == Errors.NONE and answer["log_append_time_ms"] == -1
    header = parse_header(fetch_first_batch(wire, "create-time"))
    assert (header.timestamp_type, header.max_timestamp_ms) == ("CreateTime", now_ms)


def test_a_clusters_controller_and_brokers_agree_on_topic_keys() -> None:
    """A store-only key is accepted by the controller and every broker opens the replica
    (describing it); a bad value comes back from the controller with its message."""

    async def main() -> tuple[str, list[dict[str, str | None]]]:
        async with trio.open_nursery() as nursery:
            cluster = SimCluster(3, seed=7, config=("min.insync.replicas=1",))
            await cluster.start(nursery)
            await cluster.wait_for_brokers()
            runtime = cluster.runtime()
            try:
                await create_topics(
                    runtime, cluster.bootstrap, [("bad", 1, 3, {"max.message.bytes": "-5"})]
                )
                refusal = "created"
            except KafkaError as error:
                refusal = str(error)
            settings = {"segment.jitter.ms": "100", "max.message.bytes": "5000"}
            await create_topics(runtime, cluster.bootstrap, [("stored", 1, 3, settings)])
            await wait_for_leaders(runtime, cluster.bootstrap, ["stored"])
            answers = [
                (
                    await describe_topic_configs(
                        runtime,
                        f"node-{node}.sim:{PORT}",
                        ["stored"],
                        keys=["segment.jitter.ms", "max.message.bytes"],
                    )
                )["stored"]
                for node in cluster.nodes
            ]
            await cluster.stop()
            nursery.cancel_scope.cancel()
        return refusal, answers

    refusal, answers = run(main, seed=7)
    assert refusal.startswith("INVALID_CONFIG (40)") and "max.message.bytes" in refusal
    assert answers == [{"segment.jitter.ms": "100", "max.message.bytes": "5000"}] * 3
