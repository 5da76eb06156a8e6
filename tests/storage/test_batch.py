"""The v2 record batch codec: golden vectors, round trips and kafka-python cross-checks."""

from __future__ import annotations

import gzip
import struct

import cramjam
import crc32c
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from impl.storage.batch import (
    HEADER_SIZE_BYTES,
    RECORDS_SIZE_BYTES_MAX,
    Codec,
    CorruptBatchError,
    Record,
    UnsupportedCodecError,
    decode_records,
    decode_varint,
    encode_batch,
    encode_varint,
    validate_batch_at,
    verified_prefix,
    with_base_offset_and_epoch,
)

GOLDEN_VALUE_123 = bytes.fromhex(
    "00000000000000000000003b00000001020318a2700000000000000000015dff7b063c0000015dff7b063c"
    "ffffffffffffffffffffffffffff0000000112000000010631323300"
)
GOLDEN_HEADER = bytes.fromhex(
    "00000000000000000000004500000000025cd8ef520000000000000000016585b6f3c10000016585b6f3c1"
    "ffffffffffffffffffffffffffff000000012600000001066864720208686b6579086876616c"
)

records_strategy = st.lists(
    st.builds(
        Record,
        value=st.one_of(st.none(), st.binary(max_size=300)),
        key=st.one_of(st.none(), st.binary(max_size=20)),
        headers=st.lists(
            st.tuples(st.text(max_size=8), st.one_of(st.none(), st.binary(max_size=8))),
            max_size=3,
        ).map(tuple),
        timestamp_ms=st.integers(0, 2**40),
    ),
    min_size=1,
    max_size=20,
)


def test_golden_batch_with_value_123_decodes():
    header = validate_batch_at(GOLDEN_VALUE_123)
    assert (header.base_offset, header.partition_leader_epoch) == (0, 1)
    assert header.size_bytes == len(GOLDEN_VALUE_123) == 71
    [(offset, record)] = decode_records(GOLDEN_VALUE_123)
    assert (offset, record.key, record.value) == (0, None, b"123")
    assert record.timestamp_ms == 1503229838908


def test_golden_batch_with_header_decodes():
    [(offset, record)] = decode_records(GOLDEN_HEADER)
    assert (offset, record.value, record.headers) == (0, b"hdr", (("hkey", b"hval"),))


@pytest.mark.parametrize("golden", [GOLDEN_VALUE_123, GOLDEN_HEADER])
def test_encoder_reproduces_golden_bytes(golden):
    header = validate_batch_at(golden)
    [(_, record)] = decode_records(golden)
    encoded = encode_batch([record], partition_leader_epoch=header.partition_leader_epoch)
    assert encoded == golden


@given(st.integers(-(2**63), 2**63 - 1))
@settings(max_examples=300, derandomize=True)
def test_varint_round_trip(value):
    encoded = encode_varint(value)
    assert decode_varint(encoded, 0) == (value, len(encoded))


def test_varint_matches_kafka_examples():
    assert encode_varint(0) == b"\x00"
    assert encode_varint(-1) == b"\x01"
    assert encode_varint(1) == b"\x02"
    assert encode_varint(300) == b"\xd8\x04"


@given(records_strategy, st.sampled_from(list(Codec)), st.integers(0, 2**40))
@settings(max_examples=150, derandomize=True)
def test_round_trip(records, codec, base_offset):
    batch = encode_batch(records, base_offset=base_offset, partition_leader_epoch=7, codec=codec)
    header = validate_batch_at(batch)
    assert header.codec == codec and header.record_count == len(records)
    decoded = decode_records(batch)
    assert [o for o, _ in decoded] == list(range(base_offset, base_offset + len(records)))
    assert [r for _, r in decoded] == records


def test_offset_and_epoch_patch_keeps_crc_valid():
    batch = encode_batch([Record(b"a"), Record(b"b")])
    patched = with_base_offset_and_epoch(batch, 1000, 9)
    header = validate_batch_at(patched)
    assert (header.base_offset, header.partition_leader_epoch, header.last_offset) == (
        1000,
        9,
        1001,
    )


def test_flipped_byte_fails_crc():
    damaged = bytearray(GOLDEN_VALUE_123)
    damaged[-2] ^= 0x01
    with pytest.raises(CorruptBatchError, match="CRC-32C"):
        decode_records(bytes(damaged))
    assert verified_prefix(bytes(damaged), 0)[0] == 0


