"""The group coordinator of one broker: consumer groups and their committed offsets.

Where a group lives (Kafka's rule): partition `hash(group) % offsets.topic.num.partitions`
of the internal topic `__consumer_offsets`, with Java's String.hashCode and Kafka's
`Utils.abs` (the sign bit masked off). The leader of that partition is the group's
coordinator; every other broker answers NOT_COORDINATOR. The topic is created on the
first FindCoordinator, replicated like any topic (`offsets.topic.replication.factor`,
capped at 1 for a standalone broker), and `cleanup.policy=compact`: never deleted by
retention, its closed segments cleaned down to the latest record per key by the log
cleaner (`impl.storage.cleaner`), and read keep-latest-per-key when loaded (see
`load_partition`), so loading does not depend on how far the cleaner got. Segments roll
at `offsets.topic.segment.bytes`.

Durability: an OffsetCommit and the leader's SyncGroup are appended to the group's
partition and answered only once the partition's HW passed the record (acks=all: the
same `produce_completion` rule as Produce), and only then applied to memory, so every
offset a client was told is committed survives the coordinator's kill -9 and a failover.
A broker that becomes leader of an offsets partition answers COORDINATOR_LOAD_IN_PROGRESS
until its HW reaches the start of its leader epoch (KIP-207: until then its log may hold
records it cannot know are committed), then replays the partition from its log start
(at the next tick or the first request, whichever comes first) and serves.

Time is the runtime's monotonic clock; one task ticks every group's deadlines every
GROUP_TICK_MS and notices leadership changes of the offsets partitions.

Expiry (KIP-211, `offsets.retention.minutes`, checked every
`offsets.retention.check.interval.ms`): a group with members keeps its offsets; in an
empty group an offset expires once the retention passed since the later of its commit and
the group's becoming empty (the `current_state_timestamp` of its stored record). Expired
offsets get tombstones (acks=all like a commit), and an empty group whose every offset
expired gets one too: it is gone, and the log cleaner later drops the tombstones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from impl.broker.groups import WAIT, Group, GroupState, JoinRequest, JoinResult, Member
from impl.broker.partition import Appended, ChangeSignal, Partition, wait_for_any
from impl.protocol import group_data
from impl.protocol.errors import ProtocolError
from impl.protocol.group_data import OFFSETS_TOPIC
from impl.storage.batch import (
    CorruptBatchError,
    Record,
    decode_records,
    encode_batch,
    iter_batches,
)
from model.errors import Errors

if TYPE_CHECKING:
    from impl.broker.broker import Broker

log = logging.getLogger("replog.broker")

GROUP_TICK_MS = 100
OFFSET_METADATA_BYTES_MAX = 4096
GROUP_ID_LENGTH_MAX = 255
LOAD_READ_BYTES = 1024 * 1024
CREATE_OFFSETS_TOPIC_TIMEOUT_MS = 10_000
# Parked JoinGroup / SyncGroup requests give up after this much past the rebalance
# timeout (a client's own request timeout is larger than its rebalance timeout).
PARKED_SLACK_MS = 5_000


def java_string_hash(text: str) -> int:
    """Java's String.hashCode over UTF-16 code units, as a signed 32-bit int."""
    h = 0
    data = text.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + (data[i] << 8 | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def offsets_partition_for(group_id: str, partitions: int) -> int:
    """Kafka's partitionFor: Utils.abs(groupId.hashCode) % groupMetadataTopicPartitionCount."""
    return (java_string_hash(group_id) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True, slots=True)
class CommittedOffset:
    offset: int
    leader_epoch: int
    metadata: str
    commit_timestamp_ms: int
    # Where the commit's record sits in __consumer_offsets: the cache takes commits in
    # log order, so a slow acks=all wait cannot put an older commit over a newer one.
    record_offset: int


@dataclass(frozen=True, slots=True)
class OffsetToCommit:
    topic: str
    partition: int
    offset: int
    leader_epoch: int
    metadata: str


class GroupCoordinator:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.config = broker.config
        self.partitions_count = broker.config.offsets_topic_num_partitions
        self.groups: dict[str, Group] = {}
        self.offsets: dict[str, dict[tuple[str, int], CommittedOffset]] = {}
        # Offsets partition -> the leader epoch its groups were loaded under.
        self.loaded: dict[int, int] = {}
        self.signal = ChangeSignal()
        # A group created, or the offsets topic: work for a ticker that sleeps while idle.
        self._work = ChangeSignal()
        self._nursery: trio.Nursery | None = None
        # Wall time each group last became empty (Kafka's currentStateTimestamp).
        self._empty_since: dict[str, int] = {}
        # Commits appended and not answered yet, per group: expiry waits for them, or a
        # tombstone appended after such a commit would delete what the client is told
        # is committed.
        self._pending_commits: dict[str, int] = {}
        self._expiring: set[str] = set()

    # ---- placement ---------------------------------------------------------------------

    def partition_for(self, group_id: str) -> int:
        return offsets_partition_for(group_id, self.partitions_count)

    def _offsets_partition(self, index: int) -> Partition | None:
        return self.broker.logs.partitions.get((OFFSETS_TOPIC, index))

    async def ensure_offsets_topic(self) -> Errors:
        """Create __consumer_offsets if no broker did yet (NONE when it exists)."""
        if OFFSETS_TOPIC in self.broker.topic_views():
            return Errors.NONE
        broker = self.broker
        replication_factor = (
            1 if broker.standalone else self.config.offsets_topic_replication_factor
        )
        overrides = {
            "cleanup.policy": "compact",
            "retention.ms": "-1",
            "retention.bytes": "-1",
            "segment.bytes": str(self.config.offsets_topic_segment_bytes),
            "min.insync.replicas": str(min(self.config.min_insync_replicas, replication_factor)),
        }
        if broker.standalone:
            error, message = broker.create_topic(
                OFFSETS_TOPIC, self.partitions_count, replication_factor, overrides
            )
        else:
            error, message = await broker.create_topic_in_cluster(
                OFFSETS_TOPIC,
                self.partitions_count,
                replication_factor,
                overrides,
                CREATE_OFFSETS_TOPIC_TIMEOUT_MS,
            )
        if error in (Errors.NONE, Errors.TOPIC_ALREADY_EXISTS):
            self._work.notify()
            return Errors.NONE
        log.warning("cannot create %s: %s (%s)", OFFSETS_TOPIC, Errors(error).name, message)
        return Errors.COORDINATOR_NOT_AVAILABLE

    def status(self, group_id: str) -> Errors:
        """NONE if this broker coordinates the group now (loading it if needed)."""
        index = self.partition_for(group_id)
        partition = self._offsets_partition(index)
        if partition is None or not partition.is_leader:
            return Errors.NOT_COORDINATOR
        if not self._ensure_loaded(index, partition):
            return Errors.COORDINATOR_LOAD_IN_PROGRESS
        return Errors.NONE

    def _ensure_loaded(self, index: int, partition: Partition) -> bool:
        """Whether the partition's groups are loaded for its current leader epoch."""
        if self.loaded.get(index) == partition.leader_epoch:
            return True
        if not partition.offsets_available():
            return False
        self._unload(index)
        self.load_partition(index, partition)
        return True

    # ---- loading and unloading ---------------------------------------------------------

    def load_partition(self, index: int, partition: Partition) -> None:
        """Replay the partition: the latest record per key wins, a null value deletes."""
        latest: dict[bytes, tuple[int, bytes | None]] = {}
        log_ = partition.log
        offset = log_.log_start_offset
        while offset < log_.log_end_offset:
            try:
                read = log_.read(offset, LOAD_READ_BYTES)
            except CorruptBatchError as error:
                # What was replayed so far stands: a later commit of a group is then
                # missing and its consumers resume from an older offset (duplicates,
                # never a skip), which beats refusing every group request of the
                # partition. Kafka would load whatever the bad batch decodes to.
                partition.report_damage("loading the group offsets (later commits lost)", error)
                break
            if not read.data:
                break
            for position, header in iter_batches(read.data):
                batch = read.data[position : position + header.size_bytes]
                if not header.is_control:
                    for record_offset, record in decode_records(batch):
                        if record.key is not None:
                            latest[record.key] = (record_offset, record.value)
            offset = read.next_offset
        now_ms = self.broker.clock.monotonic_ms()
        for key, (record_offset, value) in latest.items():
            try:
                self._load_record(key, value, record_offset, now_ms)
            except ProtocolError as error:
                log.warning(
                    "skipping an unreadable record in %s-%d: %s", OFFSETS_TOPIC, index, error
                )
        self.loaded[index] = partition.leader_epoch
        log.info(
            "loaded %s-%d at leader epoch %d: %d keys",
            OFFSETS_TOPIC,
            index,
            partition.leader_epoch,
            len(latest),
        )

    def _load_record(
        self, key: bytes, value: bytes | None, record_offset: int, now_ms: int
    ) -> None:
        version = group_data.read_version(key)
        if version == group_data.GROUP_METADATA_KEY_VERSION:
            group_id = group_data.decode(group_data.GROUP_METADATA_KEY, key)[1]["group"]
            if value is None:
                self.groups.pop(group_id, None)
            else:
                self.groups[group_id] = self._group_from_record(group_id, value, now_ms)
            return
        body = group_data.decode(group_data.OFFSET_COMMIT_KEY, key)[1]
        committed = self.offsets.setdefault(body["group"], {})
        tp = (body["topic"], body["partition"])
        if value is None:
            committed.pop(tp, None)
            return
        stored = group_data.decode(group_data.OFFSET_COMMIT_VALUE, value)[1]
        committed[tp] = CommittedOffset(
            stored["offset"],
            stored["leader_epoch"],
            stored["metadata"],
            stored["commit_timestamp"],
            record_offset,
        )
        self.groups.setdefault(body["group"], self._new_group(body["group"]))

    def _group_from_record(self, group_id: str, value: bytes, now_ms: int) -> Group:
        """A stored generation comes back Stable with fresh sessions (Kafka's load)."""
        stored = group_data.decode(group_data.GROUP_METADATA_VALUE, value)[1]
        group = self._new_group(group_id)
        group.generation = stored["generation"]
        if not stored["members"]:
            self._empty_since[group_id] = stored["current_state_timestamp"]
            return group
        group.protocol_type = stored["protocol_type"]
        group.protocol = stored["protocol"]
        group.leader = stored["leader"]
        for row in stored["members"]:
            member = _member_from_row(row, stored["protocol_type"], stored["protocol"] or "")
            member.last_heartbeat_ms = now_ms
            group.members[member.member_id] = member
        group.state = GroupState.STABLE
        return group

    def _new_group(self, group_id: str) -> Group:
        return Group(group_id, initial_delay_ms=self.config.group_initial_rebalance_delay_ms)

    def _unload(self, index: int) -> None:
        self.loaded.pop(index, None)
        for group_id in [g for g in self.groups if self.partition_for(g) == index]:
            self.groups.pop(group_id).unload()
        for group_id in [g for g in self.offsets if self.partition_for(g) == index]:
            del self.offsets[group_id]
        for group_id in [g for g in self._empty_since if self.partition_for(g) == index]:
            del self._empty_since[group_id]
        self.signal.notify()

    # ---- the timer ---------------------------------------------------------------------

    async def run(self) -> None:
        """Tick every GROUP_TICK_MS until cancelled; group writes started by ticks and
        leaves run here too. While a tick would do nothing (no group, no offsets
        partition here) the ticker sleeps until the metadata or the groups change, then
        resumes on the grid it would have kept: no wakeups for empty ticks."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._expire_periodically)
            while True:
                # What trio.sleep(GROUP_TICK_MS / 1000) would wait for.
                tick_at = trio.current_time() + GROUP_TICK_MS / 1000
                while self._idle():
                    await wait_for_any((self.broker.changes, self.signal, self._work))
                    while tick_at < trio.current_time():
                        tick_at += GROUP_TICK_MS / 1000
                await trio.sleep_until(tick_at)
                self.tick()

    def _idle(self) -> bool:
        """True when `tick` has nothing to look at."""
        return not self.groups and not self.loaded and OFFSETS_TOPIC not in self.broker.logs.topics

    def tick(self) -> None:
        for index, epoch in list(self.loaded.items()):
            partition = self._offsets_partition(index)
            if partition is None or not partition.is_leader or partition.leader_epoch != epoch:
                log.info("no longer coordinating %s-%d", OFFSETS_TOPIC, index)
                self._unload(index)
        self._load_led_partitions()
        now_ms = self.broker.clock.monotonic_ms()
        changed = False
        for group in list(self.groups.values()):
            was_empty = group.state is GroupState.EMPTY
            if group.tick(now_ms):
                changed = True
                if group.state is GroupState.EMPTY and not was_empty:
                    self._background().start_soon(self._store_group, group, group.generation)
        if changed:
            self.signal.notify()

    def _load_led_partitions(self) -> None:
        """Load every offsets partition this broker came to lead, as soon as its HW
        allows, so that the groups' session timers run before any member asks."""
        for index in range(self.partitions_count):
            partition = self._offsets_partition(index)
            if partition is not None and partition.is_leader:
                self._ensure_loaded(index, partition)

    def _background(self) -> trio.Nursery:
        assert self._nursery is not None, "run() the coordinator first"
        return self._nursery

    # ---- JoinGroup, SyncGroup, Heartbeat, LeaveGroup -----------------------------------

    def group(self, group_id: str) -> Group:
        group = self.groups.get(group_id)
        if group is None:
            group = self.groups[group_id] = self._new_group(group_id)
            self._work.notify()
        return group

    async def join(self, group_id: str, request: JoinRequest, require_known_id: bool) -> JoinResult:
        error = self._check_group_id(group_id)
        if error != Errors.NONE:
            return JoinResult(error)
        config = self.config
        if not (
            config.group_min_session_timeout_ms
            <= request.session_timeout_ms
            <= config.group_max_session_timeout_ms
        ):
            return JoinResult(Errors.INVALID_SESSION_TIMEOUT)
        group = self.group(group_id)
        new_id = f"{request.client_id}-{self.broker.runtime.rng.getrandbits(64):016x}"
        now_ms = self.broker.clock.monotonic_ms()
        outcome = group.join(request, new_id, require_known_id, now_ms)
        self.signal.notify()
        if outcome is not WAIT:
            assert isinstance(outcome, JoinResult)
            return outcome
        member_id = request.member_id or new_id
        limit_ms = request.rebalance_timeout_ms + PARKED_SLACK_MS
        answered = await self._parked(lambda: member_id in group.join_results, limit_ms)
        if not answered:
            return JoinResult(Errors.REBALANCE_IN_PROGRESS, member_id=member_id)
        return group.join_results.pop(member_id)

    async def sync(
        self,
        group_id: str,
        member_id: str,
        generation: int,
        assignments: dict[str, bytes],
        protocol_type: str | None,
        protocol: str | None,
    ) -> tuple[Errors, bytes]:
        error = self._check_group_id(group_id)
        group = self.groups.get(group_id)
        if error != Errors.NONE or group is None:
            return (error if error != Errors.NONE else Errors.UNKNOWN_MEMBER_ID), b""
        now_ms = self.broker.clock.monotonic_ms()
        was_storing = group.storing_generation
        outcome = group.sync(member_id, generation, assignments, protocol_type, protocol, now_ms)
        if outcome is not WAIT:
            assert isinstance(outcome, tuple)
            return outcome
        if group.storing_generation == generation and was_storing != generation:
            self._background().start_soon(self._store_group, group, generation)
        member = group.members[member_id]
        limit_ms = member.rebalance_timeout_ms + PARKED_SLACK_MS
        answered = await self._parked(lambda: member_id in group.sync_results, limit_ms)
        if not answered:
            return Errors.REBALANCE_IN_PROGRESS, b""
        return group.sync_results.pop(member_id)

    async def _store_group(self, group: Group, generation: int) -> None:
        """Append the generation's membership and assignment; then answer the syncs."""
        record = self._group_record(group)
        empty = group.state is GroupState.EMPTY
        error, _ = await self._append(group.group_id, [record])
        if empty and error == Errors.NONE:
            self._empty_since[group.group_id] = record.timestamp_ms
        group.assignment_stored(generation, error)
        if error != Errors.NONE and group.state is GroupState.COMPLETING_REBALANCE:
            group.prepare_rebalance(self.broker.clock.monotonic_ms())
        self.signal.notify()

    def heartbeat(self, group_id: str, member_id: str, generation: int) -> Errors:
        group = self.groups.get(group_id)
        if group is None:
            return Errors.UNKNOWN_MEMBER_ID
        return group.heartbeat(member_id, generation, self.broker.clock.monotonic_ms())

    def leave(self, group_id: str, member_ids: list[str]) -> list[Errors]:
        group = self.groups.get(group_id)
        if group is None:
            return [Errors.UNKNOWN_MEMBER_ID for _ in member_ids]
        was_empty = group.state is GroupState.EMPTY
        now_ms = self.broker.clock.monotonic_ms()
        errors = [group.leave(member_id, now_ms) for member_id in member_ids]
        if group.state is GroupState.EMPTY and not was_empty:
            self._background().start_soon(self._store_group, group, group.generation)
        self.signal.notify()
        return errors

    async def _parked(self, answered: Callable[[], bool], limit_ms: int) -> bool:
        with trio.move_on_after(limit_ms / 1000):
            while not answered():
                await self.signal.wait()
            return True
        return False

    def _check_group_id(self, group_id: str) -> Errors:
        if not group_id or len(group_id) > GROUP_ID_LENGTH_MAX:
            return Errors.INVALID_GROUP_ID
        return self.status(group_id)

    # ---- offsets -----------------------------------------------------------------------

    async def commit(
        self, group_id: str, member_id: str, generation: int, offsets: list[OffsetToCommit]
    ) -> list[Errors]:
        error = self._check_group_id(group_id)
        if error == Errors.NONE:
            error = self._check_commit(group_id, member_id, generation)
        if error != Errors.NONE:
            return [error for _ in offsets]
        now_wall_ms = self.broker.clock.wall_ms()
        errors = [
            Errors.OFFSET_METADATA_TOO_LARGE
            if len(o.metadata.encode()) > OFFSET_METADATA_BYTES_MAX
            else Errors.NONE
            for o in offsets
        ]
        accepted = [o for o, e in zip(offsets, errors, strict=True) if e == Errors.NONE]
        if not accepted:
            return errors
        records = [self._offset_record(group_id, o, now_wall_ms) for o in accepted]
        self._pending_commits[group_id] = self._pending_commits.get(group_id, 0) + 1
        try:
            stored, first_offset = await self._append(group_id, records)
        finally:
            self._pending_commits[group_id] -= 1
            if not self._pending_commits[group_id]:
                del self._pending_commits[group_id]
        if stored == Errors.NONE and self.status(group_id) == Errors.NONE:
            committed = self.offsets.setdefault(group_id, {})
            for i, o in enumerate(accepted):
                tp = (o.topic, o.partition)
                entry = CommittedOffset(
                    o.offset, o.leader_epoch, o.metadata, now_wall_ms, first_offset + i
                )
                if tp not in committed or committed[tp].record_offset < entry.record_offset:
                    committed[tp] = entry
        return [stored if e == Errors.NONE else e for e in errors]

    def _check_commit(self, group_id: str, member_id: str, generation: int) -> Errors:
        group = self.groups.get(group_id)
        if group is None:
            if generation >= 0:
                return Errors.ILLEGAL_GENERATION
            group = self.group(group_id)
        error = group.check_commit(member_id, generation)
        if error == Errors.NONE and member_id in group.members:
            group.members[member_id].last_heartbeat_ms = self.broker.clock.monotonic_ms()
        return error

    def fetch_offsets(
        self, group_id: str, wanted: list[tuple[str, int]] | None
    ) -> tuple[Errors, dict[tuple[str, int], CommittedOffset | None]]:
        error = self._check_group_id(group_id)
        if error != Errors.NONE:
            return error, {}
        committed = self.offsets.get(group_id, {})
        if wanted is None:
            return Errors.NONE, dict(committed)
        return Errors.NONE, {tp: committed.get(tp) for tp in wanted}

    # ---- expiry (offsets.retention.minutes) ---------------------------------------------

    async def _expire_periodically(self) -> None:
        while True:
            await trio.sleep(self.config.offsets_retention_check_interval_ms / 1000)
            self.expire_offsets()

    def expire_offsets(self) -> int:
        """Start writing tombstones for every expired offset (module docstring); the
        number of groups that have some."""
        now_ms = self.broker.clock.wall_ms()
        retention_ms = self.config.offsets_retention_minutes * 60_000
        started = 0
        for group_id, committed in self.offsets.items():
            group = self.groups.get(group_id)
            busy = group_id in self._pending_commits or group_id in self._expiring
            if busy or (group is not None and group.state is not GroupState.EMPTY):
                continue
            since = self._empty_since.get(group_id, 0)
            expired = [
                tp
                for tp, c in committed.items()
                if now_ms - max(c.commit_timestamp_ms, since) >= retention_ms
            ]
            if expired:
                self._expiring.add(group_id)
                self._background().start_soon(self._expire, group_id, expired)
                started += 1
        return started

    async def _expire(self, group_id: str, expired: list[tuple[str, int]]) -> None:
        try:
            now_ms = self.broker.clock.wall_ms()
            records = [self._offset_tombstone(group_id, tp, now_ms) for tp in expired]
            drops_group = set(expired) >= set(self.offsets.get(group_id, {}))
            group = self.groups.get(group_id)
            generation = None if group is None else group.generation
            if drops_group:
                records.append(self._group_tombstone(group_id, now_ms))
            # _append writes the tombstones before its first wait: a commit arriving
            # later lands after them in the log, and stays below.
            error, first_offset = await self._append(group_id, records)
            if error != Errors.NONE or self.status(group_id) != Errors.NONE:
                return
            committed = self.offsets.get(group_id, {})
            for i, tp in enumerate(expired):
                entry = committed.get(tp)
                if entry is not None and entry.record_offset < first_offset + i:
                    del committed[tp]
            if not committed:
                self.offsets.pop(group_id, None)
            group = self.groups.get(group_id)
            # Gone unless it came back to life meanwhile (its new record follows ours).
            if (
                drops_group
                and group_id not in self.offsets
                and group is not None
                and group.state is GroupState.EMPTY
                and group.generation == generation
            ):
                del self.groups[group_id]
                self._empty_since.pop(group_id, None)
            log.info("expired %d offsets of group %s", len(expired), group_id)
        finally:
            self._expiring.discard(group_id)

    # ---- appending to the offsets topic -----------------------------------------------

    def _offset_record(self, group_id: str, o: OffsetToCommit, now_ms: int) -> Record:
        key = group_data.encode(
            group_data.OFFSET_COMMIT_KEY,
            group_data.OFFSET_COMMIT_KEY_VERSION,
            {"group": group_id, "topic": o.topic, "partition": o.partition},
        )
        value = group_data.encode(
            group_data.OFFSET_COMMIT_VALUE,
            group_data.OFFSET_COMMIT_VALUE_VERSION,
            {
                "offset": o.offset,
                "leader_epoch": o.leader_epoch,
                "metadata": o.metadata,
                "commit_timestamp": now_ms,
            },
        )
        return Record(value, key, timestamp_ms=now_ms)

    def _offset_tombstone(self, group_id: str, tp: tuple[str, int], now_ms: int) -> Record:
        key = group_data.encode(
            group_data.OFFSET_COMMIT_KEY,
            group_data.OFFSET_COMMIT_KEY_VERSION,
            {"group": group_id, "topic": tp[0], "partition": tp[1]},
        )
        return Record(None, key, timestamp_ms=now_ms)

    def _group_tombstone(self, group_id: str, now_ms: int) -> Record:
        key = group_data.encode(
            group_data.GROUP_METADATA_KEY,
            group_data.GROUP_METADATA_KEY_VERSION,
            {"group": group_id},
        )
        return Record(None, key, timestamp_ms=now_ms)

    def _group_record(self, group: Group) -> Record:
        key = group_data.encode(
            group_data.GROUP_METADATA_KEY,
            group_data.GROUP_METADATA_KEY_VERSION,
            {"group": group.group_id},
        )
        protocol = group.protocol or ""
        members = [
            {
                "member_id": m.member_id,
                "group_instance_id": m.group_instance_id,
                "client_id": m.client_id,
                "client_host": m.client_host,
                "rebalance_timeout": m.rebalance_timeout_ms,
                "session_timeout": m.session_timeout_ms,
                "subscription": m.metadata(protocol) if protocol else b"",
                "assignment": m.assignment,
            }
            for m in group.members.values()
        ]
        now_ms = self.broker.clock.wall_ms()
        value = group_data.encode(
            group_data.GROUP_METADATA_VALUE,
            group_data.GROUP_METADATA_VALUE_VERSION,
            {
                "protocol_type": group.protocol_type or "",
                "generation": group.generation,
                "protocol": group.protocol,
                "leader": group.leader,
                "current_state_timestamp": now_ms,
                "members": members,
            },
        )
        return Record(value, key, timestamp_ms=now_ms)

    async def _append(self, group_id: str, records: list[Record]) -> tuple[Errors, int]:
        """Append as the offsets partition's leader and wait for the HW (acks=all), with
        Kafka's error mapping for coordinator writes; (error, offset of the first record)."""
        partition = self._offsets_partition(self.partition_for(group_id))
        if partition is None or not partition.is_leader:
            return Errors.NOT_COORDINATOR, -1
        if partition.check_min_isr(-1) != Errors.NONE:
            return Errors.COORDINATOR_NOT_AVAILABLE, -1
        batch = encode_batch(records)
        if len(batch) > partition.config.message_max_bytes:
            return Errors.INVALID_COMMIT_OFFSET_SIZE, -1
        appended = partition.append_as_leader(batch, self.broker.clock.wall_ms())
        if not isinstance(appended, Appended):
            return _coordinator_error(appended), -1
        epoch = partition.leader_epoch
        with trio.move_on_after(self.config.offsets_commit_timeout_ms / 1000):
            while True:
                if not partition.is_leader or partition.leader_epoch != epoch:
                    return Errors.NOT_COORDINATOR, -1
                verdict = partition.produce_completion(appended.last_offset)
                if verdict is not None:
                    return _coordinator_error(verdict), appended.first_offset
                await partition.changes.wait()
        return Errors.REQUEST_TIMED_OUT, -1


def _coordinator_error(error: Errors) -> Errors:
    """Kafka's GroupMetadataManager mapping of append errors."""
    if error in (
        Errors.UNKNOWN_TOPIC_OR_PARTITION,
        Errors.NOT_ENOUGH_REPLICAS,
        Errors.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    ):
        return Errors.COORDINATOR_NOT_AVAILABLE
    if error == Errors.NOT_LEADER_OR_FOLLOWER:
        return Errors.NOT_COORDINATOR
    if error in (Errors.MESSAGE_TOO_LARGE, Errors.CORRUPT_MESSAGE):
        return Errors.INVALID_COMMIT_OFFSET_SIZE
    return error


def _member_from_row(row: dict[str, Any], protocol_type: str, protocol: str) -> Member:
    return Member(
        row["member_id"],
        row["client_id"],
        row["client_host"],
        row["session_timeout"],
        row["rebalance_timeout"],
        protocol_type,
        [(protocol, bytes(row["subscription"]))],
        row["group_instance_id"],
        assignment=bytes(row["assignment"]),
    )
