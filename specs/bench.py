"""`replog bench check`: the explorer's distinct states per second, single-threaded."""

from __future__ import annotations

import cProfile
import pstats

from model.arguments import Parser
from model.config import Config, ConfigError
from model.machine import ReplicationModel
from specs import explorer
from specs.check import describe_run, run_check
from specs.invariants import INVARIANTS
from specs.scopes import resolve


def main(argv: list[str]) -> int:
    parser = Parser(prog="replog bench check", description=__doc__)
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--scope", action="append", default=[], metavar="NAME")
    parser.add_argument("--profile", action="store_true", help="also print the top functions")
    args = parser.parse_args(argv)
    try:
        config = Config.parse(args.config)
        scopes = resolve(args.scope)
        for _, scope, _ in scopes:
            ReplicationModel(config, scope)  # raises for a configuration the scope cannot hold
    except (ConfigError, ValueError) as error:
        parser.exit(2, f"replog bench check: {error}\n")
    limits = explorer.Limits()
    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        profiler.enable()
    result = run_check(config, scopes, list(INVARIANTS), limits, jobs=1)
    if profiler:
        profiler.disable()
    print(f"explicit-state explorer, {config.label()}, one process:")
    for run in result.runs:
        print("  " + describe_run(run))
    distinct = sum(run.outcome.stats.distinct for run in result.runs)
    seconds = sum(run.outcome.stats.elapsed_s for run in result.runs)
    print(
        f"  total: {distinct:,} distinct states in {seconds:.1f} s = "
        f"{distinct / seconds:,.0f} distinct states/s (target >= 20,000)"
    )
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    return 0
