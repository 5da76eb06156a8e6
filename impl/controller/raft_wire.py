"""Raft messages as bytes, for the RaftMessage request that carries them between nodes.

A compact JSON object: the message type, its fields, and entries as [index, term,
base64 data]. Malformed input raises RaftWireError and never reaches the node.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import fields
from typing import Any

from impl.controller.raft import (
    AppendEntries,
    AppendResponse,
    Entry,
    Message,
    RequestVote,
    VoteResponse,
)

MESSAGE_BYTES_MAX = 8 * 1024 * 1024
_TYPES: dict[str, type] = {
    "vote": RequestVote,
    "vote-response": VoteResponse,
    "append": AppendEntries,
    "append-response": AppendResponse,
}
_NAMES = {cls: name for name, cls in _TYPES.items()}
# Field names and declared types per message class, in declaration order (the JSON's).
_FIELDS: dict[type, tuple[tuple[str, str], ...]] = {
    cls: tuple((f.name, str(f.type)) for f in fields(cls)) for cls in _TYPES.values()
}


class RaftWireError(ValueError):
    """Bytes that are not a Raft message."""


def encode_message(message: Message) -> bytes:
    body: dict[str, Any] = {"type": _NAMES[type(message)]}
    for name, _ in _FIELDS[type(message)]:
        body[name] = getattr(message, name)
    if isinstance(message, AppendEntries):
        body["entries"] = [
            [e.index, e.term, base64.b64encode(e.data).decode()] for e in message.entries
        ]
    return json.dumps(body, separators=(",", ":")).encode()


def decode_message(data: bytes) -> Message:
    if len(data) > MESSAGE_BYTES_MAX:
        raise RaftWireError(f"{len(data)} bytes, more than {MESSAGE_BYTES_MAX}")
    try:
        body = json.loads(data)
        cls = _TYPES[body.pop("type")]
        if cls is AppendEntries:
            body["entries"] = tuple(
                Entry(int(i), int(t), base64.b64decode(d, validate=True))
                for i, t, d in body["entries"]
            )
        message = cls(**body)
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as error:
        raise RaftWireError(f"not a Raft message: {error}") from None
    _check_types(message)
    return message


def _check_types(message: Message) -> None:
    for name, kind in _FIELDS[type(message)]:
        value = getattr(message, name)
        if kind == "bool" and not isinstance(value, bool):
            raise RaftWireError(f"{name} must be a boolean, not {value!r}")
        if kind == "int" and (not isinstance(value, int) or isinstance(value, bool)):
            raise RaftWireError(f"{name} must be an integer, not {value!r}")
