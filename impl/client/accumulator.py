"""The producer's record accumulator: per-partition queues of batches.

A batch collects records until it holds batch.size bytes (estimated before
compression, as Kafka does) or linger.ms passes; then the sender drains it. Records
that cannot wait are never split across batches, so a record larger than batch.size
travels alone.

Idempotence bookkeeping lives here too, per partition: the producer id and epoch the
partition's batches carry, and the next sequence. A batch receives its sequence when
it is first drained and keeps it through every retry, which is what lets the broker
recognise a retry of a batch it already appended. Retried batches go back to the
front of their queue in creation order, ahead of batches never sent.
"""

from __future__ import annotations

from collections import deque

import trio

from impl.client.errors import ClientError
from impl.client.metadata import TopicPartition
from impl.storage.batch import (
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    NO_SEQUENCE,
    Codec,
    Record,
    encode_batch,
)

SEQUENCE_MODULUS = 2**31
# Kafka's DefaultRecord.MAX_RECORD_OVERHEAD: the most a v2 record adds to key and value.
RECORD_OVERHEAD_BYTES = 21
HEADER_OVERHEAD_BYTES = 10


def estimate_size_bytes(record: Record) -> int:
    """An upper bound of the record's uncompressed size inside a batch."""
    size = RECORD_OVERHEAD_BYTES + len(record.key or b"") + len(record.value or b"")
    for header_key, header_value in record.headers:
        size += HEADER_OVERHEAD_BYTES + len(header_key) + len(header_value or b"")
    return size


class BatchResult:
    """What every record of one batch learns at once: its base offset or its error."""

    __slots__ = ("base_offset", "done", "error", "log_append_time_ms", "tp")

    def __init__(self, tp: TopicPartition) -> None:
        self.tp = tp
        self.done = trio.Event()
        self.base_offset = -1
        self.log_append_time_ms = -1
        self.error: ClientError | None = None

    def succeed(self, base_offset: int, log_append_time_ms: int) -> None:
        self.base_offset = base_offset
        self.log_append_time_ms = log_append_time_ms
        self.done.set()

    def fail(self, error: ClientError) -> None:
        self.error = error
        self.done.set()


class ProducerBatch:
    __slots__ = (
        "attempts",
        "closed",
        "created_ms",
        "deadline_ms",
        "encoded",
        "last_error",
        "maybe_written",
        "ordinal",
        "producer_epoch",
        "producer_id",
        "records",
        "result",
        "retry_at_ms",
        "serial",
        "size_bytes",
        "tp",
    )

    def __init__(self, tp: TopicPartition, serial: int, created_ms: int, deadline_ms: int) -> None:
        self.tp = tp
        self.serial = serial
        self.created_ms = created_ms
        self.deadline_ms = deadline_ms
        self.records: list[Record] = []
        self.size_bytes = 0
        self.result = BatchResult(tp)
        self.closed = False
        self.attempts = 0
        self.retry_at_ms = 0
        # Every attempt that may have reached the log makes the final outcome unknown.
        self.maybe_written = False
        self.last_error: ClientError | None = None
        # Position in the partition's sequence space (unwrapped); -1 until drained.
        self.ordinal = -1
        self.producer_id = NO_PRODUCER_ID
        self.producer_epoch = NO_PRODUCER_EPOCH
        self.encoded: bytes | None = None

    def has_room(self, size_bytes: int, batch_size_max: int) -> bool:
        return not self.closed and (
            not self.records or self.size_bytes + size_bytes <= batch_size_max
        )

    def append(self, record: Record, size_bytes: int) -> int:
        self.records.append(record)
        self.size_bytes += size_bytes
        return len(self.records) - 1

    @property
    def base_sequence(self) -> int:
        return NO_SEQUENCE if self.ordinal < 0 else self.ordinal % SEQUENCE_MODULUS

    def encode(self, codec: Codec) -> bytes:
        """The batch's bytes; the same bytes on every retry, so the CRC and sequence match."""
        if self.encoded is None:
            self.encoded = encode_batch(
                self.records,
                codec=codec,
                producer_id=self.producer_id,
                producer_epoch=self.producer_epoch,
                base_sequence=self.base_sequence,
            )
        return self.encoded

    def forget_sequence(self) -> None:
        self.ordinal = -1
        self.producer_id = NO_PRODUCER_ID
        self.producer_epoch = NO_PRODUCER_EPOCH
        self.encoded = None


