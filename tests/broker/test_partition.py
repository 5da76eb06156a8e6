"""Partition and LogManager on the in-memory filesystem: appends, HW, idempotence,
offset lookups, and what survives a reopen or a crash."""

from __future__ import annotations

import pytest

from impl.broker.apis import _list_offset
from impl.broker.logs import DataDirError, LogManager
from impl.broker.partition import Appended, Partition
from impl.runtime.fs import MemoryFileSystem
from impl.storage.batch import Record, decode_records, encode_batch, iter_batches
from impl.storage.log import PartitionLog
from model.config import Config
from model.errors import Errors

CONFIG = Config(min_insync_replicas=1)
TOPIC_ID = bytes(range(1, 17))


def batch(values: list[bytes], producer_id: int = -1, sequence: int = -1, ts: int = 0) -> bytes:
    records = [Record(v, timestamp_ms=ts + i) for i, v in enumerate(values)]
    return encode_batch(
        records,
        producer_id=producer_id,
        producer_epoch=0 if producer_id >= 0 else -1,
        base_sequence=sequence,
    )


def partition(
    fs: MemoryFileSystem, replicas: tuple[int, ...] = (0,), config: Config = CONFIG
) -> Partition:
    log = PartitionLog.open(fs, "/data/t-0", config)
    p = Partition("t", 0, log, 0, replicas)
    p.become_leader(0, 0, replicas, frozenset(replicas), now_ms=0)
    return p


def values(data: bytes) -> list[bytes]:
    out = []
    for position, header in iter_batches(data):
        out += [r.value for _, r in decode_records(data[position : position + header.size_bytes])]
    return out


def test_single_replica_leader_commits_on_append():
    p = partition(MemoryFileSystem())
    result = p.append_as_leader(batch([b"a", b"b"]), now_ms=0)
    assert result == Appended(0, 1, 0)
    assert p.high_watermark == 2
    read = p.read(0, 1 << 20, p.high_watermark)
    assert values(read.records) == [b"a", b"b"]


def test_hw_waits_for_isr_followers_and_consumers_see_only_below_it():
    p = partition(MemoryFileSystem(), replicas=(0, 1))
    p.append_as_leader(batch([b"a"]), now_ms=0)
    assert p.high_watermark == 0
    assert p.read(0, 1 << 20, p.high_watermark).records == b""
    p.follower_leos[1] = 1
    assert p.advance_high_watermark()
    assert p.high_watermark == 1


def test_hw_guard_holds_hw_while_isr_below_min_insync():
    p = partition(MemoryFileSystem(), (0, 1), Config(min_insync_replicas=2))
    p.isr = frozenset({0})
    p.append_as_leader(batch([b"a"]), now_ms=0)
    assert p.high_watermark == 0, "replog.hw.min-isr-guard"
    assert p.check_min_isr(-1) == Errors.NOT_ENOUGH_REPLICAS
    assert p.check_min_isr(1) == Errors.NONE


def test_idempotent_retry_returns_original_offsets_without_appending():
    p = partition(MemoryFileSystem())
    first = p.append_as_leader(batch([b"a", b"b"], producer_id=9, sequence=0), now_ms=0)
    again = p.append_as_leader(batch([b"a", b"b"], producer_id=9, sequence=0), now_ms=0)
    assert again == Appended(0, 1, 0, duplicate=True)
    assert isinstance(first, Appended) and p.log.log_end_offset == 2
    gap = p.append_as_leader(batch([b"c"], producer_id=9, sequence=5), now_ms=0)
    assert gap == Errors.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert p.log.log_end_offset == 2


def test_producer_state_is_rebuilt_from_the_log_on_reopen():
    fs = MemoryFileSystem()
    p = partition(fs)
    p.append_as_leader(batch([b"a"], producer_id=9, sequence=0), now_ms=0)
    p.log.close()
    reopened = partition(fs)
    assert reopened.append_as_leader(batch([b"a"], producer_id=9, sequence=0), now_ms=0) == (
        Appended(0, 0, 0, duplicate=True)
    )


def test_corrupt_producer_batch_is_refused():
    p = partition(MemoryFileSystem())
    damaged = bytearray(batch([b"hello"]))
    damaged[-1] ^= 0xFF
    assert p.append_as_leader(bytes(damaged), now_ms=0) == Errors.CORRUPT_MESSAGE
    assert p.append_as_leader(b"\x00" * 10, now_ms=0) == Errors.CORRUPT_MESSAGE
    assert p.log.log_end_offset == 0


def test_offset_lookups_by_timestamp_and_position():
    p = partition(MemoryFileSystem())
    p.append_as_leader(batch([b"a", b"b"], ts=100), now_ms=0)
    p.append_as_leader(batch([b"c", b"d"], ts=200), now_ms=0)
    assert p.offset_for_timestamp(-2) == (0, -1)
    assert p.offset_for_timestamp(-1) == (4, -1)
    assert p.offset_for_timestamp(101) == (1, 101)
    assert p.offset_for_timestamp(150) == (2, 200)
    assert p.offset_for_timestamp(999) is None
    assert p.offset_for_timestamp(-3) == (3, 201)


def test_leader_epoch_fencing_codes():
    p = partition(MemoryFileSystem())
    p.leader_epoch = 3
    assert p.check_leader_epoch(-1) == Errors.NONE
    assert p.check_leader_epoch(3) == Errors.NONE
    assert p.check_leader_epoch(2) == Errors.FENCED_LEADER_EPOCH
    assert p.check_leader_epoch(4) == Errors.UNKNOWN_LEADER_EPOCH


