"""What replog refuses, with codes stock clients do not retry: a batch whose codec id no
Kafka defines gets UNSUPPORTED_COMPRESSION_TYPE, anything transactional
TRANSACTIONAL_ID_AUTHORIZATION_FAILED; both clients fail within seconds, not at their
timeouts, and idempotent producers keep working. (Every Kafka codec is accepted:
tests/client/test_compression.py.)"""

from __future__ import annotations

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
from impl.storage.batch import Record, encode_batch
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


def _batch_with_codec_id(codec_id: int) -> bytes:
    """A v2 batch whose attributes name `codec_id`, CRC valid."""
    batch = bytearray(encode_batch([Record(b"compressed")], base_offset=0))
    (attributes,) = struct.unpack_from(">h", batch, _ATTRIBUTES_AT)
    struct.pack_into(">h", batch, _ATTRIBUTES_AT, attributes | codec_id)
    struct.pack_into(">I", batch, _CRC_AT, crc32c.crc32c(bytes(batch[_ATTRIBUTES_AT:])))
    return bytes(batch)


def _produce(wire: Wire, batch: bytes, transactional_id: str | None = None) -> dict:
    body = {
        "transactional_id": transactional_id,
        "acks": -1,
        "timeout_ms": 1_000,
        "topic_data": [{"name": TOPIC, "partition_data": [{"index": 0, "records": batch}]}],
    }
    return wire.call("Produce", PRODUCE_V, body)["responses"][0]["partition_responses"][0]


def test_wire_codes_for_an_unknown_codec_and_transactions(topic: str, wire: Wire):
    refused = _produce(wire, _batch_with_codec_id(5))
    assert refused["error_code"] == Errors.UNSUPPORTED_COMPRESSION_TYPE
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
