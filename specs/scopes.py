"""The fault classes `replog check` explores, one bounded scope each.

One scope with every fault at once has too many states to search in a minute, so the
check runs a suite of focused scopes, breadth-first each (as one runs TLC on several
model configurations). Every scope covers normal operation (produce, fetch, metadata
delivery, preferred-leader elections) plus its class of faults. A scope whose space is
too large to exhaust has a depth bound: every trace of at most that many steps is
covered, and the check says so.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from model.machine import Scope

_QUIET = Scope(
    brokers=3,
    partitions=1,
    max_writes=2,
    max_retries=0,
    max_crashes=0,
    max_data_loss_crashes=0,
    crash_kinds=("kill",),
    max_elections=2,
    max_network_changes=0,
    network_faults=(),
    max_clock_advances=0,
    consumers=False,
)


@dataclass(frozen=True)
class Preset:
    scope: Scope
    depth_max: int
    about: str


SCOPES: dict[str, Preset] = {
    "elect": Preset(_QUIET, 40, "leader elections while records are in flight"),
    "clock": Preset(
        replace(_QUIET, max_writes=1, max_clock_advances=1),
        40,
        "time passes: lagging followers leave the ISR",
    ),
    "zombie": Preset(
        replace(
            _QUIET,
            max_writes=1,
            max_elections=1,
            network_faults=("controller",),
            max_network_changes=1,
        ),
        40,
        "a broker cut off from the controller keeps acting as leader",
    ),
    "disk": Preset(
        replace(
            _QUIET,
            max_elections=1,
            max_crashes=1,
            max_data_loss_crashes=1,
            crash_kinds=("disk",),
            max_clock_advances=1,
        ),
        12,
        "a broker restarts with an empty disk after its followers fell behind",
    ),
    "outage": Preset(
        replace(
            _QUIET,
            max_writes=1,
            max_elections=1,
            max_crashes=1,
            network_faults=("controller",),
            max_network_changes=1,
            max_clock_advances=1,
        ),
        11,
        "two ISR members become unavailable (a crash and a lost session) after one lagged",
    ),
    "failover": Preset(
        replace(_QUIET, max_writes=1, max_elections=1, max_crashes=2, max_clock_advances=1),
        11,
        "two ISR members crash after a follower lagged (the safety matrix's cheaper outage)",
    ),
    "offline": Preset(
        replace(_QUIET, max_writes=1, max_elections=0, max_crashes=1, max_clock_advances=1),
        40,
        "the followers lag out of the ISR, then the leader crashes (for --liveness: can "
        "the live brokers still get a leader?)",
    ),
    "lag": Preset(
        replace(
            _QUIET,
            max_elections=0,
            group_consumers=1,
            max_polls=2,
            max_time_advances=2,
            clock_step_ms=40_000,
            retention=True,
            committed_at_start=True,
        ),
        40,
        "a consumer group's consumer falls behind retention (shows what auto.offset.reset "
        "does with e.g. --config retention.ms=60000 --config segment.bytes=100)",
    ),
    "commits": Preset(
        replace(
            _QUIET,
            max_writes=1,
            max_elections=0,
            group_consumers=1,
            max_polls=3,
            max_consumer_crashes=1,
            max_time_advances=1,
            clock_step_ms=45_000,
        ),
        40,
        "a group's consumer crashes between poll, processing and commit "
        "(AtLeastOnce / AtMostOnce by replog.consumer.commit)",
    ),
    "rebalance": Preset(
        replace(
            _QUIET,
            partitions=2,
            max_writes=0,
            max_elections=0,
            group_consumers=2,
            max_polls=1,
            max_time_advances=1,
            clock_step_ms=45_000,
        ),
        40,
        "two consumers of two partitions join, rebalance and miss heartbeats under "
        "partition.assignment.strategy (OnePartitionOneOwner)",
    ),
}
# Consumer groups and retention (opt-in with --scope: the default suite's scopes have no
# consumer group, and these need settings such as retention.ms to show anything).
GROUP_SCOPES = ("lag", "commits", "rebalance")
# The cheap scopes first: they find most violations within seconds, and a violation
# found early lets the expensive scopes stop at its length.
DEFAULT_SUITE = ("elect", "outage", "clock", "disk", "zombie")
# `--liveness` needs a scope whose whole reachable space fits in a graph.
LIVENESS_SUITE = ("offline",)


def resolve(names: list[str] | None, **overrides: object) -> list[tuple[str, Scope, int]]:
    """(name, scope, depth bound) for the named scopes (the default suite when none),
    each with `overrides` applied (None values are ignored). Unknown names raise."""
    chosen = names or list(DEFAULT_SUITE)
    unknown = [n for n in chosen if n not in SCOPES]
    if unknown:
        raise ValueError(f"unknown scope {unknown[0]!r}; known: {', '.join(SCOPES)}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    return [(n, replace(SCOPES[n].scope, **changes), SCOPES[n].depth_max) for n in chosen]
