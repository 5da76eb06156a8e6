"""The motivating failure against a real broker process: three groups at once, each a
slow member on its own topic. retention.ms short against the lag with
auto.offset.reset=latest skips a range (the checker names the reset; the lag monitor
had said CRITICAL before it); with auto.offset.reset=none the member fails loudly and
skips nothing; with retention above the lag nothing is skipped."""

from __future__ import annotations

from contextlib import suppress

import consumer_support as support
import pytest
import trio

from impl.client.errors import ClientError
from impl.client.metadata import ClusterSession
from impl.cluster.launcher import Cluster, ClusterSpec
from impl.runtime.runtime import real_runtime
from jepsen_py import consumer
from jepsen_py.history import Op

DURATION_S = 8.0
SHORT_RETENTION_MS = 1_000
LONG_RETENTION_MS = 600_000
SETUP_TIMEOUT_S = 30.0
CONFIG = support.client_config()
SCENARIOS = {
    "latest-short": ("latest", SHORT_RETENTION_MS),
    "none-short": ("none", SHORT_RETENTION_MS),
    "latest-long": ("latest", LONG_RETENTION_MS),
}


async def _registered(bootstrap: str) -> None:
    runtime = real_runtime()
    with trio.fail_after(SETUP_TIMEOUT_S):
        while True:
            with suppress(ClientError, OSError):
                async with ClusterSession(runtime, bootstrap, CONFIG, "replog-test") as s:
                    await s.cluster.refresh()
                    if s.cluster.brokers:
                        return
            await trio.sleep(0.2)


async def _scenario(bootstrap: str, name: str, histories: dict[str, list[Op]]) -> None:
    reset, retention_ms = SCENARIOS[name]
    runtime = real_runtime()
    config = support.client_config(f"auto.offset.reset={reset}")
    with trio.fail_after(SETUP_TIMEOUT_S):
        await support.prepare(runtime, bootstrap, config, retention_ms, name, name)
    histories[name] = await support.run_consumers(
        runtime, bootstrap, config, DURATION_S, topic=name, group=name
    )


async def _all(bootstrap: str) -> dict[str, list[Op]]:
    await _registered(bootstrap)
    histories: dict[str, list[Op]] = {}
    async with trio.open_nursery() as nursery:
        for name in SCENARIOS:
            nursery.start_soon(_scenario, bootstrap, name, histories)
    return histories


@pytest.fixture(scope="module")
def histories(tmp_path_factory) -> dict[str, list[Op]]:
    root = tmp_path_factory.mktemp("consumer-cluster")
    spec = ClusterSpec(root, brokers=1, quorum_size=1, config=support.BROKER_CONFIG)
    cluster = Cluster.planned(spec).start()
    try:
        return trio.run(_all, cluster.bootstrap)
    finally:
        cluster.stop()


def test_latest_skips_the_range_retention_took_after_lag_went_critical(histories):
    result = consumer.check(histories["latest-short"])
    assert result.valid is False
    skips = result.anomalies["skipped-by-reset"]
    assert skips and "silent-skip" not in result.anomalies, result.anomalies
    for skip in skips:
        reset = skip["reset"]
        assert reset["policy"] == "latest" and reset["reason"] == "offset out of range"
        assert reset["from"] <= skip["from_offset"] <= skip["to_offset"] < reset["to"]
    # The lag monitor's last word on the partition before a skip was CRITICAL (lag is
    # sampled every 0.5 s, and the group skips again each time it falls behind).
    befores = [skip["lag_before"] for skip in skips]
    assert any(b is not None and b["status"] == "CRITICAL" for b in befores), befores


def test_none_fails_loudly_and_skips_nothing(histories):
    history = histories["none-short"]
    result = consumer.check(history)
    failed = support.failed_consumes(history)
    assert failed and all("OffsetOutOfRange" in op.error for op in failed)
    assert result.valid is True and not result.stats["resets"], result.anomalies


def test_retention_above_the_lag_skips_nothing(histories):
    history = histories["latest-long"]
    result = consumer.check(history)
    assert result.valid is True, result.anomalies
    assert not result.stats["resets"] and not support.failed_consumes(history)
    assert result.stats["unprocessed"] > 0, "the member was behind: the lag was real"
