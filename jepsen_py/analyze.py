"""`replog analyze FILE`: run checkers over a recorded history and print the verdict.

Exit 0 valid, 1 invalid (a violation found), 2 no verdict (bad input, or a history that
tested nothing: empty, no client op completed, no op any checker reads), 3 unknown (a
search limit stopped a check).

The settings a checker relies on (acks for durability, retention for the consumer
workload's checks) come from the run's recorded configuration: a campaign's
`history.jsonl` has its `spec.json` (or, for older runs, `results.json`) beside it,
and then the history is judged by exactly the checkers the campaign used. A history
without one (an imported history) is said to be unrecorded, and each checker says what
it assumed instead of taking a default.

jepsen_py.campaign (trio, the native client: most of a second to import) is imported
only where a history needs it: a JSON Lines history, or send/poll ops to judge as the
campaign does; a Porcupine or Knossos history does not pay for it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from jepsen_py import consumer, durability, edn, importers, lin_report, linearizable, perf, queue
from jepsen_py.history import HistoryError, Op
from jepsen_py.models import MODELS
from jepsen_py.result import (
    EXIT_NO_VERDICT,
    NO_EVIDENCE,
    Result,
    combine,
    exit_code,
    verdict_text,
)
from model.arguments import number_above
from model.config import Config, ConfigError, render_acks

DEFAULT_MODEL = {
    "porcupine-etcd": "etcd-register",
    "porcupine-kv": "kv",
    "knossos-edn": "cas-register",
}
CHECKERS = ("linearizable", "queue", "durability", "consumer", "perf", "all")
# "all" on a recorded campaign run: the checkers its workload is judged by (and
# linearizability too if --model is given). Otherwise: linearizability when a model is
# known (--model or the format's), the queue and durability checkers when the history has
# send or poll ops, the consumer-processing checker when it has consume ops, and perf.
SHOWN_SETTINGS = (
    "acks",
    "min.insync.replicas",
    "replication.factor",
    "unclean.leader.election.enable",
    "enable.idempotence",
    "isolation.level",
)
EXAMPLE_CHARS = 300


class InputError(Exception):
    """Bad input the user can fix: reported as one line, exit 2."""


@dataclass
class RunConfig:
    """The run's configuration as recorded (`source` None: not recorded)."""

    source: str | None = None
    workload: str | None = None
    config: Config | None = None
    topic_replication_factor: int | None = None
    caveat: str | None = None

    def acks(self) -> str | None:
        return None if self.config is None else render_acks(self.config.acks)

    def to_json(self) -> dict[str, Any]:
        if self.config is None:
            return {"recorded": False}
        return {
            "recorded": True,
            "source": self.source,
            "caveat": self.caveat,
            "workload": self.workload,
            "topic_replication_factor": self.topic_replication_factor,
            "settings": self.config.to_pairs(),
        }

    def describe(self) -> str:
        if self.config is None:
            return (
                "configuration: not recorded (no spec.json or results.json beside a "
                "history.jsonl); a checker that needs a setting says what it assumed"
            )
        pairs = self.config.to_pairs()
        shown = ", ".join(f"{key}={pairs[key]}" for key in SHOWN_SETTINGS)
        caveat = f" ({self.caveat})" if self.caveat else ""
        return (
            f"configuration recorded in {self.source}{caveat}: workload {self.workload}, "
            f"{shown}, topic replication factor {self.topic_replication_factor}"
        )


@dataclass
class Analysis:
    history: list[Op]
    run: RunConfig
    results: dict[str, Result]
    verdict: Result
    warnings: list[str]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="replog analyze", description=__doc__)
    parser.add_argument("file", type=Path)
    parser.add_argument("--format", default="jsonl", choices=["jsonl", *importers.IMPORTERS])
    parser.add_argument("--model", choices=sorted(MODELS), help="for the linearizability checker")
    parser.add_argument("--checker", default="all", choices=CHECKERS)
    parser.add_argument(
        "--time-limit",
        type=number_above(0, "seconds", inclusive=True),
        default=None,
        metavar="S",
        help="stop the linearizability search after S seconds: undecided is unknown (exit 3)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--html", type=Path, help="write a violation's timeline here")
    parser.add_argument("--export-edn", type=Path, help="also write the history as Jepsen EDN")
    return parser


