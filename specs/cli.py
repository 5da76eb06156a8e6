"""Argument parsing and printing for `replog check` and `replog matrix`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from model.config import Config, ConfigError
from model.machine import Scope
from specs import explorer, graph, matrix, smt_check
from specs.check import describe_run, run_check, to_json, write_counterexample
from specs.invariants import INVARIANTS, select
from specs.scopes import DEFAULT_SUITE, LIVENESS_SUITE, SCOPES, resolve
from specs.smt_state import MAX_DEPTH


def _check_parser() -> argparse.ArgumentParser:
    scopes = "; ".join(f"{name}: {preset.about}" for name, preset in SCOPES.items())
    parser = argparse.ArgumentParser(
        prog="replog check",
        description="Explore the reference model breadth-first for invariant violations; "
        "print the shortest counterexample found.",
        epilog=f"Scopes ({scopes}). Exit 0: no violation within the bounds; 1: violation; "
        "2: bad arguments.",
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
    for flag, about in (
        ("--brokers", "brokers (replicas of the partition)"),
        ("--partitions", "partitions"),
        ("--max-writes", "records produced"),
        ("--max-retries", "producer retries"),
        ("--max-crashes", "broker crashes"),
        ("--max-data-loss-crashes", "crashes that lose data (power, disk)"),
        ("--max-elections", "leader elections"),
        ("--max-network-changes", "network faults"),
        ("--max-clock-advances", "clock advances past replica.lag.time.max.ms"),
        ("--group-consumers", "consumer processes in a consumer group (group scopes)"),
        ("--max-polls", "consumer polls"),
        ("--max-consumer-crashes", "consumer process crashes"),
        ("--max-leaves", "consumers closing (LeaveGroup)"),
        ("--max-time-advances", "clock advances of --clock-step-ms (group timers, retention)"),
        ("--clock-step-ms", "how far one such clock advance goes"),
    ):
        bounds.add_argument(flag, type=int, metavar="N", help=about)
    bounds.add_argument("--crash-kinds", metavar="LIST", help="comma list of kill,power,disk")
    bounds.add_argument("--network-faults", metavar="LIST", help="comma list of isolate,controller")
    bounds.add_argument(
        "--consumers", action="store_true", help="let a consumer read (ConsistentRead)"
    )
    parser.add_argument(
        "--depth", type=int, default=40, help="BFS depth limit (default: each scope's own, <= 40)"
    )
    parser.add_argument("--states-max", type=int, default=3_000_000)
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds per scope")
    parser.add_argument("--mode", choices=("bfs", "random"), default="bfs")
    parser.add_argument("--seed", type=int, default=1, help="random mode: the RNG seed")
    parser.add_argument("--walks", type=int, default=10_000, help="random mode: walks per scope")
    parser.add_argument("--jobs", type=int, help="worker processes (default: one per core)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary")
    parser.add_argument("--out", type=Path, help="where trace.txt and trace.mmd go")
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
        type=int,
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
        type=int,
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
            smt_check.validate(config, scopes, args.smt_depth, on_graph or args.mode != "bfs")
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
        )
    if args.engine != "explicit":
        return _check_with_smt(args, config, [i.name for i in invariants], scopes)
    limits = explorer.Limits(args.depth, args.states_max, args.time_limit)
    if not args.json:
        print(
            f"replog check: {config.label()}; invariants: {', '.join(i.name for i in invariants)}"
        )
    result = run_check(
        config,
        scopes,
        [i.name for i in invariants],
        limits,
        mode=args.mode,
        seed=args.seed,
        walks_max=args.walks,
        jobs=args.jobs,
    )
    violation = result.violation
    paths = write_counterexample(violation, _out_dir(args, config)) if violation else None
    if args.json:
        print(json.dumps(to_json(result, paths), indent=2))
        return 1 if violation else 0
    for run in result.runs:
        print("  " + describe_run(run))
    if violation is None:
        covered = "every scope exhausted" if result.exhausted else "bounded, not exhausted"
        print(f"no violation ({covered})")
        return 0
    print()
    print(paths[0].read_text(), end="")
    print(f"\ntrace: {paths[0]}\ndiagram (Mermaid): {paths[1]}")
    return 1


def _out_dir(args: argparse.Namespace, config: Config) -> Path:
    label = config.label().replace("=", "-").replace(",", "_")
    return args.out or Path("reports") / "check" / label


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
            f"engine: {engines}, depth <= {args.smt_depth}"
        )
    result = None
    if both:
        limits = explorer.Limits(min(args.depth, args.smt_depth), args.states_max, args.time_limit)
        result = run_check(config, scopes, invariants, limits, jobs=args.jobs)
    runs = smt_check.run_smt_check(
        config, scopes, invariants, args.smt_depth, time_limit_s=args.time_limit, jobs=args.jobs
    )
    disagreement = smt_check.disagreement(result, runs) if result is not None else None
    violation = smt_check.shortest(runs)
    if result is not None and result.violation is not None:
        violation = result.violation
    paths = write_counterexample(violation, _out_dir(args, config)) if violation else None
    code = 2 if disagreement else 1 if violation else 0
    if args.json:
        report = smt_check.to_json(config, runs, paths)
        if result is not None:
            report = {
                "engine": "both",
                "agree": disagreement is None,
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
        else:
            print()
            print(paths[0].read_text(), end="")
            print(f"\ntrace: {paths[0]}\ndiagram (Mermaid): {paths[1]}")
    if disagreement:
        print(f"replog check: the engines disagree: {disagreement}", file=sys.stderr)
    return code


def matrix_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="replog matrix",
        description="The safety matrix: invariants x configurations, each cell held or "
        "violated with the length of its shortest counterexample.",
    )
    parser.add_argument(
        "--depth",
        type=int,
        help="search every scope to this depth (within its own bound) instead of the "
        f"defaults, which the committed matrix uses: {matrix.Bounds().describe()}",
    )
    parser.add_argument("--jobs", type=int, help="worker processes (default: one per core)")
    parser.add_argument("--json", action="store_true", help="print the table as JSON")
    parser.add_argument("--out", type=Path, default=Path("reports/safety-matrix.md"))
    args = parser.parse_args(argv)
    if args.depth is not None and args.depth < 1:
        print("replog matrix: --depth must be at least 1", file=sys.stderr)
        return 2
    bounds = matrix.Bounds(depth=args.depth)
    table = matrix.compute(bounds, jobs=args.jobs)
    text = matrix.render_markdown(table, bounds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    if args.json:
        cells = {row: {k: c.render() for k, c in cells.items()} for row, cells in table.items()}
        print(json.dumps(cells, indent=2))
    else:
        print(text, end="")
        print(f"\nwritten to {args.out}")
    return 0
