"""Compaction at the partition level: the broker cleans only what is below the HW, picks
the dirtiest compacted log, refuses keyless records, and a follower copies a cleaned
leader across its gaps while the leader keeps assigning consecutive offsets."""

from __future__ import annotations

import trio

from impl.broker.logs import LogManager
from impl.broker.partition import Appended, Partition
from impl.runtime.fs import MemoryFileSystem
from impl.storage.batch import Record, decode_records, encode_batch, iter_batches
from model.config import Config
from model.errors import Errors

CONFIG = Config(min_insync_replicas=1)
COMPACT = {"cleanup.policy": "compact", "segment.bytes": "600"}
TOPIC_ID = bytes(range(1, 17))


def _keyed(round_: int, keys: int = 3) -> bytes:
    return encode_batch([Record(b"r%d-" % round_ + b"x" * 60, key=b"k%d" % k) for k in range(keys)])


def _manager(fs: MemoryFileSystem, broker_id: int = 0) -> LogManager:
    logs = LogManager(fs, f"/data-{broker_id}", CONFIG, broker_id)
    logs.open()
    return logs


def _pairs(partition: Partition) -> list[tuple[int, bytes | None, bytes | None]]:
    return [
        (o, r.key, r.value) for _, raw in partition.log.batches() for o, r in decode_records(raw)
    ]


def _leader(logs: LogManager, topic: str, overrides: dict[str, str]) -> Partition:
    assert logs.create_topic(topic, TOPIC_ID, 1, 1, overrides) == (Errors.NONE, None)
    leader = logs.partitions[(topic, 0)]
    leader.become_leader(0, 0, (0, 1), frozenset({0, 1}), now_ms=0)
    return leader


def test_only_what_followers_have_is_cleaned_and_the_dirtiest_log_goes_first():
    logs = _manager(MemoryFileSystem())
    table = _leader(logs, "table", COMPACT)
    plain = _leader(logs, "plain", {"segment.bytes": "600"})
    for round_ in range(20):
        assert isinstance(table.append_as_leader(_keyed(round_), now_ms=0), Appended)
        assert isinstance(plain.append_as_leader(_keyed(round_), now_ms=0), Appended)
    assert table.high_watermark == 0, "the follower has fetched nothing yet"
    assert trio.run(logs.clean_filthiest, 0) is None
    table.follower_leos[1] = table.log.log_end_offset
    table.advance_high_watermark()
    cleaned = trio.run(logs.clean_filthiest, 0)
    assert cleaned is not None and cleaned[0] is table
    assert cleaned[1].records_removed > 0
    assert len(plain.log.batches()) == 20, "a delete-policy topic is never cleaned"
    latest = {k: v for _, k, v in _pairs(table)}
    assert latest == {b"k%d" % k: b"r19-" + b"x" * 60 for k in range(3)}


def test_a_keyless_record_is_refused_with_invalid_record():
    logs = _manager(MemoryFileSystem())
    table = _leader(logs, "table", COMPACT)
    keyless = encode_batch([Record(b"v", key=b"k"), Record(b"no key")])
    assert table.append_as_leader(keyless, now_ms=0) == Errors.INVALID_RECORD
    assert table.log.log_end_offset == 0


def test_a_follower_copies_a_cleaned_leader_and_the_leader_stays_consecutive():
    fs = MemoryFileSystem()
    leader_logs = _manager(fs, 0)
    leader = _leader(leader_logs, "table", COMPACT)
    for round_ in range(20):
        leader.append_as_leader(_keyed(round_), now_ms=0)
    leader.follower_leos[1] = leader.log.log_end_offset
    leader.advance_high_watermark()
    while trio.run(leader_logs.clean_filthiest, 0) is not None:
        pass
    follower_logs = _manager(fs, 1)
    assert follower_logs.create_topic("table", TOPIC_ID, 1, 1, COMPACT)[0] == Errors.NONE
    follower = follower_logs.partitions[("table", 0)]
    follower.become_follower(0, 0, 0, (0, 1), frozenset({0, 1}))
    jumps = 0
    while follower.log.log_end_offset < leader.log.log_end_offset:
        offset, epoch = follower.fetch_position()
        fetched = leader.serve_follower_fetch(1, offset, epoch, 1_000, now_ms=0)
        first = next(iter_batches(fetched.records))[1]
        jumps += first.base_offset > offset
        follower.append_as_follower(fetched.records, fetched.high_watermark, now_ms=0)
    assert jumps > 0, "the follower took a jump"
    assert _pairs(follower) == _pairs(leader)
    appended = leader.append_as_leader(_keyed(20), now_ms=0)
    assert isinstance(appended, Appended)
    assert appended.first_offset == 60, "the leader assigns its LEO, as always"
