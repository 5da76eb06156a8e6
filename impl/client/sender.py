"""The producer's sender: drains ready batches into Produce requests and settles them.

One loop task decides what to send and writes each Produce request itself where the
write cannot wait, else hands it to its broker's writer task, which puts requests on
the wire in the order they were drained (the order sequence numbers need; nothing is
written directly while the writer holds one); each response is settled by the
connection's reader as it arrives (no task awaits it), so up to
max.in.flight.requests.per.connection requests per broker are in flight. The loop
sleeps until the next linger, backoff, delivery or request deadline, or until
something wakes it (a full batch, a finished request that leaves work, a flush, a
background job); a new batch only brings its sleep forward to the batch's linger.

Retries: a batch whose attempt failed with a retriable error goes back to the front
of its queue after retry.backoff.ms, until `retries` attempts or delivery.timeout.ms
are used up. With idempotence each partition keeps at most max.in.flight batches in
flight, and the broker's sequence check keeps them in order: when one fails, later
ones come back OUT_OF_ORDER_SEQUENCE_NUMBER, which is retriable while an earlier
batch is unresolved, and the retries go one at a time in sequence order. When a
sequenced batch fails for good the partition continues under a fresh producer id
(InitProducerId), since its old sequence may now have a gap.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio

from impl.client.accumulator import PartitionQueue, ProducerBatch
from impl.client.connection import Connection, PendingRequest
from impl.client.errors import (
    METADATA_ERRORS,
    ClientError,
    DeliveryTimeout,
    NotSent,
    OutcomeUnknown,
    final_error,
    is_retriable,
    kafka_error,
    produce_error,
)
from impl.client.metadata import Cluster, TopicPartition
from impl.protocol import API_KEYS
from impl.runtime.runtime import Runtime
from impl.runtime.waits import Flag
from impl.storage.batch import NO_PRODUCER_ID, Codec, codec_from_name
from model.config import Config
from model.errors import Errors

PRODUCE = API_KEYS["Produce"]
INIT_PRODUCER_ID = API_KEYS["InitProducerId"]
# The broker answers an acks=all produce with REQUEST_TIMED_OUT after timeout_ms; the
# client waits this much longer so that precise answer wins over a client-side timeout.
RESPONSE_GRACE_MS = 1_000
# Bounds how late an idle sender notices that metadata.max.age.ms has passed.
IDLE_WAKE_MS = 1_000
# Kafka's default transaction.timeout.ms; brokers ignore it for non-transactional ids.
TRANSACTION_TIMEOUT_MS = 60_000

RequestObserver = Callable[[float, int], None]


@dataclass(frozen=True, slots=True)
class _InFlight:
    """A written Produce request awaiting its answer (by `deadline`, trio time)."""

    node: int
    batches: list[ProducerBatch]
    connection: Connection
    deadline: float
    started: float


class Sender:
    def __init__(
        self,
        runtime: Runtime,
        cluster: Cluster,
        config: Config,
        queues: dict[TopicPartition, PartitionQueue],
        release: Callable[[ProducerBatch], None],
        observer: RequestObserver | None = None,
    ) -> None:
        self.runtime = runtime
        self.cluster = cluster
        self.config = config
        self.queues = queues
        self.release = release
        self.observer = observer
        self.idempotent = config.enable_idempotence and config.acks == -1
        self.codec: Codec = codec_from_name(config.compression_type)
        self.flushing = 0
        self.producer_id = NO_PRODUCER_ID
        self.producer_epoch = -1
        self._wakeup = Flag()
        self._requests_in_flight: dict[int, int] = defaultdict(int)
        # Requests handed to a broker's writer task and not yet written.
        self._queued_writes: dict[int, int] = defaultdict(int)
        self._nursery: trio.Nursery | None = None
        self._outboxes: dict[int, trio.MemorySendChannel[list[ProducerBatch]]] = {}
        self._jobs: set[str] = set()
        self._in_flight: dict[PendingRequest, _InFlight] = {}

    def wake(self) -> None:
        self._wakeup.set()

    def look_at_ms(self, at_ms: int) -> None:
        """Run a pass by `at_ms` (a new batch's linger): sooner than the sleeping loop
        planned, if need be, without waking it now."""
        self._wakeup.hasten(self._deadline_for_ms(at_ms))

    def _deadline_for_ms(self, at_ms: int) -> float:
        return trio.current_time() + max(0, at_ms - self.now_ms()) / 1000

    def now_ms(self) -> int:
        return self.runtime.clock.monotonic_ms()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            while True:
                self._wakeup = Flag()
                wake_at_ms = self._run_once()
                # A Flag's deadline: no cancel scope per pass of the loop.
                await self._wakeup.wait_until(self._deadline_for_ms(wake_at_ms))

    def _run_once(self) -> int:
        """One pass: expiry, background jobs, sending. Returns when to look again.

        Nothing here waits on the network: metadata and producer ids are fetched by
        background jobs, so a broker that does not answer cannot stall expiry or the
        requests to other brokers."""
        if self.cluster.is_stale():
            self._spawn_once("metadata", self._refresh_metadata)
        self._fail_missing_topics()
        self._expire(self.now_ms())
        if self.idempotent and self._producer_ids_needed():
            self._spawn_once("producer ids", self._acquire_producer_ids)
        next_deadline = self._time_out_requests(trio.current_time())
        wake_at_ms = self._send_ready(self.now_ms())
        if next_deadline < math.inf:
            wake_at_ms = min(wake_at_ms, math.ceil(next_deadline * 1000))
        return wake_at_ms

    def _spawn_once(self, name: str, job: Callable[[], Awaitable[None]]) -> None:
        if name in self._jobs:
            return
        self._jobs.add(name)

        async def run_then_wake() -> None:
            try:
                await job()
            finally:
                self._jobs.discard(name)
                self.wake()

        assert self._nursery is not None
        self._nursery.start_soon(run_then_wake)

    async def _refresh_metadata(self) -> None:
        try:
            await self.cluster.refresh()
        except ClientError:
            await trio.sleep(self.config.retry_backoff_ms / 1000)

    # ---- what to send ------------------------------------------------------------------

    def _send_ready(self, now_ms: int) -> int:
        wake_at_ms = now_ms + IDLE_WAKE_MS
        while True:
            requests, next_ms = self._collect(now_ms)
            wake_at_ms = min(wake_at_ms, next_ms)
            if not requests:
                return wake_at_ms
            for node, batches in requests.items():
                self._submit(node, batches)

    def _submit(self, node: int, batches: list[ProducerBatch]) -> None:
        """Write a request now if nothing of ours waits to be written to that broker and
        the write cannot wait; else hand it to the broker's writer task, which keeps
        drain order on the wire (tasks started one after another may run in any order)."""
        assert self._nursery is not None
        self._requests_in_flight[node] += 1
        if not self._queued_writes[node] and self._write_now(node, batches):
            return
        self._queued_writes[node] += 1
        outbox = self._outboxes.get(node)
        if outbox is None:
            capacity = self.config.max_in_flight_requests_per_connection
            outbox, inbox = trio.open_memory_channel[list[ProducerBatch]](capacity)
            self._outboxes[node] = outbox
            self._nursery.start_soon(self._writer, node, inbox)
        outbox.send_nowait(batches)

    def _collect(self, now_ms: int) -> tuple[dict[int, list[ProducerBatch]], int]:
        """At most one batch per partition and max.request.size bytes per broker."""
        config = self.config
        requests: dict[int, list[ProducerBatch]] = defaultdict(list)
        sizes: dict[int, int] = defaultdict(int)
        next_ms = now_ms + IDLE_WAKE_MS
        for queue in self.queues.values():
            if not queue.batches:
                continue
            next_ms = min(next_ms, queue.batches[0].deadline_ms)
            ready_ms = queue.ready_at_ms(config.linger_ms, self.flushing > 0)
            if ready_ms > now_ms:
                next_ms = min(next_ms, ready_ms)
                continue
            if not queue.can_send_head(config.max_in_flight_requests_per_connection):
                continue
            if self.idempotent and queue.producer_id == NO_PRODUCER_ID:
                continue
            leader = self.cluster.leader(queue.tp)
            if leader is None:
                self.cluster.request_update()
                next_ms = min(next_ms, now_ms + config.retry_backoff_ms)
                continue
            node = leader.leader_id
            if self._requests_in_flight[node] >= config.max_in_flight_requests_per_connection:
                continue
            if not self._fits(queue, node, requests, sizes):
                next_ms = now_ms
                continue
            batch = queue.drain(self.idempotent)
            sizes[node] += len(batch.encode(self.codec))
            requests[node].append(batch)
        return requests, next_ms

    def _fits(
        self,
        queue: PartitionQueue,
        node: int,
        requests: dict[int, list[ProducerBatch]],
        sizes: dict[int, int],
    ) -> bool:
        """A batch joins a request while the request stays within max.request.size; the
        first batch of a request always goes (send checked each record's size)."""
        if not requests.get(node):
            return True
        return sizes[node] + queue.batches[0].size_bytes <= self.config.max_request_size

    # ---- one Produce request -----------------------------------------------------------

    def _body(self, batches: list[ProducerBatch]) -> dict[str, Any]:
        by_topic: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for batch in batches:
            by_topic[batch.tp.topic].append(
                {"index": batch.tp.partition, "records": batch.encode(self.codec)}
            )
        return {
            "transactional_id": None,
            "acks": self.config.acks,
            "timeout_ms": self.config.request_timeout_ms,
            "topic_data": [{"name": t, "partition_data": rows} for t, rows in by_topic.items()],
        }

    async def _writer(
        self, node: int, inbox: trio.MemoryReceiveChannel[list[ProducerBatch]]
    ) -> None:
        """Write one broker's Produce requests in order (the connection's reader settles
        their responses)."""
        async for batches in inbox:
            started = trio.current_time()
            deadline = self._request_deadline(started)
            try:
                connection = await self.cluster.connection(node)
                expect_response = self.config.acks != 0
                pending = await connection.send(
                    PRODUCE, self._body(batches), deadline, expect_response
                )
            except ClientError as error:
                self._settle_error(batches, error)
                self._finish(node, batches, started)
                continue
            finally:
                self._queued_writes[node] -= 1
            self._written(node, batches, connection, pending, started)

    def _write_now(self, node: int, batches: list[ProducerBatch]) -> bool:
        """The writer's work without the writer, where no step need wait (an open
        connection whose write cannot block): whether it was written."""
        connection = self.cluster.open_connection(node)
        if connection is None:
            return False
        started = trio.current_time()
        pending = connection.send_nowait(PRODUCE, self._body(batches), self.config.acks != 0)
        if pending is None:
            return False
        self._written(node, batches, connection, pending, started)
        return True

    def _request_deadline(self, started: float) -> float:
        return started + (self.config.request_timeout_ms + RESPONSE_GRACE_MS) / 1000

    def _written(
        self,
        node: int,
        batches: list[ProducerBatch],
        connection: Connection,
        pending: PendingRequest,
        started: float,
    ) -> None:
        """A Produce request is on the wire: acks=0 counts it sent; otherwise the
        connection's reader settles it."""
        if self.config.acks == 0:
            for batch in batches:
                self._succeed(batch, -1, -1)
            self._finish(node, batches, started)
            return
        request = _InFlight(node, batches, connection, self._request_deadline(started), started)
        self._in_flight[pending] = request
        pending.call_when_settled(self._settled)

    def _settled(self, pending: PendingRequest) -> None:
        """A Produce response (or its failure), in the task that read it."""
        request = self._in_flight.pop(pending)
        if pending.error is not None:
            self._settle_error(request.batches, pending.error)
        else:
            assert pending.body is not None
            self._settle(request.batches, pending.body)
        self._finish(request.node, request.batches, request.started)

    def _time_out_requests(self, now: float) -> float:
        """Break the connection of every request past its deadline (its batches then
        settle as unknown outcomes); the next deadline of the others."""
        next_deadline = math.inf
        for pending, request in self._in_flight.items():
            if request.deadline <= now:
                job = partial(request.connection.time_out, pending)
                self._spawn_once(f"time out {id(pending)}", job)
            else:
                next_deadline = min(next_deadline, request.deadline)
        return next_deadline

    def _settle_error(self, batches: list[ProducerBatch], error: ClientError) -> None:
        """A whole request failed: retriable unless the broker cannot serve it at all."""
        if isinstance(error, (NotSent, OutcomeUnknown)):
            self.cluster.request_update()
            for batch in batches:
                self._retry_or_fail(batch, error)
            return
        for batch in batches:
            self._fail(batch, error)

    def _finish(self, node: int, batches: list[ProducerBatch], started: float) -> None:
        self._requests_in_flight[node] -= 1
        if self.observer is not None:
            records = sum(len(batch.records) for batch in batches)
            self.observer((trio.current_time() - started) * 1000, records)
        if self._work_waits():
            self.wake()

    def _work_waits(self) -> bool:
        """A pass could do something now: queued batches (which this request's slot may
        free), a partition awaiting a new producer id, or metadata to refresh."""
        if self.cluster.is_stale():
            return True
        return any(q.batches or q.reset_needed for q in self.queues.values())

    def _settle(self, batches: list[ProducerBatch], response: dict[str, Any]) -> None:
        answers = {
            (topic["name"], row["index"]): row
            for topic in response["responses"]
            for row in topic["partition_responses"]
        }
        for batch in batches:
            row = answers.get((batch.tp.topic, batch.tp.partition))
            if row is None:
                self._fail(batch, OutcomeUnknown(f"the broker did not answer for {batch.tp}"))
                continue
            code = row["error_code"]
            if code == Errors.NONE:
                self._succeed(batch, row["base_offset"], row.get("log_append_time_ms", -1))
                continue
            detail = row.get("error_message")
            error = produce_error(
                code, self.config.acks, f"{batch.tp}: {detail}" if detail else str(batch.tp)
            )
            if code in METADATA_ERRORS:
                self.cluster.request_update()
            self._retry_or_fail(batch, error)

    # ---- settling batches --------------------------------------------------------------

    def _queue(self, batch: ProducerBatch) -> PartitionQueue:
        return self.queues[batch.tp]

    def _succeed(self, batch: ProducerBatch, base_offset: int, log_append_time_ms: int) -> None:
        self._queue(batch).in_flight.remove(batch)
        batch.result.succeed(base_offset, log_append_time_ms)
        self.release(batch)

    def _retry_or_fail(self, batch: ProducerBatch, error: ClientError) -> None:
        queue = self._queue(batch)
        batch.maybe_written = batch.maybe_written or isinstance(error, OutcomeUnknown)
        batch.last_error = error
        now_ms = self.now_ms()
        if (
            self._retriable(queue, batch, error)
            and batch.attempts <= self.config.retries
            and now_ms < batch.deadline_ms
        ):
            batch.retry_at_ms = now_ms + self.config.retry_backoff_ms
            queue.requeue(batch)
            return
        self._fail(batch, error)

    def _retriable(self, queue: PartitionQueue, batch: ProducerBatch, error: ClientError) -> bool:
        code = getattr(error, "code", None)
        if code is None:
            return isinstance(error, (NotSent, OutcomeUnknown))
        if code == Errors.OUT_OF_ORDER_SEQUENCE_NUMBER:
            # A gap caused by an earlier batch of ours that is still being retried (or
            # will be re-sequenced): not the broker losing our data.
            return queue.reset_needed or queue.has_earlier_unresolved(batch)
        return is_retriable(code)

    def _fail(self, batch: ProducerBatch, error: ClientError) -> None:
        queue = self._queue(batch)
        if batch in queue.in_flight:
            queue.in_flight.remove(batch)
        elif batch in queue.batches:
            queue.batches.remove(batch)
        if batch.ordinal >= 0:
            queue.reset_needed = True
        batch.result.fail(final_error(error, batch.maybe_written))
        self.release(batch)

    def fail_all(self, error: ClientError) -> None:
        """Settle every batch (on close): queued ones fail with `error`; in-flight ones
        may have been written."""
        for queue in self.queues.values():
            for batch in [*queue.in_flight, *queue.batches]:
                batch.maybe_written = batch.maybe_written or batch in queue.in_flight
                self._fail(batch, error)

    # ---- expiry, missing topics, producer ids ------------------------------------------

    def _expire(self, now_ms: int) -> None:
        for queue in self.queues.values():
            # Queues are in creation order, so deadlines only grow towards the back.
            while queue.batches and now_ms >= queue.batches[0].deadline_ms:
                batch = queue.batches[0]
                reason = f"{batch.tp}: not delivered within delivery.timeout.ms"
                if batch.last_error is not None:
                    reason += f"; last error: {batch.last_error}"
                self._fail(batch, DeliveryTimeout(reason))

    def _fail_missing_topics(self) -> None:
        for queue in self.queues.values():
            if queue.batches and self.cluster.topic_missing(queue.tp.topic):
                error = kafka_error(
                    Errors.UNKNOWN_TOPIC_OR_PARTITION, f"metadata has no topic {queue.tp.topic}"
                )
                for batch in list(queue.batches):
                    self._fail(batch, error)

    def _producer_ids_needed(self) -> bool:
        """Hands the producer's id to new partitions; True if one must be fetched."""
        needed = False
        for queue in self.queues.values():
            if queue.producer_id == NO_PRODUCER_ID:
                queue.producer_id = self.producer_id
                queue.producer_epoch = self.producer_epoch
                needed = needed or self.producer_id == NO_PRODUCER_ID
            elif queue.reset_needed and not queue.in_flight:
                needed = True
        return needed

    async def _acquire_producer_ids(self) -> None:
        """The producer's id, and a fresh one for each partition whose sequence broke."""
        try:
            if self.producer_id == NO_PRODUCER_ID:
                self.producer_id, self.producer_epoch = await self._init_producer_id()
            for queue in list(self.queues.values()):
                if queue.reset_needed and not queue.in_flight:
                    self._restart(queue, *await self._init_producer_id())
        except ClientError:
            self.cluster.request_update()
            await trio.sleep(self.config.retry_backoff_ms / 1000)

    def _restart(self, queue: PartitionQueue, producer_id: int, producer_epoch: int) -> None:
        for batch in queue.restart_sequences(producer_id, producer_epoch):
            reason = f"{batch.tp}: sequence of producer {batch.producer_id} broke after a retry"
            batch.result.fail(final_error(OutcomeUnknown(reason), maybe_written=True))
            self.release(batch)

    async def _init_producer_id(self) -> tuple[int, int]:
        connection = await self.cluster.any_connection()
        body = {"transactional_id": None, "transaction_timeout_ms": TRANSACTION_TIMEOUT_MS}
        response = await connection.request(INIT_PRODUCER_ID, body)
        if response["error_code"] != Errors.NONE:
            raise kafka_error(response["error_code"], "InitProducerId")
        return response["producer_id"], response["producer_epoch"]
