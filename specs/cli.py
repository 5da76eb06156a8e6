"""Argument parsing and printing for `replog check` and `replog matrix`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from model.arguments import Parser, integer, seconds, unwritable_dir, unwritable_file
from model.config import Config, ConfigError
from model.machine import Scope
from specs import explorer, graph, matrix, smt_check
from specs.check import (
    PROGRESS_EVERY_S,
    OnProgress,
    describe_run,
    run_check,
    summary,
    to_json,
    write_counterexample,
)
from specs.invariants import INVARIANTS, select
from specs.scopes import DEFAULT_SUITE, LIVENESS_SUITE, SCOPES, resolve
from specs.smt_state import MAX_DEPTH
from specs.trace import render_text
from specs.verdict import UNKNOWN, exit_code, overall


def _add_run_flags(parser: argparse.ArgumentParser, json_output: str) -> None:
    """--jobs, --json and --quiet, as `check` and `matrix` both take them."""
    parser.add_argument(
        "--jobs", type=integer(1), metavar="N", help="worker processes (default: one per core)"
    )
    parser.add_argument(
        "--json", action="store_true", help=f"print {json_output} (and no progress lines)"
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help=f"no progress lines (otherwise one per search on stderr every "
        f"{PROGRESS_EVERY_S:.0f} s of a long one)",
    )


def _check_parser() -> argparse.ArgumentParser:
    scopes = "; ".join(f"{name}: {preset.about}" for name, preset in SCOPES.items())
    parser = Parser(
        prog="replog check",
        description="Explore the reference model breadth-first for invariant violations; "
        "print the shortest counterexample found.",
        epilog=f"Scopes ({scopes}). Exit 0: held, every scope searched to its bound (state "
        "space exhausted or every trace up to its depth bound explored); 1: a violation; "
        "2: bad arguments; 3: unknown, a scope stopped by --time-limit or --states-max "
        "before its bound, or --mode random without a violation.",
    )
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--invariant",
        action="append",
        default=[],
        metavar="NAME",
        help=f"check only these (default all): {', '.join(INVARIANTS)}",
    )
    parser.add_argument(
        "--scope",
        action="append",
        default=[],
        metavar="NAME",
        help=f"fault classes to explore (default: {', '.join(DEFAULT_SUITE)})",
    )
    bounds = parser.add_argument_group("bounds (override every chosen scope)")
    for flag, about, allowed in (
        ("--brokers", "brokers (replicas of the partition)", integer(1, 8)),
        ("--partitions", "partitions", integer(1, 8)),
        ("--max-writes", "records produced", integer(0)),
        ("--max-retries", "producer retries", integer(0)),
        ("--max-crashes", "broker crashes", integer(0)),
        ("--max-data-loss-crashes", "crashes that lose data (power, disk)", integer(0)),
        ("--max-elections", "leader elections", integer(0)),
        ("--max-network-changes", "network faults", integer(0)),
        ("--max-clock-advances", "clock advances past replica.lag.time.max.ms", integer(0)),
        (
            "--group-consumers",
            "consumer processes in a consumer group (group scopes)",
            integer(0, 4),
        ),
        ("--max-polls", "consumer polls", integer(0)),
        ("--max-consumer-crashes", "consumer process crashes", integer(0)),
        ("--max-leaves", "consumers closing (LeaveGroup)", integer(0)),
        (
            "--max-time-advances",
            "clock advances of --clock-step-ms (group timers, retention)",
            integer(0),
        ),
        ("--clock-step-ms", "how far one such clock advance goes", integer(1)),
    ):
        bounds.add_argument(flag, type=allowed, metavar="N", help=about)
    bounds.add_argument("--crash-kinds", metavar="LIST", help="comma list of kill,power,disk")
    bounds.add_argument("--network-faults", metavar="LIST", help="comma list of isolate,controller")
    bounds.add_argument(
        "--consumers", action="store_true", help="let a consumer read (ConsistentRead)"
    )
    parser.add_argument(
        "--depth",
        type=integer(1),
        default=40,
        metavar="N",
        help="depth bound, at least 1 (default: each scope's own, <= 40)",
    )
    parser.add_argument(
        "--states-max",
        type=integer(1),
        default=explorer.Limits.states_max,
        metavar="N",
        help="distinct states per scope before it stops, unknown (default %(default)s)",
    )
    parser.add_argument(
        "--time-limit",
        type=seconds,
        metavar="S",
        help="seconds per scope; a scope it stops before its bound is unknown, exit 3 "
        "(default: none, so the answer does not depend on the machine's load)",
    )
    parser.add_argument(
        "--mode",
        choices=("bfs", "random"),
        default="bfs",
        help="bfs: breadth-first to each scope's bound (default); random: seeded random "
        "walks, which find violations (exit 1) but never show there is none, so without "
        "one the verdict is unknown (exit 3), however many walks ran",
    )
    parser.add_argument(
        "--seed", type=integer(0), default=1, metavar="N", help="random mode: the RNG seed"
    )
    parser.add_argument(
        "--walks",
        type=integer(1),
        default=10_000,
        metavar="N",
        help="random mode: walks per scope (default %(default)s)",
    )
    _add_run_flags(parser, "a JSON summary")
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="the directory trace.txt and trace.mmd go in"
    )
    engines = parser.add_argument_group("engine")
    engines.add_argument(
        "--engine",
        choices=("explicit", "smt", "both"),
        default="explicit",
        help="explicit: the breadth-first explorer; smt: the z3 bounded model checker "
        "(every counterexample replayed in the model); both: run both to --smt-depth and "
        "exit 2 if their verdicts disagree (default %(default)s)",
    )
    engines.add_argument(
        "--smt-depth",
        type=integer(1, MAX_DEPTH),
        default=smt_check.DEFAULT_DEPTH,
        metavar="N",
        help="smt/both: steps to unroll (default %(default)s, each scope's own bound if "
        f"smaller, at most {MAX_DEPTH})",
    )
    parser.add_argument(
        "--liveness",
        action="store_true",
        help="instead of the invariants, check that once faults stop a leader is eventually "
        f"elected (default scope: {', '.join(LIVENESS_SUITE)})",
    )
    parser.add_argument(
        "--graph", type=Path, metavar="FILE", help="write the scope's state graph (GraphML)"
    )
    parser.add_argument(
        "--max-nodes",
        type=integer(1),
        default=graph.DEFAULT_MAX_NODES,
        help="--liveness/--graph: most states a graph may hold (default %(default)s)",
    )
    return parser


def _overrides(args: argparse.Namespace) -> dict:
    def split(text: str | None) -> tuple[str, ...] | None:
        return None if text is None else tuple(t for t in text.split(",") if t)

    return {
        "brokers": args.brokers,
        "partitions": args.partitions,
        "max_writes": args.max_writes,
        "max_retries": args.max_retries,
        "max_crashes": args.max_crashes,
        "max_data_loss_crashes": args.max_data_loss_crashes,
        "max_elections": args.max_elections,
        "max_network_changes": args.max_network_changes,
        "max_clock_advances": args.max_clock_advances,
        "group_consumers": args.group_consumers,
        "max_polls": args.max_polls,
        "max_consumer_crashes": args.max_consumer_crashes,
        "max_leaves": args.max_leaves,
        "max_time_advances": args.max_time_advances,
        "clock_step_ms": args.clock_step_ms,
        "crash_kinds": split(args.crash_kinds),
        "network_faults": split(args.network_faults),
        "consumers": True if args.consumers else None,
    }


def check_main(argv: list[str]) -> int:
    parser = _check_parser()
    args = parser.parse_args(argv)
    try:
        config = Config.parse(args.config)
        invariants = select(args.invariant)
        on_graph = args.liveness or args.graph is not None
        suite = args.scope or (list(LIVENESS_SUITE) if on_graph else None)
        scopes = resolve(suite, **_overrides(args))
        for _, scope, _ in scopes:
            if config.replication_factor > scope.brokers:
                raise ValueError(
                    f"replication.factor={config.replication_factor} needs --brokers >= it"
                )
        if args.engine != "explicit":
            smt_check.validate(config, scopes, on_graph or args.mode != "bfs")
        _check_outputs(args)
    except (ConfigError, ValueError) as error:
        print(f"replog check: {error}", file=sys.stderr)
        return 2
    if on_graph:
        return graph.run(
            config,
            scopes,
            liveness=args.liveness,
            graph_path=args.graph,
            max_nodes=args.max_nodes,
            out=args.out,
            on_progress=_progress_printer("replog check", args),
        )
    names = [i.name for i in invariants]
    if args.engine != "explicit":
        return _check_with_smt(args, config, names, scopes)
    limits = explorer.Limits(args.depth, args.states_max, args.time_limit)
    if not args.json:
        print(f"replog check: {config.label()}; invariants: {', '.join(names)}", flush=True)
    result = run_check(
        config,
        scopes,
        names,
        limits,
        mode=args.mode,
        seed=args.seed,
        walks_max=args.walks,
        jobs=args.jobs,
        on_progress=_progress_printer("replog check", args),
    )
    violation = result.violation
    paths = _save_counterexample(violation, _out_dir(args, config)) if violation else None
    if args.json:
        print(json.dumps(to_json(result, paths), indent=2))
    else:
        for run in result.runs:
            print("  " + describe_run(run))
        if violation is None:
            print(summary(result))
        else:
            _print_counterexample(violation, paths)
    return exit_code(result.verdict)


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse, before any search, output paths the run could not write at its end."""
    if args.out is not None and (reason := unwritable_dir(args.out)) is not None:
        raise ValueError(f"--out: {reason}; it names the directory trace.txt and trace.mmd go in")
    if args.graph is not None and (reason := unwritable_file(args.graph)) is not None:
        raise ValueError(f"--graph: {reason}; it names the GraphML file to write")


