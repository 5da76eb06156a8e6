"""The filesystem as the broker sees it: a small synchronous interface and two implementations.

Durability is explicit. Bytes written to a file survive a crash only after `fsync(file)`;
a created, renamed or removed name survives only after `fsync_dir(parent)`. The real
implementation passes these calls to the OS; the in-memory one keeps exactly what was
made durable and throws the rest away on `crash()`, so a simulated power loss drops
unsynced writes the way a real disk may.

Errors are the built-in ones (`FileNotFoundError`, `FileExistsError`, `IsADirectoryError`,
`NotADirectoryError`), raised the same way by both implementations.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import random
from dataclasses import dataclass, field
from typing import Protocol

OPEN_FILES_MAX = 256


class FileSystem(Protocol):
    """What the storage layer needs from a disk. Paths are strings; all calls block."""

    def exists(self, path: str) -> bool:
        """True if a file or directory has this name."""
        ...

    def mkdir(self, path: str) -> None:
        """Create a directory and missing parents; an existing directory is fine."""
        ...

    def list_dir(self, path: str) -> list[str]:
        """The names (not paths) in a directory, sorted."""
        ...

    def size(self, path: str) -> int:
        """The length of a file in bytes."""
        ...

    def read(self, path: str, position: int, size: int) -> bytes:
        """Up to `size` bytes from `position`; fewer only at end of file."""
        ...

    def append(self, path: str, data: bytes) -> None:
        """Add bytes at the end of a file, creating it if missing."""
        ...

    def truncate(self, path: str, size: int) -> None:
        """Cut a file to `size` bytes (never extends it)."""
        ...

    def fsync(self, path: str) -> None:
        """Make the file's current content durable."""
        ...

    def fsync_dir(self, path: str) -> None:
        """Make the directory's current entries (creations, renames, removals) durable."""
        ...

    def rename(self, source: str, target: str) -> None:
        """Atomically give a file a new name, replacing any file already there."""
        ...

    def remove(self, path: str) -> None:
        """Delete a file."""
        ...

    def close(self) -> None:
        """Release cached handles; the object stays usable."""
        ...


