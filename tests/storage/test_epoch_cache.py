"""LeaderEpochCache: Kafka's endOffsetFor and Kafka's checkpoint format."""

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


EPOCHS = [(1, 0), (3, 10), (6, 25)]


@pytest.mark.parametrize(
    ("entries", "requested", "expected"),
    [
        # Empty cache: nothing is known.
        ([], 0, (-1, -1)),
        ([], 3, (-1, -1)),
        # The latest epoch ends at the log end offset.
        (EPOCHS, 6, (6, 40)),
        ([(2, 5)], 2, (2, 40)),
        # Above the latest epoch: unknown.
        (EPOCHS, 7, (-1, -1)),
        # UNDEFINED_EPOCH is never looked up.
        (EPOCHS, -1, (-1, -1)),
        # A cached older epoch ends where the next one starts.
        (EPOCHS, 3, (3, 25)),
        (EPOCHS, 1, (1, 10)),
        # An uncached epoch between two cached ones: reported under the floor epoch.
        (EPOCHS, 4, (3, 25)),
        (EPOCHS, 5, (3, 25)),
        (EPOCHS, 2, (1, 10)),
        # Below every cached epoch: the requested epoch, ending where the first one starts.
        (EPOCHS, 0, (0, 0)),
        ([(2, 5), (4, 9)], 1, (1, 5)),
    ],
)
def test_end_offset_for_is_kafkas_end_offset_for(entries, requested, expected):
    _, cache = _cache(entries)
    assert cache.end_offset_for(requested, 40) == expected


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


@pytest.mark.parametrize("rows", [b"3 10\n1 20\n", b"1 20\n3 10\n", b"1 10\n1 20\n"])
def test_checkpoint_whose_epochs_or_offsets_do_not_increase_is_refused(rows):
    fs = MemoryFileSystem()
    fs.mkdir("/p")
    fs.append(PATH, b"0\n2\n" + rows)
    with pytest.raises(
        CheckpointError, match=r"leader-epoch-checkpoint: line 4 .* must both increase"
    ):
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
