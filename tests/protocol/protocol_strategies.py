"""Hypothesis strategies for message bodies, built from impl/protocol/schemas.py.

A body holds every field valid at the version (tagged ones included), so the decoder's
output, which fills absent fields with defaults, must equal it exactly.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from impl.protocol.codec import is_flexible
from impl.protocol.schema_types import Field, Message, in_versions, parse_versions

ARRAY_SIZE_MAX = 3
TEXT_SIZE_MAX = 12
BYTES_SIZE_MAX = 40

_INTS = {
    "int8": st.integers(-(2**7), 2**7 - 1),
    "int16": st.integers(-(2**15), 2**15 - 1),
    "uint16": st.integers(0, 2**16 - 1),
    "int32": st.integers(-(2**31), 2**31 - 1),
    "int64": st.integers(-(2**63), 2**63 - 1),
}
_PRIMITIVES: dict[str, st.SearchStrategy[Any]] = {
    **_INTS,
    "bool": st.booleans(),
    "float64": st.floats(allow_nan=False),
    "string": st.text(max_size=TEXT_SIZE_MAX),
    "bytes": st.binary(max_size=BYTES_SIZE_MAX),
    "records": st.binary(max_size=BYTES_SIZE_MAX),
    "uuid": st.binary(min_size=16, max_size=16),
}


def _value(field: Field, version: int, flexible: bool) -> st.SearchStrategy[Any]:
    if field.is_struct:
        values = struct_values(field.fields, version, flexible)
    else:
        values = _PRIMITIVES[field.element_type]
    if field.is_array:
        values = st.lists(values, max_size=ARRAY_SIZE_MAX)
    if in_versions(version, field.nullable_versions):
        return st.none() | values
    return values


def struct_values(
    fields: tuple[Field, ...], version: int, flexible: bool
) -> st.SearchStrategy[dict[str, Any]]:
    valid = [field for field in fields if in_versions(version, field.versions)]
    return st.fixed_dictionaries({f.name: _value(f, version, flexible) for f in valid})


def versions(message: Message) -> range:
    """Every version Kafka defines for `message`."""
    low, high = parse_versions(message.valid_versions)
    return range(low, high + 1)


def bodies(message: Message, version: int) -> st.SearchStrategy[dict[str, Any]]:
    return struct_values(message.fields, version, is_flexible(message, version))
