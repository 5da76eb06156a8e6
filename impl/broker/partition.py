"""One partition replica on a broker (Kafka's Partition): the log, the HW, the leader's
view of its followers, and the follower's truncation state.

Each replication rule of KAFKA-RULES.md lives in one named method, named as in
`model.rules` so a reviewer finds the same rule under the same name in both:
`advance_high_watermark`, `check_min_isr`, `check_leader_epoch` (fencing),
`follower_out_of_sync` (ISR shrink), `may_join_isr` (ISR expand), `produce_completion`,
`divergence_truncation_offset` / `kip101_truncation_offset` (follower truncation).
The broker owns the control flow (fetcher tasks, AlterPartition requests, timers); this
class owns the partition's state and the invariants that must hold over it.
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

import crc32c

from impl.broker.producer_state import Duplicate, ProducerState
from impl.protocol.errors import TRANSACTIONS_REFUSED
from impl.runtime.waits import Flag
from impl.storage.batch import (
    CRC_START,
    BatchHeader,
    CodecError,
    CorruptBatchError,
    UnsupportedCodecError,
    decode_records,
    parse_header,
    recompressed,
    topic_codec,
    validate_batch_at,
)
from impl.storage.log import (
    InvalidRecordError,
    LogAppendError,
    OffsetOutOfRangeError,
    PartitionLog,
)
from model.config import INT64_MAX, Config
from model.errors import Errors

logger = logging.getLogger("replog.broker")

NO_LEADER = -1
EARLIEST_TIMESTAMP = -2
LATEST_TIMESTAMP = -1
MAX_TIMESTAMP = -3
NO_TIMESTAMP = -1
# Where a v2 batch header keeps what LogAppendTime rewrites (batch.py's wire layout).
_CRC_AT = 17
_ATTRIBUTES_AT = CRC_START
_MAX_TIMESTAMP_AT = 35
_LOG_APPEND_TIME_BIT = 0x08


class Phase(Enum):
    LEADER = "leader"
    FETCHING = "fetching"
    # Waiting for one OffsetForLeaderEpoch answer before fetching (kip-101 and pre-KIP-320).
    TRUNCATING = "truncating"
    OFFLINE = "offline"


class ChangeSignal:
    """Wakes the tasks waiting on one thing (a partition; the broker's metadata image).

    Kafka's delayed-operation purgatory is keyed by partition: a delayed fetch waits on
    the partitions it reads, an acks=all produce on those it wrote, so a change to one
    partition wakes only the requests that involve it. Waiters re-check their own
    condition, which keeps the partitions free of per-request bookkeeping.
    """

    def __init__(self) -> None:
        self._waiters: dict[Flag, None] = {}
        # Waiters on the HW (consumer fetches, acks=all produces): an append that leaves
        # the HW where it was changes nothing they can see, so it does not wake them.
        self._hw: dict[Flag, None] = {}
        # Waiters on the log end (follower fetches): as Kafka's DelayedFetch with
        # FetchIsolation.LOG_END, a move of the HW alone adds no bytes to their read, so
        # followers learn the new HW with their next fetch.
        self._leo: dict[Flag, None] = {}

    def notify(self) -> None:
        """Anything else changed (leadership, ISR, truncation): wakes every waiter."""
        self._wake_all(self._waiters)
        self._wake_all(self._hw)
        self._wake_all(self._leo)

    def notify_appended(self) -> None:
        """The log end moved."""
        self._wake_all(self._waiters)
        self._wake_all(self._leo)

    def notify_high_watermark(self) -> None:
        """The HW moved."""
        self._wake_all(self._waiters)
        self._wake_all(self._hw)

    @staticmethod
    def _wake_all(waiters: dict[Flag, None]) -> None:
        taken = list(waiters)
        waiters.clear()
        for event in taken:
            event.set()

    async def wait(self) -> None:
        await wait_for_any((self,))


class WaitOn(Enum):
    ANY = "any"
    HIGH_WATERMARK = "high-watermark"
    LOG_END = "log-end"


async def wait_for_any(
    signals: Iterable[ChangeSignal], on: WaitOn = WaitOn.ANY, deadline: float = math.inf
) -> bool:
    """Until one of `signals` is notified of what `on` names, or of a change to
    anything else (True), or trio's clock reaches `deadline` (False; with no signals,
    only that or a cancellation ends it). The deadline is a `Flag`'s, not a cancel
    scope's: a delayed fetch or produce waits without one."""
    # Registered before the first suspension, so a change made after the caller checked
    # its condition cannot be missed.
    event = Flag()
    registered = [_waiters_for(signal, on) for signal in signals]
    for waiters in registered:
        waiters[event] = None
    try:
        return await event.wait_until(deadline)
    finally:
        for waiters in registered:
            waiters.pop(event, None)


