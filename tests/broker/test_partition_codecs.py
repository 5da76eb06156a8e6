"""A leader's handling of produced batches by codec: topic-level compression.type
recompresses (keeping offsets and producer fields), checks the size after, and refuses
records that do not decompress."""

from __future__ import annotations

import struct

import crc32c

from impl.broker.partition import Appended, Partition
from impl.runtime.fs import MemoryFileSystem
from impl.storage.batch import (
    HEADER_SIZE_BYTES,
    Codec,
    Record,
    decode_records,
    encode_batch,
    iter_batches,
)
from impl.storage.log import PartitionLog
from model.config import Config
from model.errors import Errors


def _partition(compression_type: str, message_max_bytes: int = 1_048_588) -> Partition:
    config = Config(
        min_insync_replicas=1,
        compression_type=compression_type,
        message_max_bytes=message_max_bytes,
    )
    log = PartitionLog.open(MemoryFileSystem(), "/data/t-0", config)
    partition = Partition("t", 0, log, 0, (0,))
    partition.become_leader(0, 0, (0,), frozenset({0}), now_ms=0)
    return partition


def _records(count: int) -> list[Record]:
    return [
        Record(b"value %d " % i * 20, key=b"k%d" % i, timestamp_ms=100 + i) for i in range(count)
    ]


def _stored(partition: Partition) -> list[tuple[int, Codec, list[Record]]]:
    """(producer id, codec, records) of every batch in the log."""
    data = partition.read(0, 1 << 20, partition.log.log_end_offset)
    assert not isinstance(data, Errors)
    out = []
    for position, header in iter_batches(data.records):
        raw = data.records[position : position + header.size_bytes]
        out.append((header.producer_id, header.codec, [r for _, r in decode_records(raw)]))
    return out


def test_a_topic_codec_recompresses_and_keeps_idempotence():
    partition = _partition("zstd")
    first = encode_batch(
        _records(5), codec=Codec.GZIP, producer_id=7, producer_epoch=0, base_sequence=0
    )
    assert partition.append_as_leader(first, now_ms=0) == Appended(0, 4, 0)
    # The retry of the same batch is found a duplicate: the stored batch kept its sequence.
    retry = partition.append_as_leader(first, now_ms=0)
    assert retry == Appended(0, 4, 0, duplicate=True)
    assert _stored(partition) == [(7, Codec.ZSTD, _records(5))]


def test_producer_keeps_each_batch_as_sent():
    partition = _partition("producer")
    for codec in Codec:
        partition.append_as_leader(encode_batch(_records(2), codec=codec), now_ms=0)
    assert [codec for _, codec, _ in _stored(partition)] == list(Codec)


def test_uncompressed_past_message_max_bytes_is_message_too_large():
    records = [Record(b"\0" * 10_000, timestamp_ms=1) for _ in range(20)]
    compressed = encode_batch(records, codec=Codec.LZ4)
    assert len(compressed) < 4_000
    partition = _partition("uncompressed", message_max_bytes=100_000)
    assert partition.append_as_leader(compressed, now_ms=0) == Errors.MESSAGE_TOO_LARGE
    assert partition.log.log_end_offset == 0


def test_records_that_do_not_decompress_are_corrupt_when_recompressing():
    raw = bytearray(encode_batch(_records(3), codec=Codec.SNAPPY))
    raw[HEADER_SIZE_BYTES + 20 :] = b"\xff" * (len(raw) - HEADER_SIZE_BYTES - 20)
    struct.pack_into(">I", raw, 17, crc32c.crc32c(bytes(raw[21:])))
    partition = _partition("gzip")
    assert partition.append_as_leader(bytes(raw), now_ms=0) == Errors.CORRUPT_MESSAGE
    assert partition.log.log_end_offset == 0


def test_a_recompressed_log_append_time_batch_keeps_the_brokers_stamp():
    """Recompressing rebuilds the batch from its records: the LogAppendTime bit and the
    leader's time as maxTimestamp must survive it (consumers read every record's time
    from it)."""
    config = Config(
        min_insync_replicas=1, compression_type="gzip", message_timestamp_type="LogAppendTime"
    )
    log = PartitionLog.open(MemoryFileSystem(), "/data/t-0", config)
    partition = Partition("t", 0, log, 0, (0,))
    partition.become_leader(0, 0, (0,), frozenset({0}), now_ms=0)
    appended = partition.append_as_leader(encode_batch(_records(3)), now_ms=5_000)
    assert isinstance(appended, Appended) and appended.log_append_time_ms == 5_000
    data = partition.read(0, 1 << 20, partition.log.log_end_offset)
    assert not isinstance(data, Errors)
    [(_, header)] = list(iter_batches(data.records))
    assert header.codec == Codec.GZIP
    assert header.attributes & 0x08
    assert header.max_timestamp_ms == 5_000
