"""PartitionLog behaviour: appends, reads, index, roll, retention, truncation, reopen."""

from __future__ import annotations

import itertools
import struct

import crc32c
import pytest
from kafka.record.memory_records import MemoryRecords

from impl.runtime.fs import MemoryFileSystem, RealFileSystem
from impl.storage.batch import (
    Codec,
    CorruptBatchError,
    Record,
    UnsupportedCodecError,
    decode_records,
    encode_batch,
    iter_batches,
)
from impl.storage.index import OFFSET_ENTRY, TIME_ENTRY
from impl.storage.log import (
    LogAppendError,
    OffsetOutOfRangeError,
    PartitionLog,
    partition_dir_name,
)
from model.config import Config

DIR = "/logs/" + partition_dir_name("orders", 0)


def _records(start: int, count: int, size_bytes: int = 100, timestamp_ms: int = 0):
    return [
        Record(b"%08d" % (start + i) + b"x" * size_bytes, timestamp_ms=timestamp_ms)
        for i in range(count)
    ]


def _values(log: PartitionLog) -> list[bytes | None]:
    return [r.value for _, batch in log.batches() for _, r in decode_records(batch)]


def _open(fs=None, **config):
    fs = fs or MemoryFileSystem()
    return fs, PartitionLog.open(fs, DIR, Config().with_values(**config))


def test_leader_append_assigns_consecutive_offsets_and_reads_back():
    _, log = _open()
    assert log.append_as_leader(_records(0, 3), leader_epoch=0).first_offset == 0
    info = log.append_as_leader(_records(3, 2), leader_epoch=0, codec=Codec.LZ4)
    assert (info.first_offset, info.last_offset, log.log_end_offset) == (3, 4, 5)
    assert _values(log) == [r.value for r in _records(0, 5)]


def test_producer_batch_gets_offsets_and_epoch_without_reencoding():
    _, log = _open()
    log.append_as_leader(_records(0, 4), leader_epoch=1)
    producer_batch = encode_batch(_records(4, 3), base_offset=0, producer_id=7, base_sequence=0)
    info = log.append_batch_as_leader(producer_batch, leader_epoch=2)
    assert (info.first_offset, info.last_offset) == (4, 6)
    header, stored = log.batches(4)[0]
    assert (header.base_offset, header.partition_leader_epoch, header.producer_id) == (4, 2, 7)
    assert stored[12:16] == struct.pack(">i", 2) and stored[16:] == producer_batch[16:]
    assert log.leader_epoch_entries == ((1, 0), (2, 4))


def test_stale_leader_epoch_is_refused_and_nothing_written():
    _, log = _open()
    log.append_as_leader(_records(0, 1), leader_epoch=5)
    with pytest.raises(LogAppendError, match="older"):
        log.append_as_leader(_records(1, 1), leader_epoch=4)
    assert log.log_end_offset == 1


def test_follower_append_keeps_offsets_and_learns_epochs():
    _, leader = _open()
    leader.append_as_leader(_records(0, 2), leader_epoch=1)
    leader.append_as_leader(_records(2, 2), leader_epoch=3)
    fetched = bytes(leader.read(0, 1 << 20).data)
    _, follower = _open()
    info = follower.append_as_follower(fetched)
    assert (info.first_offset, info.last_offset) == (0, 3)
    assert follower.leader_epoch_entries == ((1, 0), (3, 2))
    assert _values(follower) == _values(leader)


def test_follower_append_is_all_or_nothing():
    _, follower = _open()
    good = encode_batch(_records(0, 2), base_offset=0, partition_leader_epoch=1)
    bad = bytearray(encode_batch(_records(2, 2), base_offset=2, partition_leader_epoch=1))
    bad[-1] ^= 0xFF
    with pytest.raises(CorruptBatchError):
        follower.append_as_follower(good + bytes(bad))
    assert follower.log_end_offset == 0
    follower.append_as_follower(good)
    with pytest.raises(LogAppendError, match="the log expects 2"):
        follower.append_as_follower(good)


