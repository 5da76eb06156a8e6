"""Log compaction for `cleanup.policy=compact` logs (Kafka's LogCleaner), one bounded pass
at a time.

A pass over one log (`clean_pass`):
1. Cleanable: the closed segments wholly below the HW; the active segment and whatever
   followers may not have copied yet are never touched. The dirty part starts at the
   log's `first_dirty_offset` (everything below it was cleaned by an earlier pass).
2. Map: key -> offset of its newest record, over the dirty batches in offset order until
   `replog.cleaner.pass.bytes.max` bytes of them were read (at least one batch): the
   bound on a pass, like Kafka's dedupe buffer. The map ends after the last batch read.
3. Rewrite every segment from the log start to the one holding the map's end, in groups
   of consecutive segments whose sizes add up to at most `segment.bytes`, each into one
   new segment at the group's first base offset. Below the map's end a record stays
   unless a newer record of its key is mapped, and a tombstone (null value) that is the
   newest of its key also goes once its batch is older than `delete.retention.ms`; at or
   above it everything stays (a tombstone there may delete a record the map kept).
   Batches keep their baseOffset and
   lastOffsetDelta, records their offsets, so offsets skip where records went; a batch
   that loses every record goes; one that loses none is copied byte for byte. Kept
   whole: control and transactional batches (replog cleans no transaction state),
   records without a key, and each producer id's last batch in the range (followers and
   restarts rebuild producer state from the log; Kafka keeps that batch too, emptied).
4. Swap, crash-safe: the group's new segment is written as `<base>.log.cleaned` (with
   `.index.cleaned`, `.timeindex.cleaned`) and fsynced, renamed to `.swap` (indexes
   first, the log last) and the directory fsynced: the commit point. Then the replaced
   segments' files are removed, the `.swap` files renamed to the plain names and the
   directory fsynced. When a log opens, `finish_interrupted_cleaning` removes
   `.cleaned` files and `.swap` indexes without a `.swap` log (the old segments are
   intact), and completes a `.swap` log: it removes the plain segments with base offsets
   in [its base, its next offset), rebuilds its indexes and renames it. A crash thus
   leaves the old segments or the new one, never neither; an old segment of the group
   lying wholly above the new one's last offset may survive such a crash, which only
   keeps records a newer one already supersedes (Kafka's recovery has the same rule).

A pass runs in steps (`clean_steps`): it yields after about STEP_BYTES of batches, so
that the broker's event loop runs other tasks between them (Kafka runs its cleaner on
threads of its own). Whatever removes, cuts or replaces closed segments meanwhile (a
follower's truncation, retention, starting over at the leader's log start) aborts the
pass at its next step: its `.cleaned` files are removed, segments it already swapped in
stay (each is complete), the dirty offset does not move.

Kafka's rule for tombstones holds here too: a consumer (or an out-of-sync follower) that
reads a key's older record and then falls more than `delete.retention.ms` behind may
miss its tombstone.
"""

from __future__ import annotations

import posixpath
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from impl.runtime.fs import FileSystem
from impl.storage.batch import (
    BatchHeader,
    CodecError,
    decode_records,
    encode_retained,
    parse_header,
    record_keys,
)
from impl.storage.index import RELATIVE_OFFSET_MAX
from impl.storage.quarantine import is_set_aside
from impl.storage.segment import Segment
from model.config import Config

if TYPE_CHECKING:
    from impl.storage.log import PartitionLog

CLEANED_SUFFIX = ".cleaned"
SWAP_SUFFIX = ".swap"
READ_BYTES = 1024 * 1024
STEP_BYTES = 256 * 1024
_BASE_OFFSET_DIGITS = 20


def is_compacted(config: Config) -> bool:
    return "compact" in config.cleanup_policy.split(",")


@dataclass(frozen=True, slots=True)
class CleaningResult:
    """What one pass did to one log."""

    segments_before: int
    segments_after: int
    size_bytes_before: int
    size_bytes_after: int
    mapped_bytes: int
    records_removed: int
    tombstones_removed: int
    first_dirty_offset: int


@dataclass(slots=True)
class _Pass:
    """What a pass decides by, and what it removed."""

    offset_map: dict[bytes, int]
    map_end: int
    tombstone_horizon_ms: int
    producers_last_batches: set[int]
    records_removed: int = 0
    tombstones_removed: int = 0


class _Aborted(Exception):
    """The log's closed segments changed while the pass was suspended."""


@dataclass(slots=True)
class _Steps:
    """Where a pass yields, and the check that the log stayed as it found it."""

    log: PartitionLog
    layout: int
    bytes_since_yield: int = 0

    def advance(self, size_bytes: int) -> Generator[None, None, None]:
        self.bytes_since_yield += size_bytes
        if self.bytes_since_yield < STEP_BYTES:
            return
        self.bytes_since_yield = 0
        yield
        if self.log.layout_version != self.layout:
            raise _Aborted


def _dirty_segments(log: PartitionLog, cleanable: list[Segment]) -> list[Segment]:
    """The cleanable segments holding offsets at or above the log's first dirty offset."""
    return [s for s in cleanable if s.next_offset > log.first_dirty_offset and s.size_bytes]


