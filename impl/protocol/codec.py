"""The schema-driven codec: wire primitives, and per-(message, version) struct codecs.

A `StructCodec` is compiled once per message and version from `schemas.py`: a list of
read and write steps for the regular fields (consecutive fixed-size fields merged into one
`struct` call) plus a table of tagged fields, so encoding and decoding walk plain lists of
closures instead of re-reading the schema.

Encodings (big-endian), with Kafka's flexible versions (KIP-482) on the right:

| type | classic | flexible |
|---|---|---|
| string | int16 length (-1 = null) + UTF-8 | unsigned varint length+1 (0 = null) + UTF-8 |
| bytes, records | int32 length (-1 = null) + bytes | unsigned varint length+1 (0 = null) + bytes |
| array | int32 count (-1 = null) + elements | unsigned varint count+1 (0 = null) + elements |
| struct | its fields | its fields + tagged fields |

Tagged fields: unsigned varint count, then per field unsigned varint tag, unsigned varint
size, value. A tagged field is written only when it differs from its default.

Copies: a `records` field decodes to a memoryview of the frame (no copy) and is encoded
by reference (`Writer.blob`), so a 1 MiB batch is copied once, by the final join.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from impl.protocol.errors import ProtocolError
from impl.protocol.schema_types import NO_DEFAULT, Field, Message, in_versions

UVARINT_BYTES_MAX = 5
UVARINT_VALUE_MAX = 0xFFFF_FFFF
STRING_BYTES_MAX = 0x7FFF
BLOB_INLINE_BYTES_MAX = 4096
UUID_BYTES = 16

INT8 = struct.Struct(">b")
INT16 = struct.Struct(">h")
UINT16 = struct.Struct(">H")
INT32 = struct.Struct(">i")
INT64 = struct.Struct(">q")
FLOAT64 = struct.Struct(">d")
BOOL = struct.Struct(">?")
_FIXED = {
    "bool": BOOL,
    "int8": INT8,
    "int16": INT16,
    "uint16": UINT16,
    "int32": INT32,
    "int64": INT64,
    "float64": FLOAT64,
}
_ZERO: dict[str, Any] = {
    "bool": False,
    "int8": 0,
    "int16": 0,
    "uint16": 0,
    "int32": 0,
    "int64": 0,
    "float64": 0.0,
    "string": "",
    "bytes": b"",
    "records": None,
    "uuid": bytes(UUID_BYTES),
}
ENCODE_FAILURES = (struct.error, TypeError, AttributeError, ValueError)
_MISSING: Any = object()

Read = Callable[["Reader"], Any]
Write = Callable[["Writer", Any], None]


class FieldError(ProtocolError):
    """A failure inside a message, with the path of fields leading to it."""

    def __init__(self, reason: str, path: tuple[str, ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = path

    def where(self) -> str:
        return "".join(step if step.startswith("[") else f".{step}" for step in self.path)[1:]


def _within(error: Exception, step: str) -> FieldError:
    if isinstance(error, FieldError):
        return FieldError(error.reason, (step, *error.path))
    return FieldError(str(error) or type(error).__name__, (step,))


class Reader:
    """A cursor over a frame; `end` narrows while a tagged field's bytes are read."""

    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes | memoryview, pos: int = 0) -> None:
        self.buf = memoryview(buf).cast("B")
        self.pos = pos
        self.end = self.buf.nbytes

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def advance(self, size: int) -> int:
        """Start of the next `size` bytes, which are consumed."""
        start = self.pos
        if size > self.end - start:
            raise ProtocolError(
                f"truncated: {size} bytes needed at byte {start}, {self.end - start} left"
            )
        self.pos = start + size
        return start

    def unpack(self, fixed: struct.Struct) -> Any:
        return fixed.unpack_from(self.buf, self.advance(fixed.size))[0]

    def uvarint(self) -> int:
        position = self.pos
        if position < self.end and self.buf[position] < 0x80:  # the common one-byte case
            self.pos = position + 1
            return self.buf[position]
        value = 0
        for index in range(UVARINT_BYTES_MAX):
            byte = self.buf[self.advance(1)]
            value |= (byte & 0x7F) << (7 * index)
            if byte < 0x80:
                return value
        raise ProtocolError(f"unsigned varint longer than {UVARINT_BYTES_MAX} bytes")

    def length(self, compact: bool, classic: struct.Struct) -> int:
        """A length or count: -1 means null; anything else must fit in what is left."""
        size = self.uvarint() - 1 if compact else self.unpack(classic)
        if size < -1:
            raise ProtocolError(f"negative length {size}")
        if size > self.end - self.pos:
            raise ProtocolError(f"length {size} exceeds the {self.end - self.pos} bytes left")
        return size

    def view(self, size: int) -> memoryview:
        start = self.advance(size)
        return self.buf[start : start + size]

    def tagged(self, known: dict[int, tuple[str, Read]], out: dict[str, Any]) -> None:
        """Tagged fields: known tags decode into `out` by name, unknown ones are skipped."""
        for _ in range(self.uvarint()):
            tag = self.uvarint()
            size = self.uvarint()
            if size > self.end - self.pos:
                raise ProtocolError(f"tagged field {tag} of {size} bytes, {self.remaining} left")
            entry = known.get(tag)
            if entry is None:
                self.advance(size)
                continue
            name, read = entry
            outer_end, self.end = self.end, self.pos + size
            try:
                out[name] = read(self)
            except ProtocolError as error:
                raise _within(error, name) from None
            if self.pos != self.end:
                raise FieldError(f"tagged field of {size} bytes has trailing bytes", (name,))
            self.end = outer_end