@pytest.mark.parametrize("one_fetch", [True, False])
def test_follower_append_refuses_a_leader_epoch_that_goes_down(one_fetch):
    fs, follower = _open()
    newer = encode_batch(_records(0, 1), base_offset=0, partition_leader_epoch=5)
    older = encode_batch(_records(1, 1), base_offset=1, partition_leader_epoch=3)
    if not one_fetch:
        follower.append_as_follower(newer)
    with pytest.raises(LogAppendError, match="partitionLeaderEpoch 3, below the epoch 5"):
        follower.append_as_follower(newer + older if one_fetch else older)
    follower.flush()
    expected_end = 0 if one_fetch else 1
    assert follower.log_end_offset == expected_end
    # Recovery would cut a batch whose epoch went down: none was written to be cut.
    fs.crash()
    reopened = PartitionLog.open(fs, DIR, follower.config)
    assert (reopened.log_end_offset, reopened.truncations) == (expected_end, [])


def test_a_codec_id_no_kafka_defines_is_refused_on_append():
    _, log = _open()
    raw = bytearray(encode_batch(_records(0, 1)))
    raw[22] = 5
    struct.pack_into(">I", raw, 17, crc32c.crc32c(bytes(raw[21:])))
    with pytest.raises(UnsupportedCodecError, match="unsupported codec 5"):
        log.append_batch_as_leader(bytes(raw), leader_epoch=0)
    assert log.log_end_offset == 0


def test_every_codec_appends_and_survives_a_reopen():
    fs, log = _open()
    for i, codec in enumerate(Codec):
        batch = encode_batch(_records(3 * i, 3), codec=codec)
        log.append_batch_as_leader(batch, leader_epoch=0)
    log.flush()
    reopened = PartitionLog.open(fs, DIR, log.config)
    assert [header.codec for header, _ in reopened.batches()] == list(Codec)
    assert _values(reopened) == [r.value for r in _records(0, 3 * len(Codec))]


def test_read_from_any_offset_returns_the_batch_holding_it():
    _, log = _open()
    for start in range(0, 300, 3):
        log.append_as_leader(_records(start, 3, size_bytes=500), leader_epoch=0)
    for offset in range(0, 300, 7):
        result = log.read(offset, 1)
        [(_, header)] = list(iter_batches(result.data))
        assert header.base_offset <= offset <= header.last_offset
        assert result.next_offset == header.next_offset


def test_tail_reads_resume_where_they_ended_and_truncation_forgets_those_positions():
    _, log = _open()
    expected: list[bytes | None] = []
    offsets = {"a": 0, "b": 0}
    for start in range(0, 90, 3):
        records = _records(start, 3, size_bytes=50 + start)
        expected += [r.value for r in records]
        log.append_as_leader(records, leader_epoch=0)
        for reader in offsets:  # two tail readers, as a leader's two followers
            result = log.read(offsets[reader], 1 << 20)
            offsets[reader] = result.next_offset
    assert offsets == {"a": 90, "b": 90}
    log.truncate_to(45)
    # Different sizes: the remembered positions of offsets >= 45 now lie inside batches.
    for start in range(45, 60):
        log.append_as_leader(_records(start, 1, size_bytes=7), leader_epoch=1)
    [(_, header)] = list(iter_batches(log.read(48, 1).data))
    assert header.base_offset == 48
    assert _values(log) == expected[:45] + [r.value for r in _records(45, 15, size_bytes=7)]


def test_read_honours_max_bytes_but_returns_at_least_one_batch():
    _, log = _open()
    for start in range(0, 30, 3):
        log.append_as_leader(_records(start, 3), leader_epoch=0)
    one_batch = len(log.read(0, 1).data)
    assert len(log.read(0, one_batch * 3 + 5).data) == one_batch * 3
    assert log.read(30, 100).data == b""
    with pytest.raises(OffsetOutOfRangeError):
        log.read(31, 100)


