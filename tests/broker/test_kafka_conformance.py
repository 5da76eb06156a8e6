"""What stock clients expect of Kafka's wire protocol, against one broker process (issue 11):
bytes after a complete request are ignored, a Fetch error row carries empty records (not
null), and an OffsetCommit for a partition that does not exist is refused per partition."""

from __future__ import annotations

import time
from typing import Any

import confluent_kafka
import pytest
from broker_wire import Wire
from confluent_kafka.admin import AdminClient, NewTopic

from impl.broker.apis import _fetch_partition
from impl.broker.partition import Partition
from impl.broker.process import BrokerProcess
from impl.protocol import API_KEYS, RequestHeader, decode_response, encode_request, encode_response
from impl.runtime.fs import MemoryFileSystem
from impl.storage.batch import Record, encode_batch
from impl.storage.log import PartitionLog
from model.config import Config
from model.errors import Errors

FETCH = API_KEYS["Fetch"]
# Every Fetch version the broker speaks that differs in the records field's encoding:
# v4 and v11 (int32 length, -1 = null), v12 (flexible: uvarint length+1, 0 = null).
FETCH_VERSIONS = (4, 11, 12)
FIRST_VERSION_WITH_LEADER_EPOCH = 9  # Fetch's current_leader_epoch (KIP-320)
DEADLINE_S = 30


@pytest.fixture
def wire(broker: BrokerProcess):
    connection = Wire(broker.bootstrap)
    yield connection
    connection.close()


def create(wire: Wire, name: str, partitions: int = 1) -> None:
    body = {"topics": [{"name": name, "num_partitions": partitions, "replication_factor": 1}]}
    assert wire.call("CreateTopics", 7, body)["topics"][0]["error_code"] == Errors.NONE


def produce(wire: Wire, topic: str, *values: bytes) -> None:
    records = encode_batch([Record(v, timestamp_ms=1000 + i) for i, v in enumerate(values)])
    body = {
        "acks": -1,
        "timeout_ms": 5_000,
        "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": records}]}],
    }
    row = wire.call("Produce", 9, body)["responses"][0]["partition_responses"][0]
    assert row["error_code"] == Errors.NONE


def fetch_body(topic: str, offset: int, leader_epoch: int = -1) -> dict[str, Any]:
    partition = {
        "partition": 0,
        "fetch_offset": offset,
        "partition_max_bytes": 1 << 20,
        "current_leader_epoch": leader_epoch,
    }
    return {
        "replica_id": -1,
        "max_wait_ms": 0,
        "min_bytes": 0,
        "max_bytes": 1 << 20,
        "topics": [{"topic": topic, "partitions": [partition]}],
    }


# ---- trailing bytes ------------------------------------------------------------------


def test_metadata_v12_with_three_trailing_bytes_gets_a_normal_answer(wire: Wire) -> None:
    create(wire, "trailing")
    # What librdkafka 2.15+ sends for "all topics": a whole v12 body and 3 bytes more.
    frame = encode_request(API_KEYS["Metadata"], 12, 41, "rdkafka", {"topics": None})
    wire.send_raw((len(frame) - 4 + 3).to_bytes(4, "big") + frame[4:] + b"\x00\x00\x00")
    answer = wire.receive_frame()
    assert answer is not None, "the broker closed the connection"
    correlation_id, body = decode_response(API_KEYS["Metadata"], 12, answer)
    assert correlation_id == 41
    assert "trailing" in [t["name"] for t in body["topics"]]
    assert wire.call("Metadata", 12, {"topics": None})["topics"], "the connection still works"


def test_a_truncated_request_still_closes_the_connection(wire: Wire) -> None:
    frame = encode_request(API_KEYS["Metadata"], 12, 42, "c", {"topics": [{"name": "abcdef"}]})
    wire.send_raw((len(frame) - 4 - 3).to_bytes(4, "big") + frame[4:-3])
    assert wire.closed_by_peer()


def test_confluent_kafka_lists_topics_produces_and_consumes(broker: BrokerProcess) -> None:
    common = {"bootstrap.servers": broker.bootstrap}
    admin = AdminClient(common)
    future = admin.create_topics([NewTopic("ck-conformance", 1, 1)])
    assert future["ck-conformance"].result(DEADLINE_S) is None
    assert "ck-conformance" in admin.list_topics(timeout=DEADLINE_S).topics
    producer = confluent_kafka.Producer(common | {"acks": "all"})
    for n in range(5):
        producer.produce("ck-conformance", value=b"v%d" % n)
    assert producer.flush(DEADLINE_S) == 0
    assert consume(broker, "ck-conformance", start=0, count=5) == [b"v%d" % n for n in range(5)]


def consume(broker: BrokerProcess, topic: str, start: int, count: int) -> list[bytes]:
    """`count` values read by a confluent-kafka consumer assigned at `start` (bounded)."""
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"{topic}-reader",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([confluent_kafka.TopicPartition(topic, 0, start)])
    values: list[bytes] = []
    deadline = time.monotonic() + DEADLINE_S
    try:
        while len(values) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            values.append(message.value())
    finally:
        consumer.close()
    return values


# ---- Fetch error rows ----------------------------------------------------------------


