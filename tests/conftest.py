"""Hypothesis profiles for the whole suite, and the opt-in `slow` marker.

- `ci` (the default): derandomized, so every run tries the same examples, no deadline
  (simulated runs vary in wall time, never in outcome), the failing example's blob
  printed for `@reproduce_failure`. Example counts stay Hypothesis' defaults unless a
  test sets its own; tests/stateful sizes itself by profile (`SIZES` there).
- `campaign`: random, and tests/stateful runs many more, longer examples: for long bug
  hunts, `pytest tests/stateful --hypothesis-profile=campaign` or
  `REPLOG_HYPOTHESIS_PROFILE=campaign pytest tests/stateful`.
- `dev`: random (a fresh seed per run) at CI sizes.

Tests marked `slow` run only when selected: `pytest -m slow`.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile(
    "ci", derandomize=True, deadline=None, print_blob=True, suppress_health_check=QUIET
)
settings.register_profile(
    "campaign", derandomize=False, deadline=None, print_blob=True, suppress_health_check=QUIET
)
settings.register_profile("dev", parent=settings.get_profile("ci"), derandomize=False)
PROFILE_ENV = "REPLOG_HYPOTHESIS_PROFILE"
settings.load_profile(os.environ.get(PROFILE_ENV, "ci"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
