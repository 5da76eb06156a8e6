"""Importers for public histories with known verdicts (see tests/data/*/FORMAT.md).

Each returns validated `Op`s in file order. The corpora have no clocks, so `index` and
`time` are both the op's position.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from jepsen_py import edn
from jepsen_py.history import NEMESIS, HistoryError, Op, parse_jsonl, validate

_ETCD_LINE = re.compile(
    r"INFO\s+jepsen\.util\s+-\s+(\d+)\s+:(invoke|ok|fail|info)\s+:(read|write|cas)\s+"
    r"(nil|\d+|\[\s*\d+\s+\d+\s*\]|:timed-out)\s*"
)
_KV_LINE = re.compile(
    r'\{:process (\d+), :type :(invoke|ok), :f :(get|put|append), :key "([^"\\]*)", '
    r':value (nil|"[^"\\]*")\}'
)


def porcupine_etcd(text: str) -> list[Op]:
    """Porcupine's Jepsen etcd logs (`etcd-register` model).

    `:info ... :timed-out` becomes an `info` completion (Porcupine leaves such an op open
    to the end, which is the same thing); `:fail :read :timed-out` stays a `fail` read, whose
    output the etcd model treats as unknown.
    """
    ops: list[Op] = []
    open_value: dict[int, Any] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        match = _ETCD_LINE.fullmatch(line)
        if match is None:
            raise HistoryError(number, f"not a Porcupine etcd log line: {line!r}")
        process, kind, f, payload = int(match[1]), match[2], match[3], _etcd_payload(match[4])
        if kind == "invoke":
            open_value[process] = payload
            value = payload
        elif f == "read":
            value = None if kind == "fail" else payload
        else:
            value = open_value.get(process, payload)
        error = "timed-out" if match[4] == ":timed-out" else None
        ops.append(Op(len(ops), len(ops), process, kind, f, value, error))
    validate(ops)
    return ops


def _etcd_payload(token: str) -> Any:
    if token in ("nil", ":timed-out"):
        return None
    if token.startswith("["):
        return [int(part) for part in token.strip("[]").split()]
    return int(token)


def porcupine_kv(text: str) -> list[Op]:
    """Porcupine's kv histories (`kv` model); each op's value becomes `[key, string-or-null]`."""
    ops: list[Op] = []
    for number, line in enumerate(text.splitlines(), start=1):
        match = _KV_LINE.fullmatch(line)
        if match is None:
            raise HistoryError(number, f"not a Porcupine kv line: {line!r}")
        raw = match[5]
        value = [match[4], None if raw == "nil" else raw[1:-1]]
        ops.append(Op(len(ops), len(ops), int(match[1]), match[2], match[3], value))
    validate(ops)
    return ops


def knossos_edn(text: str) -> list[Op]:
    """A Knossos/Jepsen EDN history: a vector or list of op maps.

    Non-integer processes become "nemesis" ops. Keywords stay `edn.Keyword` (a str), so
    `:x` equals "x" and exports back to EDN as a keyword.
    """
    entries = edn.loads(text)
    if not isinstance(entries, list):
        raise HistoryError(1, "a Knossos history is one vector or list of op maps")
    ops = [_knossos_op(entry, position) for position, entry in enumerate(entries)]
    validate(ops)
    return ops


def _knossos_op(entry: Any, position: int) -> Op:
    if not isinstance(entry, dict):
        raise HistoryError(position + 1, f"entry {position + 1} is not a map")
    fields = {str(key): value for key, value in entry.items()}
    for key in ("process", "type", "f"):
        if key not in fields:
            raise HistoryError(position + 1, f"entry {position + 1} has no :{key}")
    process = fields["process"]
    if type(process) is not int:
        process = NEMESIS
    kind = str(fields["type"])
    if kind not in ("invoke", "ok", "fail", "info"):
        raise HistoryError(position + 1, f"entry {position + 1} has unknown :type {kind!r}")
    index, time = fields.get("index", position), fields.get("time", position)
    if type(index) is not int or type(time) is not int:
        raise HistoryError(position + 1, f"entry {position + 1}: :index and :time must be integers")
    return Op(
        index,
        time,
        process,
        kind,
        str(fields["f"]),
        fields.get("value"),
        fields.get("error"),
    )


IMPORTERS = {
    "porcupine-etcd": porcupine_etcd,
    "porcupine-kv": porcupine_kv,
    "knossos-edn": knossos_edn,
}


def load(path: str | Path, fmt: str) -> list[Op]:
    """Read a history file in one of: jsonl, porcupine-etcd, porcupine-kv, knossos-edn."""
    text = Path(path).read_text(encoding="utf-8")
    if fmt == "jsonl":
        return parse_jsonl(text.splitlines())
    if fmt not in IMPORTERS:
        raise ValueError(f"unknown format {fmt!r}; expected jsonl or one of {sorted(IMPORTERS)}")
    return IMPORTERS[fmt](text)
