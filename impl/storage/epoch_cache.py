"""The leader-epoch cache: which leader epoch began at which offset (Kafka's
LeaderEpochFileCache), persisted to `leader-epoch-checkpoint` on every change."""

from __future__ import annotations

import bisect

from impl.runtime.fs import FileSystem
from impl.storage.checkpoint import read_epoch_checkpoint, write_checkpoint

UNDEFINED_EPOCH = -1
UNDEFINED_EPOCH_OFFSET = -1


class LeaderEpochCache:
    """Entries (epoch, start offset), both strictly increasing."""

    def __init__(self, fs: FileSystem, path: str, entries: list[tuple[int, int]]) -> None:
        self._fs = fs
        self._path = path
        self._entries = list(entries)
        self._check()

    @classmethod
    def load(cls, fs: FileSystem, path: str) -> LeaderEpochCache:
        return cls(fs, path, read_epoch_checkpoint(fs, path))

    def _check(self) -> None:
        pairs = zip(self._entries, self._entries[1:], strict=False)
        assert all(a[0] < b[0] and a[1] < b[1] for a, b in pairs), (
            f"{self._path}: epochs and start offsets must both increase: {self._entries}"
        )

    def _save(self) -> None:
        self._check()
        write_checkpoint(self._fs, self._path, self._entries)

    @property
    def entries(self) -> tuple[tuple[int, int], ...]:
        return tuple(self._entries)

    @property
    def latest_epoch(self) -> int:
        return self._entries[-1][0] if self._entries else UNDEFINED_EPOCH

    def assign(self, epoch: int, start_offset: int) -> None:
        """Record that `epoch` starts at `start_offset`; only newer epochs change anything.

        Entries whose start offset is >= the new one are dropped first (they describe a
        log suffix that the caller has replaced).
        """
        if epoch <= self.latest_epoch or epoch < 0:
            return
        self._entries = [e for e in self._entries if e[1] < start_offset]
        self._entries.append((epoch, start_offset))
        self._save()

    def end_offset_for(self, epoch: int, log_end_offset: int) -> tuple[int, int]:
        """(epoch, end offset) as in KAFKA-RULES.md: the latest epoch ends at the LEO;
        an older one at the start of the first epoch above it, reported with the largest
        known epoch <= the requested one. No such epoch, or a requested epoch above the
        latest, gives (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)."""
        if not self._entries or epoch > self.latest_epoch:
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if epoch == self.latest_epoch:
            return epoch, log_end_offset
        epochs = [e for e, _ in self._entries]
        higher = bisect.bisect_right(epochs, epoch)
        if higher == 0:
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        return self._entries[higher - 1][0], self._entries[higher][1]

    def truncate_from_end(self, end_offset: int) -> None:
        """The log was cut to end at `end_offset`: drop epochs starting at or after it."""
        kept = [e for e in self._entries if e[1] < end_offset]
        if kept != self._entries:
            self._entries = kept
            self._save()

    def truncate_from_start(self, start_offset: int) -> None:
        """The log now starts at `start_offset`: the epoch covering it starts there."""
        before = [e for e in self._entries if e[1] <= start_offset]
        if not before:
            return
        kept = [(before[-1][0], start_offset)] + [e for e in self._entries if e[1] > start_offset]
        if kept != self._entries:
            self._entries = kept
            self._save()
