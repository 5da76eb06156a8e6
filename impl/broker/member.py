"""A broker's part in a cluster: its session with the controller quorum, its copy of
the metadata log, and the replication tasks that the metadata asks for.

- Lifecycle: register (with the incarnation saved at the last clean shutdown, if any),
  then heartbeat every broker.heartbeat.interval.ms; a refused heartbeat re-registers.
- Metadata: fetch committed entries from any voter and apply them in order, then
  `reconcile`: each local replica becomes leader or follower as the image says. A broker
  that lags behind the log keeps acting on what it last knew (that is how zombie
  leaders happen, and what leader epochs and fencing are for).
- Replication: one fetcher task per leader this broker follows (`impl.broker.fetcher`),
  an ISR-shrink timer for the partitions it leads, and AlterPartition requests for ISR
  changes, which only the controller decides.
"""

from __future__ import annotations

import logging
import posixpath
from collections import deque
from typing import TYPE_CHECKING, Any

import trio

from impl.broker.fetcher import run_fetcher
from impl.broker.partition import NO_LEADER, Partition, Phase
from impl.client.connection import Connection
from impl.client.errors import ClientError
from impl.controller.controller import ControllerError
from impl.controller.metadata import MetadataImage, TopicImage, apply_all, decode_batch
from impl.protocol import API_KEYS
from impl.runtime import waits
from impl.storage.checkpoint import write_atomically
from model.errors import Errors

if TYPE_CHECKING:
    from impl.broker.broker import Broker

log = logging.getLogger("replog.broker")

METADATA_POLL_INTERVAL_MS = 50
# A MetadataFetch waits up to this long on the voter for a new committed entry (Kafka's
# brokers long-poll the metadata log the same way), so an idle broker asks twice a
# second instead of polling every METADATA_POLL_INTERVAL_MS.
METADATA_FETCH_WAIT_MS = 500
METADATA_FETCH_BYTES_MAX = 1 << 20
CONTROLLER_REQUEST_TIMEOUT_MS = 5_000
CONTROLLER_RETRY_BACKOFF_MS = 100
CLEAN_SHUTDOWN_FILE = "clean-shutdown"
ISR_CHECK_INTERVAL_MS_MAX = 1_000

Address = tuple[str, int]
Body = dict[str, Any]


class ControllerUnavailable(RuntimeError):
    """No voter answered as the active controller."""


