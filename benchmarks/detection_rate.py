"""How often a campaign catches lost writes under an unsafe configuration, and how
often it raises a false alarm under the safe one.

    .venv/bin/python benchmarks/detection_rate.py [--runs 10] [--time-limit 60]
        [--only LABEL-PART]...

Each configuration runs `--runs` campaigns of `--time-limit` seconds with seeds
`--seed`, `--seed`+1, ... (one after another: the machine has two cores). A run counts
as a detection when its checkers report a lost acknowledged write (queue lost-write or
unseen, durability lost-acknowledged). Every row takes about 11 minutes at 10 x 60 s;
`--only` (repeatable) keeps the rows whose label contains one of its values. Reports
land under `--out`, one directory per configuration.

Why the rows use the faults they do (see README, Campaigns):
- acks=1 loses what the leader acknowledged and no follower fetched yet when it dies.
  Followers fetch within a few milliseconds on loopback, so one kill rarely finds
  anything unreplicated: the row runs more clients at a higher rate, kills every 1 s
  of quiet for more chances, and kills the leader of the partition with the fewest
  in-sync replicas (`kill:leader`): a leader elected after the last kill, whose
  followers are still restarting or have not started fetching from it, holds the
  most writes nobody else has.
- min.insync.replicas=1 lets a leader acknowledge alone once its ISR is itself. Then
  only the leader's own disk holds those writes, and Kafka does not fsync them
  (flush.messages is unlimited): a power loss (`crash`) loses them, and the controller
  elects the same broker again (the last known leader, KIP-966). With three combined
  controllers, only an `inbound` partition shrinks the ISR to the leader (a symmetric
  cut that keeps the followers away also keeps the controller majority away), and the
  crash must come while it lasts: `--nemesis-overlap` nests the crash in the partition.
  The same faults under the defaults are the control row.
"""

from __future__ import annotations

import argparse
import os
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
    nemesis_overlap: bool = False
    rate_per_s: float = 200.0
    concurrency: int = 10


INBOUND_THEN_CRASH = ("partition:inbound", "crash:leader")
ROWS = (
    Row("acks=1, kill", ("acks=1",), ("kill:leader",), True, 1.0, rate_per_s=1000, concurrency=60),
    Row("acks=1, partition", ("acks=1",), ("partition",), True),
    Row(
        "min.insync.replicas=1, partition+crash",
        ("min.insync.replicas=1",),
        INBOUND_THEN_CRASH,
        True,
        nemesis_overlap=True,
    ),
    Row("defaults, partition+crash", (), INBOUND_THEN_CRASH, False, nemesis_overlap=True),
    Row("defaults, all nemeses", (), ("kill", "pause", "partition", "clock"), False),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--time-limit", type=float, default=60.0, metavar="S")
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "detection-rate")
    parser.add_argument(
        "--only",
        action="append",
        metavar="LABEL-PART",
        help="run only the rows whose label contains this (repeatable)",
    )
    return parser


def _one(row: Row, seed: int, args: argparse.Namespace) -> tuple[int, int, int, str]:
    """(lost writes found, exit code, ok sends, run directory) of one campaign."""
    spec = runner.CampaignSpec(
        nemeses=row.nemeses,
        time_limit_s=args.time_limit,
        config=row.config,
        nemesis_interval_s=row.nemesis_interval_s,
        nemesis_overlap=row.nemesis_overlap,
        rate_per_s=row.rate_per_s,
        concurrency=row.concurrency,
        seed=seed,
        out=args.out / row.label.replace(" ", "").replace(",", "_"),
    )
    campaign = runner.run(spec, show_progress=False)
    results = campaign.results
    anomalies = results["anomalies"]
    lost = max((anomalies[kind]["count"] for kind in LOSSES if kind in anomalies), default=0)
    sends = results["stats"]["by_f"].get("send", {}).get("ok", 0)
    return lost, campaign.exit_code, sends, str(campaign.run_dir)


def main() -> int:
    args = _parser().parse_args()
    rows = [row for row in ROWS if not args.only or any(part in row.label for part in args.only)]
    if not rows:
        print(f"no row matches {args.only}; rows: {[row.label for row in ROWS]}", file=sys.stderr)
        return 2
    print(f"{args.runs} runs x {args.time_limit:g} s per configuration", flush=True)
    print(f"load average at start: {_load()}", flush=True)
    summary = []
    for row in rows:
        found = failed = 0
        sends = []
        for run in range(args.runs):
            lost, code, ok_sends, run_dir = _one(row, args.seed + run, args)
            found += lost > 0
            failed += code == 2
            sends.append(ok_sends)
            verdict = f"{lost} LOST WRITES" if lost else "no loss"
            print(
                f"  {row.label:40} seed {args.seed + run}: exit {code}, {ok_sends} ok sends,"
                f" {verdict}  ({run_dir})",
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
    print(f"load average at the end: {_load()}")
    return 0


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
