"""Kafka record batches, magic v2: the unit stored in `.log` files and sent on the wire.

Layout (big-endian, 61-byte header, then the records):

    baseOffset int64 | batchLength int32 | partitionLeaderEpoch int32 | magic int8 (=2)
    | crc uint32 (CRC-32C of everything from attributes to the end)
    | attributes int16 | lastOffsetDelta int32 | baseTimestamp int64 | maxTimestamp int64
    | producerId int64 | producerEpoch int16 | baseSequence int32 | recordCount int32
    | records (compressed as one block when the codec is not none)

A record is: length varint | attributes int8 | timestampDelta varlong | offsetDelta varint
| key (varint length, -1 = null) | value (same) | header count varint
| per header: key (varint length, UTF-8) | value (varint length, -1 = null).
All varints are zigzag-encoded. baseOffset, batchLength and partitionLeaderEpoch sit
outside the CRC, so a leader assigns offsets and its epoch without recomputing it.
"""

from __future__ import annotations

import itertools
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

import cramjam
import crc32c
import lz4.frame

HEADER = struct.Struct(">qiiBIhiqqqhii")
HEADER_SIZE_BYTES = HEADER.size
LOG_OVERHEAD_BYTES = 12
CRC_START = 21
MAGIC = 2
BATCH_SIZE_BYTES_MAX = 8 * 1024 * 1024
RECORDS_SIZE_BYTES_MAX = 64 * 1024 * 1024
HEADERS_PER_RECORD_MAX = 10_000
NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
NO_SEQUENCE = -1
NO_PARTITION_LEADER_EPOCH = -1

_new_tuple = tuple.__new__
_CODEC_MASK = 0x07
_TIMESTAMP_TYPE_MASK = 0x08
_TRANSACTIONAL_MASK = 0x10
_CONTROL_MASK = 0x20
_LZ4_BLOCK_SIZE = lz4.frame.BLOCKSIZE_MAX64KB
# Kafka's defaults: GzipCompression and ZstdCompression levels, and the block size of
# snappy-java's SnappyOutputStream, which Kafka's Java producer writes snappy through.
_GZIP_LEVEL = 6
_ZSTD_LEVEL = 3
_XERIAL_BLOCK_SIZE_BYTES = 32 * 1024
# snappy-java's stream header: magic, then version and compatible version (int32 each).
_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = _XERIAL_MAGIC + struct.pack(">ii", 1, 1)
_XERIAL_BLOCK_LENGTH = struct.Struct(">i")
_GZIP_WBITS = 16 + zlib.MAX_WBITS


class Codec(IntEnum):
    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4


SUPPORTED_CODECS = tuple(Codec)


class CodecError(ValueError):
    """Bytes that are not a record batch replog can use."""


class CorruptBatchError(CodecError):
    """A batch whose length, magic, CRC or records are wrong. Names the file and position."""

    def __init__(
        self,
        reason: str,
        path: str | None = None,
        position: int | None = None,
        offset: int | None = None,
    ) -> None:
        self.reason = reason
        self.path = path
        self.position = position
        self.offset = offset
        where = f" in {path}" if path is not None else ""
        where += f" at position {position}" if position is not None else ""
        where += f" (offset {offset})" if offset is not None else ""
        super().__init__(f"corrupt record batch{where}: {reason}")

    def located(self, path: str, position: int, offset: int | None = None) -> CorruptBatchError:
        """The same error with a place attached (positions add up for nested buffers)."""
        inner = self.position or 0
        return CorruptBatchError(self.reason, path, position + inner, offset)


class UnsupportedCodecError(CodecError):
    """A batch whose attributes name a codec id no Kafka version defines (5 to 7)."""

    def __init__(self, codec: int, base_offset: int) -> None:
        self.codec = codec
        name = Codec(codec).name.lower() if codec in Codec._value2member_map_ else str(codec)
        supported = ", ".join(c.name.lower() for c in SUPPORTED_CODECS)
        super().__init__(
            f"record batch at offset {base_offset} uses unsupported codec {name} "
            f"(supported: {supported})"
        )


@dataclass(frozen=True, slots=True)
class Record:
    """One record as a producer gives it (no offset: the log assigns that)."""

    value: bytes | None
    key: bytes | None = None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp_ms: int = 0


