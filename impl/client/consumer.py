"""The native consumer: manual assignment or a consumer group.

    async with Consumer(runtime, "127.0.0.1:9092", config) as consumer:
        consumer.assign([TopicPartition("events", 0)])
        consumer.seek_to_beginning()
        records = await consumer.poll(timeout_ms=1_000)

    async with Consumer(runtime, "127.0.0.1:9092", config) as consumer:
        consumer.subscribe(["events"], group_id="billing")
        records = await consumer.poll(timeout_ms=1_000)
        await consumer.commit()

Each partition has a position: the offset of the next record `poll` returns. A
partition without one (just assigned with nothing committed, or out of range) gets one
by auto.offset.reset: earliest = log start offset, latest = high watermark (skipping
everything in between), none = `NoOffsetForPartition` (or `OffsetOutOfRange` when the
broker refused the position). Every such reset is appended to `resets` as an
`OffsetReset` (partition, from, to, policy, reason), so a checker can tell a skip the
policy chose from a silent one; under `none` the record has no `to` and the error
reaches the caller.

In a group (`subscribe`), `impl.client.group.GroupMember` joins and heartbeats in the
background; assigned partitions start at the group's committed offsets; `commit()`
commits the positions synchronously (there is no auto-commit: enable.auto.commit is
not implemented, commits are the application's choice); `rebalances` lists every
assignment change with its generation.

Fetching follows Kafka's consumer: one Fetch in flight per leader, carrying every
assigned partition it leads whose buffered records are used up, with fetch.min.bytes,
fetch.max.wait.ms, fetch.max.bytes and max.partition.fetch.bytes, and the leader epoch
from metadata (a stale one is fenced and triggers a metadata refresh). A fetch outlives
the `poll` that started it: on an open connection `poll` writes it and the connection's
reader settles it as the answer arrives (no task awaits it; a later `poll` times out one
past its deadline by breaking the connection, as Kafka's network client does); a fetch
that must first connect runs as a task of the consumer. Its data is used only if the
partition's position did not move meanwhile (a `seek` discards it). A
batch is returned whole by the broker, so records below the position are skipped.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import trio

from impl.client.connection import Connection, PendingRequest
from impl.client.errors import (
    METADATA_ERRORS,
    ClientError,
    CorruptRecord,
    NoOffsetForPartition,
    NotSent,
    OffsetOutOfRange,
    OutcomeUnknown,
    RequestTimeout,
    kafka_error,
)
from impl.client.group import (
    CommitFailed,
    Committed,
    CoordinatorUnavailable,
    GroupMember,
    Listener,
    RebalanceEvent,
)
from impl.client.metadata import Cluster, ClusterSession, TopicPartition
from impl.client.offsets import (
    EARLIEST_TIMESTAMP,
    ISOLATION_LEVELS,
    LATEST_TIMESTAMP,
    list_offsets,
)
from impl.protocol import API_KEYS
from impl.runtime.runtime import Runtime
from impl.runtime.waits import Flag, sleep_until
from impl.storage.batch import (
    HEADER_SIZE_BYTES,
    CodecError,
    decode_records,
    parse_header,
)
from model.config import Config
from model.errors import Errors

FETCH = API_KEYS["Fetch"]
_RESET_TIMESTAMPS = {"earliest": EARLIEST_TIMESTAMP, "latest": LATEST_TIMESTAMP}


@dataclass(frozen=True, slots=True)
class OffsetReset:
    """One application of auto.offset.reset: `from_offset` None when the partition had
    no position (nothing committed), `to_offset` None when the policy was none."""

    time_ms: int
    partition: TopicPartition
    from_offset: int | None
    to_offset: int | None
    policy: str
    reason: str


@dataclass(frozen=True, slots=True)
class ConsumerRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp_ms: int
    leader_epoch: int


class _PartitionState:
    __slots__ = (
        "auto_reset",
        "buffered",
        "fetch_after_ms",
        "high_watermark",
        "next_fetch_offset",
        "position",
        "position_epoch",
        "reset",
        "reset_from",
    )

    def __init__(self) -> None:
        self.position: int | None = None
        # "earliest" / "latest" while a reset is pending.
        self.reset: str | None = None
        # Set while auto.offset.reset (not a seek) is resolving: the refused offset.
        self.auto_reset = False
        self.reset_from: int | None = None
        # The leader epoch of the record before the position (committed with it).
        self.position_epoch = -1
        self.buffered: deque[ConsumerRecord] = deque()
        self.next_fetch_offset = -1
        self.high_watermark = -1
        # After a leader error, the partition waits retry.backoff.ms for new metadata.
        self.fetch_after_ms = 0

    def move_to(self, offset: int | None, reset: str | None = None) -> None:
        self.position = offset
        self.reset = reset
        self.auto_reset = False
        self.reset_from = None
        self.position_epoch = -1
        self.buffered.clear()
        self.next_fetch_offset = -1


@dataclass(frozen=True, slots=True)
class _CompletedFetch:
    fetch_offsets: dict[TopicPartition, int]
    response: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _InFlightFetch:
    node: int
    offsets: dict[TopicPartition, int]
    connection: Connection
    deadline: float


class Consumer:
    def __init__(
        self,
        runtime: Runtime,
        bootstrap: str | Sequence[str],
        config: Config | None = None,
        *,
        client_id: str = "replog-consumer",
        group_id: str | None = None,
    ) -> None:
        self.config = config or Config()
        self.runtime = runtime
        self.client_id = client_id
        self.group_id = group_id
        self.resets: list[OffsetReset] = []
        self._group: GroupMember | None = None
        # Commits under manual assignment go through a member that never joins.
        self._committer: GroupMember | None = None
        self._on_assigned: Listener | None = None
        self._on_revoked: Listener | None = None
        self._states: dict[TopicPartition, _PartitionState] = {}
        self._fetching: set[int] = set()
        self._completed: deque[_CompletedFetch] = deque()
        self._fetch_done = Flag()
        self._backoff_until_ms: dict[int, int] = {}
        # A fetch failure retrying cannot fix, raised by the next poll.
        self._fetch_error: ClientError | None = None
        # Fetches written by `poll` whose answers the connection's reader settles.
        self._in_flight: dict[PendingRequest, _InFlightFetch] = {}
        self._session = ClusterSession(runtime, bootstrap, self.config, client_id)

    # ---- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Consumer:
        await self._session.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._group is not None and exc_type is None:
            with trio.move_on_after(self.config.request_timeout_ms / 1000):
                await self._group.leave(self._session.nursery, "consumer closed")
        await self._session.aclose()

    @property
    def cluster(self) -> Cluster:
        return self._session.cluster

    # ---- assignment and positions ------------------------------------------------------

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """Consume exactly these partitions; positions of partitions kept are kept."""
        if self._group is not None:
            raise ValueError("assign() after subscribe(): a consumer does one or the other")
        self._assign(partitions)

    def _assign(self, partitions: Iterable[TopicPartition]) -> None:
        wanted = list(partitions)
        self._states = {tp: self._states.get(tp) or _PartitionState() for tp in wanted}
        self.cluster.add_interest(tp.topic for tp in wanted)

    def assignment(self) -> list[TopicPartition]:
        return sorted(self._states)

    # ---- groups ------------------------------------------------------------------------

    def subscribe(
        self,
        topics: Iterable[str],
        group_id: str | None = None,
        *,
        on_assigned: Listener | None = None,
        on_revoked: Listener | None = None,
    ) -> None:
        """Join `group_id` (or the constructor's) for `topics`. Listeners are awaited
        with (partitions, generation) from the group task: `on_revoked` before the
        partitions go (commit there for at-least-once), `on_assigned` after the new ones
        got their committed positions."""
        topics = sorted(set(topics))
        if not topics:
            raise ValueError("subscribe to at least one topic")
        if self._states and self._group is None:
            raise ValueError("subscribe() after assign(): a consumer does one or the other")
        group_id = group_id or self.group_id
        if not group_id:
            raise ValueError("subscribe needs a group id")
        self.cluster.add_interest(topics)
        if self._group is not None:
            assert self._group.group_id == group_id, "one group per consumer"
            self._group.subscribe(topics)
            return
        self.group_id = group_id
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked
        self._group = GroupMember(
            self.cluster, self.config, group_id, self.client_id, self._assigned, self._revoked
        )
        self._group.subscribe(topics)
        self._session.nursery.start_soon(self._group.run, self._session.nursery)

    @property
    def rebalances(self) -> list[RebalanceEvent]:
        return list(self._group.events) if self._group is not None else []

    @property
    def generation(self) -> int:
        return self._group.generation if self._group is not None else -1

    @property
    def member_id(self) -> str:
        return self._group.member_id if self._group is not None else ""

    async def _assigned(self, partitions: list[TopicPartition], generation: int) -> None:
        assert self._group is not None
        # Committed offsets first, then the partitions: a poll or position() running while
        # the fetch is out must not see a new partition without its position and reset
        # it by auto.offset.reset (Kafka's consumer does not fetch a partition before its
        # committed offset is known either).
        committed: dict[TopicPartition, Committed | None] = {}
        if partitions:
            try:
                committed = await self._group.fetch_committed(self._session.nursery, partitions)
            except (NotSent, OutcomeUnknown, CoordinatorUnavailable):
                self._group.give_back(partitions, "committed offsets not fetched")
                raise
        self._assign([*self._states, *partitions])
        for tp, found in committed.items():
            if found is not None:
                state = self._states[tp]
                state.move_to(found.offset)
                state.position_epoch = found.leader_epoch
        if self._on_assigned is not None:
            await self._on_assigned(partitions, generation)

    async def _revoked(self, partitions: list[TopicPartition], generation: int) -> None:
        if self._on_revoked is not None:
            await self._on_revoked(partitions, generation)
        gone = set(partitions)
        self._states = {tp: s for tp, s in self._states.items() if tp not in gone}

    async def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        """Commit `offsets` (default: the position of every partition that has one) and
        return once the coordinator stored them (acks=all on the offsets topic).

        Raises CommitFailed when the group moved on (nothing was committed), and
        OutcomeUnknown when the coordinator may have stored them but did not say so."""
        group = self._require_group()
        if offsets is None:
            chosen = {
                tp: (s.position, s.position_epoch)
                for tp, s in self._states.items()
                if s.position is not None
            }
        else:
            chosen = {tp: (offset, -1) for tp, offset in offsets.items()}
        if self._group is not None and group.generation < 0:
            # Out of the group (left, ejected, or not joined yet): committing as a
            # standalone consumer would succeed whenever the group is empty, letting a
            # zombie move offsets its successor owns. Kafka's consumer refuses it too.
            raise CommitFailed(
                Errors.UNKNOWN_MEMBER_ID,
                f"commit refused: not a member of a generation of group {self.group_id}",
            )
        if chosen:
            await group.commit(self._session.nursery, chosen, self._group is None)

    async def committed(
        self, partitions: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, Committed | None]:
        """The group's committed offsets (None where nothing is committed); without
        `partitions`, every partition the group has an offset for."""
        wanted = None if partitions is None else list(partitions)
        return await self._require_group().fetch_committed(self._session.nursery, wanted)

    def _require_group(self) -> GroupMember:
        if self._group is not None:
            return self._group
        if not self.group_id:
            raise ValueError("commit/committed need a group id (constructor or subscribe)")
        if self._committer is None:
            self._committer = GroupMember(
                self.cluster, self.config, self.group_id, self.client_id, _ignore, _ignore
            )
        return self._committer

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        self._state(tp).move_to(offset)

    def seek_to_beginning(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        for tp in self.assignment() if partitions is None else partitions:
            self._state(tp).move_to(None, "earliest")

    def seek_to_end(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        for tp in self.assignment() if partitions is None else partitions:
            self._state(tp).move_to(None, "latest")

    async def position(self, tp: TopicPartition) -> int:
        """The offset of the next record `poll` returns for `tp` (resolving a reset)."""
        state = self._state(tp)
        await self._resolve_positions()
        assert state.position is not None
        return state.position

    async def beginning_offsets(
        self, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, int]:
        return await list_offsets(
            self.cluster, partitions, EARLIEST_TIMESTAMP, self.config.default_api_timeout_ms
        )

    async def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The high watermark of each partition: one past the last record a consumer sees."""
        return await list_offsets(
            self.cluster, partitions, LATEST_TIMESTAMP, self.config.default_api_timeout_ms
        )

    async def partitions_for(self, topic: str) -> list[TopicPartition]:
        """Every partition of `topic`; raises UNKNOWN_TOPIC_OR_PARTITION or RequestTimeout."""
        timeout_ms = self.config.default_api_timeout_ms
        count = await self.cluster.wait_for_topic(topic, timeout_ms)
        if count is not None:
            return [TopicPartition(topic, index) for index in range(count)]
        if self.cluster.topic_missing(topic):
            raise kafka_error(Errors.UNKNOWN_TOPIC_OR_PARTITION, f"no topic {topic}")
        raise RequestTimeout(f"no metadata for {topic} within {timeout_ms} ms")

    def _state(self, tp: TopicPartition) -> _PartitionState:
        state = self._states.get(tp)
        if state is None:
            raise ValueError(f"{tp} is not assigned to this consumer")
        return state

    async def _resolve_positions(self) -> None:
        policy = self.config.auto_offset_reset
        pending: dict[str, list[TopicPartition]] = defaultdict(list)
        for tp, state in self._states.items():
            if state.position is None and state.reset is None:
                if policy == "none":
                    self._record_reset(tp, None, None, policy)
                    raise NoOffsetForPartition(f"{tp} has no position and auto.offset.reset=none")
                state.reset = policy
                state.auto_reset = True
            if state.reset is not None:
                pending[state.reset].append(tp)
        for reset, partitions in pending.items():
            offsets = await list_offsets(
                self.cluster,
                partitions,
                _RESET_TIMESTAMPS[reset],
                self.config.default_api_timeout_ms,
            )
            for tp, offset in offsets.items():
                state = self._states.get(tp)
                if state is None or state.reset != reset:
                    continue
                if state.auto_reset:
                    self._record_reset(tp, state.reset_from, offset, reset)
                state.move_to(offset)

    def _record_reset(
        self, tp: TopicPartition, from_offset: int | None, to_offset: int | None, policy: str
    ) -> None:
        reason = "no committed offset" if from_offset is None else "offset out of range"
        now_ms = self.runtime.clock.monotonic_ms()
        self.resets.append(OffsetReset(now_ms, tp, from_offset, to_offset, policy, reason))

    # ---- polling -----------------------------------------------------------------------

    async def poll(self, timeout_ms: int) -> list[ConsumerRecord]:
        """Up to max.poll.records records, waiting at most `timeout_ms` for some.

        Raises NoOffsetForPartition / OffsetOutOfRange under auto.offset.reset=none,
        CorruptRecord, and KafkaError for refusals that retrying cannot fix.
        """
        if self._group is not None:
            self._group.polled()
        # As `with trio.move_on_after(timeout)` around the loop, and resuming in the same
        # scheduling passes, but with a cancel scope only around a metadata refresh or an
        # offset lookup: the usual poll waits for a fetch with a Flag's deadline.
        deadline = trio.current_time() + timeout_ms / 1000
        while True:
            self._fetch_done = Flag()
            if self._fetch_error is not None:
                error, self._fetch_error = self._fetch_error, None
                raise error
            if self.cluster.is_stale() or self._positions_to_resolve():
                with trio.move_on_at(deadline) as scope:
                    await self.cluster.refresh_if_stale()
                    await self._resolve_positions()
                if scope.cancelled_caught:
                    return []
            self._take_completed()
            records = self._drain(self.config.max_poll_records)
            if records:
                return records
            await self._time_out_fetches()
            if await self._start_fetches():
                # Woken by an answer, by a written fetch's deadline (timed out next
                # pass) or by the poll's.
                woken = await self._fetch_done.wait_until(min(deadline, self._next_timeout()))
                if not woken and trio.current_time() >= deadline:
                    return []
            else:
                backoff_s = self.config.retry_backoff_ms / 1000
                await sleep_until(min(trio.current_time() + backoff_s, deadline))
                if trio.current_time() >= deadline:
                    return []

    def _positions_to_resolve(self) -> bool:
        """Whether `_resolve_positions` has anything to do (then it may wait)."""
        return any(s.position is None or s.reset is not None for s in self._states.values())

    def _drain(self, max_records: int) -> list[ConsumerRecord]:
        records: list[ConsumerRecord] = []
        for state in self._states.values():
            while state.buffered and len(records) < max_records:
                record = state.buffered.popleft()
                records.append(record)
                state.position = record.offset + 1
                state.position_epoch = record.leader_epoch
            position = state.position
            if position is not None and not state.buffered and state.next_fetch_offset > position:
                state.position = state.next_fetch_offset
        return records

    async def _start_fetches(self) -> bool:
        """Start a Fetch for every leader that has partitions to fetch and none in flight."""
        now_ms = self.runtime.clock.monotonic_ms()
        by_node: dict[int, list[tuple[TopicPartition, int, int]]] = defaultdict(list)
        for tp, state in self._states.items():
            if state.position is None or state.buffered or state.fetch_after_ms > now_ms:
                continue
            leader = self.cluster.leader(tp)
            if leader is None:
                self.cluster.request_update()
                continue
            node = leader.leader_id
            if node in self._fetching or self._backoff_until_ms.get(node, 0) > now_ms:
                continue
            by_node[node].append((tp, state.position, leader.leader_epoch))
        for node, entries in by_node.items():
            self._fetching.add(node)
            connection = self.cluster.open_connection(node)
            if connection is None:
                self._session.nursery.start_soon(self._fetch, node, entries)
            else:
                await self._send_fetch(connection, node, entries)
        return bool(self._fetching)

    def _fetch_body(self, entries: list[tuple[TopicPartition, int, int]]) -> dict[str, Any]:
        config = self.config
        topics: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for tp, offset, epoch in entries:
            topics[tp.topic].append(
                {
                    "partition": tp.partition,
                    "current_leader_epoch": epoch,
                    "fetch_offset": offset,
                    "partition_max_bytes": config.max_partition_fetch_bytes,
                }
            )
        return {
            "replica_id": -1,
            "max_wait_ms": config.fetch_max_wait_ms,
            "min_bytes": config.fetch_min_bytes,
            "max_bytes": config.fetch_max_bytes,
            "isolation_level": ISOLATION_LEVELS[config.isolation_level],
            "topics": [{"topic": name, "partitions": rows} for name, rows in topics.items()],
        }

    def _fetch_timeout_ms(self) -> int:
        return self.config.request_timeout_ms + self.config.fetch_max_wait_ms

    async def _fetch(self, node: int, entries: list[tuple[TopicPartition, int, int]]) -> None:
        """A fetch that must open its connection first, as a task of the consumer."""
        outcome: dict[str, Any] | ClientError
        try:
            connection = await self.cluster.connection(node)
            body = self._fetch_body(entries)
            outcome = await connection.request(FETCH, body, self._fetch_timeout_ms())
        except ClientError as error:
            outcome = error
        self._fetch_finished(node, {tp: offset for tp, offset, _ in entries}, outcome)

    async def _send_fetch(
        self, connection: Connection, node: int, entries: list[tuple[TopicPartition, int, int]]
    ) -> None:
        """Write a fetch on an open connection; its reader settles the answer."""
        offsets = {tp: offset for tp, offset, _ in entries}
        deadline = trio.current_time() + self._fetch_timeout_ms() / 1000
        try:
            pending = await connection.send(FETCH, self._fetch_body(entries), deadline)
        except ClientError as error:
            self._fetch_finished(node, offsets, error)
            return
        except BaseException:
            # Cancelled before it was written (a write cut short breaks the connection):
            # nothing is in flight to this leader.
            self._fetching.discard(node)
            raise
        self._in_flight[pending] = _InFlightFetch(node, offsets, connection, deadline)
        pending.call_when_settled(self._fetch_settled)

    def _fetch_settled(self, pending: PendingRequest) -> None:
        fetch = self._in_flight.pop(pending)
        outcome = pending.error if pending.error is not None else pending.body
        assert outcome is not None
        self._fetch_finished(fetch.node, fetch.offsets, outcome)

    def _fetch_finished(
        self, node: int, offsets: dict[TopicPartition, int], outcome: dict[str, Any] | ClientError
    ) -> None:
        if isinstance(outcome, (NotSent, OutcomeUnknown)):
            self.cluster.request_update()
            backoff_ms = self.config.retry_backoff_ms
            self._backoff_until_ms[node] = self.runtime.clock.monotonic_ms() + backoff_ms
        elif isinstance(outcome, ClientError):
            self._fetch_error = outcome
        else:
            self._completed.append(_CompletedFetch(offsets, outcome))
        self._fetching.discard(node)
        self._fetch_done.set()

    async def _time_out_fetches(self) -> None:
        """Break the connection of every written fetch past its deadline: its answer
        (and every other request's on that connection) fails as an unknown outcome."""
        now = trio.current_time()
        expired = [(p, f) for p, f in self._in_flight.items() if f.deadline <= now]
        for pending, fetch in expired:
            await fetch.connection.time_out(pending)

    def _next_timeout(self) -> float:
        return min((f.deadline for f in self._in_flight.values()), default=math.inf)

    # ---- fetched data ------------------------------------------------------------------

    def _take_completed(self) -> None:
        while self._completed:
            fetched = self._completed.popleft()
            top_error = fetched.response.get("error_code", Errors.NONE)
            for topic in fetched.response["responses"]:
                for row in topic["partitions"]:
                    tp = TopicPartition(topic["topic"], row["partition_index"])
                    code = row["error_code"] if top_error == Errors.NONE else top_error
                    self._take_partition(tp, fetched.fetch_offsets.get(tp), code, row)

    def _take_partition(
        self, tp: TopicPartition, fetch_offset: int | None, code: int, row: dict[str, Any]
    ) -> None:
        state = self._states.get(tp)
        if state is None or fetch_offset is None or state.position != fetch_offset:
            return
        if code == Errors.NONE:
            state.high_watermark = row["high_watermark"]
            self._buffer_records(tp, state, fetch_offset, row["records"] or b"")
        elif code == Errors.OFFSET_OUT_OF_RANGE:
            self._out_of_range(tp, state, fetch_offset)
        elif code in METADATA_ERRORS:
            self.cluster.request_update()
            now_ms = self.runtime.clock.monotonic_ms()
            state.fetch_after_ms = now_ms + self.config.retry_backoff_ms
        else:
            raise kafka_error(code, f"Fetch {tp} at offset {fetch_offset}")

    def _out_of_range(self, tp: TopicPartition, state: _PartitionState, offset: int) -> None:
        policy = self.config.auto_offset_reset
        if policy == "none":
            self._record_reset(tp, offset, None, policy)
            raise OffsetOutOfRange(
                f"{tp}: offset {offset} is out of range and auto.offset.reset=none",
                tp.topic,
                tp.partition,
                offset,
            )
        state.move_to(None, policy)
        state.auto_reset = True
        state.reset_from = offset

    def _buffer_records(
        self, tp: TopicPartition, state: _PartitionState, fetch_offset: int, data: bytes
    ) -> None:
        view = memoryview(data)
        position = 0
        next_offset = fetch_offset
        while position < len(view):
            try:
                header = parse_header(view, position)
            except CodecError:
                break
            if header.size_bytes < HEADER_SIZE_BYTES:
                raise CorruptRecord(f"{tp}: batch length {header.batch_length} at {position}")
            end = position + header.size_bytes
            if end > len(view):
                break
            if not header.is_control:
                self._buffer_batch(tp, state, view[position:end], fetch_offset)
            next_offset = max(next_offset, header.next_offset)
            position = end
        if position == 0 and len(view) > 0:
            raise CorruptRecord(
                f"{tp}: a batch at offset {fetch_offset} is larger than "
                f"max.partition.fetch.bytes={self.config.max_partition_fetch_bytes}"
            )
        state.next_fetch_offset = next_offset

    def _buffer_batch(
        self, tp: TopicPartition, state: _PartitionState, batch: memoryview, fetch_offset: int
    ) -> None:
        header = parse_header(batch)
        try:
            records = decode_records(batch)
        except CodecError as error:
            raise CorruptRecord(f"{tp}: {error}") from error
        log_append_time = header.timestamp_type == "LogAppendTime"
        for offset, record in records:
            if offset < fetch_offset:
                continue
            timestamp_ms = header.max_timestamp_ms if log_append_time else record.timestamp_ms
            state.buffered.append(
                ConsumerRecord(
                    tp.topic,
                    tp.partition,
                    offset,
                    record.key,
                    record.value,
                    record.headers,
                    timestamp_ms,
                    header.partition_leader_epoch,
                )
            )


async def _ignore(partitions: list[TopicPartition], generation: int) -> None:
    """The listener of a member that never joins (manual assignment, commits only)."""
