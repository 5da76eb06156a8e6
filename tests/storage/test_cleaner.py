"""The log cleaner: the newest record per key stays (at its offset), superseded records
and old tombstones go, passes are bounded, and a crash at any step of the swap leaves the
old segments or the new one."""

from __future__ import annotations

import random

import pytest

from impl.runtime.fs import MemoryFileSystem
from impl.storage.batch import (
    Codec,
    CorruptBatchError,
    Record,
    decode_records,
    encode_batch,
    record_keys,
)
from impl.storage.cleaner import STEP_BYTES, clean_pass, clean_steps, dirty_ratio
from impl.storage.log import PartitionLog
from model.config import Config

DIR = "/logs/c-0"
NOW_MS = 10_000_000
COMPACT = Config().with_values(
    cleanup_policy="compact", segment_bytes=3_000, delete_retention_ms=1_000
)


def _fill(
    log: PartitionLog, rng: random.Random, batches: int, keys: int = 12, at_ms: int = NOW_MS
) -> None:
    for i in range(batches):
        records = [
            Record(
                None if rng.random() < 0.1 else b"v%d-%d" % (i, j) + b"x" * rng.randint(0, 60),
                key=b"key-%d" % rng.randrange(keys),
                timestamp_ms=at_ms + i,
            )
            for j in range(rng.randint(1, 4))
        ]
        log.append_as_leader(records, leader_epoch=0)


def _pairs(log: PartitionLog) -> list[tuple[int, bytes | None, bytes | None]]:
    return [(o, r.key, r.value) for _, raw in log.batches() for o, r in decode_records(raw)]


def _latest(pairs: list[tuple[int, bytes | None, bytes | None]]) -> dict[bytes, tuple]:
    """Key -> (offset, value) of its newest record, tombstones included."""
    return {key: (offset, value) for offset, key, value in pairs if key is not None}


def _clean_fully(log: PartitionLog, now_ms: int = NOW_MS) -> int:
    passes = 0
    while clean_pass(log, now_ms, log.log_end_offset) is not None:
        passes += 1
        assert passes < 100, "cleaning must finish"
    return passes


def _open(fs: MemoryFileSystem, config: Config = COMPACT, **kwargs) -> PartitionLog:
    return PartitionLog.open(fs, DIR, config, **kwargs)


@pytest.mark.parametrize("seed", range(6))
def test_cleaning_keeps_exactly_the_newest_record_of_each_key(seed):
    rng = random.Random(seed)
    fs = MemoryFileSystem()
    log = _open(fs)
    _fill(log, rng, 150)
    before = _pairs(log)
    size_before = log.size_bytes
    active_before = [p for p in before if p[0] >= log.segment_base_offsets[-1]]
    ends = (log.log_start_offset, log.log_end_offset)
    assert _clean_fully(log) >= 1
    after = _pairs(log)
    assert (log.log_start_offset, log.log_end_offset) == ends, f"seed {seed}"
    assert _latest(after) == _latest(before), f"seed {seed}: the newest of each key stays"
    assert set(after) <= set(before), f"seed {seed}: records keep their offsets"
    active = log.segment_base_offsets[-1]
    cleaned = [p for p in after if p[0] < active]
    # Newer records in the active segment are not mapped (it is never cleaned).
    newest = {offset for offset, _ in _latest([p for p in before if p[0] < active]).values()}
    assert {offset for offset, _, _ in cleaned} == newest, f"seed {seed}: no stale record"
    assert [p for p in after if p[0] >= active] == active_before, "the active segment stays"
    assert log.size_bytes < size_before / 2, f"seed {seed}: {log.size_bytes} of {size_before}"
    for recovery_point in (None, log.recovery_point):
        reopened = _open(fs, recovery_point=recovery_point)
        assert _pairs(reopened) == after, f"seed {seed}"
        assert reopened.truncations == [], f"seed {seed}"


def test_tombstones_go_after_delete_retention_ms_and_not_before():
    fs = MemoryFileSystem()
    log = _open(fs)
    for i in range(40):
        log.append_as_leader([Record(b"value-%d" % i + b"x" * 200, key=b"k%d" % (i % 4))], 0)
    for k in range(4):
        log.append_as_leader([Record(None, key=b"k%d" % k, timestamp_ms=NOW_MS)], leader_epoch=0)
    log.roll()
    log.append_as_leader([Record(b"live", key=b"other", timestamp_ms=NOW_MS)], leader_epoch=0)
    _clean_fully(log, now_ms=NOW_MS + 500)
    assert [(k, v) for _, k, v in _pairs(log)] == [(b"k%d" % k, None) for k in range(4)] + [
        (b"other", b"live")
    ], "young tombstones stay, the values they delete go"
    log.first_dirty_offset = log.log_start_offset
    clean_pass(log, NOW_MS + 1_001, log.log_end_offset)
    assert [(k, v) for _, k, v in _pairs(log)] == [(b"other", b"live")]