class BatchHeader(NamedTuple):
    """A batch header's fields in wire order (a tuple: built straight from one unpack,
    which a frozen dataclass's per-field __init__ made a read path's largest cost)."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp_ms: int
    max_timestamp_ms: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def size_bytes(self) -> int:
        return self.batch_length + LOG_OVERHEAD_BYTES

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.last_offset + 1

    @property
    def codec(self) -> int:
        return self.attributes & _CODEC_MASK

    @property
    def codec_name(self) -> str:
        codec = self.codec
        return Codec(codec).name.lower() if codec in Codec._value2member_map_ else f"#{codec}"

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & _TRANSACTIONAL_MASK)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & _CONTROL_MASK)

    @property
    def timestamp_type(self) -> str:
        return "LogAppendTime" if self.attributes & _TIMESTAMP_TYPE_MASK else "CreateTime"

    @property
    def last_sequence(self) -> int:
        if self.base_sequence == NO_SEQUENCE:
            return NO_SEQUENCE
        return (self.base_sequence + self.last_offset_delta) & 0x7FFFFFFF


def codec_from_name(name: str) -> Codec:
    """`compression.type` spelling to a codec."""
    try:
        return Codec[name.upper()]
    except KeyError:
        allowed = ", ".join(c.name.lower() for c in Codec)
        raise ValueError(f"unknown compression type {name!r} (allowed: {allowed})") from None


def topic_codec(compression_type: str) -> Codec | None:
    """A topic's `compression.type` as the leader applies it to produced batches: the
    codec to store them in, or None to keep each as its producer compressed it. Kafka's
    topic values are "producer" (its default), "uncompressed" and the codecs; replog's
    "none", the default the key shares with the producer setting, keeps batches as sent
    too, so a topic stores uncompressed only when told "uncompressed"."""
    if compression_type in ("producer", "none"):
        return None
    if compression_type == "uncompressed":
        return Codec.NONE
    return codec_from_name(compression_type)


# ---- varints -------------------------------------------------------------------------


def encode_varint(value: int) -> bytes:
    """Zigzag + base-128 little-endian groups, as Kafka's ByteUtils.writeVarlong."""
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while zigzag > 0x7F:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)


def decode_varint(buf: bytes | memoryview, position: int) -> tuple[int, int]:
    """(value, next position). Raises CorruptBatchError past the buffer or past 10 bytes."""
    result = 0
    shift = 0
    while True:
        if position >= len(buf):
            raise CorruptBatchError("varint runs past the end of the records")
        byte = buf[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), position
        shift += 7
        if shift >= 70:
            raise CorruptBatchError("varint longer than 10 bytes")


# ---- encoding ------------------------------------------------------------------------


def _encode_bytes(data: bytes | None) -> bytes:
    if data is None:
        return encode_varint(-1)
    return encode_varint(len(data)) + data


def _encode_record(offset_delta: int, timestamp_delta: int, record: Record) -> bytes:
    parts = [
        b"\x00",
        encode_varint(timestamp_delta),
        encode_varint(offset_delta),
        _encode_bytes(record.key),
        _encode_bytes(record.value),
        encode_varint(len(record.headers)),
    ]
    for header_key, header_value in record.headers:
        parts.append(_encode_bytes(header_key.encode()))
        parts.append(_encode_bytes(header_value))
    body = b"".join(parts)
    return encode_varint(len(body)) + body


def _compress_lz4(data: bytes) -> bytes:
    """The LZ4 frame Kafka writes: 64 KiB independent blocks, no content checksum and no
    content size (frame flags 0x60, as Kafka's KafkaLZ4BlockOutputStream)."""
    return lz4.frame.compress(
        data,
        block_size=_LZ4_BLOCK_SIZE,
        block_linked=False,
        content_checksum=False,
        store_size=False,
    )


def _compress_snappy(data: bytes) -> bytes:
    """Snappy in snappy-java's stream framing (the "xerial" header, then each 32 KiB
    block as a big-endian length and a raw snappy block), as Kafka's Java producer
    writes it through SnappyOutputStream."""
    parts = [_XERIAL_HEADER]
    for start in range(0, len(data), _XERIAL_BLOCK_SIZE_BYTES):
        block = bytes(cramjam.snappy.compress_raw(data[start : start + _XERIAL_BLOCK_SIZE_BYTES]))
        parts.append(_XERIAL_BLOCK_LENGTH.pack(len(block)))
        parts.append(block)
    return b"".join(parts)