class RealFileSystem:
    """The OS filesystem. Keeps up to OPEN_FILES_MAX descriptors open so appends stay cheap."""

    def __init__(self) -> None:
        self._fds: dict[str, tuple[int, bool]] = {}

    def _fd(self, path: str, writable: bool = True, create: bool = False) -> int:
        """A cached descriptor; read-only when only reading is needed and writing is denied
        (so `replog dump-log` works on files it may not write)."""
        cached = self._fds.get(path)
        if cached is not None and (cached[1] or not writable):
            return cached[0]
        self._forget(path)
        try:
            flags = os.O_RDWR | os.O_APPEND | (os.O_CREAT if create else 0)
            fd, can_write = os.open(path, flags, 0o644), True
        except PermissionError:
            if writable:
                raise
            fd, can_write = os.open(path, os.O_RDONLY), False
        if len(self._fds) >= OPEN_FILES_MAX:
            os.close(self._fds.pop(next(iter(self._fds)))[0])
        self._fds[path] = (fd, can_write)
        return fd

    def _forget(self, path: str) -> None:
        cached = self._fds.pop(path, None)
        if cached is not None:
            os.close(cached[0])

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def mkdir(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def list_dir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    def size(self, path: str) -> int:
        if path in self._fds:
            return os.fstat(self._fds[path][0]).st_size
        return os.stat(path).st_size

    def read(self, path: str, position: int, size: int) -> bytes:
        fd = self._fd(path, writable=False)
        chunks = []
        while size > 0:
            chunk = os.pread(fd, size, position)
            if not chunk:
                break
            chunks.append(chunk)
            position += len(chunk)
            size -= len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def append(self, path: str, data: bytes) -> None:
        fd = self._fd(path, create=True)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    def truncate(self, path: str, size: int) -> None:
        if size < self.size(path):
            os.ftruncate(self._fd(path), size)

    def fsync(self, path: str) -> None:
        os.fsync(self._fd(path))

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def rename(self, source: str, target: str) -> None:
        self._forget(source)
        self._forget(target)
        os.replace(source, target)

    def remove(self, path: str) -> None:
        self._forget(path)
        os.remove(path)

    def close(self) -> None:
        for path in list(self._fds):
            self._forget(path)


@dataclass(eq=False)
class _Inode:
    """File content plus what of it is durable.

    While only appends happen after an fsync, the durable content is a prefix of `data`
    (`synced_size_bytes` long) and nothing is copied; a truncation below that prefix
    snapshots it first, because the disk would still hold the old bytes after a crash.
    """

    data: bytearray = field(default_factory=bytearray)
    synced_size_bytes: int = 0
    synced_snapshot: bytes | None = None

    def durable(self) -> bytes:
        if self.synced_snapshot is not None:
            return self.synced_snapshot
        return bytes(self.data[: self.synced_size_bytes])


def _norm(path: str) -> str:
    """Absolute, normalised; relative paths are taken from the root."""
    return posixpath.normpath(path if path.startswith("/") else "/" + path)


class MemoryFileSystem:
    """A disk in memory that loses, on `crash()`, everything not made durable."""

    def __init__(self) -> None:
        self._files: dict[str, _Inode] = {}
        self._dirs: set[str] = {"/"}
        self._durable_files: dict[str, _Inode] = {}
        self._durable_dirs: set[str] = {"/"}
        self._last_written: _Inode | None = None

    def _inode(self, path: str) -> _Inode:
        # Keys are normalised, so a path found as it is needs no normpath (the log's
        # reads and appends always name their files the same way).
        inode = self._files.get(path)
        if inode is not None:
            return inode
        key = _norm(path)
        inode = self._files.get(key)
        if inode is None:
            if key in self._dirs:
                raise IsADirectoryError(path)
            raise FileNotFoundError(path)
        return inode

    def _require_parent(self, key: str, path: str) -> None:
        if posixpath.dirname(key) not in self._dirs:
            raise FileNotFoundError(f"no directory for {path}")

    def exists(self, path: str) -> bool:
        key = _norm(path)
        return key in self._files or key in self._dirs

    def mkdir(self, path: str) -> None:
        key = _norm(path)
        if key in self._files:
            raise FileExistsError(path)
        while key not in self._dirs:
            self._dirs.add(key)
            key = posixpath.dirname(key)

    def list_dir(self, path: str) -> list[str]:
        key = _norm(path)
        if key not in self._dirs:
            raise NotADirectoryError(path) if key in self._files else FileNotFoundError(path)
        children = [
            p for p in (*self._files, *self._dirs) if p != "/" and posixpath.dirname(p) == key
        ]
        return sorted(posixpath.basename(p) for p in children)

    def size(self, path: str) -> int:
        return len(self._inode(path).data)

    def read(self, path: str, position: int, size: int) -> bytes:
        return bytes(self._inode(path).data[position : position + size])

    def append(self, path: str, data: bytes) -> None:
        inode = self._files.get(path)
        if inode is None:
            key = _norm(path)
            inode = self._files.get(key)
            if inode is None:
                if key in self._dirs:
                    raise IsADirectoryError(path)
                self._require_parent(key, path)
                inode = self._files[key] = _Inode()
        inode.data += data
        self._last_written = inode

    def truncate(self, path: str, size: int) -> None:
        inode = self._inode(path)
        if size >= len(inode.data):
            return
        if size < inode.synced_size_bytes and inode.synced_snapshot is None:
            inode.synced_snapshot = bytes(inode.data[: inode.synced_size_bytes])
        del inode.data[size:]

    def fsync(self, path: str) -> None:
        inode = self._inode(path)
        inode.synced_size_bytes = len(inode.data)
        inode.synced_snapshot = None

    def fsync_dir(self, path: str) -> None:
        key = _norm(path)
        if key not in self._dirs:
            raise FileNotFoundError(path)

        def under(p: str) -> bool:
            return p != "/" and posixpath.dirname(p) == key

        self._durable_files = {p: i for p, i in self._durable_files.items() if not under(p)}
        self._durable_files.update({p: i for p, i in self._files.items() if under(p)})
        self._durable_dirs = {d for d in self._durable_dirs if not under(d)}
        self._durable_dirs |= {d for d in self._dirs if under(d)}

    def rename(self, source: str, target: str) -> None:
        inode = self._inode(source)
        target_key = _norm(target)
        if target_key in self._dirs:
            raise IsADirectoryError(target)
        self._require_parent(target_key, target)
        del self._files[_norm(source)]
        self._files[target_key] = inode

    def remove(self, path: str) -> None:
        self._inode(path)
        del self._files[_norm(path)]

    def close(self) -> None:
        """Nothing to release; present to satisfy the FileSystem protocol."""

    def corrupt(self, path: str, position: int, data: bytes) -> None:
        """Fault injection: overwrite bytes in place, durably, as bit rot on the platter would."""
        inode = self._inode(path)
        end = position + len(data)
        if end > len(inode.data):
            raise ValueError(f"corrupt({path}, {position}) reaches past the end of the file")
        durable = bytearray(inode.durable())
        inode.data[position:end] = data
        durable[position:end] = data[: max(0, len(durable) - position)]
        inode.synced_snapshot = bytes(durable)

    def unsynced_size_bytes(self) -> int:
        """Bytes appended since the last fsync of their file: what a crash may lose."""
        return sum(len(i.data) - i.synced_size_bytes for i in self._files.values())

    def crash(self, tear_last_write: bool = False, rng: random.Random | None = None) -> None:
        """Power loss: keep only durable names and bytes.

        With `tear_last_write`, the file written last keeps a random prefix of its
        unsynced tail, as when the disk wrote some sectors of the final write and not others.
        """
        torn = self._torn_content(rng or random.Random(0)) if tear_last_write else None
        live_dirs = {d for d in self._durable_dirs if self._ancestors_durable(d)}
        self._dirs = live_dirs
        self._files = {
            p: i for p, i in self._durable_files.items() if posixpath.dirname(p) in live_dirs
        }
        self._durable_files = dict(self._files)
        self._durable_dirs = set(live_dirs)
        for inode in self._files.values():
            content = torn if torn is not None and inode is self._last_written else inode.durable()
            inode.data = bytearray(content)
            inode.synced_size_bytes = len(content)
            inode.synced_snapshot = None
        self._last_written = None

    def _torn_content(self, rng: random.Random) -> bytes | None:
        inode = self._last_written
        if inode is None:
            return None
        durable = inode.durable()
        if not inode.data.startswith(durable):
            return None
        kept_bytes = rng.randint(0, len(inode.data) - len(durable))
        return bytes(inode.data[: len(durable) + kept_bytes])

    def _ancestors_durable(self, path: str) -> bool:
        while path != "/":
            if path not in self._durable_dirs:
                return False
            path = posixpath.dirname(path)
        return True


class JournaledFileSystem(RealFileSystem):
    """The OS filesystem, plus an append-only journal of what each fsync made durable, so
    that a harness can play a power loss on a killed process's files (`lose_unsynced`).

    A SIGKILL alone loses nothing a process wrote: the kernel's page cache keeps it. A
    power loss keeps only what was fsynced, which is what Kafka's default (no fsync,
    flush.messages unlimited; durability from replication) gambles on. The journal
    marks, per file, the size its last fsync left durable; files this process created
    start at 0, a file it finds on disk starts at its size then. Like Jepsen's lazyfs,
    nothing is lost until the harness says so, and the loss is exactly the unsynced
    tails (no torn writes). A truncation is taken as durable at once (the log fsyncs
    after it anyway), and directory entries are kept (every create here is followed by
    an fsync_dir).
    """

    JOURNAL_RECORDS_MAX = 10_000

    def __init__(self, journal_path: str) -> None:
        super().__init__()
        self.journal_path = os.path.abspath(journal_path)
        self._durable = read_fsync_journal(self.journal_path)
        self._records = len(self._durable)
        self._journal = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _record(self, entry: dict[str, object]) -> None:
        # A plain write: it outlives a SIGKILL, and the power loss it stands for is played
        # by the harness, which reads the journal as an oracle.
        line = (json.dumps(entry) + "\n").encode()
        os.write(self._journal, line)
        self._records += 1
        if self._records > self.JOURNAL_RECORDS_MAX:
            self._compact()

    def _compact(self) -> None:
        temporary = self.journal_path + ".tmp"
        lines = [json.dumps({"op": "sync", "path": p, "size": s}) for p, s in self._durable.items()]
        with open(temporary, "w", encoding="utf-8") as stream:
            stream.write("".join(line + "\n" for line in lines))
        os.replace(temporary, self.journal_path)
        os.close(self._journal)
        self._journal = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND)
        self._records = len(lines)

    def append(self, path: str, data: bytes) -> None:
        key = os.path.abspath(path)
        if key not in self._durable:
            # Written before this journal began (or after the last power loss): durable.
            self._sync_record(key, os.path.getsize(key) if os.path.exists(key) else 0)
        super().append(path, data)

    def _sync_record(self, key: str, size: int) -> None:
        self._durable[key] = size
        self._record({"op": "sync", "path": key, "size": size})

    def truncate(self, path: str, size: int) -> None:
        super().truncate(path, size)
        key = os.path.abspath(path)
        if self._durable.get(key, size) > size:
            self._sync_record(key, size)

    def fsync(self, path: str) -> None:
        super().fsync(path)
        self._sync_record(os.path.abspath(path), self.size(path))

    def rename(self, source: str, target: str) -> None:
        super().rename(source, target)
        old, new = os.path.abspath(source), os.path.abspath(target)
        self._record({"op": "rename", "source": old, "target": new})
        if old in self._durable:
            self._durable[new] = self._durable.pop(old)
        else:
            self._sync_record(new, os.path.getsize(new))

    def remove(self, path: str) -> None:
        super().remove(path)
        key = os.path.abspath(path)
        self._durable.pop(key, None)
        self._record({"op": "remove", "path": key})


