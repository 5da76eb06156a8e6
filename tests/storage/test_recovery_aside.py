"""Recovery on real files: every cut logs a WARN naming what was dropped and why, and the
dropped bytes are kept next to the segment (`.corrupt`), never deleted."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from impl.controller.raft import Entry
from impl.controller.raft_storage import LOG_FILE, RaftStorage, encode_entry
from impl.runtime.fs import MemoryFileSystem, RealFileSystem
from impl.storage.batch import Record, decode_records, iter_batches
from impl.storage.cleaner import finish_interrupted_cleaning
from impl.storage.log import PartitionLog
from model.config import Config

CONFIG = Config().with_values(segment_bytes=2_000)
RECORDS = 120


@pytest.fixture
def fs():
    real = RealFileSystem()
    yield real
    real.close()


def _filled(fs: RealFileSystem, directory: Path) -> PartitionLog:
    """RECORDS one-record batches of 100 bytes each over several segments, closed cleanly."""
    log = PartitionLog.open(fs, str(directory), CONFIG)
    for i in range(RECORDS):
        log.append_as_leader([Record(b"%04d" % i + b"v" * 96, timestamp_ms=i)], leader_epoch=0)
    log.close()
    assert len(log.segment_base_offsets) >= 4
    return log


def _values(log: PartitionLog) -> list[tuple[int, bytes]]:
    return [(o, r.value) for _, raw in log.batches() for o, r in decode_records(raw)]


def _segment(directory: Path, base: int) -> Path:
    return directory / f"{base:020d}.log"


def _batch_positions(path: Path) -> list[tuple[int, int]]:
    """(position, base offset) of each batch in a segment file."""
    return [(p, h.base_offset) for p, h in iter_batches(path.read_bytes())]


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "replog.broker.storage"
    ]


def _flip(path: Path, position: int) -> None:
    with path.open("r+b") as file:
        file.seek(position)
        byte = file.read(1)[0]
        file.seek(position)
        file.write(bytes([byte ^ 0x01]))


def test_a_flipped_byte_mid_log_is_logged_and_everything_cut_is_kept(fs, tmp_path, caplog):
    directory = tmp_path / "orders-0"
    log = _filled(fs, directory)
    before = _values(log)
    bases = log.segment_base_offsets
    victim_base, later_bases = bases[1], bases[2:]
    victim = _segment(directory, victim_base)
    (position, first_offset), _ = _batch_positions(victim)[2:4]
    original = victim.read_bytes()
    later_bytes = {b: _segment(directory, b).read_bytes() for b in later_bases}
    # A value byte of the third batch: only its CRC can tell.
    _flip(victim, position + 61 + 10)

    caplog.set_level(logging.WARNING, logger="replog.broker.storage")
    reopened = PartitionLog.open(fs, str(directory), CONFIG, recovery_point=None)

    cut_bytes = len(original) - position
    cut, later = _warnings(caplog)
    assert cut.startswith(
        f"partition orders-0: recovery cut {victim} at position {position}: "
        f"first dropped offset {first_offset}, {cut_bytes} bytes dropped "
        f"(moved to {victim.name}.{first_offset}.corrupt): CRC-32C is 0x"
    ), cut
    assert ", header says 0x" in cut
    assert later.startswith(
        f"partition orders-0: dropped {len(later_bases)} segment(s) from offset "
        f"{later_bases[0]} on, {sum(map(len, later_bytes.values()))} bytes (moved to "
        f"{later_bases[0]:020d}.log.{later_bases[0]}.corrupt, "
    ), later
    assert later.endswith(f".corrupt): they follow the cut in {victim}"), later
    # The cut bytes, exactly, sit next to the segment; the later segments whole.
    aside = directory / f"{victim.name}.{first_offset}.corrupt"
    damaged_tail = bytearray(original[position:])
    damaged_tail[61 + 10] ^= 0x01
    assert aside.read_bytes() == damaged_tail
    assert victim.read_bytes() == original[:position]
    for base, data in later_bytes.items():
        assert (directory / f"{base:020d}.log.{base}.corrupt").read_bytes() == data
        assert not _segment(directory, base).exists()
        assert not (directory / f"{base:020d}.index").exists()
    [truncation] = reopened.truncations
    assert (truncation.first_offset, truncation.bytes_dropped) == (first_offset, cut_bytes)
    assert len(truncation.later_aside) == len(later_bases)
    # Everything before the damaged batch is intact, nothing after it is served.
    assert reopened.log_end_offset == first_offset
    assert _values(reopened) == before[:first_offset]

    # Opening again is stable: no second cut, the set-aside files are not segments.
    files = sorted(os.listdir(directory))
    caplog.clear()
    again = PartitionLog.open(fs, str(directory), CONFIG, recovery_point=None)
    assert (again.truncations, _warnings(caplog)) == ([], [])
    assert sorted(os.listdir(directory)) == files
    assert _values(again) == before[:first_offset]

    # New appends reuse the dropped offsets and roll over the set-aside names; retention
    # then deletes old segments, and neither touches what was set aside.
    for i in range(RECORDS):
        again.append_as_leader([Record(b"new-%d" % i + b"n" * 90, timestamp_ms=i)], 1)
    again.close()
    assert again.apply_retention(now_ms=0) == 0
    again.config = CONFIG.with_values(retention_bytes=4_000)
    assert again.apply_retention(now_ms=0) > 0
    assert aside.read_bytes() == damaged_tail
    for base, data in later_bytes.items():
        assert (directory / f"{base:020d}.log.{base}.corrupt").read_bytes() == data


def test_a_torn_tail_is_logged_and_kept(fs, tmp_path, caplog):
    directory = tmp_path / "t-3"
    log = _filled(fs, directory)
    before = _values(log)
    active = _segment(directory, log.segment_base_offsets[-1])
    position, first_offset = _batch_positions(active)[-1]
    original = active.read_bytes()
    torn_size = position + 30  # a short write: the last batch's header is not whole
    os.truncate(active, torn_size)

    caplog.set_level(logging.WARNING, logger="replog.broker.storage")
    reopened = PartitionLog.open(fs, str(directory), CONFIG, recovery_point=log.recovery_point)

    [warning] = _warnings(caplog)
    assert warning == (
        f"partition t-3: recovery cut {active} at position {position}: first dropped "
        f"offset {first_offset}, 30 bytes dropped (moved to {active.name}.{first_offset}"
        ".corrupt): only 30 bytes left, a batch header needs 61"
    )
    aside = directory / f"{active.name}.{first_offset}.corrupt"
    assert aside.read_bytes() == original[position:torn_size]
    assert active.read_bytes() == original[:position]
    assert _values(reopened) == before[:first_offset]

    # The same offset cut again (say, another torn write after a restart) keeps both.
    reopened.append_as_leader([Record(b"again" * 20)], leader_epoch=0)
    reopened.close()
    os.truncate(active, active.stat().st_size - 1)
    caplog.clear()
    PartitionLog.open(fs, str(directory), CONFIG, recovery_point=reopened.recovery_point)
    [warning] = _warnings(caplog)
    assert "batch of " in warning and "bytes remain" in warning
    assert f"(moved to {active.name}.{first_offset}-1.corrupt)" in warning
    assert aside.read_bytes() == original[position:torn_size]


def test_a_trusted_segment_with_lost_indexes_is_cut_like_any_other(fs, tmp_path, caplog):
    """Below the recovery point a segment whose index is missing is rescanned; a cut
    there must drop (and set aside) the later segments, or the log would skip offsets."""
    directory = tmp_path / "t-0"
    log = _filled(fs, directory)
    before = _values(log)
    first = _segment(directory, 0)
    position, first_offset = _batch_positions(first)[1]
    _flip(first, position + 61 + 5)
    (directory / f"{0:020d}.index").unlink()

    caplog.set_level(logging.WARNING, logger="replog.broker.storage")
    reopened = PartitionLog.open(fs, str(directory), CONFIG, recovery_point=log.recovery_point)

    assert len(_warnings(caplog)) == 2
    assert reopened.segment_base_offsets == [0]
    assert reopened.log_end_offset == first_offset
    assert _values(reopened) == before[:first_offset]


def test_a_segment_that_does_not_follow_is_set_aside_with_all_after_it(fs, tmp_path, caplog):
    """A crash after a cut, before the segments after it were set aside (or a lost
    segment file): the log must not skip offsets."""
    directory = tmp_path / "t-1"
    log = _filled(fs, directory)
    before = _values(log)
    bases = log.segment_base_offsets
    second = _segment(directory, bases[1])
    position, first_offset = _batch_positions(second)[2]
    os.truncate(second, position)
    later_bytes = {b: _segment(directory, b).read_bytes() for b in bases[2:]}

    caplog.set_level(logging.WARNING, logger="replog.broker.storage")
    reopened = PartitionLog.open(fs, str(directory), CONFIG, recovery_point=bases[1])

    [warning] = _warnings(caplog)
    assert warning.endswith(
        f".corrupt): {bases[2]:020d}.log starts at offset {bases[2]}, the log before it ends "
        f"at {first_offset}"
    ), warning
    [truncation] = reopened.truncations
    assert (truncation.position, truncation.first_offset) == (0, bases[2])
    assert len(truncation.later_aside) == len(bases) - 3
    assert reopened.segment_base_offsets == bases[:2]
    assert _values(reopened) == before[:first_offset]
    for base, data in later_bytes.items():
        assert (directory / f"{base:020d}.log.{base}.corrupt").read_bytes() == data


def test_the_raft_log_sets_its_cut_tail_aside_and_says_so(fs, tmp_path, caplog):
    directory = tmp_path / "raft"
    storage = RaftStorage.open(fs, str(directory))
    storage.append(tuple(Entry(i, 1, b"entry-%d" % i) for i in range(1, 6)))
    path = directory / LOG_FILE
    whole = path.read_bytes()
    kept = len(whole) - len(encode_entry(Entry(5, 1, b"entry-5")))
    os.truncate(path, len(whole) - 3)

    caplog.set_level(logging.WARNING, logger="replog.broker.storage")
    reopened = RaftStorage.open(fs, str(directory))

    assert len(reopened.state.entries) == 4
    [warning] = [r.getMessage() for r in caplog.records if r.name == "replog.broker.storage"]
    assert warning == (
        f"{path}: cut at position {kept}: first dropped entry 5, {len(whole) - 3 - kept} "
        f"bytes dropped (moved to {LOG_FILE}.5.corrupt): torn entry body"
    )
    assert (directory / f"{LOG_FILE}.5.corrupt").read_bytes() == whole[kept:-3]


def test_finishing_an_interrupted_swap_leaves_set_aside_files_alone():
    fs = MemoryFileSystem()
    directory = "/logs/c-0"
    log = PartitionLog.open(fs, directory, CONFIG.with_values(cleanup_policy="compact"))
    for i in range(40):
        log.append_as_leader([Record(b"v" * 100, key=b"k%d" % (i % 5))], leader_epoch=0)
    log.close()
    first = f"{directory}/{0:020d}"
    aside = f"{first}.log.3.corrupt"
    fs.append(aside, b"kept for the operator")
    # A crash after the cleaned copy became `.swap`, before the old files went: recovery
    # completes the swap and removes the old segment's files, but only those.
    for suffix in (".log", ".index", ".timeindex"):
        fs.append(f"{first}{suffix}.swap", fs.read(first + suffix, 0, fs.size(first + suffix)))
    finish_interrupted_cleaning(fs, directory, gaps=True)
    assert not fs.exists(f"{first}.log.swap")
    assert fs.read(aside, 0, 100) == b"kept for the operator"
