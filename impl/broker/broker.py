"""One broker: a Kafka-protocol server over its data directory.

The broker owns the control flow: it accepts connections, reads one frame at a time
per connection (Kafka answers a connection's requests in order), hands each decoded
request to its handler in `impl.broker.apis`, and runs the periodic flush, checkpoint
and retention tasks. All of it lives in one nursery; stopping is cancelling it, after
which the logs are flushed and checkpointed (a SIGTERM shutdown recovers nothing),
unless `crash()` came first: then it stops as kill -9 would (the simulator's crash).
"""

from __future__ import annotations

import logging
import posixpath
import random
from dataclasses import dataclass
from typing import Any

import trio

from impl.broker import apis
from impl.broker.group_coordinator import GroupCoordinator
from impl.broker.logs import LogManager
from impl.broker.member import ClusterMember, ControllerUnavailable
from impl.broker.partition import ChangeSignal, Partition
from impl.controller import controller as decide
from impl.controller.quorum import QuorumNode
from impl.protocol import (
    API_KEYS,
    FrameReader,
    ProtocolError,
    RequestHeader,
    UnsupportedVersionError,
    decode_request,
    encode_response,
)
from impl.protocol.frames import RequestBytesPool
from impl.runtime import waits
from impl.runtime.net import LogLimiter, peer_host
from impl.runtime.runtime import Runtime
from impl.storage.checkpoint import write_atomically
from model.config import Config
from model.errors import Errors

log = logging.getLogger("replog.broker")

FLUSH_CHECK_INTERVAL_MS_MAX = 1_000
PRODUCER_ID_BLOCK_FILE = "producer-id-block"
CREATE_TOPICS_FORWARD_TIMEOUT_MS = 10_000
PRODUCER_ID_BLOCK_SIZE = 1_000
# Producer ids carry the broker id in their top bits, so brokers never hand out the
# same id without asking anyone; 2**40 ids per broker outlast any test campaign.
PRODUCER_ID_BROKER_SHIFT = 40
# A timed-out connection is closed within a quarter of its timeout after it expires.
CONNECTION_CHECKS_PER_TIMEOUT = 4
CONNECTION_CHECK_MIN_S = 0.01


@dataclass(slots=True, eq=False)
class _Connection:
    """One client connection as the connection limits see it (trio's clock, seconds)."""

    scope: trio.CancelScope
    host: str | None
    last_active_s: float
    # When the first byte of the frame still arriving came in; None between frames.
    frame_started_s: float | None = None
    handling: bool = False
    reserved_bytes: int = 0

    def between_requests(self) -> bool:
        return not self.handling and self.frame_started_s is None


@dataclass(frozen=True, slots=True)
class PartitionView:
    index: int
    leader: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class TopicView:
    name: str
    topic_id: bytes
    partitions: tuple[PartitionView, ...]


def _local_view(partition: Partition) -> PartitionView:
    return PartitionView(
        partition.index,
        partition.leader_id,
        partition.leader_epoch,
        partition.replicas,
        tuple(sorted(partition.isr)),
    )


