"""Faults: lost responses (idempotent retries), and a broker killed mid-produce."""

from __future__ import annotations

import signal
import struct
from collections import Counter
from pathlib import Path

import trio
from client_support import SINGLE_BROKER_CONFIG, config, consume_all, new_topic, run

from impl.broker.process import BrokerProcess, start_broker
from impl.client.connection import Connection
from impl.client.errors import DefiniteFailure, OutcomeUnknown
from impl.client.producer import Delivery, Producer
from impl.protocol import API_KEYS
from impl.runtime.net import Handler, TcpNetwork
from impl.runtime.runtime import Runtime
from impl.storage.batch import Codec, Record, encode_batch
from model.errors import Errors

PRODUCE = API_KEYS["Produce"]
INIT_PRODUCER_ID = API_KEYS["InitProducerId"]


class _LoseResponses(trio.abc.Stream):
    """Loses the response to a Produce request, while drops are left: the broker
    appends and answers, the client sees its connection break instead."""

    def __init__(self, inner: trio.abc.Stream, network: LosingNetwork) -> None:
        self.inner = inner
        self.network = network
        self.deaf = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        (api_key,) = struct.unpack_from(">h", data, 4)
        if api_key == PRODUCE and self.network.drops_left > 0 and not self.deaf:
            self.network.drops_left -= 1
            self.deaf = True
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self.inner.receive_some(max_bytes)
        if self.deaf:
            # An answer came, so the broker has appended: drop it with the connection.
            await self.inner.aclose()
            raise trio.BrokenResourceError("response lost on purpose")
        return data

    async def aclose(self) -> None:
        await self.inner.aclose()


class LosingNetwork:
    def __init__(self, drops: int) -> None:
        self.drops_left = drops
        self.tcp = TcpNetwork()

    async def serve(
        self,
        handler: Handler,
        host: str,
        port: int,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        await self.tcp.serve(handler, host, port, task_status=task_status)

    async def connect(self, host: str, port: int) -> trio.abc.Stream:
        return _LoseResponses(await self.tcp.connect(host, port), self)


def _produce_through_lost_responses(
    bootstrap: str, idempotent: bool
) -> tuple[list[Delivery], Counter[bytes]]:
    async def main(runtime: Runtime) -> tuple[list[Delivery], Counter[bytes]]:
        topic = await new_topic(runtime, bootstrap, 1)
        network = LosingNetwork(drops=3)
        runtime.net = network
        producer_config = config(
            "acks=all",
            f"enable.idempotence={str(idempotent).lower()}",
            "batch.size=600",
            "linger.ms=0",
            "retry.backoff.ms=10",
        )
        async with Producer(runtime, bootstrap, producer_config) as producer:
            deliveries = [await producer.send(topic, b"%05d" % i, partition=0) for i in range(300)]
        assert network.drops_left == 0, "every planned fault happened"
        runtime.net = TcpNetwork()
        records = await consume_all(runtime, bootstrap, topic, 1, 400)
        return deliveries, Counter(record.value for record in records)

    return run(main)


def test_idempotent_retries_after_lost_responses_do_not_duplicate(
    broker: BrokerProcess,
) -> None:
    deliveries, seen = _produce_through_lost_responses(broker.bootstrap, idempotent=True)
    offsets = [delivery.metadata().offset for delivery in deliveries]
    assert offsets == list(range(300)), "each record once, at the offset it was told"
    assert seen == Counter(b"%05d" % i for i in range(300))


def test_without_idempotence_the_same_faults_duplicate(broker: BrokerProcess) -> None:
    deliveries, seen = _produce_through_lost_responses(broker.bootstrap, idempotent=False)
    assert all(delivery.metadata().offset >= 0 for delivery in deliveries)
    assert set(seen) == {b"%05d" % i for i in range(300)}
    assert max(seen.values()) >= 2, "a retried batch was appended again"


def test_resending_a_batch_returns_its_original_offsets(broker: BrokerProcess) -> None:
    async def main(runtime: Runtime) -> None:
        topic = await new_topic(runtime, broker.bootstrap, 1)
        async with trio.open_nursery() as nursery:
            host, port = broker.host, broker.port
            connection = await Connection.open(
                runtime, nursery, host, port, client_id="test", request_timeout_ms=5_000
            )
            answer = await connection.request(
                INIT_PRODUCER_ID, {"transactional_id": None, "transaction_timeout_ms": 60_000}
            )
            records = [Record(b"%d" % i) for i in range(5)]
            batch = encode_batch(
                records,
                codec=Codec.LZ4,
                producer_id=answer["producer_id"],
                producer_epoch=answer["producer_epoch"],
                base_sequence=0,
            )
            body = {
                "acks": -1,
                "timeout_ms": 5_000,
                "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": batch}]}],
            }
            rows = [
                (await connection.request(PRODUCE, body))["responses"][0]["partition_responses"][0]
                for _ in range(3)
            ]
            assert [(r["error_code"], r["base_offset"]) for r in rows] == [(Errors.NONE, 0)] * 3
            nursery.cancel_scope.cancel()

    run(main)


