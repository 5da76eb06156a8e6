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


def _exact_choice(*allowed: str) -> Callable[[str], str]:
    """Kafka's ValidString: one of `allowed`, spelt exactly (CreateTime, not createtime)."""

    def parse(raw: str) -> str:
        value = raw.strip()
        if value not in allowed:
            raise ValueError("expected one of " + ", ".join(allowed))
        return value

    return parse


TIMESTAMP_TYPES = ("CreateTime", "LogAppendTime")

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
    "message.timestamp.type": ("message_timestamp_type", _exact_choice(*TIMESTAMP_TYPES)),
    "message.timestamp.before.max.ms": ("message_timestamp_before_max_ms", _int_at_least(0)),
    "message.timestamp.after.max.ms": ("message_timestamp_after_max_ms", _int_at_least(0)),
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
    # CreateTime keeps the producer's timestamps; LogAppendTime stamps each batch with
    # the leader's clock. A CreateTime batch further than these from the leader's clock
    # is refused (Kafka 4.0's defaults: any age, at most an hour ahead).
    message_timestamp_type: str = "CreateTime"
    message_timestamp_before_max_ms: int = INT64_MAX
    message_timestamp_after_max_ms: int = 3_600_000
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
    return _reason(_KEYS[key][1], key, error)


def _reason(parse: Callable[[str], Any], key: str, error: ValueError) -> str:
    """What `key` allows, and what is wrong beyond that, after `parse` raised `error`."""
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


# ---- topic-level keys ------------------------------------------------------------------
#
# The one table of topic configs, used by the controller and every broker: Kafka 4.x's
# LogConfig keys. Those replog acts on map to a Config attribute (a topic's value replaces
# the broker's); the rest are validated as Kafka does, stored, and described. Removed in
# 4.0 and so unknown: message.downconversion.enable, message.timestamp.difference.max.ms.


class _KafkaBool:
    """Kafka's BOOLEAN: true or false, in any case."""

    def __call__(self, raw: str) -> bool:
        lowered = raw.strip().lower()
        if lowered not in ("true", "false"):
            raise ValueError("expected true or false")
        return lowered == "true"


