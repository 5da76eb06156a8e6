"""Bytes that recovery cuts are moved aside, never deleted, for an operator's post-mortem.

A cut tail is copied to `<file>.<first dropped offset>.corrupt` next to its file (and
fsynced, with the directory) before the file is truncated; a whole file recovery drops
(a segment after a cut) is renamed to that name. A second cut at the same offset gets
`<file>.<offset>-<n>.corrupt`: nothing set aside is ever overwritten.

Why `.corrupt` is safe there: log loading takes only `<20 digits>.log|.index|.timeindex`
names as segment files (and Kafka's LogLoader goes by the same suffixes), temp-file
cleanup removes only `.tmp`, `.cleaned` and stray `.swap` names, retention and
truncation remove only the files of segments the log holds, and the cleaner's swap
skips set-aside names (`is_set_aside`). Nothing here removes them: that is the
operator's call.
"""

from __future__ import annotations

import logging
import posixpath

from impl.runtime.fs import FileSystem

CORRUPT_SUFFIX = ".corrupt"
COPY_CHUNK_BYTES = 1024 * 1024

# Where every recovery cut is reported, at WARN. Under `replog.broker` so that it lands
# wherever the broker's own lines do: the process's stderr (basicConfig on the root) and a
# simulated campaign's node log (a handler on `replog.broker` alone).
recovery_log = logging.getLogger("replog.broker.storage")


def is_set_aside(name: str) -> bool:
    return name.endswith(CORRUPT_SUFFIX)


def _free_aside_path(fs: FileSystem, path: str, first: int) -> str:
    candidate = f"{path}.{first}{CORRUPT_SUFFIX}"
    attempt = 1
    while fs.exists(candidate):
        candidate = f"{path}.{first}-{attempt}{CORRUPT_SUFFIX}"
        attempt += 1
    return candidate


def set_tail_aside(fs: FileSystem, path: str, position: int, first: int) -> str:
    """Copy `path` from `position` to its end into a new set-aside file named after
    `first` (the first dropped offset or index), durable with its name before returning:
    the caller truncates next, and a crash in between only copies it once more."""
    target = _free_aside_path(fs, path, first)
    end = fs.size(path)
    fs.append(target, b"")
    while position < end:
        chunk = fs.read(path, position, min(COPY_CHUNK_BYTES, end - position))
        if not chunk:
            break
        fs.append(target, chunk)
        position += len(chunk)
    fs.fsync(target)
    fs.fsync_dir(posixpath.dirname(path) or ".")
    return target


def set_file_aside(fs: FileSystem, path: str, first: int) -> str:
    """Rename a whole file to its set-aside name; the caller fsyncs the directory."""
    target = _free_aside_path(fs, path, first)
    fs.rename(path, target)
    return target
