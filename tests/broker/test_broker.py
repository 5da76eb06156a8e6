"""One broker process over the wire: each API's answers, limits, and bad input."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
from broker_wire import SINGLE_BROKER_CONFIG, Wire

from impl.broker.process import BrokerProcess, start_broker
from impl.protocol import API_KEYS, SUPPORTED, encode_request
from impl.storage.batch import Codec, Record, decode_records, encode_batch, iter_batches
from model.errors import Errors

PRODUCE_V = SUPPORTED[API_KEYS["Produce"]][1]
FETCH_V = 12
LIST_OFFSETS_V = SUPPORTED[API_KEYS["ListOffsets"]][1]


@pytest.fixture
def wire(broker: BrokerProcess):
    connection = Wire(broker.bootstrap)
    yield connection
    connection.close()


def create(wire: Wire, name: str, partitions: int = 1, **fields) -> dict:
    body = {"topics": [{"name": name, "num_partitions": partitions, "replication_factor": 1}]}
    body["topics"][0].update(fields)
    return wire.call("CreateTopics", 7, body)["topics"][0]


def produce(wire: Wire, topic: str, batch: bytes, acks: int = -1, partition: int = 0) -> dict:
    body = {
        "acks": acks,
        "timeout_ms": 5_000,
        "topic_data": [{"name": topic, "partition_data": [{"index": partition, "records": batch}]}],
    }
    return wire.call("Produce", PRODUCE_V, body)["responses"][0]["partition_responses"][0]


def fetch(wire: Wire, topic: str, offset: int, max_wait_ms: int = 0, min_bytes: int = 0) -> dict:
    body = {
        "replica_id": -1,
        "max_wait_ms": max_wait_ms,
        "min_bytes": min_bytes,
        "max_bytes": 1 << 20,
        "topics": [
            {
                "topic": topic,
                "partitions": [
                    {"partition": 0, "fetch_offset": offset, "partition_max_bytes": 1 << 20}
                ],
            }
        ],
    }
    return wire.call("Fetch", FETCH_V, body)["responses"][0]["partitions"][0]


def batch(*values: bytes, codec: Codec = Codec.NONE, **producer) -> bytes:
    return encode_batch(
        [Record(v, timestamp_ms=1000 + i) for i, v in enumerate(values)], codec=codec, **producer
    )


def values(records: bytes) -> list[bytes]:
    out = []
    for position, header in iter_batches(records):
        out += [
            r.value for _, r in decode_records(records[position : position + header.size_bytes])
        ]
    return out


def test_api_versions_lists_every_handled_api(wire: Wire):
    response = wire.call(
        "ApiVersions", 3, {"client_software_name": "t", "client_software_version": "1"}
    )
    assert response["error_code"] == Errors.NONE
    listed = {k["api_key"]: (k["min_version"], k["max_version"]) for k in response["api_keys"]}
    for name in (
        "Produce",
        "Fetch",
        "ListOffsets",
        "Metadata",
        "ApiVersions",
        "CreateTopics",
        "InitProducerId",
    ):
        assert listed[API_KEYS[name]] == SUPPORTED[API_KEYS[name]]


def test_produce_then_fetch_round_trip_with_lz4(wire: Wire):
    assert create(wire, "round-trip")["error_code"] == Errors.NONE
    first = produce(wire, "round-trip", batch(b"a", b"b", codec=Codec.LZ4))
    second = produce(wire, "round-trip", batch(b"c"), acks=1)
    assert (first["error_code"], first["base_offset"]) == (Errors.NONE, 0)
    assert (second["error_code"], second["base_offset"]) == (Errors.NONE, 2)
    partition = fetch(wire, "round-trip", 0)
    assert partition["error_code"] == Errors.NONE and partition["high_watermark"] == 3
    assert values(partition["records"]) == [b"a", b"b", b"c"]
    assert values(fetch(wire, "round-trip", 2)["records"]) == [b"c"]


def test_acks_zero_gets_no_response_but_is_appended(wire: Wire):
    create(wire, "acks-zero")
    wire.correlation_id += 1
    body = {
        "acks": 0,
        "timeout_ms": 1000,
        "topic_data": [
            {"name": "acks-zero", "partition_data": [{"index": 0, "records": batch(b"x")}]}
        ],
    }
    wire.send_raw(encode_request(API_KEYS["Produce"], PRODUCE_V, wire.correlation_id, "t", body))
    assert values(fetch(wire, "acks-zero", 0)["records"]) == [b"x"]


def test_delayed_fetch_waits_for_data_or_max_wait(broker: BrokerProcess, wire: Wire):
    create(wire, "delayed")
    started = time.monotonic()
    empty = fetch(wire, "delayed", 0, max_wait_ms=300, min_bytes=1)
    assert empty["records"] in (b"", None) and time.monotonic() - started >= 0.25
    other = Wire(broker.bootstrap)
    try:
        timer = threading.Timer(0.2, lambda: produce(other, "delayed", batch(b"late")))
        timer.start()
        started = time.monotonic()
        woken = fetch(wire, "delayed", 0, max_wait_ms=5_000, min_bytes=1)
        timer.join()
    finally:
        other.close()
    assert values(woken["records"]) == [b"late"]
    assert time.monotonic() - started < 4, "the append must wake the waiting fetch"


def test_produce_errors_per_partition(wire: Wire):
    create(wire, "errors")
    assert (
        produce(wire, "no-such-topic", batch(b"x"))["error_code"]
        == Errors.UNKNOWN_TOPIC_OR_PARTITION
    )
    assert (
        produce(wire, "errors", batch(b"x"), partition=7)["error_code"]
        == Errors.UNKNOWN_TOPIC_OR_PARTITION
    )
    assert (
        produce(wire, "errors", batch(b"x"), acks=2)["error_code"] == Errors.INVALID_REQUIRED_ACKS
    )
    damaged = bytearray(batch(b"payload"))
    damaged[-2] ^= 0x55
    assert produce(wire, "errors", bytes(damaged))["error_code"] == Errors.CORRUPT_MESSAGE
    huge = batch(b"x" * 1_100_000)
    assert produce(wire, "errors", huge)["error_code"] == Errors.MESSAGE_TOO_LARGE
    assert fetch(wire, "errors", 0)["high_watermark"] == 0, "nothing was appended"
    assert fetch(wire, "errors", 5)["error_code"] == Errors.OFFSET_OUT_OF_RANGE


def test_idempotent_producer_over_the_wire(wire: Wire):
    create(wire, "idempotent")
    init = wire.call(
        "InitProducerId", 4, {"transactional_id": None, "transaction_timeout_ms": 60_000}
    )
    assert init["error_code"] == Errors.NONE and init["producer_id"] >= 0
    pid = init["producer_id"]
    first = produce(
        wire, "idempotent", batch(b"a", producer_id=pid, producer_epoch=0, base_sequence=0)
    )
    retry = produce(
        wire, "idempotent", batch(b"a", producer_id=pid, producer_epoch=0, base_sequence=0)
    )
    gap = produce(
        wire, "idempotent", batch(b"c", producer_id=pid, producer_epoch=0, base_sequence=3)
    )
    assert first["base_offset"] == retry["base_offset"] == 0
    assert gap["error_code"] == Errors.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert fetch(wire, "idempotent", 0)["high_watermark"] == 1
    other = wire.call(
        "InitProducerId", 4, {"transactional_id": None, "transaction_timeout_ms": 60_000}
    )
    assert other["producer_id"] != pid


def test_list_offsets(wire: Wire):
    create(wire, "offsets")
    produce(wire, "offsets", batch(b"a", b"b", b"c"))

    def lookup(timestamp: int) -> dict:
        body = {
            "replica_id": -1,
            "isolation_level": 0,
            "topics": [
                {"name": "offsets", "partitions": [{"partition_index": 0, "timestamp": timestamp}]}
            ],
        }
        return wire.call("ListOffsets", LIST_OFFSETS_V, body)["topics"][0]["partitions"][0]

    assert lookup(-2)["offset"] == 0
    assert lookup(-1)["offset"] == 3
    assert (lookup(1001)["offset"], lookup(1001)["timestamp"]) == (1, 1001)
    assert lookup(5000)["offset"] == -1


def test_metadata_and_create_topic_errors(wire: Wire):
    assert create(wire, "meta", partitions=4)["error_code"] == Errors.NONE
    assert create(wire, "meta")["error_code"] == Errors.TOPIC_ALREADY_EXISTS
    assert create(wire, "bad/name")["error_code"] == Errors.INVALID_TOPIC_EXCEPTION
    bad_config = create(wire, "cfg", configs=[{"name": "retention.ms", "value": "soon"}])
    assert (
        bad_config["error_code"] == Errors.INVALID_CONFIG
        and "retention.ms" in bad_config["error_message"]
    )
    response = wire.call("Metadata", 12, {"topics": [{"name": "meta"}, {"name": "missing"}]})
    by_name = {t["name"]: t for t in response["topics"]}
    assert len(by_name["meta"]["partitions"]) == 4
    assert by_name["missing"]["error_code"] == Errors.UNKNOWN_TOPIC_OR_PARTITION
    assert response["brokers"][0]["node_id"] == 0


def test_unsupported_api_versions_version_gets_v0_error_answer(wire: Wire):
    high = SUPPORTED[API_KEYS["ApiVersions"]][1]
    frame = struct.pack(">hhih", API_KEYS["ApiVersions"], high + 1, 77, -1)
    wire.send_raw(struct.pack(">i", len(frame)) + frame)
    reply = wire.receive_frame()
    assert reply is not None
    correlation_id, error_code = struct.unpack_from(">ih", reply)
    assert (correlation_id, error_code) == (77, Errors.UNSUPPORTED_VERSION)


@pytest.mark.parametrize(
    "frame",
    [
        struct.pack(">i", 200_000_000),  # larger than socket.request.max.bytes
        struct.pack(">i", -5),
        struct.pack(">ihhih", 10, 9999, 0, 1, -1),  # unknown API key
        struct.pack(">ihhi", 6, 0, 99, 1),  # Produce v99
        struct.pack(">i", 12) + b"\xff" * 12,  # garbage
    ],
    ids=["oversized", "negative-size", "unknown-api", "unsupported-version", "garbage"],
)
def test_bad_frames_close_the_connection_and_the_broker_survives(
    broker: BrokerProcess, frame: bytes
):
    bad = Wire(broker.bootstrap)
    try:
        bad.send_raw(frame)
        assert bad.closed_by_peer()
    finally:
        bad.close()
    healthy = Wire(broker.bootstrap)
    try:
        assert healthy.call("ApiVersions", 0, {})["error_code"] == Errors.NONE
    finally:
        healthy.close()
    assert "Traceback" not in broker.log_path.read_text()


def test_truncated_frame_then_eof_is_harmless(broker: BrokerProcess):
    with socket.create_connection((broker.host, broker.port), timeout=5) as sock:
        sock.sendall(struct.pack(">i", 100) + b"\x00" * 10)
    healthy = Wire(broker.bootstrap)
    try:
        assert healthy.call("ApiVersions", 0, {})["error_code"] == Errors.NONE
    finally:
        healthy.close()


def test_sigterm_flushes_and_a_restart_recovers_everything(tmp_path):
    data = tmp_path / "data"
    first = start_broker(0, data, config=SINGLE_BROKER_CONFIG)
    wire = Wire(first.bootstrap)
    create(wire, "durable", partitions=2)
    for n in range(20):
        produce(wire, "durable", batch(b"v%d" % n), partition=n % 2)
    wire.close()
    assert first.stop() == 0
    second = start_broker(0, data, config=SINGLE_BROKER_CONFIG)
    try:
        wire = Wire(second.bootstrap)
        assert values(fetch(wire, "durable", 0)["records"]) == [b"v%d" % n for n in range(0, 20, 2)]
        assert produce(wire, "durable", batch(b"next"))["base_offset"] == 10
        wire.close()
    finally:
        second.stop()


def test_kill_minus_nine_loses_nothing_the_os_accepted(tmp_path):
    data = tmp_path / "data"
    first = start_broker(0, data, config=SINGLE_BROKER_CONFIG)
    wire = Wire(first.bootstrap)
    create(wire, "crash")
    for n in range(50):
        produce(wire, "crash", batch(b"v%d" % n))
    wire.close()
    first.kill()
    second = start_broker(0, data, config=SINGLE_BROKER_CONFIG)
    try:
        wire = Wire(second.bootstrap)
        assert values(fetch(wire, "crash", 0)["records"]) == [b"v%d" % n for n in range(50)]
        wire.close()
    finally:
        second.stop()


def test_refuses_non_loopback_listen_without_allow_remote(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "replog_cli",
            "broker",
            "--id",
            "0",
            "--data-dir",
            str(tmp_path),
            "--listen",
            "0.0.0.0:0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert result.returncode == 2 and "--allow-remote" in result.stderr


def test_sigint_is_a_clean_shutdown_too(tmp_path):
    process = start_broker(0, tmp_path / "data", config=SINGLE_BROKER_CONFIG)
    process.signal(signal.SIGINT)
    assert process.popen is not None and process.popen.wait(30) == 0


def test_offset_for_leader_epoch_answers_where_an_epoch_ends(wire: Wire):
    create(wire, "epochs")
    produce(wire, "epochs", batch(b"a", b"b"))

    def ask(epoch: int, current: int = -1) -> dict:
        body = {
            "replica_id": -1,
            "topics": [
                {
                    "topic": "epochs",
                    "partitions": [
                        {"partition": 0, "current_leader_epoch": current, "leader_epoch": epoch}
                    ],
                }
            ],
        }
        return wire.call("OffsetForLeaderEpoch", 4, body)["topics"][0]["partitions"][0]

    assert (ask(0)["leader_epoch"], ask(0)["end_offset"]) == (0, 2)
    assert (ask(5)["leader_epoch"], ask(5)["end_offset"]) == (-1, -1)
    assert ask(0, current=3)["error_code"] == Errors.UNKNOWN_LEADER_EPOCH


def test_fetch_error_is_answered_without_waiting(wire: Wire):
    create(wire, "fetch-error")
    started = time.monotonic()
    assert fetch(wire, "fetch-error", 9, max_wait_ms=5_000, min_bytes=1)["error_code"] == (
        Errors.OFFSET_OUT_OF_RANGE
    )
    assert time.monotonic() - started < 2


def test_transactions_are_refused_with_a_clear_code(wire: Wire):
    create(wire, "transactional")
    init = wire.call(
        "InitProducerId", 4, {"transactional_id": "tx", "transaction_timeout_ms": 60_000}
    )
    assert init["error_code"] == Errors.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    body = {
        "transactional_id": "tx",
        "acks": -1,
        "timeout_ms": 1000,
        "topic_data": [
            {"name": "transactional", "partition_data": [{"index": 0, "records": batch(b"x")}]}
        ],
    }
    row = wire.call("Produce", PRODUCE_V, body)["responses"][0]["partition_responses"][0]
    assert row["error_code"] == Errors.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
