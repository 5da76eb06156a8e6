"""`replog lag`: consumer-group lag against the log end and against retention.

Like `kafka-consumer-groups --describe`, per partition: the committed offset, the log end
(high watermark) and the lag in records. What the usual tools do not show is the lag
against retention, the distance between the committed offset and the point where
retention deletes it:

- LOG-START: the log start offset. A committed offset below it is already gone: the
  group's next fetch gets OFFSET_OUT_OF_RANGE and auto.offset.reset decides (latest
  skips everything up to the head, silently). That is CRITICAL.
- AGE-MS: how old the record at the committed offset is (now minus its timestamp); 0
  when the group is caught up.
- RETENTION-MS: the retention window: `--retention-ms` when given, else the topic's
  retention.ms as the broker reports it (DescribeConfigs: the topic's override or the
  broker's default). Where there is no window (retention.ms=-1, unlimited, or a broker
  that cannot describe the topic) and retention has deleted anything (log start > 0),
  it is the window the log keeps now: now minus the timestamp of the oldest retained
  record. That is the effective retention, segment rounding included, and it also
  reflects retention.bytes at the current produce rate. While nothing has been deleted
  yet it is unknown ("-"), and so are TIME-LEFT-MS and USED.
- TIME-LEFT-MS: RETENTION-MS minus AGE-MS, the estimated time until the committed record
  falls off the log if the consumer makes no progress. Retention deletes whole segments
  once their newest record is past the window, so the record may live a little longer
  than this, never less (under retention.bytes the window shrinks as the produce rate
  grows, and the estimate moves with it).
- USED: AGE-MS / RETENTION-MS. WARN at 0.5 (half the window is spent), CRITICAL once
  the committed offset is below the log start.

Groups: `--group` (repeatable); without it, every group with committed offsets, read
from `__consumer_offsets` itself with the broker's own record format.

Exit codes, for alerting (Nagios' convention): 0 every partition OK, 1 some WARN,
2 some CRITICAL, 3 UNKNOWN (bad arguments, no broker reachable, no group or a group with
no committed offsets, or no answer within --timeout-ms), always with one line on stderr
saying why ("UNKNOWN: cannot reach 127.0.0.1:1: connection refused").
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import NoReturn

import trio

from impl.client.admin import topic_configs
from impl.client.cli import CONNECT_TIMEOUT_MS, unreachable
from impl.client.consumer import Consumer
from impl.client.errors import ClientError, IncompatibleBroker, OffsetOutOfRange
from impl.client.metadata import Cluster, TopicPartition, parse_bootstrap
from impl.protocol import group_data
from impl.protocol.errors import ProtocolError
from impl.protocol.group_data import OFFSETS_TOPIC
from impl.runtime.runtime import Runtime, real_runtime
from model.config import Config, ConfigError

EXIT_OK, EXIT_WARN, EXIT_CRITICAL, EXIT_UNKNOWN = 0, 1, 2, 3
STATUS_EXIT = {"OK": EXIT_OK, "WARN": EXIT_WARN, "CRITICAL": EXIT_CRITICAL}
WARN_FRACTION = 0.5
# The whole run gets this many --timeout-ms: a few requests each bounded by one.
RUN_TIMEOUTS = 4
DEFAULT_TIMEOUT_MS = 15_000
POLL_MS = 200
OFFSETS_READ_RECORDS_MAX = 1_000_000
RETENTION_MS = "retention.ms"


class UsageError(Exception):
    """Bad arguments: exit UNKNOWN (3), not argparse's 2, which means CRITICAL here."""


