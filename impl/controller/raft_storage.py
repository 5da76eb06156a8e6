"""A Raft node's disk: the hard state (term, vote, commit) and the log, through FileSystem.

Two files in the node's directory:
- `raft-state`: the hard state, replaced atomically (temp file, fsync, rename, fsync dir)
  with a CRC-32C, so a crash leaves the old or the new one, never a mix;
- `raft-log`: append-only entries, each `body size (u32) | CRC-32C of body (u32) | body`
  with body `index (u64) | term (u64) | data`. Opening the log keeps the longest prefix
  of whole, CRC-valid, consecutive entries and cuts the rest (a torn last write),
  moving the cut bytes to `raft-log.<first dropped entry>.corrupt` and logging a WARN.

`persist(ready)` writes a Ready's entries (fsync) before its hard state, so the commit
index on disk never points past the durable log. Once `persist` returns, everything in
the Ready survives a crash: that is the promise a vote or an append response makes.
"""

from __future__ import annotations

import posixpath
import struct
from dataclasses import dataclass

import crc32c

from impl.controller.raft import NO_NODE, Entry, HardState, Ready, StorageState
from impl.runtime.fs import FileSystem
from impl.storage.checkpoint import write_atomically
from impl.storage.quarantine import recovery_log, set_tail_aside

LOG_FILE = "raft-log"
STATE_FILE = "raft-state"
STATE_VERSION = 1
ENTRY_HEADER = struct.Struct(">II")
ENTRY_BODY_HEADER = struct.Struct(">QQ")
STATE_BODY = struct.Struct(">Hqqq")
STATE_CRC = struct.Struct(">I")
ENTRY_DATA_BYTES_MAX = 8 * 1024 * 1024
ENTRY_BODY_BYTES_MAX = ENTRY_BODY_HEADER.size + ENTRY_DATA_BYTES_MAX


class RaftStorageError(ValueError):
    """A disk this node cannot safely start from; the message names the file."""


@dataclass(frozen=True, slots=True)
class LogRecovery:
    """What opening the log cut, and why."""

    position: int
    bytes_dropped: int
    reason: str
    aside_path: str


class RaftStorage:
    """Open with `RaftStorage.open`; `state` is what the node starts from."""

    def __init__(
        self,
        fs: FileSystem,
        directory: str,
        state: StorageState,
        positions: list[int],
        recovery: LogRecovery | None,
    ) -> None:
        self._fs = fs
        self._log_path = posixpath.join(directory, LOG_FILE)
        self._state_path = posixpath.join(directory, STATE_FILE)
        self.state = state
        self.recovery = recovery
        # positions[i] is where entry i + 1 starts; the last item is the end of the log.
        self._positions = positions
        self._commit = state.hard_state.commit

    @classmethod
    def open(cls, fs: FileSystem, directory: str) -> RaftStorage:
        _make_durable_directory(fs, directory)
        log_path = posixpath.join(directory, LOG_FILE)
        if not fs.exists(log_path):
            fs.append(log_path, b"")
            fs.fsync(log_path)
            fs.fsync_dir(directory)
        hard_state = _read_hard_state(fs, posixpath.join(directory, STATE_FILE))
        entries, positions, recovery = _recover_log(fs, log_path)
        if hard_state.commit > len(entries):
            raise RaftStorageError(
                f"{log_path}: {len(entries)} entries, but entry {hard_state.commit} "
                "was committed: the log lost acknowledged entries"
            )
        return cls(fs, directory, StorageState(hard_state, tuple(entries)), positions, recovery)

    @property
    def last_index(self) -> int:
        return len(self._positions) - 1

    def persist(self, ready: Ready) -> None:
        """Make a Ready's entries and hard state durable, in that order."""
        if ready.entries_to_persist:
            self.append(ready.entries_to_persist)
        if ready.hard_state_to_persist is not None:
            self.save_hard_state(ready.hard_state_to_persist)

    def append(self, entries: tuple[Entry, ...]) -> None:
        """Write consecutive entries; any stored entry at or after the first is replaced."""
        first = entries[0].index
        assert 1 <= first <= self.last_index + 1, (
            f"entry {first} leaves a gap after {self.last_index}"
        )
        assert first > self._commit, f"overwriting committed entry {first}"
        if first <= self.last_index:
            self._truncate_from(first)
        chunks = []
        position = self._positions[-1]
        for expected, entry in enumerate(entries, start=first):
            assert entry.index == expected, f"entries not consecutive at {entry.index}"
            frame = encode_entry(entry)
            chunks.append(frame)
            position += len(frame)
            self._positions.append(position)
        self._fs.append(self._log_path, b"".join(chunks))
        self._fs.fsync(self._log_path)

    def save_hard_state(self, hard_state: HardState) -> None:
        assert hard_state.commit <= self.last_index, "commit index beyond the durable log"
        write_atomically(self._fs, self._state_path, encode_hard_state(hard_state))
        self._commit = hard_state.commit

    def _truncate_from(self, index: int) -> None:
        # Durable before new entries go in: a crash must not revive the old suffix.
        self._fs.truncate(self._log_path, self._positions[index - 1])
        self._fs.fsync(self._log_path)
        del self._positions[index:]


