"""The verdict every checker returns: plain data a CI gate and a report can both read.

One `Result` per checker is the only source of its verdict: the terminal (`replog
analyze`, `replog campaign`), results.json, junit.xml and report.html all render it, so
they cannot disagree. Its rule: `anomalies` holds exactly the cases that make it invalid
(`valid is False` if and only if `anomalies` is non-empty); whatever a checker found but
its settings allow goes to `allowed` and never reads as a violation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Validity = bool | Literal["unknown"]

# Exit codes of the CLI convention: 0 valid, 1 violation, 2 no verdict (nothing tested,
# an incomplete run), 3 unknown because a search limit stopped a check.
EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_NO_VERDICT = 2
EXIT_LIMIT = 3
NO_EVIDENCE = "no evidence"
MEASURED = "measured (not a verdict)"


@dataclass
class Result:
    """`valid` is True, False, or "unknown" (no verdict; `reason` says why).

    `anomalies` maps an anomaly name to the cases found that violate the property (each
    a JSON-ready dict naming the ops involved); `allowed` the same for cases found but
    allowed by the checker's settings. `stats` holds counts and timings; `stats["counts"]`,
    when present, the full count per kind (cases are capped). `notes` say what the
    verdict assumed or what a finding means under the recorded configuration.
    `limit_reached` marks an unknown a search limit caused (a longer run may decide).
    `judges` is False for a checker that only measures (perf): it never decides the
    verdict, so a history only it could read has none.
    """

    valid: Validity
    anomalies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    allowed: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    reason: str | None = None
    notes: list[str] = field(default_factory=list)
    limit_reached: bool = False
    judges: bool = True

    def __post_init__(self) -> None:
        self.anomalies = {kind: cases for kind, cases in self.anomalies.items() if cases}
        self.allowed = {kind: cases for kind, cases in self.allowed.items() if cases}
        if (self.valid is False) != bool(self.anomalies):
            raise ValueError(
                f"a result is invalid exactly when it has anomalies: valid={self.valid!r}, "
                f"anomalies={sorted(self.anomalies)}"
            )
        if self.valid == "unknown" and not self.reason:
            raise ValueError("an unknown result must say why (reason)")

    def count(self, kind: str) -> int:
        """How many cases of `kind` were found (the cases kept may be fewer)."""
        cases = self.anomalies.get(kind) or self.allowed.get(kind) or []
        return int(self.stats.get("counts", {}).get(kind, len(cases)))

    def summary(self) -> dict[str, Any]:
        """The verdict without the cases: what a checker table shows."""
        return {
            "valid": self.valid,
            "judges": self.judges,
            "verdict": verdict_text(self),
            "reason": self.reason,
            "notes": self.notes,
            "anomaly_counts": {kind: self.count(kind) for kind in self.anomalies},
            "allowed_counts": {kind: self.count(kind) for kind in self.allowed},
            "stats": self.stats,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.summary(), "anomalies": self.anomalies, "allowed": self.allowed}


def no_evidence(
    what: str, stats: dict[str, Any] | None = None, notes: list[str] | None = None
) -> Result:
    """The result of a checker whose history holds nothing it could judge."""
    reason = f"{NO_EVIDENCE} ({what})"
    return Result("unknown", stats=stats or {}, reason=reason, notes=notes or [])


def verdict_text(result: Result) -> str:
    """One line: `valid`, `INVALID (...)`, `unknown: <reason>`, or `measured (not a
    verdict)` for a checker that does not judge."""
    if not result.judges:
        return MEASURED
    if result.valid is True:
        return "valid"
    if result.valid is False:
        found = ", ".join(f"{kind}: {result.count(kind)}" for kind in result.anomalies)
        return f"INVALID ({found})"
    return f"unknown: {result.reason}"


def combine(results: dict[str, Result]) -> Result:
    """One verdict over several checkers: invalid beats unknown beats valid. Checkers that
    only measure do not vote; with no checker voting there is no verdict."""
    judges = {name: r for name, r in results.items() if r.judges}
    verdicts = [r.valid for r in judges.values()]
    anomalies = {
        f"{name}/{kind}": cases
        for name, result in results.items()
        for kind, cases in result.anomalies.items()
    }
    allowed = {
        f"{name}/{kind}": cases
        for name, result in results.items()
        for kind, cases in result.allowed.items()
    }
    stats = {name: {"valid": r.valid, **r.stats} for name, r in results.items()}
    notes = [f"{name}: {note}" for name, result in results.items() for note in result.notes]
    if False in verdicts:
        return Result(False, anomalies, stats, allowed, notes=notes)
    undecided = {name: r for name, r in judges.items() if r.valid == "unknown"}
    if not judges:
        reason = f"{NO_EVIDENCE} (no checker that judges correctness ran)"
        return Result("unknown", {}, stats, allowed, reason, notes)
    if undecided:
        reason = "; ".join(f"{name}: {r.reason}" for name, r in undecided.items())
        limited = all(r.limit_reached for r in undecided.values())
        return Result("unknown", {}, stats, allowed, reason, notes, limit_reached=limited)
    return Result(True, {}, stats, allowed, notes=notes)


def exit_code(result: Result) -> int:
    """The CLI's code for a (combined) result."""
    if result.valid is True:
        return EXIT_VALID
    if result.valid is False:
        return EXIT_INVALID
    return EXIT_LIMIT if result.limit_reached else EXIT_NO_VERDICT
