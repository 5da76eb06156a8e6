"""Helpers for tests against real broker processes: bounded waits and metadata probes."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError

from impl.client.connection import Connection
from impl.client.errors import ClientError
from impl.client.producer import Producer
from impl.cluster.launcher import Cluster, ClusterSpec
from impl.protocol import API_KEYS
from impl.runtime.runtime import Runtime, real_runtime
from model.config import Config

# Tuned for tests: a dead broker is fenced within ~2 s, a stalled follower leaves the
# ISR within ~1.5 s.
FAST = (
    "broker.session.timeout.ms=2000",
    "broker.heartbeat.interval.ms=300",
    "replica.lag.time.max.ms=1500",
)
WAIT_S = 60.0


def start_cluster(root: Path, brokers: int = 3, controllers: int = 0, *config: str) -> Cluster:
    """Start the processes and wait until every broker is registered and unfenced."""
    spec = ClusterSpec(root, brokers=brokers, controllers=controllers, config=FAST + config)
    cluster = Cluster.planned(spec).start()
    wait_for(lambda: len(live_brokers(cluster)) == brokers, f"{brokers} unfenced brokers")
    return cluster


def live_brokers(cluster: Cluster, avoid: frozenset[int] = frozenset()) -> list[int]:
    """The brokers a live broker's metadata lists (the unfenced ones)."""
    try:
        client = admin(cluster, avoid)
        try:
            return [b["broker_id"] for b in client.describe_cluster()["brokers"]]
        finally:
            client.close()
    except (KafkaError, OSError):
        return []


def wait_for(predicate: Callable[[], Any], what: str, timeout_s: float = WAIT_S) -> Any:
    """Poll until `predicate()` is truthy; fail naming `what` after the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def bootstrap(cluster: Cluster, avoid: frozenset[int] = frozenset()) -> str:
    """The brokers' addresses, without nodes a test stopped (a SIGSTOPped broker accepts
    connections and never answers, which stalls a client's bootstrap)."""
    return ",".join(
        f"{n.host}:{n.port}" for n in cluster.nodes if n.is_broker and n.node_id not in avoid
    )


def admin(cluster: Cluster, avoid: frozenset[int] = frozenset()) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bootstrap(cluster, avoid), request_timeout_ms=10_000)


def create_topic(
    cluster: Cluster,
    name: str,
    partitions: int = 1,
    replication: int = 3,
    avoid: frozenset[int] = frozenset(),
) -> None:
    client = admin(cluster, avoid)
    try:
        client.create_topics([NewTopic(name, partitions, replication)])
    finally:
        client.close()
    wait_for(lambda: leader_of(cluster, name, 0, avoid) >= 0, f"a leader for {name}")


def partition_state(
    cluster: Cluster, topic: str, partition: int, avoid: frozenset[int] = frozenset()
) -> dict[str, Any]:
    """Leader and ISR as some live broker's metadata shows them ({} if none answers:
    brokers may be down mid-probe, and callers poll)."""
    try:
        client = admin(cluster, avoid)
        try:
            described = client.describe_topics([topic])[0]
        finally:
            client.close()
        return next(p for p in described["partitions"] if p["partition_index"] == partition)
    except (KafkaError, OSError, StopIteration):
        return {}


def leader_of(
    cluster: Cluster, topic: str, partition: int, avoid: frozenset[int] = frozenset()
) -> int:
    return partition_state(cluster, topic, partition, avoid).get("leader_id", -1)


def isr_of(
    cluster: Cluster, topic: str, partition: int, avoid: frozenset[int] = frozenset()
) -> list[int]:
    return partition_state(cluster, topic, partition, avoid).get("isr_nodes", [])


def read_all(cluster: Cluster, topic: str, partitions: int) -> dict[int, list[bytes]]:
    """Every committed value per partition, from the start."""
    consumer = KafkaConsumer(
        bootstrap_servers=cluster.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=4_000,
    )
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        values: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
        for message in consumer:
            values[message.partition].append(message.value)
        return values
    finally:
        consumer.close()


def active_controller(cluster: Cluster, other_than: int | None = None) -> int:
    """Wait for a Raft leader (as the voters report it in MetadataFetch) other than
    `other_than`; its node id."""

    def probe() -> tuple[int] | None:
        leader = trio.run(_ask_voters, cluster)
        return (leader,) if leader is not None and leader != other_than else None

    return wait_for(probe, "an active controller")[0]


async def _ask_voters(cluster: Cluster) -> int | None:
    runtime = real_runtime()
    for node in cluster.nodes:
        if "controller" in node.roles:
            leader = await _raft_leader_seen_by(runtime, node.host, node.port)
            if leader is not None:
                return leader
    return None


async def _raft_leader_seen_by(runtime: Runtime, host: str, port: int) -> int | None:
    body = {"from_index": 1, "max_bytes": 1}
    leader = None
    with trio.move_on_after(2):
        try:
            async with trio.open_nursery() as nursery:
                connection = await Connection.open(
                    runtime, nursery, host, port, client_id="test", request_timeout_ms=1_000
                )
                response = await connection.request(API_KEYS["MetadataFetch"], body)
                await connection.aclose()
                leader = response["leader_id"] if response["leader_id"] >= 0 else None
        except* ClientError:
            pass  # a dead voter knows no leader; the next one is asked
    return leader


async def _produce(
    cluster: Cluster,
    topic: str,
    seconds: float,
    during: Callable[[], None] | None,
    at_s: float,
    first: int,
    avoid: frozenset[int],
) -> tuple[list[int], list[ClientError]]:
    config = Config.parse(
        [
            "acks=all",
            "enable.idempotence=true",
            "linger.ms=5",
            "request.timeout.ms=3000",
            "delivery.timeout.ms=10000",
        ]
    )
    runtime = real_runtime()
    deliveries = []
    async with Producer(runtime, bootstrap(cluster, avoid), config) as producer:
        started = trio.current_time()
        n = first
        while trio.current_time() - started < seconds:
            deliveries.append((n, await producer.send(topic, b"%d" % n)))
            n += 1
            if during is not None and trio.current_time() - started > at_s:
                during()
                during = None
            await trio.sleep(0.003)
        await producer.flush()
    acked, errors = [], []
    for n, delivery in deliveries:
        try:
            await delivery.wait()
            acked.append(n)
        except ClientError as error:
            errors.append(error)
    return acked, errors


def produce_while(
    cluster: Cluster,
    topic: str,
    seconds: float,
    during: Callable[[], None] | None = None,
    at_s: float = 2.0,
    first: int = 0,
    avoid: frozenset[int] = frozenset(),
) -> tuple[list[int], list[ClientError]]:
    """Send values `first`, `first`+1, ... for `seconds` with the native producer
    (idempotent, acks=all), calling `during()` once after `at_s`: the numbers
    acknowledged, and the errors of the others."""
    return trio.run(_produce, cluster, topic, seconds, during, at_s, first, avoid)
