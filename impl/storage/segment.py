"""One segment: `<base offset, 20 digits>.log` with its `.index` and `.timeindex`."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass

from impl.runtime.fs import FileSystem
from impl.storage.batch import (
    HEADER_SIZE_BYTES,
    BatchHeader,
    CorruptBatchError,
    check_header,
    crc_of,
    parse_header,
    verified_prefix,
)
from impl.storage.index import INDEX_INTERVAL_BYTES, RELATIVE_OFFSET_MAX, OffsetIndex, TimeIndex
from impl.storage.quarantine import recovery_log, set_tail_aside

SCAN_CHUNK_BYTES = 1024 * 1024
SEEK_CHUNK_BYTES = 4096
NO_TIMESTAMP = -1
# Read boundaries remembered per segment: followers and consumers each fetch from where
# their last read ended, so a handful covers every tail reader of a partition.
READ_POSITIONS_MAX = 16


def segment_file_name(base_offset: int, suffix: str) -> str:
    return f"{base_offset:020d}{suffix}"


@dataclass(frozen=True, slots=True)
class Truncation:
    """What recovery cut from a segment, why, and where the cut bytes went: `aside_path`
    holds them, `later_aside` the segments after the cut, set aside whole. A segment that
    does not follow the one before it is cut whole (position 0)."""

    path: str
    position: int
    bytes_dropped: int
    reason: str
    first_offset: int
    aside_path: str
    later_aside: tuple[str, ...] = ()


def scan_batches(
    fs: FileSystem,
    path: str,
    position: int = 0,
    verify_crc: bool = True,
    chunk_bytes: int = SCAN_CHUNK_BYTES,
) -> Iterator[tuple[int, BatchHeader]]:
    """(position, header) of each batch from `position` to the end of the file.

    Raises CorruptBatchError naming the file and position at the first batch that is
    torn (the file ends inside it), malformed, or (with verify_crc) fails its CRC.
    """
    file_size = fs.size(path)
    buf = b""
    buf_start = position
    while position < file_size:
        if position + HEADER_SIZE_BYTES > buf_start + len(buf):
            buf, buf_start = fs.read(path, position, chunk_bytes), position
        local = position - buf_start
        try:
            header = parse_header(buf, local)
            check_header(header, file_size - position)
        except CorruptBatchError as error:
            raise CorruptBatchError(error.reason, path, position) from None
        if verify_crc:
            if local + header.size_bytes > len(buf):
                buf, buf_start = (
                    fs.read(path, position, max(chunk_bytes, header.size_bytes)),
                    position,
                )
                local = 0
            actual = crc_of(buf, local, header.size_bytes)
            if actual != header.crc:
                reason = f"CRC-32C is {actual:#010x}, header says {header.crc:#010x}"
                raise CorruptBatchError(reason, path, position, header.base_offset)
        yield position, header
        position += header.size_bytes


class Segment:
    """A run of batches starting at `base_offset`, with its indexes and running totals.

    With `gaps` (a compacted log's segment) offsets must increase from batch to batch but
    may skip, since the cleaner removed records; otherwise each batch starts where the
    previous one ended, which also catches a damaged baseOffset (it lies outside the
    CRC). `suffix` follows each file name: the cleaner writes `.cleaned` files, renames
    them to `.swap`, then to the plain names (see `impl.storage.cleaner`).
    """

    def __init__(
        self,
        fs: FileSystem,
        directory: str,
        base_offset: int,
        *,
        gaps: bool = False,
        suffix: str = "",
    ) -> None:
        self.fs = fs
        self.directory = directory
        self.base_offset = base_offset
        self.gaps = gaps
        self.suffix = suffix
        self.log_path = self._path(".log")
        self.offset_index = OffsetIndex(fs, self._path(".index"), base_offset)
        self.time_index = TimeIndex(fs, self._path(".timeindex"), base_offset)
        self.size_bytes = 0
        self.next_offset = base_offset
        self.max_timestamp_ms = NO_TIMESTAMP
        self.offset_of_max_timestamp = base_offset
        self.rolling_timestamp_ms: int | None = None
        self._bytes_since_index_entry = 0
        self.epoch_starts: list[tuple[int, int]] = []
        # offset -> position of the batch starting there, for offsets where reads began
        # or ended (like the position Kafka's fetch offset metadata carries): a reader
        # that resumes there skips the scan from the sparse index entry.
        self._read_positions: dict[int, int] = {}

    def _path(self, kind: str) -> str:
        name = segment_file_name(self.base_offset, kind) + self.suffix
        return posixpath.join(self.directory, name)

    @property
    def paths(self) -> tuple[str, str, str]:
        return self.log_path, self.offset_index.path, self.time_index.path

    @classmethod
    def create(
        cls,
        fs: FileSystem,
        directory: str,
        base_offset: int,
        *,
        gaps: bool = False,
        suffix: str = "",
    ) -> Segment:
        """Empty files for a new segment (the caller fsyncs the directory)."""
        segment = cls(fs, directory, base_offset, gaps=gaps, suffix=suffix)
        for path in segment.paths:
            fs.append(path, b"")
            fs.truncate(path, 0)
        return segment

    def _track(self, position: int, header: BatchHeader) -> bool:
        """Account for a batch at `position`; True when Kafka would index this batch."""
        if header.max_timestamp_ms > self.max_timestamp_ms:
            self.max_timestamp_ms = header.max_timestamp_ms
            self.offset_of_max_timestamp = header.last_offset
        if self.rolling_timestamp_ms is None:
            self.rolling_timestamp_ms = header.max_timestamp_ms
        index_due = self._bytes_since_index_entry > INDEX_INTERVAL_BYTES
        if index_due:
            self._bytes_since_index_entry = 0
        self._bytes_since_index_entry += header.size_bytes
        self.size_bytes = position + header.size_bytes
        self.next_offset = header.next_offset
        return index_due

    def fits(self, header: BatchHeader) -> bool:
        return header.last_offset - self.base_offset <= RELATIVE_OFFSET_MAX

    def append(self, batch: bytes, header: BatchHeader) -> None:
        position = self.size_bytes
        self.fs.append(self.log_path, batch)
        self._appended(position, header)

    def append_run(self, batches: list[tuple[bytes, BatchHeader]]) -> None:
        """Append consecutive batches with one write (the cleaner copies many small ones)."""
        position = self.size_bytes
        self.fs.append(self.log_path, b"".join(batch for batch, _ in batches))
        for _, header in batches:
            self._appended(position, header)
            position += header.size_bytes

    def _appended(self, position: int, header: BatchHeader) -> None:
        assert header.base_offset >= self.next_offset, "offsets must grow within a segment"
        assert self.fits(header), "batch offsets do not fit this segment's index"
        if self._track(position, header):
            self.offset_index.append(header.last_offset, position)
            self.time_index.maybe_append(self.max_timestamp_ms, self.offset_of_max_timestamp)

    def recover(self) -> Truncation | None:
        """Rescan every batch with its CRC, rebuild both indexes, cut a bad tail (set
        aside and logged first, see `_cut_tail`)."""
        self._reset_totals()
        offset_entries: list[tuple[int, int]] = []
        time_entries: list[tuple[int, int]] = []
        truncation = None
        try:
            for position, header in scan_batches(self.fs, self.log_path):
                self._check_sequence(header)
                self._note_epoch(header)
                if self._track(position, header):
                    offset_entries.append((header.last_offset, position))
                    self._note_time_entry(time_entries)
        except CorruptBatchError as error:
            truncation = self._cut_tail(error.reason)
        self.offset_index.rebuild(offset_entries)
        self.time_index.rebuild(time_entries)
        return truncation

    def _cut_tail(self, reason: str) -> Truncation:
        """Cut the log file after the last valid batch, as Kafka does, but copy the cut
        bytes aside (durably) and say so at WARN first: they may hold acknowledged
        records, and an operator needs them and the reason for a post-mortem."""
        position = self.size_bytes
        first_offset = self.next_offset
        bytes_dropped = self.fs.size(self.log_path) - position
        aside_path = set_tail_aside(self.fs, self.log_path, position, first_offset)
        self.fs.truncate(self.log_path, position)
        self.fs.fsync(self.log_path)
        recovery_log.warning(
            "partition %s: recovery cut %s at position %d: first dropped offset %d, "
            "%d bytes dropped (moved to %s): %s",
            posixpath.basename(self.directory),
            self.log_path,
            position,
            first_offset,
            bytes_dropped,
            posixpath.basename(aside_path),
            reason,
        )
        return Truncation(self.log_path, position, bytes_dropped, reason, first_offset, aside_path)

    def _check_sequence(self, header: BatchHeader) -> None:
        """Offsets and epochs sit outside the CRC; a flipped bit there shows as a break in
        the sequence: any change without gaps, a step back with them."""
        if not self._offset_follows(header.base_offset, self.next_offset):
            raise CorruptBatchError(
                f"baseOffset {header.base_offset}, expected {self._expected(self.next_offset)}",
                position=self.size_bytes,
            )
        if self.epoch_starts and header.partition_leader_epoch < self.epoch_starts[-1][0]:
            raise CorruptBatchError(
                f"partitionLeaderEpoch {header.partition_leader_epoch} is below the previous "
                f"batch's {self.epoch_starts[-1][0]}",
                position=self.size_bytes,
            )
        if not self.fits(header):
            raise CorruptBatchError(f"lastOffset {header.last_offset} does not fit the index")

    def followed_by(self, base_offset: int) -> bool:
        """Whether a segment starting at `base_offset` may come next in the log."""
        return self._offset_follows(base_offset, self.next_offset)

    def _offset_follows(self, base_offset: int, expected: int) -> bool:
        return base_offset >= expected if self.gaps else base_offset == expected

    def _expected(self, offset: int) -> str:
        return f"at least {offset}" if self.gaps else str(offset)

    def _note_epoch(self, header: BatchHeader) -> None:
        epoch = header.partition_leader_epoch
        if not self.epoch_starts or epoch > self.epoch_starts[-1][0]:
            self.epoch_starts.append((epoch, header.base_offset))

    def _note_time_entry(self, time_entries: list[tuple[int, int]]) -> None:
        if not time_entries or self.max_timestamp_ms > time_entries[-1][0]:
            time_entries.append((self.max_timestamp_ms, self.offset_of_max_timestamp))

    def _reset_totals(self) -> None:
        self.size_bytes = 0
        self.next_offset = self.base_offset
        self.max_timestamp_ms = NO_TIMESTAMP
        self.offset_of_max_timestamp = self.base_offset
        self.rolling_timestamp_ms = None
        self._bytes_since_index_entry = 0
        self.epoch_starts = []
        self._read_positions = {}

    def load_trusted(self) -> bool:
        """Open a segment below the recovery point: trust its indexes, read only the tail.

        False, having loaded nothing, when the index files are missing or not sane; a
        damaged tail raises CorruptBatchError. Either way the caller recovers this
        segment, and so learns of any cut (and drops the segments after it).
        """
        log_size_bytes = self.fs.size(self.log_path)
        if not (self.offset_index.load(log_size_bytes) and self.time_index.load()):
            return False
        self._reset_totals()
        last_time_entry = self.time_index.last()
        start = self.offset_index.last_position()
        for position, header in scan_batches(self.fs, self.log_path, start, verify_crc=False):
            self._track(position, header)
        if start and self.rolling_timestamp_ms is not None:
            first = parse_header(self.fs.read(self.log_path, 0, HEADER_SIZE_BYTES))
            self.rolling_timestamp_ms = first.max_timestamp_ms
        if last_time_entry is not None and last_time_entry[0] > self.max_timestamp_ms:
            self.max_timestamp_ms, self.offset_of_max_timestamp = last_time_entry
        return True

    def find_position(self, offset: int) -> tuple[int, BatchHeader] | None:
        """The first batch whose last offset is >= offset, found via the index then a scan.

        baseOffset lies outside the CRC, so the scan checks each batch's offsets against
        what must be there (the index entry's last offset, the segment's base offset, the
        previous batch's next offset): a damaged baseOffset would otherwise serve records
        under the wrong offsets. A mismatch raises CorruptBatchError at that batch.
        """
        start, indexed_last_offset = self.offset_index.lookup(offset)
        expected = self.base_offset
        remembered = self._read_positions.get(offset)
        if remembered is not None and remembered > start:
            start, indexed_last_offset, expected = remembered, None, offset
        for position, header in scan_batches(
            self.fs, self.log_path, start, verify_crc=False, chunk_bytes=SEEK_CHUNK_BYTES
        ):
            if position == start and indexed_last_offset is not None:
                if header.last_offset != indexed_last_offset:
                    reason = (
                        f"lastOffset {header.last_offset}, the index says {indexed_last_offset}"
                    )
                    raise CorruptBatchError(reason, self.log_path, position, offset)
            elif not self._offset_follows(header.base_offset, expected):
                reason = f"baseOffset {header.base_offset}, expected {self._expected(expected)}"
                raise CorruptBatchError(reason, self.log_path, position, expected)
            if header.last_offset >= offset:
                return position, header
            expected = header.next_offset
        return None

    def read(self, offset: int, max_bytes: int) -> tuple[memoryview, int]:
        """Whole batches from the one holding `offset`, up to max_bytes but at least one.

        Every batch served passes its CRC and carries the offsets that follow from the
        previous batch. A bad first batch raises CorruptBatchError; a bad later one ends
        the read before it, so the next read reports it.
        """
        found = self.find_position(offset)
        if found is None:
            return memoryview(b""), offset
        position, first = found
        chunk = self.fs.read(
            self.log_path,
            position,
            min(max(max_bytes, first.size_bytes), self.size_bytes - position),
        )
        end, next_offset, error = verified_prefix(chunk, first.base_offset, self.gaps)
        if end == 0:
            error = error or CorruptBatchError(
                f"file ends inside the {first.size_bytes}-byte batch"
            )
            raise error.located(self.log_path, position, offset)
        self._remember_read_position(first.base_offset, position)
        self._remember_read_position(next_offset, position + end)
        # A view, not a slice: copying a megabyte per fetch costs more than the read.
        return memoryview(chunk)[:end], next_offset

    def _remember_read_position(self, offset: int, position: int) -> None:
        positions = self._read_positions
        positions.pop(offset, None)
        positions[offset] = position
        if len(positions) > READ_POSITIONS_MAX:
            del positions[next(iter(positions))]

    def truncate_to(self, offset: int) -> None:
        """Remove every batch whose last offset is >= offset; durable before returning."""
        try:
            found = self.find_position(offset)
            cut = None if found is None else found[0]
        except CorruptBatchError as error:
            # Everything from a batch whose offsets are wrong is suspect: cut it too.
            cut = error.position
        if cut is not None:
            self.fs.truncate(self.log_path, cut)
            self.recover()
        self.flush()

    def close(self) -> None:
        """Write the final time-index entry (Kafka does on roll and close); make it durable."""
        if self.size_bytes:
            self.time_index.maybe_append(self.max_timestamp_ms, self.offset_of_max_timestamp)
        self.flush()

    def flush(self) -> None:
        for path in self.paths:
            self.fs.fsync(path)

    def delete(self) -> None:
        for path in self.paths:
            if self.fs.exists(path):
                self.fs.remove(path)

    def rename_to(self, suffix: str) -> None:
        """Give the files another suffix, the indexes first and the log last: the log's
        name is what recovery goes by, and it must not find an index of another kind.
        The caller fsyncs the directory."""
        log_path, index_path, time_index_path = self.paths
        self.suffix = suffix
        for old, new in (
            (index_path, self._path(".index")),
            (time_index_path, self._path(".timeindex")),
            (log_path, self._path(".log")),
        ):
            if self.fs.exists(old):
                self.fs.rename(old, new)
        self.log_path = self._path(".log")
        self.offset_index.path = self._path(".index")
        self.time_index.path = self._path(".timeindex")
