"""Stock clients against the codec: kafka-python and confluent-kafka (librdkafka) produce,
consume in a group, commit and list offsets through tests/protocol/fake_broker.py.

This is how SUPPORTED was chosen and is kept honest: the versions each client sends are
recorded and compared with what the pinned client releases are known to send.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import trio
from fake_broker import FakeBroker

from impl.protocol import API_KEYS, SUPPORTED

TOPIC = "events"
MESSAGES = [f"value-{i}".encode() for i in range(10)]
CLIENT_TIMEOUT_SECONDS = 20
TEST_TIMEOUT_SECONDS = 60

# What each pinned release sends when offered SUPPORTED (one version per API).
LIBRDKAFKA_2_16 = {
    "ApiVersions": 3,
    "Metadata": 12,
    "CreateTopics": 4,
    "InitProducerId": 4,
    "Produce": 10,
    "FindCoordinator": 2,
    "JoinGroup": 5,
    "SyncGroup": 3,
    "Heartbeat": 3,
    "OffsetFetch": 9,
    "OffsetCommit": 9,
    "ListOffsets": 7,
    "Fetch": 12,
    "LeaveGroup": 1,
}
KAFKA_PYTHON_3_0_12 = {
    "ApiVersions": 4,
    "Metadata": 12,
    "CreateTopics": 7,
    "InitProducerId": 4,
    "Produce": 9,
    "FindCoordinator": 4,
    "JoinGroup": 7,
    "SyncGroup": 5,
    "OffsetFetch": 8,
    "OffsetCommit": 8,
    "ListOffsets": 7,
    "Fetch": 12,
    "LeaveGroup": 5,
}


def confluent_session(port: int) -> list[bytes]:
    import confluent_kafka
    from confluent_kafka.admin import AdminClient, NewTopic

    servers = {"bootstrap.servers": f"127.0.0.1:{port}"}
    admin = AdminClient(servers)
    for future in admin.create_topics([NewTopic(TOPIC, 1, 1)]).values():
        future.result(CLIENT_TIMEOUT_SECONDS)
    producer = confluent_kafka.Producer({**servers, "enable.idempotence": True})
    for value in MESSAGES:
        producer.produce(TOPIC, value=value, key=b"k")
    assert producer.flush(CLIENT_TIMEOUT_SECONDS) == 0
    consumer = confluent_kafka.Consumer(
        {**servers, "group.id": "g", "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )
    consumer.subscribe([TOPIC])
    received: list[bytes] = []
    deadline = time.monotonic() + CLIENT_TIMEOUT_SECONDS
    while len(received) < len(MESSAGES) and time.monotonic() < deadline:
        message = consumer.poll(0.1)
        if message is not None and message.error() is None:
            received.append(message.value())
    consumer.commit(asynchronous=False)
    partition = confluent_kafka.TopicPartition(TOPIC, 0)
    assert consumer.committed([partition], timeout=CLIENT_TIMEOUT_SECONDS)[0].offset == 10
    assert consumer.get_watermark_offsets(partition, timeout=CLIENT_TIMEOUT_SECONDS) == (0, 10)
    consumer.close()
    return received


def kafka_python_session(port: int) -> list[bytes]:
    import kafka
    from kafka.admin import KafkaAdminClient, NewTopic

    servers = f"127.0.0.1:{port}"
    admin = KafkaAdminClient(bootstrap_servers=servers)
    admin.create_topics([NewTopic(TOPIC, 1, 1)])
    admin.close()
    producer = kafka.KafkaProducer(bootstrap_servers=servers, enable_idempotence=True)
    for value in MESSAGES:
        producer.send(TOPIC, value=value, key=b"k")
    producer.flush(CLIENT_TIMEOUT_SECONDS)
    producer.close()
    consumer = kafka.KafkaConsumer(
        TOPIC,
        bootstrap_servers=servers,
        group_id="g",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=CLIENT_TIMEOUT_SECONDS * 1000,
    )
    received = [message.value for _, message in zip(MESSAGES, consumer, strict=False)]
    consumer.commit()
    partition = kafka.TopicPartition(TOPIC, 0)
    assert consumer.end_offsets([partition]) == {partition: 10}
    consumer.close()
    return received


def run_against_fake_broker(
    session: Callable[[int], list[bytes]],
) -> tuple[FakeBroker, list[bytes]]:
    broker = FakeBroker()
    outcome: list[list[bytes]] = []

    async def main() -> None:
        with trio.fail_after(TEST_TIMEOUT_SECONDS):
            async with trio.open_nursery() as nursery:
                port = await nursery.start(broker.serve)
                outcome.append(await trio.to_thread.run_sync(session, port))
                nursery.cancel_scope.cancel()

    trio.run(main)
    return broker, outcome[0]


def _versions(broker: FakeBroker) -> dict[str, int]:
    used = broker.versions_used()
    assert all(len(versions) == 1 for versions in used.values()), used
    return {name: versions.pop() for name, versions in used.items()}


def test_confluent_kafka_produces_and_consumes_in_a_group() -> None:
    confluent_kafka = pytest.importorskip("confluent_kafka")
    broker, received = run_against_fake_broker(confluent_session)
    assert received == MESSAGES
    assert broker.errors == []
    if confluent_kafka.libversion()[0] == "2.16.0":
        assert _versions(broker) == LIBRDKAFKA_2_16


def test_kafka_python_produces_and_consumes_in_a_group() -> None:
    kafka = pytest.importorskip("kafka")
    broker, received = run_against_fake_broker(kafka_python_session)
    assert received == MESSAGES
    assert broker.errors == []
    if kafka.__version__ == "3.0.12":
        assert _versions(broker) == KAFKA_PYTHON_3_0_12


@pytest.mark.parametrize(
    ("module", "session", "fallback"),
    [("confluent_kafka", confluent_session, 0), ("kafka", kafka_python_session, 2)],
)
def test_clients_recover_from_an_unsupported_api_versions_request(
    monkeypatch: pytest.MonkeyPatch,
    module: str,
    session: Callable[[int], list[bytes]],
    fallback: int,
) -> None:
    pytest.importorskip(module)
    monkeypatch.setitem(SUPPORTED, API_KEYS["ApiVersions"], (0, 2))
    broker, received = run_against_fake_broker(session)
    assert received == MESSAGES
    assert broker.versions_used()["ApiVersions"] == {fallback}
    assert all("ApiVersionsRequest" in error for error in broker.errors)