class Writer:
    """Small values go into one bytearray; large blobs are kept by reference until joined."""

    __slots__ = ("buf", "parts")

    def __init__(self, reserve: int = 0) -> None:
        # `reserve` zero bytes to fill in later (a frame's size prefix).
        self.buf = bytearray(reserve)
        self.parts: list[bytes | bytearray | memoryview] = []

    def blob(self, data: bytes | bytearray | memoryview) -> None:
        if len(data) <= BLOB_INLINE_BYTES_MAX:
            self.buf += data
            return
        self.parts.append(self.buf)
        self.parts.append(data)
        self.buf = bytearray()

    def uvarint(self, value: int) -> None:
        if not 0 <= value <= UVARINT_VALUE_MAX:
            raise ValueError(f"unsigned varint out of range: {value}")
        while value > 0x7F:
            self.buf.append((value & 0x7F) | 0x80)
            value >>= 7
        self.buf.append(value)

    def length(self, compact: bool, classic: struct.Struct, size: int) -> None:
        """A length or count as `Reader.length` reads it (-1 = null)."""
        if compact:
            self.uvarint(size + 1)
        else:
            self.buf += classic.pack(size)

    def chunks(self) -> list[bytes | bytearray | memoryview]:
        return [*self.parts, self.buf]

    def size(self) -> int:
        return sum(len(part) for part in self.parts) + len(self.buf)

    def getvalue(self) -> bytes:
        return b"".join(self.chunks())


def _fixed(fixed: struct.Struct) -> tuple[Read, Write]:
    def read(r: Reader) -> Any:
        return fixed.unpack_from(r.buf, r.advance(fixed.size))[0]

    def write(w: Writer, value: Any) -> None:
        w.buf += fixed.pack(value)

    return read, write


def _null_check(value: Any, nullable: bool) -> bool:
    """True when `value` is a null to write; raises when null is not allowed here."""
    if value is not None:
        return False
    if not nullable:
        raise ValueError("null in a non-nullable field")
    return True


