"""Regressions for broker and client bugs that the deterministic simulator found ([8])."""

from __future__ import annotations

from impl.broker.logs import HIGH_WATERMARK_CHECKPOINT, LogManager
from impl.client.errors import DefiniteFailure, OutcomeUnknown, produce_error
from impl.runtime.fs import MemoryFileSystem
from impl.storage.checkpoint import RECOVERY_POINT_CHECKPOINT, read_offset_checkpoint
from impl.storage.log import PartitionLog
from model.config import Config
from model.errors import Errors

CONFIG = Config(min_insync_replicas=1)
TOPIC_ID = bytes(range(1, 17))


def test_truncating_at_the_log_end_still_cuts_the_epoch_cache():
    """B1: a broker that led epoch 3 without appending must forget that epoch when the
    new leader (who never had it) truncates it to the log end, as Kafka's truncateTo."""
    log = PartitionLog.open(MemoryFileSystem(), "/data/t-0", CONFIG)
    log.assign_epoch_start(3)
    assert log.latest_epoch == 3
    log.truncate_to(log.log_end_offset)
    assert log.latest_epoch == -1
    assert log.leader_epoch_entries == ()


def test_checkpoint_keeps_entries_of_partitions_not_opened_yet():
    """B3: a broker restarted while cut from the controller has opened no replica yet;
    its periodic checkpoint must not drop the HWs and recovery points it read."""
    fs = MemoryFileSystem()
    logs = LogManager(fs, "/data", CONFIG, 1)
    logs.open()
    logs.ensure_partition("t", 0, (0, 1), {})
    logs.ensure_partition("t", 1, (0, 1), {})
    logs.partitions[("t", 1)].high_watermark = 0
    logs.checkpoint()
    restarted = LogManager(fs, "/data", CONFIG, 1)
    restarted.open()
    restarted.ensure_partition("t", 0, (0, 1), {})
    restarted.checkpoint()
    hws = read_offset_checkpoint(fs, "/data/" + HIGH_WATERMARK_CHECKPOINT)
    recovery = read_offset_checkpoint(fs, "/data/" + RECOVERY_POINT_CHECKPOINT)
    assert set(hws) == {("t", 0), ("t", 1)}
    assert set(recovery) == {("t", 0), ("t", 1)}


def test_not_leader_on_an_acks_all_produce_is_an_unknown_outcome():
    """B4: Kafka answers NOT_LEADER_OR_FOLLOWER to an appended acks=all produce whose
    leader lost leadership while waiting, so the write may be in the log."""
    error = produce_error(Errors.NOT_LEADER_OR_FOLLOWER, acks=-1)
    assert isinstance(error, OutcomeUnknown) and error.retriable
    refused = produce_error(Errors.NOT_LEADER_OR_FOLLOWER, acks=1)
    assert isinstance(refused, DefiniteFailure) and refused.retriable
    assert isinstance(produce_error(Errors.NOT_ENOUGH_REPLICAS, acks=-1), DefiniteFailure)