def test_nothing_at_or_above_the_high_watermark_is_cleaned():
    fs = MemoryFileSystem()
    log = _open(fs)
    _fill(log, random.Random(3), 100)
    bases = log.segment_base_offsets
    hw = bases[3]
    before = _pairs(log)
    while clean_pass(log, NOW_MS, hw) is not None:
        pass
    after = _pairs(log)
    assert [p for p in after if p[0] >= hw] == [p for p in before if p[0] >= hw]
    assert len(after) < len(before)
    assert dirty_ratio(log, hw) == 0.0


def test_a_pass_maps_at_most_its_byte_bound_and_the_next_pass_goes_on():
    fs = MemoryFileSystem()
    config = COMPACT.with_values(cleaner_pass_bytes_max=7_000)
    log = _open(fs, config)
    _fill(log, random.Random(4), 200)
    latest = _latest(_pairs(log))
    results = []
    while (result := clean_pass(log, NOW_MS, log.log_end_offset)) is not None:
        results.append(result)
    assert len(results) > 3
    assert all(r.mapped_bytes <= 7_000 for r in results)
    dirty_offsets = [r.first_dirty_offset for r in results]
    assert dirty_offsets == sorted(set(dirty_offsets)), "each pass moves the dirty offset up"
    assert _latest(_pairs(log)) == latest


def _live(pairs: list[tuple[int, bytes | None, bytes | None]]) -> dict[bytes, bytes | None]:
    """What a reader replaying the log ends up with: key -> value, deleted keys absent."""
    return {k: v for k, (_, v) in _latest(pairs).items() if v is not None}


@pytest.mark.parametrize("seed", range(4))
def test_a_pass_may_end_inside_a_segment_and_never_resurrects_a_deleted_key(seed):
    """Tombstones expire in this test: a pass whose map ends mid-segment must keep a
    tombstone past its map's end, or the older record the map kept would come back."""
    rng = random.Random(50 + seed)
    fs = MemoryFileSystem()
    config = COMPACT.with_values(segment_bytes=40_000, cleaner_pass_bytes_max=1_500)
    log = _open(fs, config)
    _fill(log, rng, 300, keys=8, at_ms=0)
    live = _live(_pairs(log))
    later_ms = NOW_MS + 10**9
    map_ends = []
    while (result := clean_pass(log, later_ms, log.log_end_offset)) is not None:
        assert result.mapped_bytes <= 1_500, result
        assert _live(_pairs(log)) == live, f"seed {seed}: after the pass to {map_ends}"
        map_ends.append(result.first_dirty_offset)
    assert not set(map_ends) <= set(log.segment_base_offsets), "some map ended mid-segment"
    reopened = _open(fs, config, recovery_point=None)
    assert _live(_pairs(reopened)) == live


def test_a_tombstone_past_the_maps_end_stays_while_the_record_it_deletes_does():
    fs = MemoryFileSystem()
    first = encode_batch([Record(b"deleted later", key=b"k", timestamp_ms=0)])
    config = COMPACT.with_values(segment_bytes=40_000, cleaner_pass_bytes_max=len(first))
    log = _open(fs, config)
    log.append_batch_as_leader(first, 0)
    for i in range(5):
        log.append_as_leader([Record(b"%d" % i, key=b"other-%d" % i, timestamp_ms=0)], 0)
    log.append_as_leader([Record(None, key=b"k", timestamp_ms=0)], leader_epoch=0)
    log.roll()
    log.append_as_leader([Record(b"active", key=b"a", timestamp_ms=0)], leader_epoch=0)
    live = _live(_pairs(log))
    assert b"k" not in live
    first_pass = clean_pass(log, NOW_MS, log.log_end_offset)
    assert first_pass is not None and first_pass.first_dirty_offset == 1, "the map ends at 1"
    assert (6, b"k", None) in _pairs(log), "the tombstone past the map's end stays"
    assert _live(_pairs(log)) == live
    _clean_fully(log)
    assert _live(_pairs(log)) == live
    assert b"k" not in {k for _, k, _ in _pairs(log)}, "record and tombstone went together"