def _string(compact: bool, nullable: bool) -> tuple[Read, Write]:
    def read(r: Reader) -> str | None:
        size = r.length(compact, INT16)
        if size == -1:
            if nullable:
                return None
            raise ProtocolError("null in a non-nullable string")
        try:
            return str(r.view(size), "utf-8")
        except UnicodeDecodeError as error:
            raise ProtocolError(f"string is not UTF-8: {error.reason}") from None

    def write(w: Writer, value: str | None) -> None:
        if _null_check(value, nullable):
            w.length(compact, INT16, -1)
            return
        data = value.encode("utf-8")
        if not compact and len(data) > STRING_BYTES_MAX:
            raise ValueError(f"string of {len(data)} bytes exceeds {STRING_BYTES_MAX}")
        w.length(compact, INT16, len(data))
        w.buf += data

    return read, write


def _bytes(compact: bool, nullable: bool, zero_copy: bool) -> tuple[Read, Write]:
    def read(r: Reader) -> bytes | memoryview | None:
        size = r.length(compact, INT32)
        if size == -1:
            if nullable:
                return None
            raise ProtocolError("null in non-nullable bytes")
        view = r.view(size)
        return view if zero_copy else bytes(view)

    def write(w: Writer, value: bytes | bytearray | memoryview | None) -> None:
        if _null_check(value, nullable):
            w.length(compact, INT32, -1)
            return
        data = memoryview(value).cast("B")
        w.length(compact, INT32, len(data))
        w.blob(data)

    return read, write


# The request header's client_id: a nullable string with an int16 length, even in header v2.
read_client_id, write_client_id = _string(compact=False, nullable=True)


def _uuid() -> tuple[Read, Write]:
    def read(r: Reader) -> bytes:
        return bytes(r.view(UUID_BYTES))

    def write(w: Writer, value: bytes) -> None:
        if len(value) != UUID_BYTES:
            raise ValueError(f"uuid of {len(value)} bytes, not {UUID_BYTES}")
        w.buf += value

    return read, write


def _array(element: tuple[Read, Write], compact: bool, nullable: bool) -> tuple[Read, Write]:
    read_element, write_element = element

    def read(r: Reader) -> list[Any] | None:
        count = r.length(compact, INT32)
        if count == -1:
            if nullable:
                return None
            raise ProtocolError("null in a non-nullable array")
        items = []
        for index in range(count):
            try:
                items.append(read_element(r))
            except ProtocolError as error:
                raise _within(error, f"[{index}]") from None
        return items

    def write(w: Writer, value: list[Any] | None) -> None:
        if _null_check(value, nullable):
            w.length(compact, INT32, -1)
            return
        w.length(compact, INT32, len(value))
        for index, item in enumerate(value):
            try:
                write_element(w, item)
            except ENCODE_FAILURES as error:
                raise _within(error, f"[{index}]") from None

    return read, write


@dataclass(frozen=True)
class _Slot:
    name: str
    read: Read
    write: Write
    default: Callable[[], Any]
    fixed_format: str = ""
    # A struct field (or an array of structs) and how its array is framed, for the
    # generated fast path; None for primitives.
    nested: StructCodec | None = None
    array: bool = False
    nullable: bool = False
    compact: bool = False
    kind: str = ""  # a primitive field's type ("string", "records", ...); "" otherwise


ReadStep = Callable[[Reader, dict[str, Any]], None]
WriteStep = Callable[[Writer, dict[str, Any]], None]


def _single_steps(slot: _Slot) -> tuple[ReadStep, WriteStep]:
    name, read, write, default = slot.name, slot.read, slot.write, slot.default

    def read_step(r: Reader, out: dict[str, Any]) -> None:
        try:
            out[name] = read(r)
        except ProtocolError as error:
            raise _within(error, name) from None

    def write_step(w: Writer, value: dict[str, Any]) -> None:
        item = value.get(name, _MISSING)
        try:
            write(w, default() if item is _MISSING else item)
        except ENCODE_FAILURES as error:
            raise _within(error, name) from None

    return read_step, write_step


