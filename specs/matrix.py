"""The safety matrix: invariants x configurations, each cell held or violated with the
length of the shortest counterexample found within the bounds, or unknown when a time
limit stopped a search before its bounds."""

from __future__ import annotations

from dataclasses import dataclass

from model.config import Config
from model.machine import Scope
from specs import explorer
from specs.check import OnProgress, Task, explore, progress_interval, run_in_workers
from specs.invariants import GROUP_INVARIANTS, INVARIANTS
from specs.scopes import resolve
from specs.verdict import GO_FURTHER, HELD, UNKNOWN, VIOLATED

# (settings, the operational claim the row checks)
ROWS: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        (),
        "RF=3, min.insync.replicas=2, acks=all: loses no acknowledged write; below "
        "min.insync.replicas it refuses writes (NOT_ENOUGH_REPLICAS) instead",
    ),
    (("acks=1",), "acks=1 loses acknowledged data on leader failover"),
    (("min.insync.replicas=1",), "acks=all with min.insync.replicas=1 is durability theater"),
    (("unclean.leader.election.enable=true",), "unclean election truncates committed data"),
    (("replog.truncation=high-watermark",), "before KIP-101: truncating to the HW loses data"),
    (("replog.truncation=kip-101",), "KIP-101 without KIP-279: logs diverge"),
    (("replog.isr.expand=hw-only",), "before KAFKA-7128: a lagging replica rejoins too early"),
    (("replog.fetch.epoch-fencing=false",), "before KIP-320: stale fetches are trusted"),
    (("replog.elr=false",), "before KIP-966: an empty-disk restart leads the ISR"),
    (("replog.hw.min-isr-guard=false",), "before KAFKA-15583: HW advances below min ISR"),
)


# ConsistentRead needs a consumer, and the suite's scopes have none (`replog check
# --consumers` adds one), nor a consumer group: those columns would say "held" without
# having been exercised.
COLUMNS = tuple(
    name for name in INVARIANTS if name != "ConsistentRead" and name not in GROUP_INVARIANTS
)


# The matrix's scopes and how deep each is searched, chosen by measurement: the cheapest
# depths at which every row still shows what its setting costs (the story each needs in
# parentheses), so that regenerating the whole matrix is a CI gate of about a minute and
# a half on two cores. `failover` stands in for the check suite's `outage` (the same
# two-ISR-members-lost story, a quarter of the states). Costliest first: the worker
# pool then ends on short searches.
MATRIX_DEPTHS: tuple[tuple[str, int], ...] = (
    ("disk", 12),  # replog.elr=false (12), min.insync.replicas=1 (8), min-isr guard (7)
    ("failover", 11),  # unclean election truncates committed data (11)
    ("clock", 12),  # replog.isr.expand=hw-only (12), HW truncation (11)
    ("elect", 10),  # replog.truncation=kip-101 and fetch.epoch-fencing=false diverge (10)
    ("zombie", 8),  # a zombie leader: nothing breaks within it for any row
)


@dataclass(frozen=True)
class Bounds:
    """Which scopes the matrix searches and how deep: `depths` (the CI gate's by default),
    or `depth` for every scope instead; never deeper than a scope's own bound. No time
    limit by default, so the cells depend on the bounds only; a search that `time_limit_s`
    stops leaves its cells unknown."""

    depths: tuple[tuple[str, int], ...] = MATRIX_DEPTHS
    depth: int | None = None
    time_limit_s: float | None = None

    def scopes(self) -> list[tuple[str, Scope, int]]:
        wanted = dict(self.depths)
        return [
            (name, scope, min(own, self.depth or wanted[name]))
            for name, scope, own in resolve(list(wanted))
        ]

    def describe(self) -> str:
        """The bounds as the matrix file's header records them."""
        return ", ".join(f"{name} (depth <= {depth})" for name, _, depth in self.scopes())


@dataclass(frozen=True)
class Cell:
    verdict: str  # held, violated or unknown
    length: int = 0  # shortest counterexample found (violated only)

    def render(self) -> str:
        return f"violated ({self.length})" if self.verdict == VIOLATED else self.verdict


