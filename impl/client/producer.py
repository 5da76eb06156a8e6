"""The native producer, Kafka's design in trio.

    async with Producer(runtime, "127.0.0.1:9092", config) as producer:
        delivery = await producer.send("events", b"value", key=b"k")
        metadata = await delivery.wait()     # RecordMetadata, or raises a client error

`send` returns once the record is in the accumulator; it waits only for the topic's
metadata and for room in buffer.memory (both at most max.block.ms). Every outcome
after that, success or error, arrives through the `Delivery`; the errors are those of
`impl.client.errors`, so a caller can tell `OutcomeUnknown` from `DefiniteFailure`.

Partitioning is Kafka's default: murmur2 of the key for keyed records; keyless records
go to a sticky partition, chosen at random (runtime.rng) and kept while its current
batch has room, so keyless records fill batches and spread over partitions batch by
batch (KIP-480).

Idempotence is on when enable.idempotence=true and acks=all (Kafka's rule when the
setting is left at its default). Up to max.in.flight.requests.per.connection (<= 5)
batches per partition are in flight, with sequence handling as `impl.client.sender`
describes; records of one partition are then delivered in order, exactly once per
successful delivery. Without idempotence, retries may reorder and duplicate, as in Kafka.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

import trio

from impl.client.accumulator import BatchResult, PartitionQueue, ProducerBatch, estimate_size_bytes
from impl.client.errors import (
    BufferExhausted,
    ClientError,
    DeliveryTimeout,
    ProducerClosed,
    RecordTooLarge,
    kafka_error,
)
from impl.client.metadata import ClusterSession, TopicPartition
from impl.client.sender import RequestObserver, Sender
from impl.runtime.runtime import Runtime
from impl.storage.batch import Record, codec_from_name
from model.config import Config, ConfigError
from model.errors import Errors
from model.partitioner import default_partition

IDEMPOTENT_IN_FLIGHT_MAX = 5


@dataclass(frozen=True, slots=True)
class RecordMetadata:
    """Where a record landed; offset -1 with acks=0 (the broker does not say)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int


class Delivery:
    """The future outcome of one record."""

    __slots__ = ("_index", "_result", "_timestamp_ms")

    def __init__(self, result: BatchResult, index: int, timestamp_ms: int) -> None:
        self._result = result
        self._index = index
        self._timestamp_ms = timestamp_ms

    def done(self) -> bool:
        return self._result.done.is_set()

    def metadata(self) -> RecordMetadata:
        """The outcome of a finished delivery: RecordMetadata, or raises its error."""
        result = self._result
        assert result.done.is_set(), "the delivery is not finished"
        if result.error is not None:
            raise result.error.with_traceback(None)
        offset = result.base_offset + self._index if result.base_offset >= 0 else -1
        timestamp_ms = result.log_append_time_ms
        if timestamp_ms < 0:
            timestamp_ms = self._timestamp_ms
        return RecordMetadata(result.tp.topic, result.tp.partition, offset, timestamp_ms)

    async def wait(self) -> RecordMetadata:
        await self._result.done.wait()
        return self.metadata()


def check_producer_config(config: Config) -> None:
    """Kafka's producer constraints, as ConfigError naming the keys."""
    try:
        codec_from_name(config.compression_type)
    except ValueError as error:
        raise ConfigError(f"compression.type={config.compression_type}: {error}") from None
    idempotent = config.enable_idempotence and config.acks == -1
    if idempotent and config.max_in_flight_requests_per_connection > IDEMPOTENT_IN_FLIGHT_MAX:
        raise ConfigError(
            "enable.idempotence=true needs max.in.flight.requests.per.connection <= "
            f"{IDEMPOTENT_IN_FLIGHT_MAX}, got {config.max_in_flight_requests_per_connection}"
        )
    if config.delivery_timeout_ms < config.linger_ms + config.request_timeout_ms:
        raise ConfigError(
            f"delivery.timeout.ms={config.delivery_timeout_ms} must be >= linger.ms + "
            f"request.timeout.ms ({config.linger_ms} + {config.request_timeout_ms})"
        )