def main(argv: list[str]) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        return EXIT_NO_VERDICT if stop.code else 0
    model_name = args.model or DEFAULT_MODEL.get(args.format)
    try:
        if args.checker == "linearizable" and model_name is None:
            raise InputError("--checker linearizable needs --model")
        for output in (args.html, args.export_edn):
            if output is not None:
                _check_writable(output)
        history = _load(args.file, args.format)
        run = recorded_config(args.file, args.format)
        if args.export_edn:
            _write(args.export_edn, lambda stream: edn.write_history(history, stream))
        analysis = analyze(history, run, args.checker, args.model, model_name, args.time_limit)
        violation = _violation(analysis.results)
        if args.html and violation is not None:
            _write(args.html, lambda stream: stream.write(lin_report.to_html(violation)))
    except InputError as error:
        print(f"replog analyze: {error}", file=sys.stderr)
        return EXIT_NO_VERDICT
    except HistoryError as error:
        print(f"replog analyze: {args.file}: {error}", file=sys.stderr)
        return EXIT_NO_VERDICT
    text = _json(analysis) if args.json else _text(analysis, violation)
    # One write and a flush here, so a reader that closes the pipe early (`| head`) is
    # met inside the command, not at interpreter exit.
    sys.stdout.write(text)
    sys.stdout.flush()
    return exit_code(analysis.verdict)


# ---- input and output files ------------------------------------------------------------------


def _load(path: Path, fmt: str) -> list[Op]:
    if path.is_dir():
        from jepsen_py.campaign import runner

        inside = path / runner.HISTORY_FILE
        hint = f"; did you mean {inside}?" if inside.is_file() else ""
        raise InputError(f"{path}: is a directory, not a history file{hint}")
    try:
        return importers.load(path, fmt)
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text, so not a {fmt} history") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read: {error.strerror or error}") from None
    except ValueError as error:
        # HistoryError and EdnError name the line.
        raise InputError(f"{path}: {error}") from None


def _check_writable(path: Path) -> None:
    """Refuse an output path that cannot be written before any work is done."""
    if path.is_dir():
        raise InputError(f"{path}: is a directory; give a file path to write")
    if not path.parent.is_dir():
        raise InputError(f"{path}: directory {path.parent} does not exist")


def _write(path: Path, write: Callable[[TextIO], object]) -> None:
    try:
        with open(path, "w", encoding="utf-8") as stream:
            write(stream)
    except OSError as error:
        raise InputError(f"{path}: cannot write: {error.strerror or error}") from None


def recorded_config(path: Path, fmt: str) -> RunConfig:
    """The configuration a campaign recorded beside its history.jsonl, if any."""
    if fmt != "jsonl":
        return RunConfig()
    from jepsen_py.campaign import outputs, runner

    if path.name != runner.HISTORY_FILE:
        return RunConfig()
    for name in (runner.SPEC_FILE, outputs.RESULTS_FILE):
        candidate = path.parent / name
        if candidate.is_file():
            return _read_run_config(candidate)
    return RunConfig()


def _read_run_config(path: Path) -> RunConfig:
    from jepsen_py.campaign import runner, workloads

    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        spec = record if path.name == runner.SPEC_FILE else record["spec"]
        workload = spec["workload"]
        if workload not in workloads.WORKLOADS:
            raise ValueError(f"unknown workload {workload!r}")
        if "kafka_config" in spec:
            config, caveat = Config.from_pairs(spec["kafka_config"]), None
        else:
            # Runs recorded before every setting was: only the differences were.
            config = Config.from_pairs(spec["effective_config"])
            version = record.get("versions", {}).get("replog", "unknown")
            caveat = f"settings not listed there were replog {version}'s defaults"
        replication = spec.get("topic_replication_factor") or min(
            config.replication_factor, int(spec["brokers"])
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ConfigError) as error:
        raise InputError(f"{path}: cannot read the run's recorded configuration: {error}") from None
    return RunConfig(path.name, workload, config, replication, caveat)