def dirty_ratio(log: PartitionLog, below_offset: int) -> float:
    """Dirty bytes over cleanable bytes (Kafka's cleanableRatio, by whole segments); 0
    when nothing is dirty."""
    cleanable = log.cleanable_segments(below_offset)
    total = sum(s.size_bytes for s in cleanable)
    dirty = sum(s.size_bytes for s in _dirty_segments(log, cleanable))
    return dirty / total if dirty else 0.0


def clean_pass(log: PartitionLog, now_ms: int, below_offset: int) -> CleaningResult | None:
    """One pass over a compacted log, all steps at once (see `clean_steps`)."""
    steps = clean_steps(log, now_ms, below_offset)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def clean_steps(
    log: PartitionLog, now_ms: int, below_offset: int
) -> Generator[None, None, CleaningResult | None]:
    """One pass over a compacted log (see the module docstring), yielding between steps;
    returns None if nothing is dirty or the pass was aborted.

    Raises CorruptBatchError if a batch it reads is damaged; segments already swapped in
    stay (each one is complete), the dirty offset does not move.
    """
    assert log.compacted, "only compacted logs are cleaned"
    cleanable = log.cleanable_segments(below_offset)
    dirty = _dirty_segments(log, cleanable)
    if not dirty:
        return None
    steps = _Steps(log, log.layout_version)
    try:
        return (yield from _clean(log, now_ms, cleanable, dirty, steps))
    except _Aborted:
        return None


def _clean(
    log: PartitionLog,
    now_ms: int,
    cleanable: list[Segment],
    dirty: list[Segment],
    steps: _Steps,
) -> Generator[None, None, CleaningResult]:
    offset_map, mapped_bytes, map_end = yield from _build_map(
        log, dirty, log.first_dirty_offset, log.config.cleaner_pass_bytes_max, steps
    )
    rewrite = [s for s in cleanable if s.base_offset < map_end]
    last_batches = yield from _producers_last_batches(rewrite, steps)
    size_before = sum(s.size_bytes for s in rewrite)
    pass_ = _Pass(offset_map, map_end, now_ms - log.config.delete_retention_ms, last_batches)
    cleaned_segments = []
    for group in _groups(rewrite, log.config.segment_bytes):
        cleaned = yield from _clean_group(log, group, pass_, steps)
        log.replace_segments(group, cleaned)
        steps.layout = log.layout_version
        cleaned_segments.append(cleaned)
    log.first_dirty_offset = map_end
    return CleaningResult(
        segments_before=len(rewrite),
        segments_after=len(cleaned_segments),
        size_bytes_before=size_before,
        size_bytes_after=sum(s.size_bytes for s in cleaned_segments),
        mapped_bytes=mapped_bytes,
        records_removed=pass_.records_removed,
        tombstones_removed=pass_.tombstones_removed,
        first_dirty_offset=log.first_dirty_offset,
    )


def _batches(segment: Segment, start: int = 0) -> Iterator[tuple[BatchHeader, memoryview]]:
    """The segment's batches whose last offset is at least `start`, each CRC-checked by
    the segment's read."""
    offset = max(start, segment.base_offset)
    while offset < segment.next_offset:
        data, next_offset = segment.read(offset, READ_BYTES)
        if not data:
            return
        position = 0
        while position < len(data):
            header = parse_header(data, position)
            yield header, data[position : position + header.size_bytes]
            position += header.size_bytes
        offset = next_offset


def _build_map(
    log: PartitionLog, dirty: list[Segment], first_dirty: int, bytes_max: int, steps: _Steps
) -> Generator[None, None, tuple[dict[bytes, int], int, int]]:
    """(key -> newest offset, bytes read, the map's end offset): the batches from
    `first_dirty` in order until the next would pass `bytes_max`, at least one. A map
    that takes a whole segment ends at the next segment's base offset."""
    offset_map: dict[bytes, int] = {}
    mapped_bytes = 0
    map_end = first_dirty
    for segment in dirty:
        for header, batch in _batches(segment, first_dirty):
            if mapped_bytes and mapped_bytes + header.size_bytes > bytes_max:
                return offset_map, mapped_bytes, map_end
            if not header.is_control:
                for offset, key, _ in record_keys(batch):
                    if key is not None:
                        offset_map[key] = offset
            mapped_bytes += header.size_bytes
            map_end = header.next_offset
            yield from steps.advance(header.size_bytes)
        map_end = log.segment_after(segment).base_offset
    return offset_map, mapped_bytes, map_end


def _producers_last_batches(
    segments: list[Segment], steps: _Steps
) -> Generator[None, None, set[int]]:
    """Base offsets of each producer id's last batch in these segments (headers only)."""
    last: dict[int, int] = {}
    for segment in segments:
        for header, _ in _batches(segment):
            if header.producer_id >= 0:
                last[header.producer_id] = header.base_offset
            yield from steps.advance(header.size_bytes)
    return set(last.values())


