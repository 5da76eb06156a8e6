"""The EDN subset Jepsen histories use: reading (for Knossos corpora) and writing (for Elle).

Read: vectors, lists, maps, sets, strings with escapes, integers, floats, nil, true/false,
keywords (returned as `Keyword`) and symbols, `;` comments, commas as whitespace.
Write: JSON-shaped Python data, so a history can be handed to Knossos or Elle.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, TextIO

from jepsen_py.history import NEMESIS, Op


class EdnError(ValueError):
    def __init__(self, text: str, offset: int, message: str) -> None:
        line = text.count("\n", 0, offset) + 1
        super().__init__(f"line {line}: {message}")
        self.line = line


class Keyword(str):
    """An EDN keyword, `:read` -> Keyword("read"); a str so it compares with plain names."""

    __slots__ = ()

    def __repr__(self) -> str:
        return ":" + str(self)


_TOKEN = re.compile(
    r"""(?P<skip>(?:[\s,]+|;[^\n]*)+)
      | (?P<open>\#\{|[\[({])
      | (?P<close>[\])}])
      | (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<atom>[^\s,;()\[\]{}"]+)""",
    re.VERBOSE | re.DOTALL,
)
_CLOSERS = {"[": "]", "(": ")", "{": "}", "#{": "}"}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
# The string token's regex guarantees every backslash is followed by a character.
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)
_INTEGER = re.compile(r"[+-]?\d+N?")
_FLOAT = re.compile(r"[+-]?\d+(\.\d*)?([eE][+-]?\d+)?M?")


def loads(text: str) -> Any:
    """Parse exactly one EDN value (surrounded by whitespace/comments only)."""
    tokens = _tokenize(text)
    value, position = _parse(text, tokens, 0)
    if position != len(tokens):
        raise EdnError(text, tokens[position][1], "more than one top-level value")
    return value


def _tokenize(text: str) -> list[tuple[str, int, str]]:
    tokens = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise EdnError(text, position, f"unexpected character {text[position]!r}")
        kind = match.lastgroup
        assert kind is not None
        if kind != "skip":
            tokens.append((kind, position, match.group()))
        position = match.end()
    return tokens


def _parse(text: str, tokens: list[tuple[str, int, str]], position: int) -> tuple[Any, int]:
    if position >= len(tokens):
        raise EdnError(text, len(text), "unexpected end of input")
    kind, offset, token = tokens[position]
    if kind == "string":
        return _unescape(text, offset, token[1:-1]), position + 1
    if kind == "atom":
        return _atom(text, offset, token), position + 1
    if kind == "close":
        raise EdnError(text, offset, f"unexpected {token!r}")
    items = []
    position += 1
    while position < len(tokens) and tokens[position][0] != "close":
        item, position = _parse(text, tokens, position)
        items.append(item)
    if position >= len(tokens) or tokens[position][2] != _CLOSERS[token]:
        raise EdnError(text, offset, f"{token!r} is never closed")
    return _collection(text, offset, token, items), position + 1


def _collection(text: str, offset: int, opener: str, items: list[Any]) -> Any:
    if opener == "{":
        if len(items) % 2:
            raise EdnError(text, offset, "a map needs an even number of forms")
        return {_hashable(items[i]): items[i + 1] for i in range(0, len(items), 2)}
    if opener == "#{":
        return frozenset(_hashable(item) for item in items)
    return items


def _hashable(value: Any) -> Any:
    """A map or set element as a hashable value; a map becomes a frozenset of pairs, not
    sorted pairs, because its keys may be of types that do not compare (:a and 1)."""
    if isinstance(value, list):
        return tuple(_hashable(item) for item in value)
    if isinstance(value, dict):
        return frozenset((k, _hashable(v)) for k, v in value.items())
    return value


def _atom(text: str, offset: int, token: str) -> Any:
    if token == "nil":
        return None
    if token in ("true", "false"):
        return token == "true"
    if token.startswith(":"):
        return Keyword(token[1:])
    if _INTEGER.fullmatch(token):
        return int(token.rstrip("N"))
    if _FLOAT.fullmatch(token):
        return float(token.rstrip("M"))
    if token[0].isdigit() or token.startswith("#"):
        raise EdnError(text, offset, f"unsupported EDN literal {token!r}")
    return token


def _unescape(text: str, offset: int, body: str) -> str:
    if "\\" not in body:
        return body

    def replace(match: re.Match[str]) -> str:
        escaped = match[1]
        if len(escaped) == 5:
            return chr(int(escaped[1:], 16))
        if escaped in _ESCAPES:
            return _ESCAPES[escaped]
        if escaped == "u":
            raise EdnError(text, offset, "string escape \\u needs four hex digits")
        raise EdnError(text, offset, f"unknown string escape \\{escaped}")

    return _ESCAPE.sub(replace, body)


def dumps(value: Any) -> str:
    """EDN text for JSON-shaped data; Keyword values stay keywords."""
    if value is None:
        return "nil"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, Keyword):
        return ":" + value
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{dumps(k)} {dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + " ".join(dumps(item) for item in value) + "]"
    if isinstance(value, set | frozenset):
        return "#{" + " ".join(dumps(item) for item in value) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as EDN")


def op_to_edn(op: Op) -> str:
    """One Jepsen op map; `type`, `f` and a nemesis process become keywords, as in Jepsen."""
    process = Keyword(NEMESIS) if op.process == NEMESIS else op.process
    fields = {
        Keyword("index"): op.index,
        Keyword("time"): op.time,
        Keyword("type"): Keyword(op.type),
        Keyword("process"): process,
        Keyword("f"): Keyword(op.f),
        Keyword("value"): op.value,
    }
    if op.error is not None:
        fields[Keyword("error")] = op.error
    return dumps(fields)


def write_history(ops: Iterable[Op], stream: TextIO) -> None:
    """A Jepsen history file (a vector of op maps, one per line) for Knossos or Elle."""
    stream.write("[")
    for position, op in enumerate(ops):
        stream.write(("\n " if position else "") + op_to_edn(op))
    stream.write("]\n")
