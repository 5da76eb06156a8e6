"""The vocabulary of `schemas.py`: a message and its fields, as in Kafka's JSON definitions.

Version ranges keep Kafka's spelling ("0+", "3-7", "5", "none") so every line of
`schemas.py` can be checked against Kafka's documentation by eye.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

VERSION_MAX = 0x7FFF
PRIMITIVE_TYPES = frozenset(
    {
        "bool",
        "int8",
        "int16",
        "uint16",
        "int32",
        "int64",
        "float64",
        "string",
        "bytes",
        "records",
        "uuid",
    }
)


class _NoDefault:
    """Marks a field whose JSON definition has no "default" (so the type's zero applies)."""

    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Any = _NoDefault()


@lru_cache(maxsize=256)
def parse_versions(spec: str) -> tuple[int, int]:
    """Kafka's range string as (lowest, highest), inclusive; "none" is the empty (1, 0)."""
    if spec == "none":
        return (1, 0)
    if spec.endswith("+"):
        return (int(spec[:-1]), VERSION_MAX)
    low, _, high = spec.partition("-")
    return (int(low), int(high or low))


@lru_cache(maxsize=4096)
def in_versions(version: int, spec: str) -> bool:
    # Cached as a whole: every message encoded or decoded asks it a few times.
    low, high = parse_versions(spec)
    return low <= version <= high


@dataclass(frozen=True)
class Field:
    """One field; `type` is Kafka's: "int32", "[]int32", "[]TopicProduceData", "SnapshotId"."""

    name: str
    type: str
    versions: str
    nullable_versions: str = "none"
    tagged_versions: str = "none"
    tag: int | None = None
    default: Any = NO_DEFAULT
    fields: tuple[Field, ...] = ()

    @property
    def element_type(self) -> str:
        """The type of one element for an array, the type itself otherwise."""
        return self.type[2:] if self.is_array else self.type

    @property
    def is_array(self) -> bool:
        return self.type.startswith("[]")

    @property
    def is_struct(self) -> bool:
        return self.element_type not in PRIMITIVE_TYPES


@dataclass(frozen=True)
class Message:
    """A request or response body: Kafka's top-level JSON object."""

    name: str
    api_key: int
    kind: str
    valid_versions: str
    flexible_versions: str
    fields: tuple[Field, ...]
