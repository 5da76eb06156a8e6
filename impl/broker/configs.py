"""What DescribeConfigs answers: a topic's effective configs, and this broker's own.

A topic's rows are every key of model.config.TOPIC_KEYS (Kafka 4.x's topic configs). A
value is its override (source TOPIC_CONFIG) or else, for a key replog acts on, the
broker's setting: STATIC_BROKER_CONFIG when the broker was started with a value other
than replog's default, DEFAULT_CONFIG otherwise; a key replog only stores falls back to
Kafka's default (DEFAULT_CONFIG). A broker cannot tell a value set to the default from
one left unset, so it reports such a value as DEFAULT_CONFIG. Synonyms list the chain
Kafka's way, strongest first, under Kafka's broker-level names (`retention.ms` falls back
to `log.retention.ms`). replog has no AlterConfigs: topic keys say read_only=false as
Kafka's do (they are per-topic settings), broker keys read_only=true (none is dynamic).
Nothing is sensitive. The broker id's resource is answered for this broker only, as
Kafka does; the empty name (the cluster-wide dynamic defaults) has no keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from impl.broker.logs import topic_name_error
from model.config import TOPIC_KEYS, Config, ConfigError, topic_config, topic_value
from model.errors import Errors

Body = dict[str, Any]


class ResourceType(IntEnum):
    TOPIC = 2
    BROKER = 4


class ConfigSource(IntEnum):
    TOPIC_CONFIG = 1
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5


class ConfigType(IntEnum):
    BOOLEAN = 1
    STRING = 2
    INT = 3
    SHORT = 4
    LONG = 5
    DOUBLE = 6
    LIST = 7


@dataclass(frozen=True, slots=True)
class BrokerKey:
    """A broker-level key under Kafka's name, read from replog's Config key `key`."""

    key: str
    type: ConfigType
    doc: str


# Kafka's broker-level name -> how to read it. The first group is the defaults of the
# topic keys; the rest are the broker settings replog has.
BROKER_KEYS: dict[str, BrokerKey] = {
    "log.cleanup.policy": BrokerKey(
        "cleanup.policy", ConfigType.LIST, "delete old segments, compact by key, or both"
    ),
    "compression.type": BrokerKey(
        "compression.type", ConfigType.STRING, "the codec the log stores batches in"
    ),
    "log.cleaner.delete.retention.ms": BrokerKey(
        "delete.retention.ms", ConfigType.LONG, "how long a compacted log keeps tombstones"
    ),
    "log.flush.interval.messages": BrokerKey(
        "flush.messages", ConfigType.LONG, "records appended between forced fsyncs"
    ),
    "log.flush.interval.ms": BrokerKey(
        "flush.ms", ConfigType.LONG, "the longest a record waits unsynced in the page cache"
    ),
    "message.max.bytes": BrokerKey(
        "message.max.bytes", ConfigType.INT, "the largest record batch a produce may append"
    ),
    "log.message.timestamp.type": BrokerKey(
        "message.timestamp.type",
        ConfigType.STRING,
        "CreateTime keeps the producer's timestamps, LogAppendTime sets the leader's",
    ),
    "log.message.timestamp.before.max.ms": BrokerKey(
        "message.timestamp.before.max.ms",
        ConfigType.LONG,
        "how far behind the leader's clock a CreateTime timestamp may be",
    ),
    "log.message.timestamp.after.max.ms": BrokerKey(
        "message.timestamp.after.max.ms",
        ConfigType.LONG,
        "how far ahead of the leader's clock a CreateTime timestamp may be",
    ),
    "log.cleaner.min.cleanable.ratio": BrokerKey(
        "min.cleanable.dirty.ratio",
        ConfigType.DOUBLE,
        "the dirty share of a log at which the cleaner compacts it",
    ),
    "min.insync.replicas": BrokerKey(
        "min.insync.replicas",
        ConfigType.INT,
        "the ISR size below which acks=all produces are refused",
    ),
    "log.retention.bytes": BrokerKey(
        "retention.bytes", ConfigType.LONG, "the size above which old segments go (-1: none)"
    ),
    "log.retention.ms": BrokerKey(
        "retention.ms",
        ConfigType.LONG,
        "how long a segment is kept after its newest record (-1: forever)",
    ),
    "log.segment.bytes": BrokerKey(
        "segment.bytes", ConfigType.INT, "the size at which the active segment rolls"
    ),
    "log.roll.ms": BrokerKey("segment.ms", ConfigType.LONG, "the age at which a segment rolls"),
    "unclean.leader.election.enable": BrokerKey(
        "unclean.leader.election.enable",
        ConfigType.BOOLEAN,
        "whether a replica outside the ISR may lead when no ISR member is alive",
    ),
    "default.replication.factor": BrokerKey(
        "replication.factor", ConfigType.INT, "the replicas of a topic created without a count"
    ),
    "num.partitions": BrokerKey(
        "num.partitions", ConfigType.INT, "the partitions of a topic created without a count"
    ),
    "auto.create.topics.enable": BrokerKey(
        "auto.create.topics.enable",
        ConfigType.BOOLEAN,
        "whether Metadata for an unknown topic creates it",
    ),
    "replica.lag.time.max.ms": BrokerKey(
        "replica.lag.time.max.ms",
        ConfigType.LONG,
        "how long a follower may go without catching up before it leaves the ISR",
    ),
    "replica.fetch.max.bytes": BrokerKey(
        "replica.fetch.max.bytes", ConfigType.INT, "the bytes a follower fetches per partition"
    ),
    "log.retention.check.interval.ms": BrokerKey(
        "log.retention.check.interval.ms",
        ConfigType.LONG,
        "how often retention looks for segments to delete",
    ),
    "offsets.topic.num.partitions": BrokerKey(
        "offsets.topic.num.partitions", ConfigType.INT, "the partitions of __consumer_offsets"
    ),
    "offsets.topic.replication.factor": BrokerKey(
        "offsets.topic.replication.factor",
        ConfigType.SHORT,
        "the replicas of __consumer_offsets",
    ),
    "group.initial.rebalance.delay.ms": BrokerKey(
        "group.initial.rebalance.delay.ms",
        ConfigType.INT,
        "how long an empty group waits for more members before its first rebalance",
    ),
}

# Every topic key replog acts on reads its broker-level synonym from the broker's config.
assert all(
    key.synonym in BROKER_KEYS for key in TOPIC_KEYS.values() if key.attribute is not None
), "every enforced topic key has a broker-level synonym replog has"

_DEFAULTS = Config().to_pairs()


@dataclass(frozen=True, slots=True)
class Options:
    include_synonyms: bool
    include_documentation: bool


def describe_resource(
    resource: Body,
    broker_id: int,
    config: Config,
    topic_overrides: Callable[[str], Mapping[str, str] | None],
    options: Options,
) -> Body:
    """One DescribeConfigsResult: `topic_overrides(name)` is a topic's overrides, or
    None when there is no such topic."""
    kind, name = resource["resource_type"], resource["resource_name"]
    wanted = resource.get("configuration_keys")
    if kind == ResourceType.TOPIC:
        problem = topic_name_error(name)
        if problem:
            return _error(resource, Errors.INVALID_TOPIC_EXCEPTION, problem)
        overrides = topic_overrides(name)
        if overrides is None:
            return _error(resource, Errors.UNKNOWN_TOPIC_OR_PARTITION, f"no topic {name!r}")
        try:
            configs = _topic_configs(config, overrides, options)
        except ConfigError as error:
            return _error(resource, Errors.INVALID_CONFIG, str(error))
    elif kind == ResourceType.BROKER:
        if name == "":
            configs = []
        elif name != str(broker_id):
            message = f"unexpected broker id {name!r}: this is broker {broker_id} (or empty)"
            return _error(resource, Errors.INVALID_REQUEST, message)
        else:
            configs = _broker_configs(config, options)
    else:
        return _error(resource, Errors.INVALID_REQUEST, f"unsupported resource type {kind}")
    if wanted is not None:
        configs = [c for c in configs if c["name"] in wanted]
    return _result(resource, Errors.NONE, None, configs)


def _topic_configs(config: Config, overrides: Mapping[str, str], options: Options) -> list[Body]:
    # Values are rendered from the parsed config, so an override reads as Kafka spells it.
    broker = config.to_pairs()
    effective = topic_config(config, overrides).to_pairs()
    rows = []
    for name in sorted(TOPIC_KEYS):
        key = TOPIC_KEYS[name]
        if key.attribute is not None:
            assert key.synonym is not None
            chain = _broker_chain(broker, key.synonym)
            if name in overrides:
                value = effective[BROKER_KEYS[key.synonym].key]
                chain.insert(0, _synonym(name, value, ConfigSource.TOPIC_CONFIG))
        else:
            # A key replog only stores: its broker-level default is Kafka's.
            chain = [_synonym(key.synonym or name, key.default, ConfigSource.DEFAULT_CONFIG)]
            if name in overrides:
                value = topic_value(name, overrides[name])
                chain.insert(0, _synonym(name, value, ConfigSource.TOPIC_CONFIG))
        rows.append(_entry(name, chain, ConfigType[key.type], key.doc, False, options))
    return rows


def _broker_configs(config: Config, options: Options) -> list[Body]:
    broker = config.to_pairs()
    return [
        _entry(
            name,
            _broker_chain(broker, name),
            BROKER_KEYS[name].type,
            BROKER_KEYS[name].doc,
            True,
            options,
        )
        for name in sorted(BROKER_KEYS)
    ]


def _broker_chain(broker: Mapping[str, str], name: str) -> list[Body]:
    """The broker-level synonyms of `name` (`broker`: the broker's settings), strongest first."""
    key = BROKER_KEYS[name].key
    value = broker[key]
    chain = [_synonym(name, _DEFAULTS[key], ConfigSource.DEFAULT_CONFIG)]
    if value != _DEFAULTS[key]:
        chain.insert(0, _synonym(name, value, ConfigSource.STATIC_BROKER_CONFIG))
    return chain


def _synonym(name: str, value: str, source: ConfigSource) -> Body:
    return {"name": name, "value": value, "source": source}


def _entry(
    name: str,
    chain: list[Body],
    kind: ConfigType,
    doc: str,
    read_only: bool,
    options: Options,
) -> Body:
    return {
        "name": name,
        "value": chain[0]["value"],
        "read_only": read_only,
        "config_source": chain[0]["source"],
        "is_sensitive": False,
        "synonyms": chain if options.include_synonyms else [],
        "config_type": kind,
        "documentation": doc if options.include_documentation else None,
    }


def _error(resource: Body, error: Errors, message: str) -> Body:
    return _result(resource, error, message, [])


def _result(resource: Body, error: Errors, message: str | None, configs: list[Body]) -> Body:
    return {
        "error_code": error,
        "error_message": message,
        "resource_type": resource["resource_type"],
        "resource_name": resource["resource_name"],
        "configs": configs,
    }
