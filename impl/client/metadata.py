"""The client's view of the cluster: brokers, partition leaders, and connections to them.

Metadata is fetched for the topics a client has shown interest in and refreshed when it
is older than metadata.max.age.ms or when something says it is stale: a leader error
(NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH, UNKNOWN_TOPIC_OR_PARTITION, ...) or a
lost connection; callers then `request_update()`. A refresh asks any live broker,
falling back to the bootstrap list, so a cluster that lost its first broker is still
found.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType

import trio

from impl.client.connection import Connection
from impl.client.errors import ClientError, NotSent
from impl.protocol import API_KEYS
from impl.runtime.runtime import Runtime
from model.config import Config
from model.errors import Errors

METADATA = API_KEYS["Metadata"]
NO_LEADER = -1


@dataclass(frozen=True, slots=True, order=True)
class TopicPartition:
    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}-{self.partition}"


@dataclass(frozen=True, slots=True)
class PartitionMetadata:
    partition: int
    leader_id: int
    leader_epoch: int
    error: int


@dataclass(frozen=True, slots=True)
class TopicMetadata:
    name: str
    error: int
    partitions: tuple[PartitionMetadata, ...]


def parse_bootstrap(servers: str | Sequence[str]) -> list[tuple[str, int]]:
    """`host:port,host:port` (or a list of `host:port`) as (host, port) pairs."""
    items = servers.split(",") if isinstance(servers, str) else list(servers)
    addresses = []
    for item in items:
        host, separator, port = item.strip().rpartition(":")
        if not separator or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(
                f"bad bootstrap server {item!r}: expected HOST:PORT, a port from 1 to 65535"
            )
        addresses.append((host.strip("[]"), int(port)))
    if not addresses:
        raise ValueError("no bootstrap servers given")
    return addresses


class Cluster:
    """Brokers, topics and one connection per broker; lives in its owner's nursery."""

    def __init__(
        self,
        runtime: Runtime,
        nursery: trio.Nursery,
        bootstrap: str | Sequence[str],
        config: Config,
        client_id: str,
    ) -> None:
        self.runtime = runtime
        self.config = config
        self.client_id = client_id
        self.bootstrap = parse_bootstrap(bootstrap)
        self.brokers: dict[int, tuple[str, int]] = {}
        self.topics: dict[str, TopicMetadata] = {}
        self.controller_id = NO_LEADER
        self._nursery = nursery
        self._connections: dict[tuple[str, int], Connection] = {}
        self._connect_locks: dict[tuple[str, int], trio.Lock] = {}
        self._interest: set[str] = set()
        self._refresh_lock = trio.Lock()
        self._refreshed_ms: int | None = None
        self._update_requested = False

    # ---- connections -------------------------------------------------------------------

    async def connection(self, node_id: int) -> Connection:
        """The connection to a broker known from metadata. Raises NotSent."""
        address = self.brokers.get(node_id)
        if address is None:
            raise NotSent(f"broker {node_id} is not in the metadata")
        return await self._connect(address)

    def open_connection(self, node_id: int) -> Connection | None:
        """The live connection to a broker known from metadata, if one is open now."""
        address = self.brokers.get(node_id)
        connection = None if address is None else self._connections.get(address)
        return connection if connection is not None and connection.alive else None

    async def any_connection(self) -> Connection:
        """A live connection if there is one, else the first known or bootstrap broker
        that answers. Raises NotSent naming every failure."""
        for connection in self._connections.values():
            if connection.alive:
                return connection
        failures = []
        for address in [*self.brokers.values(), *self.bootstrap]:
            try:
                return await self._connect(address)
            except NotSent as error:
                failures.append(str(error))
        raise NotSent("no broker reachable: " + "; ".join(dict.fromkeys(failures)))

    async def _connect(self, address: tuple[str, int]) -> Connection:
        connection = self._connections.get(address)
        if connection is not None and connection.alive:
            # Only opening a connection needs the lock (and its scheduling pass): every
            # request asks for one, and the request's own send yields anyway.
            await trio.lowlevel.checkpoint_if_cancelled()
            return connection
        lock = self._connect_locks.setdefault(address, trio.Lock())
        async with lock:
            connection = self._connections.get(address)
            if connection is not None and connection.alive:
                return connection
            if connection is not None:
                self.request_update()
            connection = await Connection.open(
                self.runtime,
                self._nursery,
                *address,
                client_id=self.client_id,
                request_timeout_ms=self.config.request_timeout_ms,
            )
            self._connections[address] = connection
            return connection

    async def wait_for_responses(self, timeout_ms: int) -> None:
        """Wait up to `timeout_ms` for every connection's written requests to settle.
        Closing a connection while a response is on its way makes the broker's write of
        it fail and end the connection before it reads what was pipelined behind (an
        acks=0 Produce, which has no answer)."""
        with trio.move_on_after(timeout_ms / 1000):
            for connection in list(self._connections.values()):
                await connection.wait_for_responses()

    async def aclose(self) -> None:
        connections = list(self._connections.values())
        self._connections.clear()
        for connection in connections:
            await connection.aclose()

    # ---- metadata ----------------------------------------------------------------------

    def request_update(self) -> None:
        self._update_requested = True

    def is_stale(self) -> bool:
        if self._update_requested or self._refreshed_ms is None:
            return True
        age_ms = self.runtime.clock.monotonic_ms() - self._refreshed_ms
        return age_ms >= self.config.metadata_max_age_ms

    def add_interest(self, topics: Iterable[str]) -> None:
        new = set(topics) - self._interest
        if new:
            self._interest |= new
            self.request_update()

    async def refresh(self, topics: Iterable[str] = ()) -> None:
        """Ask one broker for the metadata of every topic of interest (plus `topics`).
        Raises NotSent, RequestTimeout, ConnectionLost."""
        self.add_interest(topics)
        async with self._refresh_lock:
            # Requests made while this refresh is under way must survive it.
            self._update_requested = False
            try:
                connection = await self.any_connection()
                body = {
                    "topics": [{"name": name} for name in sorted(self._interest)],
                    "allow_auto_topic_creation": False,
                }
                response = await connection.request(METADATA, body)
            except BaseException:
                self._update_requested = True
                raise
            self._apply(response)
            self._refreshed_ms = self.runtime.clock.monotonic_ms()

    async def refresh_if_stale(self) -> None:
        """A refresh when one is due; failures leave the update requested for next time."""
        if self.is_stale():
            try:
                await self.refresh()
            except ClientError:
                return

    def _apply(self, response: dict) -> None:
        self.brokers = {b["node_id"]: (b["host"], b["port"]) for b in response["brokers"]}
        self.controller_id = response.get("controller_id", NO_LEADER)
        for topic in response["topics"]:
            partitions = tuple(
                PartitionMetadata(
                    p["partition_index"], p["leader_id"], p.get("leader_epoch", -1), p["error_code"]
                )
                for p in sorted(topic["partitions"], key=lambda p: p["partition_index"])
            )
            self.topics[topic["name"]] = TopicMetadata(
                topic["name"], topic["error_code"], partitions
            )
        for address in list(self._connections):
            if address not in self.brokers.values() and address not in self.bootstrap:
                self._nursery.start_soon(self._connections.pop(address).aclose)

    # ---- lookups -----------------------------------------------------------------------

    def partition_count(self, topic: str) -> int | None:
        """Partitions of a topic the metadata knows without error, else None."""
        entry = self.topics.get(topic)
        if entry is None or entry.error != Errors.NONE or not entry.partitions:
            return None
        return len(entry.partitions)

    def leader(self, tp: TopicPartition) -> PartitionMetadata | None:
        """The partition's leader entry, or None when it has no live leader right now."""
        entry = self.topics.get(tp.topic)
        if entry is None or not 0 <= tp.partition < len(entry.partitions):
            return None
        partition = entry.partitions[tp.partition]
        if partition.leader_id == NO_LEADER or partition.leader_id not in self.brokers:
            return None
        return partition

    def topic_missing(self, topic: str) -> bool:
        """True when the last metadata answer said the topic does not exist."""
        entry = self.topics.get(topic)
        return entry is not None and entry.error in (
            Errors.UNKNOWN_TOPIC_OR_PARTITION,
            Errors.INVALID_TOPIC_EXCEPTION,
        )

    async def wait_for_topic(self, topic: str, timeout_ms: int) -> int | None:
        """Partition count once metadata knows the topic; None if the broker says it
        does not exist (or it did not appear within the timeout)."""
        count = self.partition_count(topic)
        if count is not None and topic in self._interest:
            return count
        with trio.move_on_after(timeout_ms / 1000):
            while True:
                try:
                    await self.refresh([topic])
                except ClientError:
                    await trio.sleep(self.config.retry_backoff_ms / 1000)
                    continue
                count = self.partition_count(topic)
                if count is not None or self.topic_missing(topic):
                    return count
                await trio.sleep(self.config.retry_backoff_ms / 1000)
        return None


