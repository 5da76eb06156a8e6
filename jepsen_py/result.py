"""The verdict every checker returns: plain data a CI gate and a report can both read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Validity = bool | Literal["unknown"]


@dataclass
class Result:
    """`valid` is True, False, or "unknown" when a limit stopped the check before a verdict.

    `anomalies` maps an anomaly name to the cases found (each a JSON-ready dict naming the
    ops involved); `stats` holds counts and timings.
    """

    valid: Validity
    anomalies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"valid": self.valid, "anomalies": self.anomalies, "stats": self.stats}


def combine(results: dict[str, Result]) -> Result:
    """One verdict over several checkers: invalid beats unknown beats valid."""
    verdicts = [r.valid for r in results.values()]
    if False in verdicts:
        valid: Validity = False
    elif "unknown" in verdicts:
        valid = "unknown"
    else:
        valid = True
    anomalies = {
        f"{name}/{kind}": cases
        for name, result in results.items()
        for kind, cases in result.anomalies.items()
    }
    stats = {name: {"valid": r.valid, **r.stats} for name, r in results.items()}
    return Result(valid, anomalies, stats)
