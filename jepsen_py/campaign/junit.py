"""junit.xml: one test case per checker, so a CI system shows a campaign like tests.

A valid checker passes, an invalid one fails with its anomaly counts, an unknown one is
skipped with its reason; a harness failure and an interrupted run are `error` cases of
their own, a run that did not test what it was asked a skipped `evidence` case.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

from jepsen_py.campaign import evidence

SUITE = "replog campaign"


def render(results: dict[str, Any]) -> str:
    suite = ET.Element("testsuite", name=SUITE)
    duration_s = results["facts"].get("duration_s", 0.0)
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for name, checker in results["checkers"].items():
        case = ET.SubElement(
            suite, "testcase", classname=f"replog.campaign.{results['run_id']}", name=name
        )
        counts["tests"] += 1
        if checker["valid"] is False:
            counts["failures"] += 1
            ET.SubElement(case, "failure", message=_failure(name, results)).text = json.dumps(
                {k: v for k, v in results["anomalies"].items() if k.startswith(f"{name}/")},
                default=str,
            )[:20_000]
        elif checker["valid"] == "unknown":
            counts["skipped"] += 1
            reason = checker["stats"].get("reason", "a limit was reached before a verdict")
            ET.SubElement(case, "skipped", message=str(reason))
    facts = results["facts"]
    if facts.get("missing"):
        case = ET.SubElement(suite, "testcase", classname="replog.campaign", name="evidence")
        counts["tests"] += 1
        counts["skipped"] += 1
        ET.SubElement(case, "skipped", message=evidence.describe(facts["missing"]))
    if facts.get("interrupted"):
        case = ET.SubElement(suite, "testcase", classname="replog.campaign", name="run")
        counts["tests"] += 1
        counts["errors"] += 1
        ET.SubElement(case, "error", message=f"incomplete: interrupted by {facts['interrupted']}")
    error = facts.get("harness_error")
    if error is not None:
        case = ET.SubElement(suite, "testcase", classname="replog.campaign", name="harness")
        counts["tests"] += 1
        counts["errors"] += 1
        ET.SubElement(case, "error", message=error.splitlines()[-1]).text = error
    for key, value in counts.items():
        suite.set(key, str(value))
    suite.set("time", f"{duration_s:.3f}")
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def _failure(name: str, results: dict[str, Any]) -> str:
    found = [
        f"{kind.split('/', 1)[1]} x{entry['count']}"
        for kind, entry in results["anomalies"].items()
        if kind.startswith(f"{name}/")
    ]
    return f"{name}: " + (", ".join(found) or "invalid")