def _run_steps(run: list[_Slot]) -> tuple[ReadStep, WriteStep]:
    """Consecutive fixed-size fields, read and written with one struct call each way."""
    fixed = struct.Struct(">" + "".join(slot.fixed_format for slot in run))
    names = tuple(slot.name for slot in run)

    def read_step(r: Reader, out: dict[str, Any]) -> None:
        if fixed.size > r.remaining:
            for slot in run:  # one of them does not fit: let it say which
                _single_steps(slot)[0](r, out)
        out.update(zip(names, fixed.unpack_from(r.buf, r.advance(fixed.size)), strict=True))

    def write_step(w: Writer, value: dict[str, Any]) -> None:
        items = [value[slot.name] if slot.name in value else slot.default() for slot in run]
        try:
            w.buf += fixed.pack(*items)
        except struct.error:
            for slot in run:
                _single_steps(slot)[1](Writer(), value)
            raise

    return read_step, write_step


def _steps(slots: list[_Slot]) -> list[tuple[ReadStep, WriteStep]]:
    steps = []
    run: list[_Slot] = []
    for slot in [*slots, None]:
        if slot is not None and slot.fixed_format:
            run.append(slot)
            continue
        if run:
            steps.append(_run_steps(run) if len(run) > 1 else _single_steps(run[0]))
            run = []
        if slot is not None:
            steps.append(_single_steps(slot))
    return steps


class StructCodec:
    """Reads and writes one struct (a message body or a nested struct) at one version."""

    def __init__(
        self, known: frozenset[str], slots: list[_Slot], tagged: dict[int, _Slot], flexible: bool
    ) -> None:
        self.known = known
        self.slots = slots
        self.tagged = dict(sorted(tagged.items()))
        self.flexible = flexible
        steps = _steps(slots)
        self.read_steps = [read for read, _ in steps]
        self.write_steps = [write for _, write in steps]
        self.tagged_reads = {tag: (slot.name, slot.read) for tag, slot in self.tagged.items()}
        # Defaults without lists or dicts inside can be shared by copying one template.
        self.template = self.fresh_default()
        self.flat = not any(isinstance(v, list | dict) for v in self.template.values())
        self.fast_read, self.fast_write = _generate(self)

    def read(self, r: Reader) -> dict[str, Any]:
        """The generated straight-line reader; on any failure the step-by-step one runs
        again from the same place, so errors name the same field as always."""
        start, end = r.pos, r.end
        try:
            return self.fast_read(r)
        except Exception:
            r.pos, r.end = start, end
            return self.read_steps_one_by_one(r)

    def write(self, w: Writer, value: dict[str, Any]) -> None:
        """The generated writer; on any failure what it wrote is taken back and the
        step-by-step writer runs (and raises the error it always raised)."""
        parts, size = len(w.parts), len(w.buf)
        try:
            self.fast_write(w, value)
        except Exception:
            if len(w.parts) > parts:
                w.buf = w.parts[parts]
                del w.parts[parts:]
            del w.buf[size:]
            self.write_steps_one_by_one(w, value)

    def fresh_default(self) -> dict[str, Any]:
        values = {slot.name: slot.default() for slot in self.slots}
        values.update((slot.name, slot.default()) for slot in self.tagged.values())
        return values

    def default(self) -> dict[str, Any]:
        return self.template.copy() if self.flat else self.fresh_default()

    def read_steps_one_by_one(self, r: Reader) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for step in self.read_steps:
            step(r, out)
        if self.flexible:
            r.tagged(self.tagged_reads, out)
            if len(out) < len(self.template):
                for slot in self.tagged.values():
                    if slot.name not in out:
                        out[slot.name] = slot.default()
        return out

    def write_steps_one_by_one(self, w: Writer, value: dict[str, Any]) -> None:
        if not value.keys() <= self.known:
            raise ValueError(f"unknown fields {sorted(value.keys() - self.known)}")
        for step in self.write_steps:
            step(w, value)
        if self.flexible:
            self._write_tagged(w, value)

    def _write_tagged(self, w: Writer, value: dict[str, Any]) -> None:
        present = []
        for tag, slot in self.tagged.items():
            item = value.get(slot.name, _MISSING)
            if item is _MISSING or item == slot.default():
                continue
            inner = Writer()
            try:
                slot.write(inner, item)
            except ENCODE_FAILURES as error:
                raise _within(error, slot.name) from None
            present.append((tag, inner.getvalue()))
        w.uvarint(len(present))
        for tag, data in present:
            w.uvarint(tag)
            w.uvarint(len(data))
            w.blob(data)


