"""Random action sequences under the default (safe) configuration keep the promises."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.config import Config
from model.machine import ReplicationModel, Scope
from specs.invariants import (
    high_watermark_monotonic,
    leader_completeness,
    log_matching,
    no_acknowledged_write_lost,
    no_divergence,
    one_leader_per_epoch,
)

SAFE_SCOPE = Scope(
    max_writes=4,
    max_retries=2,
    max_crashes=3,
    max_data_loss_crashes=1,
    max_elections=4,
    max_network_changes=2,
    max_clock_advances=3,
)
MODEL = ReplicationModel(Config(), SAFE_SCOPE)
STATE_CHECKS = (
    no_acknowledged_write_lost,
    log_matching,
    one_leader_per_epoch,
    leader_completeness,
    no_divergence,
)


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(st.integers(min_value=0, max_value=2**16), min_size=1, max_size=80))
def test_safe_configuration_keeps_its_promises(choices):
    state = MODEL.initial_state()
    for step, choice in enumerate(choices):
        actions = MODEL.enabled_actions(state)
        if not actions:
            break
        action = actions[choice % len(actions)]
        after = MODEL.step(state, action)
        context = f"step {step}: {action.describe()}"
        assert high_watermark_monotonic(state, after) is None, context
        for check in STATE_CHECKS:
            assert check(after) is None, f"{context}: {check(after)}"
        state = after
