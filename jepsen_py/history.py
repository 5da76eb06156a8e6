"""Histories: Jepsen-style op records, read from and written to JSON Lines, and validated.

One op per line: `{"index", "time" (ns), "process", "type", "f", "value", "error"?}`. A
client op is an `invoke` followed later by one completion from the same process: `ok` (it
happened, `value` is its result), `fail` (it certainly did not happen) or `info` (outcome
unknown: it may take effect at any time after its invocation, so it stays concurrent with
everything after it). A process that got `info` never invokes again. Ops whose process is
"nemesis" are fault injections; they are kept for reports and ignored by client checkers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

TYPES = frozenset({"invoke", "ok", "fail", "info"})
COMPLETIONS = frozenset({"ok", "fail", "info"})
NEMESIS = "nemesis"
_REQUIRED = ("index", "time", "process", "type", "f")


class HistoryError(ValueError):
    """A history that breaks the format or Jepsen's op rules; `line` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


@dataclass(slots=True)
class Op:
    index: int
    time: int
    process: int | str
    type: str
    f: str
    value: Any = None
    error: Any = None

    def to_json(self) -> dict[str, Any]:
        record = {
            "index": self.index,
            "time": self.time,
            "process": self.process,
            "type": self.type,
            "f": self.f,
            "value": self.value,
        }
        if self.error is not None:
            record["error"] = self.error
        return record

    @property
    def is_client(self) -> bool:
        return type(self.process) is int


def op_from_json(record: Any, line: int) -> Op:
    if not isinstance(record, dict):
        raise HistoryError(line, f"expected a JSON object, got {type(record).__name__}")
    missing = [key for key in _REQUIRED if key not in record]
    if missing:
        raise HistoryError(line, f"missing field(s) {', '.join(missing)}")
    index, time, process = record["index"], record["time"], record["process"]
    kind, f = record["type"], record["f"]
    if type(index) is not int or type(time) is not int:
        raise HistoryError(line, "index and time must be integers")
    if type(process) is not int and process != NEMESIS:
        raise HistoryError(line, f"process must be an integer or {NEMESIS!r}, got {process!r}")
    if kind not in TYPES:
        raise HistoryError(line, f"unknown type {kind!r} (expected one of {sorted(TYPES)})")
    if not isinstance(f, str):
        raise HistoryError(line, f"f must be a string, got {f!r}")
    return Op(index, time, process, kind, f, record.get("value"), record.get("error"))


def parse_jsonl(lines: Iterable[str]) -> list[Op]:
    """Parse and validate; raises HistoryError naming the first bad line."""
    ops = []
    for number, text in enumerate(lines, start=1):
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            raise HistoryError(number, f"not JSON: {error.msg}") from None
        ops.append(op_from_json(record, number))
    validate(ops)
    return ops


def read_jsonl(path: str | Path) -> list[Op]:
    with open(path, encoding="utf-8") as stream:
        return parse_jsonl(stream)


def write_jsonl(ops: Iterable[Op], stream: TextIO) -> None:
    for op in ops:
        stream.write(json.dumps(op.to_json(), separators=(",", ":")))
        stream.write("\n")


def validate(ops: list[Op]) -> None:
    """Check Jepsen's op rules; line numbers are positions in `ops`, counted from 1."""
    pair_positions(ops)


def pairs(ops: list[Op]) -> list[tuple[Op, Op | None]]:
    """Client ops as (invocation, completion or None if it never completed), in invocation order."""
    return [(ops[call], None if ret is None else ops[ret]) for call, ret in pair_positions(ops)]


def pair_positions(ops: list[Op]) -> list[tuple[int, int | None]]:
    """Validate, and pair each client invocation's position with its completion's (or None)."""
    open_at: dict[int, int] = {}
    crashed_at: dict[int, int] = {}
    slots: list[tuple[int, int | None]] = []
    for position, op in enumerate(ops):
        if type(op.process) is not int:
            continue
        if op.type == "invoke":
            _check_may_invoke(ops, position, open_at, crashed_at)
            open_at[op.process] = len(slots)
            slots.append((position, None))
            continue
        slot = open_at.pop(op.process, None)
        if slot is None:
            raise HistoryError(
                position + 1, f"{op.type} completion for process {op.process}, which has no open op"
            )
        call = slots[slot][0]
        if ops[call].f != op.f:
            raise HistoryError(
                position + 1,
                f"completion f {op.f!r} does not match {ops[call].f!r} invoked on line {call + 1}",
            )
        slots[slot] = (call, position)
        if op.type == "info":
            crashed_at[op.process] = position
    return slots


def _check_may_invoke(
    ops: list[Op], position: int, open_at: dict[int, int], crashed_at: dict[int, int]
) -> None:
    process = ops[position].process
    assert type(process) is int
    if process in open_at:
        raise HistoryError(position + 1, f"process {process} invokes while it has an open op")
    if process in crashed_at:
        raise HistoryError(
            position + 1,
            f"process {process} invokes again after its info on line "
            f"{crashed_at[process] + 1}; Jepsen gives a crashed client a new process",
        )