class PartitionQueue:
    """Batches of one partition waiting to be sent, and those in flight."""

    def __init__(self, tp: TopicPartition) -> None:
        self.tp = tp
        self.batches: deque[ProducerBatch] = deque()
        self.in_flight: list[ProducerBatch] = []
        self.producer_id = NO_PRODUCER_ID
        self.producer_epoch = NO_PRODUCER_EPOCH
        self.next_ordinal = 0
        # A sequenced batch failed for good: the sequence has a gap (or may have), so
        # the partition continues under a fresh producer id once nothing is in flight.
        self.reset_needed = False
        self._serials = 0

    def open_batch(self, size_bytes: int, batch_size_max: int) -> ProducerBatch | None:
        if self.batches and self.batches[-1].has_room(size_bytes, batch_size_max):
            return self.batches[-1]
        return None

    def new_batch(self, created_ms: int, deadline_ms: int) -> ProducerBatch:
        if self.batches:
            self.batches[-1].closed = True
        batch = ProducerBatch(self.tp, self._serials, created_ms, deadline_ms)
        self._serials += 1
        self.batches.append(batch)
        return batch

    def ready_at_ms(self, linger_ms: int, flushing: bool) -> int:
        """When the head batch may be sent, ignoring in-flight limits (only if batches)."""
        head = self.batches[0]
        if head.attempts:
            return head.retry_at_ms
        if head.closed or len(self.batches) > 1 or flushing:
            return head.created_ms
        return head.created_ms + linger_ms

    def can_send_head(self, max_in_flight: int) -> bool:
        """A retry of a sequenced batch goes alone, after everything in flight returned,
        so retried batches reach the broker strictly in sequence order."""
        if self.reset_needed:
            return False
        if self.batches[0].ordinal >= 0:
            return not self.in_flight
        return len(self.in_flight) < max_in_flight

    def drain(self, idempotent: bool) -> ProducerBatch:
        batch = self.batches.popleft()
        batch.closed = True
        if idempotent and batch.ordinal < 0:
            batch.ordinal = self.next_ordinal
            batch.producer_id = self.producer_id
            batch.producer_epoch = self.producer_epoch
            self.next_ordinal += len(batch.records)
        batch.attempts += 1
        self.in_flight.append(batch)
        return batch

    def requeue(self, batch: ProducerBatch) -> None:
        """Back into the queue in creation order (retries are older than unsent batches)."""
        self.in_flight.remove(batch)
        index = 0
        while index < len(self.batches) and self.batches[index].serial < batch.serial:
            index += 1
        self.batches.insert(index, batch)

    def has_earlier_unresolved(self, batch: ProducerBatch) -> bool:
        """True if a batch sequenced before this one has no final outcome yet."""
        return any(
            other.ordinal >= 0 and other.serial < batch.serial
            for other in (*self.in_flight, *self.batches)
        )

    def restart_sequences(self, producer_id: int, producer_epoch: int) -> list[ProducerBatch]:
        """Continue under a new producer id from sequence 0. Batches that may already be
        in the log under the old id cannot be retried without risking a duplicate: they
        are removed and returned for the caller to fail as outcome unknown."""
        assert not self.in_flight, "restart only once every sent batch has returned"
        abandoned = [b for b in self.batches if b.ordinal >= 0 and b.maybe_written]
        self.batches = deque(b for b in self.batches if b not in abandoned)
        for batch in self.batches:
            batch.forget_sequence()
        self.producer_id = producer_id
        self.producer_epoch = producer_epoch
        self.next_ordinal = 0
        self.reset_needed = False
        return abandoned