# ---- checking ----------------------------------------------------------------------------------


def analyze(
    history: list[Op],
    run: RunConfig,
    checker: str,
    model_given: str | None,
    model_name: str | None,
    time_limit_s: float | None,
) -> Analysis:
    """Run the checkers; every one of them says valid, INVALID or why it cannot say."""
    problem = _no_client_evidence(history)
    if problem is not None:
        return Analysis(
            history, run, {}, Result("unknown", reason=f"{NO_EVIDENCE} ({problem})"), []
        )
    results: dict[str, Result] = {}
    if checker == "all" and run.config is not None and run.workload is not None:
        from jepsen_py.campaign import workloads

        results.update(workloads.check(run.workload, history, run.config))
        model = _linearizable_model(run.workload, model_given)
        # A recorded log run was judged within the campaign's limit; --time-limit replaces it.
        if model is not None and ("linearizable" not in results or time_limit_s is not None):
            results["linearizable"] = linearizable.check(history, MODELS[model](), time_limit_s)
    else:
        chosen = _chosen(history, checker, model_name)
        model = model_name if "linearizable" in chosen else None
        _run(results, chosen, history, run, model_name, time_limit_s)
    warnings = _unread_functions(history, results, model)
    verdict = combine(results)
    if not any(result.judges for result in results.values()):
        functions = sorted({op.f for op in history if op.is_client})
        what = (
            "perf measures latency and throughput; it judges nothing"
            if checker == "perf"
            else f"no checker reads this history's client ops, f in {functions}; give "
            "--model for a register, kv or log history"
        )
        verdict = Result("unknown", reason=f"{NO_EVIDENCE} ({what})")
    return Analysis(history, run, results, verdict, warnings)


def _no_client_evidence(history: list[Op]) -> str | None:
    """Why the history cannot show anything at all, or None."""
    if not history:
        return "the history is empty"
    kinds = Counter(op.type for op in history if op.is_client)
    if kinds["ok"] + kinds["fail"] == 0:
        return (
            f"no client op completed ok or fail: {kinds['invoke']} invoked, "
            f"{kinds['info']} of them ended info, outcome unknown"
        )
    return None


def _chosen(history: list[Op], checker: str, model_name: str | None) -> tuple[str, ...]:
    if checker != "all":
        return (checker,)
    functions = {op.f for op in history if op.is_client}
    chosen = ("linearizable",) if model_name is not None else ()
    chosen += ("queue", "durability") if functions & {"send", "poll"} else ()
    chosen += ("consumer",) if "consume" in functions else ()
    return (*chosen, "perf")


def _linearizable_model(workload: str, model_given: str | None) -> str | None:
    """The model a recorded run's linearizability is judged with."""
    if workload == "log":
        return "log"
    return model_given


def _run(
    results: dict[str, Result],
    chosen: tuple[str, ...],
    history: list[Op],
    run: RunConfig,
    model_name: str | None,
    time_limit_s: float | None,
) -> None:
    if "linearizable" in chosen and model_name is not None:
        results["linearizable"] = linearizable.check(history, MODELS[model_name](), time_limit_s)
    if "queue" in chosen:
        from jepsen_py.campaign import workloads

        # The campaign's rule for what the queue checker allows (unseen records are
        # allowed without a complete final read). queue_checks reads only acks from
        # the config, for durability, which is judged below with the recorded acks.
        results["queue"] = workloads.queue_checks(history, run.config or Config())["queue"]
    if "durability" in chosen:
        results["durability"] = durability.check(history, run.acks())
    if "consumer" in chosen:
        results["consumer"] = consumer.check(history)
    if "perf" in chosen:
        results["perf"] = perf.check(history)


