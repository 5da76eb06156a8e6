"""What a campaign must have tested before its checkers' verdict counts.

A checker that finds nothing wrong in a history that never exercised what was asked
proves nothing, so a run earns "valid" only if
- every requested nemesis (kind, or kind:variant) fired at least once: a start op of
  it ended ok and did something (killed, paused or skewed a node, cut a link);
- every op kind of the workload had an ok completion during the main phase (before
  the time limit: the final reads do not count);
- the final reads completed.
Otherwise the verdict is Jepsen's `unknown` (exit 2) and `gaps` says what is missing;
anomalies found are still real, so an invalid run stays invalid.
"""

from __future__ import annotations

from typing import Any

from jepsen_py.campaign import workloads
from jepsen_py.history import Op, pair_positions

FAULT_STARTS = {
    "kill": ("kill",),
    "crash": ("crash",),
    "pause": ("pause",),
    "partition": ("partition",),
    "clock": ("clock-bump", "clock-strobe"),
}
KIND_OF = {f: kind for kind, starts in FAULT_STARTS.items() for f in starts}


def gaps(spec: dict[str, Any], history: list[Op]) -> dict[str, Any]:
    """What the run did not test, by what was asked: nemeses that never fired, op kinds
    with no ok completion, final reads not completed. Empty when nothing is missing."""
    missing: dict[str, Any] = {}
    silent = [name for name in spec["nemeses"] if not _fired(name, history)]
    if silent:
        missing["nemeses_not_fired"] = silent
    main_phase_ns = spec["time_limit_s"] * 1e9
    succeeded = {
        history[call].f
        for call, ret in pair_positions(history)
        if ret is not None
        and history[ret].type == "ok"
        and history[call].is_client
        and history[call].time < main_phase_ns
    }
    idle = [f for f in workloads.OP_KINDS[spec["workload"]] if f not in succeeded]
    if idle:
        missing["ops_without_ok"] = idle
    if not workloads.final_reads_done(spec["workload"], history):
        missing["final_reads"] = "not completed"
    return missing


def describe(missing: dict[str, Any]) -> str:
    """One line: what is missing, for the terminal and the report."""
    parts = []
    if "nemeses_not_fired" in missing:
        parts.append(f"nemesis never fired: {', '.join(missing['nemeses_not_fired'])}")
    if "ops_without_ok" in missing:
        parts.append(f"no ok {'/'.join(missing['ops_without_ok'])} op")
    if "final_reads" in missing:
        parts.append(f"final reads {missing['final_reads']}")
    return "; ".join(parts)


def fired(history: list[Op]) -> dict[str, int]:
    """How many faults of each kind fired (a start op that ended ok and did something)."""
    counts = dict.fromkeys(FAULT_STARTS, 0)
    for op in _fault_starts(history):
        counts[KIND_OF[op.f]] += 1
    return {kind: count for kind, count in counts.items() if count}


def _fired(name: str, history: list[Op]) -> bool:
    kind, _, variant = name.partition(":")
    return any(
        KIND_OF[op.f] == kind
        and (not variant or variant in (op.value.get("target"), op.value.get("kind")))
        for op in _fault_starts(history)
    )


def _fault_starts(history: list[Op]) -> list[Op]:
    return [
        op
        for op in history
        if op.process == "nemesis"
        and op.type == "ok"
        and op.f in KIND_OF
        and isinstance(op.value, dict)
        and _did_something(op.value)
    ]


def _did_something(value: dict[str, Any]) -> bool:
    """A kill/pause/strobe that found no node up, a partition that cut no link or a bump
    that skewed no clock did not fault anything."""
    return any(value.get(key) for key in ("nodes", "cut", "skew_ms"))
