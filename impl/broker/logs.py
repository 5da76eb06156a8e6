"""The broker's data directory: topics, partition logs and the log-dir checkpoints.

Layout (Kafka's): `meta.properties` (broker.id), one `topic-partition` directory per
partition, `recovery-point-offset-checkpoint` and `replication-offset-checkpoint` (HW).
`topics.json` holds the topics this broker knows until the controller's metadata log
takes that over; it is replaced atomically, so a crash keeps the old or the new table.
"""

from __future__ import annotations

import json
import logging
import posixpath
import re
from dataclasses import dataclass, field

import trio

from impl.broker.partition import Partition
from impl.runtime.fs import FileSystem
from impl.storage.batch import CodecError
from impl.storage.checkpoint import (
    RECOVERY_POINT_CHECKPOINT,
    read_offset_checkpoint,
    write_atomically,
    write_offset_checkpoint,
)
from impl.storage.cleaner import CleaningResult, clean_steps, dirty_ratio
from impl.storage.log import PartitionLog, mkdir_durably, partition_dir_name
from model.config import Config, ConfigError, topic_config
from model.errors import Errors

log = logging.getLogger("replog.broker")

HIGH_WATERMARK_CHECKPOINT = "replication-offset-checkpoint"
TOPICS_FILE = "topics.json"
META_FILE = "meta.properties"
TOPIC_NAME_LENGTH_MAX = 249
PARTITIONS_PER_TOPIC_MAX = 1_000
TOPICS_MAX = 10_000
_LEGAL_TOPIC = re.compile(r"[a-zA-Z0-9._-]+")


class DataDirError(RuntimeError):
    """A data directory this broker must not use (another broker's, or unreadable)."""


@dataclass(frozen=True)
class Topic:
    name: str
    topic_id: bytes
    partitions: int
    replication_factor: int
    overrides: dict[str, str] = field(default_factory=dict)


def topic_name_error(name: str) -> str | None:
    """Why Kafka would refuse this topic name, or None."""
    if not name or name in (".", ".."):
        return "topic name must not be empty, '.' or '..'"
    if len(name) > TOPIC_NAME_LENGTH_MAX:
        return f"topic name longer than {TOPIC_NAME_LENGTH_MAX} characters"
    if not _LEGAL_TOPIC.fullmatch(name):
        return "topic name may contain only ASCII letters, digits, '.', '_' and '-'"
    return None