def compress(codec: Codec, data: bytes) -> bytes:
    """The records block of a batch in `codec`, written as Kafka's Java producer does."""
    if codec == Codec.NONE:
        return data
    if codec == Codec.GZIP:
        compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS)
        return compressor.compress(data) + compressor.flush()
    if codec == Codec.SNAPPY:
        return _compress_snappy(data)
    if codec == Codec.LZ4:
        return _compress_lz4(data)
    return bytes(cramjam.zstd.compress(data, level=_ZSTD_LEVEL))


def encode_batch(
    records: Sequence[Record],
    *,
    base_offset: int = 0,
    partition_leader_epoch: int = NO_PARTITION_LEADER_EPOCH,
    codec: Codec = Codec.NONE,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = NO_PRODUCER_EPOCH,
    base_sequence: int = NO_SEQUENCE,
    is_transactional: bool = False,
) -> bytes:
    """A complete v2 batch with CreateTime timestamps and offsets base_offset, +1, ..."""
    if not records:
        raise ValueError("a record batch needs at least one record")
    attributes = int(codec) | (_TRANSACTIONAL_MASK if is_transactional else 0)
    return _assemble(
        list(enumerate(records)),
        base_offset=base_offset,
        last_offset_delta=len(records) - 1,
        partition_leader_epoch=partition_leader_epoch,
        attributes=attributes,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
    )


def encode_retained(header: BatchHeader, retained: Sequence[tuple[int, Record]]) -> bytes:
    """The batch `header` describes with only the `retained` (offset, record) pairs, as
    Kafka's log cleaner rewrites one: same baseOffset, lastOffsetDelta, leader epoch,
    attributes (codec included) and producer fields, records keeping their offsets, so
    offsets may now skip inside the batch and recordCount < lastOffsetDelta + 1."""
    if not retained:
        raise ValueError("a rewritten batch keeps at least one record")
    deltas = [offset - header.base_offset for offset, _ in retained]
    assert all(a < b for a, b in itertools.pairwise(deltas)), "offsets increase"
    assert deltas[0] >= 0 and deltas[-1] <= header.last_offset_delta, "offsets within the batch"
    return _assemble(
        [(delta, record) for delta, (_, record) in zip(deltas, retained, strict=True)],
        base_offset=header.base_offset,
        last_offset_delta=header.last_offset_delta,
        partition_leader_epoch=header.partition_leader_epoch,
        attributes=header.attributes,
        producer_id=header.producer_id,
        producer_epoch=header.producer_epoch,
        base_sequence=header.base_sequence,
    )


def recompressed(batch: bytes, codec: Codec) -> bytes:
    """One whole batch with its records compressed in `codec` instead, every other field
    kept, as Kafka's LogValidator rewrites a batch whose codec differs from its topic's.
    Raises CodecError if the records do not decode, ValueError if the result exceeds
    BATCH_SIZE_BYTES_MAX."""
    header = validate_batch_at(batch)
    attributes = (header.attributes & ~_CODEC_MASK) | int(codec)
    return encode_retained(header._replace(attributes=attributes), decode_records(batch))


def _assemble(
    records: Sequence[tuple[int, Record]],
    *,
    base_offset: int,
    last_offset_delta: int,
    partition_leader_epoch: int,
    attributes: int,
    producer_id: int,
    producer_epoch: int,
    base_sequence: int,
) -> bytes:
    """A v2 batch of (offset delta, record) pairs with CreateTime timestamps."""
    codec = attributes & _CODEC_MASK
    if codec not in SUPPORTED_CODECS:
        raise UnsupportedCodecError(codec, base_offset)
    base_timestamp_ms = records[0][1].timestamp_ms
    body = b"".join(
        _encode_record(delta, r.timestamp_ms - base_timestamp_ms, r) for delta, r in records
    )
    body = compress(Codec(codec), body)
    size_bytes = HEADER_SIZE_BYTES + len(body)
    if size_bytes > BATCH_SIZE_BYTES_MAX:
        raise ValueError(f"batch of {size_bytes} bytes exceeds {BATCH_SIZE_BYTES_MAX}")
    header = bytearray(
        HEADER.pack(
            base_offset,
            size_bytes - LOG_OVERHEAD_BYTES,
            partition_leader_epoch,
            MAGIC,
            0,
            attributes,
            last_offset_delta,
            base_timestamp_ms,
            max(r.timestamp_ms for _, r in records),
            producer_id,
            producer_epoch,
            base_sequence,
            len(records),
        )
    )
    crc = crc32c.crc32c(body, crc32c.crc32c(header[CRC_START:]))
    struct.pack_into(">I", header, 17, crc)
    return bytes(header) + body