def test_killed_broker_never_yields_a_false_success(tmp_path: Path) -> None:
    """Records in flight when the broker dies end OutcomeUnknown or DefiniteFailure; every
    success is in the log after a restart, and no DefiniteFailure is."""
    data_dir = tmp_path / "data"
    broker = start_broker(0, data_dir, config=SINGLE_BROKER_CONFIG)
    try:
        topic, deliveries, stopped_at = _produce_while_killing(broker)
    finally:
        broker.kill()
    restarted = start_broker(0, data_dir, config=SINGLE_BROKER_CONFIG)
    try:
        in_log = _values_in_log(restarted.bootstrap, topic, len(deliveries))
    finally:
        restarted.stop()
    outcomes: Counter[str] = Counter()
    for index, delivery in enumerate(deliveries):
        value = b"%06d" % index
        try:
            metadata = delivery.metadata()
        except OutcomeUnknown:
            outcomes["unknown"] += 1
            continue
        except DefiniteFailure:
            outcomes["failed"] += 1
            assert value not in in_log, f"record {index} failed definitely yet is in the log"
            continue
        outcomes["ok"] += 1
        assert index < stopped_at, f"record {index} was sent to a dead broker, yet succeeded"
        assert in_log.get(value) == (metadata.partition, metadata.offset)
    assert outcomes["ok"] >= 100 and outcomes["failed"] >= 100, outcomes
    assert outcomes["unknown"] >= 1, f"requests sent to the stopped broker: {outcomes}"


def _produce_while_killing(broker: BrokerProcess) -> tuple[str, list[Delivery], int]:
    """Send until 100 records succeeded; stop the broker (SIGSTOP) and send 100 more, which
    go out and stay unanswered; kill it and send 100 more. Wait for every outcome."""

    async def main(runtime: Runtime) -> tuple[str, list[Delivery], int]:
        topic = await new_topic(runtime, broker.bootstrap, 2)
        producer_config = config(
            "acks=all",
            "linger.ms=2",
            "request.timeout.ms=500",
            "delivery.timeout.ms=1500",
            "retry.backoff.ms=50",
        )
        deliveries: list[Delivery] = []

        async def send(count: int) -> None:
            for _ in range(count):
                deliveries.append(await producer.send(topic, b"%06d" % len(deliveries)))
                await trio.sleep(0.001)

        async with Producer(runtime, broker.bootstrap, producer_config) as producer:
            while sum(1 for d in deliveries if d.done()) < 100:
                await send(1)
            broker.signal(signal.SIGSTOP)
            stopped_at = len(deliveries)
            await send(100)
            broker.kill()
            await send(100)
        assert all(delivery.done() for delivery in deliveries)
        return topic, deliveries, stopped_at

    return run(main)


def _values_in_log(bootstrap: str, topic: str, expected_max: int) -> dict[bytes, tuple[int, int]]:
    async def main(runtime: Runtime) -> dict[bytes, tuple[int, int]]:
        records = await consume_all(runtime, bootstrap, topic, 2, expected_max)
        assert len({r.value for r in records}) == len(records), "no duplicates"
        return {r.value: (r.partition, r.offset) for r in records if r.value is not None}

    return run(main)