class LogManager:
    def __init__(
        self,
        fs: FileSystem,
        data_dir: str,
        config: Config,
        broker_id: int,
    ) -> None:
        self.fs = fs
        self.data_dir = data_dir
        self.config = config
        self.broker_id = broker_id
        self.topics: dict[str, Topic] = {}
        self.partitions: dict[tuple[str, int], Partition] = {}
        self._recovery_points: dict[tuple[str, int], int] = {}
        self._high_watermarks: dict[tuple[str, int], int] = {}
        self._uncleanable: set[tuple[str, int]] = set()

    # ---- startup and shutdown ----------------------------------------------------------

    def open(self) -> None:
        """Claim the data dir, read the checkpoints, and recover every partition of the
        topic table (a standalone broker's; in a cluster the metadata log has the topics
        and `ensure_partition` opens each replica as the metadata names it)."""
        mkdir_durably(self.fs, self.data_dir)
        self._claim()
        self._recovery_points = read_offset_checkpoint(
            self.fs, self._path(RECOVERY_POINT_CHECKPOINT)
        )
        self._high_watermarks = read_offset_checkpoint(
            self.fs, self._path(HIGH_WATERMARK_CHECKPOINT)
        )
        self.topics = self._load_topics()
        for topic in self.topics.values():
            for index in range(topic.partitions):
                self._open_partition(topic.name, index, topic.overrides, (self.broker_id,))

    def ensure_partition(
        self, topic: str, index: int, replicas: tuple[int, ...], overrides: dict[str, str]
    ) -> Partition:
        """The local replica of a partition, opened (and recovered) on first use."""
        partition = self.partitions.get((topic, index))
        if partition is None:
            partition = self._open_partition(topic, index, overrides, replicas)
        return partition

    def checkpoint(self) -> None:
        """Write the recovery points and HWs of every partition (after a flush).

        A replica not opened yet (a restarted broker that has not heard from the
        controller) keeps the entry read at startup: rewriting the file without it would
        lose its HW and recovery point for good.
        """
        recovery = dict(self._recovery_points)
        recovery.update({key: p.log.recovery_point for key, p in self.partitions.items()})
        hws = dict(self._high_watermarks)
        hws.update({key: p.high_watermark for key, p in self.partitions.items()})
        write_offset_checkpoint(self.fs, self._path(RECOVERY_POINT_CHECKPOINT), recovery)
        write_offset_checkpoint(self.fs, self._path(HIGH_WATERMARK_CHECKPOINT), hws)

    def flush_due(self, now_ms: int) -> None:
        for partition in self.partitions.values():
            partition.log.flush_if_due(now_ms)

    def apply_retention(self, now_ms: int) -> int:
        return sum(
            p.log.apply_retention(now_ms, p.high_watermark) for p in self.partitions.values()
        )

    async def clean_filthiest(self, now_ms: int) -> tuple[Partition, CleaningResult] | None:
        """One cleaner pass over the compacted log with the highest dirty ratio at or
        above its min.cleanable.dirty.ratio (Kafka's grabFilthiestCompactedLog), letting
        other tasks run between its steps; None if no log is due or the pass gave up. A
        log whose batches turn out damaged or undecodable is skipped from then on (Kafka
        marks it uncleanable); reads report the damage and followers refetch it."""
        due = []
        for key, partition in self.partitions.items():
            log_ = partition.log
            if not log_.compacted or key in self._uncleanable:
                continue
            ratio = dirty_ratio(log_, partition.high_watermark)
            if ratio and ratio >= log_.config.min_cleanable_dirty_ratio:
                due.append((ratio, key))
        if not due:
            return None
        _, key = max(due)
        partition = self.partitions[key]
        steps = clean_steps(partition.log, now_ms, partition.high_watermark)
        try:
            while True:
                next(steps)
                await trio.lowlevel.checkpoint()
        except StopIteration as done:
            result = done.value
        except CodecError as error:
            self._uncleanable.add(key)
            log.warning("not cleaning %s-%d again: %s", key[0], key[1], error)
            return None
        return None if result is None else (partition, result)

    def close(self) -> None:
        """Flush everything and checkpoint: a clean shutdown recovers nothing on restart."""
        for partition in self.partitions.values():
            partition.log.close()
        self.checkpoint()

    # ---- topics ------------------------------------------------------------------------

    def validate_topic(
        self, name: str, partitions: int, replication_factor: int, overrides: dict[str, str]
    ) -> tuple[Errors, str | None]:
        """(error code, message) as CreateTopics reports them; NONE if it may be created."""
        problem = topic_name_error(name)
        if problem:
            return Errors.INVALID_TOPIC_EXCEPTION, problem
        if name in self.topics:
            return Errors.TOPIC_ALREADY_EXISTS, f"topic {name!r} already exists"
        if not 1 <= partitions <= PARTITIONS_PER_TOPIC_MAX:
            return (
                Errors.INVALID_PARTITIONS,
                f"partitions must be in [1, {PARTITIONS_PER_TOPIC_MAX}]",
            )
        if replication_factor != 1:
            return (
                Errors.INVALID_REPLICATION_FACTOR,
                f"replication factor {replication_factor} is larger than the 1 live broker",
            )
        if len(self.topics) >= TOPICS_MAX:
            return Errors.INVALID_REQUEST, f"this broker holds at most {TOPICS_MAX} topics"
        try:
            self.topic_config(overrides)
        except ConfigError as error:
            return Errors.INVALID_CONFIG, str(error)
        return Errors.NONE, None

    def create_topic(
        self,
        name: str,
        topic_id: bytes,
        partitions: int,
        replication_factor: int,
        overrides: dict[str, str],
    ) -> tuple[Errors, str | None]:
        """Validate, persist and open a topic."""
        error, message = self.validate_topic(name, partitions, replication_factor, overrides)
        if error != Errors.NONE:
            return error, message
        assert len(topic_id) == 16 and any(topic_id), "topic ids are non-zero UUIDs"
        topic = Topic(name, topic_id, partitions, replication_factor, dict(overrides))
        self.topics[name] = topic
        self._save_topics()
        for index in range(partitions):
            self._open_partition(name, index, topic.overrides, (self.broker_id,))
        return Errors.NONE, None

    def topic_config(self, overrides: dict[str, str]) -> Config:
        """The broker's config with a topic's overrides (model.config.TOPIC_KEYS: the
        table the controller checks them against too); a key or value it refuses raises."""
        return topic_config(self.config, overrides)

    # ---- helpers -----------------------------------------------------------------------

    def _path(self, name: str) -> str:
        return posixpath.join(self.data_dir, name)

    def _open_partition(
        self, topic: str, index: int, overrides: dict[str, str], replicas: tuple[int, ...]
    ) -> Partition:
        key = (topic, index)
        directory = self._path(partition_dir_name(topic, index))
        config = self.topic_config(overrides)
        log = PartitionLog.open(self.fs, directory, config, self._recovery_points.get(key))
        partition = Partition(topic, index, log, self.broker_id, replicas)
        # Kafka restores the HW from replication-offset-checkpoint: a follower that
        # restarts knows what was committed as of the last checkpoint, not more.
        partition.high_watermark = min(self._high_watermarks.get(key, 0), log.log_end_offset)
        self.partitions[key] = partition
        return partition

    def _claim(self) -> None:
        path = self._path(META_FILE)
        wanted = f"version=0\nbroker.id={self.broker_id}\n"
        if not self.fs.exists(path):
            write_atomically(self.fs, path, wanted.encode())
            return
        found = self.fs.read(path, 0, self.fs.size(path)).decode("utf-8", errors="replace")
        if found != wanted:
            raise DataDirError(
                f"{self.data_dir} belongs to another broker ({path} says {found.strip()!r}); "
                f"this is broker.id={self.broker_id}"
            )

    def _load_topics(self) -> dict[str, Topic]:
        path = self._path(TOPICS_FILE)
        if not self.fs.exists(path):
            return {}
        raw = self.fs.read(path, 0, self.fs.size(path))
        try:
            rows = json.loads(raw)
            topics = [
                Topic(
                    r["name"],
                    bytes.fromhex(r["topic_id"]),
                    int(r["partitions"]),
                    int(r["replication_factor"]),
                    r["overrides"],
                )
                for r in rows
            ]
        except (ValueError, KeyError, TypeError) as error:
            raise DataDirError(f"{path} does not parse: {error}") from None
        return {t.name: t for t in topics}

    def _save_topics(self) -> None:
        rows = [
            {
                "name": t.name,
                "topic_id": t.topic_id.hex(),
                "partitions": t.partitions,
                "replication_factor": t.replication_factor,
                "overrides": t.overrides,
            }
            for t in self.topics.values()
        ]
        write_atomically(self.fs, self._path(TOPICS_FILE), json.dumps(rows, indent=1).encode())