def _waiters_for(signal: ChangeSignal, on: WaitOn) -> dict[Flag, None]:
    if on is WaitOn.HIGH_WATERMARK:
        return signal._hw
    if on is WaitOn.LOG_END:
        return signal._leo
    return signal._waiters


# NamedTuples, not frozen dataclasses: one is built per append or read, and a frozen
# dataclass's __init__ (an object.__setattr__ per field) costs several tuples.
class Appended(NamedTuple):
    first_offset: int
    last_offset: int
    log_start_offset: int
    duplicate: bool = False
    # The leader's clock stamped on the batch (message.timestamp.type=LogAppendTime).
    log_append_time_ms: int = -1


class FetchedData(NamedTuple):
    records: bytes
    high_watermark: int
    log_start_offset: int
    log_end_offset: int


@dataclass(frozen=True, slots=True)
class Diverging:
    """The follower's log diverges: truncate by (epoch, end offset), then fetch again."""

    epoch: int
    end_offset: int
    high_watermark: int


class Partition:
    def __init__(
        self,
        topic: str,
        index: int,
        log: PartitionLog,
        broker_id: int,
        replicas: tuple[int, ...],
    ) -> None:
        self.topic = topic
        self.index = index
        self.log = log
        self.broker_id = broker_id
        self.replicas = replicas
        self.changes = ChangeSignal()
        self._damage_reported: set[tuple[str | None, int | None]] = set()
        self.phase = Phase.OFFLINE
        self.leader_id = NO_LEADER
        self.leader_epoch = -1
        self.partition_epoch = -1
        self.isr: frozenset[int] = frozenset()
        self.pending_isr: frozenset[int] | None = None
        self.follower_leos: dict[int, int] = {}
        self.caught_up_ms: dict[int, int] = {}
        self.high_watermark = 0
        # Where our current leader epoch began: until the HW reaches it, our HW may be
        # behind what the previous leader acknowledged (KIP-207).
        self.epoch_start_offset = 0
        self.producers = ProducerState()
        self._rebuild_producer_state()

    @property
    def config(self) -> Config:
        return self.log.config

    @property
    def is_leader(self) -> bool:
        return self.phase is Phase.LEADER

    # ---- role changes (the metadata image says who leads) ------------------------------

    def become_leader(
        self,
        leader_epoch: int,
        partition_epoch: int,
        replicas: tuple[int, ...],
        isr: frozenset[int],
        now_ms: int,
    ) -> None:
        """makeLeader: a new epoch starts at our LEO and every follower starts caught up."""
        assert self.broker_id in replicas, "only a replica may lead"
        new_epoch = not self.is_leader or leader_epoch != self.leader_epoch
        self._adopt(self.broker_id, leader_epoch, partition_epoch, replicas, isr)
        self.phase = Phase.LEADER
        if new_epoch:
            self.epoch_start_offset = self.log.log_end_offset
            self.log.assign_epoch_start(leader_epoch)
            self.follower_leos = {}
            self.caught_up_ms = {r: now_ms for r in replicas if r != self.broker_id}
        self.advance_high_watermark()
        self.changes.notify()

    def become_follower(
        self,
        leader_id: int,
        leader_epoch: int,
        partition_epoch: int,
        replicas: tuple[int, ...],
        isr: frozenset[int],
    ) -> bool:
        """makeFollower; True when the leader or its epoch changed (fetching restarts)."""
        changed = leader_id != self.leader_id or leader_epoch != self.leader_epoch
        self._adopt(leader_id, leader_epoch, partition_epoch, replicas, isr)
        if not changed:
            return False
        self.follower_leos = {}
        self.caught_up_ms = {}
        if leader_id == NO_LEADER:
            self.phase = Phase.OFFLINE
        elif self.config.truncation == "high-watermark":
            self._truncate(self.high_watermark)
            self.phase = Phase.FETCHING
        elif self.config.truncation == "leader-epoch" and self.config.fetch_epoch_fencing:
            self.phase = Phase.FETCHING
        else:
            self.phase = Phase.TRUNCATING
        self.changes.notify()
        return True

    def _adopt(
        self,
        leader_id: int,
        leader_epoch: int,
        partition_epoch: int,
        replicas: tuple[int, ...],
        isr: frozenset[int],
    ) -> None:
        assert leader_epoch >= self.leader_epoch, "leader epochs never go back"
        self.leader_id = leader_id
        self.leader_epoch = leader_epoch
        self.replicas = replicas
        if partition_epoch >= self.partition_epoch:
            self.partition_epoch = partition_epoch
            self.isr = isr
            self.pending_isr = None

    # ---- rules -------------------------------------------------------------------------

    def advance_high_watermark(self) -> bool:
        """HW = min(LEO of every ISR member, pending additions included); never down on
        the leader; held while the ISR is smaller than min(min.insync.replicas, RF)
        (replog.hw.min-isr-guard)."""
        if not self.is_leader:
            return False
        members = self.isr | (self.pending_isr or frozenset())
        if self.config.hw_min_isr_guard and len(self.isr) < min(
            self.config.min_insync_replicas, len(self.replicas)
        ):
            return False
        candidate = min(self._leo_of(member) for member in members | {self.broker_id})
        if candidate <= self.high_watermark:
            return False
        assert candidate <= self.log.log_end_offset, "HW can never pass the leader's LEO"
        self.high_watermark = candidate
        self.changes.notify_high_watermark()
        return True

    def check_min_isr(self, acks: int) -> Errors:
        """acks=all refuses a write up front when the ISR is below min.insync.replicas."""
        if acks == -1 and len(self.isr) < self.config.min_insync_replicas:
            return Errors.NOT_ENOUGH_REPLICAS
        return Errors.NONE

    def produce_completion(self, last_offset: int) -> Errors | None:
        """A waiting acks=all produce: None while the HW is not past it; then NONE, or
        NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR shrank below min.insync.replicas."""
        if self.high_watermark <= last_offset:
            return None
        if len(self.isr) < self.config.min_insync_replicas:
            return Errors.NOT_ENOUGH_REPLICAS_AFTER_APPEND
        return Errors.NONE

    def check_leader_epoch(self, requested_epoch: int) -> Errors:
        """A request's current leader epoch (-1: not given) against ours (KIP-320)."""
        if requested_epoch == -1 or requested_epoch == self.leader_epoch:
            return Errors.NONE
        if requested_epoch < self.leader_epoch:
            return Errors.FENCED_LEADER_EPOCH
        return Errors.UNKNOWN_LEADER_EPOCH

    def follower_out_of_sync(self, follower: int, now_ms: int) -> bool:
        """Kafka's isFollowerOutOfSync: behind our LEO for longer than the lag limit."""
        if self.follower_leos.get(follower, -1) == self.log.log_end_offset:
            return False
        caught_up_ms = self.caught_up_ms.get(follower, now_ms)
        return now_ms - caught_up_ms > self.config.replica_lag_time_max_ms

    def may_join_isr(self, follower: int) -> bool:
        """ISR expansion: LEO >= HW and, under `epoch-start` (KAFKA-7128), >= the start of
        our current epoch."""
        follower_leo = self.follower_leos.get(follower, -1)
        if follower_leo < self.high_watermark:
            return False
        entries = self.log.leader_epoch_entries
        if self.config.isr_expand == "epoch-start" and entries:
            return follower_leo >= entries[-1][1]
        return True

    # ---- leader operations -------------------------------------------------------------

    def append_as_leader(self, batch: bytes | memoryview, now_ms: int) -> Appended | Errors:
        """Append one producer batch after the idempotence checks; errors leave no trace."""
        if not self.is_leader:
            return Errors.NOT_LEADER_OR_FOLLOWER
        try:
            header = parse_header(batch)
        except CodecError:
            return Errors.CORRUPT_MESSAGE
        if header.is_transactional:
            # Without a transactional.id too: its commit or abort marker could never come.
            return TRANSACTIONS_REFUSED
        log_append_time_ms = -1
        try:
            if self.config.message_timestamp_type == "LogAppendTime":
                batch = _stamped_log_append_time(batch, now_ms)
                log_append_time_ms = now_ms
            elif not self._timestamps_allowed(batch, header, now_ms):
                return Errors.INVALID_TIMESTAMP
        except UnsupportedCodecError:
            return Errors.UNSUPPORTED_COMPRESSION_TYPE
        except CodecError:
            return Errors.CORRUPT_MESSAGE
        verdict = self.producers.check(
            header.producer_id, header.producer_epoch, header.base_sequence, header.last_sequence
        )
        if isinstance(verdict, Duplicate):
            return Appended(
                verdict.first_offset, verdict.last_offset, self.log.log_start_offset, True
            )
        if verdict is not None:
            return verdict
        stored = bytes(batch)
        codec = topic_codec(self.log.config.compression_type)
        try:
            if codec is not None and codec != header.codec:
                # Kafka's LogValidator: a topic that names a codec stores every batch in it.
                stored = recompressed(stored, codec)
                if log_append_time_ms != -1:
                    # The rewrite takes maxTimestamp from the records: stamp it again.
                    stored = _stamped_log_append_time(stored, log_append_time_ms)
                if len(stored) > self.log.config.message_max_bytes:
                    return Errors.MESSAGE_TOO_LARGE
            info = self.log.append_batch_as_leader(stored, self.leader_epoch, now_ms)
        except InvalidRecordError:
            return Errors.INVALID_RECORD
        except UnsupportedCodecError:
            # Non-retriable, as Kafka answers a codec it will not take: CORRUPT_MESSAGE is
            # retriable, and librdkafka kept resending such a batch until message.timeout.ms.
            return Errors.UNSUPPORTED_COMPRESSION_TYPE
        except (CodecError, LogAppendError):
            return Errors.CORRUPT_MESSAGE
        except ValueError:
            # Only recompressed() raises it: records past the largest batch replog writes.
            return Errors.MESSAGE_TOO_LARGE
        self.producers.update(
            header.producer_id,
            header.producer_epoch,
            header.base_sequence,
            header.last_sequence,
            info.first_offset,
            info.last_offset,
        )
        self.changes.notify_appended()
        self.advance_high_watermark()
        return Appended(
            info.first_offset,
            info.last_offset,
            self.log.log_start_offset,
            False,
            log_append_time_ms,
        )

    def _timestamps_allowed(
        self, batch: bytes | memoryview, header: BatchHeader, now_ms: int
    ) -> bool:
        """Kafka's CreateTime window: no record more than message.timestamp.after.max.ms
        ahead of the leader's clock or .before.max.ms behind it. The header's max
        timestamp bounds the first; the second needs every record, read only when it is
        bounded (Kafka's default is not). NO_TIMESTAMP (-1) is never refused."""
        config = self.config
        if (
            header.max_timestamp_ms != NO_TIMESTAMP
            and header.max_timestamp_ms - now_ms > config.message_timestamp_after_max_ms
        ):
            return False
        if config.message_timestamp_before_max_ms == INT64_MAX:
            return True
        return all(
            record.timestamp_ms == NO_TIMESTAMP
            or now_ms - record.timestamp_ms <= config.message_timestamp_before_max_ms
            for _, record in decode_records(batch)
        )

    def read(self, offset: int, max_bytes: int, up_to: int) -> FetchedData | Errors:
        """Whole batches from `offset` that start below `up_to` (the HW for consumers)."""
        log = self.log
        if not log.log_start_offset <= offset <= log.log_end_offset:
            return Errors.OFFSET_OUT_OF_RANGE
        records = b""
        if offset < up_to:
            try:
                result = log.read(offset, max_bytes)
            except OffsetOutOfRangeError:
                return Errors.OFFSET_OUT_OF_RANGE
            except CorruptBatchError as error:
                self.report_damage(f"a read from offset {offset}", error)
                # This partition's answer alone: closing the connection would stall every
                # other partition a follower or consumer fetches with it. As Kafka maps a
                # CorruptRecordException met while reading.
                return Errors.CORRUPT_MESSAGE
            if result.next_offset <= up_to:
                # Every batch read starts below next_offset: none to cut (a follower's
                # read to the LEO, a consumer's up to a HW past what it read).
                records = bytes(result.data)
            else:
                records = _batches_below(result.data, up_to)
        return FetchedData(records, self.high_watermark, log.log_start_offset, log.log_end_offset)

    def serve_follower_fetch(
        self,
        follower: int,
        fetch_offset: int,
        last_fetched_epoch: int,
        max_bytes: int,
        now_ms: int,
    ) -> FetchedData | Diverging | Errors:
        """A follower's fetch, after the caller checked leadership and epoch fencing:
        the divergence check (KIP-320), then its LEO and caught-up time, then the HW."""
        if last_fetched_epoch >= 0:
            epoch, end = self.log.end_offset_for(last_fetched_epoch)
            if epoch < last_fetched_epoch or end < fetch_offset:
                return Diverging(epoch, end, self.high_watermark)
        if fetch_offset > self.log.log_end_offset:
            return Errors.OFFSET_OUT_OF_RANGE
        self.follower_leos[follower] = fetch_offset
        if fetch_offset >= self.log.log_end_offset:
            self.caught_up_ms[follower] = now_ms
        self.advance_high_watermark()
        return self.read(fetch_offset, max_bytes, self.log.log_end_offset)

    def isr_expansion(self, follower: int) -> frozenset[int] | None:
        """The ISR to propose (AlterPartition) if this follower may rejoin now."""
        if follower in self.isr or self.pending_isr is not None or not self.is_leader:
            return None
        if follower not in self.replicas or not self.may_join_isr(follower):
            return None
        return self.isr | {follower}

    def isr_shrink(self, now_ms: int) -> frozenset[int] | None:
        """The ISR to propose without the followers that fell out of sync, if any did."""
        if not self.is_leader or self.pending_isr is not None:
            return None
        lagging = {f for f in self.isr - {self.broker_id} if self.follower_out_of_sync(f, now_ms)}
        return self.isr - lagging if lagging else None

    def isr_change_committed(self, isr: frozenset[int], partition_epoch: int) -> None:
        """The controller accepted our AlterPartition (the response carries the result)."""
        if partition_epoch > self.partition_epoch:
            self.isr = isr
            self.partition_epoch = partition_epoch
        self.pending_isr = None
        self.advance_high_watermark()
        self.changes.notify()

    def end_offset_for(self, epoch: int) -> tuple[int, int]:
        """OffsetForLeaderEpoch, answered by the leader."""
        return self.log.end_offset_for(epoch)

    # ---- follower operations -----------------------------------------------------------

    def fetch_position(self) -> tuple[int, int]:
        """(fetch offset, last fetched epoch) for our next fetch; the epoch only where the
        leader validates it (leader-epoch truncation with fencing), -1 otherwise."""
        validates = self.config.truncation == "leader-epoch" and self.config.fetch_epoch_fencing
        return self.log.log_end_offset, self.log.latest_epoch if validates else -1

    def append_as_follower(self, records: bytes | memoryview, leader_hw: int, now_ms: int) -> None:
        """Append what the leader sent at our LEO; HW = min(leader's HW, our LEO)."""
        if records:
            first = parse_header(records)
            leo = self.log.log_end_offset
            # A compacted leader's next batch may start past our LEO: the cleaner removed
            # what lay between.
            if first.base_offset < leo or (first.base_offset > leo and not self.log.compacted):
                return
            self.log.append_as_follower(bytes(records), now_ms)
            for _, header in _headers(memoryview(records)):
                self.producers.update(
                    header.producer_id,
                    header.producer_epoch,
                    header.base_sequence,
                    header.last_sequence,
                    header.base_offset,
                    header.last_offset,
                )
        self.high_watermark = min(leader_hw, self.log.log_end_offset)
        self.changes.notify()

    def divergence_truncation_offset(self, epoch: int, end_offset: int) -> int:
        """KIP-279 (AbstractFetcherThread.getOffsetTruncationState): where we truncate on
        the leader's answer (epoch, end offset) for our last epoch."""
        leo = self.log.log_end_offset
        if end_offset < 0:
            # The leader knows no epoch that old: fall back to our HW.
            return min(self.high_watermark, leo)
        own_epoch, own_end = self.log.end_offset_for(epoch)
        if own_end < 0:
            return min(end_offset, leo)
        if own_epoch != epoch:
            return min(own_end, leo)
        return min(end_offset, own_end, leo)

    def kip101_truncation_offset(self, end_offset: int) -> int:
        """KIP-101: truncate to the leader's end offset for our latest epoch, no questions."""
        return min(end_offset, self.log.log_end_offset) if end_offset >= 0 else 0

    def truncate_on_divergence(self, epoch: int, end_offset: int) -> None:
        self._truncate(self.divergence_truncation_offset(epoch, end_offset))

    def apply_lookup(self, epoch: int, end_offset: int) -> None:
        """The OffsetForLeaderEpoch answer a TRUNCATING follower waited for."""
        if self.config.truncation == "kip-101":
            self._truncate(self.kip101_truncation_offset(end_offset))
            self.phase = Phase.FETCHING
            return
        end = self.divergence_truncation_offset(epoch, end_offset)
        agreed = end == self.log.log_end_offset
        self._truncate(end)
        self.phase = Phase.FETCHING if agreed else Phase.TRUNCATING

    def truncate_to_leader_end(self, leader_leo: int) -> None:
        """OFFSET_OUT_OF_RANGE above the leader's log: our suffix is not the leader's."""
        self._truncate(min(self.log.log_end_offset, leader_leo))

    def follow_leader_log_start(self, leader_log_start: int) -> None:
        """Retention moved the leader's log start: drop our segments wholly below it, or,
        when our whole log is below it (OFFSET_OUT_OF_RANGE at our LEO), start over there
        (Kafka's maybeIncrementLogStartOffset and truncateFullyAndStartAt)."""
        if leader_log_start > self.log.log_end_offset:
            self.log.truncate_fully_and_start_at(leader_log_start)
            self.high_watermark = leader_log_start
            self._rebuild_producer_state()
            self.changes.notify()
        elif leader_log_start > self.log.log_start_offset:
            self.log.delete_segments_below(leader_log_start)

    def _truncate(self, end: int) -> None:
        # At or past the log end no batch goes, but the log still cuts its epoch cache
        # there (B1): a stale entry of an empty epoch must not outlive the truncation.
        self.log.truncate_to(end)
        if end >= self.log.log_end_offset:
            return
        self.high_watermark = min(self.high_watermark, self.log.log_end_offset)
        self._rebuild_producer_state()
        self.changes.notify()

    # ---- lookups -----------------------------------------------------------------------

    def offsets_available(self) -> bool:
        """KIP-207: a new leader learned the HW from its last fetch as a follower, which may
        be behind what was acknowledged; it answers OFFSET_NOT_AVAILABLE to offset lookups
        until its HW reaches the start of its epoch (then everything before is committed)."""
        return self.high_watermark >= self.epoch_start_offset

    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        """ListOffsets: (offset, timestamp) for earliest (-2), latest (-1), max (-3) or a
        time. Consumers see the latest offset as the HW; records past it do not exist yet."""
        log = self.log
        if timestamp_ms == EARLIEST_TIMESTAMP:
            return log.log_start_offset, -1
        if timestamp_ms == LATEST_TIMESTAMP:
            return self.high_watermark, -1
        if timestamp_ms == MAX_TIMESTAMP:
            return log.offset_of_max_timestamp(self.high_watermark)
        found = log.offset_for_timestamp(timestamp_ms)
        if found is None or found[0] >= self.high_watermark:
            return None
        return found

    def epoch_at(self, offset: int) -> int:
        """The leader epoch that wrote `offset` (the current one at the log end)."""
        epoch = -1
        for entry_epoch, start_offset in self.log.leader_epoch_entries:
            if start_offset > offset:
                break
            epoch = entry_epoch
        return epoch

    # ---- helpers -----------------------------------------------------------------------

    def report_damage(self, what: str, error: CorruptBatchError) -> None:
        """A WARN the first time a request meets each damaged batch, not at every fetch."""
        place = (error.path, error.position)
        if place in self._damage_reported:
            return
        self._damage_reported.add(place)
        logger.warning(
            "partition %s-%d: %s answers CORRUPT_MESSAGE: %s", self.topic, self.index, what, error
        )

    def _leo_of(self, broker_id: int) -> int:
        if broker_id == self.broker_id:
            return self.log.log_end_offset
        return self.follower_leos.get(broker_id, 0)

    def _rebuild_producer_state(self) -> None:
        """Replay batch headers: Kafka restores this from snapshots, replog from the log.
        A damaged batch ends the replay with a WARN (its producers may then see a retry
        as new) rather than the broker's start."""
        self.producers.clear()
        try:
            for header in self.log.batch_headers():
                self.producers.update(
                    header.producer_id,
                    header.producer_epoch,
                    header.base_sequence,
                    header.last_sequence,
                    header.base_offset,
                    header.last_offset,
                )
        except CorruptBatchError as error:
            logger.warning(
                "partition %s-%d: producer state rebuilt only up to a damaged batch: %s",
                self.topic,
                self.index,
                error,
            )


