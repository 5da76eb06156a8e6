"""The error taxonomy: what the client says when things go wrong, and that it is true."""

from __future__ import annotations

import pytest
import trio
from client_support import config, new_topic, run

from impl.broker.process import BrokerProcess
from impl.client.connection import Connection, negotiate_versions
from impl.client.consumer import Consumer
from impl.client.errors import (
    AmbiguousKafkaError,
    ConnectionLost,
    DefiniteFailure,
    DefiniteKafkaError,
    NotSent,
    OutcomeUnknown,
    RequestTimeout,
    final_error,
    kafka_error,
)
from impl.client.producer import Producer
from impl.protocol import (
    API_KEYS,
    SUPPORTED,
    FrameReader,
    Request,
    api_versions_body,
    decode_request,
    encode_response,
)
from impl.runtime.net import TcpNetwork
from impl.runtime.runtime import Runtime
from model.errors import Errors

METADATA = API_KEYS["Metadata"]
PRODUCE = API_KEYS["Produce"]
API_VERSIONS = API_KEYS["ApiVersions"]


# ---- the classification table ----------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "kind", "retriable"),
    [
        (Errors.REQUEST_TIMED_OUT, AmbiguousKafkaError, True),
        (Errors.NOT_ENOUGH_REPLICAS_AFTER_APPEND, AmbiguousKafkaError, True),
        (Errors.UNKNOWN_SERVER_ERROR, AmbiguousKafkaError, False),
        (Errors.NOT_LEADER_OR_FOLLOWER, DefiniteKafkaError, True),
        (Errors.NOT_ENOUGH_REPLICAS, DefiniteKafkaError, True),
        (Errors.FENCED_LEADER_EPOCH, DefiniteKafkaError, True),
        (Errors.MESSAGE_TOO_LARGE, DefiniteKafkaError, False),
        (Errors.INVALID_PRODUCER_EPOCH, DefiniteKafkaError, False),
        (Errors.INVALID_TIMESTAMP, DefiniteKafkaError, False),
        (9999, AmbiguousKafkaError, False),
    ],
)
def test_broker_codes_are_classified(code: int, kind: type, retriable: bool) -> None:
    error = kafka_error(code)
    assert type(error) is kind and error.retriable is retriable and error.code == code
    assert isinstance(error, OutcomeUnknown) != isinstance(error, DefiniteFailure)


def test_one_ambiguous_attempt_makes_the_outcome_unknown() -> None:
    definite = kafka_error(Errors.NOT_ENOUGH_REPLICAS)
    assert final_error(definite, maybe_written=False) is definite
    unknown = final_error(definite, maybe_written=True)
    assert isinstance(unknown, OutcomeUnknown) and unknown.__cause__ is definite


def test_versions_are_the_highest_both_sides_speak() -> None:
    versions = negotiate_versions(
        [
            {"api_key": PRODUCE, "min_version": 0, "max_version": 7},
            {"api_key": METADATA, "min_version": 50, "max_version": 60},
            {"api_key": 999, "min_version": 0, "max_version": 3},
        ]
    )
    assert versions == {PRODUCE: 7}


# ---- connections against a scripted broker ---------------------------------------------


async def _scripted_broker(nursery: trio.Nursery, behaviour: str) -> int:
    """A broker that answers ApiVersions and then, to other requests, `behaviour`:
    "silent" (never answers) or "hang-up" (closes the connection at the third one)."""

    async def handler(stream: trio.abc.Stream) -> None:
        frames = FrameReader()
        unanswered = 0
        async with stream:
            while data := await stream.receive_some(65536):
                for frame in frames.feed(data):
                    request: Request = decode_request(frame)
                    if request.header.api_key == API_VERSIONS:
                        await stream.send_all(encode_response(request.header, api_versions_body()))
                        continue
                    unanswered += 1
                    if behaviour == "hang-up" and unanswered == 3:
                        return

    return await nursery.start(TcpNetwork().serve, handler, "127.0.0.1", 0)


def _open(runtime: Runtime, nursery: trio.Nursery, port: int) -> Connection:
    return Connection.open(
        runtime, nursery, "127.0.0.1", port, client_id="test", request_timeout_ms=300
    )


def test_a_request_without_answer_times_out_as_outcome_unknown() -> None:
    async def main(runtime: Runtime) -> None:
        async with trio.open_nursery() as nursery:
            connection = await _open(runtime, nursery, await _scripted_broker(nursery, "silent"))
            assert connection.version(PRODUCE) == SUPPORTED[PRODUCE][1]
            with pytest.raises(RequestTimeout):
                await connection.request(METADATA, {"topics": []})
            assert not connection.alive
            with pytest.raises(NotSent):
                await connection.request(METADATA, {"topics": []})
            nursery.cancel_scope.cancel()

    run(main)


def test_a_hang_up_fails_every_pipelined_request_as_connection_lost() -> None:
    async def main(runtime: Runtime) -> None:
        async with trio.open_nursery() as nursery:
            port = await _scripted_broker(nursery, "hang-up")
            connection = await _open(runtime, nursery, port)
            outcomes: list[BaseException] = []

            async def ask() -> None:
                try:
                    await connection.request(METADATA, {"topics": []}, timeout_ms=5_000)
                except OutcomeUnknown as error:
                    outcomes.append(error)

            async with trio.open_nursery() as requests:
                for _ in range(3):
                    requests.start_soon(ask)
            assert len(outcomes) == 3 and all(isinstance(e, ConnectionLost) for e in outcomes)
            with pytest.raises(NotSent):
                await connection.request(METADATA, {"topics": []})
            nursery.cancel_scope.cancel()

    run(main)


def test_nothing_listening_is_not_sent() -> None:
    async def main(runtime: Runtime) -> None:
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            port = listeners[0].socket.getsockname()[1]
            await listeners[0].aclose()
            with pytest.raises(NotSent):
                await _open(runtime, nursery, port)
            nursery.cancel_scope.cancel()

    run(main)


# ---- definite failures from a real broker ----------------------------------------------


def test_unknown_topic_is_a_definite_failure(broker: BrokerProcess) -> None:
    async def main(runtime: Runtime) -> None:
        async with Producer(runtime, broker.bootstrap, config("max.block.ms=5000")) as producer:
            delivery = await producer.send("no-such-topic", b"x")
            assert delivery.done()
            with pytest.raises(DefiniteKafkaError, match="UNKNOWN_TOPIC_OR_PARTITION"):
                await delivery.wait()
            topic = await new_topic(runtime, broker.bootstrap, 2)
            with pytest.raises(DefiniteFailure, match="no partition 2"):
                await (await producer.send(topic, b"x", partition=2)).wait()
        async with Consumer(runtime, broker.bootstrap) as consumer:
            with pytest.raises(DefiniteKafkaError, match="UNKNOWN_TOPIC_OR_PARTITION"):
                await consumer.partitions_for("no-such-topic")

    run(main)


def test_not_enough_replicas_is_retried_then_fails_definitely(broker: BrokerProcess) -> None:
    async def main(runtime: Runtime) -> None:
        topic = await new_topic(runtime, broker.bootstrap, 1, {"min.insync.replicas": "2"})
        producer_config = config(
            "acks=all", "request.timeout.ms=500", "delivery.timeout.ms=1000", "linger.ms=0"
        )
        async with Producer(runtime, broker.bootstrap, producer_config) as producer:
            delivery = await producer.send(topic, b"x")
            with pytest.raises(DefiniteFailure, match="NOT_ENOUGH_REPLICAS") as raised:
                await delivery.wait()
        assert not isinstance(raised.value, OutcomeUnknown)

    run(main)
