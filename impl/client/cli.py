"""`replog produce` and `replog consume`: kafka-console-producer/consumer for people.

    printf 'a\\nb\\n' | replog produce --bootstrap 127.0.0.1:9092 --topic events
    replog consume --bootstrap 127.0.0.1:9092 --topic events --from-beginning --max-messages 2

Exit codes: 0 success; 1 when a record was not delivered; 2 when nothing could be done
or finished (bad arguments, no bootstrap server reachable, no such topic, a consumer that
cannot read, Ctrl-C). Each is one line on stderr, within a bounded time: the bootstrap
servers are probed (CONNECT_TIMEOUT_MS) and the topic looked up before any record moves.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections import deque
from collections.abc import AsyncIterator

import trio

from impl.client.consumer import Consumer, ConsumerRecord
from impl.client.errors import ClientError
from impl.client.metadata import ClusterSession, parse_bootstrap
from impl.client.producer import Delivery, Producer
from impl.runtime.runtime import real_runtime
from model.arguments import integer
from model.config import Config, ConfigError

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
STDIN_CHUNK_BYTES = 64 * 1024
LINE_BYTES_MAX = 16 * 1024 * 1024
ERRORS_PRINTED_MAX = 20
POLL_MS = 200
# Kafka's socket.connection.setup.timeout.ms: refused is at once, a silent host this long.
CONNECT_TIMEOUT_MS = 10_000
EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE = 0, 1, 2


def _common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", default=DEFAULT_BOOTSTRAP, help="HOST:PORT[,HOST:PORT]")
    parser.add_argument("--topic", required=True)
    parser.add_argument(
        "--config", action="append", default=[], metavar="KEY=VALUE", help="client settings"
    )


class LineTooLong(Exception):
    """A stdin line above LINE_BYTES_MAX: reading stops rather than buffering without end."""


class Unusable(Exception):
    """Nothing to send to or read from: no broker reachable, or no such topic."""


def _os_reason(error: OSError) -> str:
    """The system's words for a failed connect ("connection refused"), from inside trio's
    "all attempts to connect failed" wrapper."""
    while isinstance(error.__cause__, BaseExceptionGroup):
        inner = error.__cause__.exceptions[0]
        if not isinstance(inner, OSError):
            break
        error = inner
    if isinstance(error, socket.gaierror) or not error.errno:
        words = error.strerror or str(error)
    else:
        words = os.strerror(error.errno)
    return words[:1].lower() + words[1:]


async def unreachable(bootstrap: str, timeout_ms: int) -> str | None:
    """None once a bootstrap server accepts a TCP connection; else why none did, in one
    line ("cannot reach 127.0.0.1:1: connection refused"). The client itself would retry
    an unreachable broker until its API timeout and then name only the timeout."""
    failures = []
    for host, port in parse_bootstrap(bootstrap):
        with trio.move_on_after(timeout_ms / 1000):
            try:
                stream = await trio.open_tcp_stream(host, port)
            except OSError as error:
                failures.append(f"{host}:{port}: {_os_reason(error)}")
                continue
            await stream.aclose()
            return None
        failures.append(f"{host}:{port}: no answer within {timeout_ms} ms")
    return "cannot reach " + "; ".join(failures)


async def _require_topic(bootstrap: str, topic: str, config: Config, timeout_ms: int) -> None:
    """Raise Unusable unless a broker is reachable and knows `topic`."""
    problem = await unreachable(bootstrap, min(timeout_ms, CONNECT_TIMEOUT_MS))
    if problem:
        raise Unusable(problem)
    async with ClusterSession(real_runtime(), bootstrap, config, "replog-cli") as session:
        if await session.cluster.wait_for_topic(topic, timeout_ms) is not None:
            return
        if session.cluster.topic_missing(topic):
            raise Unusable(f"UNKNOWN_TOPIC_OR_PARTITION: no topic {topic!r}")
        raise Unusable(f"no metadata for topic {topic!r} within {timeout_ms} ms")


def _parse_config(args: argparse.Namespace, prog: str) -> Config | None:
    """The --config settings, after checking --bootstrap; None (reported) if either is bad."""
    try:
        parse_bootstrap(args.bootstrap)
        return Config.parse(args.config)
    except ValueError as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return None


# ---- produce ---------------------------------------------------------------------------


def produce_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="replog produce",
        description="Send each line of stdin as one record (like kafka-console-producer).",
        epilog="Exit 0 when every record was delivered, 1 otherwise, 2 when nothing could be "
        "sent (bad arguments, no broker reachable, no such topic).",
    )
    _common_arguments(parser)
    parser.add_argument(
        "--key-separator", help="split each line into KEY SEP VALUE at the first SEP"
    )
    args = parser.parse_args(argv)
    config = _parse_config(args, "replog produce")
    if config is None:
        return EXIT_UNUSABLE
    try:
        return trio.run(_produce, args.bootstrap, args.topic, args.key_separator, config)
    except (ConfigError, Unusable) as error:
        print(f"replog produce: {error}", file=sys.stderr)
        return EXIT_UNUSABLE
    except LineTooLong as error:
        print(f"replog produce: {error}", file=sys.stderr)
        return EXIT_FAILED


class _Report:
    """Counts failures and prints the first ERRORS_PRINTED_MAX of them."""

    def __init__(self) -> None:
        self.failed = 0
        self.total = 0

    def fail(self, line_number: int, reason: str) -> None:
        self.failed += 1
        if self.failed <= ERRORS_PRINTED_MAX:
            print(f"replog produce: line {line_number}: {reason}", file=sys.stderr)

    def settle(self, pending: deque[tuple[int, Delivery]], everything: bool) -> None:
        """Account for finished deliveries (all of them when `everything`)."""
        while pending and (everything or pending[0][1].done()):
            line_number, delivery = pending.popleft()
            try:
                delivery.metadata()
            except ClientError as error:
                self.fail(line_number, f"not delivered: {type(error).__name__}: {error}")


async def _produce(bootstrap: str, topic: str, separator: str | None, config: Config) -> int:
    report = _Report()
    pending: deque[tuple[int, Delivery]] = deque()
    sep = separator.encode() if separator else None
    await _require_topic(bootstrap, topic, config, config.max_block_ms)
    async with Producer(
        real_runtime(), bootstrap, config, client_id="replog-console-producer"
    ) as producer:
        async for line_number, line in _stdin_lines():
            report.total += 1
            key = None
            if sep is not None:
                key, found, line = line.partition(sep)
                if not found:
                    report.fail(line_number, f"no key separator {separator!r}")
                    continue
            pending.append((line_number, await producer.send(topic, line, key=key)))
            report.settle(pending, everything=False)
    report.settle(pending, everything=True)
    if report.failed:
        print(
            f"replog produce: {report.failed} of {report.total} records not delivered",
            file=sys.stderr,
        )
    return EXIT_FAILED if report.failed else EXIT_OK


async def _stdin_lines() -> AsyncIterator[tuple[int, bytes]]:
    """Numbered lines of stdin without their line ending; reads happen in a thread so
    the producer keeps sending while stdin is slow. A read waiting for a line is
    abandoned on Ctrl-C, so a person typing records can stop without an end of file; it
    reads the descriptor itself, as the abandoned thread must hold no lock of sys.stdin's
    that interpreter shutdown needs."""
    buffer = b""
    line_number = 0
    while True:
        chunk = await trio.to_thread.run_sync(
            os.read, sys.stdin.fileno(), STDIN_CHUNK_BYTES, abandon_on_cancel=True
        )
        if not chunk:
            if buffer:
                yield line_number + 1, buffer.removesuffix(b"\r")
            return
        *lines, buffer = (buffer + chunk).split(b"\n")
        for line in lines:
            line_number += 1
            yield line_number, line.removesuffix(b"\r")
        if len(buffer) > LINE_BYTES_MAX:
            raise LineTooLong(f"line {line_number + 1} is longer than {LINE_BYTES_MAX} bytes")


# ---- consume ---------------------------------------------------------------------------


def consume_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="replog consume",
        description="Print the records of a topic (like kafka-console-consumer).",
        epilog="Exit 0 after --max-messages or --timeout-ms, 2 when the topic cannot be read "
        "(bad arguments, no broker reachable, no such topic).",
    )
    _common_arguments(parser)
    parser.add_argument("--from-beginning", action="store_true", help="start at log start")
    parser.add_argument(
        "--max-messages", type=integer(0), help="stop after this many records"
    )
    parser.add_argument(
        "--timeout-ms",
        type=integer(0),
        help="stop after this long without a new record",
    )
    parser.add_argument("--print-key", action="store_true", help="print KEY<TAB>VALUE")
    args = parser.parse_args(argv)
    config = _parse_config(args, "replog consume")
    if config is None:
        return EXIT_UNUSABLE
    reset = "earliest" if args.from_beginning else "latest"
    return trio.run(_consume, args, config.with_values(auto_offset_reset=reset))


class _Progress:
    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


async def _consume(args: argparse.Namespace, config: Config) -> int:
    progress = _Progress()
    try:
        await _require_topic(args.bootstrap, args.topic, config, config.default_api_timeout_ms)
        async with Consumer(
            real_runtime(), args.bootstrap, config, client_id="replog-console-consumer"
        ) as consumer:
            consumer.assign(await consumer.partitions_for(args.topic))
            await _print_records(consumer, args, progress)
    except Unusable as error:
        print(f"replog consume: {error}", file=sys.stderr)
        return EXIT_UNUSABLE
    except ClientError as error:
        print(f"replog consume: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_UNUSABLE
    finally:
        print(f"Processed a total of {progress.count} messages", file=sys.stderr)
    return EXIT_OK


async def _print_records(consumer: Consumer, args: argparse.Namespace, progress: _Progress) -> None:
    idle_since = trio.current_time()
    while args.max_messages is None or progress.count < args.max_messages:
        records = await consumer.poll(POLL_MS)
        if args.max_messages is not None:
            records = records[: args.max_messages - progress.count]
        _write(records, args.print_key)
        progress.count += len(records)
        if records:
            idle_since = trio.current_time()
        elif args.timeout_ms is not None and (
            trio.current_time() - idle_since >= args.timeout_ms / 1000
        ):
            return


def _write(records: list[ConsumerRecord], print_key: bool) -> None:
    out = sys.stdout.buffer
    for record in records:
        if print_key:
            out.write(b"null" if record.key is None else record.key)
            out.write(b"\t")
        out.write(b"null" if record.value is None else record.value)
        out.write(b"\n")
    out.flush()
