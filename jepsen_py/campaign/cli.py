"""`replog campaign` and `replog report RUN_DIR`.

Exit codes: 0 valid, 1 anomalies found, 2 no verdict: bad arguments, the harness
failed, the run was interrupted ("incomplete"), or it could not reach a verdict
("unknown": the history was malformed, a checker hit its limit, or the run did not test
what it was asked: jepsen_py.campaign.evidence).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from impl.cluster.launcher import make_writable_dir
from jepsen_py.campaign import evidence, nemesis, outputs, runner, sim, workloads
from jepsen_py.history import HistoryError, read_jsonl
from model.config import Config, ConfigError

EXIT_HARNESS = 2


def _campaign_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="replog campaign",
        description="Run a Jepsen-style fault-injection campaign against a cluster of "
        "broker processes on loopback, check the history and write a report.",
        epilog="Exit 0 valid, 1 anomalies found, 2 no verdict: bad arguments, the harness "
        "failed, the run was interrupted (incomplete) or did not test what it was asked "
        "(unknown: a nemesis that never fired, an op kind that never succeeded, final "
        "reads not completed).",
    )
    parser.add_argument("--workload", choices=workloads.WORKLOADS, default="queue")
    parser.add_argument(
        "--nemesis",
        default=",".join(nemesis.DEFAULT_KINDS),
        help=f"comma list of {', '.join(nemesis.KINDS)}, each optionally KIND:VARIANT "
        "(kill:leader, partition:inbound, ...), or none "
        f"(default: {','.join(nemesis.DEFAULT_KINDS)})",
    )
    parser.add_argument(
        "--nemesis-interval",
        type=float,
        default=None,
        metavar="S",
        help="seconds of quiet before each fault and of each fault (default: "
        f"{nemesis.INTERVAL_DEFAULT_S:g}, or less so that every kind fires within "
        f"--time-limit, but not below {nemesis.INTERVAL_MIN_S:g})",
    )
    parser.add_argument(
        "--nemesis-overlap",
        action="store_true",
        help="nest each fault inside one of another kind (the earlier in --nemesis outside)",
    )
    parser.add_argument("--time-limit", type=float, default=60.0, metavar="S")
    parser.add_argument("--rate", type=float, default=200.0, metavar="OPS", help="ops/s in total")
    parser.add_argument("--concurrency", type=int, default=10, metavar="N")
    parser.add_argument("--brokers", type=int, default=3, metavar="N")
    parser.add_argument("--partitions", type=int, default=4, metavar="P")
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--seed", type=int, default=None, help="default: a random seed (printed)")
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    parser.add_argument(
        "--sim",
        action="store_true",
        help="run on the deterministic simulator: the same brokers and clients in one "
        "process, simulated network, disks and clocks; --time-limit and every other time "
        "is simulated, and the seed replays the run exactly",
    )
    parser.add_argument(
        "--check-determinism",
        action="store_true",
        help="with --sim: run twice on the seed and compare the histories byte for byte "
        "(exit 2 at the first differing line)",
    )
    return parser


def _spec(args: argparse.Namespace) -> runner.CampaignSpec:
    """The campaign's settings, validated; ValueError/ConfigError name the bad one."""
    try:
        kinds = nemesis.parse_kinds(args.nemesis)
    except ValueError as error:
        raise ValueError(f"--nemesis: {error}") from None
    asked_s = args.nemesis_interval
    spec = runner.CampaignSpec(
        workload=args.workload,
        nemeses=kinds,
        time_limit_s=args.time_limit,
        rate_per_s=args.rate,
        concurrency=args.concurrency,
        brokers=args.brokers,
        partitions=args.partitions,
        config=tuple(args.config),
        seed=runner.new_seed() if args.seed is None else args.seed,
        out=args.out,
        nemesis_interval_s=nemesis.INTERVAL_DEFAULT_S if asked_s is None else asked_s,
        nemesis_overlap=args.nemesis_overlap,
        sim=args.sim,
    )
    if asked_s is None:
        # Once the spec has checked the time limit it is computed from.
        fitting_s = nemesis.fitting_interval_s(kinds, spec.time_limit_s, spec.nemesis_overlap)
        spec = replace(spec, nemesis_interval_s=fitting_s)
    spec.kafka_config()
    # Last: the only check that leaves something behind (the directory it made).
    make_writable_dir("--out", spec.out)
    return spec


def _warn_if_rounds_overrun(spec: runner.CampaignSpec) -> None:
    """Say up front when one round of faults (every kind once) cannot fit in the time
    limit: the run goes on, and kinds that never fired make its verdict unknown."""
    if nemesis.round_fits(
        spec.nemeses, spec.nemesis_interval_s, spec.time_limit_s, spec.nemesis_overlap
    ):
        return
    slots = nemesis.round_intervals(spec.nemeses, spec.nemesis_overlap)
    print(
        f"replog campaign: warning: firing each nemesis kind asked for ({len(spec.nemeses)}) "
        f"once takes {slots} x --nemesis-interval {spec.nemesis_interval_s:g} = "
        f"{slots * spec.nemesis_interval_s:g} s, more than --time-limit "
        f"{spec.time_limit_s:g}: kinds that never fire make the verdict unknown (exit 2)",
        file=sys.stderr,
    )


