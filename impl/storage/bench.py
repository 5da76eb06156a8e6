"""`replog bench storage`: partition-log append and read throughput against a plain file.

Workload: 1 KiB records in 16-record (16 KiB) batches, values half random and half
repeated so every codec has something to do. Every figure is MB/s (10^6 bytes) of
uncompressed batch bytes, the best of --repeat runs, all in one temporary directory:
- plain write / read: the same bytes as the uncompressed log, written batch by batch to
  one file (buffered, one fsync at the end) and read back in 1 MiB chunks;
- log append <codec>: `append_batch_as_leader` of pre-encoded producer batches in that
  codec (the Produce path: offsets assigned, CRC checked, indexes kept), one flush at the
  end; a compressed log moves fewer bytes for the same records;
- log read <codec>: sequential `read(offset, 1 MiB)` from the start, every batch
  CRC-checked (batches are served as stored, not decompressed);
- log append+encode none: `append_as_leader` of Record objects (encoding in Python);
- encode / decode <codec>: `encode_batch` of Record objects and `decode_records` of the
  batches, over CODEC_SIZE_BYTES_MAX at most: what compressing costs a producer (or a
  leader recompressing for its topic's compression.type) and decompressing a consumer.
Reads hit the page cache in both cases; the ratio to the plain file is the figure.

Then the log cleaner (`cleanup.policy=compact`): a log of one-record batches shaped like
`__consumer_offsets` commits (1000 keys, about 100-byte records, 1 MiB segments; at
most CLEAN_SIZE_BYTES_MAX of it) cleaned with the default
`replog.cleaner.pass.bytes.max`, pass after pass until nothing is dirty: MB/s of the
log's size, and the longest step (the broker's other tasks wait that long at most).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable

from impl.runtime.fs import RealFileSystem
from impl.storage.batch import Codec, Record, decode_records, encode_batch
from impl.storage.cleaner import clean_steps
from impl.storage.log import PartitionLog
from model.arguments import existing_directory, integer
from model.config import Config

RECORD_SIZE_BYTES = 1024
RECORDS_PER_BATCH = 16
READ_SIZE_BYTES = 1024 * 1024
DISTINCT_BATCHES = 64
ENCODE_SHARE = 8
CLEAN_SIZE_BYTES_MAX = 8 * 1024 * 1024
CODEC_SIZE_BYTES_MAX = 16 * 1024 * 1024
CLEAN_KEYS = 1000
CLEAN_SEGMENT_BYTES = 1024 * 1024


def _records(rng: random.Random, count: int) -> list[Record]:
    half = RECORD_SIZE_BYTES // 2
    return [
        Record(rng.randbytes(half) + bytes([i % 251]) * half, timestamp_ms=1_700_000_000_000 + i)
        for i in range(count)
    ]


def _best_seconds(repeat: int, run: Callable[[], None], setup: Callable[[], None]) -> float:
    best = float("inf")
    for _ in range(repeat):
        setup()
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


class _Workload:
    def __init__(self, directory: str, size_bytes: int, seed: int) -> None:
        rng = random.Random(seed)
        self.directory = directory
        self.record_sets = [_records(rng, RECORDS_PER_BATCH) for _ in range(DISTINCT_BATCHES)]
        self.batches = {
            codec: [encode_batch(rs, codec=codec) for rs in self.record_sets]
            for codec in Codec
        }
        batch_size_bytes = len(self.batches[Codec.NONE][0])
        self.batch_count = max(DISTINCT_BATCHES, size_bytes // batch_size_bytes)
        self.data_bytes = self.batch_count * batch_size_bytes
        self.codec_batch_count = min(self.batch_count, CODEC_SIZE_BYTES_MAX // batch_size_bytes)
        self.codec_data_bytes = self.codec_batch_count * batch_size_bytes
        self.fs = RealFileSystem()
        self.log: PartitionLog | None = None

    def _stream(self, codec: Codec) -> list[bytes]:
        batches = self.batches[codec]
        return [batches[i % DISTINCT_BATCHES] for i in range(self.batch_count)]

    def fresh_log(self) -> None:
        if self.log is not None:
            self.log.close()
        path = os.path.join(self.directory, "bench-0")
        shutil.rmtree(path, ignore_errors=True)
        self.fs.close()
        self.log = PartitionLog.open(self.fs, path, Config())

    def plain_write(self) -> None:
        path = os.path.join(self.directory, "plain.bin")
        with open(path, "wb") as plain:
            for batch in self._stream(Codec.NONE):
                plain.write(batch)
            plain.flush()
            os.fsync(plain.fileno())

    def plain_read(self) -> None:
        with open(os.path.join(self.directory, "plain.bin"), "rb") as plain:
            while plain.read(READ_SIZE_BYTES):
                pass

    def log_append(self, codec: Codec) -> None:
        assert self.log is not None
        for batch in self._stream(codec):
            self.log.append_batch_as_leader(batch, leader_epoch=0)
        self.log.flush()

    def log_append_encoding(self) -> None:
        assert self.log is not None
        for i in range(self.batch_count // ENCODE_SHARE):
            self.log.append_as_leader(
                self.record_sets[i % DISTINCT_BATCHES], leader_epoch=0, codec=Codec.NONE
            )
        self.log.flush()

    def encode(self, codec: Codec) -> None:
        for i in range(self.codec_batch_count):
            encode_batch(self.record_sets[i % DISTINCT_BATCHES], codec=codec)

    def decode(self, codec: Codec) -> None:
        batches = self.batches[codec]
        for i in range(self.codec_batch_count):
            decode_records(batches[i % DISTINCT_BATCHES])

    def log_read(self) -> None:
        assert self.log is not None
        offset = self.log.log_start_offset
        while offset < self.log.log_end_offset:
            offset = self.log.read(offset, READ_SIZE_BYTES).next_offset


def clean(directory: str, size_bytes: int, seed: int) -> tuple[float, float, int]:
    """(MB/s of the log cleaned, longest step in ms, passes) for one fresh compacted log."""
    rng = random.Random(seed)
    config = Config().with_values(cleanup_policy="compact", segment_bytes=CLEAN_SEGMENT_BYTES)
    fs = RealFileSystem()
    log = PartitionLog.open(fs, os.path.join(directory, "clean-0"), config)
    i = 0
    while log.size_bytes < size_bytes:
        key = b"group/topic/%d" % rng.randrange(CLEAN_KEYS)
        value = rng.randbytes(30) + b"%d" % i
        log.append_as_leader([Record(value, key=key, timestamp_ms=i)], leader_epoch=0)
        i += 1
    log.roll()
    cleaned_bytes = log.size_bytes
    step_seconds = []
    passes = 0
    while True:
        steps = clean_steps(log, now_ms=i, below_offset=log.log_end_offset)
        started = time.perf_counter()
        try:
            while True:
                next(steps)
                step_seconds.append(time.perf_counter() - started)
                started = time.perf_counter()
        except StopIteration as done:
            step_seconds.append(time.perf_counter() - started)
            if done.value is None:
                break
        passes += 1
    log.close()
    fs.close()
    return _rate(cleaned_bytes, sum(step_seconds)), max(step_seconds) * 1000, passes


def _rate(size_bytes: float, seconds: float) -> float:
    return size_bytes / seconds / 1e6


def run(directory: str, size_bytes: int, repeat: int, seed: int) -> dict[str, float]:
    """MB/s per measurement, keyed by name."""
    work = _Workload(directory, size_bytes, seed)
    total = work.data_bytes
    rates = {
        "plain write": _rate(total, _best_seconds(repeat, work.plain_write, lambda: None)),
        "plain read": _rate(total, _best_seconds(repeat, work.plain_read, lambda: None)),
    }
    for codec in Codec:
        name = codec.name.lower()
        seconds = _best_seconds(repeat, lambda c=codec: work.log_append(c), work.fresh_log)
        rates[f"log append {name}"] = _rate(total, seconds)
        rates[f"log read {name}"] = _rate(total, _best_seconds(repeat, work.log_read, lambda: None))
    seconds = _best_seconds(repeat, work.log_append_encoding, work.fresh_log)
    rates["log append+encode none"] = _rate(total // ENCODE_SHARE, seconds)
    for codec in Codec:
        name = codec.name.lower()
        for action, run_codec in (("encode", work.encode), ("decode", work.decode)):
            seconds = _best_seconds(repeat, lambda r=run_codec, c=codec: r(c), lambda: None)
            rates[f"{action} {name}"] = _rate(work.codec_data_bytes, seconds)
    assert work.log is not None
    work.log.close()
    work.fs.close()
    return rates


def _report(rates: dict[str, float], size_bytes: int) -> str:
    lines = [
        f"replog bench storage: {size_bytes / 1e6:.0f} MB, {RECORD_SIZE_BYTES} B records, "
        f"{RECORDS_PER_BATCH} per batch",
        f"{'measurement':<26}{'MB/s':>10}{'vs plain':>10}",
    ]
    for name, rate in rates.items():
        baseline = rates["plain read" if "read" in name else "plain write"]
        # The codec rows are CPU work on records in memory: no file to hold them to.
        compared = name.startswith("log")
        ratio = f"{rate / baseline:>9.0%}" if compared else ""
        lines.append(f"{name:<26}{rate:>10.0f}{ratio:>10}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="replog bench storage", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--size-mib", type=integer(1), default=128, help="log size per run (MiB)"
    )
    parser.add_argument(
        "--repeat", type=integer(1), default=3, help="runs per figure; best is kept"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--dir", type=existing_directory, help="where to write (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    size_bytes = args.size_mib * 1024 * 1024
    directory = tempfile.mkdtemp(prefix="replog-bench-", dir=args.dir)
    try:
        rates = run(directory, size_bytes, args.repeat, args.seed)
        clean_size_bytes = min(size_bytes, CLEAN_SIZE_BYTES_MAX)
        clean_rate, longest_ms, passes = clean(directory, clean_size_bytes, args.seed)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(_report(rates, size_bytes))
    print(
        f"log clean {clean_size_bytes / 1e6:.0f} MB of one-record batches: "
        f"{clean_rate:.1f} MB/s, {passes} passes, longest step {longest_ms:.0f} ms"
    )
    return 0
