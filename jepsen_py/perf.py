"""Performance as data: latency quantiles and throughput over time, per op f and outcome,
plus the nemesis windows a report shades. Plots are drawn by the report, not here."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from jepsen_py.history import Op, pair_positions
from jepsen_py.result import Result

QUANTILES = (0.5, 0.95, 0.99, 1.0)
DEFAULT_BUCKET_NS = 1_000_000_000
_ENDS = {
    "heal": ("partition",),
    "restart": ("kill", "crash"),
    "resume": ("pause",),
    "clock-reset": ("clock-bump", "clock-strobe"),
}


def check(history: list[Op], bucket_ns: int = DEFAULT_BUCKET_NS) -> Result:
    latencies: dict[str, list[int]] = defaultdict(list)
    throughput: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    start = history[0].time if history else 0
    for call, ret in pair_positions(history):
        if ret is None:
            continue
        invocation, completion = history[call], history[ret]
        series = f"{invocation.f} {completion.type}"
        latencies[series].append(completion.time - invocation.time)
        throughput[series][(completion.time - start) // bucket_ns] += 1
    stats: dict[str, Any] = {
        "latency_ns": {series: _summary(values) for series, values in sorted(latencies.items())},
        "throughput_per_s": {
            series: [
                [bucket * bucket_ns, count * 1e9 / bucket_ns] for bucket, count in sorted(b.items())
            ]
            for series, b in sorted(throughput.items())
        },
        "bucket_ns": bucket_ns,
        "nemesis_windows": _nemesis_windows(history),
    }
    # Performance is measured, not judged: perf never decides a verdict.
    return Result(True, stats=stats, judges=False)


def _summary(values: list[int]) -> dict[str, float]:
    values.sort()
    summary = {
        f"p{round(q * 100)}": values[min(len(values) - 1, int(q * len(values)))] for q in QUANTILES
    }
    summary["count"] = len(values)
    summary["mean"] = sum(values) / len(values)
    return summary


def _nemesis_windows(history: list[Op]) -> list[dict[str, Any]]:
    """When each fault was active: from the nemesis op that starts it to the one that ends
    it (or the end of the history)."""
    windows = []
    active: dict[str, Op] = {}
    for op in history:
        if op.is_client or op.type != "invoke":
            continue
        if op.f in _ENDS:
            for fault in _ENDS[op.f]:
                if fault in active:
                    begin = active.pop(fault)
                    windows.append(_window(begin, op.time))
        else:
            active.setdefault(op.f, op)
    end = history[-1].time if history else 0
    return windows + [_window(op, end) for op in active.values()]


def _window(begin: Op, end_ns: int) -> dict[str, Any]:
    return {"f": begin.f, "start_ns": begin.time, "end_ns": end_ns, "value": begin.value}