def _progress_printer(prog: str, args: argparse.Namespace) -> OnProgress | None:
    """Progress lines on stderr, unless --quiet, or --json (whose reader wants only JSON)."""
    if args.quiet or args.json:
        return None

    def show(line: str) -> None:
        print(f"{prog}: {line}", file=sys.stderr, flush=True)

    return show


def _out_dir(args: argparse.Namespace, config: Config) -> Path:
    label = config.label().replace("=", "-").replace(",", "_")
    return args.out or Path("reports") / "check" / label


def _save_counterexample(violation: explorer.Violation, out_dir: Path) -> tuple[Path, Path] | None:
    """trace.txt and trace.mmd in `out_dir`, or None (said on stderr) if they cannot be
    written: the violation is still the verdict, and is printed."""
    try:
        return write_counterexample(violation, out_dir)
    except OSError as error:
        print(
            f"replog check: cannot write the counterexample to {out_dir}: "
            f"{error.strerror or error}",
            file=sys.stderr,
        )
        return None


def _print_counterexample(violation: explorer.Violation, paths: tuple[Path, Path] | None) -> None:
    print()
    print(render_text(violation))
    if paths is not None:
        print(f"\ntrace: {paths[0]}\ndiagram (Mermaid): {paths[1]}")


def _check_with_smt(
    args: argparse.Namespace,
    config: Config,
    invariants: list[str],
    scopes: list[tuple[str, Scope, int]],
) -> int:
    """--engine smt|both: the z3 engine alone, or next to the explorer on equal bounds."""
    both = args.engine == "both"
    if not args.json:
        engines = "explicit and smt" if both else "smt"
        print(
            f"replog check: {config.label()}; invariants: {', '.join(invariants)}; "
            f"engine: {engines}, depth <= {args.smt_depth}",
            flush=True,
        )
    on_progress = _progress_printer("replog check", args)
    result = None
    if both:
        limits = explorer.Limits(min(args.depth, args.smt_depth), args.states_max, args.time_limit)
        result = run_check(
            config, scopes, invariants, limits, jobs=args.jobs, on_progress=on_progress
        )
    runs = smt_check.run_smt_check(
        config,
        scopes,
        invariants,
        args.smt_depth,
        time_limit_s=args.time_limit,
        jobs=args.jobs,
        on_progress=on_progress,
    )
    disagreement = smt_check.disagreement(result, runs) if result is not None else None
    violation = smt_check.shortest(runs)
    if result is not None and result.violation is not None:
        violation = result.violation
    paths = _save_counterexample(violation, _out_dir(args, config)) if violation else None
    verdicts = [run.verdict for run in runs]
    verdicts += [run.verdict for run in result.runs] if result is not None else []
    if args.json:
        report = smt_check.to_json(config, runs, paths)
        if result is not None:
            report = {
                "engine": "both",
                "agree": disagreement is None,
                "verdict": overall(verdicts),
                "explicit": to_json(result, paths),
                "smt": report,
            }
        print(json.dumps(report, indent=2))
    else:
        for run in result.runs if result is not None else ():
            print("  explicit: " + describe_run(run))
        for smt_run in runs:
            print(("  smt:      " if both else "  ") + smt_check.describe_run(smt_run))
        if violation is None:
            print(f"{args.engine}: {smt_check.summary(runs)}")
            if result is not None and result.verdict == UNKNOWN:
                print(f"explicit: {summary(result)}")
        else:
            _print_counterexample(violation, paths)
    if disagreement:
        print(f"replog check: the engines disagree: {disagreement}", file=sys.stderr)
        return 2
    return exit_code(overall(verdicts))


