"""Features replog lacks are refused with codes stock clients do not retry: a codec
other than none/lz4 gets UNSUPPORTED_COMPRESSION_TYPE, anything transactional
TRANSACTIONAL_ID_AUTHORIZATION_FAILED; both clients fail within seconds, not at their
timeouts, and idempotent producers keep working."""

from __future__ import annotations

import gzip
import struct
import time

import confluent_kafka
import crc32c
import kafka.errors
import pytest
from broker_wire import Wire
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaProducer

from impl.broker.process import BrokerProcess
from impl.protocol import API_KEYS, SUPPORTED
from impl.storage.batch import HEADER_SIZE_BYTES, Codec, Record, encode_batch
from model.errors import Errors

PRODUCE_V = SUPPORTED[API_KEYS["Produce"]][1]
FIND_COORDINATOR_V = SUPPORTED[API_KEYS["FindCoordinator"]][1]
TOPIC = "refusals"
# Far above what a refusal may take: a client that retried would still be retrying.
CLIENT_TIMEOUT_MS = 60_000
FAIL_FAST_S = 10
_ATTRIBUTES_AT = 21
_CRC_AT = 17


@pytest.fixture(scope="module")
def topic(broker: BrokerProcess) -> str:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for future in admin.create_topics([NewTopic(TOPIC, 1, 1)]).values():
        assert future.result(FAIL_FAST_S) is None
    return TOPIC


@pytest.fixture
def wire(broker: BrokerProcess):
    connection = Wire(broker.bootstrap)
    yield connection
    connection.close()


def _gzip_batch() -> bytes:
    """A v2 batch whose records section is gzip-compressed, as a Kafka producer writes it."""
    plain = encode_batch([Record(b"compressed")], base_offset=0)
    body = gzip.compress(plain[HEADER_SIZE_BYTES:])
    head = bytearray(plain[:HEADER_SIZE_BYTES])
    struct.pack_into(">i", head, 8, HEADER_SIZE_BYTES - 12 + len(body))
    (attributes,) = struct.unpack_from(">h", head, _ATTRIBUTES_AT)
    struct.pack_into(">h", head, _ATTRIBUTES_AT, attributes | Codec.GZIP)
    batch = bytes(head) + body
    crc = struct.pack(">I", crc32c.crc32c(batch[_ATTRIBUTES_AT:]))
    return batch[:_CRC_AT] + crc + batch[_ATTRIBUTES_AT:]


def _produce(wire: Wire, batch: bytes, transactional_id: str | None = None) -> dict:
    body = {
        "transactional_id": transactional_id,
        "acks": -1,
        "timeout_ms": 1_000,
        "topic_data": [{"name": TOPIC, "partition_data": [{"index": 0, "records": batch}]}],
    }
    return wire.call("Produce", PRODUCE_V, body)["responses"][0]["partition_responses"][0]


def test_wire_codes_for_a_codec_and_transactions(topic: str, wire: Wire):
    assert _produce(wire, _gzip_batch())["error_code"] == Errors.UNSUPPORTED_COMPRESSION_TYPE
    transactional = encode_batch(
        [Record(b"in a transaction")],
        base_offset=0,
        producer_id=7,
        producer_epoch=0,
        base_sequence=0,
        is_transactional=True,
    )
    refused = _produce(wire, transactional)
    assert refused["error_code"] == Errors.TRANSACTIONAL_ID_AUTHORIZATION_FAILED

    def coordinator(key_type: int) -> dict:
        body = {"key_type": key_type, "coordinator_keys": ["tx-1"]}
        return wire.call("FindCoordinator", FIND_COORDINATOR_V, body)["coordinators"][0]

    found = coordinator(1)
    assert found["error_code"] == Errors.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    assert "unset transactional.id" in found["error_message"]
    assert coordinator(2)["error_code"] == Errors.INVALID_REQUEST
    # Nothing refused reached the log; a plain batch still goes in at offset 0.
    accepted = _produce(wire, encode_batch([Record(b"plain")], base_offset=0))
    assert (accepted["error_code"], accepted["base_offset"]) == (Errors.NONE, 0)


def test_kafka_python_gets_a_non_retriable_codec_error_at_once(topic: str, broker: BrokerProcess):
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        compression_type="gzip",
        acks="all",
        delivery_timeout_ms=CLIENT_TIMEOUT_MS,
        request_timeout_ms=CLIENT_TIMEOUT_MS - 1,
    )
    started = time.monotonic()
    with pytest.raises(kafka.errors.UnsupportedCompressionTypeError):
        # Compressible: kafka-python sends a batch uncompressed when gzip would not shrink it.
        producer.send(topic, b"gzip " * 100).get(timeout=FAIL_FAST_S)
    assert time.monotonic() - started < FAIL_FAST_S
    producer.close(timeout=FAIL_FAST_S)


def test_kafka_python_transactional_producer_fails_fast(topic: str, broker: BrokerProcess):
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        transactional_id="kafka-python-tx",
        max_block_ms=CLIENT_TIMEOUT_MS,
    )
    started = time.monotonic()
    with pytest.raises(kafka.errors.TransactionalIdAuthorizationFailedError):
        producer.init_transactions()
    assert time.monotonic() - started < FAIL_FAST_S
    producer.close(timeout=FAIL_FAST_S)


@pytest.mark.parametrize("codec", ["gzip", "snappy", "zstd"])
def test_confluent_kafka_gets_a_non_retriable_codec_error_at_once(
    topic: str, broker: BrokerProcess, codec: str
):
    errors: list[confluent_kafka.KafkaError] = []
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "compression.codec": codec,
            "message.timeout.ms": CLIENT_TIMEOUT_MS,
        }
    )
    started = time.monotonic()
    producer.produce(topic, b"compressed " * 20, on_delivery=lambda e, _: errors.append(e))
    while not errors and time.monotonic() - started < FAIL_FAST_S:
        producer.poll(0.1)
    assert time.monotonic() - started < FAIL_FAST_S, "still retrying"
    [error] = errors
    assert error.code() == confluent_kafka.KafkaError.UNSUPPORTED_COMPRESSION_TYPE, error
    assert not error.retriable()


def test_confluent_kafka_transactional_producer_fails_fast(topic: str, broker: BrokerProcess):
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "transactional.id": "librdkafka-tx",
            "transaction.timeout.ms": CLIENT_TIMEOUT_MS,
        }
    )
    started = time.monotonic()
    with pytest.raises(confluent_kafka.KafkaException) as caught:
        producer.init_transactions(CLIENT_TIMEOUT_MS / 1000)
    assert time.monotonic() - started < FAIL_FAST_S
    error = caught.value.args[0]
    assert error.code() == confluent_kafka.KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, error
    assert error.fatal() and not error.retriable()
    assert "unset transactional.id" in error.str()


def test_confluent_kafka_idempotent_producer_still_delivers(topic: str, broker: BrokerProcess):
    delivered: list[int] = []
    errors: list[confluent_kafka.KafkaError] = []

    def on_delivery(error: confluent_kafka.KafkaError | None, message) -> None:
        if error is not None:
            errors.append(error)
        else:
            delivered.append(message.offset())

    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "enable.idempotence": True,
            "compression.codec": "lz4",
            "linger.ms": 5,
        }
    )
    for i in range(200):
        producer.produce(topic, b"idempotent-%d" % i, on_delivery=on_delivery)
    assert producer.flush(FAIL_FAST_S) == 0
    assert errors == []
    assert len(delivered) == 200 and delivered == sorted(delivered)
    assert delivered[-1] - delivered[0] == 199
