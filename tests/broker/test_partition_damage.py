"""A partition whose log has a damaged batch that opening it did not rescan (below the
recovery point, or damaged since): it still opens, keeps its producers' state, and
answers reads of the damage with CORRUPT_MESSAGE and one WARN."""

from __future__ import annotations

import logging
import struct
from types import SimpleNamespace
from typing import Any, cast

import pytest

from impl.broker.apis import _list_offset
from impl.broker.group_coordinator import OFFSETS_TOPIC, GroupCoordinator, OffsetToCommit
from impl.broker.partition import Partition
from impl.broker.producer_state import Duplicate
from impl.runtime.fs import MemoryFileSystem
from impl.storage.batch import HEADER_SIZE_BYTES, Record, encode_batch, iter_batches
from impl.storage.log import PartitionLog
from model.config import Config
from model.errors import Errors

DIR = "/data/t-0"
PRODUCER_ID = 7
BATCHES = 10


def _log_with_damage(batch_length: int | None = None) -> tuple[MemoryFileSystem, PartitionLog]:
    """BATCHES idempotent batches; the fourth gets a flipped value byte, or with
    `batch_length` that length field (both outside what opening the log rescans)."""
    fs = MemoryFileSystem()
    log = PartitionLog.open(fs, DIR, Config())
    for sequence in range(BATCHES):
        log.append_batch_as_leader(
            encode_batch(
                [Record(b"value-%d" % sequence, timestamp_ms=10 * sequence)],
                producer_id=PRODUCER_ID,
                producer_epoch=0,
                base_sequence=sequence,
            ),
            leader_epoch=0,
        )
    log.close()
    path = f"{DIR}/{0:020d}.log"
    position = [p for p, _ in iter_batches(fs.read(path, 0, fs.size(path)))][3]
    if batch_length is None:
        fs.corrupt(path, position + HEADER_SIZE_BYTES + 2, b"\xff")
    else:
        fs.corrupt(path, position + 8, struct.pack(">i", batch_length))
    return fs, log


def test_a_damaged_record_neither_stops_the_partition_nor_loses_producer_state(caplog):
    _, log = _log_with_damage()
    caplog.set_level(logging.WARNING, logger="replog.broker")
    partition = Partition("t", 0, log, 0, (0,))
    # A retry of the last batch is still known as a duplicate.
    last = BATCHES - 1
    assert partition.producers.check(PRODUCER_ID, 0, last, last) == Duplicate(last, last)
    assert partition.read(0, 1 << 20, BATCHES).records
    for _ in range(3):
        assert partition.read(3, 1 << 20, BATCHES) == Errors.CORRUPT_MESSAGE
    [warning] = [r.getMessage() for r in caplog.records if r.name == "replog.broker"]
    assert warning.startswith(
        f"partition t-0: a read from offset 3 answers CORRUPT_MESSAGE: corrupt record batch in "
        f"{DIR}/{0:020d}.log at position"
    )
    assert "CRC-32C is" in warning


@pytest.mark.parametrize("batch_length", [-1, 1 << 30])
def test_a_damaged_length_ends_the_producer_state_replay_with_a_warning(caplog, batch_length):
    _, log = _log_with_damage(batch_length)
    caplog.set_level(logging.WARNING, logger="replog.broker")
    partition = Partition("t", 0, log, 0, (0,))
    [warning] = [r.getMessage() for r in caplog.records if r.name == "replog.broker"]
    assert warning.startswith(
        "partition t-0: producer state rebuilt only up to a damaged batch: corrupt record batch"
    )
    # The batches before the damage are known; the next sequence is what follows them.
    assert partition.producers.check(PRODUCER_ID, 0, 2, 2) == Duplicate(2, 2)
    assert partition.producers.check(PRODUCER_ID, 0, 3, 3) is None


def test_a_timestamp_lookup_that_meets_the_damage_answers_corrupt_message(caplog):
    _, log = _log_with_damage()
    partition = Partition("t", 0, log, 0, (0,))
    partition.become_leader(0, 0, (0,), frozenset({0}), now_ms=0)
    caplog.set_level(logging.WARNING, logger="replog.broker")

    def lookup(timestamp_ms: int) -> dict:
        entry = {"partition_index": 0, "timestamp": timestamp_ms, "current_leader_epoch": -1}
        return _list_offset(partition, entry, replica_id=-1)

    assert (lookup(20)["error_code"], lookup(20)["offset"]) == (Errors.NONE, 2)
    assert lookup(35)["error_code"] == Errors.CORRUPT_MESSAGE
    [warning] = [r.getMessage() for r in caplog.records if r.name == "replog.broker"]
    assert warning.startswith(
        "partition t-0: a lookup of timestamp 35 answers CORRUPT_MESSAGE: corrupt record batch"
    )


def test_a_damaged_offsets_batch_ends_the_group_load_with_a_warning(caplog):
    """Commits before the damage are served; the coordinator keeps working instead of
    failing every group request of the partition."""
    fs = MemoryFileSystem()
    offsets_dir = f"/data/{OFFSETS_TOPIC}-0"
    log = PartitionLog.open(fs, offsets_dir, Config())
    clock = SimpleNamespace(monotonic_ms=lambda: 1_000)
    coordinator = GroupCoordinator(cast(Any, SimpleNamespace(config=Config(), clock=clock)))
    for offset in range(BATCHES):
        commit = OffsetToCommit("orders", 0, offset, 0, "")
        record = coordinator._offset_record("g", commit, now_ms=10 * offset)
        log.append_batch_as_leader(encode_batch([record]), leader_epoch=0)
    # Damaged while open (as on a disk going bad), so no recovery at open cuts it.
    path = f"{offsets_dir}/{0:020d}.log"
    position = [p for p, _ in iter_batches(fs.read(path, 0, fs.size(path)))][3]
    fs.corrupt(path, position + HEADER_SIZE_BYTES + 2, b"\xff")
    caplog.set_level(logging.WARNING, logger="replog.broker")

    coordinator.load_partition(0, Partition(OFFSETS_TOPIC, 0, log, 0, (0,)))

    assert coordinator.offsets["g"][("orders", 0)].offset == 2
    assert 0 in coordinator.loaded
    [warning] = [r.getMessage() for r in caplog.records if r.name == "replog.broker"]
    assert warning.startswith(
        f"partition {OFFSETS_TOPIC}-0: loading the group offsets (later commits lost) "
        "answers CORRUPT_MESSAGE: corrupt record batch"
    )