class Broker:
    def __init__(
        self,
        broker_id: int,
        data_dir: str,
        host: str,
        port: int,
        config: Config,
        runtime: Runtime,
        cluster_id: str = "replog",
        voters: dict[int, tuple[str, int]] | None = None,
        roles: tuple[str, ...] = ("broker",),
    ) -> None:
        assert roles and set(roles) <= {"broker", "controller"}, f"bad roles {roles}"
        assert voters or roles == ("broker",), "a controller needs the quorum's voters"
        self.broker_id = broker_id
        self.roles = roles
        self.host = host
        self.port = port
        self.config = config
        self.runtime = runtime
        self.clock = runtime.clock
        self.cluster_id = cluster_id
        self.data_dir = data_dir
        # Metadata image changes; each partition has its own signal.
        self.changes = ChangeSignal()
        self.logs = LogManager(runtime.fs, data_dir, config, broker_id)
        # An insertion-ordered set: the registry the connection limits read.
        self._connections: dict[_Connection, None] = {}
        self._connections_per_host: dict[str, int] = {}
        self._request_bytes = RequestBytesPool(
            config.queued_max_request_bytes, config.max_connections
        )
        self._limiter = LogLimiter(log)
        self._producer_ids: range = range(0)
        self._producer_ids_used = 0
        self._crashed = False
        self.quorum = (
            QuorumNode(broker_id, voters, data_dir, config, runtime)
            if voters and "controller" in roles
            else None
        )
        self.member = ClusterMember(self, voters) if voters and "broker" in roles else None
        self.coordinator = GroupCoordinator(self)

    @property
    def standalone(self) -> bool:
        """No controller quorum: this broker is the only replica of everything it has."""
        return self.quorum is None and self.member is None

    # ---- lifecycle ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the data dir, serve until cancelled, then flush and checkpoint."""
        self.logs.open()
        if self.standalone:
            self._lead_every_partition()
        log.info(
            "broker %d opened %s: %d topics, %d partitions",
            self.broker_id,
            self.data_dir,
            len(self.logs.topics),
            len(self.logs.partitions),
        )
        try:
            async with trio.open_nursery() as nursery:
                self.port = await nursery.start(
                    self.runtime.net.serve, self._serve_connection, self.host, self.port
                )
                if self.quorum is not None:
                    nursery.start_soon(self.quorum.run)
                if self.member is not None:
                    nursery.start_soon(self.member.run)
                if "broker" in self.roles:
                    nursery.start_soon(self.coordinator.run)
                nursery.start_soon(self._every, self._flush_interval_ms(), self._flush)
                nursery.start_soon(
                    self._every,
                    self.config.replica_high_watermark_checkpoint_interval_ms,
                    self._checkpoint,
                )
                nursery.start_soon(
                    self._every, self.config.log_retention_check_interval_ms, self._retain
                )
                nursery.start_soon(self._clean_periodically)
                nursery.start_soon(self._watch_connections)
                log.info("broker %d listening on %s:%d", self.broker_id, self.host, self.port)
                task_status.started(self.port)
        finally:
            if self._crashed:
                log.info("broker %d crashed: nothing flushed or checkpointed", self.broker_id)
            else:
                self._shut_down_cleanly()

    def _shut_down_cleanly(self) -> None:
        self.logs.close()
        if self.member is not None:
            self.member.mark_clean_shutdown()
        log.info("broker %d stopped; logs flushed and checkpointed", self.broker_id)

    def crash(self) -> None:
        """Make the cancellation of `run` that follows a kill -9: no flush, no checkpoint,
        no clean-shutdown marker. The simulator's crash; a real process just dies."""
        self._crashed = True

    def _lead_every_partition(self) -> None:
        """A broker without a controller quorum is the only replica of every partition;
        it keeps its last leader epoch across restarts."""
        for partition in self.logs.partitions.values():
            if partition.is_leader:
                continue
            epoch = max(partition.log.latest_epoch, 0)
            partition.become_leader(
                epoch, 0, (self.broker_id,), frozenset({self.broker_id}), self.clock.wall_ms()
            )

    def endpoint(self) -> dict[str, Any]:
        return {"node_id": self.broker_id, "host": self.host, "port": self.port, "rack": None}

    # ---- what Metadata answers ---------------------------------------------------------

    def brokers(self) -> list[dict[str, Any]]:
        """Live brokers as clients should see them (in a cluster: the unfenced ones)."""
        if self.member is None:
            return [self.endpoint()]
        image = self.member.image
        return [
            {
                "node_id": b,
                "host": image.brokers[b].host,
                "port": image.brokers[b].port,
                "rack": None,
            }
            for b in image.unfenced_brokers()
        ]

    def controller_id(self) -> int:
        """What Metadata calls the controller. As in KRaft, clients cannot reach the
        quorum, so a cluster broker names itself: it forwards admin requests."""
        return self.broker_id

    def topic_views(self) -> dict[str, TopicView]:
        """Every topic with its partitions' leaders, epochs, replicas and ISRs."""
        if self.member is None:
            return {
                name: TopicView(
                    name,
                    topic.topic_id,
                    tuple(
                        _local_view(self.logs.partitions[(name, index)])
                        for index in range(topic.partitions)
                    ),
                )
                for name, topic in self.logs.topics.items()
            }
        return {
            name: TopicView(
                name,
                bytes.fromhex(topic.topic_id),
                tuple(
                    PartitionView(index, r.leader, r.leader_epoch, r.replicas, r.isr)
                    for index, r in enumerate(topic.partitions)
                ),
            )
            for name, topic in self.member.image.topics.items()
        }

    def topic_overrides(self, name: str) -> dict[str, str] | None:
        """A topic's config overrides, None if there is no such topic (in a cluster: as
        this broker's metadata image has them, which is what DescribeConfigs answers)."""
        if self.member is None:
            topic = self.logs.topics.get(name)
            return None if topic is None else dict(topic.overrides)
        image = self.member.image.topics.get(name)
        return None if image is None else dict(image.configs)

    # ---- state changes the handlers ask for --------------------------------------------

    def create_topic(
        self, name: str, partitions: int, replication_factor: int, overrides: dict[str, str]
    ) -> tuple[Errors, str | None]:
        topic_id = new_topic_id(self.runtime.rng)
        error, message = self.logs.create_topic(
            name, topic_id, partitions, replication_factor, overrides
        )
        if error == Errors.NONE:
            self._lead_every_partition()
            log.info("created topic %s with %d partitions", name, partitions)
        return error, message

    async def create_topic_in_cluster(
        self,
        name: str,
        partitions: int,
        replication_factor: int,
        overrides: dict[str, str],
        timeout_ms: int,
    ) -> tuple[int, str | None]:
        """Decide it here if this node is the active controller, else forward it there;
        then wait (bounded) until this broker's metadata shows it."""
        with trio.move_on_after(timeout_ms / 1000):
            error, message = await self._decide_or_forward_topic(
                name, partitions, replication_factor, overrides
            )
            if error == Errors.NONE and self.member is not None:
                while name not in self.member.image.topics:
                    await self.changes.wait()
            return error, message
        return Errors.REQUEST_TIMED_OUT, f"topic {name!r} not created within {timeout_ms} ms"

    async def _decide_or_forward_topic(
        self, name: str, partitions: int, replication_factor: int, overrides: dict[str, str]
    ) -> tuple[int, str | None]:
        if self.quorum is not None and self.quorum.active is not None:
            request = decide.CreateTopicRequest(
                name,
                new_topic_id(self.runtime.rng).hex(),
                partitions,
                replication_factor,
                tuple(sorted(overrides.items())),
            )
            decision = decide.create_topic(self.quorum.active, request, self.config)
            outcome = await self.quorum.commit(decision)
            if outcome.error == Errors.INVALID_CONFIG:
                return outcome.error, decide.topic_config_error(self.config, request.configs)
            return outcome.error, None
        if self.member is None:
            return Errors.NOT_CONTROLLER, "this controller is not the active one"
        body = {
            "topics": [
                {
                    "name": name,
                    "num_partitions": partitions,
                    "replication_factor": replication_factor,
                    "configs": [{"name": k, "value": v} for k, v in overrides.items()],
                }
            ],
            "timeout_ms": CREATE_TOPICS_FORWARD_TIMEOUT_MS,
        }
        try:
            response = await self.member.call_controller("CreateTopics", body)
        except ControllerUnavailable as error:
            return Errors.NOT_CONTROLLER, str(error)
        row = response["topics"][0]
        return row["error_code"], row.get("error_message")

    def maybe_expand_isr(self, partition: Partition, follower: int) -> None:
        """Ask the controller to add a follower that caught up (AlterPartition)."""
        proposal = partition.isr_expansion(follower)
        if proposal is not None and self.member is not None:
            self.member.request_isr_change(partition, proposal)

    def next_producer_id(self) -> int:
        """Ids come from blocks reserved on disk before use, so a restart never reuses one."""
        if self._producer_ids_used == len(self._producer_ids):
            self._producer_ids = self._reserve_producer_ids()
            self._producer_ids_used = 0
        producer_id = self._producer_ids[self._producer_ids_used]
        self._producer_ids_used += 1
        return (self.broker_id << PRODUCER_ID_BROKER_SHIFT) + producer_id

    def _reserve_producer_ids(self) -> range:
        fs = self.runtime.fs
        path = posixpath.join(self.data_dir, PRODUCER_ID_BLOCK_FILE)
        start = int(fs.read(path, 0, fs.size(path)).decode()) if fs.exists(path) else 0
        write_atomically(fs, path, str(start + PRODUCER_ID_BLOCK_SIZE).encode())
        return range(start, start + PRODUCER_ID_BLOCK_SIZE)

    # ---- connections -------------------------------------------------------------------

    async def _serve_connection(self, stream: trio.abc.Stream) -> None:
        host = peer_host(stream)
        if not self._admit(host):
            await stream.aclose()
            return
        connection = _Connection(trio.CancelScope(), host, trio.current_time())
        self._register(connection)
        try:
            with connection.scope:
                async with stream:
                    await self._answer_requests(stream, connection)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            log.debug("connection closed by the client")
        except ProtocolError as error:
            self._limiter.warning(
                "protocol errors", "closing a connection from %s: %s", host, error
            )
        except Exception:
            # A handler bug must cost one connection, never the broker.
            self._limiter.error(
                "internal errors", "closing a connection from %s after an internal error", host
            )
        finally:
            self._unregister(connection)
            self._request_bytes.release(connection.reserved_bytes)

    def _admit(self, host: str | None) -> bool:
        """Kafka refuses a connection over max.connections.per.ip; over max.connections
        replog closes the connection idle longest instead, so idle sockets cannot lock
        clients out, and refuses only when every connection is mid-request."""
        limit = self.config.max_connections_per_ip
        if host is not None and self._connections_per_host.get(host, 0) >= limit:
            self._limiter.warning(
                "refused connections",
                "refusing a connection from %s: max.connections.per.ip=%d",
                host,
                limit,
            )
            return False
        if len(self._connections) < self.config.max_connections:
            return True
        idle = [c for c in self._connections if c.between_requests()]
        if not idle:
            self._limiter.warning(
                "refused connections",
                "refusing a connection: max.connections=%d, all of them mid-request",
                self.config.max_connections,
            )
            return False
        idlest = min(idle, key=lambda c: c.last_active_s)
        self._close(
            idlest,
            "evicted connections",
            f"max.connections={self.config.max_connections} reached: closing the "
            f"connection idle longest ({trio.current_time() - idlest.last_active_s:.1f} s)",
        )
        return True

    def _register(self, connection: _Connection) -> None:
        self._connections[connection] = None
        if connection.host is not None:
            count = self._connections_per_host.get(connection.host, 0)
            self._connections_per_host[connection.host] = count + 1

    def _unregister(self, connection: _Connection) -> None:
        if self._connections.pop(connection, False) is None and connection.host is not None:
            count = self._connections_per_host.pop(connection.host) - 1
            if count:
                self._connections_per_host[connection.host] = count

    def _close(self, connection: _Connection, kind: str | None, reason: str) -> None:
        """Close a connection from outside its task; `kind` None logs at debug only."""
        if kind is None:
            log.debug("closing a connection from %s: %s", connection.host, reason)
        else:
            self._limiter.warning(kind, "closing a connection from %s: %s", connection.host, reason)
        self._unregister(connection)
        connection.scope.cancel()

    async def _watch_connections(self) -> None:
        """Close connections idle past connections.max.idle.ms (a peer that vanished
        without a FIN included) and frames not whole within replog.request.read.timeout.ms
        of their first byte (a trickle would otherwise hold a connection forever)."""
        idle_s = self.config.connections_max_idle_ms / 1000
        read_s = self.config.request_read_timeout_ms / 1000
        while True:
            await waits.sleep(
                max(min(idle_s, read_s) / CONNECTION_CHECKS_PER_TIMEOUT, CONNECTION_CHECK_MIN_S)
            )
            now = trio.current_time()
            for connection in list(self._connections):
                if connection.handling:
                    continue
                if connection.frame_started_s is not None:
                    if now - connection.frame_started_s > read_s:
                        self._close(
                            connection,
                            "request read timeouts",
                            f"a frame not received whole within "
                            f"replog.request.read.timeout.ms="
                            f"{self.config.request_read_timeout_ms}",
                        )
                elif now - connection.last_active_s > idle_s:
                    self._close(
                        connection,
                        None,
                        f"idle for connections.max.idle.ms={self.config.connections_max_idle_ms}",
                    )
            self._limiter.flush()

    async def _answer_requests(self, stream: trio.abc.Stream, connection: _Connection) -> None:
        # Every frame one receive brings is answered before the next receive: one receive
        # per arrival, rather than one for the size prefix and another for the frame.
        reader = FrameReader(self.config.socket_request_max_bytes)
        while True:
            wanted = reader.pending_frame_bytes
            if wanted != connection.reserved_bytes:
                self._request_bytes.release(connection.reserved_bytes)
                connection.reserved_bytes = 0
                await self._request_bytes.acquire(wanted)
                connection.reserved_bytes = wanted
            data = await stream.receive_some(self._request_bytes.receive_limit(reader))
            now = trio.current_time()
            connection.last_active_s = now
            if not data:
                if reader.buffered_bytes:
                    raise ProtocolError(
                        f"connection closed inside a frame ({reader.buffered_bytes} bytes in)"
                    )
                return
            frames = reader.feed(data)
            if not reader.buffered_bytes:
                connection.frame_started_s = None
            elif frames or connection.frame_started_s is None:
                connection.frame_started_s = now
            for frame in frames:
                await self._answer(stream, frame, connection)

    async def _answer(self, stream: trio.abc.Stream, frame: bytes, connection: _Connection) -> None:
        try:
            request = decode_request(frame)
        except UnsupportedVersionError as error:
            if error.api_key != API_KEYS["ApiVersions"]:
                raise
            # Kafka answers an ApiVersions it cannot parse in v0, listing what it has.
            header = RequestHeader(error.api_key, 0, error.correlation_id, None)
            body = {
                "error_code": Errors.UNSUPPORTED_VERSION,
                "api_keys": apis.supported_api_keys(),
            }
            await stream.send_all(encode_response(header, body))
            return
        handler = apis.HANDLERS.get(request.header.api_key)
        if handler is None:
            raise ProtocolError(f"no handler for API key {request.header.api_key}")
        connection.handling = True
        try:
            response = await handler(self, request)
        finally:
            connection.handling = False
            connection.last_active_s = trio.current_time()
        if response is not None:
            await stream.send_all(encode_response(request.header, response))

    # ---- periodic tasks ----------------------------------------------------------------

    def _flush_interval_ms(self) -> int:
        return max(1, min(self.config.flush_ms, FLUSH_CHECK_INTERVAL_MS_MAX))

    async def _every(self, interval_ms: int, action: Any) -> None:
        while True:
            await waits.sleep(interval_ms / 1000)
            action()

    def _flush(self) -> None:
        self.logs.flush_due(self.clock.wall_ms())

    def _checkpoint(self) -> None:
        self.logs.checkpoint()

    def _retain(self) -> None:
        deleted = self.logs.apply_retention(self.clock.wall_ms())
        if deleted:
            log.info("retention deleted %d segments", deleted)

    async def _clean_periodically(self) -> None:
        while True:
            await waits.sleep(self.config.log_cleaner_backoff_ms / 1000)
            cleaned = await self.logs.clean_filthiest(self.clock.wall_ms())
            if cleaned is None:
                continue
            partition, result = cleaned
            log.info(
                "cleaned %s-%d: %d segments of %d bytes into %d of %d bytes, %d records "
                "and %d tombstones removed",
                partition.topic,
                partition.index,
                result.segments_before,
                result.size_bytes_before,
                result.segments_after,
                result.size_bytes_after,
                result.records_removed,
                result.tombstones_removed,
            )


def new_topic_id(rng: random.Random) -> bytes:
    """A random non-zero UUID (the zero UUID means "no id" on the wire)."""
    while True:
        topic_id = rng.getrandbits(128).to_bytes(16, "big")
        if any(topic_id):
            return topic_id
