"""Jepsen's Kafka queue anomalies over `send`, `poll` and `assign` ops, in linear time.

Op shapes (keys are compared as strings, values must be JSON scalars):
- send:   invoke `[k, v]`; ok `[offset, v]`; `fail` = certainly not written.
- poll:   ok `{k: [[offset, v], ...]}`.
- assign / subscribe: the process's consumer position restarts, so poll continuity is
  only checked between two polls with no assign in between.

Offsets are compared through each key's *version order*: the sorted offsets anybody
observed for it, so gaps Kafka leaves (transaction markers, compaction) are not skips.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from jepsen_py.history import HistoryError, Op, pair_positions
from jepsen_py.result import Result, no_evidence

ANOMALIES = (
    "lost-write",
    "unseen",
    "duplicate",
    "inconsistent-offsets",
    "poll-skip",
    "nonmonotonic-poll",
    "nonmonotonic-send",
    "int-poll-skip",
    "int-nonmonotonic-poll",
    "aborted-read",
)
# Jepsen's defaults: every anomaly fails a run, except those its Kafka checker allows.
JEPSEN_ALLOWED = frozenset({"int-send-skip"})
# With `subscribe`, a rebalance legitimately moves consumers backwards or forwards.
SUBSCRIBE_ALLOWED = JEPSEN_ALLOWED | {"poll-skip", "nonmonotonic-poll"}
MAX_CASES_PER_ANOMALY = 64
UNSEEN_SERIES_POINTS = 200
_RESETS = frozenset({"assign", "subscribe"})
# The client ops this checker reads; any other f is not its evidence.
FUNCTIONS = frozenset({"send", "poll", *_RESETS})
_RECORD_SHAPE = "a polled record must be [integer offset, value]"
_VALUE_SHAPE = "a record's value must be a number, string, boolean or null, not a list or map"
_POLL_SHAPE = "poll completion value must be {key: [[offset, value], ...]}"

Key = str
Record = tuple[Key, Any]


@dataclass
class _Observations:
    """Everything pass one learns; pass two judges order against the version orders."""

    sends: list[tuple[int, Any, Key, Any, int]] = field(default_factory=list)
    polls: list[tuple[int, Any, dict[Key, list[tuple[int, Any]]]]] = field(default_factory=list)
    resets: list[tuple[int, Any]] = field(default_factory=list)
    failed: dict[Record, int] = field(default_factory=dict)
    offset_of: dict[Record, int] = field(default_factory=dict)
    value_at: dict[tuple[Key, int], Any] = field(default_factory=dict)
    duplicates: dict[Record, set[int]] = field(default_factory=dict)
    conflicts: dict[tuple[Key, int], set[Any]] = field(default_factory=dict)
    first_seen: dict[Record, tuple[int, int]] = field(default_factory=dict)
    max_polled: dict[Key, int] = field(default_factory=dict)
    acked: list[tuple[int, int, Key, Any, int]] = field(default_factory=list)


def check(history: list[Op], allowed: Iterable[str] = JEPSEN_ALLOWED) -> Result:
    """Find every anomaly; the run is invalid if any anomaly outside `allowed` occurs.
    Anomalies in `allowed` are reported as allowed, not as violations."""
    seen = _observe(history)
    if not seen.acked and not seen.polls:
        return no_evidence("no acknowledged send and no completed poll")
    rank = _version_orders(seen)
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    _value_anomalies(seen, found)
    _order_anomalies(seen, rank, found)
    unseen_series = _unseen(seen, found)
    allowed = frozenset(allowed)
    stats = {
        "sends": len(seen.sends),
        "acknowledged_sends": len(seen.acked),
        "polls": len(seen.polls),
        "counts": {kind: len(cases) for kind, cases in sorted(found.items())},
        "unseen_series": unseen_series,
    }
    capped = {kind: cases[:MAX_CASES_PER_ANOMALY] for kind, cases in sorted(found.items()) if cases}
    bad = {kind: cases for kind, cases in capped.items() if kind not in allowed}
    tolerated = {kind: cases for kind, cases in capped.items() if kind in allowed}
    return Result(not bad, bad, stats, tolerated)


def _observe(history: list[Op]) -> _Observations:
    seen = _Observations()
    for call, ret in pair_positions(history):
        invocation = history[call]
        completion = None if ret is None else history[ret]
        if invocation.f == "send":
            _observe_send(seen, invocation, completion, call, ret)
        elif invocation.f == "poll" and completion is not None and completion.type == "ok":
            assert ret is not None
            _observe_poll(seen, completion, ret)
        elif invocation.f in _RESETS and completion is not None and completion.type == "ok":
            seen.resets.append((call, invocation.process))
    return seen


def _observe_send(
    seen: _Observations, invocation: Op, completion: Op | None, call: int, ret: int | None
) -> None:
    key, value = sent_record(invocation, call)
    if completion is None or completion.type == "info":
        return
    if completion.type == "fail":
        seen.failed[(key, value)] = invocation.index
        return
    assert ret is not None
    offset = acked_offset(completion, ret)
    _record(seen, key, offset, value)
    seen.acked.append((invocation.index, completion.time, key, value, offset))
    seen.sends.append((call, invocation.process, key, value, offset))


def _observe_poll(seen: _Observations, completion: Op, position: int) -> None:
    """Checks what `polled` checks, inlined: this loop runs once per polled record."""
    if not isinstance(completion.value, dict):
        raise HistoryError(position + 1, f"{_POLL_SHAPE}, got {completion.value!r}")
    by_key: dict[Key, list[tuple[int, Any]]] = {}
    first_seen, offset_of, value_at = seen.first_seen, seen.offset_of, seen.value_at
    seen_at = (completion.time, completion.index)
    for raw_key, records in completion.value.items():
        key = str(raw_key)
        if type(records) is not list:
            raise HistoryError(position + 1, f"{_POLL_SHAPE}, got {records!r} for {key!r}")
        highest = seen.max_polled.get(key, -1)
        try:
            for record in records:
                if type(record) is not list or len(record) != 2 or type(record[0]) is not int:
                    raise HistoryError(position + 1, f"{_RECORD_SHAPE}, got {record!r}")
                offset, value = record
                # _record, inlined.
                known = offset_of.setdefault((key, value), offset)
                held = value_at.setdefault((key, offset), value)
                if known != offset or held != value:
                    _record(seen, key, offset, value)
                first_seen.setdefault((key, value), seen_at)
                highest = max(highest, offset)
        except TypeError:
            # The shape is checked above, so only an unhashable (list or map) value gets
            # here; catching it costs nothing on the common path, unlike a check per record.
            raise HistoryError(position + 1, f"{_VALUE_SHAPE}, got {record!r}") from None
        by_key[key] = records
        seen.max_polled[key] = highest
    seen.polls.append((position, completion.process, by_key))


def _record(seen: _Observations, key: Key, offset: int, value: Any) -> None:
    """Note that `key` holds `value` at `offset`; disagreements are kept aside, so the
    common case costs two dict look-ups."""
    known = seen.offset_of.setdefault((key, value), offset)
    if known != offset:
        seen.duplicates.setdefault((key, value), {known}).add(offset)
    held = seen.value_at.setdefault((key, offset), value)
    if held != value:
        seen.conflicts.setdefault((key, offset), {held}).add(value)


def sent_record(invocation: Op, position: int) -> Record:
    """The (key, value) a send invocation at `position` writes, checked. Values must be
    hashable: records are matched by value."""
    key, value = _pair(invocation.value, position, "send invocation value must be [key, value]")
    if not _hashable(value):
        raise HistoryError(position + 1, f"{_VALUE_SHAPE}, got {value!r}")
    return str(key), value


def acked_offset(completion: Op, position: int) -> int:
    """The offset an `ok` send completion at `position` reports, checked."""
    offset, _ = _pair(completion.value, position, "send completion value must be [offset, value]")
    if type(offset) is not int:
        raise HistoryError(position + 1, f"send offset must be an integer, got {offset!r}")
    return offset


def polled(completion: Op, position: int) -> dict[Key, list[list[Any]]]:
    """The records an `ok` poll completion at `position` returned, by key, checked."""
    if not isinstance(completion.value, dict):
        raise HistoryError(position + 1, f"{_POLL_SHAPE}, got {completion.value!r}")
    for key, records in completion.value.items():
        if type(records) is not list:
            raise HistoryError(position + 1, f"{_POLL_SHAPE}, got {records!r} for {key!r}")
        for record in records:
            if type(record) is not list or len(record) != 2 or type(record[0]) is not int:
                raise HistoryError(position + 1, f"{_RECORD_SHAPE}, got {record!r}")
            if not _hashable(record[1]):
                raise HistoryError(position + 1, f"{_VALUE_SHAPE}, got {record!r}")
    return {str(key): records for key, records in completion.value.items()}


def _hashable(value: Any) -> bool:
    """The test the hot loop in `_observe_poll` makes by using values as dict keys."""
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _pair(value: Any, position: int, message: str) -> tuple[Any, Any]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise HistoryError(position + 1, f"{message}, got {value!r}")
    return value[0], value[1]


def _version_orders(seen: _Observations) -> dict[tuple[Key, int], int]:
    """(key, offset) -> position of that offset among all offsets observed for the key."""
    offsets: dict[Key, set[int]] = defaultdict(set)
    for key, offset in seen.value_at:
        offsets[key].add(offset)
    return {
        (key, offset): position
        for key, known in offsets.items()
        for position, offset in enumerate(sorted(known))
    }


def _value_anomalies(seen: _Observations, found: dict[str, list[dict[str, Any]]]) -> None:
    for (key, value), offsets in seen.duplicates.items():
        found["duplicate"].append({"key": key, "value": value, "offsets": sorted(offsets)})
    for (key, value), send_index in seen.failed.items():
        if (key, value) in seen.first_seen:
            found["aborted-read"].append(
                {
                    "key": key,
                    "value": value,
                    "send_index": send_index,
                    "poll_index": seen.first_seen[(key, value)][1],
                }
            )
    for (key, offset), values in seen.conflicts.items():
        found["inconsistent-offsets"].append(
            {"key": key, "offset": offset, "values": sorted(values, key=repr)}
        )


def _order_anomalies(
    seen: _Observations, rank: dict[tuple[Key, int], int], found: dict[str, list[dict[str, Any]]]
) -> None:
    """Walk sends, polls and resets in history order, per process and key."""
    events: list[tuple[int, int, Any]] = [(s[0], 0, s) for s in seen.sends]
    events += [(p[0], 1, p) for p in seen.polls]
    events += [(r[0], 2, r) for r in seen.resets]
    events.sort(key=lambda event: event[0])
    last_sent: dict[tuple[Any, Key], tuple[int, int]] = {}
    last_polled: dict[Any, dict[Key, tuple[int, int]]] = defaultdict(dict)
    for position, kind, event in events:
        if kind == 0:
            _, process, key, _, offset = event
            here = (rank[(key, offset)], offset)
            before = last_sent.get((process, key))
            if before is not None and here[0] <= before[0]:
                found["nonmonotonic-send"].append(_step_case(key, before, here, process, position))
            last_sent[(process, key)] = here
        elif kind == 1:
            _, process, by_key = event
            _check_poll(position, process, by_key, rank, last_polled[process], found)
        else:
            last_polled.pop(event[1], None)


def _check_poll(
    position: int,
    process: Any,
    by_key: dict[Key, list[tuple[int, Any]]],
    rank: dict[tuple[Key, int], int],
    last: dict[Key, tuple[int, int]],
    found: dict[str, list[dict[str, Any]]],
) -> None:
    for key, records in by_key.items():
        if not records:
            continue
        ranked = [(rank[(key, offset)], offset) for offset, _ in records]
        steps = [("", last[key], ranked[0])] if key in last else []
        steps += [("int-", ranked[i - 1], ranked[i]) for i in range(1, len(ranked))]
        for prefix, before, after in steps:
            if after[0] <= before[0]:
                found[prefix + "nonmonotonic-poll"].append(
                    _step_case(key, before, after, process, position)
                )
            elif after[0] > before[0] + 1:
                found[prefix + "poll-skip"].append(
                    _step_case(key, before, after, process, position)
                )
        last[key] = ranked[-1]


def _step_case(
    key: Key, before: tuple[int, int], after: tuple[int, int], process: Any, position: int
) -> dict[str, Any]:
    return {
        "key": key,
        "process": process,
        "from_offset": before[1],
        "to_offset": after[1],
        "delta": after[0] - before[0],
        "position": position,
    }


def _unseen(seen: _Observations, found: dict[str, list[dict[str, Any]]]) -> list[list[int]]:
    """Lost writes, writes never read, and the unseen count over time (Jepsen's plot):
    acknowledged sends not yet read by any poll, sampled at up to UNSEEN_SERIES_POINTS."""
    changes: list[tuple[int, int]] = []
    for index, acked_at, key, value, offset in seen.acked:
        first = seen.first_seen.get((key, value))
        if first is None:
            kind = "lost-write" if offset < seen.max_polled.get(key, -1) else "unseen"
            found[kind].append({"key": key, "value": value, "offset": offset, "send_index": index})
            changes.append((acked_at, 1))
        elif first[0] > acked_at:
            changes += [(acked_at, 1), (first[0], -1)]
    return _sample(changes)


def _sample(changes: list[tuple[int, int]]) -> list[list[int]]:
    if not changes:
        return []
    changes.sort()
    start, end = changes[0][0], changes[-1][0]
    width = max(1, (end - start) // UNSEEN_SERIES_POINTS + 1)
    series: list[list[int]] = []
    count = 0
    for at, delta in changes:
        count += delta
        bucket = start + (at - start) // width * width
        if series and series[-1][0] == bucket:
            series[-1][1] = count
        else:
            series.append([bucket, count])
    return series