def read_fsync_journal(journal_path: str) -> dict[str, int]:
    """Path -> durable size, replayed from a JournaledFileSystem's journal ({} if none).
    A last line cut short by a kill is ignored: its fsync had not been reported."""
    durable: dict[str, int] = {}
    try:
        with open(journal_path, encoding="utf-8") as stream:
            lines = stream.read().splitlines()
    except FileNotFoundError:
        return durable
    for line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry["op"] == "sync":
            durable[entry["path"]] = entry["size"]
        elif entry["op"] == "rename":
            size = durable.pop(entry["source"], None)
            durable.pop(entry["target"], None)
            if size is not None:
                durable[entry["target"]] = size
        elif entry["op"] == "remove":
            durable.pop(entry["path"], None)
    return durable


@dataclass(frozen=True)
class PowerLoss:
    """What `lose_unsynced` dropped."""

    files: int
    lost_bytes: int


def lose_unsynced(journal_path: str) -> PowerLoss:
    """Cut every journaled file back to its durable size, as a power loss would, then
    start a new journal: what survived is on disk. Only for a process that is dead."""
    files = lost_bytes = 0
    for path, durable_size in read_fsync_journal(journal_path).items():
        try:
            size = os.path.getsize(path)
        except FileNotFoundError:
            continue
        if size > durable_size:
            os.truncate(path, durable_size)
            files += 1
            lost_bytes += size - durable_size
    with contextlib.suppress(FileNotFoundError):
        os.remove(journal_path)
    return PowerLoss(files, lost_bytes)