class Unreachable(Exception):
    """No bootstrap server accepts a connection: UNKNOWN, with the reason."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


@dataclass(frozen=True, slots=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int
    log_end: int
    lag: int
    log_start: int
    age_ms: int
    retention_ms: int | None
    time_left_ms: int | None
    used: float | None
    status: str


def assess(
    committed: int,
    log_start: int,
    log_end: int,
    committed_timestamp_ms: int | None,
    oldest_timestamp_ms: int | None,
    now_ms: int,
    retention_ms: int | None,
) -> tuple[int, int | None, int | None, float | None, str]:
    """(age, window, time left, used, status) of one partition (see the module doc).
    Timestamps are None when there is no record at that offset (the log is empty there)."""
    age_ms = 0
    if committed < log_end and committed_timestamp_ms is not None:
        age_ms = max(0, now_ms - committed_timestamp_ms)
    window_ms = retention_ms
    if window_ms is None and log_start > 0 and oldest_timestamp_ms is not None:
        window_ms = max(1, now_ms - oldest_timestamp_ms)
    time_left_ms = None if window_ms is None else window_ms - age_ms
    used = None if window_ms is None else age_ms / window_ms
    if committed < log_start:
        status = "CRITICAL"
    elif used is not None and used >= WARN_FRACTION:
        status = "WARN"
    else:
        status = "OK"
    return age_ms, window_ms, time_left_ms, used, status


async def _first_timestamps(
    consumer: Consumer,
    offsets: dict[TopicPartition, int],
    starts: dict[TopicPartition, int],
    ends: dict[TopicPartition, int],
    timeout_ms: int,
    follow_log_start: bool = False,
) -> dict[TopicPartition, int | None]:
    """The timestamp of the first record at or after each offset (None: no record there,
    or the offset is outside [log start, log end), where there is nothing to date)."""
    found: dict[TopicPartition, int | None] = {tp: None for tp in offsets}
    wanted = {tp for tp, offset in offsets.items() if starts[tp] <= offset < ends[tp]}
    if not wanted:
        return found
    consumer.assign(sorted(wanted))
    for tp in wanted:
        consumer.seek(tp, offsets[tp])
    with trio.move_on_after(timeout_ms / 1000):
        while wanted:
            try:
                records = await consumer.poll(POLL_MS)
            except OffsetOutOfRange as error:
                # Retention moved the log start since we asked. The oldest record is
                # then the one at the new start; a committed offset is simply gone.
                tp = TopicPartition(error.topic, error.partition)
                if follow_log_start:
                    consumer.seek(tp, (await consumer.beginning_offsets([tp]))[tp])
                else:
                    wanted.discard(tp)
                    consumer.assign(sorted(wanted))
                continue
            for record in records:
                tp = TopicPartition(record.topic, record.partition)
                if tp in wanted:
                    found[tp] = record.timestamp_ms
                    wanted.discard(tp)
            consumer.assign(sorted(wanted))
    return found


async def retention_windows(
    cluster: Cluster, topics: set[str], retention_ms: int | None, timeout_ms: int
) -> dict[str, int | None]:
    """Per topic, the window to judge against: `retention_ms` (--retention-ms) when given,
    else the topic's retention.ms from DescribeConfigs. None: no window (-1, unlimited) or
    none known (a broker without DescribeConfigs, a topic it does not know)."""
    if retention_ms is not None:
        return dict.fromkeys(topics, retention_ms)
    try:
        found = await topic_configs(cluster, topics, keys=[RETENTION_MS], timeout_ms=timeout_ms)
    except IncompatibleBroker:
        return dict.fromkeys(topics)
    return {topic: _window(found.get(topic, {}).get(RETENTION_MS)) for topic in topics}


def _window(raw: str | None) -> int | None:
    try:
        value = int(raw) if raw is not None else -1
    except ValueError:
        return None
    # retention.ms=0 deletes every closed segment at once: the smallest window there is.
    return None if value < 0 else max(value, 1)


async def describe_group(
    runtime: Runtime,
    bootstrap: str,
    group: str,
    config: Config,
    retention_ms: int | None = None,
) -> list[PartitionLag]:
    """The group's partitions, judged against `retention_ms` (None: each topic's own)."""
    async with Consumer(runtime, bootstrap, config, client_id="replog-lag", group_id=group) as c:
        committed = {tp: o.offset for tp, o in (await c.committed()).items() if o is not None}
        if not committed:
            return []
        partitions = sorted(committed)
        timeout_ms = config.default_api_timeout_ms
        topics = {tp.topic for tp in partitions}
        windows = await retention_windows(c.cluster, topics, retention_ms, timeout_ms)
        starts = await c.beginning_offsets(partitions)
        ends = await c.end_offsets(partitions)
        at_commit = await _first_timestamps(c, committed, starts, ends, timeout_ms)
        oldest = await _first_timestamps(c, starts, starts, ends, timeout_ms, True)
        now_ms = runtime.clock.wall_ms()
    rows = []
    for tp in partitions:
        start, end, offset = starts[tp], ends[tp], committed[tp]
        age, window, left, used, status = assess(
            offset, start, end, at_commit[tp], oldest[tp], now_ms, windows[tp.topic]
        )
        lag = max(0, end - offset)
        rows.append(
            PartitionLag(
                group,
                tp.topic,
                tp.partition,
                offset,
                end,
                lag,
                start,
                age,
                window,
                left,
                used,
                status,
            )
        )
    return rows


async def discover_groups(runtime: Runtime, bootstrap: str, config: Config) -> list[str]:
    """Every group with a live committed offset, from __consumer_offsets' own records."""
    latest: dict[bytes, bytes | None] = {}
    async with Consumer(runtime, bootstrap, config, client_id="replog-lag") as consumer:
        try:
            partitions = await consumer.partitions_for(OFFSETS_TOPIC)
        except ClientError:
            return []
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        ends = await consumer.end_offsets(partitions)
        with trio.move_on_after(config.default_api_timeout_ms / 1000):
            while len(latest) < OFFSETS_READ_RECORDS_MAX:
                positions = [await consumer.position(tp) for tp in partitions]
                if all(p >= ends[tp] for p, tp in zip(positions, partitions, strict=True)):
                    break
                for record in await consumer.poll(POLL_MS):
                    if record.key is not None:
                        latest[record.key] = record.value
    groups = set()
    for key, value in latest.items():
        try:
            if value is not None and group_data.read_version(key) < 2:
                groups.add(group_data.decode(group_data.OFFSET_COMMIT_KEY, key)[1]["group"])
        except ProtocolError:
            continue
    return sorted(groups)