def test_read_outside_the_log_is_out_of_range():
    p = partition(MemoryFileSystem())
    p.append_as_leader(batch([b"a"]), now_ms=0)
    assert p.read(2, 100, p.high_watermark) == Errors.OFFSET_OUT_OF_RANGE
    assert p.read(1, 100, p.high_watermark).records == b""


def manager(fs: MemoryFileSystem, broker_id: int = 0) -> LogManager:
    logs = LogManager(fs, "/data", CONFIG, broker_id)
    logs.open()
    return logs


def test_topics_and_data_survive_a_clean_restart():
    fs = MemoryFileSystem()
    logs = manager(fs)
    assert logs.create_topic("orders", TOPIC_ID, 3, 1, {"retention.ms": "1000"}) == (
        Errors.NONE,
        None,
    )
    leader = logs.partitions[("orders", 2)]
    assert leader.append_as_leader(batch([b"x"]), now_ms=0) == Errors.NOT_LEADER_OR_FOLLOWER
    leader.become_leader(0, 0, (0,), frozenset({0}), now_ms=0)
    assert leader.append_as_leader(batch([b"x"]), now_ms=0) == Appended(0, 0, 0)
    logs.close()
    again = manager(fs)
    assert again.topics["orders"].overrides == {"retention.ms": "1000"}
    assert again.topics["orders"].topic_id == TOPIC_ID
    assert again.partitions[("orders", 2)].log.config.retention_ms == 1000
    recovered = again.partitions[("orders", 2)]
    recovered.become_leader(0, 0, (0,), frozenset({0}), now_ms=0)
    assert recovered.high_watermark == 1


def test_created_topic_survives_a_power_loss():
    fs = MemoryFileSystem()
    logs = manager(fs)
    logs.create_topic("orders", TOPIC_ID, 2, 1, {})
    fs.crash()
    assert set(manager(fs).partitions) == {("orders", 0), ("orders", 1)}


@pytest.mark.parametrize(
    ("name", "partitions", "rf", "overrides", "error"),
    [
        ("bad name!", 1, 1, {}, Errors.INVALID_TOPIC_EXCEPTION),
        ("..", 1, 1, {}, Errors.INVALID_TOPIC_EXCEPTION),
        ("x" * 250, 1, 1, {}, Errors.INVALID_TOPIC_EXCEPTION),
        ("ok", 0, 1, {}, Errors.INVALID_PARTITIONS),
        ("ok", 1, 3, {}, Errors.INVALID_REPLICATION_FACTOR),
        ("ok", 1, 1, {"acks": "1"}, Errors.INVALID_CONFIG),
        ("ok", 1, 1, {"retention.ms": "soon"}, Errors.INVALID_CONFIG),
        ("ok", 1, 1, {"no.such.key": "1"}, Errors.INVALID_CONFIG),
    ],
)
def test_create_topic_refusals_name_the_problem_and_create_nothing(
    name, partitions, rf, overrides, error
):
    logs = manager(MemoryFileSystem())
    code, message = logs.create_topic(name, TOPIC_ID, partitions, rf, overrides)
    assert code == error and message
    assert logs.topics == {} and logs.partitions == {}


def test_duplicate_topic_is_refused():
    logs = manager(MemoryFileSystem())
    logs.create_topic("orders", TOPIC_ID, 1, 1, {})
    assert logs.create_topic("orders", TOPIC_ID, 1, 1, {})[0] == Errors.TOPIC_ALREADY_EXISTS


def test_data_dir_of_another_broker_is_refused():
    fs = MemoryFileSystem()
    manager(fs, broker_id=0).close()
    with pytest.raises(DataDirError, match=r"broker\.id=0"):
        manager(fs, broker_id=1)


def test_unparsable_topic_table_is_a_clear_error():
    fs = MemoryFileSystem()
    manager(fs).close()
    fs.append("/data/topics.json", b"{not json")
    with pytest.raises(DataDirError, match=r"topics\.json does not parse"):
        manager(fs)


def test_a_lagging_new_leader_refuses_latest_but_not_earliest():
    """KIP-207 as Kafka's fetchOffsetForTimestamp has it: until a new leader's HW reaches
    its epoch start, a client's latest and a timestamp with nothing below the HW are
    OFFSET_NOT_AVAILABLE; earliest (the log start) and a follower's log end are answered."""
    p = partition(MemoryFileSystem(), replicas=(0, 1))
    p.append_as_leader(batch([b"a", b"b"], ts=100), now_ms=0)
    p.become_leader(1, 1, (0, 1), frozenset((0, 1)), now_ms=0)
    assert (p.high_watermark, p.epoch_start_offset) == (0, 2)

    def lookup(timestamp: int, replica_id: int = -1) -> tuple[int, int]:
        row = _list_offset(p, {"partition_index": 0, "timestamp": timestamp}, replica_id)
        return row["error_code"], row.get("offset", -1)

    assert lookup(-2) == (Errors.NONE, 0)
    assert lookup(-1) == (Errors.OFFSET_NOT_AVAILABLE, -1)
    assert lookup(100) == (Errors.OFFSET_NOT_AVAILABLE, -1)
    assert lookup(-1, replica_id=1) == (Errors.NONE, 2)
    p.follower_leos[1] = 2
    p.advance_high_watermark()
    assert lookup(-1) == (Errors.NONE, 2)
    assert lookup(100) == (Errors.NONE, 0)
