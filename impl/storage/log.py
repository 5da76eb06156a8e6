"""A partition's log: a directory of segments, the leader-epoch cache and crash recovery.

Durability contract (what `MemoryFileSystem.crash()` tests hold us to):
- Everything below `recovery_point` is on disk: `flush()` fsyncs the active segment and
  raises it to the log end offset; a roll fsyncs the segment it closes. `flush.messages`
  and `flush.ms` trigger `flush()` from the append path.
- Names are durable at once: a created or deleted segment is followed by an fsync of the
  directory, and truncation is fsynced before `truncate_to` returns, so a crash can
  never bring back data the log had removed.
- `open()` trusts closed segments that lie wholly below the recovery point (their
  indexes are loaded, not rebuilt), rescans every later segment batch by batch with its
  CRC, cuts the log at the first torn or corrupt batch, drops any segment after it,
  rebuilds their indexes and fsyncs the result. Nothing is cut without a trace: the cut
  bytes and dropped segments are moved aside (`impl.storage.quarantine`) and each cut
  logs a WARN on `replog.broker.storage` naming the partition, file, first dropped offset,
  bytes dropped and why. The recovery point is the caller's to
  keep (Kafka keeps it in the log dir's `recovery-point-offset-checkpoint`, see
  `impl.storage.checkpoint`); passing None rescans everything.
- Reads check the CRC of every batch they return. A bad batch in a trusted segment
  raises CorruptBatchError naming the file, position and offset; the broker answers that
  partition's fetch with CORRUPT_MESSAGE and logs it once (`impl.broker.partition`).
  `batch_headers()` reads headers without CRC checks, so a damaged record does not stop
  the producer-state rebuild at start.
- A log with `cleanup.policy=compact` may have gaps (the cleaner in
  `impl.storage.cleaner` removed records): reads at an offset in a gap return the next
  batch, followers accept batches whose offsets jump, recovery checks that offsets
  increase. Every other log must stay contiguous, and recovery holds it to that. A
  cleaning interrupted by a crash is rolled back or completed when the log opens.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import posixpath
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from impl.runtime.fs import FileSystem
from impl.storage.batch import (
    SUPPORTED_CODECS,
    BatchHeader,
    Codec,
    CorruptBatchError,
    Record,
    UnsupportedCodecError,
    decode_records,
    encode_batch,
    iter_batches,
    parse_header,
    topic_codec,
    validate_batch_at,
    with_base_offset_and_epoch,
)
from impl.storage.cleaner import finish_interrupted_cleaning, is_compacted, swap_in
from impl.storage.epoch_cache import LeaderEpochCache
from impl.storage.quarantine import recovery_log, set_file_aside
from impl.storage.segment import Segment, Truncation, scan_batches
from model.config import Config

LEADER_EPOCH_CHECKPOINT = "leader-epoch-checkpoint"
_SEGMENT_SUFFIXES = (".log", ".index", ".timeindex")
_BASE_OFFSET_DIGITS = 20
BATCHES_READ_BYTES = 1024 * 1024


class OffsetOutOfRangeError(ValueError):
    """An offset below the log start offset or above the log end offset."""


class LogAppendError(ValueError):
    """A batch the log refuses; nothing of it was written."""


class InvalidRecordError(LogAppendError):
    """A well-formed record this log refuses (Kafka's INVALID_RECORD): one without a key
    for a compacted topic."""


# NamedTuples, not frozen dataclasses: one is built per append or read, and a frozen
# dataclass's __init__ (an object.__setattr__ per field) costs several tuples.
class AppendInfo(NamedTuple):
    first_offset: int
    last_offset: int


class ReadResult(NamedTuple):
    """Whole record batches (a zero-copy view) and the offset just after the last one."""

    data: memoryview
    next_offset: int


def partition_dir_name(topic: str, partition: int) -> str:
    return f"{topic}-{partition}"


def mkdir_durably(fs: FileSystem, path: str) -> None:
    missing = []
    while path and not fs.exists(path):
        missing.append(path)
        parent = posixpath.dirname(path)
        if parent == path:
            break
        path = parent
    if not missing:
        return
    fs.mkdir(missing[0])
    for created in reversed(missing):
        fs.fsync_dir(posixpath.dirname(created) or ".")


def _segment_base(name: str) -> int | None:
    stem, dot, suffix = name.partition(".")
    if "." + suffix not in _SEGMENT_SUFFIXES or len(stem) != _BASE_OFFSET_DIGITS:
        return None
    return int(stem) if dot and stem.isdigit() else None


def _set_segments_aside(later: list[Segment], why: str) -> tuple[str, ...]:
    """Kafka deletes every segment after a recovery cut; replog renames their log files
    aside instead (their indexes are derived, so they go) and says so at WARN. The paths
    they now have."""
    fs = later[0].fs
    aside = []
    bytes_aside = 0
    for segment in later:
        bytes_aside += fs.size(segment.log_path)
        aside.append(set_file_aside(fs, segment.log_path, segment.base_offset))
        for index_path in (segment.offset_index.path, segment.time_index.path):
            if fs.exists(index_path):
                fs.remove(index_path)
    fs.fsync_dir(later[0].directory)
    recovery_log.warning(
        "partition %s: dropped %d segment(s) from offset %d on, %d bytes (moved to %s): %s",
        posixpath.basename(later[0].directory),
        len(later),
        later[0].base_offset,
        bytes_aside,
        ", ".join(posixpath.basename(path) for path in aside),
        why,
    )
    return tuple(aside)


class PartitionLog:
    """Append, read, truncate, roll, retain and recover one partition directory."""

    def __init__(
        self,
        fs: FileSystem,
        directory: str,
        config: Config,
        segments: list[Segment],
        epochs: LeaderEpochCache,
        truncations: list[Truncation],
    ) -> None:
        assert segments, "a log always has an active segment"
        self.fs = fs
        self.directory = directory
        self.config = config
        self.compacted = is_compacted(config)
        # Offsets below this were cleaned by this process (Kafka keeps it in the log
        # dir's cleaner-offset-checkpoint; replog starts over at the log start, which
        # costs one more pass, not correctness).
        self.first_dirty_offset = segments[0].base_offset
        # Bumped whenever closed segments are removed, cut or replaced: a cleaner pass
        # suspended between steps gives up when it changed.
        self.layout_version = 0
        self._segments = segments
        self._epochs = epochs
        self.truncations = truncations
        self._recovery_point = self.log_end_offset
        self._unflushed_messages = 0
        self._last_flush_ms: int | None = None

    # ---- opening and recovery ----------------------------------------------------------

    @classmethod
    def open(
        cls,
        fs: FileSystem,
        directory: str,
        config: Config | None = None,
        recovery_point: int | None = None,
    ) -> PartitionLog:
        """Open (creating if needed) and recover a partition directory."""
        mkdir_durably(fs, directory)
        config = config or Config()
        gaps = is_compacted(config)
        finish_interrupted_cleaning(fs, directory, gaps)
        bases = cls._clean_directory(fs, directory)
        segments, truncations, first_recovered = cls._load_segments(
            fs, directory, bases, recovery_point, gaps
        )
        epochs = LeaderEpochCache.load(fs, posixpath.join(directory, LEADER_EPOCH_CHECKPOINT))
        epochs.truncate_from_end(segments[-1].next_offset)
        epochs.truncate_from_start(segments[0].base_offset)
        for segment in segments[first_recovered:]:
            for epoch, start_offset in segment.epoch_starts:
                epochs.assign(epoch, start_offset)
            segment.flush()
        return cls(fs, directory, config, segments, epochs, truncations)

    @staticmethod
    def _clean_directory(fs: FileSystem, directory: str) -> list[int]:
        """Remove temp files and index files without a log; the segment base offsets."""
        names = fs.list_dir(directory)
        bases = sorted(
            b for n in names if n.endswith(".log") and (b := _segment_base(n)) is not None
        )
        removed = False
        for name in names:
            base = _segment_base(name)
            if name.endswith(".tmp") or (base is not None and base not in bases):
                fs.remove(posixpath.join(directory, name))
                removed = True
        if removed:
            fs.fsync_dir(directory)
        return bases

    @staticmethod
    def _load_segments(
        fs: FileSystem, directory: str, bases: list[int], recovery_point: int | None, gaps: bool
    ) -> tuple[list[Segment], list[Truncation], int]:
        """The segments, what recovery cut, and the index of the first recovered segment
        (those before it were trusted: below the recovery point, loaded not rescanned)."""
        if not bases:
            segment = Segment.create(fs, directory, 0, gaps=gaps)
            fs.fsync_dir(directory)
            return [segment], [], 0
        trusted_below = -1 if recovery_point is None else recovery_point
        segments: list[Segment] = []
        first_recovered = len(bases)
        for i, base in enumerate(bases):
            if segments and not segments[-1].followed_by(base):
                # A crash between a cut and setting aside what follows it, or a lost
                # segment file: offsets must not skip (nor, compacted, go back).
                later = [Segment(fs, directory, b, gaps=gaps) for b in bases[i:]]
                why = (
                    f"{posixpath.basename(later[0].log_path)} starts at offset {base}, "
                    f"the log before it ends at {segments[-1].next_offset}"
                )
                aside = _set_segments_aside(later, why)
                first = Truncation(later[0].log_path, 0, fs.size(aside[0]), why, base, aside[0])
                truncation = dataclasses.replace(first, later_aside=aside[1:])
                return segments, [truncation], min(first_recovered, i)
            segment = Segment(fs, directory, base, gaps=gaps)
            segments.append(segment)
            next_base = bases[i + 1] if i + 1 < len(bases) else None
            if (
                first_recovered == len(bases)
                and next_base is not None
                and next_base <= trusted_below
            ):
                try:
                    if segment.load_trusted():
                        continue
                except CorruptBatchError:
                    pass
            first_recovered = min(first_recovered, i)
            truncation = segment.recover()
            if truncation is not None and i + 1 < len(bases):
                later = [Segment(fs, directory, b, gaps=gaps) for b in bases[i + 1 :]]
                aside = _set_segments_aside(later, f"they follow the cut in {truncation.path}")
                truncation = dataclasses.replace(truncation, later_aside=aside)
            if truncation is not None:
                return segments, [truncation], first_recovered
        return segments, [], first_recovered

    # ---- positions -------------------------------------------------------------------

    @property
    def log_start_offset(self) -> int:
        return self._segments[0].base_offset

    @property
    def log_end_offset(self) -> int:
        return self._segments[-1].next_offset

    @property
    def recovery_point(self) -> int:
        """Every offset below this is durable on disk."""
        return self._recovery_point

    @property
    def size_bytes(self) -> int:
        return sum(s.size_bytes for s in self._segments)

    @property
    def segment_base_offsets(self) -> list[int]:
        return [s.base_offset for s in self._segments]

    @property
    def leader_epoch_entries(self) -> tuple[tuple[int, int], ...]:
        return self._epochs.entries

    @property
    def latest_epoch(self) -> int:
        return self._epochs.latest_epoch

    def assign_epoch_start(self, epoch: int) -> None:
        """A new leader's epoch starts at the log end offset (Kafka's makeLeader), before
        any record of it exists, so followers' divergence checks already see it."""
        self._epochs.assign(epoch, self.log_end_offset)

    def end_offset_for(self, epoch: int) -> tuple[int, int]:
        """(epoch, end offset) of a leader epoch, as OffsetsForLeaderEpoch answers."""
        return self._epochs.end_offset_for(epoch, self.log_end_offset)

    # ---- appends ---------------------------------------------------------------------

    def append_as_leader(
        self,
        records: Sequence[Record],
        leader_epoch: int,
        *,
        codec: Codec | None = None,
        producer_id: int = -1,
        producer_epoch: int = -1,
        base_sequence: int = -1,
        is_transactional: bool = False,
        now_ms: int | None = None,
    ) -> AppendInfo:
        """Encode records into one batch at the log end offset and append it."""
        if self.compacted and any(r.key is None for r in records):
            raise InvalidRecordError("a compacted topic accepts only records with a key")
        if codec is None:
            codec = topic_codec(self.config.compression_type)
        batch = encode_batch(
            records,
            base_offset=self.log_end_offset,
            partition_leader_epoch=leader_epoch,
            codec=Codec.NONE if codec is None else codec,
            producer_id=producer_id,
            producer_epoch=producer_epoch,
            base_sequence=base_sequence,
            is_transactional=is_transactional,
        )
        return self._append_leader_batch(batch, leader_epoch, now_ms)

    def append_batch_as_leader(
        self, batch: bytes, leader_epoch: int, now_ms: int | None = None
    ) -> AppendInfo:
        """Append one producer batch (as in a Produce request), assigning its offsets.

        Only baseOffset and partitionLeaderEpoch change; both lie outside the CRC.
        """
        header = self._check_incoming(batch, 0)
        if header.size_bytes != len(batch):
            raise LogAppendError(f"expected exactly one batch, got {len(batch)} bytes")
        if header.record_count != header.last_offset_delta + 1:
            raise LogAppendError(
                f"recordCount {header.record_count} does not match "
                f"lastOffsetDelta {header.last_offset_delta}"
            )
        if self.compacted and any(r.key is None for _, r in decode_records(batch)):
            # Kafka's LogValidator: the cleaner keeps the latest record per key, and a
            # record without one has none.
            raise InvalidRecordError("a compacted topic accepts only records with a key")
        patched = with_base_offset_and_epoch(batch, self.log_end_offset, leader_epoch)
        return self._append_leader_batch(patched, leader_epoch, now_ms)

    def _append_leader_batch(
        self, batch: bytes, leader_epoch: int, now_ms: int | None
    ) -> AppendInfo:
        if leader_epoch < self._epochs.latest_epoch:
            raise LogAppendError(
                f"leader epoch {leader_epoch} is older than the log's {self._epochs.latest_epoch}"
            )
        header = parse_header(batch)
        self._epochs.assign(leader_epoch, header.base_offset)
        self._append(batch, header, now_ms)
        return AppendInfo(header.base_offset, header.last_offset)

    def append_as_follower(self, data: bytes, now_ms: int | None = None) -> AppendInfo | None:
        """Append batches fetched from the leader, offsets as given. All or nothing.

        The first batch must start at the log end offset and each next one where the
        previous ended; in a compacted log at or above it (the leader's cleaner removed
        what lay between, and Kafka's followers take the jump). Any other gap means a
        fetch went wrong. Leader epochs must not go down either: recovery reads a lower
        epoch after a higher one as a damaged header and would cut the log there,
        fsynced or not.
        """
        batches = []
        expected = self.log_end_offset
        latest_epoch = self._epochs.latest_epoch
        position = 0
        while position < len(data):
            header = self._check_incoming(data, position)
            jumped = header.base_offset > expected and self.compacted
            if header.base_offset != expected and not jumped:
                raise LogAppendError(
                    f"batch at offset {header.base_offset}, the log expects {expected} "
                    + ("or later" if self.compacted else "(only compacted logs have gaps)")
                )
            if header.partition_leader_epoch < latest_epoch:
                raise LogAppendError(
                    f"batch at offset {header.base_offset} has partitionLeaderEpoch "
                    f"{header.partition_leader_epoch}, below the epoch {latest_epoch} "
                    "of an earlier batch"
                )
            batches.append((position, header))
            expected = header.next_offset
            latest_epoch = max(latest_epoch, header.partition_leader_epoch)
            position += header.size_bytes
        for position, header in batches:
            self._epochs.assign(header.partition_leader_epoch, header.base_offset)
            self._append(data[position : position + header.size_bytes], header, now_ms)
        if not batches:
            return None
        return AppendInfo(batches[0][1].base_offset, batches[-1][1].last_offset)

    @staticmethod
    def _check_incoming(data: bytes, position: int) -> BatchHeader:
        header = validate_batch_at(data, position)
        if header.codec not in SUPPORTED_CODECS:
            raise UnsupportedCodecError(header.codec, header.base_offset)
        if header.record_count < 1:
            raise LogAppendError(f"batch at offset {header.base_offset} has no records")
        return header

    def _append(self, batch: bytes, header: BatchHeader, now_ms: int | None) -> None:
        if self._should_roll(header):
            self.roll(header)
        self._segments[-1].append(batch, header)
        self._unflushed_messages += header.record_count
        if self._unflushed_messages >= self.config.flush_messages:
            self.flush()
        elif now_ms is not None:
            self.flush_if_due(now_ms)

    def _should_roll(self, header: BatchHeader) -> bool:
        active = self._segments[-1]
        if active.size_bytes == 0:
            return not active.fits(header)
        full = active.size_bytes + header.size_bytes > self.config.segment_bytes
        rolling_ms = active.rolling_timestamp_ms
        old = (
            rolling_ms is not None and header.max_timestamp_ms - rolling_ms > self.config.segment_ms
        )
        return full or old or not active.fits(header)

    # ---- roll, flush, retention, truncation -------------------------------------------

    def roll(self, next_batch: BatchHeader | None = None) -> None:
        """Close the active segment (fsynced) and start a new one at the log end offset,
        or at the next batch's offset when its offsets do not fit the active segment's
        index (only a compacted log's follower jumps that far; an empty active segment is
        then replaced, as Kafka rolls at the batch's first offset)."""
        active = self._segments[-1]
        base = self.log_end_offset
        if next_batch is not None and not active.fits(next_batch):
            base = next_batch.base_offset
        if active.size_bytes == 0 and base == active.base_offset:
            return
        if active.size_bytes == 0:
            self._segments.pop().delete()
        else:
            active.close()
        self._segments.append(Segment.create(self.fs, self.directory, base, gaps=self.compacted))
        self.fs.fsync_dir(self.directory)
        self._recovery_point = self.log_end_offset
        self._unflushed_messages = 0

    def flush(self) -> None:
        """Make everything appended durable; the recovery point becomes the log end offset."""
        self._segments[-1].flush()
        self._recovery_point = self.log_end_offset
        self._unflushed_messages = 0

    def flush_if_due(self, now_ms: int) -> bool:
        """Flush when flush.ms has passed since the last flush (the first call starts the clock)."""
        if self._last_flush_ms is None:
            self._last_flush_ms = now_ms
            return False
        if now_ms - self._last_flush_ms < self.config.flush_ms:
            return False
        self.flush()
        self._last_flush_ms = now_ms
        return True

    def apply_retention(self, now_ms: int, below_offset: int | None = None) -> int:
        """Delete the oldest closed segments past retention.ms or retention.bytes; the count.
        With `below_offset` (the HW), only segments wholly below it, as Kafka: retention
        never removes what followers may not have copied yet."""
        if "delete" not in self.config.cleanup_policy.split(","):
            return 0
        total_bytes = self.size_bytes
        deleted = 0
        while len(self._segments) > 1:
            oldest = self._segments[0]
            if below_offset is not None and self._segments[1].base_offset > below_offset:
                break
            expired = (
                self.config.retention_ms >= 0
                and now_ms - oldest.max_timestamp_ms > self.config.retention_ms
            )
            oversize = (
                self.config.retention_bytes >= 0
                and total_bytes - oldest.size_bytes >= self.config.retention_bytes
            )
            if not (expired or oversize):
                break
            total_bytes -= oldest.size_bytes
            deleted += 1
            self._delete_oldest_segment()
        if deleted:
            self._after_start_moved()
        return deleted

    def delete_segments_below(self, offset: int) -> int:
        """Delete the closed segments that lie wholly below `offset` (a follower following
        the leader's log start offset); the count."""
        deleted = 0
        while len(self._segments) > 1 and self._segments[1].base_offset <= offset:
            self._delete_oldest_segment()
            deleted += 1
        if deleted:
            self._after_start_moved()
        return deleted

    def truncate_fully_and_start_at(self, offset: int) -> None:
        """Kafka's truncateFullyAndStartAt: a follower whose log ends below the leader's
        log start offset drops everything and continues at `offset`."""
        assert offset >= 0, "a log starts at a non-negative offset"
        for segment in reversed(self._segments):
            segment.delete()
        self.layout_version += 1
        self._segments = [Segment.create(self.fs, self.directory, offset, gaps=self.compacted)]
        self.first_dirty_offset = offset
        self.fs.fsync_dir(self.directory)
        # No epoch entry describes an empty log (Kafka clears the cache here too).
        self._epochs.truncate_from_end(-1)
        self._recovery_point = offset
        self._unflushed_messages = 0

    def _delete_oldest_segment(self) -> None:
        assert len(self._segments) > 1, "the active segment is never deleted"
        self._segments.pop(0).delete()
        self.layout_version += 1

    def _after_start_moved(self) -> None:
        self.fs.fsync_dir(self.directory)
        self._epochs.truncate_from_start(self.log_start_offset)
        self._recovery_point = max(self._recovery_point, self.log_start_offset)
        self.first_dirty_offset = max(self.first_dirty_offset, self.log_start_offset)

    def truncate_to(self, offset: int) -> None:
        """Remove every batch whose last offset is >= offset (a follower's truncation).

        The log end offset becomes <= offset: lower when offset falls inside a batch.
        """
        if offset >= self.log_end_offset:
            # Kafka's truncateTo cuts the epoch cache even here: a leader of an epoch that
            # appended nothing left an entry at the log end that the new leader never had.
            self._epochs.truncate_from_end(offset)
            return
        if offset < self.log_start_offset:
            raise OffsetOutOfRangeError(
                f"cannot truncate to {offset}, below the log start offset {self.log_start_offset}"
            )
        self.layout_version += 1
        doomed = [s for s in self._segments[1:] if s.base_offset > offset]
        for segment in reversed(doomed):
            segment.delete()
        if doomed:
            del self._segments[-len(doomed) :]
            self.fs.fsync_dir(self.directory)
        self._segments[-1].truncate_to(offset)
        self._epochs.truncate_from_end(self.log_end_offset)
        self._recovery_point = min(self._recovery_point, self.log_end_offset)
        # What the leader sends in place of the cut records was never mapped: a tombstone
        # among them must not look cleaned, or its key's older records could outlive it.
        self.first_dirty_offset = min(self.first_dirty_offset, self._segments[-1].base_offset)

    # ---- compaction (impl.storage.cleaner drives it) ------------------------------------

    def cleanable_segments(self, below_offset: int) -> list[Segment]:
        """The closed segments wholly below `below_offset` (the HW), oldest first."""
        cleanable = []
        for segment, following in itertools.pairwise(self._segments):
            if following.base_offset > below_offset:
                break
            cleanable.append(segment)
        return cleanable

    def segment_after(self, segment: Segment) -> Segment:
        """The segment following a closed one."""
        return self._segments[self._segments.index(segment) + 1]

    def replace_segments(self, old: list[Segment], cleaned: Segment) -> None:
        """Swap a cleaned segment in for consecutive closed segments (crash-safe)."""
        start = self._segments.index(old[0])
        assert self._segments[start : start + len(old)] == old, "consecutive segments"
        assert start + len(old) < len(self._segments), "the active segment is never cleaned"
        swap_in(self.fs, self.directory, old, cleaned)
        self._segments[start : start + len(old)] = [cleaned]
        self.layout_version += 1

    # ---- reads -----------------------------------------------------------------------

    def read(self, offset: int, max_bytes: int) -> ReadResult:
        """Whole batches from the one holding `offset`: at least one if any, else up to
        max_bytes. Raises OffsetOutOfRangeError outside [log start, log end]."""
        if not self.log_start_offset <= offset <= self.log_end_offset:
            raise OffsetOutOfRangeError(
                f"offset {offset} outside [{self.log_start_offset}, {self.log_end_offset}]"
            )
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        first = bisect.bisect_right(self.segment_base_offsets, offset) - 1
        for segment in self._segments[first:]:
            data, next_offset = segment.read(offset, max_bytes)
            if data:
                return ReadResult(data, next_offset)
        return ReadResult(memoryview(b""), offset)

    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record stamped at or after `timestamp_ms`, as
        ListOffsets answers; None when every record is older. Scans one segment at most:
        segments are skipped by their max timestamp."""
        for segment in self._segments:
            if segment.max_timestamp_ms < timestamp_ms:
                continue
            offset = max(segment.base_offset, self.log_start_offset)
            while offset < segment.next_offset:
                data, offset = segment.read(offset, BATCHES_READ_BYTES)
                if not data:
                    break
                for position, header in iter_batches(data):
                    if header.max_timestamp_ms < timestamp_ms:
                        continue
                    batch = data[position : position + header.size_bytes]
                    for record_offset, record in decode_records(batch):
                        if record.timestamp_ms >= timestamp_ms:
                            return record_offset, record.timestamp_ms
        return None

    def offset_of_max_timestamp(self, below: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the newest-stamped record below offset `below` (the
        earliest such record on ties); None for an empty range. Reads every batch
        header in the range: Kafka's segments cache this, replog computes it."""
        best: tuple[int, int] | None = None
        offset = self.log_start_offset
        while offset < min(below, self.log_end_offset):
            read = self.read(offset, BATCHES_READ_BYTES)
            if not read.data:
                break
            for position, header in iter_batches(read.data):
                if header.base_offset >= below:
                    break
                if best is None or header.max_timestamp_ms > best[1]:
                    batch = read.data[position : position + header.size_bytes]
                    stamped = [(o, r.timestamp_ms) for o, r in decode_records(batch) if o < below]
                    newest = max(stamped, key=lambda pair: (pair[1], -pair[0]))
                    if best is None or newest[1] > best[1]:
                        best = newest
            offset = read.next_offset
        return best

    def batch_headers(self) -> Iterator[BatchHeader]:
        """Every batch header from the log start, without CRC checks: what Kafka's producer
        state rebuild reads. A damaged record in a trusted segment must not keep a broker
        from starting; reads still refuse it. Raises CorruptBatchError at a batch whose
        header is structurally wrong (say, its length)."""
        for segment in self._segments:
            for _, header in scan_batches(self.fs, segment.log_path, verify_crc=False):
                yield header

    def batches(self, offset: int | None = None) -> list[tuple[BatchHeader, bytes]]:
        """Every batch from `offset` (default: the log start) to the end, CRC-checked.

        Reads the whole log into memory: for tests and tools, not for serving fetches.
        """
        result = []
        offset = self.log_start_offset if offset is None else offset
        while offset < self.log_end_offset:
            read = self.read(offset, BATCHES_READ_BYTES)
            if not read.data:
                break
            for position, header in iter_batches(read.data):
                result.append((header, bytes(read.data[position : position + header.size_bytes])))
            offset = read.next_offset
        return result

    def close(self) -> None:
        """Finish the active segment's time index and flush; the filesystem stays open."""
        self._segments[-1].close()
        self._recovery_point = self.log_end_offset
        self._unflushed_messages = 0
