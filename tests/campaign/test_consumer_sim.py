"""The motivating failure on the simulator: a slow member, retention.ms short against its
lag. auto.offset.reset=latest skips a range the checker reports with the reset that
chose it, after `replog lag` had gone CRITICAL; auto.offset.reset=none fails loudly and
skips nothing; retention sized above the lag skips nothing."""

from __future__ import annotations

import consumer_support as support
import pytest
import trio

from impl.sim.cluster import SimCluster
from impl.sim.guard import run
from jepsen_py import consumer
from jepsen_py.history import Op

SEED = 5
DURATION_S = 8.0
SHORT_RETENTION_MS = 1_000
LONG_RETENTION_MS = 600_000


async def _scenario(reset: str, retention_ms: int) -> list[Op]:
    async with trio.open_nursery() as nursery:
        cluster = SimCluster(1, seed=SEED, config=support.BROKER_CONFIG, quorum_size=1)
        await cluster.start(nursery)
        await cluster.wait_for_brokers()
        runtime = cluster.runtime()
        config = support.client_config(f"auto.offset.reset={reset}")
        await support.prepare(runtime, cluster.bootstrap, config, retention_ms)
        history = await support.run_consumers(runtime, cluster.bootstrap, config, DURATION_S)
        await cluster.stop()
        return history


def _run(reset: str, retention_ms: int) -> list[Op]:
    return run(lambda: _scenario(reset, retention_ms), seed=SEED)


@pytest.fixture(scope="module")
def latest_short() -> list[Op]:
    return _run("latest", SHORT_RETENTION_MS)


def test_latest_skips_a_range_the_checker_reports_with_its_reset(latest_short):
    result = consumer.check(latest_short)
    print("seed", SEED, result.stats["counts"])
    assert result.valid is False
    skips = result.anomalies["skipped-by-reset"]
    assert skips, result.anomalies
    for skip in skips:
        reset = skip["reset"]
        assert reset["policy"] == "latest" and reset["reason"] == "offset out of range"
        assert reset["from"] <= skip["from_offset"] <= skip["to_offset"] < reset["to"]
        assert skip["records"] > 0
    # Every record in it was acknowledged and never processed, yet no silent skip.
    assert "silent-skip" not in result.anomalies and "lost-processing" not in result.anomalies


def test_lag_had_gone_critical_before_the_skip(latest_short):
    result = consumer.check(latest_short)
    first_skip = min(skip["reset"]["time"] for skip in result.anomalies["skipped-by-reset"])
    critical = [t for t, status in result.stats["lag_statuses"] if status == "CRITICAL"]
    assert critical and min(critical) < first_skip, result.stats["lag_statuses"]
    befores = [skip["lag_before"] for skip in result.anomalies["skipped-by-reset"]]
    assert any(b is not None and b["status"] == "CRITICAL" for b in befores), befores


def test_none_fails_loudly_and_skips_nothing():
    history = _run("none", SHORT_RETENTION_MS)
    result = consumer.check(history)
    failed = support.failed_consumes(history)
    assert failed and all("OffsetOutOfRange" in op.error for op in failed)
    assert result.stats["reset_failures"] and not result.stats["resets"]
    assert result.valid is True, result.anomalies


def test_retention_above_the_lag_skips_nothing():
    history = _run("latest", LONG_RETENTION_MS)
    result = consumer.check(history)
    assert result.valid is True, result.anomalies
    assert not result.stats["resets"] and not support.failed_consumes(history)
    processed = sum(
        len(records)
        for op in history
        if op.f == "consume" and op.type == "ok"
        for records in op.value["processed"].values()
    )
    assert processed > 50 and result.stats["unprocessed"] > 0