def _stamped_log_append_time(batch: bytes | memoryview, now_ms: int) -> bytes:
    """The batch with Kafka's LogAppendTime stamp: the timestamp-type attribute bit set
    and maxTimestamp the leader's clock (consumers read every record's time from it), CRC
    recomputed. Its CRC is checked first, so damage is never sealed in."""
    validate_batch_at(batch)
    stamped = bytearray(batch)
    (attributes,) = struct.unpack_from(">h", stamped, _ATTRIBUTES_AT)
    struct.pack_into(">h", stamped, _ATTRIBUTES_AT, attributes | _LOG_APPEND_TIME_BIT)
    struct.pack_into(">q", stamped, _MAX_TIMESTAMP_AT, now_ms)
    struct.pack_into(">I", stamped, _CRC_AT, crc32c.crc32c(memoryview(stamped)[CRC_START:]))
    return bytes(stamped)


def _batches_below(data: memoryview, up_to: int) -> bytes:
    """The prefix of whole batches whose first offset is below `up_to`.

    HWs fall on batch boundaries (followers copy whole batches), so cutting after the
    last batch that starts below the limit never shows a consumer an offset past it.
    """
    end = 0
    for position, header in _headers(data):
        if header.base_offset >= up_to:
            break
        end = position + header.size_bytes
    return bytes(data[:end])


def _headers(data: memoryview) -> Iterator[tuple[int, BatchHeader]]:
    """(position, header) of each batch in a buffer the log already CRC-checked."""
    position = 0
    while position < len(data):
        header = parse_header(data, position)
        yield position, header
        position += header.size_bytes