def compute(
    bounds: Bounds,
    jobs: int | None = None,
    on_progress: OnProgress | None = None,
) -> dict[str, dict[str, Cell]]:
    """{row label: {invariant: cell}} for every row of ROWS. A cell is violated if any
    scope's search found a counterexample, else unknown if a limit stopped one of them
    before its bound, else held."""
    names = COLUMNS
    configs = [Config.parse(list(settings)) for settings, _ in ROWS]
    every_s = progress_interval(on_progress)
    tasks = []
    for scope_name, scope, depth in bounds.scopes():
        limits = explorer.Limits(depth_max=depth, time_limit_s=bounds.time_limit_s)
        for config in configs:
            tasks.append(
                Task(
                    scope_name,
                    config,
                    scope,
                    names,
                    limits,
                    "bfs",
                    1,
                    0,
                    collect=True,
                    progress_every_s=every_s,
                    title=f"{config.label()} / scope {scope_name}",
                )
            )
    runs = run_in_workers(explore, tasks, jobs, on_progress)
    table: dict[str, dict[str, Cell]] = {}
    for task, run in zip(tasks, runs, strict=True):
        merge(table.setdefault(task.config.label(), {n: Cell(HELD) for n in names}), run.outcome)
    return table


def merge(row: dict[str, Cell], outcome: explorer.Outcome) -> None:
    """Fold one scope's search into a row: a violation beats anything (the shortest
    wins), and a search stopped by a limit makes the cells it did not violate unknown
    unless another scope's search violated them."""
    cut_short = outcome.stats.stopped_by in GO_FURTHER
    for name, old in row.items():
        found = outcome.violations.get(name)
        if found is not None:
            if old.verdict != VIOLATED or len(found.trace) < old.length:
                row[name] = Cell(VIOLATED, len(found.trace))
        elif cut_short and old.verdict == HELD:
            row[name] = Cell(UNKNOWN)


def complete(table: dict[str, dict[str, Cell]]) -> bool:
    """Whether every cell has a verdict (no cell is unknown)."""
    return all(cell.verdict != UNKNOWN for row in table.values() for cell in row.values())


def render_markdown(table: dict[str, dict[str, Cell]], bounds: Bounds) -> str:
    names = list(COLUMNS)
    claims = {Config.parse(list(settings)).label(): claim for settings, claim in ROWS}
    scopes = bounds.describe()
    lines = [
        "# Safety matrix",
        "",
        "Generated by `replog matrix`; a test regenerates it with the same bounds and fails",
        "naming every cell that flipped. Each row is one configuration (everything else at",
        "replog's defaults); each cell is `held` (breadth-first search of the model found no",
        "violation within the bounds), `violated (n)`, n the length of the shortest",
        "counterexample in steps, or `unknown` (a time limit stopped a search before its",
        f"bounds, without a violation). Scopes searched: {scopes}.",
        "`replog check --config KEY=VALUE --scope NAME` prints a counterexample's trace.",
        "ConsistentRead is left out: these scopes have no consumer.",
        "",
        "| configuration | " + " | ".join(names) + " | claim |",
        "|---|" + "---|" * len(names) + "---|",
    ]
    for label, row in table.items():
        cells = " | ".join(row[name].render() for name in names)
        lines.append(f"| {label} | {cells} | {claims[label]} |")
    return "\n".join(lines) + "\n"


def parse_markdown(text: str) -> dict[str, dict[str, str]]:
    """{row: {invariant: cell text}} from a rendered matrix (for the CI comparison)."""
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    if not rows:
        raise ValueError("no matrix table found")
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    names = header[1:-1]
    table = {}
    for line in rows[1:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        table[cells[0]] = dict(zip(names, cells[1:-1], strict=True))
    return table


def differences(
    expected: dict[str, dict[str, str]], actual: dict[str, dict[str, str]]
) -> list[str]:
    """Every cell that differs, as `row / invariant: expected -> actual`."""
    out = []
    for row in sorted(set(expected) | set(actual)):
        old, new = expected.get(row, {}), actual.get(row, {})
        for name in sorted(set(old) | set(new)):
            if old.get(name) != new.get(name):
                out.append(
                    f"{row} / {name}: {old.get(name, 'absent')} -> {new.get(name, 'absent')}"
                )
    return out
