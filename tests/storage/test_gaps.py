"""A compacted log's offsets may skip, between batches and inside them: reads, the index,
recovery and truncation work on such a log, and every other log still refuses gaps."""

from __future__ import annotations

import random
import struct

import pytest

from impl.runtime.fs import MemoryFileSystem
from impl.storage.batch import (
    CorruptBatchError,
    Record,
    decode_records,
    encode_batch,
    encode_retained,
    iter_batches,
    parse_header,
)
from impl.storage.log import LogAppendError, PartitionLog
from model.config import Config

DIR = "/logs/c-0"
COMPACT = Config().with_values(cleanup_policy="compact", segment_bytes=20_000)


def _gappy_batches(rng: random.Random, count: int) -> list[bytes]:
    """Batches as a cleaned leader sends them: offsets jump between batches, and some
    batches lost records from their middle or end (recordCount < lastOffsetDelta + 1)."""
    batches = []
    offset = 0
    for i in range(count):
        offset += rng.choice([0, 0, 1, 7, 300])
        size = rng.randint(1, 6)
        records = [
            Record(b"v%d-%d" % (i, j) + b"x" * rng.randint(0, 900), key=b"k%d" % j, timestamp_ms=i)
            for j in range(size)
        ]
        full = encode_batch(records, base_offset=offset, partition_leader_epoch=i // 20)
        decoded = decode_records(full)
        kept = [pair for pair in decoded if rng.random() < 0.6] or [decoded[0]]
        batches.append(encode_retained(parse_header(full), kept) if len(kept) < size else full)
        offset += size
    return batches


def _follower_log(seed: int, count: int = 80) -> tuple[MemoryFileSystem, PartitionLog, list]:
    rng = random.Random(seed)
    fs = MemoryFileSystem()
    log = PartitionLog.open(fs, DIR, COMPACT)
    batches = _gappy_batches(rng, count)
    for batch in batches:
        log.append_as_follower(batch)
    log.flush()
    return fs, log, batches


def _pairs(log: PartitionLog) -> list[tuple[int, bytes | None]]:
    return [(o, r.value) for _, raw in log.batches() for o, r in decode_records(raw)]


def _expected_pairs(batches: list[bytes]) -> list[tuple[int, bytes | None]]:
    return [(o, r.value) for batch in batches for o, r in decode_records(batch)]


@pytest.mark.parametrize("seed", range(4))
def test_reads_at_every_offset_return_the_batch_holding_it_or_the_next(seed):
    _, log, batches = _follower_log(seed)
    headers = [parse_header(b) for b in batches]
    assert len(log.segment_base_offsets) > 2, "the log spans several segments"
    for offset in range(log.log_start_offset, log.log_end_offset):
        data = log.read(offset, 1).data
        want = next(h for h in headers if h.last_offset >= offset)
        got = parse_header(data)
        assert (got.base_offset, got.last_offset) == (want.base_offset, want.last_offset), (
            f"seed {seed} offset {offset}"
        )
    assert _pairs(log) == _expected_pairs(batches), f"seed {seed}"
    # One large read runs across the gaps to the end of the first segment.
    first_segment = [h for h in headers if h.base_offset < log.segment_base_offsets[1]]
    whole = log.read(log.log_start_offset, 1 << 20).data
    assert len(list(iter_batches(whole))) == len(first_segment), f"seed {seed}"


@pytest.mark.parametrize("seed", range(4))
def test_a_gappy_log_recovers_from_scratch_and_from_its_trusted_indexes(seed):
    fs, log, batches = _follower_log(seed)
    for recovery_point in (None, log.recovery_point):
        reopened = PartitionLog.open(fs, DIR, COMPACT, recovery_point=recovery_point)
        assert reopened.truncations == [], f"seed {seed}"
        assert reopened.log_end_offset == log.log_end_offset, f"seed {seed}"
        assert _pairs(reopened) == _expected_pairs(batches), f"seed {seed}"


@pytest.mark.parametrize("seed", range(4))
def test_truncation_into_a_gap_keeps_everything_below(seed):
    rng = random.Random(100 + seed)
    _, log, batches = _follower_log(seed)
    for _ in range(5):
        cut = rng.randrange(log.log_start_offset, log.log_end_offset + 1)
        log.truncate_to(cut)
        assert log.log_end_offset <= cut, f"seed {seed}"
        assert _pairs(log) == [p for p in _expected_pairs(batches) if p[0] < log.log_end_offset]


def test_an_offset_going_back_is_corruption_even_where_gaps_are_allowed():
    fs, _, batches = _follower_log(7, count=12)
    path = f"{DIR}/{0:020d}.log"
    positions = [p for p, _ in iter_batches(fs.read(path, 0, fs.size(path)))]
    victim = positions[5]
    earlier = parse_header(batches[3]).base_offset
    fs.corrupt(path, victim, struct.pack(">q", earlier))
    reopened = PartitionLog.open(fs, DIR, COMPACT, recovery_point=None)
    [truncation] = reopened.truncations
    assert truncation.position == victim
    assert f"baseOffset {earlier}, expected at least" in truncation.reason
    assert _pairs(reopened) == _expected_pairs(batches[:5])


def test_a_torn_tail_of_a_gappy_log_is_cut_at_the_last_whole_batch():
    fs, log, batches = _follower_log(8, count=30)
    active = log.segment_base_offsets[-1]
    path = f"{DIR}/{active:020d}.log"
    fs.truncate(path, fs.size(path) - 3)
    fs.fsync(path)
    reopened = PartitionLog.open(fs, DIR, COMPACT, recovery_point=active)
    assert len(reopened.truncations) == 1
    assert _pairs(reopened) == _expected_pairs(batches[:-1])


def test_a_log_that_is_not_compacted_refuses_a_jump():
    fs = MemoryFileSystem()
    log = PartitionLog.open(fs, DIR, Config())
    log.append_as_follower(encode_batch([Record(b"a")], base_offset=0))
    with pytest.raises(LogAppendError, match="only compacted logs have gaps"):
        log.append_as_follower(encode_batch([Record(b"b")], base_offset=5))
    assert log.log_end_offset == 1


def test_a_compacted_follower_takes_a_jump_and_its_leader_appends_contiguously():
    fs = MemoryFileSystem()
    log = PartitionLog.open(fs, DIR, COMPACT)
    log.append_as_follower(encode_batch([Record(b"a", key=b"k")], base_offset=0))
    log.append_as_follower(encode_batch([Record(b"b", key=b"k")], base_offset=40))
    assert log.log_end_offset == 41
    info = log.append_as_leader([Record(b"c", key=b"k")], leader_epoch=0)
    assert (info.first_offset, log.log_end_offset) == (41, 42)
    assert _pairs(log) == [(0, b"a"), (40, b"b"), (41, b"c")]


def test_a_jump_past_the_index_range_rolls_at_the_batch():
    fs = MemoryFileSystem()
    log = PartitionLog.open(fs, DIR, COMPACT)
    log.append_as_follower(encode_batch([Record(b"a", key=b"k")], base_offset=0))
    far = 2**31 + 10
    log.append_as_follower(encode_batch([Record(b"b", key=b"k")], base_offset=far))
    assert log.segment_base_offsets == [0, far]
    assert _pairs(PartitionLog.open(fs, DIR, COMPACT)) == [(0, b"a"), (far, b"b")]


def test_a_compacted_topic_refuses_records_without_a_key():
    log = PartitionLog.open(MemoryFileSystem(), DIR, COMPACT)
    with pytest.raises(LogAppendError, match="only records with a key"):
        log.append_as_leader([Record(b"no key")], leader_epoch=0)
    with pytest.raises(LogAppendError, match="only records with a key"):
        log.append_batch_as_leader(encode_batch([Record(b"v", key=b"k"), Record(b"x")]), 0)
    assert log.log_end_offset == 0


def test_damage_in_a_gappy_batch_is_refused_not_served():
    fs, log, batches = _follower_log(9, count=12)
    path = f"{DIR}/{0:020d}.log"
    second = parse_header(batches[0]).size_bytes
    fs.corrupt(path, second + 70, bytes([fs.read(path, second + 70, 1)[0] ^ 0x01]))
    with pytest.raises(CorruptBatchError, match="CRC-32C") as caught:
        log.read(parse_header(batches[1]).base_offset, 1 << 20)
    assert (caught.value.path, caught.value.position) == (path, second)
