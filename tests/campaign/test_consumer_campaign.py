"""`replog campaign --workload consumer` end to end on the simulator: members that crash
without leaving the group are replaced after session.timeout.ms, the group rebalances,
and the run is judged by the consumer, queue and durability checkers, with the
rebalances drawn in the report."""

from __future__ import annotations

import json

import pytest

from jepsen_py.campaign import runner, sim

SEED = 8
# Seeds whose first members crashed before their first commit (a successor with no
# committed offset under auto.offset.reset=latest skipped what was produced meanwhile,
# until the campaign started the group at offset 0).
CRASH_SEEDS = (7, 8, 9)
TIME_LIMIT_S = 10.0
# A crashed member is expired after 2 s; a few crashes in the run.
CONFIG = (
    "replog.consumer.crash.percent=5",
    "replog.consumer.processing.ms=5",
    "session.timeout.ms=2000",
    "heartbeat.interval.ms=400",
    "group.min.session.timeout.ms=1000",
)


def _campaign(tmp_path, *extra: str, seed: int = SEED) -> runner.Campaign:
    spec = runner.CampaignSpec(
        workload="consumer",
        nemeses=(),
        time_limit_s=TIME_LIMIT_S,
        rate_per_s=60.0,
        concurrency=4,
        partitions=2,
        seed=seed,
        out=tmp_path,
        sim=True,
        config=(*CONFIG, *extra),
    )
    return sim.run(spec, show_progress=False)


@pytest.mark.parametrize("seed", CRASH_SEEDS)
def test_crashing_members_rebalance_and_the_run_is_judged(tmp_path, seed):
    campaign = _campaign(tmp_path, seed=seed)
    results = campaign.results
    why = f"seed {seed}, run {campaign.run_dir}: {json.dumps(results['anomalies'])[:2000]}"
    assert campaign.exit_code == 0, why
    assert {"consumer", "queue", "durability", "perf"} <= set(results["checkers"]), why
    stats = results["checkers"]["consumer"]["stats"]
    assert stats["crashes"] >= 1 and stats["rebalances"]["count"] >= 1, stats
    # A member that crashed after processing, before committing: its successor redoes it.
    assert stats["duplicates_allowed"] > 0 and stats["consumes"] > 20
    assert results["checkers"]["queue"]["stats"]["final_reads_complete"] is True
    report = (campaign.run_dir / "report.html").read_text()
    assert "<h2>Rebalances</h2>" in report and "group generation" in report


@pytest.mark.slow
def test_at_most_once_members_lose_what_they_committed_and_never_process_twice(tmp_path):
    campaign = _campaign(tmp_path, "replog.consumer.commit=before-processing")
    stats = campaign.results["checkers"]["consumer"]["stats"]
    assert campaign.exit_code == 0, f"seed {SEED}: {campaign.results['anomalies']}"
    # Valid means no duplicate-processing: at-most-once never processes twice.
    assert stats["crashes"] >= 1 and stats["lost_at_most_once"] > 0, stats


@pytest.mark.slow
def test_real_processes_with_broker_kills_and_crashing_members(tmp_path):
    spec = runner.CampaignSpec(
        workload="consumer",
        nemeses=("kill",),
        time_limit_s=30.0,
        rate_per_s=60.0,
        concurrency=4,
        partitions=2,
        seed=SEED,
        out=tmp_path,
        config=CONFIG,
    )
    campaign = runner.run(spec, show_progress=False)
    results = campaign.results
    assert campaign.exit_code == 0, f"seed {SEED}: {json.dumps(results['anomalies'])[:2000]}"
    stats = results["checkers"]["consumer"]["stats"]
    assert stats["consumes"] > 20 and stats["rebalances"]["count"] >= 1, stats
    assert {"queue", "durability"} <= set(results["checkers"])


def test_the_motivating_failure_through_replog_campaign_sim(tmp_path):
    spec = runner.CampaignSpec(
        workload="consumer",
        nemeses=(),
        time_limit_s=8.0,
        rate_per_s=100.0,
        concurrency=2,
        partitions=2,
        seed=1,
        out=tmp_path,
        sim=True,
        config=(
            "retention.ms=1000",
            "segment.ms=200",
            "segment.bytes=4096",
            "log.retention.check.interval.ms=100",
            "max.poll.records=5",
            "replog.consumer.processing.ms=40",
            "replog.consumer.crash.percent=0",
        ),
    )
    campaign = sim.run(spec, show_progress=False)
    results = campaign.results
    assert campaign.exit_code == 1, results["anomalies"]
    skips = results["anomalies"]["consumer/skipped-by-reset"]
    assert skips["count"] >= 1
    for skip in skips["examples"]:
        assert skip["reset"]["policy"] == "latest" and skip["records"] > 0, skip
    befores = [skip["lag_before"] or {} for skip in skips["examples"]]
    assert any(before.get("status") == "CRITICAL" for before in befores), skips
    # Retention deleted records on purpose: final reads cannot judge durability here.
    assert "queue" not in results["checkers"] and "durability" not in results["checkers"]
    assert "skipped-by-reset" in (campaign.run_dir / "report.html").read_text()
