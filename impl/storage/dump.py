"""`replog dump-log FILE... [--print-data-log] [--json]`: kafka-dump-log.sh for replog.

Prints every batch of `.log` files (and the entries of `.index` / `.timeindex` files)
in Kafka's wording, index offsets absolute as Kafka prints them. Exit status 1 if any
batch is torn, malformed or fails its CRC, or (with --print-data-log) its records do
not decode; 2 if a file cannot be read or is not a segment at all (its first batch is
not a v2 record batch, an index file not named by its base offset): one line each, and
the other files are still dumped.
"""

from __future__ import annotations

import argparse
import json
import posixpath
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from impl.runtime.fs import FileSystem, RealFileSystem
from impl.storage.batch import (
    HEADER_SIZE_BYTES,
    MAGIC,
    BatchHeader,
    CodecError,
    check_header,
    crc_of,
    decode_records,
    parse_header,
)
from impl.storage.index import OFFSET_ENTRY, TIME_ENTRY

PAYLOAD_PRINT_BYTES_MAX = 1024
EXIT_OK, EXIT_INVALID, EXIT_UNREADABLE = 0, 1, 2


class NotASegment(Exception):
    """A file that is no Kafka log or index at all: nothing in it to call valid or not."""


def _batch_fields(position: int, header: BatchHeader, crc_valid: bool) -> dict[str, Any]:
    return {
        "baseOffset": header.base_offset,
        "lastOffset": header.last_offset,
        "count": header.record_count,
        "baseSequence": header.base_sequence,
        "lastSequence": header.last_sequence,
        "producerId": header.producer_id,
        "producerEpoch": header.producer_epoch,
        "partitionLeaderEpoch": header.partition_leader_epoch,
        "isTransactional": header.is_transactional,
        "isControl": header.is_control,
        "position": position,
        header.timestamp_type: header.max_timestamp_ms,
        "size": header.size_bytes,
        "magic": header.magic,
        "compresscodec": header.codec_name,
        "crc": header.crc,
        "isvalid": crc_valid,
    }


def _printable(data: bytes | None) -> str | None:
    if data is None:
        return None
    text = data[:PAYLOAD_PRINT_BYTES_MAX].decode("utf-8", errors="backslashreplace")
    return text + ("..." if len(data) > PAYLOAD_PRINT_BYTES_MAX else "")


def _record_fields(batch: bytes, header: BatchHeader) -> list[dict[str, Any]]:
    rows = []
    for offset, record in decode_records(batch):
        rows.append(
            {
                "offset": offset,
                header.timestamp_type: record.timestamp_ms,
                "keySize": -1 if record.key is None else len(record.key),
                "valueSize": -1 if record.value is None else len(record.value),
                "sequence": -1
                if header.base_sequence < 0
                else header.base_sequence + offset - header.base_offset,
                "headerKeys": [k for k, _ in record.headers],
                "key": _printable(record.key),
                "payload": _printable(record.value),
            }
        )
    return rows


def _scan_log(fs: FileSystem, path: str, print_data: bool) -> Iterator[dict[str, Any]]:
    """One dict per batch; a torn or malformed batch ends the scan with an error entry.
    Raises NotASegment when the first batch is not a v2 batch: a torn write leaves the
    magic byte of the batches before it intact, a file of another kind does not."""
    file_size = fs.size(path)
    position = 0
    while position < file_size:
        raw_header = fs.read(path, position, HEADER_SIZE_BYTES)
        try:
            header = parse_header(raw_header)
            if position == 0 and header.magic != MAGIC:
                raise NotASegment(f"not a Kafka segment (magic byte {header.magic}, expected 2)")
            check_header(header, file_size - position)
        except CodecError as error:
            yield {"position": position, "error": f"{error}", "isvalid": False}
            return
        batch = fs.read(path, position, header.size_bytes)
        entry = _batch_fields(position, header, crc_of(batch, 0, header.size_bytes) == header.crc)
        if print_data and entry["isvalid"]:
            try:
                entry["records"] = _record_fields(batch, header)
            except CodecError as error:
                # The CRC only shows the bytes are as written; records that do not decode
                # make the batch as unusable as a bad CRC does.
                entry["error"] = str(error)
                entry["isvalid"] = False
        yield entry
        position += header.size_bytes


def _base_offset(path: str) -> int | None:
    """The segment base offset a file name starts with, as Kafka's offsetFromFileName."""
    stem = posixpath.basename(path).partition(".")[0]
    return int(stem) if stem.isascii() and stem.isdigit() else None


def _scan_index(fs: FileSystem, path: str) -> Iterator[dict[str, Any]]:
    """Index entries with absolute offsets (base offset + the stored relative one)."""
    base_offset = _base_offset(path)
    if base_offset is None:
        raise NotASegment(
            "not a Kafka index: its name does not start with a segment base offset "
            "(like 00000000000000000042.index)"
        )
    time_index = path.endswith(".timeindex")
    entry = TIME_ENTRY if time_index else OFFSET_ENTRY
    raw = fs.read(path, 0, fs.size(path))
    whole = len(raw) - len(raw) % entry.size
    for first, second in entry.iter_unpack(raw[:whole]):
        yield (
            {"timestamp": first, "offset": base_offset + second}
            if time_index
            else {"offset": base_offset + first, "position": second}
        )
    if whole != len(raw):
        yield {"error": f"{len(raw) - whole} trailing bytes, not a whole entry", "isvalid": False}


def _render_text(entry: dict[str, Any]) -> str:
    def value(v: Any) -> str:
        return str(v).lower() if isinstance(v, bool) else str(v)

    scalars = " ".join(f"{k}: {value(v)}" for k, v in entry.items() if k != "records")
    lines = [scalars]
    for record in entry.get("records", []):
        lines.append("| " + " ".join(f"{k}: {value(v)}" for k, v in record.items()))
    return "\n".join(lines)


def dump_file(fs: FileSystem, path: str, print_data: bool) -> list[dict[str, Any]]:
    if path.endswith((".index", ".timeindex")):
        return list(_scan_index(fs, path))
    return list(_scan_log(fs, path, print_data))


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="replog dump-log", description="Print the batches of Kafka segment files."
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help=".log, .index or .timeindex")
    parser.add_argument(
        "--print-data-log", action="store_true", help="also print every record of each batch"
    )
    parser.add_argument("--json", action="store_true", help="one JSON document per file")
    return parser.parse_args(argv)


def main(argv: list[str], out: TextIO | None = None) -> int:
    args = _parse_args(argv)
    out = out or sys.stdout
    fs = RealFileSystem()
    code = EXIT_OK
    try:
        for path in args.files:
            try:
                entries = dump_file(fs, path, args.print_data_log)
            except OSError as error:
                print(f"replog dump-log: {path}: {error.strerror or error}", file=sys.stderr)
                code = EXIT_UNREADABLE
                continue
            except NotASegment as error:
                print(f"replog dump-log: {path}: {error}", file=sys.stderr)
                code = EXIT_UNREADABLE
                continue
            if not all(e.get("isvalid", True) for e in entries):
                code = max(code, EXIT_INVALID)
            if args.json:
                print(json.dumps({"file": path, "entries": entries}), file=out)
            else:
                print(f"Dumping {path}", file=out)
                for entry in entries:
                    print(_render_text(entry), file=out)
    finally:
        fs.close()
    return code