def _unread_functions(
    history: list[Op], results: dict[str, Result], model: str | None
) -> list[str]:
    """Client ops whose f none of the checkers that ran reads: counted, not silently
    dropped (each with the line of its first occurrence)."""
    readers = {
        "queue": queue.FUNCTIONS,
        "durability": durability.FUNCTIONS,
        "consumer": consumer.FUNCTIONS,
        "linearizable": frozenset(MODELS[model]().functions) if model else frozenset(),
    }
    read = frozenset().union(*(readers.get(name, frozenset()) for name in results))
    unread: Counter[str] = Counter()
    first: dict[str, int] = {}
    for position, op in enumerate(history):
        if op.is_client and op.type == "invoke" and op.f not in read:
            unread[op.f] += 1
            first.setdefault(op.f, position + 1)
    return [
        f"{count} op(s) with f {f!r} (first on line {first[f]}) are read by no checker "
        f"that ran ({', '.join(name for name in results if name in readers) or 'none'})"
        for f, count in sorted(unread.items())
    ]


# ---- rendering ---------------------------------------------------------------------------------


def _json(analysis: Analysis) -> str:
    verdict = analysis.verdict
    document = {
        "valid": verdict.valid,
        "verdict": _overall_text(verdict),
        "exit_code": exit_code(verdict),
        "reason": verdict.reason,
        "configuration": analysis.run.to_json(),
        "warnings": analysis.warnings,
        "anomalies": verdict.anomalies,
        "checkers": {name: result.to_json() for name, result in analysis.results.items()},
    }
    return json.dumps(document, default=str, indent=1) + "\n"


def _text(analysis: Analysis, violation: dict[str, Any] | None) -> str:
    verdict = analysis.verdict
    lines = [_history_line(analysis.history), analysis.run.describe()]
    lines += [f"warning: {warning}" for warning in analysis.warnings]
    for name, result in analysis.results.items():
        lines += _checker_lines(name, result)
    if violation is not None:
        lines += ["", lin_report.to_text(violation)]
    lines += ["", f"verdict: {_overall_text(verdict)}"]
    return "\n".join(lines) + "\n"


def _history_line(history: list[Op]) -> str:
    kinds = Counter(op.type for op in history if op.is_client)
    nemesis = sum(1 for op in history if not op.is_client)
    return (
        f"history: {len(history)} ops: {kinds['invoke']} client invocations "
        f"({kinds['ok']} ok, {kinds['fail']} fail, {kinds['info']} info), {nemesis} nemesis ops"
    )


def _checker_lines(name: str, result: Result) -> list[str]:
    summary = {k: v for k, v in result.stats.items() if not isinstance(v, dict | list)}
    lines = [f"{name}: {verdict_text(result)}  {json.dumps(summary, default=str)}"]
    lines += [f"  note: {note}" for note in result.notes]
    for label, found in (("", result.anomalies), ("allowed ", result.allowed)):
        for kind, cases in found.items():
            example = json.dumps(cases[0], default=str)[:EXAMPLE_CHARS]
            lines.append(f"  {label}{kind}: {result.count(kind)} case(s), e.g. {example}")
    return lines


def _overall_text(verdict: Result) -> str:
    """The overall line: a no-evidence unknown is no verdict at all (exit 2)."""
    if verdict.valid == "unknown" and not verdict.limit_reached:
        return f"no verdict: {verdict.reason}"
    return verdict_text(verdict)


def _violation(results: dict[str, Result]) -> dict[str, Any] | None:
    lin = results.get("linearizable")
    if lin is None or "nonlinearizable" not in lin.anomalies:
        return None
    return lin.anomalies["nonlinearizable"][0]
