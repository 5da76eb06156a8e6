"""The fault classes `replog check` explores, one bounded scope each.

One scope with every fault at once has too many states to exhaust in a minute, so
the check runs a suite of focused scopes, breadth-first each (as one runs TLC on
several model configurations). Every scope covers normal operation (produce, fetch,
metadata delivery, preferred-leader elections) plus one class of fault.
"""

from __future__ import annotations

from dataclasses import replace

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

SCOPES: dict[str, tuple[Scope, str]] = {
    "elect": (_QUIET, "leader elections while records are in flight"),
    "zombie": (
        replace(_QUIET, max_elections=1, network_faults=("controller",), max_network_changes=1),
        "a broker cut off from the controller keeps acting as leader",
    ),
    "clock": (
        replace(_QUIET, max_writes=1, max_clock_advances=1),
        "time passes: lagging followers leave the ISR",
    ),
    "crash": (
        replace(
            _QUIET,
            max_writes=1,
            max_crashes=1,
            max_data_loss_crashes=1,
            crash_kinds=("kill", "disk"),
        ),
        "one broker crashes (kill -9, or losing its disk) and restarts",
    ),
}
DEFAULT_SUITE = ("elect", "zombie", "clock", "crash")


def resolve(names: list[str] | None, **overrides: object) -> list[tuple[str, Scope]]:
    """The named scopes (the default suite when none), each with `overrides` applied
    (None values are ignored). Unknown names raise ValueError."""
    chosen = names or list(DEFAULT_SUITE)
    unknown = [n for n in chosen if n not in SCOPES]
    if unknown:
        raise ValueError(f"unknown scope {unknown[0]!r}; known: {', '.join(SCOPES)}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    return [(name, replace(SCOPES[name][0], **changes)) for name in chosen]