def _default_factory(field: Field, version: int, nested: StructCodec | None) -> Callable[[], Any]:
    if field.default is not NO_DEFAULT:
        explicit = field.default
        return lambda: explicit
    if in_versions(version, field.nullable_versions):
        return lambda: None
    if field.is_array:
        return list
    if nested is not None:
        return nested.default
    zero = _ZERO[field.type]
    return lambda: zero


def _primitive(kind: str, compact: bool, nullable: bool) -> tuple[Read, Write]:
    if kind in _FIXED:
        return _fixed(_FIXED[kind])
    if kind == "string":
        return _string(compact, nullable)
    if kind == "uuid":
        return _uuid()
    return _bytes(compact, nullable, zero_copy=kind == "records")


def _slot(field: Field, version: int, flexible: bool) -> _Slot:
    nullable = in_versions(version, field.nullable_versions)
    assert not (nullable and field.is_struct and not field.is_array), (
        f"{field.name}: nullable struct fields (KIP-893) are not supported"
    )
    nested = compile_struct(field.fields, version, flexible) if field.is_struct else None
    if nested is not None:
        element: tuple[Read, Write] = (nested.read, nested.write)
    else:
        element = _primitive(field.element_type, flexible, nullable and not field.is_array)
    read, write = _array(element, flexible, nullable) if field.is_array else element
    fixed = _FIXED.get(field.type)
    fixed_format = fixed.format.lstrip(">") if fixed is not None else ""
    default = _default_factory(field, version, nested)
    kind = field.type if nested is None and not field.is_array else ""
    return _Slot(
        field.name,
        read,
        write,
        default,
        fixed_format,
        nested,
        field.is_array,
        nullable,
        flexible,
        kind,
    )


class _Fallback(Exception):
    """The generated path met something only the step-by-step path explains."""


_CONSTANT_TYPES = (int, float, str, bytes, type(None))
# A compact string or bytes field whose length fits one varint byte `b` at `p`, read in
# line (anything else goes through the field's reader).
_INLINE_READS = {
    "string": "str(r.buf[p + 1 : p + b], 'utf-8')",
    "bytes": "bytes(r.buf[p + 1 : p + b])",
    "records": "r.buf[p + 1 : p + b]",
}


def _generate(codec: StructCodec) -> tuple[Read, Write]:
    """Straight-line read and write functions for one struct: a fixed-size run is one
    struct call, a field is one line, nested structs call their generated functions."""
    env: dict[str, Any] = {"_Fallback": _Fallback, "INT32": INT32}
    reads = ["def fast_read(r):", " out = {}"]
    writes = [
        "def fast_write(w, value):",
        " if not value.keys() <= KNOWN:",
        "  raise _Fallback",
    ]
    env["KNOWN"] = codec.known
    for index, step in enumerate(_runs(codec.slots)):
        reads += _read_lines(index, step, env)
        writes += _write_lines(index, step, env)
    if codec.flexible:
        reads += _tagged_read_lines(codec, env)
        writes += _tagged_write_lines(codec, env)
    reads.append(" return out")
    exec("\n".join(reads) + "\n" + "\n".join(writes), env)
    return env["fast_read"], env["fast_write"]


def _runs(slots: list[_Slot]) -> list[list[_Slot]]:
    """Consecutive fixed-size slots grouped; every other slot alone."""
    runs: list[list[_Slot]] = []
    for slot in slots:
        if slot.fixed_format and runs and runs[-1][0].fixed_format:
            runs[-1].append(slot)
        else:
            runs.append([slot])
    return runs


def _default_expression(slot: _Slot, name: str, env: dict[str, Any]) -> str:
    """A slot's default as an expression: a shared constant when immutable."""
    default = slot.default()
    if isinstance(default, _CONSTANT_TYPES):
        env[name] = default
        return name
    env[name] = slot.default
    return f"{name}()"