class _Between:
    """Kafka's Range.between, with `also` allowed besides (gzip's -1 for its default)."""

    def __init__(self, low: int, high: int, also: int | None = None) -> None:
        self.low, self.high, self.also = low, high, also

    def __call__(self, raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            value = self.low - 1
        if not (self.low <= value <= self.high or value == self.also):
            extra = f" or {self.also}" if self.also is not None else ""
            raise ValueError(f"expected an integer in [{self.low}, {self.high}]{extra}")
        return value


def _throttled_replicas(raw: str) -> str:
    """Kafka's ThrottledReplicaListValidator: empty, `*`, or `partition:broker` pairs."""
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if items in ([], ["*"]):
        return ",".join(items)
    for item in items:
        partition, separator, broker = item.partition(":")
        if not (separator and partition.isdigit() and broker.isdigit()):
            raise ValueError("expected nothing, *, or partition:broker pairs such as 0:1,1:2")
    return ",".join(items)


def _no_tiered_storage(raw: str) -> bool:
    """remote.storage.enable: Kafka refuses true on a broker without tiered storage."""
    if raw.strip().lower() != "false":
        raise ValueError("expected false (replog has no tiered storage)")
    return False


@dataclass(frozen=True, slots=True)
class TopicKey:
    """One topic config: Kafka's type name, its broker-level synonym (None: it has none),
    and either the Config attribute it sets or, for a key replog only stores, Kafka's
    default and parser."""

    type: str
    synonym: str | None
    doc: str
    attribute: str | None = None
    default: str = ""
    parse: Callable[[str], Any] | None = None

    def parser(self) -> Callable[[str], Any]:
        return self.parse or _KEYS[_ATTRIBUTE_TO_KEY[self.attribute or ""]][1]


def _enforced(kind: str, synonym: str, doc: str, attribute: str, **kwargs: Any) -> TopicKey:
    return TopicKey(kind, synonym, doc, attribute=attribute, **kwargs)


def _stored(kind: str, synonym: str | None, doc: str, default: str, parse: Any) -> TopicKey:
    return TopicKey(kind, synonym, doc, default=default, parse=parse)


TOPIC_KEYS: dict[str, TopicKey] = {
    "cleanup.policy": _enforced(
        "LIST",
        "log.cleanup.policy",
        "delete old segments, compact by key, or both",
        "cleanup_policy",
    ),
    "compression.type": _enforced(
        "STRING", "compression.type", "the codec the log stores batches in", "compression_type"
    ),
    "delete.retention.ms": _enforced(
        "LONG",
        "log.cleaner.delete.retention.ms",
        "how long a compacted log keeps tombstones",
        "delete_retention_ms",
    ),
    "flush.messages": _enforced(
        "LONG",
        "log.flush.interval.messages",
        "records appended between forced fsyncs",
        "flush_messages",
    ),
    "flush.ms": _enforced(
        "LONG",
        "log.flush.interval.ms",
        "the longest a record waits unsynced in the page cache",
        "flush_ms",
    ),
    # Kafka's topic name for the broker's message.max.bytes, and Kafka's bound (>= 0).
    "max.message.bytes": _enforced(
        "INT",
        "message.max.bytes",
        "the largest record batch a produce may append",
        "message_max_bytes",
        parse=_Int(0),
    ),
    "message.timestamp.type": _enforced(
        "STRING",
        "log.message.timestamp.type",
        "CreateTime keeps the producer's timestamps, LogAppendTime sets the leader's",
        "message_timestamp_type",
    ),
    "message.timestamp.before.max.ms": _enforced(
        "LONG",
        "log.message.timestamp.before.max.ms",
        "how far behind the leader's clock a CreateTime timestamp may be",
        "message_timestamp_before_max_ms",
    ),
    "message.timestamp.after.max.ms": _enforced(
        "LONG",
        "log.message.timestamp.after.max.ms",
        "how far ahead of the leader's clock a CreateTime timestamp may be",
        "message_timestamp_after_max_ms",
    ),
    "min.cleanable.dirty.ratio": _enforced(
        "DOUBLE",
        "log.cleaner.min.cleanable.ratio",
        "the dirty share of a log at which the cleaner compacts it",
        "min_cleanable_dirty_ratio",
    ),
    "min.insync.replicas": _enforced(
        "INT",
        "min.insync.replicas",
        "the ISR size below which acks=all produces are refused",
        "min_insync_replicas",
    ),
    "retention.bytes": _enforced(
        "LONG",
        "log.retention.bytes",
        "the size above which old segments go (-1: none)",
        "retention_bytes",
    ),
    "retention.ms": _enforced(
        "LONG",
        "log.retention.ms",
        "how long a segment is kept after its newest record (-1: forever)",
        "retention_ms",
    ),
    # replog's bound, not Kafka's 1 MiB: its tests roll segments of a few bytes.
    "segment.bytes": _enforced(
        "INT", "log.segment.bytes", "the size at which the active segment rolls", "segment_bytes"
    ),
    "segment.ms": _enforced(
        "LONG", "log.roll.ms", "the age at which a segment rolls", "segment_ms"
    ),
    "unclean.leader.election.enable": _enforced(
        "BOOLEAN",
        "unclean.leader.election.enable",
        "whether a replica outside the ISR may lead when no ISR member is alive",
        "unclean_leader_election_enable",
        parse=_KafkaBool(),
    ),
    "compression.gzip.level": _stored(
        "INT",
        "compression.gzip.level",
        "the gzip level the log compresses with",
        "-1",
        _Between(1, 9, also=-1),
    ),
    "compression.lz4.level": _stored(
        "INT",
        "compression.lz4.level",
        "the lz4 level the log compresses with",
        "9",
        _Between(1, 17),
    ),
    "compression.zstd.level": _stored(
        "INT",
        "compression.zstd.level",
        "the zstd level the log compresses with",
        "3",
        _Between(-131_072, 22),
    ),
    "file.delete.delay.ms": _stored(
        "LONG",
        "log.segment.delete.delay.ms",
        "how long a deleted segment's files stay",
        "60000",
        _Int(0),
    ),
    "follower.replication.throttled.replicas": _stored(
        "LIST",
        None,
        "the replicas whose follower fetches are throttled",
        "",
        _throttled_replicas,
    ),
    "index.interval.bytes": _stored(
        "INT",
        "log.index.interval.bytes",
        "the bytes between offset index entries",
        "4096",
        _Int(0),
    ),
    "leader.replication.throttled.replicas": _stored(
        "LIST",
        None,
        "the replicas whose leader answers to followers are throttled",
        "",
        _throttled_replicas,
    ),
    "local.retention.bytes": _stored(
        "LONG",
        "log.local.retention.bytes",
        "local bytes kept under tiered storage (-2: retention.bytes)",
        "-2",
        _Int(-2),
    ),
    "local.retention.ms": _stored(
        "LONG",
        "log.local.retention.ms",
        "how long segments stay local under tiered storage (-2: retention.ms)",
        "-2",
        _Int(-2),
    ),
    "max.compaction.lag.ms": _stored(
        "LONG",
        "log.cleaner.max.compaction.lag.ms",
        "the longest a record stays uncompacted",
        str(INT64_MAX),
        _Int(1),
    ),
    "min.compaction.lag.ms": _stored(
        "LONG",
        "log.cleaner.min.compaction.lag.ms",
        "the shortest a record stays uncompacted",
        "0",
        _Int(0),
    ),
    "preallocate": _stored(
        "BOOLEAN",
        "log.preallocate",
        "whether a new segment's file is preallocated",
        "false",
        _KafkaBool(),
    ),
    "remote.log.copy.disable": _stored(
        "BOOLEAN", None, "whether tiered storage stops copying segments", "false", _KafkaBool()
    ),
    "remote.log.delete.on.disable": _stored(
        "BOOLEAN",
        None,
        "whether disabling tiered storage deletes the remote copy",
        "false",
        _KafkaBool(),
    ),
    "remote.storage.enable": _stored(
        "BOOLEAN", None, "whether the topic uses tiered storage", "false", _no_tiered_storage
    ),
    "segment.index.bytes": _stored(
        "INT",
        "log.index.size.max.bytes",
        "the largest offset index of a segment",
        "10485760",
        _Int(4),
    ),
    "segment.jitter.ms": _stored(
        "LONG",
        "log.roll.jitter.ms",
        "the random jitter subtracted from segment.ms",
        "0",
        _Int(0),
    ),
}


def parse_topic_overrides(overrides: Mapping[str, str]) -> dict[str, Any]:
    """A topic's overrides parsed by Kafka's rules (the controller's and every broker's):
    an unknown key or a bad value raises ConfigError."""
    parsed: dict[str, Any] = {}
    for key, raw in overrides.items():
        entry = TOPIC_KEYS.get(key)
        if entry is None:
            raise ConfigError(f"Unknown topic config name: {key}")
        parse = entry.parser()
        try:
            parsed[key] = parse(str(raw))
        except ValueError as error:
            reason = _reason(parse, key, error)
            raise ConfigError(f"Invalid value {raw} for configuration {key}: {reason}") from None
    min_lag = parsed.get("min.compaction.lag.ms", 0)
    max_lag = parsed.get("max.compaction.lag.ms", INT64_MAX)
    if min_lag > max_lag:
        raise ConfigError(
            f"conflict topic config setting min.compaction.lag.ms ({min_lag}) > "
            f"max.compaction.lag.ms ({max_lag})"
        )
    return parsed


def topic_config(base: Config, overrides: Mapping[str, str]) -> Config:
    """`base` (the broker's or cluster's config) with a topic's overrides applied."""
    parsed = parse_topic_overrides(overrides)
    changes = {
        TOPIC_KEYS[key].attribute: value
        for key, value in parsed.items()
        if TOPIC_KEYS[key].attribute is not None
    }
    return base.with_values(**changes) if changes else base


TOPIC_KEYS_DOC = "docs/topic-configs.md"


def topic_keys_markdown() -> str:
    """docs/topic-configs.md: every topic key, its default, what it accepts and whether
    replog acts on it (`python -c 'import model.config as c; print(c.topic_keys_markdown())'`)."""
    defaults = Config().to_pairs()
    lines = [
        "# Topic configs",
        "",
        "Every topic config CreateTopics accepts: Kafka 4.x's (LogConfig), generated from",
        "`model.config.TOPIC_KEYS`, the table the controller and every broker check them",
        "against. *enforced* keys change what the broker does, and a topic without one",
        "takes the broker's `--config` value (default shown: replog's); *stored* keys are",
        "validated as Kafka does, kept with the topic and answered by DescribeConfigs (default",
        "shown: Kafka's). An unknown key, or a value outside what is allowed, is INVALID_CONFIG",
        "with a message naming the key. Removed in Kafka 4.0 and so unknown:",
        "`message.downconversion.enable`, `message.timestamp.difference.max.ms`.",
        "",
        "| key | replog | default | allowed | meaning |",
        "|---|---|---|---|---|",
    ]
    for key in sorted(TOPIC_KEYS):
        entry = TOPIC_KEYS[key]
        if entry.attribute is None:
            kind, default = "stored", entry.default
        else:
            kind, default = "enforced", defaults[_ATTRIBUTE_TO_KEY[entry.attribute]]
        parse = entry.parser()
        try:
            parse("\0")
        except ValueError as error:
            allowed = _reason(parse, key, error).removeprefix("expected ")
        else:
            raise AssertionError(f"{key} accepts a NUL")
        shown = f"`{default}`" if default else "(empty)"
        lines.append(f"| `{key}` | {kind} | {shown} | {allowed} | {entry.doc} |")
    return "\n".join(lines)


def topic_value(key: str, raw: str) -> str:
    """A stored (not enforced) topic key's value as Kafka would describe it."""
    return _render(TOPIC_KEYS[key].parser()(raw))


if __name__ == "__main__":
    print(keys_markdown())