@pytest.mark.parametrize("version", FETCH_VERSIONS)
def test_fetch_errors_answer_empty_records_not_null(wire: Wire, version: int) -> None:
    topic = f"fetch-errors-v{version}"
    create(wire, topic)
    produce(wire, topic, b"a", b"b")
    cases = [
        (fetch_body(topic, 50), Errors.OFFSET_OUT_OF_RANGE),
        (fetch_body(f"{topic}-missing", 0), Errors.UNKNOWN_TOPIC_OR_PARTITION),
    ]
    if version >= FIRST_VERSION_WITH_LEADER_EPOCH:
        cases.append((fetch_body(topic, 0, leader_epoch=7), Errors.UNKNOWN_LEADER_EPOCH))
    for body, error in cases:
        row = wire.call("Fetch", version, body)["responses"][0]["partitions"][0]
        assert row["error_code"] == error
        assert row["records"] is not None and bytes(row["records"]) == b"", row["records"]


def _replica(broker_id: int) -> Partition:
    log = PartitionLog.open(MemoryFileSystem(), f"/data{broker_id}/t-0", Config())
    return Partition("t", 0, log, broker_id, (0, 1))


@pytest.mark.parametrize("version", FETCH_VERSIONS)
def test_not_leader_and_fenced_epoch_rows_encode_empty_records(version: int) -> None:
    # A follower and a leader at epoch 2, in memory: a single broker process leads all.
    follower = _replica(1)
    follower.become_follower(0, 2, 1, (0, 1), frozenset({0, 1}))
    leader = _replica(0)
    leader.become_leader(2, 1, (0, 1), frozenset({0, 1}), now_ms=0)
    cases = [(follower, -1, Errors.NOT_LEADER_OR_FOLLOWER)]
    if version >= FIRST_VERSION_WITH_LEADER_EPOCH:
        cases.append((leader, 1, Errors.FENCED_LEADER_EPOCH))
    for partition, epoch, error in cases:
        entry = fetch_body("t", 0, leader_epoch=epoch)["topics"][0]["partitions"][0]
        row = _fetch_partition(None, partition, entry, 1 << 20, -1, 0)  # type: ignore[arg-type]
        body = {"responses": [{"topic": "t", "partitions": [row]}]}
        frame = encode_response(RequestHeader(FETCH, version, 9, None), body)
        decoded = decode_response(FETCH, version, frame[4:])[1]["responses"][0]["partitions"][0]
        assert decoded["error_code"] == error
        assert decoded["records"] is not None and bytes(decoded["records"]) == b""


def test_confluent_consumer_past_the_end_resets_to_earliest(
    wire: Wire, broker: BrokerProcess
) -> None:
    create(wire, "past-the-end")
    produce(wire, "past-the-end", b"r0", b"r1", b"r2")
    assert consume(broker, "past-the-end", start=1000, count=3) == [b"r0", b"r1", b"r2"]


# ---- OffsetCommit for partitions that do not exist -----------------------------------


def test_offset_commit_refuses_a_missing_topic_or_partition_and_stores_nothing(
    wire: Wire,
) -> None:
    create(wire, "committed", partitions=2)
    body = {
        "group_id": "commit-check",
        "generation_id_or_member_epoch": -1,
        "member_id": "",
        "topics": [
            {
                "name": "committed",
                "partitions": [
                    {"partition_index": 1, "committed_offset": 5},
                    {"partition_index": 2, "committed_offset": 6},
                ],
            },
            {
                "name": "no-such-topic",
                "partitions": [{"partition_index": 0, "committed_offset": 7}],
            },
        ],
    }
    answer = wire.call("OffsetCommit", 8, body)["topics"]
    errors = {
        (t["name"], p["partition_index"]): p["error_code"] for t in answer for p in t["partitions"]
    }
    assert errors == {
        ("committed", 1): Errors.NONE,
        ("committed", 2): Errors.UNKNOWN_TOPIC_OR_PARTITION,
        ("no-such-topic", 0): Errors.UNKNOWN_TOPIC_OR_PARTITION,
    }
    wanted = [
        {"name": "committed", "partition_indexes": [1, 2]},
        {"name": "no-such-topic", "partition_indexes": [0]},
    ]
    fetched = wire.call("OffsetFetch", 7, {"group_id": "commit-check", "topics": wanted})
    offsets = {
        (t["name"], p["partition_index"]): p["committed_offset"]
        for t in fetched["topics"]
        for p in t["partitions"]
    }
    assert offsets == {("committed", 1): 5, ("committed", 2): -1, ("no-such-topic", 0): -1}


def test_confluent_commit_reports_the_missing_topic_per_partition(
    wire: Wire, broker: BrokerProcess
) -> None:
    create(wire, "ck-committed")
    reports: list[tuple[Any, list[confluent_kafka.TopicPartition]]] = []
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "ck-missing",
            "on_commit": lambda error, partitions: reports.append((error, partitions)),
        }
    )
    existing = confluent_kafka.TopicPartition("ck-committed", 0, 3)
    try:
        consumer.commit(
            offsets=[existing, confluent_kafka.TopicPartition("ck-no-such-topic", 0, 3)],
            asynchronous=True,
        )
        deadline = time.monotonic() + DEADLINE_S
        while not reports and time.monotonic() < deadline:
            consumer.poll(0.2)
        assert reports, "no commit callback"
        error, partitions = reports[0]
        missing = {p.topic: p.error for p in partitions}["ck-no-such-topic"]
        committed = consumer.committed([existing], timeout=DEADLINE_S)[0].offset
    finally:
        consumer.close()
    assert error.code() == confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART
    assert (
        missing is not None and missing.code() == confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART
    )
    # librdkafka marks every partition of a commit that had an error, but the broker
    # stored the one that exists.
    assert committed == 3