def _tagged_read_lines(codec: StructCodec, env: dict[str, Any]) -> list[str]:
    """No tagged fields (a 0 count, the usual case) sets every default inline."""
    env["TAGGED_READS"], env["TEMPLATE_SIZE"] = codec.tagged_reads, len(codec.template)
    env["FILL_TAGGED"] = _tagged_filler(codec)
    defaults = [
        f"  out[{slot.name!r}] = {_default_expression(slot, f'T{tag}', env)}"
        for tag, slot in codec.tagged.items()
    ]
    return [
        " p = r.pos",
        " if p < r.end and r.buf[p] == 0:",
        "  r.pos = p + 1",
        *defaults,
        " else:",
        "  r.tagged(TAGGED_READS, out)",
        "  if len(out) < TEMPLATE_SIZE:",
        "   FILL_TAGGED(out)",
    ]


def _tagged_write_lines(codec: StructCodec, env: dict[str, Any]) -> list[str]:
    """A 0 count when every tagged field is absent or at its default, as `_write_tagged`
    decides; otherwise `_write_tagged` itself."""
    env["WRITE_TAGGED"], env["_MISSING"] = codec._write_tagged, _MISSING
    lines = [" t = False"]
    for tag, slot in codec.tagged.items():
        default = _default_expression(slot, f"T{tag}", env)
        lines += [
            f" v = value.get({slot.name!r}, _MISSING)",
            f" t = t or (v is not _MISSING and v != {default})",
        ]
    return [*lines, " if t:", "  WRITE_TAGGED(w, value)", " else:", "  w.buf.append(0)"]


def _tagged_filler(codec: StructCodec) -> Callable[[dict[str, Any]], None]:
    def fill(out: dict[str, Any]) -> None:
        for slot in codec.tagged.values():
            if slot.name not in out:
                out[slot.name] = slot.default()

    return fill


def _read_lines(index: int, run: list[_Slot], env: dict[str, Any]) -> list[str]:
    slot = run[0]
    if slot.fixed_format:
        fixed = struct.Struct(">" + "".join(s.fixed_format for s in run))
        env[f"S{index}"] = fixed
        targets = "".join(f"out[{s.name!r}], " for s in run)
        return [
            " p = r.pos",
            f" if r.end - p < {fixed.size}:",
            "  raise _Fallback",
            f" {targets}= S{index}.unpack_from(r.buf, p)",
            f" r.pos = p + {fixed.size}",
        ]
    if slot.nested is None:
        env[f"R{index}"] = slot.read
        if slot.compact and slot.kind in _INLINE_READS:
            value = _INLINE_READS[slot.kind]
            return [
                " p = r.pos",
                " b = r.buf[p] if p < r.end else 0",
                " if 0 < b < 0x80 and p + b <= r.end:",
                f"  out[{slot.name!r}] = {value}",
                "  r.pos = p + b",
                " else:",
                f"  out[{slot.name!r}] = R{index}(r)",
            ]
        return [f" out[{slot.name!r}] = R{index}(r)"]
    env[f"NR{index}"] = slot.nested.fast_read
    if not slot.array:
        return [f" out[{slot.name!r}] = NR{index}(r)"]
    if slot.compact:  # a count below 127 is one varint byte, read in line
        lines = [
            " p = r.pos",
            " if p < r.end and r.buf[p] < 0x80:",
            "  n = r.buf[p] - 1",
            "  r.pos = p + 1",
            " else:",
            "  n = r.uvarint() - 1",
        ]
    else:
        lines = [" n = r.unpack(INT32)"]
    lines.append(" if n < 0 or n > r.end - r.pos:")
    if slot.nullable:
        lines += ["  if n != -1:", "   raise _Fallback", f"  out[{slot.name!r}] = None"]
    else:
        lines.append("  raise _Fallback")
    return [*lines, " else:", f"  out[{slot.name!r}] = [NR{index}(r) for _ in range(n)]"]