def matrix_main(argv: list[str]) -> int:
    parser = Parser(
        prog="replog matrix",
        description="The safety matrix: invariants x configurations, each cell held or "
        "violated with the length of its shortest counterexample.",
        epilog="Exit 0: every cell held or violated (violated cells are what the matrix "
        "shows, not a failure); 2: bad arguments; 3: a cell is unknown, its search stopped "
        "by --time-limit before its bounds.",
    )
    parser.add_argument(
        "--depth",
        type=integer(1),
        metavar="N",
        help="search every scope to this depth (within its own bound) instead of the "
        f"defaults, which the committed matrix uses: {matrix.Bounds().describe()}",
    )
    parser.add_argument(
        "--time-limit",
        type=seconds,
        metavar="S",
        help="seconds per search; cells of a search it stops before its bounds are "
        "unknown (default: none, so the cells depend on the bounds only)",
    )
    _add_run_flags(parser, "the table as JSON")
    parser.add_argument(
        "--out", type=Path, metavar="FILE", default=Path("reports/safety-matrix.md")
    )
    args = parser.parse_args(argv)
    if (reason := unwritable_file(args.out)) is not None:
        print(
            f"replog matrix: --out: {reason}; it names the Markdown file to write", file=sys.stderr
        )
        return 2
    bounds = matrix.Bounds(depth=args.depth, time_limit_s=args.time_limit)
    table = matrix.compute(
        bounds, jobs=args.jobs, on_progress=_progress_printer("replog matrix", args)
    )
    text = matrix.render_markdown(table, bounds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    if args.json:
        cells = {row: {k: c.render() for k, c in cells.items()} for row, cells in table.items()}
        print(json.dumps(cells, indent=2))
    else:
        print(text, end="")
        print(f"\nwritten to {args.out}")
    return 0 if matrix.complete(table) else exit_code(UNKNOWN)