def with_base_offset_and_epoch(batch: bytes, base_offset: int, leader_epoch: int) -> bytes:
    """The batch with its first 12 bytes' offset and its epoch replaced (outside the CRC)."""
    patched = bytearray(batch)
    struct.pack_into(">q", patched, 0, base_offset)
    struct.pack_into(">i", patched, 12, leader_epoch)
    return bytes(patched)


# ---- decoding ------------------------------------------------------------------------


def parse_header(buf: bytes | memoryview, position: int = 0) -> BatchHeader:
    """The header at `position`, unchecked beyond having 61 bytes."""
    if len(buf) - position < HEADER_SIZE_BYTES:
        raise CorruptBatchError(
            f"only {len(buf) - position} bytes left, a batch header needs {HEADER_SIZE_BYTES}",
            position=position,
        )
    # tuple.__new__ straight from the unpack (the 13 fields in order): _make or
    # BatchHeader(*...) add a Python-level call per header.
    return _new_tuple(BatchHeader, HEADER.unpack_from(buf, position))


def check_header(header: BatchHeader, available_bytes: int) -> None:
    """Structural checks that need no CRC: raises CorruptBatchError naming the first failure."""
    if header.magic != MAGIC:
        raise CorruptBatchError(f"magic {header.magic}, only v2 batches are supported")
    if header.size_bytes < HEADER_SIZE_BYTES or header.size_bytes > BATCH_SIZE_BYTES_MAX:
        raise CorruptBatchError(
            f"batch length {header.batch_length} outside [{HEADER_SIZE_BYTES - 12}, "
            f"{BATCH_SIZE_BYTES_MAX - 12}]"
        )
    if header.size_bytes > available_bytes:
        raise CorruptBatchError(
            f"batch of {header.size_bytes} bytes but only {available_bytes} bytes remain"
        )
    if header.last_offset_delta < 0 or header.record_count < 0:
        raise CorruptBatchError(
            f"negative lastOffsetDelta {header.last_offset_delta} or "
            f"recordCount {header.record_count}"
        )
    if header.base_offset < 0:
        raise CorruptBatchError(f"negative baseOffset {header.base_offset}")


def crc_of(buf: bytes | memoryview, position: int, size_bytes: int) -> int:
    view = memoryview(buf)[position + CRC_START : position + size_bytes]
    return crc32c.crc32c(view)


def validate_batch_at(buf: bytes | memoryview, position: int = 0) -> BatchHeader:
    """The header of the batch at `position` after checking structure and CRC."""
    try:
        header = parse_header(buf, position)
        check_header(header, len(buf) - position)
    except CorruptBatchError as error:
        raise CorruptBatchError(error.reason, position=position) from None
    actual = crc_of(buf, position, header.size_bytes)
    if actual != header.crc:
        raise CorruptBatchError(
            f"CRC-32C is {actual:#010x}, header says {header.crc:#010x}", position=position
        )
    return header


_PREFIX = struct.Struct(">qiiBIhi")


def verified_prefix(
    buf: bytes | memoryview, first_offset: int, gaps: bool = False
) -> tuple[int, int, CorruptBatchError | None]:
    """How far `buf` holds whole, CRC-valid batches with consecutive offsets from
    `first_offset` (with `gaps`, a compacted log's, increasing offsets): (end position,
    next offset after them, the error at `end` or None when it stopped at a partial
    batch or the end).

    The read path's fast check: only the fields that locate and protect a batch.
    """
    view = memoryview(buf)
    limit = len(buf)
    end = 0
    next_offset = first_offset
    while end + HEADER_SIZE_BYTES <= limit:
        base_offset, length, _, magic, crc, _, last_offset_delta = _PREFIX.unpack_from(buf, end)
        size_bytes = length + LOG_OVERHEAD_BYTES
        if magic != MAGIC or not HEADER_SIZE_BYTES <= size_bytes <= BATCH_SIZE_BYTES_MAX:
            reason = f"magic {magic}, batch length {length}: not a v2 batch"
            return end, next_offset, CorruptBatchError(reason, position=end)
        if end + size_bytes > limit:
            break
        if base_offset < next_offset if gaps else base_offset != next_offset:
            expected = f"at least {next_offset}" if gaps else str(next_offset)
            reason = f"baseOffset {base_offset}, expected {expected}"
            return end, next_offset, CorruptBatchError(reason, position=end)
        actual = crc32c.crc32c(view[end + CRC_START : end + size_bytes])
        if actual != crc:
            reason = f"CRC-32C is {actual:#010x}, header says {crc:#010x}"
            return end, next_offset, CorruptBatchError(reason, position=end)
        end += size_bytes
        next_offset = base_offset + last_offset_delta + 1
    return end, next_offset, None