class _TopicQueues:
    """A topic's partition queues and its sticky partition for keyless records."""

    __slots__ = ("queues", "sticky", "sticky_batch")

    def __init__(self, queues: list[PartitionQueue]) -> None:
        self.queues = queues
        self.sticky = -1
        self.sticky_batch: ProducerBatch | None = None


class Producer:
    def __init__(
        self,
        runtime: Runtime,
        bootstrap: str | Sequence[str],
        config: Config | None = None,
        *,
        client_id: str = "replog-producer",
        request_observer: RequestObserver | None = None,
    ) -> None:
        """`request_observer(latency_ms, record_count)` is called after each Produce."""
        self.config = config or Config()
        check_producer_config(self.config)
        self.runtime = runtime
        self._observer = request_observer
        self._queues: dict[TopicPartition, PartitionQueue] = {}
        self._topics: dict[str, _TopicQueues] = {}
        self._buffer_used_bytes = 0
        self._record_bytes_max = min(self.config.max_request_size, self.config.buffer_memory)
        self._buffer_freed = trio.Event()
        self._closed = True
        self._session = ClusterSession(runtime, bootstrap, self.config, client_id)
        self._sender: Sender | None = None

    # ---- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Producer:
        session = await self._session.__aenter__()
        self._sender = Sender(
            self.runtime, session.cluster, self.config, self._queues, self._release, self._observer
        )
        await session.nursery.start(self._sender.run)
        self._closed = False
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Flush on a normal exit and wait for the requests still in flight (Kafka's
        close() does both; an acks=0 record counts as sent once written, so only the
        wait keeps a Metadata answer ahead of it from meeting a closed socket); on an
        exception, settle what is left and close."""
        try:
            if exc is None:
                await self.flush()
                await self._session.cluster.wait_for_responses(self.config.request_timeout_ms)
        finally:
            self._closed = True
            try:
                await self._session.aclose()
            finally:
                assert self._sender is not None
                self._sender.fail_all(ProducerClosed("the producer closed before sending"))

    # ---- sending -----------------------------------------------------------------------

    async def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes | None]] = (),
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> Delivery:
        """Queue one record. Raises only ProducerClosed; every other outcome is the Delivery's."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._closed:
            raise ProducerClosed("send on a closed producer")
        if timestamp_ms is None:
            timestamp_ms = self.runtime.clock.wall_ms()
        state = self._topics.get(topic)
        if state is None:
            state = await self._topic(topic)
            if isinstance(state, ClientError):
                return _failed(topic, partition, state, timestamp_ms)
        queues = state.queues
        if partition is not None and not 0 <= partition < len(queues):
            message = f"{topic} has {len(queues)} partitions, no partition {partition}"
            error = kafka_error(Errors.UNKNOWN_TOPIC_OR_PARTITION, message)
            return _failed(topic, partition, error, timestamp_ms)
        record = Record(value, key, tuple(headers) if headers else (), timestamp_ms)
        size_bytes = estimate_size_bytes(record)
        if size_bytes > self._record_bytes_max:
            error = record_too_large(size_bytes, self.config)
            return _failed(topic, partition, error, timestamp_ms)
        if self._buffer_used_bytes + size_bytes <= self.config.buffer_memory:
            self._buffer_used_bytes += size_bytes
        elif not await self._wait_for_buffer(size_bytes):
            error = BufferExhausted(f"buffer.memory full for {self.config.max_block_ms} ms")
            return _failed(topic, partition, error, timestamp_ms)
        if partition is not None:
            queue = queues[partition]
        elif key is not None:
            queue = queues[default_partition(key, len(queues))]
        else:
            queue = self._sticky_queue(state, size_bytes)
        batch, index, wake = self._append(queue, record, size_bytes)
        if partition is None and key is None:
            state.sticky_batch = batch
        assert self._sender is not None
        if wake and (batch.closed or self.config.linger_ms == 0 or self._sender.flushing):
            # A batch ready now changes what the sender should do; let it run now.
            self._sender.wake()
            await trio.sleep(0)
        elif wake:
            # A new batch lingers: the sender need only look when its linger is up.
            self._sender.look_at_ms(batch.created_ms + self.config.linger_ms)
        return Delivery(batch.result, index, timestamp_ms)

    async def flush(self) -> None:
        """Send everything queued now, ignoring linger.ms, and wait for every outcome."""
        assert self._sender is not None
        results = [b.result for q in self._queues.values() for b in (*q.in_flight, *q.batches)]
        self._sender.flushing += 1
        self._sender.wake()
        try:
            for result in results:
                await result.done.wait()
        finally:
            self._sender.flushing -= 1

    def partitions_for(self, topic: str) -> int | None:
        """The topic's partition count as this producer's metadata knows it."""
        return self._session.cluster.partition_count(topic)

    # ---- internals ---------------------------------------------------------------------

    async def _topic(self, topic: str) -> _TopicQueues | ClientError:
        """The topic's queues, once metadata knows it (replog topics never gain
        partitions, so the count is fixed from here on)."""
        cluster = self._session.cluster
        count = await cluster.wait_for_topic(topic, self.config.max_block_ms)
        if count is None:
            if cluster.topic_missing(topic):
                return kafka_error(Errors.UNKNOWN_TOPIC_OR_PARTITION, f"no topic {topic}")
            return DeliveryTimeout(f"no metadata for {topic} within max.block.ms")
        state = self._topics.get(topic)
        if state is None:
            queues = []
            for index in range(count):
                tp = TopicPartition(topic, index)
                queues.append(self._queues.setdefault(tp, PartitionQueue(tp)))
            state = self._topics[topic] = _TopicQueues(queues)
        return state

    def _sticky_queue(self, state: _TopicQueues, size_bytes: int) -> PartitionQueue:
        """Keyless records stay on one partition while its batch has room."""
        batch = state.sticky_batch
        if batch is None or not batch.has_room(size_bytes, self.config.batch_size):
            count = len(state.queues)
            state.sticky = default_partition(None, count, self._next_sticky(state.sticky, count))
        return state.queues[state.sticky]

    def _next_sticky(self, previous: int, count: int) -> int:
        if count == 1:
            return 0
        choice = self.runtime.rng.randrange(count - 1)
        return choice + 1 if 0 <= previous <= choice else choice

    def _append(
        self, queue: PartitionQueue, record: Record, size_bytes: int
    ) -> tuple[ProducerBatch, int, bool]:
        """(batch, index in it, whether the sender should look now)."""
        batch = queue.open_batch(size_bytes, self.config.batch_size)
        created = batch is None
        if batch is None:
            now_ms = self.runtime.clock.monotonic_ms()
            batch = queue.new_batch(now_ms, now_ms + self.config.delivery_timeout_ms)
        index = batch.append(record, size_bytes)
        full = batch.size_bytes >= self.config.batch_size
        if full:
            batch.closed = True
        return batch, index, created or full

    async def _wait_for_buffer(self, size_bytes: int) -> bool:
        """Reserve room for the record in buffer.memory, waiting up to max.block.ms."""
        with trio.move_on_after(self.config.max_block_ms / 1000):
            while self._buffer_used_bytes + size_bytes > self.config.buffer_memory:
                await self._buffer_freed.wait()
            self._buffer_used_bytes += size_bytes
            return True
        return False

    def _release(self, batch: ProducerBatch) -> None:
        self._buffer_used_bytes -= batch.size_bytes
        self._buffer_freed.set()
        self._buffer_freed = trio.Event()


def record_too_large(size_bytes: int, config: Config) -> RecordTooLarge:
    limit = "max.request.size" if size_bytes > config.max_request_size else "buffer.memory"
    return RecordTooLarge(f"record of about {size_bytes} bytes exceeds {limit}")


def _failed(topic: str, partition: int | None, error: ClientError, timestamp_ms: int) -> Delivery:
    result = BatchResult(TopicPartition(topic, -1 if partition is None else partition))
    result.fail(error)
    return Delivery(result, 0, timestamp_ms)
