"""Load generation through the native producer, for `replog bench broker`.

`produce_load` sends `count` records of one payload as fast as the producer takes
them, like kafka-producer-perf-test: the payload is random upper-case letters (so
lz4 has something to do, as with real text), generated once from runtime.rng.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import trio

from impl.client.errors import ClientError
from impl.client.producer import Delivery, Producer
from impl.runtime.runtime import Runtime
from model.config import Config

PAYLOAD_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
BYTES_PER_MB = 1_000_000


@dataclass(frozen=True)
class ProduceStats:
    records: int
    failed: int
    seconds: float
    records_per_s: float
    mb_per_s: float
    requests: int
    request_latencies_ms: tuple[float, ...]

    def latency_ms(self, quantile: float) -> float:
        """A quantile (0..1) of the per-request latencies; 0 when there were none."""
        latencies = sorted(self.request_latencies_ms)
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(quantile * len(latencies)))]

    def summary(self) -> str:
        mean = statistics.fmean(self.request_latencies_ms) if self.request_latencies_ms else 0.0
        return (
            f"{self.records} records ({self.failed} failed) in {self.seconds:.2f} s: "
            f"{self.records_per_s:,.0f} records/s, {self.mb_per_s:.1f} MB/s; "
            f"{self.requests} requests, latency ms mean {mean:.1f} "
            f"p50 {self.latency_ms(0.5):.1f} p99 {self.latency_ms(0.99):.1f} "
            f"max {self.latency_ms(1.0):.1f}"
        )


def bench_config(acks: str, linger_ms: int, compression: str, extra: list[str]) -> Config:
    return Config.parse(
        [f"acks={acks}", f"linger.ms={linger_ms}", f"compression.type={compression}", *extra]
    )


async def produce_load(
    runtime: Runtime,
    bootstrap: str,
    topic: str,
    record_size_bytes: int,
    count: int,
    acks: str,
    linger_ms: int,
    compression: str,
    extra_config: list[str] | None = None,
) -> ProduceStats:
    """Send `count` keyless records and wait for every outcome; timing covers both."""
    config = bench_config(acks, linger_ms, compression, extra_config or [])
    payload = bytes(runtime.rng.choice(PAYLOAD_ALPHABET) for _ in range(record_size_bytes))
    latencies_ms: list[float] = []

    def observe(latency_ms: float, records: int) -> None:
        latencies_ms.append(latency_ms)

    async with Producer(runtime, bootstrap, config, request_observer=observe) as producer:
        started = trio.current_time()
        deliveries = [await producer.send(topic, payload) for _ in range(count)]
        await producer.flush()
        seconds = max(trio.current_time() - started, 1e-9)
    failed = sum(1 for delivery in deliveries if _failed(delivery))
    return ProduceStats(
        records=count,
        failed=failed,
        seconds=seconds,
        records_per_s=count / seconds,
        mb_per_s=count * record_size_bytes / seconds / BYTES_PER_MB,
        requests=len(latencies_ms),
        request_latencies_ms=tuple(latencies_ms),
    )


def _failed(delivery: Delivery) -> bool:
    try:
        delivery.metadata()
    except ClientError:
        return True
    return False
