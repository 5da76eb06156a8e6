"""How often a campaign catches lost writes under an unsafe configuration, and how
often it raises a false alarm under the safe one.

    .venv/bin/python benchmarks/detection_rate.py [--runs 10] [--time-limit 60]

Each configuration runs `--runs` campaigns of `--time-limit` seconds with seeds
`--seed`, `--seed`+1, ... (one after another: the machine has two cores). A run counts
as a detection when its checkers report a lost acknowledged write (queue lost-write or
unseen, durability lost-acknowledged). The full default (5 x 10 x 60 s) takes about
an hour. Reports land under `--out`, one directory per configuration.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jepsen_py.campaign import runner  # noqa: E402 - after the path is set up

LOSSES = ("queue/lost-write", "queue/unseen", "durability/lost-acknowledged")


@dataclass(frozen=True)
class Row:
    label: str
    config: tuple[str, ...]
    nemeses: tuple[str, ...]
    expect_loss: bool
    nemesis_interval_s: float = 5.0


# Faults every 2 s come faster than the campaign's broker.session.timeout.ms (3 s): a
# killed broker is back before the controller fenced it, and replicas are more often
# behind when the next fault hits, which is when acks=1 loses what it acknowledged.
# With kills every 5 s, loopback replication (a millisecond behind) rarely leaves
# anything to lose.
ROWS = (
    Row("acks=1, kill", ("acks=1",), ("kill",), True, 2.0),
    Row("acks=1, partition", ("acks=1",), ("partition",), True),
    Row("min.insync.replicas=1, partition", ("min.insync.replicas=1",), ("partition",), True, 2.0),
    Row(
        "min.insync.replicas=1, partition+kill",
        ("min.insync.replicas=1",),
        ("partition", "kill"),
        True,
        2.0,
    ),
    Row("defaults, all nemeses", (), ("kill", "pause", "partition", "clock"), False),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--time-limit", type=float, default=60.0, metavar="S")
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "detection-rate")
    parser.add_argument("--only", help="run only the rows whose label contains this")
    return parser


def _one(row: Row, seed: int, args: argparse.Namespace) -> tuple[bool, int, int, str]:
    """(loss found, exit code, ok sends, run directory) of one campaign."""
    spec = runner.CampaignSpec(
        nemeses=row.nemeses,
        time_limit_s=args.time_limit,
        config=row.config,
        nemesis_interval_s=row.nemesis_interval_s,
        seed=seed,
        out=args.out / row.label.replace(" ", "").replace(",", "_"),
    )
    campaign = runner.run(spec, show_progress=False)
    results = campaign.results
    lost = any(kind in results["anomalies"] for kind in LOSSES)
    sends = results["stats"]["by_f"].get("send", {}).get("ok", 0)
    return lost, campaign.exit_code, sends, str(campaign.run_dir)


def main() -> int:
    args = _parser().parse_args()
    rows = [row for row in ROWS if args.only is None or args.only in row.label]
    print(f"{args.runs} runs x {args.time_limit:g} s per configuration", flush=True)
    summary = []
    for row in rows:
        found = failed = 0
        sends = []
        for run in range(args.runs):
            lost, code, ok_sends, run_dir = _one(row, args.seed + run, args)
            found += lost
            failed += code == 2
            sends.append(ok_sends)
            print(
                f"  {row.label:40} seed {args.seed + run}: exit {code}, {ok_sends} ok sends,"
                f" {'LOST WRITES' if lost else 'no loss'}  ({run_dir})",
                flush=True,
            )
        summary.append((row, found, failed, sum(sends) / max(len(sends), 1)))
    print()
    print(
        f"{'configuration':40} {'expected':>9} {'detected':>9} {'rate':>6} {'harness':>8} "
        f"{'ok sends':>9}"
    )
    for row, found, failed, mean_sends in summary:
        expected = "loss" if row.expect_loss else "none"
        print(
            f"{row.label:40} {expected:>9} {found:>4}/{args.runs:<4} "
            f"{found / args.runs:>6.0%} {failed:>8} {mean_sends:>9.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
