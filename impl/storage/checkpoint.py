"""Kafka's checkpoint text files, written atomically (temp file, fsync, rename, fsync dir).

Format: line 1 the version ("0"), line 2 the entry count, then one entry per line with
space-separated columns. `leader-epoch-checkpoint` holds "epoch startOffset";
`recovery-point-offset-checkpoint` (and Kafka's other log-dir checkpoints) hold
"topic partition offset".
"""

from __future__ import annotations

import posixpath

from impl.runtime.fs import FileSystem

CHECKPOINT_VERSION = 0
CHECKPOINT_SIZE_BYTES_MAX = 64 * 1024 * 1024
RECOVERY_POINT_CHECKPOINT = "recovery-point-offset-checkpoint"


class CheckpointError(ValueError):
    """A checkpoint file that does not parse; names the file and line."""


def write_atomically(fs: FileSystem, path: str, data: bytes) -> None:
    """Replace a file so that a crash leaves either the old or the new content."""
    temporary = path + ".tmp"
    if fs.exists(temporary):
        fs.remove(temporary)
    fs.append(temporary, data)
    fs.fsync(temporary)
    fs.rename(temporary, path)
    fs.fsync_dir(posixpath.dirname(path) or ".")


def write_checkpoint(fs: FileSystem, path: str, rows: list[tuple[object, ...]]) -> None:
    lines = [str(CHECKPOINT_VERSION), str(len(rows)), *(" ".join(map(str, row)) for row in rows)]
    write_atomically(fs, path, ("\n".join(lines) + "\n").encode())


def read_checkpoint(fs: FileSystem, path: str, columns: int) -> list[list[str]]:
    """Rows of `columns` fields; a missing file is empty, a malformed one raises."""
    if not fs.exists(path):
        return []
    size = fs.size(path)
    if size > CHECKPOINT_SIZE_BYTES_MAX:
        raise CheckpointError(f"{path}: {size} bytes, more than {CHECKPOINT_SIZE_BYTES_MAX}")
    lines = fs.read(path, 0, size).decode("utf-8", errors="replace").splitlines()
    if len(lines) < 2 or lines[0].strip() != str(CHECKPOINT_VERSION):
        raise CheckpointError(f"{path}: line 1 must be version {CHECKPOINT_VERSION}")
    if not lines[1].strip().isdigit() or int(lines[1]) != len(lines) - 2:
        raise CheckpointError(f"{path}: line 2 must be the entry count ({len(lines) - 2})")
    rows = [line.split() for line in lines[2:]]
    for number, row in enumerate(rows, start=3):
        if len(row) != columns:
            raise CheckpointError(f"{path}: line {number} has {len(row)} fields, not {columns}")
    return rows


def _to_int(path: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise CheckpointError(f"{path}: {text!r} is not an integer") from None


def read_offset_checkpoint(fs: FileSystem, path: str) -> dict[tuple[str, int], int]:
    """`topic partition offset` rows as {(topic, partition): offset}."""
    rows = read_checkpoint(fs, path, 3)
    return {(t, _to_int(path, p)): _to_int(path, o) for t, p, o in rows}


def write_offset_checkpoint(fs: FileSystem, path: str, offsets: dict[tuple[str, int], int]) -> None:
    write_checkpoint(fs, path, [(t, p, o) for (t, p), o in sorted(offsets.items())])


def read_epoch_checkpoint(fs: FileSystem, path: str) -> list[tuple[int, int]]:
    """`epoch startOffset` rows."""
    return [(_to_int(path, e), _to_int(path, o)) for e, o in read_checkpoint(fs, path, 2)]