def iter_batches(buf: bytes | memoryview) -> Iterator[tuple[int, BatchHeader]]:
    """(position, header) of each batch in a buffer of whole batches, each CRC-checked."""
    position = 0
    while position < len(buf):
        header = validate_batch_at(buf, position)
        yield position, header
        position += header.size_bytes


def _records_body(batch: bytes | memoryview, header: BatchHeader) -> bytes | memoryview:
    body = memoryview(batch)[HEADER_SIZE_BYTES : header.size_bytes]
    codec = header.codec
    if codec not in SUPPORTED_CODECS:
        raise UnsupportedCodecError(codec, header.base_offset)
    if codec == Codec.NONE:
        return body
    out = _DECOMPRESS[Codec(codec)](body)
    if len(out) > RECORDS_SIZE_BYTES_MAX:
        raise CorruptBatchError(f"records decompress to more than {RECORDS_SIZE_BYTES_MAX} bytes")
    return out


def _decompress_lz4(body: memoryview) -> bytes:
    decompressor = lz4.frame.LZ4FrameDecompressor()
    try:
        out = decompressor.decompress(body, max_length=RECORDS_SIZE_BYTES_MAX + 1)
    except RuntimeError as error:
        raise CorruptBatchError(f"bad lz4 frame: {error}") from None
    if len(out) <= RECORDS_SIZE_BYTES_MAX and not decompressor.eof:
        raise CorruptBatchError("lz4 frame ends early")
    if decompressor.unused_data:
        raise CorruptBatchError(
            f"{len(decompressor.unused_data)} bytes after the end of the lz4 frame"
        )
    return out


def _decompress_gzip(body: memoryview) -> bytes:
    """One or more gzip members (Java's GZIPInputStream reads concatenated ones too),
    stopping one byte past the records limit so a small bomb cannot grow unbounded."""
    parts: list[bytes] = []
    size_bytes = 0
    rest = bytes(body)
    while rest and size_bytes <= RECORDS_SIZE_BYTES_MAX:
        decompressor = zlib.decompressobj(_GZIP_WBITS)
        try:
            part = decompressor.decompress(rest, RECORDS_SIZE_BYTES_MAX + 1 - size_bytes)
        except zlib.error as error:
            raise CorruptBatchError(f"bad gzip stream: {error}") from None
        parts.append(part)
        size_bytes += len(part)
        if size_bytes <= RECORDS_SIZE_BYTES_MAX and not decompressor.eof:
            raise CorruptBatchError("gzip stream ends early")
        rest = decompressor.unused_data
    return b"".join(parts)


def _decompress_snappy(body: memoryview) -> bytes:
    """Both framings Kafka's reader takes: snappy-java's xerial stream (what the Java
    producer writes), else one raw snappy block, as SnappyInputStream falls back to."""
    if bytes(body[: len(_XERIAL_MAGIC)]) != _XERIAL_MAGIC:
        return _snappy_raw_block(body)
    position = len(_XERIAL_HEADER)
    if len(body) < position:
        raise CorruptBatchError("snappy stream header cut short")
    parts = []
    size_bytes = 0
    while position < len(body) and size_bytes <= RECORDS_SIZE_BYTES_MAX:
        if position + _XERIAL_BLOCK_LENGTH.size > len(body):
            raise CorruptBatchError("snappy block length cut short")
        (length,) = _XERIAL_BLOCK_LENGTH.unpack_from(body, position)
        position += _XERIAL_BLOCK_LENGTH.size
        if length < 0 or position + length > len(body):
            raise CorruptBatchError(f"snappy block of {length} bytes does not fit the batch")
        part = _snappy_raw_block(body[position : position + length])
        parts.append(part)
        size_bytes += len(part)
        position += length
    return b"".join(parts)


def _snappy_raw_block(block: memoryview) -> bytes:
    try:
        # The length a raw block declares, read before decompressing: a bomb is refused
        # without its output ever being allocated.
        declared = cramjam.snappy.decompress_raw_len(bytes(block))
        if declared > RECORDS_SIZE_BYTES_MAX:
            raise CorruptBatchError(
                f"records decompress to more than {RECORDS_SIZE_BYTES_MAX} bytes"
            )
        return bytes(cramjam.snappy.decompress_raw(bytes(block)))
    except cramjam.DecompressionError as error:
        raise CorruptBatchError(f"bad snappy block: {error}") from None