class ClusterSession:
    """A Cluster and the nursery its connections live in, for `async with`.

    The nursery is entered by hand and left with no exception, so an exception from
    the body propagates as itself rather than inside an ExceptionGroup; the nursery
    then reports only failures of its own tasks.
    """

    def __init__(
        self,
        runtime: Runtime,
        bootstrap: str | Sequence[str],
        config: Config,
        client_id: str,
    ) -> None:
        self._args = (runtime, bootstrap, config, client_id)
        self._stack = AsyncExitStack()
        self._nursery: trio.Nursery | None = None
        self._cluster: Cluster | None = None

    @property
    def nursery(self) -> trio.Nursery:
        assert self._nursery is not None, "use inside `async with`"
        return self._nursery

    @property
    def cluster(self) -> Cluster:
        assert self._cluster is not None, "use inside `async with`"
        return self._cluster

    async def __aenter__(self) -> ClusterSession:
        runtime, bootstrap, config, client_id = self._args
        self._nursery = await self._stack.enter_async_context(trio.open_nursery())
        self._cluster = Cluster(runtime, self._nursery, bootstrap, config, client_id)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel every task, wait for them, close the connections."""
        self.nursery.cancel_scope.cancel()
        try:
            await self._stack.__aexit__(None, None, None)
        finally:
            with trio.CancelScope(shield=True):
                await self.cluster.aclose()
