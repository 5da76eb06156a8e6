"""Torn and corrupted bytes at random positions: recovery cuts, reads refuse, nothing bad
is ever served. Every case prints its seed in the assertion message."""

from __future__ import annotations

import random
import struct

import pytest

from impl.runtime.fs import MemoryFileSystem
from impl.storage.batch import CorruptBatchError, Record, decode_records, iter_batches
from impl.storage.index import OFFSET_ENTRY
from impl.storage.log import PartitionLog
from model.config import Config

DIR = "/logs/t-0"
CONFIG = Config().with_values(segment_bytes=4000)


def _filled_log(
    rng: random.Random, segments_min: int = 1
) -> tuple[MemoryFileSystem, PartitionLog, list[tuple]]:
    """A flushed log of 5 to 40 random batches, more if needed to fill segments_min."""
    fs = MemoryFileSystem()
    log = PartitionLog.open(fs, DIR, CONFIG)
    batch_count = rng.randint(5, 40)
    i = 0
    while i < batch_count or len(log.segment_base_offsets) < segments_min:
        records = [Record(rng.randbytes(rng.randint(0, 200)), timestamp_ms=i)] * rng.randint(1, 3)
        log.append_as_leader(records, leader_epoch=i // 10)
        i += 1
    log.flush()
    return fs, log, _contents(log)


def _position_not_in_an_epoch_field(fs: MemoryFileSystem, path: str, rng: random.Random) -> int:
    """A random byte, avoiding partitionLeaderEpoch: Kafka keeps it outside the CRC, so
    raising the last batch's epoch is undetectable by design (lowering one is caught)."""
    raw = fs.read(path, 0, fs.size(path))
    epoch_bytes = {p + 12 + i for p, _ in iter_batches(raw) for i in range(4)}
    return rng.choice([p for p in range(len(raw)) if p not in epoch_bytes])


def _contents(log: PartitionLog) -> list[tuple]:
    return [(o, r.value) for _, raw in log.batches() for o, r in decode_records(raw)]


@pytest.mark.parametrize("seed", range(60))
def test_damage_in_the_unflushed_tail_is_cut_at_the_first_bad_batch(seed):
    rng = random.Random(seed)
    fs, log, contents = _filled_log(rng)
    active = log.segment_base_offsets[-1]
    path = f"{DIR}/{active:020d}.log"
    position = _position_not_in_an_epoch_field(fs, path, rng)
    if rng.random() < 0.5:
        fs.truncate(path, position)
        fs.fsync(path)
    else:
        fs.corrupt(path, position, bytes([fs.read(path, position, 1)[0] ^ (1 << rng.randrange(8))]))
    # Recovery point at the active segment's base: its content counts as unflushed.
    reopened = PartitionLog.open(fs, DIR, CONFIG, recovery_point=active)
    recovered = _contents(reopened)
    assert recovered == contents[: len(recovered)], f"seed {seed}"
    assert len(reopened.truncations) == 1, f"seed {seed}"
    truncation = reopened.truncations[0]
    assert truncation.path == path and truncation.position <= position, f"seed {seed}"
    assert reopened.log_end_offset >= active, f"seed {seed}"


@pytest.mark.parametrize("seed", range(60))
def test_damage_in_a_trusted_segment_is_never_served(seed):
    rng = random.Random(seed)
    fs, log, contents = _filled_log(rng, segments_min=2)
    base = rng.choice(log.segment_base_offsets[:-1])
    path = f"{DIR}/{base:020d}.log"
    position = _position_not_in_an_epoch_field(fs, path, rng)
    fs.corrupt(path, position, bytes([fs.read(path, position, 1)[0] ^ 0x10]))
    reopened = PartitionLog.open(fs, DIR, CONFIG, recovery_point=log.recovery_point)
    served = []
    offset = reopened.log_start_offset
    while offset < reopened.log_end_offset:
        try:
            result = reopened.read(offset, rng.choice([1, 500, 1 << 20]))
        except CorruptBatchError as error:
            assert error.path == path, f"seed {seed}: {error}"
            assert error.position <= position, f"seed {seed}: {error}"
            assert str(error).startswith(f"corrupt record batch in {path} at position")
            reopened.truncate_to(error.offset)
            break
        served += (
            [(o, r.value) for o, r in decode_records(bytes(result.data))]
            if len(list(_split(result.data))) == 1
            else [(o, r.value) for raw in _split(result.data) for o, r in decode_records(raw)]
        )
        offset = result.next_offset
    assert served == contents[: len(served)], f"seed {seed}"
    assert _contents(reopened) == contents[: len(_contents(reopened))], f"seed {seed}"


def _split(data) -> list[bytes]:
    return [bytes(data[p : p + h.size_bytes]) for p, h in iter_batches(data)]


def test_corrupt_batch_error_names_file_position_and_offset():
    fs = MemoryFileSystem()
    log = PartitionLog.open(fs, DIR, CONFIG)
    for i in range(3):
        log.append_as_leader([Record(b"value-%d" % i)], leader_epoch=0)
    path = f"{DIR}/{0:020d}.log"
    second = len(log.read(0, 1).data)
    fs.corrupt(path, second + 70, b"\xff")
    with pytest.raises(CorruptBatchError) as caught:
        log.read(1, 1 << 20)
    assert (caught.value.path, caught.value.position, caught.value.offset) == (path, second, 1)
    assert "CRC-32C" in str(caught.value)
    assert bytes(log.read(0, 1 << 20).data) == bytes(log.read(0, 1).data)


def _set_base_offset(fs: MemoryFileSystem, path: str, position: int, base_offset: int) -> None:
    fs.corrupt(path, position, struct.pack(">q", base_offset))


def test_damaged_base_offset_is_refused_not_served_under_wrong_offsets():
    fs = MemoryFileSystem()
    log = PartitionLog.open(fs, DIR, CONFIG)
    for i in range(3):
        log.append_as_leader([Record(b"a%d" % i), Record(b"b%d" % i)], leader_epoch=0)
    path = f"{DIR}/{0:020d}.log"
    second = len(log.read(0, 1).data)
    # Offsets 2-3 now claim to be 1-2: the CRC still passes, it does not cover baseOffset.
    _set_base_offset(fs, path, second, 1)
    with pytest.raises(CorruptBatchError, match="baseOffset 1, expected 2") as caught:
        log.read(2, 1 << 20)
    assert (caught.value.path, caught.value.position, caught.value.offset) == (path, second, 2)
    log.truncate_to(caught.value.offset)
    assert _contents(log) == [(0, b"a0"), (1, b"b0")]


def test_batch_that_disagrees_with_its_index_entry_is_refused():
    fs = MemoryFileSystem()
    log = PartitionLog.open(fs, DIR, Config())
    for i in range(10):
        log.append_as_leader([Record(b"%d" % i + b"x" * 1000)], leader_epoch=0)
    path = f"{DIR}/{0:020d}.log"
    [(indexed, position)] = OFFSET_ENTRY.iter_unpack(fs.read(f"{DIR}/{0:020d}.index", 0, 8))
    _set_base_offset(fs, path, position, indexed + 1)
    with pytest.raises(CorruptBatchError, match=f"lastOffset {indexed + 1}, the index says"):
        log.read(indexed, 1 << 20)
    log.truncate_to(indexed)
    assert [o for o, _ in _contents(log)] == list(range(indexed))