def test_truncated_batch_is_reported_not_decoded():
    with pytest.raises(CorruptBatchError, match="remain"):
        validate_batch_at(GOLDEN_VALUE_123[:-1])
    with pytest.raises(CorruptBatchError, match="header needs 61"):
        validate_batch_at(GOLDEN_VALUE_123[:30])


def test_wrong_magic_is_reported():
    damaged = bytearray(GOLDEN_VALUE_123)
    damaged[16] = 1
    with pytest.raises(CorruptBatchError, match="magic 1"):
        validate_batch_at(bytes(damaged))


@pytest.mark.parametrize("codec_id", [5, 6, 7])
def test_codec_id_no_kafka_defines_gives_clear_error(codec_id):
    raw = bytearray(encode_batch([Record(b"v")]))
    struct.pack_into(">h", raw, 21, codec_id)
    struct.pack_into(">I", raw, 17, crc32c.crc32c(bytes(raw[21:])))
    message = f"unsupported codec {codec_id} \\(supported: none, gzip, snappy, lz4, zstd\\)"
    with pytest.raises(UnsupportedCodecError, match=message):
        decode_records(bytes(raw))


def _kafka_python_batch(records, codec, base_offset=0):
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=int(codec),
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for i, r in enumerate(records):
        builder.append(
            i, timestamp=r.timestamp_ms, key=r.key, value=r.value, headers=list(r.headers)
        )
    return bytes(builder.build())


# kafka-python's own codecs: gzip (stdlib) and lz4; its snappy and zstd need libraries
# replog does not install.
KAFKA_PYTHON_CODECS = [Codec.NONE, Codec.GZIP, Codec.LZ4]


@given(records_strategy, st.sampled_from(KAFKA_PYTHON_CODECS))
@settings(max_examples=60, derandomize=True)
def test_we_decode_what_kafka_python_writes(records, codec):
    batch = _kafka_python_batch(records, codec)
    decoded = decode_records(batch)
    assert [r for _, r in decoded] == records
    # kafka-python stores a batch uncompressed when compressing would not make it smaller.
    assert validate_batch_at(batch).codec in (codec, Codec.NONE)


@pytest.mark.parametrize("codec", [Codec.GZIP, Codec.LZ4])
def test_we_decode_kafka_python_compressed(codec):
    records = [Record(b"abc" * 200, key=b"k%d" % i, timestamp_ms=i) for i in range(10)]
    batch = _kafka_python_batch(records, codec)
    assert validate_batch_at(batch).codec == codec
    assert [r for _, r in decode_records(batch)] == records


@given(records_strategy, st.sampled_from(KAFKA_PYTHON_CODECS))
@settings(max_examples=60, derandomize=True)
def test_kafka_python_decodes_what_we_write(records, codec):
    batch = encode_batch(records, base_offset=42, partition_leader_epoch=3, codec=codec)
    theirs = DefaultRecordBatch(batch)
    assert theirs.validate_crc()
    assert theirs.base_offset == 42 and theirs.leader_epoch == 3
    assert theirs.compression_type == codec
    decoded = list(theirs)
    assert [r.offset for r in decoded] == list(range(42, 42 + len(records)))
    assert [(r.key, r.value, r.timestamp) for r in decoded] == [
        (r.key, r.value, r.timestamp_ms) for r in records
    ]
    assert [tuple(r.headers) for r in decoded] == [r.headers for r in records]


def _with_records_body(batch: bytes, body: bytes) -> bytes:
    """The batch with its records section replaced, batchLength and CRC made to fit."""
    raw = bytearray(batch[:HEADER_SIZE_BYTES] + body)
    struct.pack_into(">i", raw, 8, len(raw) - 12)
    struct.pack_into(">I", raw, 17, crc32c.crc32c(bytes(raw[21:])))
    return bytes(raw)


def test_lz4_frame_header_is_kafkas():
    batch = encode_batch([Record(b"abc" * 100)], codec=Codec.LZ4)
    frame = batch[HEADER_SIZE_BYTES:]
    # Magic, then FLG 0x60 (version 1, independent blocks, no content size or checksum)
    # and BD 0x40 (64 KiB blocks): the bytes Kafka's KafkaLZ4BlockOutputStream writes.
    assert frame[:6] == bytes.fromhex("04224d186040")


def test_bytes_after_the_lz4_frame_are_corrupt():
    batch = encode_batch([Record(b"abc" * 100)], codec=Codec.LZ4)
    damaged = _with_records_body(batch, batch[HEADER_SIZE_BYTES:] + b"junk")
    validate_batch_at(damaged)
    with pytest.raises(CorruptBatchError, match="4 bytes after the end of the lz4 frame"):
        decode_records(damaged)