def campaign_main(argv: list[str]) -> int:
    args = _campaign_parser().parse_args(argv)
    if args.check_determinism and not args.sim:
        print("replog campaign: --check-determinism needs --sim", file=sys.stderr)
        return EXIT_HARNESS
    try:
        spec = _spec(args)
    except (ValueError, ConfigError) as error:
        print(f"replog campaign: {error}", file=sys.stderr)
        return EXIT_HARNESS
    _warn_if_rounds_overrun(spec)
    print(f"campaign seed {spec.seed}: replay with `{spec.command()}`", flush=True)
    if args.check_determinism:
        return _check_determinism(spec, show_progress=not args.quiet)
    campaign = (sim.run if spec.sim else runner.run)(spec, show_progress=not args.quiet)
    _summarize(campaign.results, campaign.run_dir)
    print(f"report: {campaign.run_dir / outputs.REPORT_FILE}")
    if spec.sim and campaign.exit_code != 0:
        print(f"replay this run exactly: {spec.command()}")
    return campaign.exit_code


def _check_determinism(spec: runner.CampaignSpec, show_progress: bool) -> int:
    """Exit 2 when the two runs' histories differ, else the (shared) verdict's code."""
    check = sim.check_determinism(spec, show_progress)
    first = check.runs[0]
    for campaign in check.runs:
        print(f"run {campaign.run_dir}: history {campaign.run_dir / runner.HISTORY_FILE}")
    if not check.identical:
        print(f"NONDETERMINISTIC: the histories differ first at line {check.line}:")
        print(f"  first:  {check.first}", end="")
        print(f"  second: {check.second}", end="")
        print(f"replay: {spec.command()} --check-determinism")
        return EXIT_HARNESS
    ops = first.results["stats"]["ops"]
    print(f"deterministic: both runs recorded the same {ops} ops byte for byte")
    _summarize(first.results, first.run_dir)
    if first.exit_code != 0:
        print(f"replay this run exactly: {spec.command()}")
    return first.exit_code


def _summarize(results: dict, run_dir: Path) -> None:
    by_f = results["stats"]["by_f"]
    counts = ", ".join(f"{f} {c['ok']}/{c['fail']}/{c['info']}" for f, c in sorted(by_f.items()))
    print(f"ops (ok/fail/info): {counts or 'none'}")
    fired = results["stats"]["faults"]
    print(f"faults fired: {', '.join(f'{k} {n}' for k, n in fired.items()) or 'none'}")
    facts = results["facts"]
    if results["anomalies"] and facts.get("interrupted"):
        print("anomalies in the history so far (not a verdict: the run was interrupted):")
    for kind, entry in results["anomalies"].items():
        print(f"  {kind}: {entry['count']}")
    error = facts.get("harness_error")
    if error:
        # The traceback is for a bug report (results.json keeps it), not for the terminal.
        where = run_dir / outputs.RESULTS_FILE
        print(f"harness failure: {error.splitlines()[-1]} (details in {where})", file=sys.stderr)
    print(f"verdict: {verdict_line(results)}")


def verdict_line(results: dict) -> str:
    """The verdict and, when it is not one the checkers earned, why."""
    facts = results["facts"]
    verdict = "INVALID" if results["verdict"] == "invalid" else results["verdict"]
    if facts.get("interrupted"):
        return f"{verdict}: interrupted by {facts['interrupted']}"
    if facts.get("missing"):
        return f"{verdict}: {evidence.describe(facts['missing'])}"
    return verdict


def report_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="replog report",
        description="Check a campaign's stored history again and re-render its results.json, "
        "junit.xml and report.html.",
    )
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args(argv)
    if not (args.run_dir / outputs.RESULTS_FILE).is_file():
        what = "no such directory" if not args.run_dir.exists() else "not a campaign run"
        print(
            f"replog report: {args.run_dir}: {what} (a run directory holds "
            f"{outputs.RESULTS_FILE} and {runner.HISTORY_FILE}, e.g. reports/latest)",
            file=sys.stderr,
        )
        return EXIT_HARNESS
    try:
        previous = outputs.read_results(args.run_dir)
        history = read_jsonl(args.run_dir / runner.HISTORY_FILE)
        Config.from_pairs(previous["spec"]["effective_config"])
    except (OSError, ValueError, KeyError, HistoryError, ConfigError) as error:
        print(f"replog report: {args.run_dir}: {error}", file=sys.stderr)
        return EXIT_HARNESS
    results = outputs.write(args.run_dir, previous["spec"], history, previous["facts"])
    _summarize(results, args.run_dir)
    print(f"report: {args.run_dir / outputs.REPORT_FILE}")
    return outputs.exit_code(results)
