"""One configuration type for model, impl and harness, keyed by Kafka's own names.

Defaults are Kafka's, except the replication triple: replog's default cluster is the
production setup operators are told to run (replication.factor=3,
min.insync.replicas=2, acks=all, unclean election off). Every unsafe setting is still
a valid configuration: the suite exists to show what it costs.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any


class ConfigError(ValueError):
    """A bad key, value or combination; the message is one line naming the key."""


INT64_MAX = 2**63 - 1

# What an integer key counts, from the last part of its name: the unit in its messages.
_UNITS = {
    "ms": "milliseconds",
    "bytes": "bytes",
    "minutes": "minutes",
    "messages": "messages",
    "records": "records",
}


class _Int:
    """An integer key's parser: at least `minimum` and at most a Kafka long; with
    `no_limit`, -1 too. Its message depends on the key (the unit), so `expected` says
    what is allowed and a ValueError from parsing says only what is wrong beyond that."""

    def __init__(self, minimum: int, no_limit: bool = False) -> None:
        self.minimum = minimum
        self.no_limit = no_limit

    def __call__(self, raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError("") from None
        if value > INT64_MAX:
            raise ValueError(f"at most {INT64_MAX}")
        if value < self.minimum and not (self.no_limit and value == -1):
            raise ValueError("")
        return value

    def expected(self, key: str) -> str:
        unit = _UNITS.get(key.rpartition(".")[2])
        what = f"an integer number of {unit}" if unit else "an integer"
        if self.no_limit:
            return f"expected {what} (-1 for no limit)"
        return f"expected {what} >= {self.minimum}"


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _parse_acks(raw: str) -> int:
    lowered = raw.strip().lower()
    if lowered in ("all", "-1"):
        return -1
    if lowered in ("0", "1"):
        return int(lowered)
    raise ValueError("expected 0, 1, all or -1")


def _int_at_least(minimum: int) -> _Int:
    return _Int(minimum)


_retention = _Int(0, no_limit=True)


def _percent(raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        value = -1
    if not 0 <= value <= 100:
        raise ValueError("expected an integer percentage in [0, 100]")
    return value


def _ratio(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise ValueError("expected a number in [0, 1]")
    return value


def _cleanup_policy(raw: str) -> str:
    """`delete`, `compact` or both (Kafka's list, in either order), as `compact,delete`."""
    parts = {p.strip().lower() for p in raw.split(",")}
    if not parts <= {"delete", "compact"}:
        raise ValueError("expected delete, compact or compact,delete")
    return ",".join(sorted(parts))


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError("expected one of " + ", ".join(allowed))
        return value

    return parse


# Kafka key -> (attribute name, parser). The attribute names are the keys with dots and
# dashes turned into underscores, so code reads `config.min_insync_replicas`.
_KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "acks": ("acks", _parse_acks),
    "min.insync.replicas": ("min_insync_replicas", _int_at_least(1)),
    "replication.factor": ("replication_factor", _int_at_least(1)),
    "unclean.leader.election.enable": ("unclean_leader_election_enable", _parse_bool),
    "replica.lag.time.max.ms": ("replica_lag_time_max_ms", _int_at_least(1)),
    "replica.high.watermark.checkpoint.interval.ms": (
        "replica_high_watermark_checkpoint_interval_ms",
        _int_at_least(1),
    ),
    "replica.fetch.max.bytes": ("replica_fetch_max_bytes", _int_at_least(1)),
    "retention.ms": ("retention_ms", _retention),
    "retention.bytes": ("retention_bytes", _retention),
    "cleanup.policy": ("cleanup_policy", _cleanup_policy),
    "delete.retention.ms": ("delete_retention_ms", _int_at_least(0)),
    "min.cleanable.dirty.ratio": ("min_cleanable_dirty_ratio", _ratio),
    "log.cleaner.backoff.ms": ("log_cleaner_backoff_ms", _int_at_least(1)),
    "replog.cleaner.pass.bytes.max": ("cleaner_pass_bytes_max", _int_at_least(1)),
    "segment.bytes": ("segment_bytes", _int_at_least(14)),
    "segment.ms": ("segment_ms", _int_at_least(1)),
    "flush.messages": ("flush_messages", _int_at_least(1)),
    "flush.ms": ("flush_ms", _int_at_least(0)),
    "enable.idempotence": ("enable_idempotence", _parse_bool),
    "auto.offset.reset": ("auto_offset_reset", _choice("earliest", "latest", "none")),
    "max.poll.interval.ms": ("max_poll_interval_ms", _int_at_least(1)),
    "session.timeout.ms": ("session_timeout_ms", _int_at_least(1)),
    "broker.session.timeout.ms": ("broker_session_timeout_ms", _int_at_least(1)),
    "broker.heartbeat.interval.ms": ("broker_heartbeat_interval_ms", _int_at_least(1)),
    "isolation.level": ("isolation_level", _choice("read_uncommitted", "read_committed")),
    "linger.ms": ("linger_ms", _int_at_least(0)),
    "batch.size": ("batch_size", _int_at_least(0)),
    # A producer takes the codecs and none; a topic also producer and uncompressed.
    "compression.type": (
        "compression_type",
        _choice("none", "gzip", "snappy", "lz4", "zstd", "producer", "uncompressed"),
    ),
    "message.max.bytes": ("message_max_bytes", _int_at_least(64)),
    "socket.request.max.bytes": ("socket_request_max_bytes", _int_at_least(64)),
    "max.connections": ("max_connections", _int_at_least(1)),
    "max.connections.per.ip": ("max_connections_per_ip", _int_at_least(1)),
    "connections.max.idle.ms": ("connections_max_idle_ms", _int_at_least(1)),
    "queued.max.request.bytes": ("queued_max_request_bytes", _retention),
    "replog.request.read.timeout.ms": ("request_read_timeout_ms", _int_at_least(1)),
    "auto.create.topics.enable": ("auto_create_topics_enable", _parse_bool),
    "num.partitions": ("num_partitions", _int_at_least(1)),
    "log.retention.check.interval.ms": ("log_retention_check_interval_ms", _int_at_least(1)),
    "request.timeout.ms": ("request_timeout_ms", _int_at_least(1)),
    "delivery.timeout.ms": ("delivery_timeout_ms", _int_at_least(1)),
    "retries": ("retries", _int_at_least(0)),
    "retry.backoff.ms": ("retry_backoff_ms", _int_at_least(0)),
    "max.in.flight.requests.per.connection": (
        "max_in_flight_requests_per_connection",
        _int_at_least(1),
    ),
    "buffer.memory": ("buffer_memory", _int_at_least(0)),
    "max.block.ms": ("max_block_ms", _int_at_least(0)),
    "max.request.size": ("max_request_size", _int_at_least(1)),
    "fetch.max.wait.ms": ("fetch_max_wait_ms", _int_at_least(0)),
    "fetch.min.bytes": ("fetch_min_bytes", _int_at_least(0)),
    "fetch.max.bytes": ("fetch_max_bytes", _int_at_least(0)),
    "max.partition.fetch.bytes": ("max_partition_fetch_bytes", _int_at_least(0)),
    "max.poll.records": ("max_poll_records", _int_at_least(1)),
    "metadata.max.age.ms": ("metadata_max_age_ms", _int_at_least(0)),
    "default.api.timeout.ms": ("default_api_timeout_ms", _int_at_least(0)),
    "offsets.topic.num.partitions": ("offsets_topic_num_partitions", _int_at_least(1)),
    "offsets.topic.replication.factor": ("offsets_topic_replication_factor", _int_at_least(1)),
    "offsets.topic.segment.bytes": ("offsets_topic_segment_bytes", _int_at_least(14)),
    "offsets.retention.minutes": ("offsets_retention_minutes", _int_at_least(1)),
    "offsets.retention.check.interval.ms": (
        "offsets_retention_check_interval_ms",
        _int_at_least(1),
    ),
    "offsets.commit.timeout.ms": ("offsets_commit_timeout_ms", _int_at_least(1)),
    "group.initial.rebalance.delay.ms": ("group_initial_rebalance_delay_ms", _int_at_least(0)),
    "group.min.session.timeout.ms": ("group_min_session_timeout_ms", _int_at_least(1)),
    "group.max.session.timeout.ms": ("group_max_session_timeout_ms", _int_at_least(1)),
    "heartbeat.interval.ms": ("heartbeat_interval_ms", _int_at_least(1)),
    "partition.assignment.strategy": (
        "partition_assignment_strategy",
        _choice("range", "cooperative-sticky"),
    ),
    "replog.truncation": ("truncation", _choice("leader-epoch", "kip-101", "high-watermark")),
    "replog.isr.expand": ("isr_expand", _choice("epoch-start", "hw-only")),
    "replog.fetch.epoch-fencing": ("fetch_epoch_fencing", _parse_bool),
    "replog.elr": ("elr", _parse_bool),
    "replog.hw.min-isr-guard": ("hw_min_isr_guard", _parse_bool),
    "replog.consumer.commit": (
        "consumer_commit",
        _choice("after-processing", "before-processing"),
    ),
    "replog.consumer.processing.ms": ("consumer_processing_ms", _int_at_least(0)),
    "replog.consumer.crash.percent": ("consumer_crash_percent", _percent),
}

