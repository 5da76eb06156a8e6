"""Torn and corrupted bytes at random positions: recovery cuts, reads refuse, nothing bad
is ever served. Every case prints its seed in the assertion message."""

from __future__ import annotations

import random

import pytest

from impl.runtime.fs import MemoryFileSystem
from impl.storage.batch import CorruptBatchError, Record, decode_records, iter_batches
from impl.storage.log import PartitionLog
from model.config import Config

DIR = "/logs/t-0"
CONFIG = Config().with_values(segment_bytes=4000)


def _filled_log(rng: random.Random) -> tuple[MemoryFileSystem, PartitionLog, list[tuple]]:
    fs = MemoryFileSystem()
    log = PartitionLog.open(fs, DIR, CONFIG)
    for i in range(rng.randint(5, 40)):
        records = [Record(rng.randbytes(rng.randint(0, 200)), timestamp_ms=i)] * rng.randint(1, 3)
        log.append_as_leader(records, leader_epoch=i // 10)
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
    size = fs.size(path)
    if size == 0:
        return
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
    fs, log, contents = _filled_log(rng)
    if len(log.segment_base_offsets) < 2:
        return
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
            # A damaged baseOffset is seen at the batch after it, as a missing offset.
            assert error.position <= position or "missing" in error.reason, f"seed {seed}"
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