def _value(slot: _Slot, name: str, env: dict[str, Any]) -> str:
    """The expression for a field's value: the body's, else its default."""
    default = slot.default()
    if isinstance(default, _CONSTANT_TYPES):
        env[name] = default
        return f"value.get({slot.name!r}, {name})"
    env[name] = slot.default
    return f"(value[{slot.name!r}] if {slot.name!r} in value else {name}())"


def _write_lines(index: int, run: list[_Slot], env: dict[str, Any]) -> list[str]:
    slot = run[0]
    if slot.fixed_format:
        env[f"S{index}"] = struct.Struct(">" + "".join(s.fixed_format for s in run))
        values = ", ".join(_value(s, f"D{index}_{i}", env) for i, s in enumerate(run))
        return [f" w.buf += S{index}.pack({values})"]
    value = _value(slot, f"D{index}", env)
    if slot.nested is None:
        env[f"W{index}"] = slot.write
        if slot.compact and slot.kind == "string":
            return [
                f" v = {value}",
                " d = v.encode() if v.__class__ is str else None",
                " if d is not None and len(d) < 0x7F:",
                "  w.buf.append(len(d) + 1)",
                "  w.buf += d",
                " else:",
                f"  W{index}(w, v)",
            ]
        if slot.compact and slot.kind in ("bytes", "records"):
            return [
                f" v = {value}",
                " if v.__class__ is bytes:",
                "  w.uvarint(len(v) + 1)",
                "  w.blob(v)",
                " else:",
                f"  W{index}(w, v)",
            ]
        return [f" W{index}(w, {value})"]
    env[f"NW{index}"] = slot.nested.fast_write
    if not slot.array:
        return [f" NW{index}(w, {value})"]
    env[f"W{index}"] = slot.write
    if slot.compact:  # a count below 127 is one varint byte, written in line
        count = [
            "  n = len(items) + 1",
            "  if n < 0x80:",
            "   w.buf.append(n)",
            "  else:",
            "   w.uvarint(n)",
        ]
    else:
        count = ["  w.length(False, INT32, len(items))"]
    return [
        f" items = {value}",
        " if items is None:",
        f"  W{index}(w, None)",
        " else:",
        *count,
        "  for item in items:",
        f"   NW{index}(w, item)",
    ]


def compile_struct(fields: tuple[Field, ...], version: int, flexible: bool) -> StructCodec:
    slots: list[_Slot] = []
    tagged: dict[int, _Slot] = {}
    for field in fields:
        if not in_versions(version, field.versions):
            continue
        if flexible and in_versions(version, field.tagged_versions):
            assert field.tag is not None, f"{field.name}: tagged versions without a tag"
            tagged[field.tag] = _slot(field, version, flexible)
        else:
            slots.append(_slot(field, version, flexible))
    known = frozenset(field.name for field in fields)
    return StructCodec(known, slots, tagged, flexible)


_COMPILED: dict[tuple[str, int], StructCodec] = {}


def body_codec(message: Message, version: int) -> StructCodec:
    """The codec of `message` at `version` (compiled on first use, then cached)."""
    key = (message.name, version)
    codec = _COMPILED.get(key)
    if codec is None:
        flexible = in_versions(version, message.flexible_versions)
        codec = _COMPILED[key] = compile_struct(message.fields, version, flexible)
    return codec


def is_flexible(message: Message, version: int) -> bool:
    return in_versions(version, message.flexible_versions)


def decode_body(message: Message, version: int, r: Reader) -> dict[str, Any]:
    try:
        return body_codec(message, version).read(r)
    except FieldError as error:
        raise ProtocolError(f"{message.name} v{version} {error.where()}: {error.reason}") from None
    except ProtocolError as error:
        raise ProtocolError(f"{message.name} v{version}: {error}") from None


def encode_body(message: Message, version: int, w: Writer, body: dict[str, Any]) -> None:
    try:
        body_codec(message, version).write(w, body)
    except FieldError as error:
        raise ProtocolError(f"{message.name} v{version} {error.where()}: {error.reason}") from None
    except ENCODE_FAILURES as error:
        raise ProtocolError(f"{message.name} v{version}: {error}") from None
