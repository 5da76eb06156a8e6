"""Consumer-group processing: was every acknowledged record processed, once, by one owner?

Reads the `consumer` workload's history (README, "The consumer workload"):
- send:    invoke `[key, value]`; ok `[offset, value]` (as the queue workload).
- consume: one poll-process-commit cycle of a group member. Every completion (ok, fail
  or info) carries `{"member", "generation", "commit": "after-processing" |
  "before-processing", "polled": {key: [[offset, value], ...]}, "processed": {...},
  "committed": {key: offset} | null, "commit_error", "events": [...]}`; `processed`
  is what the application finished processing (a subset of `polled`). An `info` is a
  consumer crash injected by the harness at a known point, so its value is exact.
  Events are what the member's group membership and auto.offset.reset did since the
  previous cycle, each with `ago_ms` (how long before the completion it happened):
  `{"event": "assign" | "revoke", "generation", "member", "keys", "reason"}` and
  `{"event": "reset", "key", "from", "to", "policy", "reason"}` (`from` null: nothing
  was committed; `to` null: the policy was none and the consumer raised). A `fail` or
  `info` without a value is a cycle the harness timed out: what it processed is
  unknown (counted as `consumes_unobserved`; its records may show up as lost).
- lag:     ok `{"status", "partitions": [{"key", "committed", "log_end", "log_start",
  "lag", "status"}, ...]}`: a `replog lag` snapshot of the group.

Anomalies (any one makes the run invalid):
- lost-processing: an acknowledged record inside the group's consumed range of its
  partition (from where the group started to the highest offset it processed) that no
  member processed, and no auto.offset.reset chose to skip.
- silent-skip: a gap in a partition's processed offsets, holding acknowledged records,
  that no reset explains (the records are also each a lost-processing case).
- skipped-by-reset: a gap that an auto.offset.reset event chose (`latest` after the
  committed offset fell below the log start, or `earliest` after retention deleted
  records nobody had processed). The policy did what it was told, but data was skipped:
  the checker reports the range with the reset that caused it, and the last lag
  snapshot before it, and the run is invalid.
- duplicate-processing: an offset processed twice while some member committed before
  processing (at-most-once). Under at-least-once (commit after processing) duplicates
  after a rebalance or crash are the price of the discipline: counted in stats only.
- two-owners: two members owned (were assigned, or processed) one partition in the
  same generation.

Allowed and counted: records a before-processing member polled and committed but did
not process (it crashed, or its commit failed) are at-most-once's price
(`lost_at_most_once`); a consume that failed with auto.offset.reset=none is the
consumer failing loudly (`reset_failures`), not a skip; acknowledged records above the
highest processed offset are `unprocessed` (the group had not got there).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from jepsen_py import queue
from jepsen_py.history import HistoryError, Op, pair_positions
from jepsen_py.result import Result, no_evidence

AT_LEAST_ONCE = "after-processing"
AT_MOST_ONCE = "before-processing"
DISCIPLINES = frozenset({AT_LEAST_ONCE, AT_MOST_ONCE})
ANOMALIES = (
    "lost-processing",
    "silent-skip",
    "skipped-by-reset",
    "duplicate-processing",
    "two-owners",
)
# The client ops this checker reads; any other f is not its evidence.
FUNCTIONS = frozenset({"send", "consume", "lag"})
MAX_CASES_PER_ANOMALY = 64
REBALANCE_BUCKET_NS = 1_000_000_000
_CONSUME_SHAPE = "a consume completion value must be a map with member, generation, commit"

Key = str


@dataclass
class _Seen:
    acked: dict[Key, dict[int, tuple[Any, int]]] = field(default_factory=lambda: defaultdict(dict))
    # key -> offset -> [(process, member, generation, discipline, op index)]
    processed: dict[Key, dict[int, list[tuple[Any, str, int, str, int]]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    # key -> offsets polled by a before-processing member and never processed by it
    unprocessed_polls: dict[Key, set[int]] = field(default_factory=lambda: defaultdict(set))
    resets: list[dict[str, Any]] = field(default_factory=list)
    reset_failures: list[dict[str, Any]] = field(default_factory=list)
    owners: dict[tuple[Key, int], dict[str, int]] = field(default_factory=dict)
    generations: dict[int, int] = field(default_factory=dict)
    lag: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    commits: int = 0
    commit_errors: int = 0
    consumes: int = 0
    consumes_unobserved: int = 0
    crashes: int = 0


def check(history: list[Op]) -> Result:
    seen = _observe(history)
    if not seen.consumes:
        return no_evidence("no consume cycle with an observed outcome")
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    counts = _judge_offsets(seen, found)
    _judge_owners(seen, found)
    assert set(found) <= set(ANOMALIES), f"unnamed anomaly kinds {set(found) - set(ANOMALIES)}"
    stats = {
        "consumes": seen.consumes,
        "consumes_unobserved": seen.consumes_unobserved,
        "crashes": seen.crashes,
        "commits": seen.commits,
        "commit_errors": seen.commit_errors,
        "acknowledged_sends": sum(len(offsets) for offsets in seen.acked.values()),
        "resets": seen.resets[:MAX_CASES_PER_ANOMALY],
        "reset_failures": seen.reset_failures[:MAX_CASES_PER_ANOMALY],
        "counts": {kind: len(cases) for kind, cases in sorted(found.items())},
        "rebalances": _rebalances(seen),
        "lag_statuses": _lag_statuses(seen),
        **counts,
    }
    anomalies = {
        kind: cases[:MAX_CASES_PER_ANOMALY] for kind, cases in sorted(found.items()) if cases
    }
    return Result(not anomalies, anomalies, stats)


# ---- reading the history ------------------------------------------------------------------


def _observe(history: list[Op]) -> _Seen:
    seen = _Seen()
    for call, ret in pair_positions(history):
        invocation, completion = history[call], None if ret is None else history[ret]
        if completion is None:
            continue
        assert ret is not None
        if invocation.f == "send" and completion.type == "ok":
            key, value = queue.sent_record(invocation, call)
            seen.acked[key][queue.acked_offset(completion, ret)] = (value, invocation.index)
        elif invocation.f == "consume":
            _observe_consume(seen, completion, ret)
        elif invocation.f == "lag" and completion.type == "ok":
            if not isinstance(completion.value, dict) or "partitions" not in completion.value:
                raise HistoryError(ret + 1, "a lag completion value must be {status, partitions}")
            seen.lag.append((completion.time, completion.value))
    return seen


def _observe_consume(seen: _Seen, completion: Op, position: int) -> None:
    value = completion.value
    if value is None and completion.type != "ok":
        # The harness gave up on the cycle (op timeout): what it processed is unknown.
        seen.consumes_unobserved += 1
        return
    if not isinstance(value, dict) or value.get("commit") not in DISCIPLINES:
        raise HistoryError(position + 1, f"{_CONSUME_SHAPE}, got {value!r}")
    seen.consumes += 1
    seen.crashes += completion.type == "info"
    member, generation, discipline = str(value["member"]), int(value["generation"]), value["commit"]
    for event in value.get("events") or []:
        _observe_event(seen, completion, event, position)
    processed = _records(value.get("processed") or {}, position)
    for key, records in processed.items():
        for offset, _ in records:
            seen.processed[key][offset].append(
                (completion.process, member, generation, discipline, completion.index)
            )
        if member and generation >= 0:
            seen.owners.setdefault((key, generation), {}).setdefault(member, completion.index)
    if discipline == AT_MOST_ONCE:
        for key, records in _records(value.get("polled") or {}, position).items():
            done = {offset for offset, _ in processed.get(key, [])}
            seen.unprocessed_polls[key].update(o for o, _ in records if o not in done)
    if value.get("committed") is not None:
        seen.commits += 1
    if value.get("commit_error"):
        seen.commit_errors += 1


def _observe_event(seen: _Seen, completion: Op, event: Any, position: int) -> None:
    if not isinstance(event, dict) or event.get("event") not in ("assign", "revoke", "reset"):
        raise HistoryError(
            position + 1, f"a consume event must be assign, revoke or reset: {event!r}"
        )
    at_ns = completion.time - int(event.get("ago_ms", 0) * 1_000_000)
    if event["event"] == "reset":
        reset = {**event, "key": str(event["key"]), "time": at_ns, "process": completion.process}
        reset.pop("ago_ms", None)
        if reset["to"] is None:
            seen.reset_failures.append({**reset, "error": completion.error})
        else:
            seen.resets.append(reset)
        return
    generation = int(event["generation"])
    seen.generations[generation] = min(at_ns, seen.generations.get(generation, at_ns))
    if event["event"] == "assign":
        for key in event.get("keys") or []:
            owners = seen.owners.setdefault((str(key), generation), {})
            owners.setdefault(str(event["member"]), completion.index)


def _records(by_key: Any, position: int) -> dict[Key, list[tuple[int, Any]]]:
    if not isinstance(by_key, dict):
        raise HistoryError(
            position + 1, f"records must be {{key: [[offset, value], ...]}}: {by_key!r}"
        )
    out: dict[Key, list[tuple[int, Any]]] = {}
    for key, records in by_key.items():
        if type(records) is not list:
            raise HistoryError(position + 1, f"records of {key!r} must be a list: {records!r}")
        pairs = []
        for record in records:
            if type(record) is not list or len(record) != 2 or type(record[0]) is not int:
                raise HistoryError(position + 1, f"a record must be [offset, value]: {record!r}")
            pairs.append((record[0], record[1]))
        out[str(key)] = pairs
    return out


# ---- judging ------------------------------------------------------------------------------


def _judge_offsets(seen: _Seen, found: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    duplicates_allowed = 0
    lost_at_most_once = 0
    unprocessed = 0
    keys = sorted(set(seen.acked) | set(seen.processed), key=_key_order)
    for key in keys:
        done = seen.processed.get(key, {})
        acked = seen.acked.get(key, {})
        duplicates_allowed += _judge_duplicates(key, done, found)
        if not done:
            unprocessed += len(acked)
            continue
        start, end = _consumed_range(key, done, seen.resets)
        ordered = sorted(acked)
        unprocessed += len(ordered) - bisect.bisect_left(ordered, end)
        for low, high in _gaps(sorted(done), start, end):
            inside = ordered[bisect.bisect_left(ordered, low) : bisect.bisect_left(ordered, high)]
            allowed = seen.unprocessed_polls.get(key, set())
            lost = [o for o in inside if o not in allowed]
            lost_at_most_once += len(inside) - len(lost)
            if lost:
                _judge_gap(seen, key, low, high, sorted(lost), acked, found)
    return {
        "duplicates_allowed": duplicates_allowed,
        "lost_at_most_once": lost_at_most_once,
        "unprocessed": unprocessed,
    }


def _key_order(key: Key) -> tuple[int, str]:
    return (int(key), key) if key.lstrip("-").isdigit() else (1 << 62, key)


def _consumed_range(
    key: Key, done: dict[int, list[Any]], resets: list[dict[str, Any]]
) -> tuple[int, int]:
    """From where the group started on `key` (the first reset of a member without a
    committed offset, else the lowest processed offset) to one past the highest processed."""
    lowest = min(done)
    initial = [r["to"] for r in resets if r["key"] == key and r["from"] is None]
    start = min(lowest, initial[0]) if initial else lowest
    return start, max(done) + 1


def _gaps(offsets: list[int], start: int, end: int) -> list[tuple[int, int]]:
    """Maximal [low, high) ranges within [start, end) holding no processed offset."""
    gaps = []
    previous = start - 1
    for offset in offsets:
        if offset > previous + 1:
            gaps.append((previous + 1, offset))
        previous = max(previous, offset)
    assert previous == end - 1, "the range ends at the highest processed offset"
    return gaps


def _judge_gap(
    seen: _Seen,
    key: Key,
    low: int,
    high: int,
    lost: list[int],
    acked: dict[int, tuple[Any, int]],
    found: dict[str, list[dict[str, Any]]],
) -> None:
    """Split the lost offsets of one gap into those a reset chose and the silent rest."""
    chosen: dict[int, list[int]] = defaultdict(list)
    silent = []
    for offset in lost:
        reset = _explaining_reset(seen.resets, key, offset)
        if reset is None:
            silent.append(offset)
        else:
            chosen[reset].append(offset)
    for index, offsets in chosen.items():
        reset = seen.resets[index]
        found["skipped-by-reset"].append(
            {
                "key": key,
                "from_offset": offsets[0],
                "to_offset": offsets[-1],
                "records": len(offsets),
                "reset": reset,
                "lag_before": _lag_before(seen, key, reset["time"]),
            }
        )
    if silent:
        found["silent-skip"].append(
            {"key": key, "from_offset": low, "to_offset": high - 1, "records": len(silent)}
        )
        for offset in silent:
            value, send_index = acked[offset]
            found["lost-processing"].append(
                {"key": key, "offset": offset, "value": value, "send_index": send_index}
            )


def _explaining_reset(resets: list[dict[str, Any]], key: Key, offset: int) -> int | None:
    """The first reset that jumped over `offset` (from its refused position, or from
    nothing when there was no committed offset, to a higher one)."""
    for index, reset in enumerate(resets):
        if reset["key"] != key:
            continue
        low = reset["from"] if reset["from"] is not None else 0
        if low <= offset < reset["to"]:
            return index
    return None


def _lag_before(seen: _Seen, key: Key, at_ns: int) -> dict[str, Any] | None:
    """The last lag snapshot of `key` taken before `at_ns`, with its time."""
    times = [t for t, _ in seen.lag]
    position = bisect.bisect_left(times, at_ns)
    for time_ns, snapshot in reversed(seen.lag[:position]):
        for row in snapshot["partitions"]:
            if str(row.get("key")) == key:
                return {"time": time_ns, **row}
    return None


def _judge_duplicates(
    key: Key, done: dict[int, list[tuple[Any, str, int, str, int]]], found: dict[str, Any]
) -> int:
    allowed = 0
    for offset, by in sorted(done.items()):
        if len(by) < 2:
            continue
        if any(discipline == AT_MOST_ONCE for *_, discipline, _ in by):
            found["duplicate-processing"].append(
                {
                    "key": key,
                    "offset": offset,
                    "processed_by": [
                        {"process": p, "member": m, "generation": g, "index": i}
                        for p, m, g, _, i in by
                    ],
                }
            )
        else:
            allowed += len(by) - 1
    return allowed


def _judge_owners(seen: _Seen, found: dict[str, list[dict[str, Any]]]) -> None:
    for (key, generation), owners in sorted(seen.owners.items(), key=lambda item: item[0][1]):
        if len(owners) > 1:
            found["two-owners"].append(
                {
                    "key": key,
                    "generation": generation,
                    "members": sorted(owners),
                    "indexes": sorted(owners.values()),
                }
            )


def _rebalances(seen: _Seen) -> dict[str, Any]:
    """Rebalances (new generations) over time: the count, each generation's first
    sighting, and per-second counts (time bucket in ns -> new generations)."""
    firsts = sorted(seen.generations.items(), key=lambda item: item[1])
    buckets: dict[int, int] = defaultdict(int)
    for _, at_ns in firsts:
        buckets[at_ns // REBALANCE_BUCKET_NS * REBALANCE_BUCKET_NS] += 1
    return {
        "count": max(0, len(firsts) - 1),
        "generations": [[generation, at_ns] for generation, at_ns in firsts],
        "series": [[bucket, count] for bucket, count in sorted(buckets.items())],
    }


def _lag_statuses(seen: _Seen) -> list[list[Any]]:
    return [[time_ns, snapshot.get("status")] for time_ns, snapshot in seen.lag]
