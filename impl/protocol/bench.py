"""`replog bench protocol`: wire codec throughput on the two messages that carry data.

Workloads: a Produce v9 request and a Fetch v12 response, each carrying --records-mib of
record bytes spread evenly over --partitions partitions (the codec treats records as
opaque, so they are random bytes). Figures are MB/s (10^6 bytes) of whole frames:
encode = body dict -> size-prefixed frame; decode = frame -> body dict (records stay views
of the frame, so decoding costs the same for 1 KiB or 1 MiB of records); round trip = both.
Each figure is the best of --repeat runs of --iterations calls.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from typing import Any

from impl.protocol.messages import (
    API_KEYS,
    RequestHeader,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from model.arguments import integer

PRODUCE_VERSION = 9
FETCH_VERSION = 12
TOPIC = "bench"


def _chunks(records: bytes, partitions: int) -> list[bytes]:
    size = len(records) // partitions
    return [records[i * size : (i + 1) * size] for i in range(partitions)]


def produce_body(records: bytes, partitions: int) -> dict[str, Any]:
    return {
        "acks": -1,
        "timeout_ms": 30_000,
        "topic_data": [
            {
                "name": TOPIC,
                "partition_data": [
                    {"index": index, "records": chunk}
                    for index, chunk in enumerate(_chunks(records, partitions))
                ],
            }
        ],
    }


def fetch_body(records: bytes, partitions: int) -> dict[str, Any]:
    return {
        "responses": [
            {
                "topic": TOPIC,
                "partitions": [
                    {"partition_index": index, "high_watermark": 1_000, "records": chunk}
                    for index, chunk in enumerate(_chunks(records, partitions))
                ],
            }
        ]
    }


def _best_seconds(repeat: int, iterations: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(iterations):
            run()
        best = min(best, (time.perf_counter() - started) / iterations)
    return best


def _rates(
    frame_bytes: int,
    encode: Callable[[], bytes],
    decode: Callable[[], object],
    repeat: int,
    iterations: int,
) -> tuple[float, float, float]:
    encode_s = _best_seconds(repeat, iterations, encode)
    decode_s = _best_seconds(repeat, iterations, decode)
    return (
        frame_bytes / encode_s / 1e6,
        frame_bytes / decode_s / 1e6,
        frame_bytes / (encode_s + decode_s) / 1e6,
    )


def run(records_bytes: int, partitions: int, repeat: int, iterations: int) -> dict[str, Any]:
    """{workload: (frame bytes, encode MB/s, decode MB/s, round-trip MB/s)}."""
    records = random.Random(1).randbytes(records_bytes)
    produce = API_KEYS["Produce"]
    body = produce_body(records, partitions)
    request = encode_request(produce, PRODUCE_VERSION, 1, "bench", body)
    header = RequestHeader(API_KEYS["Fetch"], FETCH_VERSION, 1, "bench")
    fetch = fetch_body(records, partitions)
    response = encode_response(header, fetch)
    return {
        f"Produce v{PRODUCE_VERSION} request": (
            len(request),
            *_rates(
                len(request),
                lambda: encode_request(produce, PRODUCE_VERSION, 1, "bench", body),
                lambda: decode_request(memoryview(request)[4:]),
                repeat,
                iterations,
            ),
        ),
        f"Fetch v{FETCH_VERSION} response": (
            len(response),
            *_rates(
                len(response),
                lambda: encode_response(header, fetch),
                lambda: decode_response(header.api_key, FETCH_VERSION, memoryview(response)[4:]),
                repeat,
                iterations,
            ),
        ),
    }


def _report(results: dict[str, Any], partitions: int) -> str:
    lines = [
        f"replog bench protocol: records spread over {partitions} partition(s)",
        f"{'workload':<24}{'frame MB':>10}{'encode MB/s':>14}{'decode MB/s':>14}"
        f"{'round trip MB/s':>18}",
    ]
    for name, (size, encode, decode, both) in results.items():
        lines.append(f"{name:<24}{size / 1e6:>10.2f}{encode:>14.0f}{decode:>14.0f}{both:>18.0f}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="replog bench protocol", description=__doc__.split("\n")[0]
    )
    positive = integer(1)
    parser.add_argument("--records-mib", type=positive, default=1, help="record bytes per message")
    parser.add_argument("--partitions", type=positive, default=1, help="partitions sharing them")
    parser.add_argument("--repeat", type=positive, default=5, help="runs per figure; best is kept")
    parser.add_argument("--iterations", type=positive, default=50, help="calls per run")
    args = parser.parse_args(argv)
    records_bytes = args.records_mib * 1024 * 1024
    results = run(records_bytes, args.partitions, args.repeat, args.iterations)
    print(_report(results, args.partitions))
    return 0
