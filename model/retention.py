"""Segments, retention and auto.offset.reset: the rules of KAFKA-RULES.md, one pure
function each, over a partition's `PartitionLog`.

A partition's segment layout is kept by offset, as its leader appended the records: the
replicas' logs in `model.state` stay whole (the replication invariants compare them),
and retention moves the partition's log start offset, below which nothing can be read.
"""

from __future__ import annotations

from model.config import Config
from model.errors import Errors
from model.state import PartitionLog

# A one-record v2 batch of a small integer: 61 bytes of batch header plus the record.
RECORD_BATCH_BYTES = 70

EMPTY_LOG = PartitionLog((), (0,), 0)


def segment_end(log: PartitionLog, index: int) -> int:
    """One past the last offset of segment `index` (the log end for the active one)."""
    segments = log.segments
    return segments[index + 1] if index + 1 < len(segments) else len(log.stamps)


def segment_size_bytes(log: PartitionLog, index: int) -> int:
    return sum(size for _, size in log.stamps[log.segments[index] : segment_end(log, index)])


def segment_max_timestamp_ms(log: PartitionLog, index: int) -> int:
    """The largest record timestamp in the segment (-1 when it is empty), as Kafka's
    time index keeps it."""
    stamps = log.stamps[log.segments[index] : segment_end(log, index)]
    return max((ts for ts, _ in stamps), default=-1)


def should_roll(log: PartitionLog, timestamp_ms: int, size_bytes: int, config: Config) -> bool:
    """LogSegment.shouldRoll at an append: a non-empty active segment rolls when the
    batch would take it past segment.bytes, or when the batch's timestamp is more than
    segment.ms after the active segment's first record's."""
    active = len(log.segments) - 1
    size = segment_size_bytes(log, active)
    if size == 0:
        return False
    first_timestamp_ms = log.stamps[log.segments[active]][0]
    return (
        size + size_bytes > config.segment_bytes
        or timestamp_ms - first_timestamp_ms > config.segment_ms
    )


def append(
    log: PartitionLog, offset: int, timestamp_ms: int, size_bytes: int, config: Config
) -> PartitionLog:
    """The leader appends a record at `offset`; records at or past it from an earlier
    leader are gone (it truncated them), and so are segments that started there."""
    if offset < len(log.stamps):
        log = truncate(log, offset)
    assert offset == len(log.stamps), "a leader appends at its log end"
    if should_roll(log, timestamp_ms, size_bytes, config):
        log = log._replace(segments=(*log.segments, offset))
    return log._replace(stamps=(*log.stamps, (timestamp_ms, size_bytes)))


def truncate(log: PartitionLog, end: int) -> PartitionLog:
    """Drop the records from `end` on; segments that started at or after it go too (the
    first segment stays, empty, so there is always an active segment)."""
    segments = tuple(base for base in log.segments if base < end) or (min(log.segments[0], end),)
    return log._replace(stamps=log.stamps[:end], segments=segments)


def retention_ms_breached(log: PartitionLog, index: int, now_ms: int, config: Config) -> bool:
    """retention.ms: the segment's newest record is older than retention.ms by the
    broker's clock (-1: never). A clock behind the producers' keeps data longer."""
    if config.retention_ms < 0:
        return False
    return now_ms - segment_max_timestamp_ms(log, index) > config.retention_ms


def deletable_segments(log: PartitionLog, high_watermark: int, now_ms: int, config: Config) -> int:
    """How many segments, oldest first, one retention pass deletes. As UnifiedLog's
    deleteOldSegments: first while the log exceeds retention.bytes by at least the
    oldest segment's size, then while the oldest segment breaches retention.ms. Only
    closed segments (never the active one) wholly below the high watermark."""
    closed = len(log.segments) - 1
    count = 0
    if config.retention_bytes >= 0:
        excess = sum(size for _, size in log.stamps[log.segments[0] :]) - config.retention_bytes
        while count < closed and segment_end(log, count) <= high_watermark:
            size = segment_size_bytes(log, count)
            if excess < size:
                break
            excess -= size
            count += 1
    while (
        count < closed
        and segment_end(log, count) <= high_watermark
        and retention_ms_breached(log, count, now_ms, config)
    ):
        count += 1
    return count


def run_retention(
    log: PartitionLog, high_watermark: int, now_ms: int, config: Config
) -> PartitionLog:
    """One retention pass: delete the deletable segments; the log start offset moves to
    the first remaining segment's base offset."""
    count = deletable_segments(log, high_watermark, now_ms, config)
    if count == 0:
        return log
    segments = log.segments[count:]
    return log._replace(segments=segments, log_start=segments[0])


def fetch_in_range(log_start: int, log_end: int, offset: int) -> bool:
    """A fetch below the log start or beyond the log end is OFFSET_OUT_OF_RANGE."""
    return log_start <= offset <= log_end


def reset_offset(policy: str, log_start: int, high_watermark: int) -> tuple[Errors, int]:
    """auto.offset.reset, on OFFSET_OUT_OF_RANGE or with no committed offset: earliest
    -> the log start, latest -> the HW (the head: whatever lies between is skipped),
    none -> the error reaches the application."""
    if policy == "earliest":
        return Errors.NONE, log_start
    if policy == "latest":
        return Errors.NONE, high_watermark
    if policy == "none":
        return Errors.OFFSET_OUT_OF_RANGE, -1
    raise ValueError(f"auto.offset.reset must be earliest, latest or none, got {policy!r}")
