"""RaftStorage: what survives a crash, and how a torn or corrupt log is recovered."""

from __future__ import annotations

import contextlib
import random

import pytest
from raft_sim import CrashingFileSystem, PowerCut

from impl.controller.raft import Entry, HardState, Ready
from impl.controller.raft_storage import (
    ENTRY_HEADER,
    LOG_FILE,
    STATE_FILE,
    RaftStorage,
    RaftStorageError,
    encode_entry,
)
from impl.runtime.fs import MemoryFileSystem, RealFileSystem

DIR = "/var/replog/raft"
LOG = f"{DIR}/{LOG_FILE}"


def entries(first: int, count: int, term: int = 1) -> tuple[Entry, ...]:
    return tuple(Entry(i, term, b"record-%d" % i) for i in range(first, first + count))


def ready(new: tuple[Entry, ...], hard: HardState | None) -> Ready:
    return Ready((), new, hard, ())


def reopen_after_crash(fs: MemoryFileSystem, seed: int = 0) -> RaftStorage:
    fs.crash(tear_last_write=True, rng=random.Random(seed))
    return RaftStorage.open(fs, DIR)


def test_a_fresh_disk_starts_empty_and_survives_a_crash_empty() -> None:
    fs = MemoryFileSystem()
    storage = RaftStorage.open(fs, DIR)
    assert storage.state.entries == () and storage.state.hard_state == HardState()
    assert reopen_after_crash(fs).state.entries == ()


def test_persisted_entries_and_hard_state_survive_a_power_loss() -> None:
    fs = MemoryFileSystem()
    storage = RaftStorage.open(fs, DIR)
    storage.persist(ready(entries(1, 3), HardState(2, 7, 1)))
    storage.persist(ready(entries(4, 2, term=2), HardState(2, 7, 4)))
    recovered = reopen_after_crash(fs)
    assert recovered.state.entries == entries(1, 3) + entries(4, 2, term=2)
    assert recovered.state.hard_state == HardState(2, 7, 4)
    assert recovered.recovery is None


def test_replacing_a_conflicting_suffix_is_durable() -> None:
    fs = MemoryFileSystem()
    storage = RaftStorage.open(fs, DIR)
    storage.persist(ready(entries(1, 4), HardState(1, 1, 1)))
    storage.persist(ready(entries(3, 1, term=2), HardState(2, 2, 1)))
    storage.persist(ready(entries(4, 1, term=2), None))
    assert reopen_after_crash(fs).state.entries == entries(1, 2) + entries(3, 2, term=2)


@pytest.mark.parametrize("kept_bytes", [1, ENTRY_HEADER.size - 1, ENTRY_HEADER.size, 20, -1])
def test_a_torn_last_entry_is_cut_on_open(kept_bytes: int) -> None:
    fs = MemoryFileSystem()
    RaftStorage.open(fs, DIR).persist(ready(entries(1, 2), None))
    frame = encode_entry(Entry(3, 1, b"torn-entry"))
    fs.append(LOG, frame[:kept_bytes])
    storage = RaftStorage.open(fs, DIR)
    assert storage.state.entries == entries(1, 2)
    assert storage.recovery is not None
    assert storage.recovery.bytes_dropped == len(frame[:kept_bytes])
    assert "torn" in storage.recovery.reason
    assert fs.size(LOG) == storage.recovery.position
    storage.persist(ready(entries(3, 1), None))
    assert reopen_after_crash(fs).state.entries == entries(1, 3)


def test_every_tear_of_an_unsynced_append_recovers_a_prefix() -> None:
    lengths = set()
    for seed in range(40):
        fs = MemoryFileSystem()
        RaftStorage.open(fs, DIR).persist(ready(entries(1, 2), HardState(1, 1, 2)))
        fs.append(LOG, b"".join(encode_entry(e) for e in entries(3, 3)))
        recovered = reopen_after_crash(fs, seed).state.entries
        assert recovered == entries(1, len(recovered)), f"seed {seed}: {recovered}"
        lengths.add(len(recovered))
    assert {2, 3, 4} <= lengths, "the tears should fall inside several entries"


