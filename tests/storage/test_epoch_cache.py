"""LeaderEpochCache: KAFKA-RULES.md's endOffsetFor and Kafka's checkpoint format."""

from __future__ import annotations

import pytest

from impl.runtime.fs import MemoryFileSystem
from impl.storage.checkpoint import (
    CheckpointError,
    read_offset_checkpoint,
    write_offset_checkpoint,
)
from impl.storage.epoch_cache import LeaderEpochCache

PATH = "/p/leader-epoch-checkpoint"


def _cache(entries):
    fs = MemoryFileSystem()
    fs.mkdir("/p")
    cache = LeaderEpochCache(fs, PATH, [])
    for epoch, start in entries:
        cache.assign(epoch, start)
    return fs, cache


def test_end_offset_for_follows_the_rules():
    _, cache = _cache([(1, 0), (3, 10), (6, 25)])
    assert cache.end_offset_for(6, 40) == (6, 40)
    assert cache.end_offset_for(3, 40) == (3, 25)
    assert cache.end_offset_for(4, 40) == (3, 25)
    assert cache.end_offset_for(5, 40) == (3, 25)
    assert cache.end_offset_for(1, 40) == (1, 10)
    assert cache.end_offset_for(2, 40) == (1, 10)
    assert cache.end_offset_for(0, 40) == (-1, -1)
    assert cache.end_offset_for(7, 40) == (-1, -1)


def test_empty_cache_is_undefined():
    _, cache = _cache([])
    assert cache.end_offset_for(0, 5) == (-1, -1)
    assert cache.latest_epoch == -1


def test_checkpoint_is_kafkas_text_format_and_reloads():
    fs, _ = _cache([(1, 0), (3, 10)])
    assert fs.read(PATH, 0, 100) == b"0\n2\n1 0\n3 10\n"
    assert LeaderEpochCache.load(fs, PATH).entries == ((1, 0), (3, 10))


def test_assign_ignores_old_epochs_and_repeats():
    _, cache = _cache([(2, 5)])
    cache.assign(2, 9)
    cache.assign(1, 9)
    assert cache.entries == ((2, 5),)


def test_truncate_from_end_removes_epochs_at_or_after_the_new_end():
    fs, cache = _cache([(1, 0), (3, 10), (6, 25)])
    cache.truncate_from_end(25)
    assert cache.entries == ((1, 0), (3, 10))
    assert LeaderEpochCache.load(fs, PATH).entries == ((1, 0), (3, 10))


def test_truncate_from_start_moves_the_covering_epoch():
    _, cache = _cache([(1, 0), (3, 10), (6, 25)])
    cache.truncate_from_start(12)
    assert cache.entries == ((3, 12), (6, 25))
    cache.truncate_from_start(25)
    assert cache.entries == ((6, 25),)


def test_malformed_checkpoint_names_the_file():
    fs = MemoryFileSystem()
    fs.mkdir("/p")
    fs.append(PATH, b"0\n2\n1 0\n")
    with pytest.raises(CheckpointError, match="leader-epoch-checkpoint: line 2"):
        LeaderEpochCache.load(fs, PATH)


def test_recovery_point_checkpoint_round_trip():
    fs = MemoryFileSystem()
    fs.mkdir("/logs")
    fs.fsync_dir("/")
    offsets = {("orders", 0): 42, ("orders", 1): 7}
    write_offset_checkpoint(fs, "/logs/recovery-point-offset-checkpoint", offsets)
    raw = fs.read("/logs/recovery-point-offset-checkpoint", 0, 100)
    assert raw == b"0\n2\norders 0 42\norders 1 7\n"
    fs.crash()
    assert read_offset_checkpoint(fs, "/logs/recovery-point-offset-checkpoint") == offsets
