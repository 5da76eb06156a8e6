"""The explorer over the consumer-group scopes (lag, commits, rebalance) finds what
each setting costs and exhausts the safe counterpart. One broker and
replication.factor=1 keep every search to a fraction of a second: replication is
covered by the other scopes, and multiplies these spaces by about two hundred."""

import pytest

from model.config import Config
from model.machine import ReplicationModel
from model.state import FAILED
from specs import explorer
from specs.check import run_check
from specs.cli import check_main
from specs.invariants import GROUP_INVARIANTS, select
from specs.matrix import COLUMNS
from specs.scopes import DEFAULT_SUITE, GROUP_SCOPES, SCOPES, resolve

ONE_BROKER = ["replication.factor=1", "min.insync.replicas=1"]
LAGGY = ["retention.ms=60000", "segment.bytes=100"]
LIMITS = explorer.Limits(depth_max=40, time_limit_s=120)
# AtMostOnce is not promised here: these consumers commit after processing.
AT_LEAST_ONCE = ["NoSilentSkip", "AtLeastOnce", "OnePartitionOneOwner"]


def check(scope: str, settings: list[str], invariants: list[str]):
    config = Config.parse([*ONE_BROKER, *settings])
    return run_check(config, resolve([scope], brokers=1), invariants, LIMITS, jobs=1)


@pytest.mark.parametrize(("reset", "skipped"), [("latest", "[0, 2)"), ("earliest", "[0, 1)")])
def test_a_consumer_behind_retention_skips_and_the_check_names_the_range(reset, skipped):
    result = check("lag", [*LAGGY, f"auto.offset.reset={reset}"], ["NoSilentSkip"])
    violation = result.violation
    assert violation is not None and violation.invariant == "NoSilentSkip"
    assert violation.message.startswith(f"p0: offsets {skipped} were skipped: ")
    assert f"auto.offset.reset={reset}" in violation.message
    kinds = [action.kind for action, _ in violation.trace]
    assert "retention" in kinds and kinds[-1] == "poll"


def test_none_fails_loudly_instead_of_skipping():
    config = Config.parse([*ONE_BROKER, *LAGGY, "auto.offset.reset=none"])
    result = run_check(config, resolve(["lag"], brokers=1), AT_LEAST_ONCE, LIMITS, jobs=1)
    assert result.violation is None and result.exhausted
    # Not vacuous: the consumer does fall off the log and stops with the error.
    model = ReplicationModel(config, resolve(["lag"], brokers=1)[0][1])
    failed = _reachable(model, lambda s: s.consumption.consumers[0].phase == FAILED)
    assert failed is not None and failed.consumption.resets[-1].to_offset == -1
    assert failed.consumption.logs[0].log_start > 0


def _reachable(model, predicate):
    seen, frontier = {model.initial_state()}, [model.initial_state()]
    while frontier:
        state = frontier.pop()
        if predicate(state):
            return state
        for action in model.enabled_actions(state):
            after = model.step(state, action)
            if after not in seen:
                seen.add(after)
                frontier.append(after)
    return None


def test_retention_sized_above_the_lag_never_skips():
    result = check("lag", ["retention.ms=600000", "segment.bytes=100"], AT_LEAST_ONCE)
    assert result.violation is None and result.exhausted


def test_at_most_once_loses_records_at_least_once_does_not():
    lost = check("commits", ["replog.consumer.commit=before-processing"], ["AtLeastOnce"])
    assert lost.violation is not None
    kinds = [action.kind for action, _ in lost.violation.trace]
    assert kinds[-2:] == ["commit", "consumer_crash"]
    kept = check("commits", ["replog.consumer.commit=after-processing"], ["AtLeastOnce"])
    assert kept.violation is None and kept.exhausted


def test_at_least_once_processes_twice_at_most_once_does_not():
    twice = check("commits", ["replog.consumer.commit=after-processing"], ["AtMostOnce"])
    assert twice.violation is not None
    assert twice.violation.message == "p0: offset 0 was processed twice"
    once = check("commits", ["replog.consumer.commit=before-processing"], ["AtMostOnce"])
    assert once.violation is None and once.exhausted


@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
def test_rebalances_keep_one_owner_per_partition_per_generation(strategy):
    result = check(
        "rebalance",
        [f"partition.assignment.strategy={strategy}"],
        ["OnePartitionOneOwner", "NoSilentSkip", "AtLeastOnce"],
    )
    assert result.violation is None and result.exhausted
    assert result.runs[0].outcome.stats.distinct > 1000


def test_group_scopes_are_opt_in_and_the_matrix_leaves_their_invariants_out():
    assert not set(GROUP_SCOPES) & set(DEFAULT_SUITE)
    assert all(SCOPES[name].scope.groups for name in GROUP_SCOPES)
    assert not any(SCOPES[name].scope.groups for name in DEFAULT_SUITE)
    assert not set(GROUP_INVARIANTS) & set(COLUMNS)


def test_without_a_group_the_group_invariants_hold_and_states_carry_none():
    model = ReplicationModel(Config(), SCOPES["elect"].scope)
    state = model.initial_state()
    assert state.consumption is None
    for inv in select(list(GROUP_INVARIANTS)):
        assert inv.violated(None, state) is None


def test_replog_check_prints_the_skipped_range(tmp_path, capsys):
    argv = ["--scope", "lag", "--brokers", "1", "--invariant", "NoSilentSkip", "--out"]
    argv += [str(tmp_path), "--jobs", "1"]
    for setting in [*ONE_BROKER, *LAGGY]:
        argv += ["--config", setting]
    assert check_main(argv) == 1
    out = capsys.readouterr().out
    assert "NoSilentSkip violated: p0: offsets [0, 2) were skipped" in out
    assert (tmp_path / "trace.txt").exists()


def test_replog_check_refuses_the_smt_engine_on_a_group_scope(capsys):
    argv = [
        "--scope",
        "lag",
        "--engine",
        "smt",
        "--config",
        "replog.consumer.commit=after-processing",
    ]
    assert check_main(argv) == 2
    assert "consumer groups or retention" in capsys.readouterr().err
