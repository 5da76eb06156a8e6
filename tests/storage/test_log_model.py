"""Any run of append/roll/truncate/retention/flush/crash/reopen matches a list model.

The model is a list of batches (base offset, values). After a crash the recovered log
must be a prefix of the model that still holds everything the log had reported durable
(its recovery point) and nothing the log had removed; every batch it serves passes its
CRC (reads check it, so a corrupt batch would raise here).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from impl.runtime.fs import MemoryFileSystem
from impl.storage.batch import Record, decode_records
from impl.storage.checkpoint import (
    RECOVERY_POINT_CHECKPOINT,
    read_offset_checkpoint,
    write_offset_checkpoint,
)
from impl.storage.log import PartitionLog
from model.config import Config

ROOT = "/logs"
DIR = ROOT + "/t-0"
CHECKPOINT = ROOT + "/" + RECOVERY_POINT_CHECKPOINT
RETENTION_MS = 5_000
CONFIG = Config().with_values(segment_bytes=700, retention_ms=RETENTION_MS, segment_ms=3_000)


@dataclass(frozen=True)
class ModelBatch:
    base_offset: int
    values: tuple[bytes, ...]
    max_timestamp_ms: int

    @property
    def next_offset(self) -> int:
        return self.base_offset + len(self.values)


def _log_batches(log: PartitionLog) -> list[tuple[int, tuple[bytes | None, ...]]]:
    return [
        (header.base_offset, tuple(r.value for _, r in decode_records(raw)))
        for header, raw in log.batches()
    ]


class LogVersusModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.fs = MemoryFileSystem()
        self.log = PartitionLog.open(self.fs, DIR, CONFIG)
        self.batches: list[ModelBatch] = []
        self.log_start = 0
        self.epoch = 0
        self.now_ms = 0
        self.counter = 0

    @property
    def model_end(self) -> int:
        return self.batches[-1].next_offset if self.batches else self.log_start

    def _checkpoint_recovery_point(self) -> None:
        write_offset_checkpoint(self.fs, CHECKPOINT, {("t", 0): self.log.recovery_point})

    @rule(
        count=st.integers(1, 4),
        size=st.integers(0, 120),
        tick_ms=st.integers(0, 2_000),
        new_epoch=st.booleans(),
    )
    def append(self, count: int, size: int, tick_ms: int, new_epoch: bool) -> None:
        self.now_ms += tick_ms
        self.epoch += int(new_epoch)
        values = tuple(b"%06d" % (self.counter + i) + b"v" * size for i in range(count))
        self.counter += count
        records = [Record(v, timestamp_ms=self.now_ms) for v in values]
        info = self.log.append_as_leader(records, leader_epoch=self.epoch)
        assert info.first_offset == self.model_end
        self.batches.append(ModelBatch(info.first_offset, values, self.now_ms))

    @rule()
    def roll(self) -> None:
        self.log.roll()

    @rule()
    def flush(self) -> None:
        self.log.flush()
        assert self.log.recovery_point == self.model_end
        self._checkpoint_recovery_point()

    @precondition(lambda self: self.batches)
    @rule(data=st.data())
    def truncate(self, data: st.DataObject) -> None:
        offset = data.draw(st.integers(self.log_start, self.model_end))
        self.log.truncate_to(offset)
        self.batches = [b for b in self.batches if b.next_offset - 1 < offset]
        assert self.log.log_end_offset == self.model_end

    @rule(tick_ms=st.integers(0, 8_000))
    def retention(self, tick_ms: int) -> None:
        self.now_ms += tick_ms
        self.log.apply_retention(self.now_ms)
        start = self.log.log_start_offset
        dropped = [b for b in self.batches if b.base_offset < start]
        assert all(self.now_ms - b.max_timestamp_ms > RETENTION_MS for b in dropped)
        assert start <= self.model_end
        self.batches = [b for b in self.batches if b.base_offset >= start]
        self.log_start = start

    @rule(tear=st.booleans(), seed=st.integers(0, 2**32 - 1))
    def crash_and_recover(self, tear: bool, seed: int) -> None:
        durable_end = self.log.recovery_point
        self.fs.crash(tear_last_write=tear, rng=random.Random(seed))
        recovery_point = read_offset_checkpoint(self.fs, CHECKPOINT).get(("t", 0))
        self.log = PartitionLog.open(self.fs, DIR, CONFIG, recovery_point=recovery_point)
        recovered = _log_batches(self.log)
        expected = [(b.base_offset, b.values) for b in self.batches]
        assert recovered == expected[: len(recovered)], f"not a prefix (crash seed {seed})"
        assert self.log.log_end_offset >= durable_end, f"lost flushed data (crash seed {seed})"
        assert self.log.log_start_offset == self.log_start
        self.batches = self.batches[: len(recovered)]

    @rule()
    def close_and_reopen(self) -> None:
        self.log.close()
        self._checkpoint_recovery_point()
        self.log = PartitionLog.open(self.fs, DIR, CONFIG, recovery_point=self.log.recovery_point)
        assert self.log.truncations == []

    @invariant()
    def log_equals_model(self) -> None:
        assert self.log.log_start_offset == self.log_start
        assert self.log.log_end_offset == self.model_end
        assert _log_batches(self.log) == [(b.base_offset, b.values) for b in self.batches]
        if self.log.latest_epoch >= 0:
            assert self.log.end_offset_for(self.log.latest_epoch)[1] == self.model_end


LogVersusModel.TestCase.settings = settings(
    max_examples=400, stateful_step_count=40, derandomize=True, deadline=None
)
test_log_matches_model = LogVersusModel.TestCase