def test_sparse_index_on_disk_is_kafkas_layout():
    fs, log = _open()
    for start in range(0, 200, 2):
        log.append_as_leader(
            _records(start, 2, size_bytes=1000, timestamp_ms=start), leader_epoch=0
        )
    index_path = DIR + "/00000000000000000000.index"
    raw = fs.read(index_path, 0, fs.size(index_path))
    entries = list(OFFSET_ENTRY.iter_unpack(raw))
    assert len(raw) % 8 == 0 and len(entries) > 10
    batches = {
        h.last_offset: p
        for p, h in iter_batches(fs.read(DIR + "/00000000000000000000.log", 0, 1 << 24))
    }
    for relative_offset, position in entries:
        assert batches[relative_offset] == position
    gaps = [b[1] - a[1] for a, b in itertools.pairwise(entries)]
    assert all(4096 < gap <= 4096 + 2 * 2100 for gap in gaps)
    time_raw = fs.read(DIR + "/00000000000000000000.timeindex", 0, 1 << 20)
    assert len(time_raw) % 12 == 0
    timestamps = [t for t, _ in TIME_ENTRY.iter_unpack(time_raw)]
    assert timestamps == sorted(set(timestamps))


def test_roll_by_segment_bytes_names_files_by_base_offset():
    fs, log = _open(segment_bytes=2000)
    for start in range(0, 40, 2):
        log.append_as_leader(_records(start, 2), leader_epoch=0)
    bases = log.segment_base_offsets
    assert len(bases) > 3 and bases[0] == 0
    names = fs.list_dir(DIR)
    for base in bases:
        assert f"{base:020d}.log" in names and f"{base:020d}.index" in names
    assert all(fs.size(f"{DIR}/{b:020d}.log") <= 2000 for b in bases)
    assert _values(log) == [r.value for r in _records(0, 40)]


def test_roll_by_segment_ms_uses_batch_timestamps():
    _, log = _open(segment_ms=1000)
    log.append_as_leader(_records(0, 1, timestamp_ms=0), leader_epoch=0)
    log.append_as_leader(_records(1, 1, timestamp_ms=1000), leader_epoch=0)
    assert log.segment_base_offsets == [0]
    log.append_as_leader(_records(2, 1, timestamp_ms=1001), leader_epoch=0)
    assert log.segment_base_offsets == [0, 2]


def test_retention_ms_deletes_only_closed_expired_segments():
    _, log = _open(segment_bytes=500, retention_ms=1000)
    for i in range(6):
        log.append_as_leader(_records(i, 1, size_bytes=300, timestamp_ms=i * 1000), leader_epoch=0)
    assert log.segment_base_offsets == [0, 1, 2, 3, 4, 5]
    assert log.apply_retention(now_ms=3500) == 3
    assert log.log_start_offset == 3
    assert log.apply_retention(now_ms=10**9) == 2
    assert log.segment_base_offsets == [5]
    with pytest.raises(OffsetOutOfRangeError):
        log.read(4, 100)


def test_retention_bytes_keeps_the_newest_segments():
    _, log = _open(segment_bytes=500, retention_bytes=900)
    for i in range(6):
        log.append_as_leader(_records(i, 1, size_bytes=300), leader_epoch=i)
    # Kafka keeps at least retention.bytes: a segment goes only if the rest still has it.
    segment_bytes = log.size_bytes // 6
    assert 300 < segment_bytes < 450
    assert log.apply_retention(now_ms=0) == 3
    assert log.segment_base_offsets == [3, 4, 5]
    assert log.leader_epoch_entries == ((3, 3), (4, 4), (5, 5))