class ClusterMember:
    def __init__(self, broker: Broker, voters: dict[int, Address]) -> None:
        self.broker = broker
        self.voters = voters
        self.image = MetadataImage()
        self.applied_index = 0
        # As a KRaft broker waits for its initial catch-up, act on the image only once it
        # holds this incarnation's registration and the quorum leader's commit index: the
        # controller fences the old incarnation and moves its leaderships at registration,
        # and a restarted broker acting before that would lead partitions at epochs long
        # gone and acknowledge acks=1 writes that it then truncates.
        self.metadata_caught_up = False
        self.incarnation = -1
        self.leader_hint: int | None = None
        # (voter, channel): the long-polling MetadataFetch has a connection of its own, as
        # requests on one connection are answered in order and must not wait behind it.
        self._connections: dict[tuple[int, str], Connection] = {}
        self._nursery: trio.Nursery | None = None
        self._fetchers: dict[int, trio.CancelScope] = {}
        self._fetcher_nursery: trio.Nursery | None = None
        self.previous_incarnation = self._take_clean_shutdown_marker()

    # ---- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._follow_metadata)
            nursery.start_soon(self._keep_session)
            nursery.start_soon(self._shrink_isr_periodically)
            async with trio.open_nursery() as fetchers:
                self._fetcher_nursery = fetchers
                await trio.sleep_forever()

    def mark_clean_shutdown(self) -> None:
        """Called after the logs are flushed: the next start may claim our incarnation."""
        if self.incarnation >= 0:
            path = posixpath.join(self.broker.data_dir, CLEAN_SHUTDOWN_FILE)
            write_atomically(self.broker.runtime.fs, path, str(self.incarnation).encode())

    def _take_clean_shutdown_marker(self) -> int:
        fs = self.broker.runtime.fs
        path = posixpath.join(self.broker.data_dir, CLEAN_SHUTDOWN_FILE)
        if not fs.exists(path):
            return -1
        text = fs.read(path, 0, fs.size(path)).decode(errors="replace").strip()
        fs.remove(path)
        fs.fsync_dir(self.broker.data_dir)
        return int(text) if text.lstrip("-").isdigit() else -1

    # ---- controller calls --------------------------------------------------------------

    async def call_controller(self, api: str, body: Body) -> Body:
        """Ask the active controller: the last known one first, then every voter once,
        following NOT_CONTROLLER answers that name the leader."""
        candidates = deque(sorted(self.voters, key=lambda v: v != self.leader_hint))
        tried: set[int] = set()
        while candidates:
            voter = candidates.popleft()
            if voter in tried:
                continue
            tried.add(voter)
            response = await self._call(voter, api, body)
            if response is None:
                continue
            if response.get("error_code") == Errors.NOT_CONTROLLER:
                hint = response.get("leader_id", -1)
                if hint in self.voters and hint not in tried:
                    candidates.appendleft(hint)
                continue
            self.leader_hint = voter
            return response
        raise ControllerUnavailable(f"no active controller among {sorted(self.voters)}")

    async def _call(
        self, voter: int, api: str, body: Body, channel: str = "control"
    ) -> Body | None:
        try:
            connection = await self._connection(voter, channel)
            return await connection.request(API_KEYS[api], body)
        except ClientError as error:
            log.debug("controller %d unreachable: %s", voter, error)
            self._connections.pop((voter, channel), None)
            return None

    async def _connection(self, voter: int, channel: str) -> Connection:
        connection = self._connections.get((voter, channel))
        if connection is not None and connection.alive:
            return connection
        assert self._nursery is not None, "run() first"
        host, port = self.voters[voter]
        connection = await Connection.open(
            self.broker.runtime,
            self._nursery,
            host,
            port,
            client_id=f"broker-{self.broker.broker_id}",
            request_timeout_ms=CONTROLLER_REQUEST_TIMEOUT_MS,
        )
        self._connections[(voter, channel)] = connection
        return connection

    # ---- session -----------------------------------------------------------------------

    async def _keep_session(self) -> None:
        interval_s = self.broker.config.broker_heartbeat_interval_ms / 1000
        while True:
            try:
                if self.incarnation < 0:
                    await self._register()
                else:
                    await self._heartbeat()
            except ControllerUnavailable as error:
                log.debug("%s", error)
                await waits.sleep(CONTROLLER_RETRY_BACKOFF_MS / 1000)
                continue
            await waits.sleep(interval_s if self.incarnation >= 0 else 0.1)

    async def _register(self) -> None:
        broker = self.broker
        body = {
            "broker_id": broker.broker_id,
            "host": broker.host,
            "port": broker.port,
            "previous_incarnation": self.previous_incarnation,
        }
        response = await self.call_controller("BrokerRegistration", body)
        if response["error_code"] == Errors.NONE:
            self.incarnation = response["incarnation"]
            log.info("registered as broker %d incarnation %d", broker.broker_id, self.incarnation)

    async def _heartbeat(self) -> None:
        body = {
            "broker_id": self.broker.broker_id,
            "incarnation": self.incarnation,
            "metadata_offset": self.applied_index,
        }
        response = await self.call_controller("BrokerHeartbeat", body)
        if response["error_code"] != Errors.NONE:
            log.info("heartbeat refused (%d): registering again", response["error_code"])
            self.previous_incarnation = self.incarnation
            self.incarnation = -1

    # ---- metadata ----------------------------------------------------------------------

    async def _follow_metadata(self) -> None:
        while True:
            fetched = await self._fetch_metadata()
            if not fetched:
                await waits.sleep(METADATA_POLL_INTERVAL_MS / 1000)

    async def _fetch_metadata(self) -> bool:
        """Apply the next committed entries from any voter (waiting there up to
        METADATA_FETCH_WAIT_MS for some); whether there were any."""
        body = {
            "from_index": self.applied_index + 1,
            "max_bytes": METADATA_FETCH_BYTES_MAX,
            "max_wait_ms": METADATA_FETCH_WAIT_MS,
        }
        order = sorted(self.voters, key=lambda v: v != self.leader_hint)
        for voter in order:
            response = await self._call(voter, "MetadataFetch", body, channel="metadata")
            if response is None or response["error_code"] != Errors.NONE:
                continue
            if response["leader_id"] in self.voters:
                self.leader_hint = response["leader_id"]
            entries = response["entries"]
            if entries:
                self._apply(entries)
            from_leader = response["leader_id"] == voter
            caught_up = from_leader and self.applied_index >= response["commit_index"]
            if caught_up and self._registered_in_image() and not self.metadata_caught_up:
                self.metadata_caught_up = True
                self.reconcile()
            return bool(entries)
        return False

    def _registered_in_image(self) -> bool:
        registration = self.image.brokers.get(self.broker.broker_id)
        if registration is None or self.incarnation < 0:
            return False
        return registration.incarnation == self.incarnation

    def _apply(self, entries: list[Body]) -> None:
        image = self.image
        for entry in entries:
            assert entry["index"] == self.applied_index + 1, "metadata entries apply in order"
            if entry["data"]:
                image = apply_all(image, decode_batch(bytes(entry["data"])))
            self.applied_index = entry["index"]
        self.image = image
        if self.metadata_caught_up:
            self.reconcile()

    def reconcile(self) -> None:
        """Make every local replica leader or follower as the image says."""
        now_ms = self.broker.clock.wall_ms()
        for topic in self.image.topics.values():
            for index, registration in enumerate(topic.partitions):
                if self.broker.broker_id in registration.replicas:
                    partition = self.broker.logs.ensure_partition(
                        topic.name, index, registration.replicas, dict(topic.configs)
                    )
                    self._adopt(partition, topic, index, now_ms)
        self._ensure_fetchers()
        self.broker.changes.notify()

    def _adopt(self, partition: Partition, topic: TopicImage, index: int, now_ms: int) -> None:
        registration = topic.partitions[index]
        isr = frozenset(registration.isr)
        if registration.leader == self.broker.broker_id:
            if not partition.is_leader or partition.leader_epoch != registration.leader_epoch:
                partition.become_leader(
                    registration.leader_epoch,
                    registration.partition_epoch,
                    registration.replicas,
                    isr,
                    now_ms,
                )
            elif registration.partition_epoch > partition.partition_epoch:
                partition.isr_change_committed(isr, registration.partition_epoch)
            return
        if registration.leader_epoch < partition.leader_epoch:
            return
        partition.become_follower(
            registration.leader,
            registration.leader_epoch,
            registration.partition_epoch,
            registration.replicas,
            isr,
        )

    # ---- replication -------------------------------------------------------------------

    def following(self, leader_id: int) -> list[Partition]:
        return [
            p
            for p in self.broker.logs.partitions.values()
            if p.leader_id == leader_id and p.phase in (Phase.FETCHING, Phase.TRUNCATING)
        ]

    def endpoint_of(self, broker_id: int) -> Address | None:
        registration = self.image.brokers.get(broker_id)
        if registration is None:
            return None
        return registration.host, registration.port

    def _ensure_fetchers(self) -> None:
        if self._fetcher_nursery is None:
            return
        leaders = {
            p.leader_id
            for p in self.broker.logs.partitions.values()
            if p.phase in (Phase.FETCHING, Phase.TRUNCATING) and p.leader_id != NO_LEADER
        }
        for leader_id in leaders - set(self._fetchers):
            scope = trio.CancelScope()
            self._fetchers[leader_id] = scope
            self._fetcher_nursery.start_soon(self._fetch_from, leader_id, scope)

    async def _fetch_from(self, leader_id: int, scope: trio.CancelScope) -> None:
        try:
            with scope:
                await run_fetcher(self, leader_id)
        finally:
            self._fetchers.pop(leader_id, None)

    async def _shrink_isr_periodically(self) -> None:
        config = self.broker.config
        interval_ms = max(1, min(config.replica_lag_time_max_ms // 2, ISR_CHECK_INTERVAL_MS_MAX))
        while True:
            await waits.sleep(interval_ms / 1000)
            now_ms = self.broker.clock.wall_ms()
            for partition in list(self.broker.logs.partitions.values()):
                proposal = partition.isr_shrink(now_ms)
                if proposal is not None:
                    self.request_isr_change(partition, proposal)

    def request_isr_change(self, partition: Partition, new_isr: frozenset[int]) -> None:
        """Send AlterPartition in the background; the partition counts it as pending."""
        assert self._nursery is not None, "run() first"
        partition.pending_isr = new_isr
        self._nursery.start_soon(self._alter_partition, partition, new_isr)

    async def _alter_partition(self, partition: Partition, new_isr: frozenset[int]) -> None:
        """Kafka's AlterPartitionManager and Partition.handleAlterPartitionError: until the
        controller answers, the outcome is unknown and the pending ISR stays (the HW counts
        the maximal ISR: the committed one plus pending additions), and the same request
        is sent again. Only the controller's "not applied" answer resets the pending ISR;
        any other refusal leaves it for the metadata to override. The retries end when
        the metadata moves the partition on, as Kafka's do."""
        body = {
            "broker_id": self.broker.broker_id,
            "topic": partition.topic,
            "partition": partition.index,
            "leader_epoch": partition.leader_epoch,
            "partition_epoch": partition.partition_epoch,
            "new_isr": sorted(new_isr),
        }
        while _proposal_current(partition, body, new_isr):
            try:
                response = await self.call_controller("AlterPartition", body)
            except ControllerUnavailable as error:
                log.debug("AlterPartition of %s-%d: %s", partition.topic, partition.index, error)
                await waits.sleep(CONTROLLER_RETRY_BACKOFF_MS / 1000)
                continue
            if _proposal_current(partition, body, new_isr):
                _apply_alter_partition_answer(partition, response)
            return


def _proposal_current(partition: Partition, body: Body, new_isr: frozenset[int]) -> bool:
    """Whether `body` is still the partition's pending change: a late answer to a change
    that the metadata already overrode must not touch a newer one."""
    return (
        partition.is_leader
        and partition.pending_isr == new_isr
        and partition.leader_epoch == body["leader_epoch"]
        and partition.partition_epoch == body["partition_epoch"]
    )


def _apply_alter_partition_answer(partition: Partition, response: Body) -> None:
    error = response["error_code"]
    if error == Errors.NONE:
        log.info(
            "ISR of %s-%d is now %s (partition epoch %d)",
            partition.topic,
            partition.index,
            response["isr"],
            response["partition_epoch"],
        )
        partition.isr_change_committed(frozenset(response["isr"]), response["partition_epoch"])
    elif error == ControllerError.INELIGIBLE_REPLICA:
        # The controller says it did not apply the change at our (current) partition
        # epoch, and no controller can apply it later: back to the committed ISR.
        partition.pending_isr = None
    else:
        # Stale epochs, unknown partition, invalid request: the change may have been
        # applied (a retry of an applied change is refused as a stale version), so the
        # pending ISR stays until the metadata overrides it.
        log.info(
            "AlterPartition of %s-%d refused (%d): pending ISR kept until the metadata moves on",
            partition.topic,
            partition.index,
            error,
        )
