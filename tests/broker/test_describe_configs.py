"""DescribeConfigs (key 32): a topic's effective configs with Kafka's config sources, the
broker's own configs, per-resource errors; from the handler's table, over the wire of one
broker process (every version), and from every broker of a simulated cluster."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trio
from broker_wire import Wire

from impl.broker import configs
from impl.broker.configs import ConfigSource, ConfigType, Options, ResourceType
from impl.broker.process import BrokerProcess
from impl.client.admin import create_topics, describe_topic_configs, wait_for_leaders
from impl.protocol import API_KEYS, SUPPORTED
from impl.sim.cluster import PORT, SimCluster
from impl.sim.guard import run
from model.config import TOPIC_KEYS, Config
from model.errors import Errors

BROKER_ID = 0
BROKER_CONFIG = Config.parse(["min.insync.replicas=1", "segment.bytes=1048576"])
OVERRIDES = {"retention.ms": "60000", "cleanup.policy": "compact, delete"}
PLAIN = Options(include_synonyms=False, include_documentation=False)
EVERYTHING = Options(include_synonyms=True, include_documentation=True)
LOWEST, HIGHEST = SUPPORTED[API_KEYS["DescribeConfigs"]]


def describe(name: str, kind: int = ResourceType.TOPIC, keys=None, options=PLAIN) -> dict:
    topics = {"events": OVERRIDES, "plain": {}}
    resource = {"resource_type": kind, "resource_name": name, "configuration_keys": keys}
    return configs.describe_resource(resource, BROKER_ID, BROKER_CONFIG, topics.get, options)


def by_name(result: dict) -> dict[str, dict]:
    assert result["error_code"] == Errors.NONE, result
    return {c["name"]: c for c in result["configs"]}


def test_a_topic_lists_every_topic_key_with_its_source() -> None:
    found = by_name(describe("events"))
    assert set(found) == set(TOPIC_KEYS)
    assert found["retention.ms"]["value"] == "60000"
    assert found["retention.ms"]["config_source"] == ConfigSource.TOPIC_CONFIG
    assert found["cleanup.policy"]["value"] == "compact,delete", "rendered as parsed"
    assert found["min.insync.replicas"]["value"] == "1"
    assert found["min.insync.replicas"]["config_source"] == ConfigSource.STATIC_BROKER_CONFIG
    assert found["segment.bytes"]["value"] == "1048576"
    assert found["retention.bytes"]["value"] == "-1"
    assert found["retention.bytes"]["config_source"] == ConfigSource.DEFAULT_CONFIG
    assert found["unclean.leader.election.enable"]["value"] == "false"
    assert found["retention.ms"]["config_type"] == ConfigType.LONG
    for entry in found.values():
        assert not entry["read_only"] and not entry["is_sensitive"]
        assert entry["synonyms"] == [] and entry["documentation"] is None
    plain = by_name(describe("plain"))
    assert plain["retention.ms"]["value"] == str(Config().retention_ms)
    assert plain["retention.ms"]["config_source"] == ConfigSource.DEFAULT_CONFIG


def test_synonyms_run_from_the_override_to_the_default_under_kafkas_broker_names() -> None:
    found = by_name(describe("events", options=EVERYTHING))
    assert found["retention.ms"]["synonyms"] == [
        {"name": "retention.ms", "value": "60000", "source": ConfigSource.TOPIC_CONFIG},
        {"name": "log.retention.ms", "value": "604800000", "source": ConfigSource.DEFAULT_CONFIG},
    ]
    assert found["segment.bytes"]["synonyms"] == [
        {
            "name": "log.segment.bytes",
            "value": "1048576",
            "source": ConfigSource.STATIC_BROKER_CONFIG,
        },
        {"name": "log.segment.bytes", "value": "1073741824", "source": ConfigSource.DEFAULT_CONFIG},
    ]
    assert all(entry["documentation"] for entry in found.values())


def test_configuration_keys_pick_some_and_unknown_keys_are_left_out() -> None:
    found = by_name(describe("events", keys=["retention.ms", "no.such.key", "acks"]))
    assert list(found) == ["retention.ms"]
    assert by_name(describe("events", keys=[])) == {}


def test_per_resource_errors() -> None:
    missing = describe("absent")
    assert missing["error_code"] == Errors.UNKNOWN_TOPIC_OR_PARTITION and missing["configs"] == []
    assert describe("bad/name")["error_code"] == Errors.INVALID_TOPIC_EXCEPTION
    assert describe("1", ResourceType.BROKER)["error_code"] == Errors.INVALID_REQUEST
    assert describe("x", ResourceType.BROKER)["error_code"] == Errors.INVALID_REQUEST
    assert describe("events", 8)["error_code"] == Errors.INVALID_REQUEST
    assert describe("", ResourceType.BROKER) == {
        "error_code": Errors.NONE,
        "error_message": None,
        "resource_type": ResourceType.BROKER,
        "resource_name": "",
        "configs": [],
    }


def test_the_broker_resource_lists_its_own_settings_read_only() -> None:
    found = by_name(describe(str(BROKER_ID), ResourceType.BROKER))
    assert found["log.retention.ms"]["value"] == "604800000"
    assert found["log.segment.bytes"]["config_source"] == ConfigSource.STATIC_BROKER_CONFIG
    assert found["default.replication.factor"]["value"] == "3"
    assert all(entry["read_only"] for entry in found.values())
    enforced = {k.synonym for k in TOPIC_KEYS.values() if k.attribute is not None}
    assert enforced <= set(found)


# ---- one broker process over the wire --------------------------------------------------


@pytest.fixture(scope="module")
def wire(broker: BrokerProcess) -> Iterator[Wire]:
    connection = Wire(broker.bootstrap)
    overrides = [{"name": k, "value": v} for k, v in OVERRIDES.items()]
    topics = [
        {"name": "overridden", "num_partitions": 1, "replication_factor": 1, "configs": overrides},
        {"name": "defaulted", "num_partitions": 1, "replication_factor": 1},
    ]
    created = connection.call("CreateTopics", 7, {"topics": topics, "timeout_ms": 5_000})
    assert [t["error_code"] for t in created["topics"]] == [Errors.NONE, Errors.NONE]
    yield connection
    connection.close()


def test_api_versions_lists_describe_configs(wire: Wire) -> None:
    response = wire.call("ApiVersions", 3, {})
    listed = {k["api_key"]: (k["min_version"], k["max_version"]) for k in response["api_keys"]}
    assert listed[API_KEYS["DescribeConfigs"]] == (LOWEST, HIGHEST) == (1, 4)


@pytest.mark.parametrize("version", range(LOWEST, HIGHEST + 1))
def test_every_version_answers_over_the_wire(wire: Wire, version: int) -> None:
    body = {
        "resources": [
            {"resource_type": 2, "resource_name": "overridden", "configuration_keys": None},
            {"resource_type": 2, "resource_name": "defaulted", "configuration_keys": None},
            {"resource_type": 2, "resource_name": "absent", "configuration_keys": None},
            {"resource_type": 4, "resource_name": "0", "configuration_keys": ["log.retention.ms"]},
        ],
        "include_synonyms": True,
        "include_documentation": True,
    }
    overridden, defaulted, absent, broker = wire.call("DescribeConfigs", version, body)["results"]
    retention = by_name(overridden)["retention.ms"]
    assert (retention["value"], retention["config_source"]) == ("60000", 1)
    assert retention["synonyms"][0] == {"name": "retention.ms", "value": "60000", "source": 1}
    retention = by_name(defaulted)["retention.ms"]
    assert (retention["value"], retention["config_source"]) == ("604800000", 5)
    assert absent["error_code"] == Errors.UNKNOWN_TOPIC_OR_PARTITION
    assert list(by_name(broker)) == ["log.retention.ms"]
    if version >= 3:
        assert retention["config_type"] == ConfigType.LONG and retention["documentation"]


# ---- a simulated cluster: every broker answers from its metadata image ------------------


def test_every_broker_of_a_cluster_answers_from_its_metadata_image() -> None:
    async def main() -> list[dict[str, dict[str, str | None]]]:
        async with trio.open_nursery() as nursery:
            cluster = SimCluster(3, seed=5, config=("min.insync.replicas=1",))
            await cluster.start(nursery)
            await cluster.wait_for_brokers()
            runtime = cluster.runtime()
            topics = [("overridden", 1, 1, {"retention.ms": "60000"}), ("defaulted", 1, 1, {})]
            await create_topics(runtime, cluster.bootstrap, topics)
            await wait_for_leaders(runtime, cluster.bootstrap, ["overridden", "defaulted"])
            answers = [
                await describe_topic_configs(
                    runtime,
                    f"node-{node}.sim:{PORT}",
                    ["overridden", "defaulted", "absent"],
                    keys=["retention.ms"],
                )
                for node in cluster.nodes
            ]
            await cluster.stop()
            nursery.cancel_scope.cancel()
        return answers

    answers = run(main, seed=5)
    expected = {"overridden": {"retention.ms": "60000"}, "defaulted": {"retention.ms": "604800000"}}
    assert answers == [expected] * 3, "an RF=1 topic, described by brokers without a replica too"
