"""`replog dump-log`: Kafka's wording, JSON output, exit 1 on a bad CRC."""

from __future__ import annotations

import io
import json
import struct

import crc32c

from impl.runtime.fs import RealFileSystem
from impl.storage.batch import Codec, Record, encode_batch
from impl.storage.dump import main
from impl.storage.log import PartitionLog
from model.config import Config

GOLDEN_VALUE_123 = bytes.fromhex(
    "00000000000000000000003b00000001020318a2700000000000000000015dff7b063c0000015dff7b063c"
    "ffffffffffffffffffffffffffff0000000112000000010631323300"
)


def _run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    return main(argv, out=out), out.getvalue()


def test_prints_batches_and_records_in_kafkas_words(tmp_path):
    path = tmp_path / "00000000000000000000.log"
    path.write_bytes(GOLDEN_VALUE_123 * 2)
    status, text = _run([str(path), "--print-data-log"])
    assert status == 0
    lines = text.splitlines()
    assert lines[0] == f"Dumping {path}"
    assert lines[1].startswith("baseOffset: 0 lastOffset: 0 count: 1 baseSequence: -1")
    assert "partitionLeaderEpoch: 1" in lines[1] and "CreateTime: 1503229838908" in lines[1]
    assert "compresscodec: none" in lines[1] and "isvalid: true" in lines[1]
    assert "position: 71" in lines[3]
    assert lines[2].startswith("| offset: 0 CreateTime: 1503229838908 keySize: -1 valueSize: 3")
    assert lines[2].endswith("payload: 123")


def test_print_data_log_decodes_every_codec(tmp_path):
    path = tmp_path / "00000000000000000000.log"
    batches = [
        encode_batch([Record(b"%s payload" % codec.name.encode() * 20, key=b"k")], codec=codec)
        for codec in Codec
    ]
    # Consecutive offsets, as a log holds them; the CRC does not cover baseOffset.
    path.write_bytes(b"".join(struct.pack(">q", i) + b[8:] for i, b in enumerate(batches)))
    status, text = _run([str(path), "--print-data-log", "--json"])
    assert status == 0
    entries = json.loads(text)["entries"]
    assert [e["compresscodec"] for e in entries] == ["none", "gzip", "snappy", "lz4", "zstd"]
    assert [e["records"][0]["payload"] for e in entries] == [
        f"{codec.name} payload" * 20 for codec in Codec
    ]


def test_json_and_bad_crc_exit_status(tmp_path):
    damaged = bytearray(GOLDEN_VALUE_123)
    damaged[-2] ^= 1
    path = tmp_path / "00000000000000000000.log"
    path.write_bytes(GOLDEN_VALUE_123 + bytes(damaged) + GOLDEN_VALUE_123[:30])
    status, text = _run([str(path), "--json"])
    assert status == 1
    entries = json.loads(text)["entries"]
    assert [e["isvalid"] for e in entries] == [True, False, False]
    assert entries[2]["position"] == 142 and "header needs 61" in entries[2]["error"]


def test_records_that_do_not_decode_make_the_batch_invalid(tmp_path):
    # recordCount 2 for a batch holding one record; the CRC is recomputed to match.
    malformed = bytearray(GOLDEN_VALUE_123)
    struct.pack_into(">i", malformed, 57, 2)
    struct.pack_into(">I", malformed, 17, crc32c.crc32c(bytes(malformed[21:])))
    path = tmp_path / "00000000000000000000.log"
    path.write_bytes(GOLDEN_VALUE_123 + bytes(malformed))
    assert _run([str(path)])[0] == 0
    status, text = _run([str(path), "--print-data-log", "--json"])
    assert status == 1
    good, bad = json.loads(text)["entries"]
    assert good["isvalid"] and len(good["records"]) == 1
    assert not bad["isvalid"] and "records" not in bad
    assert "varint runs past the end" in bad["error"]


def test_index_offsets_are_absolute_in_a_later_segment(tmp_path):
    fs = RealFileSystem()
    log = PartitionLog.open(fs, str(tmp_path / "t-0"), Config().with_values(segment_bytes=20_000))
    for i in range(60):
        log.append_as_leader([Record(b"v" * 1000, timestamp_ms=i)], leader_epoch=0)
    log.close()
    fs.close()
    base = log.segment_base_offsets[1]
    assert base > 0
    segment = tmp_path / "t-0" / f"{base:020d}"
    status, text = _run([f"{segment}.log", f"{segment}.index", f"{segment}.timeindex", "--json"])
    assert status == 0
    log_dump, index_dump, time_dump = (json.loads(line)["entries"] for line in text.splitlines())
    last_offset_at = {b["position"]: b["lastOffset"] for b in log_dump}
    assert index_dump
    for entry in index_dump:
        assert entry["offset"] == last_offset_at[entry["position"]]
    assert time_dump[-1] == {
        "timestamp": log_dump[-1]["CreateTime"],
        "offset": log_dump[-1]["lastOffset"],
    }


def test_index_without_a_base_offset_in_its_name_is_not_an_index(tmp_path, capsys):
    path = tmp_path / "orders.index"
    path.write_bytes(b"")
    status, text = _run([str(path)])
    assert (status, text) == (2, "")
    assert "does not start with a segment base offset" in capsys.readouterr().err


def test_a_file_of_another_kind_is_not_a_segment_and_the_rest_are_still_dumped(tmp_path, capsys):
    text_file = tmp_path / "notes.log"
    text_file.write_text("not a segment " * 10)
    empty = tmp_path / "00000000000000000000.log"
    empty.write_bytes(b"")
    status, text = _run([str(text_file), str(empty)])
    assert status == 2
    assert text == f"Dumping {empty}\n"
    assert capsys.readouterr().err == (
        f"replog dump-log: {text_file}: not a Kafka segment (magic byte 116, expected 2)\n"
    )


def test_dumps_a_log_directory_written_by_partition_log(tmp_path):
    fs = RealFileSystem()
    log = PartitionLog.open(fs, str(tmp_path / "t-0"), Config())
    for i in range(200):
        log.append_as_leader([Record(b"v" * 100, key=b"k%d" % i, timestamp_ms=i)], leader_epoch=2)
    log.close()
    fs.close()
    segment = tmp_path / "t-0" / "00000000000000000000"
    status, text = _run([f"{segment}.log", f"{segment}.index", f"{segment}.timeindex", "--json"])
    assert status == 0
    log_dump, index_dump, time_dump = (json.loads(line) for line in text.splitlines())
    assert len(log_dump["entries"]) == 200
    assert index_dump["entries"] and all(
        set(e) == {"offset", "position"} for e in index_dump["entries"]
    )
    assert time_dump["entries"][-1] == {"timestamp": 199, "offset": 199}


def test_missing_file_is_an_error_not_a_crash(tmp_path, capsys):
    status, _ = _run([str(tmp_path / "nope.log")])
    assert status == 2
    assert "nope.log" in capsys.readouterr().err
