"""`replog campaign --sim`: the same campaign on the deterministic simulator.

The phases, generators, nemeses, workloads, checkers and report are the runner's; only
the `Backend` differs: the cluster is an impl.sim.cluster.SimCluster (the real brokers,
controllers and native clients on an in-memory network, disks and clocks), and the
whole campaign runs inside impl.sim.guard.run, so every time is simulated (the time
limit, op timeouts, the history's `time`) and one seed decides everything: the same
spec gives the same history.jsonl byte for byte. How the faults are played (a pause
holds the node's traffic rather than stopping the process, ...) is the SimCluster
docstring's.

`check_determinism` is madsim's run-twice check: the campaign twice on one seed, the
two histories compared byte for byte.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import trio

from impl.runtime.runtime import Runtime
from impl.sim.cluster import SimCluster
from impl.sim.guard import run as guarded_run
from jepsen_py.campaign import runner
from jepsen_py.campaign.nemesis import Nemesis

# Simulated seconds between progress lines, terminal or not (see progress.py).
PROGRESS_INTERVAL_S = 2.0
CONTROL_ENDPOINT = "control"
LOG_FILE = "sim.log"
BROKER_LOGGER = "replog.broker"


class SimBackend:
    """A SimCluster as the campaign's cluster; made inside the simulation."""

    progress_interval_s = PROGRESS_INTERVAL_S

    def __init__(self, spec: runner.CampaignSpec, run_dir: Path) -> None:
        self.cluster = SimCluster(
            spec.brokers,
            seed=spec.seed,
            config=spec.assignments(),
            quorum_size=min(3, spec.brokers),
            topic=runner.TOPIC,
        )
        # No partition names this endpoint: the harness reaches every node, as the real
        # runner's control traffic bypasses the proxies.
        self.control = self.cluster.runtime(CONTROL_ENDPOINT)
        self.started_s = trio.current_time()

    async def start(self, nursery: trio.Nursery) -> None:
        await self.cluster.start(nursery)

    def client_runtime(self) -> Runtime:
        return self.cluster.runtime()

    async def stop(self, nemesis: Nemesis) -> dict[str, Any]:
        """A broker whose task ended without the nemesis killing it died on its own (an
        exception in one would have failed the run); simulated nodes have no exit codes."""
        crashed = [
            n
            for n in self.cluster.nodes
            if self.cluster.brokers[n] is None and n not in nemesis.state.killed
        ]
        await self.cluster.stop()
        return {"crashed": crashed, "exit_codes": {}}

    def facts(self, run_dir: Path) -> dict[str, Any]:
        held = self.cluster.net.cut_held_bytes
        return {
            "sim_duration_s": trio.current_time() - self.started_s,
            "cut_held_bytes": {f"{a}->{b}": n for (a, b), n in sorted(held.items(), key=str)},
            "down_s": {str(n): round(s, 3) for n, s in self.cluster.down_s.items()},
            "node_logs": {"all": LOG_FILE} if (run_dir / LOG_FILE).exists() else {},
        }


class _SimTimeFormatter(logging.Formatter):
    """Log lines stamped with simulated seconds (the wall clock says nothing here)."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            now_s = trio.current_time()
        except RuntimeError:
            now_s = float("nan")
        return f"{now_s:12.6f} {record.levelname} {record.getMessage()}"


@contextmanager
def _broker_log(path: Path) -> Iterator[None]:
    """Every simulated node logs through one process-wide logger: into the run's file."""
    handler = logging.FileHandler(path, encoding="utf-8", delay=True)
    handler.setFormatter(_SimTimeFormatter())
    logger = logging.getLogger(BROKER_LOGGER)
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()


def run(spec: runner.CampaignSpec, show_progress: bool = True) -> runner.Campaign:
    """The campaign on the simulator, under the determinism guard seeded by `spec.seed`."""
    if not spec.sim:
        spec = replace(spec, sim=True)

    def loop(run_dir: Path, campaign: Any, *args: Any) -> Any:
        with _broker_log(run_dir / LOG_FILE):
            return guarded_run(campaign, *args, seed=spec.seed)

    return runner.execute(spec, SimBackend, loop, show_progress)


@dataclass(frozen=True)
class Determinism:
    """Two runs of one spec: identical histories, or the first line where they differ."""

    runs: tuple[runner.Campaign, runner.Campaign]
    line: int | None = None
    first: str = ""
    second: str = ""

    @property
    def identical(self) -> bool:
        return self.line is None


def check_determinism(spec: runner.CampaignSpec, show_progress: bool = True) -> Determinism:
    runs = (run(spec, show_progress), run(spec, show_progress))
    histories = [
        (r.run_dir / runner.HISTORY_FILE).read_bytes().splitlines(keepends=True) for r in runs
    ]
    first, second = histories
    for number in range(1, max(len(first), len(second)) + 1):
        if _line(first, number) != _line(second, number):
            return Determinism(runs, number, _line(first, number), _line(second, number))
    return Determinism(runs)


def _line(lines: list[bytes], number: int) -> str:
    return lines[number - 1].decode() if number <= len(lines) else "<end of history>\n"
