"""A broker process restarted on a damaged segment says what its recovery cut, in its
own log output, and keeps the cut bytes next to the segment."""

from __future__ import annotations

from pathlib import Path

from broker_wire import SINGLE_BROKER_CONFIG
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from impl.broker.process import start_broker
from impl.storage.batch import HEADER_SIZE_BYTES, iter_batches

TOPIC = "damaged"
BATCHES = 10
TIMEOUT_S = 10


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
