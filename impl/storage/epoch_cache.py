"""The leader-epoch cache: which leader epoch began at which offset (Kafka's
LeaderEpochFileCache), persisted to `leader-epoch-checkpoint` on every change."""

from __future__ import annotations

import bisect
import itertools

from impl.runtime.fs import FileSystem
from impl.storage.checkpoint import CheckpointError, read_epoch_checkpoint, write_checkpoint

UNDEFINED_EPOCH = -1
UNDEFINED_EPOCH_OFFSET = -1


class LeaderEpochCache:
    """Entries (epoch, start offset), both strictly increasing.

    The mutators keep that order by construction; only a loaded file needs checking.
    """

    def __init__(self, fs: FileSystem, path: str, entries: list[tuple[int, int]]) -> None:
        self._fs = fs
        self._path = path
        self._entries = list(entries)

    @classmethod
    def load(cls, fs: FileSystem, path: str) -> LeaderEpochCache:
        """The cache saved at `path` (empty if missing); CheckpointError if it is malformed
        or its epochs and start offsets do not both increase."""
        entries = read_epoch_checkpoint(fs, path)
        for line, (before, after) in enumerate(itertools.pairwise(entries), start=4):
            if not (before[0] < after[0] and before[1] < after[1]):
                raise CheckpointError(
                    f"{path}: line {line} has epoch {after[0]} at offset {after[1]}, "
                    f"after epoch {before[0]} at offset {before[1]}: epochs and start "
                    "offsets must both increase"
                )
        return cls(fs, path, entries)

    def _save(self) -> None:
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
        """(epoch, end offset) as Kafka's LeaderEpochFileCache.endOffsetFor answers an
        OffsetsForLeaderEpoch request.

        The latest epoch ends at the log end offset. An older epoch ends where the first
        later epoch starts, reported under the largest cached epoch <= it, or under the
        requested epoch itself when every cached epoch is later (retention removed its
        start). UNDEFINED_EPOCH, an epoch above the latest and an empty cache give
        (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET).
        """
        if epoch == UNDEFINED_EPOCH or not self._entries or epoch > self.latest_epoch:
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if epoch == self.latest_epoch:
            return epoch, log_end_offset
        higher = bisect.bisect_right([e for e, _ in self._entries], epoch)
        higher_start = self._entries[higher][1]
        if higher == 0:
            return epoch, higher_start
        return self._entries[higher - 1][0], higher_start

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
