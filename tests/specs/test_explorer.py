from dataclasses import replace

from model.config import Config
from model.machine import ReplicationModel
from specs.explorer import Limits, bfs, random_walks
from specs.invariants import INVARIANTS, select
from specs.scopes import SCOPES

ELECT = SCOPES["elect"].scope
SMALL = replace(ELECT, max_writes=1)


def model(*settings, scope=SMALL):
    return ReplicationModel(Config.parse(list(settings)), scope)


def test_defaults_hold_and_the_small_space_is_exhausted():
    outcome = bfs(model(), select(None), Limits())
    assert outcome.violation is None
    assert outcome.stats.exhausted and outcome.stats.distinct > 1000


def test_acks_1_counterexample_is_the_three_step_story():
    outcome = bfs(model("acks=1"), select(None), Limits())
    violation = outcome.violation
    assert violation.invariant == "NoAcknowledgedWriteLost"
    assert [a.kind for a, _ in violation.trace] == ["produce", "elect", "deliver"]


def test_high_watermark_truncation_is_found_and_replays_in_the_model():
    m = model("replog.truncation=high-watermark")
    violation = bfs(m, select(None), Limits()).violation
    assert violation.invariant == "LeaderCompleteness"
    state = violation.initial
    for action, after in violation.trace:
        assert action in m.enabled_actions(state)
        state = m.step(state, action)
        assert state == after
    assert INVARIANTS["LeaderCompleteness"].check(state) is not None


def test_shorter_bound_finds_nothing_and_says_so():
    outcome = bfs(model("replog.truncation=high-watermark"), select(None), Limits(depth_max=5))
    assert outcome.violation is None
    assert not outcome.stats.exhausted and outcome.stats.stopped_by == "depth"


def test_collect_mode_records_the_shortest_per_invariant():
    m = model("replog.truncation=high-watermark", scope=ELECT)
    outcome = bfs(m, select(None), Limits(depth_max=12), collect=True)
    lengths = {name: len(v.trace) for name, v in outcome.violations.items()}
    assert lengths["LeaderCompleteness"] == 11
    first = bfs(m, select(["LeaderCompleteness"]), Limits(depth_max=12)).violation
    assert len(first.trace) == lengths["LeaderCompleteness"]


def test_random_walks_are_reproducible_from_the_seed():
    m = model("acks=1")
    one = random_walks(m, select(None), Limits(depth_max=30), seed=5, walks_max=200)
    two = random_walks(m, select(None), Limits(depth_max=30), seed=5, walks_max=200)
    assert one.violation is not None
    assert [a for a, _ in one.violation.trace] == [a for a, _ in two.violation.trace]


def test_a_consumer_sees_an_offset_change_value_under_high_watermark_truncation():
    m = model("replog.truncation=high-watermark", scope=replace(ELECT, consumers=True))
    violation = bfs(m, select(["ConsistentRead"]), Limits()).violation
    assert violation.invariant == "ConsistentRead"
    kinds = [a.kind for a, _ in violation.trace]
    assert kinds.count("consume") >= 2
    assert (
        bfs(
            model(scope=replace(ELECT, consumers=True)),
            select(["ConsistentRead"]),
            Limits(depth_max=14),
        ).violation
        is None
    )
