"""A broker process restarted on a damaged segment says what its recovery cut, in its
own log output, and keeps the cut bytes next to the segment."""

from __future__ import annotations

from pathlib import Path

from broker_wire import SINGLE_BROKER_CONFIG, Wire
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from impl.broker.process import start_broker
from impl.protocol import API_KEYS, SUPPORTED
from impl.storage.batch import HEADER_SIZE_BYTES, Record, encode_batch, iter_batches
from model.errors import Errors

TOPIC = "damaged"
BATCHES = 10
TIMEOUT_S = 10
PRODUCE_V = SUPPORTED[API_KEYS["Produce"]][1]
FETCH_V = 12


def _produce_batches(bootstrap: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT_S * 1000)
    admin.create_topics([NewTopic(TOPIC, 1, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    for i in range(BATCHES):
        producer.send(TOPIC, value=b"record-%d" % i).get(timeout=TIMEOUT_S)
    producer.close(timeout=TIMEOUT_S)


def _end_offset(bootstrap: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT_S * 1000)
    partition = TopicPartition(TOPIC, 0)
    end = consumer.end_offsets([partition])[partition]
    consumer.close()
    return end


def test_a_restart_on_a_flipped_byte_logs_the_cut_in_the_broker_output(tmp_path: Path):
    data_dir = tmp_path / "data"
    broker = start_broker(0, data_dir, config=SINGLE_BROKER_CONFIG)
    try:
        _produce_batches(broker.bootstrap)
    finally:
        assert broker.stop() == 0, broker.log_path.read_text()[-2000:]

    segment = data_dir / f"{TOPIC}-0" / f"{0:020d}.log"
    original = segment.read_bytes()
    positions = [p for p, _ in iter_batches(original)]
    assert len(positions) == BATCHES
    position = positions[BATCHES // 2]
    damaged = bytearray(original)
    damaged[position + HEADER_SIZE_BYTES + 3] ^= 0x40
    segment.write_bytes(damaged)

    restarted = start_broker(0, data_dir, config=SINGLE_BROKER_CONFIG)
    try:
        end_offset = _end_offset(restarted.bootstrap)
    finally:
        assert restarted.stop() == 0, restarted.log_path.read_text()[-2000:]

    first_dropped = BATCHES // 2
    aside = segment.with_name(f"{segment.name}.{first_dropped}.corrupt")
    [warning] = [
        line for line in restarted.log_path.read_text().splitlines() if " WARNING " in line
    ]
    assert (
        f"broker 0 WARNING partition {TOPIC}-0: recovery cut {segment} at position "
        f"{position}: first dropped offset {first_dropped}, {len(original) - position} bytes "
        f"dropped (moved to {aside.name}): CRC-32C is 0x"
    ) in warning
    assert end_offset == first_dropped
    assert aside.read_bytes() == damaged[position:]


def _fetch_both(wire: Wire, topic: str, offset: int) -> dict[int, dict]:
    """Partition 0 from `offset`, partition 1 from 0, in one request."""
    body = {
        "replica_id": -1,
        "max_wait_ms": 0,
        "min_bytes": 0,
        "max_bytes": 1 << 20,
        "topics": [
            {
                "topic": topic,
                "partitions": [
                    {"partition": p, "fetch_offset": o, "partition_max_bytes": 1 << 20}
                    for p, o in ((0, offset), (1, 0))
                ],
            }
        ],
    }
    rows = wire.call("Fetch", FETCH_V, body)["responses"][0]["partitions"]
    return {row["partition_index"]: row for row in rows}


def test_damage_found_by_a_read_answers_that_partition_alone(tmp_path: Path):
    """A trusted (not rescanned) segment with a flipped byte: the fetch answers
    CORRUPT_MESSAGE for that partition, serves the other on the same connection, and the
    broker says once where the damage is."""
    data_dir = tmp_path / "data"
    topic = "damaged-read"
    broker = start_broker(0, data_dir, config=SINGLE_BROKER_CONFIG)
    try:
        wire = Wire(broker.bootstrap)
        created = wire.call(
            "CreateTopics",
            7,
            {
                "topics": [
                    {
                        "name": topic,
                        "num_partitions": 2,
                        "replication_factor": 1,
                        "configs": [{"name": "segment.bytes", "value": "1000"}],
                    }
                ]
            },
        )
        assert created["topics"][0]["error_code"] == Errors.NONE
        for i in range(BATCHES * 2):
            records = encode_batch([Record(b"value-%03d" % i + b"x" * 100)], base_offset=0)
            body = {
                "acks": -1,
                "timeout_ms": 5_000,
                "topic_data": [
                    {"name": topic, "partition_data": [{"index": i % 2, "records": records}]}
                ],
            }
            row = wire.call("Produce", PRODUCE_V, body)["responses"][0]["partition_responses"][0]
            assert row["error_code"] == Errors.NONE
        wire.close()
    finally:
        assert broker.stop() == 0, broker.log_path.read_text()[-2000:]

    segment = data_dir / f"{topic}-0" / f"{0:020d}.log"
    assert (data_dir / f"{topic}-0" / f"{BATCHES // 2:020d}.log").exists(), "closed, trusted"
    positions = [p for p, _ in iter_batches(segment.read_bytes())]
    damaged = bytearray(segment.read_bytes())
    damaged[positions[1] + HEADER_SIZE_BYTES + 3] ^= 0x40
    segment.write_bytes(damaged)

    restarted = start_broker(0, data_dir, config=SINGLE_BROKER_CONFIG)
    try:
        wire = Wire(restarted.bootstrap)
        # The read from 0 ends before the damaged batch; the next one starts there.
        rows = _fetch_both(wire, topic, 0)
        assert [h.base_offset for _, h in iter_batches(rows[0]["records"])] == [0]
        for _ in range(3):
            rows = _fetch_both(wire, topic, 1)
            assert rows[0]["error_code"] == Errors.CORRUPT_MESSAGE
            assert rows[1]["error_code"] == Errors.NONE and rows[1]["records"]
        wire.close()
    finally:
        assert restarted.stop() == 0, restarted.log_path.read_text()[-2000:]
    warnings = [line for line in restarted.log_path.read_text().splitlines() if " WARNING " in line]
    assert len(warnings) == 1, warnings
    assert (
        f"partition {topic}-0: a read from offset 1 answers CORRUPT_MESSAGE: corrupt record "
        f"batch in {segment} "
        f"at position {positions[1]} (offset 1): CRC-32C is"
    ) in warnings[0]