_ATTRIBUTE_TO_KEY = {attribute: key for key, (attribute, _) in _KEYS.items()}


@dataclass(frozen=True, slots=True)
class Config:
    """Validated settings. Build with `Config.from_pairs` / `Config.parse` or `Config()`."""

    acks: int = -1
    min_insync_replicas: int = 2
    replication_factor: int = 3
    unclean_leader_election_enable: bool = False
    replica_lag_time_max_ms: int = 30_000
    # A broker restarted after a crash knows the HW as of its last checkpoint (and
    # recovery points are written along with it).
    replica_high_watermark_checkpoint_interval_ms: int = 5_000
    # Per partition and fetch; the first batch is sent whole even when larger (KIP-74).
    replica_fetch_max_bytes: int = 1_048_576
    retention_ms: int = 604_800_000
    retention_bytes: int = -1
    cleanup_policy: str = "delete"
    delete_retention_ms: int = 86_400_000
    min_cleanable_dirty_ratio: float = 0.5
    log_cleaner_backoff_ms: int = 15_000
    # Kafka bounds a pass by its dedupe buffer; replog by the dirty bytes a pass maps.
    cleaner_pass_bytes_max: int = 4_194_304
    segment_bytes: int = 1_073_741_824
    segment_ms: int = 604_800_000
    flush_messages: int = 9_223_372_036_854_775_807
    flush_ms: int = 9_223_372_036_854_775_807
    enable_idempotence: bool = True
    auto_offset_reset: str = "latest"
    max_poll_interval_ms: int = 300_000
    session_timeout_ms: int = 45_000
    broker_session_timeout_ms: int = 9_000
    broker_heartbeat_interval_ms: int = 2_000
    isolation_level: str = "read_uncommitted"
    linger_ms: int = 5
    batch_size: int = 16_384
    compression_type: str = "none"
    message_max_bytes: int = 1_048_588
    socket_request_max_bytes: int = 104_857_600
    # Kafka's default is unlimited; replog bounds everything. A full broker closes its
    # longest-idle connection to admit a new one (Kafka does so on its inter-broker
    # listener, KIP-402), so idle sockets cannot lock clients out.
    max_connections: int = 1_000
    # Kafka's default (unlimited): a loopback broker's clients share one address, so
    # max.connections is the bound that matters.
    max_connections_per_ip: int = 2_147_483_647
    # Kafka's default: a connection with no traffic for 10 minutes is closed.
    connections_max_idle_ms: int = 600_000
    # Bytes reserved for requests still arriving, across all connections (Kafka's
    # default -1 is unlimited); a frame waits, unread, until its size fits.
    queued_max_request_bytes: int = 104_857_600
    # No Kafka equivalent: a frame must arrive whole within this time of its first byte.
    request_read_timeout_ms: int = 30_000
    # Kafka's default is true; a typo in a topic name should fail, not create a topic.
    auto_create_topics_enable: bool = False
    num_partitions: int = 1
    log_retention_check_interval_ms: int = 300_000
    request_timeout_ms: int = 30_000
    delivery_timeout_ms: int = 120_000
    retries: int = 2_147_483_647
    retry_backoff_ms: int = 100
    max_in_flight_requests_per_connection: int = 5
    buffer_memory: int = 33_554_432
    max_block_ms: int = 60_000
    max_request_size: int = 1_048_576
    fetch_max_wait_ms: int = 500
    fetch_min_bytes: int = 1
    fetch_max_bytes: int = 52_428_800
    max_partition_fetch_bytes: int = 1_048_576
    max_poll_records: int = 500
    metadata_max_age_ms: int = 300_000
    default_api_timeout_ms: int = 60_000
    offsets_topic_num_partitions: int = 50
    offsets_topic_replication_factor: int = 3
    offsets_topic_segment_bytes: int = 104_857_600
    offsets_retention_minutes: int = 10_080
    offsets_retention_check_interval_ms: int = 600_000
    offsets_commit_timeout_ms: int = 5_000
    group_initial_rebalance_delay_ms: int = 3_000
    group_min_session_timeout_ms: int = 6_000
    group_max_session_timeout_ms: int = 1_800_000
    heartbeat_interval_ms: int = 3_000
    partition_assignment_strategy: str = "range"
    truncation: str = "leader-epoch"
    isr_expand: str = "epoch-start"
    fetch_epoch_fencing: bool = True
    elr: bool = True
    hw_min_isr_guard: bool = True
    # The model's consumers: commit after processing (at-least-once) or before it
    # (at-most-once).
    consumer_commit: str = "after-processing"
    # The consumer workload's simulated processing time per record.
    consumer_processing_ms: int = 0
    # The share of the consumer workload's cycles in which the member crashes half-way.
    consumer_crash_percent: int = 2

    def __post_init__(self) -> None:
        if self.min_insync_replicas > self.replication_factor:
            raise ConfigError(
                f"min.insync.replicas={self.min_insync_replicas} is larger than "
                f"replication.factor={self.replication_factor}: acks=all could never succeed"
            )
        if self.group_min_session_timeout_ms > self.group_max_session_timeout_ms:
            raise ConfigError(
                f"group.min.session.timeout.ms={self.group_min_session_timeout_ms} is larger "
                f"than group.max.session.timeout.ms={self.group_max_session_timeout_ms}"
            )

    @classmethod
    def from_pairs(cls, pairs: Mapping[str, str] | Iterable[tuple[str, str]]) -> Config:
        """Parse Kafka-style `key -> value` strings; unknown keys and bad values raise."""
        items = pairs.items() if isinstance(pairs, Mapping) else pairs
        values: dict[str, Any] = {}
        for key, raw in items:
            if key not in _KEYS:
                raise ConfigError(unknown_key_message(key))
            attribute, parse = _KEYS[key]
            try:
                values[attribute] = parse(str(raw))
            except ValueError as error:
                raise ConfigError(f"bad value {raw!r} for {key}: {_allowed(key, error)}") from None
        return cls(**values)

    @classmethod
    def parse(cls, assignments: Iterable[str]) -> Config:
        """Parse `KEY=VALUE` strings as given to `--config` on the command line."""
        pairs = []
        for assignment in assignments:
            key, separator, raw = assignment.partition("=")
            if not separator:
                raise ConfigError(f"bad --config {assignment!r}: expected KEY=VALUE")
            pairs.append((key.strip(), raw))
        return cls.from_pairs(pairs)

    def with_values(self, **changes: Any) -> Config:
        """A copy with attributes changed (validated like any other Config)."""
        return replace(self, **changes)

    def to_pairs(self) -> dict[str, str]:
        """Every key with its value in Kafka's spelling (acks=all, booleans lower-case)."""
        pairs = {_ATTRIBUTE_TO_KEY[f.name]: _render(getattr(self, f.name)) for f in fields(self)}
        pairs["acks"] = render_acks(self.acks)
        return pairs

    def differences(self) -> dict[str, str]:
        """Only the keys that differ from replog's defaults, for labels and reports."""
        default = Config().to_pairs()
        return {k: v for k, v in self.to_pairs().items() if default[k] != v}

    def label(self) -> str:
        """A short human label: `defaults` or `acks=1,min.insync.replicas=1`."""
        changed = self.differences()
        return ",".join(f"{k}={v}" for k, v in changed.items()) or "defaults"


