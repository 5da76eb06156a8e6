"""`replog analyze FILE`: run checkers over a recorded history and print the verdict.

Exit 0 valid, 1 invalid, 2 bad input, 3 unknown (a limit was reached).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from jepsen_py import consumer, durability, edn, importers, lin_report, linearizable, perf, queue
from jepsen_py.history import HistoryError, Op
from jepsen_py.models import MODELS
from jepsen_py.result import Result, Validity, combine

EXIT = {True: 0, False: 1, "unknown": 3}
EXIT_BAD_INPUT = 2
DEFAULT_MODEL = {
    "porcupine-etcd": "etcd-register",
    "porcupine-kv": "kv",
    "knossos-edn": "cas-register",
}
CHECKERS = ("linearizable", "queue", "durability", "consumer", "perf", "all")
# "all" runs the linearizability checker when a model is known (--model or the format's),
# the queue and durability checkers when the history has send or poll ops, and the
# consumer-processing checker when it has consume ops.


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="replog analyze", description=__doc__)
    parser.add_argument("file", type=Path)
    parser.add_argument("--format", default="jsonl", choices=["jsonl", *importers.IMPORTERS])
    parser.add_argument("--model", choices=sorted(MODELS), help="for the linearizability checker")
    parser.add_argument("--checker", default="all", choices=CHECKERS)
    parser.add_argument("--time-limit", type=float, default=None, metavar="S")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--html", type=Path, help="write a violation's timeline here")
    parser.add_argument("--export-edn", type=Path, help="also write the history as Jepsen EDN")
    return parser


def main(argv: list[str]) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        return EXIT_BAD_INPUT if stop.code else 0
    try:
        history = importers.load(args.file, args.format)
    except (OSError, ValueError) as error:
        print(f"replog analyze: {args.file}: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.export_edn:
        with open(args.export_edn, "w", encoding="utf-8") as stream:
            edn.write_history(history, stream)
    model_name = args.model or DEFAULT_MODEL.get(args.format)
    if args.checker == "linearizable" and model_name is None:
        print("replog analyze: --checker linearizable needs --model", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        results = _run(history, args.checker, model_name, args.time_limit)
    except HistoryError as error:
        print(f"replog analyze: {args.file}: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    result = combine(results)
    _report(results, result, args)
    return EXIT[result.valid]


def _run(
    history: list[Op], checker: str, model_name: str | None, time_limit_s: float | None
) -> dict[str, Result]:
    if checker == "all":
        queue_ops = any(op.f in ("send", "poll") for op in history)
        chosen = ("linearizable", "perf", *(("queue", "durability") if queue_ops else ()))
        chosen += ("consumer",) if any(op.f == "consume" for op in history) else ()
    else:
        chosen = (checker,)
    results = {}
    if "linearizable" in chosen and model_name is not None:
        model = MODELS[model_name]()
        results["linearizable"] = linearizable.check(history, model, time_limit_s)
    if "queue" in chosen:
        results["queue"] = queue.check(history)
    if "durability" in chosen:
        results["durability"] = durability.check(history)
    if "consumer" in chosen:
        results["consumer"] = consumer.check(history)
    if "perf" in chosen:
        results["perf"] = perf.check(history)
    return results


def _report(results: dict[str, Result], result: Result, args: argparse.Namespace) -> None:
    violation = _violation(results)
    if args.html and violation is not None:
        args.html.write_text(lin_report.to_html(violation), encoding="utf-8")
    if args.json:
        print(json.dumps(result.to_json(), default=str, indent=1))
        return
    for name, checker_result in results.items():
        summary = {k: v for k, v in checker_result.stats.items() if not isinstance(v, dict | list)}
        print(f"{name}: {_verdict(checker_result.valid)}  {summary}")
        for kind, cases in checker_result.anomalies.items():
            print(f"  {kind}: {len(cases)} case(s), e.g. {json.dumps(cases[0], default=str)[:300]}")
    if violation is not None:
        print()
        print(lin_report.to_text(violation))
    print(f"\nverdict: {_verdict(result.valid)}")


def _violation(results: dict[str, Result]) -> dict[str, Any] | None:
    lin = results.get("linearizable")
    if lin is None or "nonlinearizable" not in lin.anomalies:
        return None
    return lin.anomalies["nonlinearizable"][0]


def _verdict(valid: Validity) -> str:
    if valid == "unknown":
        return "unknown (limit reached)"
    return "valid" if valid else "INVALID"