def _decompress_zstd(body: memoryview) -> bytes:
    """Into a buffer grown by doubling up to one byte past the records limit: zstd-jni,
    which Kafka writes through, leaves the content size out of the frame, so the output
    size is known only by decompressing."""
    data = bytes(body)
    capacity = max(4 * len(data), 64 * 1024)
    while True:
        capacity = min(capacity, RECORDS_SIZE_BYTES_MAX + 1)
        out = bytearray(capacity)
        try:
            written = cramjam.zstd.decompress_into(data, out)
        except cramjam.DecompressionError as error:
            if "whole buffer" not in str(error):
                raise CorruptBatchError(f"bad zstd frame: {error}") from None
            if capacity > RECORDS_SIZE_BYTES_MAX:
                return bytes(out)
            capacity *= 2
            continue
        return bytes(out[:written])


_DECOMPRESS = {
    Codec.GZIP: _decompress_gzip,
    Codec.SNAPPY: _decompress_snappy,
    Codec.LZ4: _decompress_lz4,
    Codec.ZSTD: _decompress_zstd,
}


def _decode_bytes(buf: bytes | memoryview, position: int) -> tuple[bytes | None, int]:
    length, position = decode_varint(buf, position)
    if length == -1:
        return None, position
    if length < 0 or position + length > len(buf):
        raise CorruptBatchError(f"field length {length} does not fit the record")
    return bytes(buf[position : position + length]), position + length


def _decode_record(
    buf: bytes | memoryview, position: int, header: BatchHeader
) -> tuple[int, Record, int]:
    length, position = decode_varint(buf, position)
    end = position + length
    if length < 1 or end > len(buf):
        raise CorruptBatchError(f"record length {length} does not fit the batch")
    position += 1
    timestamp_delta, position = decode_varint(buf, position)
    offset_delta, position = decode_varint(buf, position)
    key, position = _decode_bytes(buf, position)
    value, position = _decode_bytes(buf, position)
    count, position = decode_varint(buf, position)
    if not 0 <= count <= HEADERS_PER_RECORD_MAX:
        raise CorruptBatchError(f"header count {count} outside [0, {HEADERS_PER_RECORD_MAX}]")
    headers = []
    for _ in range(count):
        raw_key, position = _decode_bytes(buf, position)
        if raw_key is None:
            raise CorruptBatchError("null header key")
        header_value, position = _decode_bytes(buf, position)
        headers.append((raw_key.decode("utf-8", errors="replace"), header_value))
    if position != end:
        raise CorruptBatchError(
            f"record says {length} bytes, fields take {length - end + position}"
        )
    record = Record(value, key, tuple(headers), header.base_timestamp_ms + timestamp_delta)
    return header.base_offset + offset_delta, record, position


def record_keys(batch: bytes | memoryview) -> list[tuple[int, bytes | None, bool]]:
    """(offset, key, whether the value is null) of every record of one whole batch whose
    CRC the caller checked (the log read does): the log cleaner's view, which skips
    decoding values and headers."""
    header = parse_header(batch)
    body = _records_body(batch, header)
    keys = []
    position = 0
    for _ in range(header.record_count):
        length, position = decode_varint(body, position)
        end = position + length
        if length < 1 or end > len(body):
            raise CorruptBatchError(f"record length {length} does not fit the batch")
        _, position = decode_varint(body, position + 1)
        offset_delta, position = decode_varint(body, position)
        key, position = _decode_bytes(body, position)
        value_length, _ = decode_varint(body, position)
        keys.append((header.base_offset + offset_delta, key, value_length == -1))
        position = end
    if position != len(body):
        raise CorruptBatchError(f"{len(body) - position} bytes left after the last record")
    return keys


def decode_records(batch: bytes | memoryview) -> list[tuple[int, Record]]:
    """(offset, record) for every record of one whole batch, after checking its CRC."""
    header = validate_batch_at(batch)
    body = _records_body(batch, header)
    records = []
    position = 0
    for _ in range(header.record_count):
        offset, record, position = _decode_record(body, position, header)
        records.append((offset, record))
    if position != len(body):
        raise CorruptBatchError(f"{len(body) - position} bytes left after the last record")
    return records