def render_table(rows: Sequence[PartitionLag]) -> str:
    header = (
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "LOG-START-OFFSET",
        "AGE-MS",
        "RETENTION-MS",
        "TIME-LEFT-MS",
        "USED",
        "STATUS",
    )

    def cell(value: object) -> str:
        if value is None:
            return "-"
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    table = [header] + [
        tuple(
            cell(v)
            for v in (
                r.group,
                r.topic,
                r.partition,
                r.committed,
                r.log_end,
                r.lag,
                r.log_start,
                r.age_ms,
                r.retention_ms,
                r.time_left_ms,
                r.used,
                r.status,
            )
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table
    )


def overall_status(rows: Sequence[PartitionLag]) -> str:
    statuses = {r.status for r in rows}
    for status in ("CRITICAL", "WARN"):
        if status in statuses:
            return status
    return "OK"


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="replog lag",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--bootstrap", required=True, help="HOST:PORT[,HOST:PORT]")
    parser.add_argument("--group", action="append", default=[], help="a group (repeatable)")
    parser.add_argument(
        "--retention-ms",
        type=int,
        default=None,
        help="judge every topic against this window (default: each topic's retention.ms)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument("--timeout-ms", type=int, default=DEFAULT_TIMEOUT_MS)
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE")
    return parser


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
        parse_bootstrap(args.bootstrap)
        if args.retention_ms is not None and args.retention_ms <= 0:
            raise UsageError("--retention-ms must be > 0")
        if args.timeout_ms <= 0:
            raise UsageError("--timeout-ms must be > 0")
        # auto.offset.reset=none: the monitor itself must never jump silently either.
        config = Config.parse(
            [
                f"default.api.timeout.ms={args.timeout_ms}",
                "fetch.max.wait.ms=100",
                *args.config,
                "auto.offset.reset=none",
            ]
        )
    except (UsageError, ConfigError, ValueError) as error:
        print(f"replog lag: {error}", file=sys.stderr)
        return EXIT_UNKNOWN
    try:
        rows, missing = trio.run(_collect, args, config)
    except (ClientError, Unreachable) as error:
        return _unknown(args.json, str(error))
    except trio.TooSlowError:
        return _unknown(args.json, f"no answer within {RUN_TIMEOUTS * args.timeout_ms} ms")
    status = overall_status(rows)
    code = EXIT_UNKNOWN if missing or not rows else STATUS_EXIT[status]
    if args.json:
        document = {
            "status": "UNKNOWN" if code == EXIT_UNKNOWN else status,
            "exit_code": code,
            "groups_without_offsets": missing,
            "partitions": [asdict(r) for r in rows],
        }
        print(json.dumps(document, indent=1))
    else:
        if rows:
            print(render_table(rows))
        for group in missing:
            print(f"group {group}: no committed offsets", file=sys.stderr)
    if not rows and not missing:
        print("replog lag: UNKNOWN: no group has committed offsets", file=sys.stderr)
    return code


def _unknown(as_json: bool, reason: str) -> int:
    """No report could be made: the reason on stderr and, with --json, in the document,
    so a monitor parsing stdout sees UNKNOWN rather than nothing."""
    print(f"replog lag: UNKNOWN: {reason}", file=sys.stderr)
    if as_json:
        document = {
            "status": "UNKNOWN",
            "exit_code": EXIT_UNKNOWN,
            "reason": reason,
            "groups_without_offsets": [],
            "partitions": [],
        }
        print(json.dumps(document, indent=1))
    return EXIT_UNKNOWN


async def _collect(
    args: argparse.Namespace, config: Config
) -> tuple[list[PartitionLag], list[str]]:
    runtime = real_runtime()
    problem = await unreachable(args.bootstrap, min(args.timeout_ms, CONNECT_TIMEOUT_MS))
    if problem:
        raise Unreachable(problem)
    with trio.fail_after(RUN_TIMEOUTS * args.timeout_ms / 1000):
        groups = args.group or await discover_groups(runtime, args.bootstrap, config)
        rows: list[PartitionLag] = []
        missing = []
        for group in groups:
            found = await describe_group(runtime, args.bootstrap, group, config, args.retention_ms)
            rows += found
            if not found:
                missing.append(group)
        return rows, missing