def test_truncate_removes_whole_batches_and_epochs():
    _, log = _open(segment_bytes=1000)
    for start in range(0, 30, 3):
        log.append_as_leader(_records(start, 3), leader_epoch=start // 10)
    log.truncate_to(14)
    assert log.log_end_offset == 12
    assert log.leader_epoch_entries == ((0, 0),)
    assert log.end_offset_for(0) == (0, 12)
    assert _values(log) == [r.value for r in _records(0, 12)]
    log.append_as_leader(_records(100, 1), leader_epoch=5)
    assert log.log_end_offset == 13


def test_truncate_to_log_start_empties_the_log():
    _, log = _open()
    log.append_as_leader(_records(0, 3), leader_epoch=0)
    log.truncate_to(0)
    assert (log.log_start_offset, log.log_end_offset, log.leader_epoch_entries) == (0, 0, ())


def test_flush_messages_moves_the_recovery_point():
    _, log = _open(flush_messages=4)
    log.append_as_leader(_records(0, 3), leader_epoch=0)
    assert log.recovery_point == 0
    log.append_as_leader(_records(3, 1), leader_epoch=0)
    assert log.recovery_point == 4


def test_flush_ms_flushes_when_due():
    _, log = _open(flush_ms=100)
    log.append_as_leader(_records(0, 1), leader_epoch=0, now_ms=1000)
    log.append_as_leader(_records(1, 1), leader_epoch=0, now_ms=1050)
    assert log.recovery_point == 0
    log.append_as_leader(_records(2, 1), leader_epoch=0, now_ms=1100)
    assert log.recovery_point == 3


def test_reopen_after_clean_close_on_real_files(tmp_path):
    fs = RealFileSystem()
    path = str(tmp_path / "orders-0")
    log = PartitionLog.open(fs, path, Config().with_values(segment_bytes=3000))
    for start in range(0, 60, 3):
        log.append_as_leader(_records(start, 3), leader_epoch=start // 20)
    log.close()
    before = (_values(log), log.segment_base_offsets, log.leader_epoch_entries)
    reopened = PartitionLog.open(fs, path, log.config, recovery_point=log.recovery_point)
    after = (_values(reopened), reopened.segment_base_offsets, reopened.leader_epoch_entries)
    assert after == before and reopened.truncations == []
    fs.close()


def test_segment_below_the_recovery_point_is_trusted_not_rescanned():
    fs, log = _open(segment_bytes=20_000)
    for start in range(0, 120, 2):
        log.append_as_leader(_records(start, 2, size_bytes=1000), leader_epoch=0)
    log.close()
    assert len(log.segment_base_offsets) > 2
    index_path = DIR + "/00000000000000000000.index"
    original_index = fs.read(index_path, 0, 1 << 20)
    # A flipped value byte in the first batch, before the last index entry: a rescan would
    # fail its CRC and cut the log there; loading trusted reads only the segment's tail.
    log_path = DIR + "/00000000000000000000.log"
    fs.corrupt(log_path, 100, bytes([fs.read(log_path, 100, 1)[0] ^ 0xFF]))
    reopened = PartitionLog.open(fs, DIR, log.config, recovery_point=log.recovery_point)
    assert reopened.truncations == []
    assert reopened.segment_base_offsets == log.segment_base_offsets
    assert reopened.log_end_offset == 120
    assert fs.read(index_path, 0, 1 << 20) == original_index
    # Reads still check the CRC, so the damage is reported when the batch is served.
    with pytest.raises(CorruptBatchError, match="CRC-32C"):
        reopened.read(0, 1 << 20)
    # Without a recovery point the same files are rescanned and cut at that batch.
    rescanned = PartitionLog.open(fs, DIR, log.config, recovery_point=None)
    assert [t.position for t in rescanned.truncations] == [0]
    assert rescanned.log_end_offset == 0


def test_crash_loses_only_unflushed_batches():
    fs, log = _open()
    log.append_as_leader(_records(0, 5), leader_epoch=0)
    log.flush()
    log.append_as_leader(_records(5, 5), leader_epoch=0)
    fs.crash()
    reopened = PartitionLog.open(fs, DIR, log.config, recovery_point=5)
    assert reopened.log_end_offset == 5
    assert _values(reopened) == [r.value for r in _records(0, 5)]


def test_kafka_python_reads_a_whole_segment_file(tmp_path):
    fs = RealFileSystem()
    log = PartitionLog.open(fs, str(tmp_path / "t-0"), Config())
    for start in range(0, 30, 3):
        codec = Codec.LZ4 if start % 2 else Codec.NONE
        log.append_as_leader(_records(start, 3), leader_epoch=start // 10, codec=codec)
    log.close()
    fs.close()
    raw = (tmp_path / "t-0" / "00000000000000000000.log").read_bytes()
    records = MemoryRecords(raw)
    offsets = []
    while records.has_next():
        batch = records.next_batch()
        assert batch.validate_crc()
        offsets += [(r.offset, r.value) for r in batch]
    assert offsets == [(i, r.value) for i, r in enumerate(_records(0, 30))]