def test_each_producers_last_batch_is_kept_whole():
    fs = MemoryFileSystem()
    log = _open(fs)
    for i in range(30):
        batch = encode_batch(
            [Record(b"p-%d" % i + b"x" * 300, key=b"k")],
            producer_id=7,
            producer_epoch=0,
            base_sequence=i,
        )
        log.append_batch_as_leader(batch, 0)
    log.roll()
    log.append_as_leader([Record(b"newest", key=b"k")], leader_epoch=0)
    _clean_fully(log)
    assert [v for _, _, v in _pairs(log)] == [b"p-29" + b"x" * 300, b"newest"]


def test_the_dirty_ratio_decides_and_truncation_makes_records_dirty_again():
    fs = MemoryFileSystem()
    log = _open(fs)
    _fill(log, random.Random(5), 120)
    assert dirty_ratio(log, log.log_end_offset) == 1.0
    _clean_fully(log)
    assert dirty_ratio(log, log.log_end_offset) == 0.0
    bases = log.segment_base_offsets
    log.truncate_to(bases[1] + 1)
    assert log.first_dirty_offset <= bases[1]


def test_a_follower_copies_a_cleaned_leader_across_its_gaps():
    fs = MemoryFileSystem()
    leader = _open(fs)
    _fill(leader, random.Random(6), 150)
    _clean_fully(leader)
    follower = PartitionLog.open(MemoryFileSystem(), "/logs/f-0", COMPACT)
    while follower.log_end_offset < leader.log_end_offset:
        read = leader.read(follower.log_end_offset, 2_000)
        follower.append_as_follower(bytes(read.data))
    assert _pairs(follower) == _pairs(leader)


class _Crash(Exception):
    """The power goes out before this filesystem call."""


class _CrashingFileSystem(MemoryFileSystem):
    """Counts mutating calls; the `crash_at`-th raises _Crash before it happens."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.crash_at: int | None = None
        self.renames: list[tuple[int, str]] = []

    def _step(self) -> None:
        self.calls += 1
        if self.crash_at is not None and self.calls == self.crash_at:
            raise _Crash

    def append(self, path: str, data: bytes) -> None:
        self._step()
        super().append(path, data)

    def truncate(self, path: str, size: int) -> None:
        self._step()
        super().truncate(path, size)

    def fsync(self, path: str) -> None:
        self._step()
        super().fsync(path)

    def fsync_dir(self, path: str) -> None:
        self._step()
        super().fsync_dir(path)

    def rename(self, source: str, target: str) -> None:
        self._step()
        self.renames.append((self.calls, target))
        super().rename(source, target)

    def remove(self, path: str) -> None:
        self._step()
        super().remove(path)


def _crash_case(crash_at: int | None, tear: bool) -> tuple[list, list, list, int]:
    """(records before, after a full clean, after the crash and reopen, calls made)."""
    fs = _CrashingFileSystem()
    log = _open(fs)
    _fill(log, random.Random(11), 80)
    log.flush()
    before = _pairs(log)
    fs.calls = 0
    fs.crash_at = crash_at
    try:
        _clean_fully(log)
    except _Crash:
        fs.crash_at = None
        fs.crash(tear_last_write=tear, rng=random.Random(crash_at))
    calls = fs.calls
    fs.crash_at = None
    cleaned = _pairs(log) if crash_at is None else []
    reopened = _open(fs, recovery_point=log.recovery_point)
    return before, cleaned, _pairs(reopened), calls


def test_a_crash_at_any_step_of_cleaning_keeps_every_newest_record():
    before, cleaned, _, total_calls = _crash_case(None, tear=False)
    assert total_calls > 20
    latest = _latest(before)
    for crash_at in range(1, total_calls + 1):
        tear = crash_at % 2 == 0
        _, _, recovered, _ = _crash_case(crash_at, tear)
        where = f"crash before call {crash_at} of {total_calls} (torn: {tear})"
        assert _latest(recovered) == latest, where
        assert set(cleaned) <= set(recovered) <= set(before), where
        offsets = [o for o, _, _ in recovered]
        assert offsets == sorted(set(offsets)), where


@pytest.mark.parametrize("last_done", [".index.swap", ".timeindex.swap"])
def test_files_of_a_swap_that_never_committed_are_removed(last_done):
    """A disk may keep names the directory was not fsynced for: `.cleaned` files and
    `.swap` indexes without their `.swap` log are an unfinished pass, and go."""
    fs = _CrashingFileSystem()
    log = _open(fs)
    _fill(log, random.Random(12), 60)
    log.flush()
    before = _pairs(log)
    probe = _CrashingFileSystem()
    probe_log = _open(probe)
    _fill(probe_log, random.Random(12), 60)
    probe_log.flush()
    probe.calls = 0
    _clean_fully(probe_log)
    step = next(call for call, target in probe.renames if target.endswith(last_done))
    fs.calls = 0
    fs.crash_at = step + 1
    with pytest.raises(_Crash):
        _clean_fully(log)
    fs.crash_at = None
    fs.fsync_dir(DIR)
    fs.crash()
    leftovers = [n for n in fs.list_dir(DIR) if n.endswith((".cleaned", ".swap"))]
    assert leftovers, "the unfinished pass left files behind"
    reopened = _open(fs, recovery_point=log.recovery_point)
    assert not [n for n in fs.list_dir(DIR) if n.endswith((".cleaned", ".swap"))]
    assert _pairs(reopened) == before


def test_a_damaged_batch_stops_the_pass_and_leaves_the_segments_as_they_were():
    fs = MemoryFileSystem()
    log = _open(fs)
    _fill(log, random.Random(13), 80)
    log.flush()
    victim = log.segment_base_offsets[1]
    path = f"{DIR}/{victim:020d}.log"
    fs.corrupt(path, 70, bytes([fs.read(path, 70, 1)[0] ^ 0x04]))
    files = fs.list_dir(DIR)
    with pytest.raises(CorruptBatchError, match="CRC-32C") as caught:
        clean_pass(log, NOW_MS, log.log_end_offset)
    assert caught.value.path == path
    assert fs.list_dir(DIR) == files, "no .cleaned file stays behind"
    assert log.first_dirty_offset == log.log_start_offset


@pytest.mark.parametrize("codec", list(Codec))
def test_the_cleaners_key_view_agrees_with_the_full_decode(codec):
    records = [
        Record(b"v", key=b"k1", headers=(("h", b"x"),)),
        Record(None, key=b"k2"),
        Record(b"no key"),
        Record(None, key=None, headers=(("a", None), ("b", b"yy"))),
    ]
    batch = encode_batch(records, base_offset=40, codec=codec)
    expected = [(o, r.key, r.value is None) for o, r in decode_records(batch)]
    assert record_keys(batch) == expected
    assert [o for o, _, _ in expected] == [40, 41, 42, 43]


@pytest.mark.parametrize("codec", [Codec.GZIP, Codec.SNAPPY, Codec.LZ4, Codec.ZSTD])
def test_cleaning_rewrites_batches_in_their_own_codec(codec):
    """As Kafka's cleaner: a batch it rewrites is compressed again with its codec."""
    log = _open(MemoryFileSystem(), COMPACT.with_values(compression_type=codec.name.lower()))
    _fill(log, random.Random(1), 80)
    before = _pairs(log)
    assert _clean_fully(log) >= 1
    assert _latest(_pairs(log)) == _latest(before)
    assert len(_pairs(log)) < len(before)
    assert {header.codec for header, _ in log.batches()} == {codec}


