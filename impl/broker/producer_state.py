"""Idempotent-producer bookkeeping of one partition (Kafka's ProducerStateManager).

The rules are KAFKA-RULES.md's "Idempotent producer": the broker remembers the last
five batches of every producer id; an exact duplicate of one of them gets its original
offsets back instead of a second append; an older producer epoch is fenced; a new epoch
must start at sequence 0; otherwise a batch must continue where the last one ended.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import NamedTuple

from model.errors import Errors

BATCHES_PER_PRODUCER_MAX = 5
# Kafka expires idle producer ids after producer.id.expiration.ms; replog also caps
# their number so a client minting ids in a loop cannot grow a partition's memory.
PRODUCERS_PER_PARTITION_MAX = 10_000
SEQUENCE_MAX = 2**31 - 1


# A NamedTuple, not a frozen dataclass: one is built per append, and a frozen
# dataclass's __init__ (an object.__setattr__ per field) costs several tuples.
class CachedBatch(NamedTuple):
    first_sequence: int
    last_sequence: int
    first_offset: int
    last_offset: int


@dataclass(slots=True)
class ProducerEntry:
    epoch: int
    batches: deque[CachedBatch] = field(
        default_factory=lambda: deque(maxlen=BATCHES_PER_PRODUCER_MAX)
    )


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A retried batch that is already in the log, at these offsets."""

    first_offset: int
    last_offset: int


def next_sequence(sequence: int) -> int:
    return 0 if sequence == SEQUENCE_MAX else sequence + 1


class ProducerState:
    """Producer id -> epoch and recent batches, least recently used first."""

    def __init__(self) -> None:
        self._producers: OrderedDict[int, ProducerEntry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._producers)

    def check(
        self, producer_id: int, epoch: int, first_sequence: int, last_sequence: int
    ) -> Errors | Duplicate | None:
        """None when the batch may be appended; an error or a Duplicate otherwise."""
        if producer_id < 0:
            return None
        entry = self._producers.get(producer_id)
        if entry is None:
            return None
        if epoch < entry.epoch:
            return Errors.INVALID_PRODUCER_EPOCH
        if epoch > entry.epoch:
            return None if first_sequence == 0 else Errors.OUT_OF_ORDER_SEQUENCE_NUMBER
        for cached in entry.batches:
            if (cached.first_sequence, cached.last_sequence) == (first_sequence, last_sequence):
                return Duplicate(cached.first_offset, cached.last_offset)
        if entry.batches and first_sequence != next_sequence(entry.batches[-1].last_sequence):
            return Errors.OUT_OF_ORDER_SEQUENCE_NUMBER
        return None

    def update(
        self,
        producer_id: int,
        epoch: int,
        first_sequence: int,
        last_sequence: int,
        first_offset: int,
        last_offset: int,
    ) -> None:
        """Record an appended batch (as leader, as follower, or replaying the log)."""
        if producer_id < 0:
            return
        entry = self._producers.pop(producer_id, None)
        if entry is None or epoch != entry.epoch:
            entry = ProducerEntry(epoch)
        entry.batches.append(CachedBatch(first_sequence, last_sequence, first_offset, last_offset))
        self._producers[producer_id] = entry
        while len(self._producers) > PRODUCERS_PER_PARTITION_MAX:
            self._producers.popitem(last=False)

    def clear(self) -> None:
        self._producers.clear()
