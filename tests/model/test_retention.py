"""Segments, retention and auto.offset.reset (model/retention.py), and the log start
offset the client-level calls of model/client.py now report."""

import pytest

from model import client, retention
from model.config import Config
from model.errors import Errors
from model.machine import ReplicationModel, Scope
from model.state import PartitionLog

SIZE = retention.RECORD_BATCH_BYTES


def config(*settings: str) -> Config:
    return Config.parse(list(settings))


def appended(cfg: Config, *stamps: int, size: int = SIZE) -> PartitionLog:
    log = retention.EMPTY_LOG
    for offset, timestamp_ms in enumerate(stamps):
        log = retention.append(log, offset, timestamp_ms, size, cfg)
    return log


def test_segments_roll_at_segment_bytes():
    log = appended(config("segment.bytes=150"), 0, 0, 0, 0, 0)
    assert log.segments == (0, 2, 4)  # two 70-byte batches fit in 150 bytes, a third not
    assert [retention.segment_size_bytes(log, i) for i in range(3)] == [140, 140, 70]


def test_segments_roll_when_a_batch_is_segment_ms_newer_than_the_first():
    log = appended(config("segment.ms=1000"), 0, 1000, 1001, 1500, 2002)
    assert log.segments == (0, 2, 4)
    # A lone record never rolls: an empty segment takes the first batch whatever its age.
    assert appended(config("segment.ms=1"), 5000).segments == (0,)


def test_an_append_below_the_log_end_replaces_the_old_leaders_suffix():
    cfg = config("segment.bytes=100")
    log = appended(cfg, 0, 0, 0)
    assert log.segments == (0, 1, 2)
    log = retention.append(log, 1, 7, SIZE, cfg)
    assert log.stamps == ((0, SIZE), (7, SIZE)) and log.segments == (0, 1)


def test_retention_ms_deletes_closed_segments_oldest_first_never_the_active_one():
    cfg = config("segment.bytes=100", "retention.ms=1000")
    log = appended(cfg, 0, 10, 2000)
    assert retention.deletable_segments(log, 3, 1010, cfg) == 1
    assert retention.deletable_segments(log, 3, 1011, cfg) == 2
    after = retention.run_retention(log, 3, 10_000, cfg)
    # Every segment is past retention, but the active one (offset 2) stays.
    assert after.segments == (2,) and after.log_start == 2
    assert retention.deletable_segments(after, 3, 10_000, cfg) == 0


def test_retention_waits_for_the_high_watermark():
    cfg = config("segment.bytes=100", "retention.ms=0")
    log = appended(cfg, 0, 0, 0)
    assert retention.deletable_segments(log, 0, 100, cfg) == 0
    assert retention.deletable_segments(log, 1, 100, cfg) == 1
    assert retention.deletable_segments(log, 2, 100, cfg) == 2


def test_retention_bytes_deletes_while_the_excess_covers_the_oldest_segment():
    cfg = config("segment.bytes=150", "retention.bytes=200")
    log = appended(cfg, 0, 0, 0, 0, 0)  # segments of 140, 140, 70 bytes: 350 in all
    assert retention.deletable_segments(log, 5, 0, cfg) == 1  # 350-140 = 210 >= 200
    assert retention.run_retention(log, 5, 0, cfg).log_start == 2
    assert retention.deletable_segments(log, 5, 0, config("segment.bytes=150")) == 0


def test_record_timestamps_and_the_broker_clock_decide_retention_ms():
    cfg = config("segment.bytes=100", "retention.ms=1000")
    # A producer whose clock runs an hour ahead: its records outlive retention.ms.
    future = appended(cfg, 3_600_000, 3_600_000)
    assert retention.deletable_segments(future, 2, 5000, cfg) == 0
    # A broker clock set back keeps data; set forward, it deletes early.
    log = appended(cfg, 5000, 5000)
    assert retention.deletable_segments(log, 2, 5500, cfg) == 0
    assert retention.deletable_segments(log, 2, 6001, cfg) == 1


def test_reset_policies():
    assert retention.reset_offset("earliest", 3, 9) == (Errors.NONE, 3)
    assert retention.reset_offset("latest", 3, 9) == (Errors.NONE, 9)
    assert retention.reset_offset("none", 3, 9) == (Errors.OFFSET_OUT_OF_RANGE, -1)
    with pytest.raises(ValueError, match=r"auto\.offset\.reset"):
        retention.reset_offset("smallest", 3, 9)
    assert retention.fetch_in_range(3, 9, 3) and retention.fetch_in_range(3, 9, 9)
    assert not retention.fetch_in_range(3, 9, 2) and not retention.fetch_in_range(3, 9, 10)


def test_the_log_start_moves_and_fetches_below_it_are_out_of_range():
    m = ReplicationModel(
        Config.parse(
            [
                "replication.factor=1",
                "min.insync.replicas=1",
                "segment.bytes=100",
                "retention.ms=1000",
            ]
        ),
        Scope(brokers=1, retention=True),
    )
    s = m.initial_state()
    for value in (1, 2, 3):
        s, result = client.produce(m, s, 0, value)
        assert result.error == Errors.NONE
    assert client.list_offsets(s, 0, "earliest") == (Errors.NONE, 0)
    s = client.advance_clock(s, 1001)
    s, log_start = client.run_retention(m, s, 0)
    assert log_start == 2
    assert client.list_offsets(s, 0, "earliest") == (Errors.NONE, 2)
    assert client.list_offsets(s, 0, "latest") == (Errors.NONE, 3)
    below = client.fetch(s, 0, 1)
    assert below.error == Errors.OFFSET_OUT_OF_RANGE and below.log_start_offset == 2
    at = client.fetch(s, 0, 2)
    assert at.error == Errors.NONE and at.records == ((2, 3),)
    # A record stamped by the producer's clock lands in its own segment by its time.
    s, _ = client.produce(m, s, 0, 4, timestamp_ms=0, size_bytes=10)
    assert s.consumption.logs[0].stamps[-1] == (0, 10)


def test_without_retention_in_scope_the_log_starts_at_zero():
    m = ReplicationModel(
        Config.parse(["replication.factor=1", "min.insync.replicas=1"]), Scope(brokers=1)
    )
    s, _ = client.produce(m, m.initial_state(), 0, 1)
    assert s.consumption is None
    assert client.fetch(s, 0, 0).log_start_offset == 0
    assert client.list_offsets(s, 0, "earliest") == (Errors.NONE, 0)