def _make_durable_directory(fs: FileSystem, directory: str) -> None:
    """Create the directory and fsync every parent, so its name survives a crash."""
    fs.mkdir(directory)
    parts = [part for part in directory.split("/") if part]
    parent = "/" if directory.startswith("/") else "."
    for part in parts:
        fs.fsync_dir(parent)
        parent = posixpath.join(parent, part)


# --- encoding ---------------------------------------------------------------------------


def encode_entry(entry: Entry) -> bytes:
    if len(entry.data) > ENTRY_DATA_BYTES_MAX:
        raise ValueError(f"entry {entry.index}: {len(entry.data)} bytes > {ENTRY_DATA_BYTES_MAX}")
    body = ENTRY_BODY_HEADER.pack(entry.index, entry.term) + entry.data
    return ENTRY_HEADER.pack(len(body), crc32c.crc32c(body)) + body


def encode_hard_state(hard_state: HardState) -> bytes:
    body = STATE_BODY.pack(STATE_VERSION, hard_state.term, hard_state.voted_for, hard_state.commit)
    return body + STATE_CRC.pack(crc32c.crc32c(body))


def decode_hard_state(data: bytes, path: str) -> HardState:
    if len(data) != STATE_BODY.size + STATE_CRC.size:
        raise RaftStorageError(f"{path}: {len(data)} bytes, expected {STATE_BODY.size + 4}")
    body = data[: STATE_BODY.size]
    (crc,) = STATE_CRC.unpack_from(data, STATE_BODY.size)
    if crc32c.crc32c(body) != crc:
        raise RaftStorageError(f"{path}: CRC-32C mismatch; the term and vote are unknown")
    version, term, voted_for, commit = STATE_BODY.unpack(body)
    if version != STATE_VERSION:
        raise RaftStorageError(f"{path}: version {version}, this build reads {STATE_VERSION}")
    if term < 0 or commit < 0 or voted_for < NO_NODE:
        raise RaftStorageError(f"{path}: negative term, commit or vote")
    return HardState(term, voted_for, commit)


def _read_hard_state(fs: FileSystem, path: str) -> HardState:
    """A missing file is a node that never voted; a damaged one must not be guessed at
    (forgetting a vote could elect two leaders in one term)."""
    if not fs.exists(path):
        return HardState()
    return decode_hard_state(fs.read(path, 0, fs.size(path)), path)


def _recover_log(fs: FileSystem, path: str) -> tuple[list[Entry], list[int], LogRecovery | None]:
    entries: list[Entry] = []
    positions = [0]
    file_size = fs.size(path)
    position = 0
    reason = ""
    while position < file_size:
        entry, reason = _read_entry(fs, path, position, file_size, len(entries) + 1)
        if entry is None:
            break
        if entries and entry.term < entries[-1].term:
            reason = f"term {entry.term} after term {entries[-1].term}"
            break
        entries.append(entry)
        position += ENTRY_HEADER.size + ENTRY_BODY_HEADER.size + len(entry.data)
        positions.append(position)
    if position == file_size:
        return entries, positions, None
    first_dropped = len(entries) + 1
    aside_path = set_tail_aside(fs, path, position, first_dropped)
    fs.truncate(path, position)
    fs.fsync(path)
    recovery_log.warning(
        "%s: cut at position %d: first dropped entry %d, %d bytes dropped (moved to %s): %s",
        path,
        position,
        first_dropped,
        file_size - position,
        posixpath.basename(aside_path),
        reason,
    )
    return entries, positions, LogRecovery(position, file_size - position, reason, aside_path)


def _read_entry(
    fs: FileSystem, path: str, position: int, file_size: int, expected_index: int
) -> tuple[Entry | None, str]:
    """The entry at `position`, or None and why it is not a whole, valid entry."""
    if file_size - position < ENTRY_HEADER.size:
        return None, "torn entry header"
    size_bytes, crc = ENTRY_HEADER.unpack(fs.read(path, position, ENTRY_HEADER.size))
    if not ENTRY_BODY_HEADER.size <= size_bytes <= ENTRY_BODY_BYTES_MAX:
        return None, f"entry size {size_bytes} out of range"
    if file_size - position - ENTRY_HEADER.size < size_bytes:
        return None, "torn entry body"
    body = fs.read(path, position + ENTRY_HEADER.size, size_bytes)
    if crc32c.crc32c(body) != crc:
        return None, "CRC-32C mismatch"
    index, term = ENTRY_BODY_HEADER.unpack_from(body)
    if index != expected_index:
        return None, f"index {index} where {expected_index} belongs"
    return Entry(index, term, body[ENTRY_BODY_HEADER.size :]), ""
