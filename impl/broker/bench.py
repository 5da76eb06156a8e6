"""`replog bench broker`: one broker process, one load-generator process, loopback.

Figures, all from one run so their ratios mean something on a noisy machine:
- produce throughput of 100-byte and 1 KiB records (acks=1, lz4, linger 5 ms), the
  native producer as fast as it goes;
- produce latency p50/p99 at a fixed moderate rate (each record from send to ack);
- consume throughput reading the 100-byte topic back from the start;
- the baseline: a trivial trio echo server process moving the same bytes in 16 KiB
  messages; "% of echo" is produce MB/s over echo MB/s.
The load generator is this module run with `--load KIND` in a separate process, which
prints one JSON line of results.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import trio

from impl.broker.process import start_broker
from impl.client.admin import create_topics
from impl.client.bench import produce_load
from impl.client.consumer import Consumer
from impl.client.producer import Producer
from impl.runtime.runtime import real_runtime
from model.arguments import integer
from model.config import Config

ECHO_CHUNK_BYTES = 16 * 1024
LOAD_TIMEOUT_S = 600
BYTES_PER_MB = 1_000_000


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="replog bench broker", description=__doc__)
    positive = integer(1)
    parser.add_argument("--small-records", type=positive, default=300_000, help="100-byte records")
    parser.add_argument("--large-records", type=positive, default=50_000, help="1 KiB records")
    parser.add_argument("--partitions", type=positive, default=4)
    parser.add_argument(
        "--rate", type=positive, default=5_000, help="records/s for the latency run"
    )
    parser.add_argument("--latency-records", type=positive, default=10_000)
    parser.add_argument("--load", help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--acks", default="1", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.load:
        print(json.dumps(trio.run(LOADS[args.load], args)), flush=True)
        return 0
    with tempfile.TemporaryDirectory(prefix="replog-bench-") as root:
        results = _run_all(args, Path(root))
    _print(results)
    return 0


def _run_all(args: argparse.Namespace, root: Path) -> dict[str, dict[str, Any]]:
    broker = start_broker(0, root / "data", config=["min.insync.replicas=1"])
    try:
        topics = [("small", args.partitions, 1, {}), ("large", args.partitions, 1, {})]
        topics.append(("latency", args.partitions, 1, {}))
        trio.run(create_topics, real_runtime(), broker.bootstrap, topics)
        base = ["--bootstrap", broker.bootstrap]
        results = {
            "produce 100 B": load_process("produce", base, "small", 100, args.small_records),
            "produce 1 KiB": load_process("produce", base, "large", 1024, args.large_records),
            "latency": load_process(
                "latency", [*base, "--rate", str(args.rate)], "latency", 100, args.latency_records
            ),
            "consume 100 B": load_process("consume", base, "small", 100, args.small_records),
        }
    finally:
        broker.stop()
    echo_bytes = args.small_records * 100
    results["echo"] = _echo(echo_bytes)
    return results


def load_process(kind: str, base: list[str], topic: str, size: int, count: int) -> dict[str, Any]:
    argv = [sys.executable, "-m", "replog_cli", "bench", "broker", "--load", kind, *base]
    argv += ["--topic", topic, "--size", str(size), "--count", str(count)]
    output = subprocess.run(
        argv, capture_output=True, text=True, timeout=LOAD_TIMEOUT_S, check=True
    )
    return json.loads(output.stdout.splitlines()[-1])


def _echo(total_bytes: int) -> dict[str, Any]:
    server = subprocess.Popen(
        [sys.executable, "-m", "replog_cli", "bench", "broker", "--load", "echo-server"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = json.loads(server.stdout.readline())["port"]
        base = ["--bootstrap", f"127.0.0.1:{port}"]
        return load_process("echo", base, "-", ECHO_CHUNK_BYTES, total_bytes // ECHO_CHUNK_BYTES)
    finally:
        server.kill()
        server.wait()


def _print(results: dict[str, dict[str, Any]]) -> None:
    echo_mb_s = results["echo"]["mb_per_s"]
    print(f"{'figure':<16}{'records/s':>12}{'MB/s':>9}{'% of echo':>11}  notes")
    for name in ("produce 100 B", "produce 1 KiB", "consume 100 B"):
        r = results[name]
        share = 100 * r["mb_per_s"] / echo_mb_s
        rate = f"{r['records_per_s']:>12,.0f}{r['mb_per_s']:>9.1f}{share:>10.0f}%"
        print(f"{name:<16}{rate}  {r['note']}")
    latency = results["latency"]
    print(
        f"{'latency':<16}{latency['records_per_s']:>12,.0f}{'':>9}{'':>11}  "
        f"p50 {latency['p50_ms']:.1f} ms, p99 {latency['p99_ms']:.1f} ms per record at "
        f"{latency['rate']:,} records/s offered"
    )
    echo = f"{'echo baseline':<16}{'':>12}{echo_mb_s:>9.1f}{100:>10}%"
    print(f"{echo}  trio echo server, 16 KiB messages")


# ---- load-generator process ------------------------------------------------------------


async def _produce(args: argparse.Namespace) -> dict[str, Any]:
    stats = await produce_load(
        real_runtime(), args.bootstrap, args.topic, args.size, args.count, args.acks, 5, "lz4"
    )
    return {
        "records_per_s": stats.records_per_s,
        "mb_per_s": stats.mb_per_s,
        "note": f"{stats.records:,} records, {stats.failed} failed, acks={args.acks} lz4 "
        f"linger 5 ms; request latency p50 {stats.latency_ms(0.5):.1f} ms, "
        f"p99 {stats.latency_ms(0.99):.1f} ms",
    }


async def _latency(args: argparse.Namespace) -> dict[str, Any]:
    """Records offered at a fixed rate; each one's time from send to acknowledgement."""
    config = Config.parse(["acks=1", "linger.ms=5", "compression.type=lz4"])
    latencies_ms: list[float] = []
    rate = args.rate if args.rate else 5_000
    async with (
        Producer(real_runtime(), args.bootstrap, config) as producer,
        trio.open_nursery() as nursery,
    ):
        started = trio.current_time()
        for n in range(args.count):
            await trio.sleep_until(started + n / rate)
            delivery = await producer.send(args.topic, b"x" * args.size)
            nursery.start_soon(_time_delivery, delivery, trio.current_time(), latencies_ms)
    latencies_ms.sort()
    seconds = trio.current_time() - started
    return {
        "records_per_s": args.count / seconds,
        "p50_ms": latencies_ms[len(latencies_ms) // 2],
        "p99_ms": latencies_ms[int(len(latencies_ms) * 0.99)],
        "rate": rate,
    }


async def _time_delivery(delivery: Any, sent: float, latencies_ms: list[float]) -> None:
    await delivery.wait()
    latencies_ms.append((trio.current_time() - sent) * 1000)


async def _consume(args: argparse.Namespace) -> dict[str, Any]:
    config = Config.parse(["auto.offset.reset=earliest", "max.poll.records=100000"])
    async with Consumer(real_runtime(), args.bootstrap, config) as consumer:
        partitions = await consumer.partitions_for(args.topic)
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        started = trio.current_time()
        received = size = 0
        while received < args.count:
            for record in await consumer.poll(1_000):
                received += 1
                size += len(record.value or b"")
        seconds = trio.current_time() - started
    return {
        "records_per_s": received / seconds,
        "mb_per_s": size / seconds / BYTES_PER_MB,
        "note": f"{received:,} records from {len(partitions)} partitions",
    }


async def _echo_server(args: argparse.Namespace) -> dict[str, Any]:
    async def echo(stream: trio.SocketStream) -> None:
        async for chunk in stream:
            await stream.send_all(chunk)

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    print(json.dumps({"port": listeners[0].socket.getsockname()[1]}), flush=True)
    await trio.serve_listeners(echo, listeners)
    raise AssertionError("unreachable: the echo server runs until killed")


async def _echo_client(args: argparse.Namespace) -> dict[str, Any]:
    """Send `count` messages of `size` bytes and read each echo back, pipelined."""
    host, port = args.bootstrap.rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    message = b"e" * args.size
    total = args.size * args.count
    started = trio.current_time()
    async with stream, trio.open_nursery() as nursery:

        async def send() -> None:
            for _ in range(args.count):
                await stream.send_all(message)

        nursery.start_soon(send)
        received = 0
        while received < total:
            received += len(await stream.receive_some(1 << 20))
    seconds = trio.current_time() - started
    return {"records_per_s": args.count / seconds, "mb_per_s": total / seconds / BYTES_PER_MB}


LOADS = {
    "produce": _produce,
    "latency": _latency,
    "consume": _consume,
    "echo-server": _echo_server,
    "echo": _echo_client,
}