def _records_section(records: list[Record]) -> bytes:
    return encode_batch(records)[HEADER_SIZE_BYTES:]


def _compressed(codec: Codec, body: bytes, records: list[Record] | None = None) -> bytes:
    """A batch of `records` in codec `codec` whose records section is exactly `body`."""
    return _with_records_body(encode_batch(records or [Record(b"x")], codec=codec), body)


def test_snappy_is_written_in_xerial_framing_and_blocks_of_32_kib():
    records = [Record(bytes(range(256)) * 40, key=b"k%d" % i) for i in range(10)]
    plain = _records_section(records)
    body = encode_batch(records, codec=Codec.SNAPPY)[HEADER_SIZE_BYTES:]
    # snappy-java's SnappyOutputStream header: magic, version 1, compatible version 1.
    assert body[:16] == b"\x82SNAPPY\x00" + bytes.fromhex("0000000100000001")
    position, blocks = 16, []
    while position < len(body):
        (length,) = struct.unpack_from(">i", body, position)
        blocks.append(
            bytes(cramjam.snappy.decompress_raw(body[position + 4 : position + 4 + length]))
        )
        position += 4 + length
    assert [len(b) for b in blocks[:-1]] == [32 * 1024] * (len(plain) // (32 * 1024))
    assert b"".join(blocks) == plain


def test_raw_snappy_is_read_too():
    """librdkafka, for one, writes a v2 batch's records as one raw snappy block, which
    Kafka's SnappyInputStream reads when the xerial magic is absent."""
    records = [Record(b"raw snappy %d" % i, key=b"k") for i in range(50)]
    raw = bytes(cramjam.snappy.compress_raw(_records_section(records)))
    batch = _compressed(Codec.SNAPPY, raw, records)
    assert [r for _, r in decode_records(batch)] == records


def test_gzip_is_stdlib_gzip_and_concatenated_members_are_read():
    records = [Record(b"gzip %d" % i) for i in range(40)]
    plain = _records_section(records)
    body = encode_batch(records, codec=Codec.GZIP)[HEADER_SIZE_BYTES:]
    assert gzip.decompress(body) == plain
    half = len(plain) // 2
    members = gzip.compress(plain[:half]) + gzip.compress(plain[half:])
    assert [r for _, r in decode_records(_compressed(Codec.GZIP, members, records))] == records


def test_zstd_frame_without_content_size_is_read():
    """zstd-jni's streams leave the content size out of the frame header."""
    records = [Record(b"zstd %d" % i * 30) for i in range(300)]
    compressor = cramjam.zstd.Compressor()
    compressor.compress(_records_section(records))
    body = bytes(compressor.finish())
    assert [r for _, r in decode_records(_compressed(Codec.ZSTD, body, records))] == records


BOMB_BYTES = RECORDS_SIZE_BYTES_MAX + 1024


@pytest.mark.parametrize(
    ("codec", "compress"),
    [
        (Codec.GZIP, gzip.compress),
        (Codec.SNAPPY, lambda data: bytes(cramjam.snappy.compress_raw(data))),
        (Codec.LZ4, lambda data: bytes(cramjam.lz4.compress(data))),
        (Codec.ZSTD, lambda data: bytes(cramjam.zstd.compress(data))),
    ],
)
def test_records_decompressing_past_the_limit_are_corrupt(codec, compress):
    batch = _compressed(codec, compress(b"\0" * BOMB_BYTES))
    with pytest.raises(CorruptBatchError, match="decompress to more than"):
        decode_records(batch)


@pytest.mark.parametrize(
    ("codec", "reason"),
    [
        (Codec.GZIP, "bad gzip stream"),
        (Codec.SNAPPY, "bad snappy block"),
        (Codec.LZ4, "bad lz4 frame"),
        (Codec.ZSTD, "bad zstd frame"),
    ],
)
def test_garbage_in_a_codec_is_corrupt_not_a_crash(codec, reason):
    with pytest.raises(CorruptBatchError, match=reason):
        decode_records(_compressed(codec, b"\x1f\x8b this is not compressed data at all"))


@pytest.mark.parametrize("codec", [Codec.GZIP, Codec.SNAPPY, Codec.ZSTD])
def test_a_cut_stream_is_corrupt(codec):
    body = encode_batch([Record(b"abc" * 3000)], codec=codec)[HEADER_SIZE_BYTES:]
    with pytest.raises(CorruptBatchError):
        decode_records(_compressed(codec, body[: len(body) - 5]))