def _render(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_acks(acks: int) -> str:
    """Kafka spells acks=-1 as `all`."""
    return "all" if acks == -1 else str(acks)


def _allowed(key: str, error: ValueError) -> str:
    parse = _KEYS[key][1]
    if not isinstance(parse, _Int):
        return str(error)
    return parse.expected(key) + (f", {error}" if str(error) else "")


def _describe(key: str) -> str:
    """What `key` accepts: every parser rejects a NUL with its full message."""
    try:
        _KEYS[key][1]("\0")
    except ValueError as error:
        return _allowed(key, error).removeprefix("expected ")
    raise AssertionError(f"{key} accepts a NUL")


def keys_markdown() -> str:
    """docs/config.md: every key, its default and what it accepts (`python -m model.config`)."""
    defaults = Config().to_pairs()
    lines = [
        "# Configuration keys",
        "",
        "Every `--config KEY=VALUE` key, generated from `model/config.py` by",
        "`python -m model.config > docs/config.md`. See README.md, Configuration.",
        "",
        "| key | default | allowed |",
        "|---|---|---|",
    ]
    lines += [f"| `{key}` | `{defaults[key]}` | {_describe(key)} |" for key in _KEYS]
    return "\n".join(lines)


KEYS_DOC = "docs/config.md"


def unknown_key_message(key: str) -> str:
    """One line: the nearest known keys (a typo is the usual cause) and where all are."""
    scored = sorted(
        ((difflib.SequenceMatcher(None, key, k).ratio(), k) for k in _KEYS), reverse=True
    )
    # Only the keys about as near as the nearest: one clear match is one suggestion.
    near = [repr(k) for score, k in scored[:3] if score >= max(0.6, scored[0][0] - 0.1)]
    hint = f"; did you mean {' or '.join(near)}?" if near else ""
    return f"unknown config key {key!r}{hint} (every key: {KEYS_DOC})"


KNOWN_KEYS: tuple[str, ...] = tuple(_KEYS)


if __name__ == "__main__":
    print(keys_markdown())