def test_a_corrupt_entry_cuts_the_log_there() -> None:
    fs = MemoryFileSystem()
    RaftStorage.open(fs, DIR).persist(ready(entries(1, 3), HardState(1, 1, 1)))
    second = len(encode_entry(entries(1, 1)[0]))
    fs.corrupt(LOG, second + ENTRY_HEADER.size + 20, b"\xff")
    storage = RaftStorage.open(fs, DIR)
    assert storage.state.entries == entries(1, 1)
    assert storage.recovery is not None and storage.recovery.reason == "CRC-32C mismatch"


def test_losing_a_committed_entry_refuses_to_start() -> None:
    fs = MemoryFileSystem()
    RaftStorage.open(fs, DIR).persist(ready(entries(1, 3), HardState(1, 1, 3)))
    fs.corrupt(LOG, ENTRY_HEADER.size + 1, b"\xff")
    with pytest.raises(RaftStorageError, match="lost acknowledged entries"):
        RaftStorage.open(fs, DIR)


def test_a_corrupt_hard_state_refuses_to_start() -> None:
    fs = MemoryFileSystem()
    RaftStorage.open(fs, DIR).persist(ready((), HardState(3, 2, 0)))
    fs.corrupt(f"{DIR}/{STATE_FILE}", 3, b"\xff")
    with pytest.raises(RaftStorageError, match="CRC-32C"):
        RaftStorage.open(fs, DIR)


def test_an_absurd_entry_size_is_cut_not_allocated() -> None:
    fs = MemoryFileSystem()
    RaftStorage.open(fs, DIR).persist(ready(entries(1, 1), None))
    fs.append(LOG, ENTRY_HEADER.pack(0xFFFFFFFF, 0) + b"x" * 32)
    storage = RaftStorage.open(fs, DIR)
    assert storage.state.entries == entries(1, 1)
    assert storage.recovery is not None and "out of range" in storage.recovery.reason


def test_overwriting_a_committed_entry_is_refused() -> None:
    storage = RaftStorage.open(MemoryFileSystem(), DIR)
    storage.persist(ready(entries(1, 3), HardState(1, 1, 2)))
    with pytest.raises(AssertionError, match="committed"):
        storage.append(entries(2, 1, term=2))


def test_a_power_cut_at_any_point_of_a_persist_leaves_old_or_new() -> None:
    """Cut the power before each mutating call of a persist that truncates, appends and
    saves the hard state: the disk holds the old state, or the truncated log plus a prefix
    of the new entries, with the old or the new hard state; never anything else."""
    old_entries, old_hard = entries(1, 4), HardState(1, 1, 2)
    new_entries, new_hard = entries(3, 3, term=2), HardState(2, 3, 2)
    allowed = [old_entries] + [old_entries[:2] + new_entries[:k] for k in range(4)]
    for calls in range(12):
        fs = CrashingFileSystem()
        RaftStorage.open(fs, DIR).persist(ready(old_entries, old_hard))
        storage = RaftStorage.open(fs, DIR)
        fs.arm(calls)
        with contextlib.suppress(PowerCut):
            storage.persist(ready(new_entries, new_hard))
        fs.calls_left = None
        fs.inner.crash(tear_last_write=True, rng=random.Random(calls))
        state = RaftStorage.open(fs, DIR).state
        assert state.entries in allowed, f"cut before call {calls}: {state.entries}"
        assert state.hard_state in (old_hard, new_hard), f"cut before call {calls}"


def test_works_on_the_real_filesystem(tmp_path: object) -> None:
    fs = RealFileSystem()
    directory = f"{tmp_path}/raft"
    RaftStorage.open(fs, directory).persist(ready(entries(1, 2), HardState(1, 1, 2)))
    fs.close()
    state = RaftStorage.open(RealFileSystem(), directory).state
    assert state.entries == entries(1, 2) and state.hard_state == HardState(1, 1, 2)