def _groups(segments: list[Segment], size_bytes_max: int) -> Iterator[list[Segment]]:
    """Consecutive segments whose sizes add up to at most `size_bytes_max` and whose
    offsets fit one segment's index (Kafka's groupSegmentsBySize)."""
    group: list[Segment] = []
    size = 0
    for segment in segments:
        if group and (
            size + segment.size_bytes > size_bytes_max
            or segment.next_offset - 1 - group[0].base_offset > RELATIVE_OFFSET_MAX
        ):
            yield group
            group, size = [], 0
        group.append(segment)
        size += segment.size_bytes
    if group:
        yield group


def _clean_group(
    log: PartitionLog, group: list[Segment], pass_: _Pass, steps: _Steps
) -> Generator[None, None, Segment]:
    """The group's retained batches in a new, fsynced `.cleaned` segment."""
    cleaned = Segment.create(
        log.fs, log.directory, group[0].base_offset, gaps=True, suffix=CLEANED_SUFFIX
    )
    try:
        yield from _copy_retained(group, cleaned, pass_, steps)
    except (CodecError, _Aborted, GeneratorExit):
        cleaned.delete()
        raise
    cleaned.close()
    return cleaned


def _copy_retained(
    group: list[Segment], cleaned: Segment, pass_: _Pass, steps: _Steps
) -> Generator[None, None, None]:
    run: list[tuple[bytes, BatchHeader]] = []
    run_bytes = 0
    for segment in group:
        for header, batch in _batches(segment):
            kept_whole = (
                header.is_control
                or header.is_transactional
                or header.base_offset in pass_.producers_last_batches
                or header.base_offset >= pass_.map_end
            )
            kept = bytes(batch) if kept_whole else _retained(header, batch, pass_)
            if kept is not None:
                run.append((kept, header if kept_whole else parse_header(kept)))
                run_bytes += len(kept)
            if run_bytes >= READ_BYTES:
                cleaned.append_run(run)
                run, run_bytes = [], 0
            yield from steps.advance(header.size_bytes)
    if run:
        cleaned.append_run(run)


def _retained(header: BatchHeader, batch: memoryview, pass_: _Pass) -> bytes | None:
    """The batch with what it keeps: itself, a rewritten batch, or None (nothing kept)."""
    assert header.next_offset <= pass_.map_end, "batches past the map stay whole"
    keys = record_keys(batch)
    kept = []
    for i, (offset, key, tombstone) in enumerate(keys):
        if key is None:
            kept.append(i)
            continue
        superseded = pass_.offset_map.get(key, offset) > offset
        expired = tombstone and header.max_timestamp_ms < pass_.tombstone_horizon_ms
        if superseded:
            pass_.records_removed += 1
        elif expired:
            pass_.tombstones_removed += 1
        else:
            kept.append(i)
    if len(kept) == len(keys):
        return bytes(batch)
    if not kept:
        return None
    records = decode_records(batch)
    return encode_retained(header, [records[i] for i in kept])


def swap_in(fs: FileSystem, directory: str, old: list[Segment], cleaned: Segment) -> None:
    """Replace `old` by the fsynced `.cleaned` segment, crash-safe (module docstring)."""
    assert cleaned.suffix == CLEANED_SUFFIX, "only a cleaned segment is swapped in"
    assert cleaned.base_offset == old[0].base_offset, "the new segment starts where the old did"
    cleaned.rename_to(SWAP_SUFFIX)
    fs.fsync_dir(directory)
    for segment in old:
        segment.delete()
    cleaned.rename_to("")
    fs.fsync_dir(directory)


def _base_of(name: str) -> int | None:
    stem = name[:_BASE_OFFSET_DIGITS]
    if (
        len(stem) != _BASE_OFFSET_DIGITS
        or not stem.isdigit()
        or name[len(stem) : len(stem) + 1] != "."
    ):
        return None
    return int(stem)


def finish_interrupted_cleaning(fs: FileSystem, directory: str, gaps: bool) -> None:
    """Roll back or complete a swap a crash interrupted (module docstring, step 4)."""
    names = fs.list_dir(directory)
    swap_logs = sorted(
        base
        for name in names
        if name.endswith(".log" + SWAP_SUFFIX) and (base := _base_of(name)) is not None
    )
    changed = False
    for name in names:
        stray_swap = name.endswith(SWAP_SUFFIX) and _base_of(name) not in swap_logs
        if name.endswith(CLEANED_SUFFIX) or stray_swap:
            fs.remove(posixpath.join(directory, name))
            changed = True
    for base in swap_logs:
        swap = Segment(fs, directory, base, gaps=gaps, suffix=SWAP_SUFFIX)
        swap.recover()
        swap.flush()
        end = max(swap.next_offset, base + 1)
        for name in fs.list_dir(directory):
            replaced = _base_of(name)
            if (
                replaced is not None
                and base <= replaced < end
                and not name.endswith(SWAP_SUFFIX)
                and not is_set_aside(name)
            ):
                fs.remove(posixpath.join(directory, name))
        swap.rename_to("")
        changed = True
    if changed:
        fs.fsync_dir(directory)
