"""The motivating failure against one broker process: a group falls behind a short
retention.ms, retention (on the broker's timer) deletes the segment its committed offset
points into, `replog lag` goes CRITICAL, and each auto.offset.reset policy does what
KAFKA-RULES.md says: latest skips to the head, earliest to the log start, none fails
loudly, and each reset is on the consumer's record."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest
import trio

from impl.broker.process import BrokerProcess, start_broker
from impl.client.admin import create_topics, wait_for_leaders
from impl.client.consumer import Consumer
from impl.client.errors import OffsetOutOfRange
from impl.client.metadata import TopicPartition
from impl.client.producer import Producer
from impl.runtime.runtime import Runtime, real_runtime
from jepsen_py import lag
from model.config import Config

RETENTION_MS = 2_500
RECORDS = 60
COMMITTED = 5
VALUE = b"x" * 100
TIMEOUT_S = 30
T = TypeVar("T")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    root = tmp_path_factory.mktemp("retention-broker")
    settings = [
        "min.insync.replicas=1",
        "offsets.topic.num.partitions=1",
        "group.initial.rebalance.delay.ms=0",
        "log.retention.check.interval.ms=200",
    ]
    process = start_broker(0, root / "data", config=settings)
    try:
        yield process
    finally:
        assert process.stop() == 0, process.log_path.read_text()[-2000:]


def run(main: Callable[[Runtime], Awaitable[T]]) -> T:
    async def bounded() -> T:
        with trio.fail_after(TIMEOUT_S):
            return await main(real_runtime(0))

    return trio.run(bounded)


def consumer_config(policy: str) -> Config:
    return Config.parse([f"auto.offset.reset={policy}", "fetch.max.wait.ms=100"])


async def _setup(runtime: Runtime, bootstrap: str, topic: str) -> TopicPartition:
    configs = {"segment.bytes": "1024", "retention.ms": str(RETENTION_MS)}
    await create_topics(runtime, bootstrap, [(topic, 1, 1, configs)])
    await wait_for_leaders(runtime, bootstrap, [topic])
    async with Producer(runtime, bootstrap, Config.parse(["linger.ms=0"])) as producer:
        for _ in range(RECORDS):
            # One record per batch, so the 1 KiB segments roll every few records.
            await (await producer.send(topic, VALUE, partition=0)).wait()
    tp = TopicPartition(topic, 0)
    for group in ("slow-latest", "slow-earliest", "slow-none"):
        async with Consumer(runtime, bootstrap, consumer_config("none"), group_id=group) as c:
            c.assign([tp])
            await c.commit({tp: COMMITTED})
    return tp


async def _wait_for_retention(runtime: Runtime, bootstrap: str, tp: TopicPartition) -> int:
    async with Consumer(runtime, bootstrap, consumer_config("none")) as consumer:
        while True:
            start = (await consumer.beginning_offsets([tp]))[tp]
            if start > COMMITTED:
                return start
            await trio.sleep(0.2)


def lag_report(bootstrap: str, *extra: str) -> tuple[int, dict]:
    return _captured(["--bootstrap", bootstrap, "--json", *extra])


def _captured(argv: list[str]) -> tuple[int, dict]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = lag.main(argv)
    return code, json.loads(out.getvalue())


def test_a_group_behind_retention_goes_critical_and_each_policy_resets_as_documented(
    broker: BrokerProcess,
) -> None:
    bootstrap = broker.bootstrap
    tp = run(lambda runtime: _setup(runtime, bootstrap, "retained"))

    code, report = lag_report(bootstrap, "--group", "slow-latest", "--retention-ms", "600000")
    assert code == lag.EXIT_OK and report["status"] == "OK"
    (row,) = report["partitions"]
    assert (row["committed"], row["log_end"], row["lag"], row["log_start"]) == (5, 60, 55, 0)
    assert 0 < row["time_left_ms"] <= 600_000

    start = run(lambda runtime: _wait_for_retention(runtime, bootstrap, tp))
    code, report = lag_report(bootstrap, "--group", "slow-latest")
    assert code == lag.EXIT_CRITICAL and report["status"] == "CRITICAL"
    (row,) = report["partitions"]
    assert row["log_start"] == start > row["committed"] == COMMITTED
    assert row["retention_ms"] == RETENTION_MS, "the topic's retention.ms, from DescribeConfigs"

    code, everyone = lag_report(bootstrap)
    assert code == lag.EXIT_CRITICAL
    assert {r["group"] for r in everyone["partitions"]} >= {
        "slow-latest",
        "slow-earliest",
        "slow-none",
    }

    async def consume(runtime: Runtime, policy: str) -> tuple[Consumer, list[int]]:
        async with Consumer(runtime, bootstrap, consumer_config(policy)) as consumer:
            consumer.subscribe([tp.topic], f"slow-{policy}")
            offsets: list[int] = []
            while not offsets:
                offsets = [r.offset for r in await consumer.poll(200)]
                if policy == "latest" and consumer.resets:
                    break
        return consumer, offsets

    latest, seen = run(lambda runtime: consume(runtime, "latest"))
    assert seen == []
    (reset,) = latest.resets
    assert (reset.from_offset, reset.to_offset, reset.policy) == (COMMITTED, RECORDS, "latest")
    assert reset.reason == "offset out of range", "the skip is on the record, not silent"

    earliest, seen = run(lambda runtime: consume(runtime, "earliest"))
    (reset,) = earliest.resets
    assert (reset.from_offset, reset.policy) == (COMMITTED, "earliest")
    assert reset.to_offset >= start and seen[0] == reset.to_offset

    with pytest.raises(OffsetOutOfRange):
        run(lambda runtime: consume(runtime, "none"))


async def _produce_dated(
    runtime: Runtime, bootstrap: str, topic: str, configs: dict[str, str], ages_ms: list[int]
) -> None:
    """A topic whose records carry the given ages (CreateTime now minus each), one per batch."""
    await create_topics(runtime, bootstrap, [(topic, 1, 1, configs)])
    await wait_for_leaders(runtime, bootstrap, [topic])
    now_ms = runtime.clock.wall_ms()
    async with Producer(runtime, bootstrap, Config.parse(["linger.ms=0"])) as producer:
        for age_ms in ages_ms:
            delivery = await producer.send(topic, VALUE, partition=0, timestamp_ms=now_ms - age_ms)
            await delivery.wait()


async def _commit(runtime: Runtime, bootstrap: str, group: str, tp: TopicPartition) -> None:
    async with Consumer(runtime, bootstrap, consumer_config("none"), group_id=group) as c:
        c.assign([tp])
        await c.commit({tp: COMMITTED})


def test_without_retention_ms_the_topics_own_retention_warns_and_goes_critical(
    broker: BrokerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    """No --retention-ms: `replog lag` reads each topic's retention.ms from the broker.
    Dated records make it deterministic: the committed record of `half-spent` is 40 s
    into a 60 s window (one active segment, which retention never deletes), and
    `expired` loses its closed segments of 120 s old records to a 30 s retention."""
    bootstrap = broker.bootstrap
    half_spent, expired = TopicPartition("half-spent", 0), TopicPartition("expired", 0)

    async def setup(runtime: Runtime) -> None:
        await _produce_dated(
            runtime, bootstrap, half_spent.topic, {"retention.ms": "60000"}, [40_000] * 10
        )
        await _commit(runtime, bootstrap, "half-spent-group", half_spent)
        expired_configs = {"retention.ms": "30000", "segment.bytes": "1024"}
        await _produce_dated(
            runtime, bootstrap, expired.topic, expired_configs, [120_000] * 20 + [0] * 10
        )
        await _commit(runtime, bootstrap, "expired-group", expired)

    run(setup)
    capsys.readouterr()
    assert lag.main(["--bootstrap", bootstrap, "--group", "half-spent-group"]) == lag.EXIT_WARN
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == [
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
    ]
    group, topic, partition, committed, end, behind, start, age, window, left, used, status = (
        row.split()
    )
    assert (group, topic, partition, committed, end, behind, start, window, status) == (
        "half-spent-group",
        "half-spent",
        "0",
        "5",
        "10",
        "5",
        "0",
        "60000",
        "WARN",
    )
    assert 40_000 <= int(age) < 50_000 and int(left) == 60_000 - int(age)
    assert used == f"{int(age) / 60_000:.2f}"

    code, report = lag_report(bootstrap, "--group", "half-spent-group", "--retention-ms", "600000")
    assert code == lag.EXIT_OK, "--retention-ms still overrides the topic's"
    assert report["partitions"][0]["retention_ms"] == 600_000

    start = run(lambda runtime: _wait_for_retention(runtime, bootstrap, expired))
    code, report = lag_report(bootstrap, "--group", "expired-group")
    assert code == lag.EXIT_CRITICAL
    (row,) = report["partitions"]
    assert row["log_start"] >= start > row["committed"] == COMMITTED
    assert row["retention_ms"] == 30_000, "the topic's window, not the 120 s observed one"


def test_render_table_aligns_columns_and_marks_unknowns() -> None:
    rows = [
        lag.PartitionLag("g", "events", 0, 5, 60, 55, 0, 40_000, 60_000, 20_000, 2 / 3, "WARN"),
        lag.PartitionLag("group-2", "t", 11, 7, 7, 0, 0, 0, None, None, None, "OK"),
    ]
    assert lag.render_table(rows).splitlines() == [
        "GROUP    TOPIC   PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG  LOG-START-OFFSET"
        "  AGE-MS  RETENTION-MS  TIME-LEFT-MS  USED  STATUS",
        "g        events  0          5               60              55   0                "
        " 40000   60000         20000         0.67  WARN",
        "group-2  t       11         7               7               0    0                "
        " 0       -             -             -     OK",
    ]


@pytest.mark.parametrize(
    ("committed", "log_start", "age_at", "window", "status"),
    [
        (10, 0, 1_000, 10_000, "OK"),
        (10, 0, 5_000, 10_000, "WARN"),
        (10, 20, 1_000, 10_000, "CRITICAL"),
        (10, 0, 1_000, None, "OK"),
    ],
)
def test_assess_thresholds(
    committed: int, log_start: int, age_at: int, window: int | None, status: str
) -> None:
    now_ms = 100_000
    age, used_window, left, used, verdict = lag.assess(
        committed, log_start, 50, now_ms - age_at, now_ms - 60_000, now_ms, window
    )
    assert (age, verdict) == (age_at, status)
    if window is not None:
        assert (used_window, left, used) == (window, window - age_at, age_at / window)
    else:
        assert (used_window, left, used) == (None, None, None)


def test_the_observed_window_is_used_once_retention_has_deleted() -> None:
    now_ms = 100_000
    _, window, left, _, _ = lag.assess(30, 20, 50, now_ms - 1_000, now_ms - 8_000, now_ms, None)
    assert (window, left) == (8_000, 7_000)
    caught_up = lag.assess(50, 20, 50, None, now_ms - 8_000, now_ms, None)
    assert caught_up[0] == 0 and caught_up[4] == "OK"


def test_bad_arguments_exit_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    assert lag.main(["--bootstrap", "no-port"]) == lag.EXIT_UNKNOWN
    assert lag.main([]) == lag.EXIT_UNKNOWN
    assert lag.main(["--bootstrap", "127.0.0.1:1", "--retention-ms", "0"]) == lag.EXIT_UNKNOWN
    assert "replog lag:" in capsys.readouterr().err