def _big_log(fs: MemoryFileSystem) -> PartitionLog:
    log = _open(fs, COMPACT.with_values(segment_bytes=200_000))
    _fill(log, random.Random(14), 8_000)
    log.roll()
    return log


def test_a_pass_yields_between_steps_and_ends_as_a_pass_at_once_does():
    at_once = _big_log(MemoryFileSystem())
    stepped = _big_log(MemoryFileSystem())
    assert at_once.size_bytes > 4 * STEP_BYTES
    expected = clean_pass(at_once, NOW_MS, at_once.log_end_offset)
    steps = clean_steps(stepped, NOW_MS, stepped.log_end_offset)
    yields = 0
    while True:
        try:
            next(steps)
        except StopIteration as done:
            assert done.value == expected
            break
        yields += 1
    assert yields >= 4
    assert _pairs(stepped) == _pairs(at_once)


def test_a_truncation_between_steps_aborts_the_pass_and_keeps_the_log_whole():
    fs = MemoryFileSystem()
    log = _big_log(fs)
    files = fs.list_dir(DIR)
    steps = clean_steps(log, NOW_MS, log.log_end_offset)
    for _ in range(100):
        next(steps)
        if any(n.endswith(".cleaned") for n in fs.list_dir(DIR)):
            break
    assert any(n.endswith(".cleaned") for n in fs.list_dir(DIR)), "suspended mid-copy"
    cut = log.segment_base_offsets[1] + 5
    log.truncate_to(cut)
    expected = _pairs(log)
    with pytest.raises(StopIteration) as done:
        next(steps)
    assert done.value.value is None, "the pass gave up"
    assert not [n for n in fs.list_dir(DIR) if n.endswith((".cleaned", ".swap"))]
    assert set(fs.list_dir(DIR)) <= set(files)
    assert _pairs(log) == expected
    assert clean_pass(log, NOW_MS, log.log_end_offset) is not None, "the next pass runs"
