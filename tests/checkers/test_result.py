"""The one result a checker returns: its verdict cannot contradict its anomalies."""

from __future__ import annotations

import pytest

from jepsen_py.result import (
    EXIT_INVALID,
    EXIT_LIMIT,
    EXIT_NO_VERDICT,
    EXIT_VALID,
    Result,
    combine,
    exit_code,
    no_evidence,
    verdict_text,
)

LOST = {"lost": [{"key": "k", "offset": 1}]}


@pytest.mark.parametrize(
    ("valid", "anomalies", "reason"),
    [(True, LOST, None), ("unknown", LOST, "limit"), (False, {}, None), (False, {"x": []}, None)],
)
def test_a_verdict_that_contradicts_its_anomalies_is_refused(
    valid: bool | str, anomalies: dict, reason: str | None
) -> None:
    with pytest.raises(ValueError, match="invalid exactly when it has anomalies"):
        Result(valid, anomalies, reason=reason)  # type: ignore[arg-type]


def test_an_unknown_says_why() -> None:
    with pytest.raises(ValueError, match="must say why"):
        Result("unknown")
    assert verdict_text(no_evidence("no send")) == "unknown: no evidence (no send)"


def test_allowed_findings_are_counted_apart_and_never_invalidate() -> None:
    result = Result(True, allowed=LOST, stats={"counts": {"lost": 70}})
    assert result.summary()["allowed_counts"] == {"lost": 70}
    assert result.summary()["anomaly_counts"] == {}
    assert verdict_text(result) == "valid"
    assert verdict_text(Result(False, LOST)) == "INVALID (lost: 1)"


def test_combine_and_exit_codes() -> None:
    valid, measured = Result(True), Result(True, judges=False)
    limited = Result("unknown", reason="time limit", limit_reached=True)
    empty = no_evidence("nothing")
    cases = [
        ({"a": valid, "perf": measured}, True, EXIT_VALID),
        ({"a": valid, "b": Result(False, LOST), "c": limited}, False, EXIT_INVALID),
        ({"a": valid, "c": limited}, "unknown", EXIT_LIMIT),
        ({"a": valid, "c": limited, "d": empty}, "unknown", EXIT_NO_VERDICT),
        ({"perf": measured}, "unknown", EXIT_NO_VERDICT),
        ({}, "unknown", EXIT_NO_VERDICT),
    ]
    for results, verdict, code in cases:
        combined = combine(results)
        assert (combined.valid, exit_code(combined)) == (verdict, code), sorted(results)
    assert combine({"b": Result(False, LOST)}).anomalies == {"b/lost": LOST["lost"]}
    assert combine({"c": limited, "d": empty}).reason == "c: time limit; d: no evidence (nothing)"
    assert verdict_text(measured) == "measured (not a verdict)"
