"""Topic administration for tests, the harness and the CLI: create topics, wait for leaders,
read topic configs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress

import trio

from impl.client.errors import ClientError, NotSent, OutcomeUnknown, RequestTimeout, kafka_error
from impl.client.metadata import NO_LEADER, Cluster, ClusterSession
from impl.protocol import API_KEYS
from impl.runtime.runtime import Runtime
from model.config import Config
from model.errors import Errors

CREATE_TOPICS = API_KEYS["CreateTopics"]
RESOURCE_TYPE_TOPIC = 2
ADMIN_TIMEOUT_MS = 30_000
CLIENT_ID = "replog-admin"

TopicSpec = tuple[str, int, int, Mapping[str, str]]


async def create_topics(
    runtime: Runtime,
    bootstrap: str | Sequence[str],
    topics: Sequence[TopicSpec],
    *,
    exist_ok: bool = False,
    timeout_ms: int = ADMIN_TIMEOUT_MS,
    config: Config | None = None,
) -> None:
    """Create (name, partitions, replication_factor, configs) topics through the controller.

    Raises the first topic's KafkaError (TOPIC_ALREADY_EXISTS only without `exist_ok`),
    or NotSent / RequestTimeout / ConnectionLost when the controller cannot be asked.
    """
    body = {
        "topics": [
            {
                "name": name,
                "num_partitions": partitions,
                "replication_factor": replication_factor,
                "assignments": [],
                "configs": [{"name": k, "value": v} for k, v in sorted(configs.items())],
            }
            for name, partitions, replication_factor, configs in topics
        ],
        "timeout_ms": timeout_ms,
        "validate_only": False,
    }
    async with ClusterSession(runtime, bootstrap, config or Config(), CLIENT_ID) as session:
        response = await _ask_controller(session.cluster, body, timeout_ms)
    for result in response["topics"]:
        code = result["error_code"]
        if code == Errors.NONE or (code == Errors.TOPIC_ALREADY_EXISTS and exist_ok):
            continue
        raise kafka_error(code, f"topic {result['name']}: {result.get('error_message') or ''}")


async def _ask_controller(cluster: Cluster, body: dict, timeout_ms: int) -> dict:
    """CreateTopics at the controller, following NOT_CONTROLLER until `timeout_ms`."""
    with trio.move_on_after(timeout_ms / 1000):
        while True:
            try:
                await cluster.refresh()
                if cluster.controller_id == NO_LEADER:
                    connection = await cluster.any_connection()
                else:
                    connection = await cluster.connection(cluster.controller_id)
                response = await connection.request(CREATE_TOPICS, body, timeout_ms)
            except (NotSent, OutcomeUnknown):
                await trio.sleep(cluster.config.retry_backoff_ms / 1000)
                continue
            codes = {result["error_code"] for result in response["topics"]}
            if Errors.NOT_CONTROLLER not in codes:
                return response
            await trio.sleep(cluster.config.retry_backoff_ms / 1000)
    raise RequestTimeout(f"CreateTopics got no answer from the controller in {timeout_ms} ms")


async def describe_topic_configs(
    runtime: Runtime,
    bootstrap: str | Sequence[str],
    topics: Iterable[str],
    *,
    keys: Sequence[str] | None = None,
    timeout_ms: int = ADMIN_TIMEOUT_MS,
    config: Config | None = None,
) -> dict[str, dict[str, str | None]]:
    """`topic_configs` over a session of its own."""
    async with ClusterSession(runtime, bootstrap, config or Config(), CLIENT_ID) as session:
        return await topic_configs(session.cluster, topics, keys=keys, timeout_ms=timeout_ms)


async def topic_configs(
    cluster: Cluster,
    topics: Iterable[str],
    *,
    keys: Sequence[str] | None = None,
    timeout_ms: int = ADMIN_TIMEOUT_MS,
) -> dict[str, dict[str, str | None]]:
    """Each topic's effective configs (key -> value; `keys` picks some, None all), from
    DescribeConfigs at any broker: each answers from its metadata, as in Kafka.

    A topic the broker does not know is left out. Any other refusal raises its KafkaError;
    a broker without DescribeConfigs raises IncompatibleBroker, and RequestTimeout means
    no broker answered within `timeout_ms`.
    """
    body = {
        "resources": [
            {
                "resource_type": RESOURCE_TYPE_TOPIC,
                "resource_name": name,
                "configuration_keys": None if keys is None else list(keys),
            }
            for name in sorted(set(topics))
        ],
        "include_synonyms": False,
        "include_documentation": False,
    }
    response = await _ask_any(cluster, "DescribeConfigs", body, timeout_ms)
    found = {}
    for result in response["results"]:
        code = result["error_code"]
        if code == Errors.UNKNOWN_TOPIC_OR_PARTITION:
            continue
        if code != Errors.NONE:
            message = f"topic {result['resource_name']}: {result.get('error_message') or ''}"
            raise kafka_error(code, message)
        found[result["resource_name"]] = {c["name"]: c["value"] for c in result["configs"]}
    return found


async def _ask_any(cluster: Cluster, api: str, body: dict, timeout_ms: int) -> dict:
    """A read-only request at any broker, retried (on another) until `timeout_ms`."""
    with trio.move_on_after(timeout_ms / 1000):
        while True:
            try:
                connection = await cluster.any_connection()
                return await connection.request(API_KEYS[api], body, timeout_ms)
            except (NotSent, OutcomeUnknown):
                await trio.sleep(cluster.config.retry_backoff_ms / 1000)
    raise RequestTimeout(f"{api} got no answer from any broker in {timeout_ms} ms")


async def wait_for_leaders(
    runtime: Runtime,
    bootstrap: str | Sequence[str],
    topics: Iterable[str],
    *,
    timeout_ms: int = ADMIN_TIMEOUT_MS,
    config: Config | None = None,
) -> dict[str, int]:
    """Wait until every partition of every topic has a live leader; returns partition
    counts. Raises RequestTimeout naming what is still leaderless."""
    names = sorted(set(topics))
    async with ClusterSession(runtime, bootstrap, config or Config(), CLIENT_ID) as session:
        cluster = session.cluster
        waiting = names
        with trio.move_on_after(timeout_ms / 1000):
            while True:
                with suppress(ClientError):
                    await cluster.refresh(names)
                waiting = [name for name in names if not _all_led(cluster, name)]
                if not waiting:
                    return {name: cluster.partition_count(name) or 0 for name in names}
                await trio.sleep(cluster.config.retry_backoff_ms / 1000)
    raise RequestTimeout(f"no leaders for {', '.join(waiting)} within {timeout_ms} ms")


def _all_led(cluster: Cluster, topic: str) -> bool:
    entry = cluster.topics.get(topic)
    if entry is None or entry.error != Errors.NONE or not entry.partitions:
        return False
    return all(
        p.error == Errors.NONE and p.leader_id != NO_LEADER and p.leader_id in cluster.brokers
        for p in entry.partitions
    )
