"""Kafka's sparse segment indexes, kept in memory and mirrored to their files by appends.

`.index`: 8-byte entries (offset - base int32, position int32): for a batch appended
after more than INDEX_INTERVAL_BYTES of log since the previous entry, its last offset
and its start position. `.timeindex`: 12-byte entries (timestamp int64, offset - base
int32), the largest timestamp so far and the offset it belongs to, written with each
offset-index entry and once more when the segment is rolled, only when the timestamp
grew. Files hold exactly their entries (Kafka trims its preallocated files the same way
when a segment is closed), so the bytes match Kafka's for a closed segment.
"""

from __future__ import annotations

import bisect
import itertools
import struct

from impl.runtime.fs import FileSystem

INDEX_INTERVAL_BYTES = 4096
RELATIVE_OFFSET_MAX = 2**31 - 1
OFFSET_ENTRY = struct.Struct(">ii")
TIME_ENTRY = struct.Struct(">qi")


class _EntryFile:
    """Fixed-size entries in a file, appended to or rewritten whole."""

    def __init__(self, fs: FileSystem, path: str, entry: struct.Struct) -> None:
        self.fs = fs
        self.path = path
        self.entry = entry

    def load(self) -> list[tuple[int, int]] | None:
        """The entries, or None if the file is missing or not a whole number of entries."""
        if not self.fs.exists(self.path):
            return None
        size = self.fs.size(self.path)
        if size % self.entry.size:
            return None
        raw = self.fs.read(self.path, 0, size)
        return list(self.entry.iter_unpack(raw))

    def append(self, first: int, second: int) -> None:
        self.fs.append(self.path, self.entry.pack(first, second))

    def rewrite(self, entries: list[tuple[int, int]]) -> None:
        self.fs.append(self.path, b"")
        self.fs.truncate(self.path, 0)
        self.fs.append(self.path, b"".join(self.entry.pack(*e) for e in entries))


class OffsetIndex:
    """Offset -> file position of a batch at or before it (Kafka's OffsetIndex)."""

    def __init__(self, fs: FileSystem, path: str, base_offset: int) -> None:
        self.base_offset = base_offset
        self._file = _EntryFile(fs, path, OFFSET_ENTRY)
        self._relative_offsets: list[int] = []
        self._positions: list[int] = []

    @property
    def path(self) -> str:
        return self._file.path

    @path.setter
    def path(self, path: str) -> None:
        """The file was renamed (the cleaner's swap)."""
        self._file.path = path

    def load(self, log_size_bytes: int) -> bool:
        """Adopt the file's entries if they are sane for a log of this size."""
        entries = self._file.load()
        if entries is None:
            return False
        offsets = [o for o, _ in entries]
        positions = [p for _, p in entries]
        increasing = all(a < b for a, b in itertools.pairwise(offsets)) and all(
            a < b for a, b in itertools.pairwise(positions)
        )
        in_range = not entries or (
            offsets[0] >= 0 and positions[0] >= 0 and positions[-1] < log_size_bytes
        )
        if not (increasing and in_range):
            return False
        self._relative_offsets, self._positions = offsets, positions
        return True

    def append(self, offset: int, position: int) -> None:
        relative = offset - self.base_offset
        assert 0 <= relative <= RELATIVE_OFFSET_MAX, f"offset {offset} outside segment"
        assert not self._positions or position > self._positions[-1], "positions must grow"
        self._relative_offsets.append(relative)
        self._positions.append(position)
        self._file.append(relative, position)

    def lookup(self, offset: int) -> tuple[int, int | None]:
        """(position, absolute last offset) of the last indexed batch whose last offset is
        <= offset; (0, None) when there is none (the scan starts at the segment's start)."""
        slot = bisect.bisect_right(self._relative_offsets, offset - self.base_offset)
        if not slot:
            return 0, None
        return self._positions[slot - 1], self.base_offset + self._relative_offsets[slot - 1]

    def last_position(self) -> int:
        return self._positions[-1] if self._positions else 0

    def rebuild(self, entries: list[tuple[int, int]]) -> None:
        """Replace every entry with (absolute offset, position) pairs."""
        self._relative_offsets = [o - self.base_offset for o, _ in entries]
        self._positions = [p for _, p in entries]
        self._file.rewrite(list(zip(self._relative_offsets, self._positions, strict=True)))


class TimeIndex:
    """Largest timestamp so far -> the offset carrying it (Kafka's TimeIndex)."""

    def __init__(self, fs: FileSystem, path: str, base_offset: int) -> None:
        self.base_offset = base_offset
        self._file = _EntryFile(fs, path, TIME_ENTRY)
        self._entries: list[tuple[int, int]] = []

    @property
    def path(self) -> str:
        return self._file.path

    @path.setter
    def path(self, path: str) -> None:
        """The file was renamed (the cleaner's swap)."""
        self._file.path = path

    def load(self) -> bool:
        entries = self._file.load()
        if entries is None:
            return False
        pairs = itertools.pairwise(entries)
        if not all(a[0] < b[0] and a[1] <= b[1] for a, b in pairs):
            return False
        self._entries = entries
        return True

    def last(self) -> tuple[int, int] | None:
        """(timestamp_ms, absolute offset) of the last entry."""
        if not self._entries:
            return None
        timestamp_ms, relative = self._entries[-1]
        return timestamp_ms, self.base_offset + relative

    def maybe_append(self, timestamp_ms: int, offset: int) -> None:
        if self._entries and timestamp_ms <= self._entries[-1][0]:
            return
        entry = (timestamp_ms, offset - self.base_offset)
        self._entries.append(entry)
        self._file.append(*entry)

    def rebuild(self, entries: list[tuple[int, int]]) -> None:
        """Replace every entry with (timestamp_ms, absolute offset) pairs."""
        self._entries = [(t, o - self.base_offset) for t, o in entries]
        self._file.rewrite(self._entries)
