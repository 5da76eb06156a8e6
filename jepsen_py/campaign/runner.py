"""A campaign against real broker processes, start to finish.

1. Start the brokers on loopback behind per-link proxies (data under the run dir),
   create the workload's topic and wait for its leaders.
2. Run clients and the nemesis under one generator for the time limit.
3. End every active fault and heal everything (the last nemesis op is `heal`).
4. Wait for the cluster to recover: every broker registered, every partition led, the
   end offsets still.
5. Final reads, on fresh processes.
6. Stop the brokers, check the history, write the report.

A failure of the harness itself (the cluster never came up, a bug) ends the run with
exit 2 and whatever history was recorded.

The phases are the same on the simulator (jepsen_py.campaign.sim): a `Backend` makes the
cluster and the runtimes, and `execute` takes the event loop (trio.run, or the
simulator's guarded run); the wall clock is read, and the history checked, outside it.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import signal
import sys
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import trio

from impl.client.admin import create_topics, wait_for_leaders
from impl.client.errors import ClientError
from impl.client.metadata import ClusterSession, TopicPartition
from impl.client.offsets import LATEST_TIMESTAMP, list_offsets
from impl.cluster.launcher import NODES_MAX, check_fits
from impl.runtime.runtime import Runtime, real_runtime
from jepsen_py.campaign import consumer_workload, outputs, workloads
from jepsen_py.campaign import generator as g
from jepsen_py.campaign import nemesis as nemeses
from jepsen_py.campaign.nemesis import Faults, Nemesis
from jepsen_py.campaign.processes import ProcessCluster
from jepsen_py.campaign.progress import Progress
from jepsen_py.campaign.recorder import Recorder
from jepsen_py.campaign.scheduler import Scheduler
from jepsen_py.history import Op
from model.config import Config

TOPIC = "jepsen"
HISTORY_FILE = "history.jsonl"
SPEC_FILE = "spec.json"
# Test-tuned timeouts so the cluster notices faults and recovers within seconds; the
# user's --config overrides any of them, and results.json records what was used.
CAMPAIGN_DEFAULTS = (
    "broker.session.timeout.ms=3000",
    "broker.heartbeat.interval.ms=500",
    "replica.lag.time.max.ms=2000",
    "request.timeout.ms=2000",
    "delivery.timeout.ms=4000",
    "max.block.ms=2000",
    "metadata.max.age.ms=2000",
    "fetch.max.wait.ms=100",
    "default.api.timeout.ms=3000",
    # Consumer groups: a crashed member is noticed in seconds, the first join is prompt.
    "session.timeout.ms=6000",
    "heartbeat.interval.ms=1000",
    "group.initial.rebalance.delay.ms=0",
)
OP_TIMEOUT_S = 5.0
FINAL_READ_TIMEOUT_S = 60.0
SETUP_TIMEOUT_S = 60.0
RECOVERY_TIMEOUT_S = 60.0
RECOVERY_POLL_S = 1.0
HARNESS_CLIENT_ID = "replog-harness"
CLIENTS_MAX = 1_000
BROKER_ERRORS_SHOWN = 5
# The level field of a broker process' log line ("<date> <time> broker <id> LEVEL ...",
# impl/broker/main.py) or of sim.log's ("<simulated seconds> LEVEL ...", sim.py), so
# that a message quoting an error name is not taken for one.
_ERROR_LINE = re.compile(
    r"^(?:\d{4}-\d\d-\d\d [\d:,]+ broker \d+|\s*(?:\d+\.\d+|nan)) (?:ERROR|CRITICAL) "
)
PARTITIONS_MAX = 1_000
INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True)
class CampaignSpec:
    workload: str = "queue"
    nemeses: tuple[str, ...] = nemeses.DEFAULT_KINDS
    time_limit_s: float = 60.0
    rate_per_s: float = 200.0
    concurrency: int = 10
    brokers: int = 3
    partitions: int = 4
    config: tuple[str, ...] = ()
    seed: int = 0
    out: Path = Path("reports")
    nemesis_interval_s: float = 5.0
    nemesis_overlap: bool = False
    sim: bool = False

    def __post_init__(self) -> None:
        """ValueError naming the command-line flag of the first bad setting."""
        if self.workload not in workloads.WORKLOADS:
            raise ValueError(
                f"--workload: unknown workload {self.workload!r} "
                f"(choose from {', '.join(workloads.WORKLOADS)})"
            )
        positive = {
            "--time-limit": (self.time_limit_s, "seconds"),
            "--rate": (self.rate_per_s, "ops/s"),
            "--nemesis-interval": (self.nemesis_interval_s, "seconds"),
        }
        for flag, (value, unit) in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{flag} must be a positive number of {unit}, not {value:g}")
        counts = {
            "--brokers": (self.brokers, 1, NODES_MAX),
            "--concurrency": (self.concurrency, self._concurrency_min(), CLIENTS_MAX),
            "--partitions": (self.partitions, 1, PARTITIONS_MAX),
        }
        for flag, (value, low, high) in counts.items():
            if not low <= value <= high:
                raise ValueError(f"{flag} must be in [{low}, {high}], not {value}")

    def _concurrency_min(self) -> int:
        return consumer_workload.CONCURRENCY_MIN if self.workload == "consumer" else 1

    def assignments(self) -> tuple[str, ...]:
        """The cluster's and clients' settings: campaign defaults, then the user's."""
        return (*CAMPAIGN_DEFAULTS, *self.config)

    def kafka_config(self) -> Config:
        """The settings, parsed and checked against the cluster's size; ConfigError
        names the key."""
        config = Config.parse(list(self.assignments()))
        check_fits(config, self.brokers, groups=self.workload == "consumer")
        return config

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        record["out"] = str(self.out)
        record["nemeses"] = list(self.nemeses)
        record["config"] = list(self.config)
        record["effective_config"] = self.kafka_config().differences()
        # Every setting as used, so `replog analyze` reads what the run had, not what
        # a later version's defaults would be.
        record["kafka_config"] = self.kafka_config().to_pairs()
        record["topic_replication_factor"] = self.kafka_config().replication_factor
        record["command"] = self.command()
        return record

    def command(self) -> str:
        """The command line that replays this campaign (same seed, same settings)."""
        words = ["replog", "campaign", *(["--sim"] if self.sim else [])]
        words += ["--workload", self.workload]
        words += ["--nemesis", ",".join(self.nemeses) or "none"]
        words += ["--time-limit", _exact(self.time_limit_s), "--rate", _exact(self.rate_per_s)]
        words += ["--concurrency", str(self.concurrency), "--brokers", str(self.brokers)]
        words += ["--partitions", str(self.partitions), "--seed", str(self.seed)]
        words += ["--nemesis-interval", _exact(self.nemesis_interval_s)]
        words += ["--nemesis-overlap"] if self.nemesis_overlap else []
        for assignment in self.config:
            words += ["--config", assignment]
        return " ".join(words)


def _exact(number: float) -> str:
    """The number short where that reads back the same, else in full: a replay must get
    the very same times (3.3333333333333335 is not 3.33333)."""
    short = f"{number:g}"
    return short if float(short) == number else repr(number)


@dataclass
class Campaign:
    """What a finished run left: where, its verdict and exit code."""

    run_dir: Path
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return outputs.exit_code(self.results)


class CampaignCluster(Faults, Protocol):
    @property
    def bootstrap(self) -> str: ...


class Backend(Protocol):
    """What a real and a simulated campaign do differently, made inside the event loop:
    the cluster, the harness' runtime (`control`, never cut) and the clients' one, how
    the cluster stops and what it reports."""

    cluster: CampaignCluster
    control: Runtime
    # A fixed progress interval (simulated runs: the wakeups are part of the schedule).
    progress_interval_s: float | None

    async def start(self, nursery: trio.Nursery) -> None: ...

    def client_runtime(self) -> Runtime: ...

    async def stop(self, nemesis: Nemesis) -> dict[str, Any]:
        """Stop the cluster: {"crashed": nodes that died unbidden, "exit_codes": ...}."""

    def facts(self, run_dir: Path) -> dict[str, Any]:
        """What results.json reports of the cluster: downtime, links, node logs."""


class ProcessBackend:
    """Broker processes on loopback behind per-link proxies (data under the run dir)."""

    progress_interval_s = None

    def __init__(self, spec: CampaignSpec, run_dir: Path) -> None:
        self.cluster = ProcessCluster(run_dir / "cluster", spec.brokers, spec.assignments(), TOPIC)
        self.control = real_runtime(spec.seed)
        self.seed = spec.seed

    async def start(self, nursery: trio.Nursery) -> None:
        await self.cluster.start(nursery, self.control)

    def client_runtime(self) -> Runtime:
        return real_runtime(self.seed, self.cluster.client_link_map)

    async def stop(self, nemesis: Nemesis) -> dict[str, Any]:
        return await _stop(self.cluster, nemesis)

    def facts(self, run_dir: Path) -> dict[str, Any]:
        cluster = self.cluster
        return {
            "proxies": cluster.proxies.stats(),
            "down_s": {str(n): round(s, 3) for n, s in cluster.down_s.items()},
            "node_logs": {
                str(n): str(p.relative_to(run_dir))
                for n, p in cluster.node_logs().items()
                if p.exists()
            },
        }


BackendFactory = Callable[[CampaignSpec, Path], Backend]
# loop(run_dir, async_fn, *args) -> async_fn's result: trio.run, or the simulator's.
EventLoop = Callable[..., Any]


def run(spec: CampaignSpec, show_progress: bool = True) -> Campaign:
    """A campaign against real processes (jepsen_py.campaign.sim.run simulates one)."""
    if spec.sim:
        raise ValueError("a simulated campaign runs through jepsen_py.campaign.sim.run")
    return execute(spec, ProcessBackend, _trio_loop, show_progress)


def _trio_loop(_: Path, async_fn: Callable[..., Any], *args: Any) -> Any:
    return trio.run(async_fn, *args)


def execute(
    spec: CampaignSpec, backend: BackendFactory, loop: EventLoop, show_progress: bool
) -> Campaign:
    """The phases under `loop` on the cluster `backend` makes; then, outside the loop,
    the wall clock, the checkers and the report."""
    run_dir = _new_run_dir(spec)
    started_at = time.time()
    # Written before anything runs, so a run that dies still says how it was configured.
    (run_dir / SPEC_FILE).write_text(json.dumps(spec.to_json(), indent=1) + "\n")
    with _sigterm_as_ctrl_c():
        with open(run_dir / HISTORY_FILE, "w", encoding="utf-8") as stream:
            history, facts = loop(run_dir, _campaign, spec, backend, run_dir, stream, show_progress)
        facts = {"started_at": started_at, **facts, "duration_s": time.time() - started_at}
        try:
            results = outputs.write(run_dir, spec.to_json(), history, facts)
        except KeyboardInterrupt as interrupt:
            # Stopped while checking (a linearizability search can take minutes): the
            # report says so, without the checkers' verdicts.
            name = interrupt.args[0] if interrupt.args else "SIGINT"
            facts["interrupted"] = f"{name} during the checks"
            results = outputs.write(run_dir, spec.to_json(), history, facts, check=False)
        outputs.link_latest(spec.out, run_dir)
    return Campaign(run_dir, results)


@contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """Outside the event loop (its own handler is `_interrupt_on`'s), SIGTERM stops the
    run as Ctrl-C does, with KeyboardInterrupt, rather than killing it outright."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _new_run_dir(spec: CampaignSpec) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = spec.out / f"{stamp}-{spec.workload}-seed{spec.seed}"
    run_dir, copy = base, 1
    while run_dir.exists():
        copy += 1
        run_dir = base.with_name(f"{base.name}-{copy}")
    run_dir.mkdir(parents=True)
    return run_dir


async def _campaign(
    spec: CampaignSpec,
    make_backend: BackendFactory,
    run_dir: Path,
    stream: Any,
    show_progress: bool,
) -> tuple[list[Op], dict[str, Any]]:
    recorder = Recorder(stream)
    facts: dict[str, Any] = {}
    phases = trio.CancelScope()
    # Ctrl-C and SIGTERM end the phases, never the cluster's stop: no broker outlives
    # the run, and the history so far is checked and reported as incomplete.
    with trio.open_signal_receiver(*INTERRUPTS) as signals:
        backend = make_backend(spec, run_dir)
        rng = random.Random(spec.seed)
        nemesis = Nemesis(backend.cluster, random.Random(rng.random()))
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_interrupt_on, signals, phases, facts)
                try:
                    with phases:
                        await _run_phases(
                            spec, nursery, backend, recorder, nemesis, rng, show_progress
                        )
                finally:
                    with trio.CancelScope(shield=True):
                        facts["cluster"] = await backend.stop(nemesis)
                    nursery.cancel_scope.cancel()
        # Any failure of the harness ends the run with exit 2 and its traceback in results.json.
        except Exception as error:
            facts["harness_error"] = _format_error(error)
        finally:
            recorder.close()
    facts.update(backend.facts(run_dir))
    facts["broker_errors"] = broker_errors(run_dir, facts.get("node_logs", {}))
    return recorder.ops, facts


async def _interrupt_on(
    signals: AsyncIterator[int], phases: trio.CancelScope, facts: dict[str, Any]
) -> None:
    """The first signal cancels the phases and is noted in the facts; later ones only
    say that the run is stopping already."""
    async for signum in signals:
        name = signal.Signals(signum).name
        if "interrupted" in facts:
            print(f"replog campaign: {name}: already stopping", file=sys.stderr, flush=True)
            continue
        facts["interrupted"] = name
        phases.cancel()
        print(
            f"\nreplog campaign: interrupted by {name}: stopping the cluster, then checking "
            "and reporting the history so far",
            file=sys.stderr,
            flush=True,
        )


def broker_errors(run_dir: Path, node_logs: dict[str, str]) -> dict[str, Any]:
    """ERROR-level lines of the brokers' logs (an exception in a request handler, say):
    a count and the first BROKER_ERRORS_SHOWN of them, each prefixed with its log's name.
    CRITICAL lines count too."""
    count = 0
    first: list[str] = []
    for name, relative in sorted(node_logs.items()):
        with open(run_dir / relative, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if not _ERROR_LINE.match(line):
                    continue
                count += 1
                if len(first) < BROKER_ERRORS_SHOWN:
                    first.append(f"{name}: {line.strip()}")
    return {"count": count, "first": first}


async def _run_phases(
    spec: CampaignSpec,
    nursery: trio.Nursery,
    backend: Backend,
    recorder: Recorder,
    nemesis: Nemesis,
    rng: random.Random,
    show_progress: bool,
) -> None:
    cluster, control = backend.cluster, backend.control
    config = spec.kafka_config()
    with trio.fail_after(SETUP_TIMEOUT_S):
        await backend.start(nursery)
        await _wait_registered(control, cluster, config)
        topics = [(TOPIC, spec.partitions, config.replication_factor, {})]
        await create_topics(control, cluster.bootstrap, topics, config=config)
        await wait_for_leaders(control, cluster.bootstrap, [TOPIC], config=config)
        if spec.workload == "consumer":
            await consumer_workload.start_group_at_zero(
                control, cluster.bootstrap, config, TOPIC, spec.partitions
            )
    target = workloads.Target(
        backend.client_runtime(),
        cluster.bootstrap,
        config,
        TOPIC,
        spec.partitions,
    )
    scheduler = Scheduler(
        spec.concurrency, workloads.Clients(spec.workload, target), nemesis, recorder, rng
    )
    recorder.start_clock()
    progress = Progress(
        recorder,
        nemesis.state,
        spec.time_limit_s,
        enabled=show_progress,
        interval_s=backend.progress_interval_s,
    )
    nursery.start_soon(progress.run)
    main = g.any_of(
        workloads.client_generator(spec.workload, spec.partitions, spec.rate_per_s),
        nemeses.schedule(spec.nemeses, spec.nemesis_interval_s, spec.nemesis_overlap),
    )
    await scheduler.run(g.time_limit(spec.time_limit_s, main), OP_TIMEOUT_S)
    progress.phase = "healing"
    await scheduler.run(g.nemesis(g.seq(*nemesis.ending_ops())), OP_TIMEOUT_S)
    progress.phase = "recovering"
    await _wait_recovered(control, cluster, config, spec.partitions)
    progress.phase = "final reads"
    final = workloads.final_reads(spec.workload, spec.partitions, recorder.ops)
    await scheduler.run(final, FINAL_READ_TIMEOUT_S)
    progress.stop()


async def _wait_registered(runtime: Runtime, cluster: CampaignCluster, config: Config) -> None:
    async with ClusterSession(runtime, cluster.bootstrap, config, HARNESS_CLIENT_ID) as session:
        while True:
            with suppress(ClientError):
                await session.cluster.refresh()
                if set(session.cluster.brokers) >= set(cluster.nodes):
                    return
            await trio.sleep(config.retry_backoff_ms / 1000)


async def _wait_recovered(
    runtime: Runtime, cluster: CampaignCluster, config: Config, partitions: int
) -> None:
    """Until every broker is registered, every partition led and the end offsets are
    still; gives up quietly after RECOVERY_TIMEOUT_S (the final reads then show what
    the cluster could serve)."""
    tps = [TopicPartition(TOPIC, p) for p in range(partitions)]
    previous: dict[TopicPartition, int] | None = None
    with trio.move_on_after(RECOVERY_TIMEOUT_S):
        while True:
            await trio.sleep(RECOVERY_POLL_S)
            try:
                async with ClusterSession(
                    runtime, cluster.bootstrap, config, "replog-harness"
                ) as s:
                    await s.cluster.refresh([TOPIC])
                    registered = set(s.cluster.brokers) >= set(cluster.nodes)
                    led = all(s.cluster.leader(tp) is not None for tp in tps)
                    ends = await list_offsets(
                        s.cluster, tps, LATEST_TIMESTAMP, config.default_api_timeout_ms
                    )
            except ClientError:
                continue
            if registered and led and ends == previous:
                return
            previous = ends


async def _stop(cluster: ProcessCluster, nemesis: Nemesis) -> dict[str, Any]:
    """Stop every broker; note any that died without the nemesis killing it, or that did
    not stop cleanly."""
    crashed = [
        node
        for node, process in cluster.cluster.processes.items()
        if node not in nemesis.state.killed
        and process.popen is not None
        and process.popen.poll() is not None
    ]
    codes = await cluster.stop()
    return {"crashed": crashed, "exit_codes": {str(n): c for n, c in codes.items()}}


def _format_error(error: BaseException) -> str:
    """The traceback, without the nursery groups that wrap a single error."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return "".join(traceback.format_exception(error)).strip()


def new_seed() -> int:
    return int.from_bytes(os.urandom(4), "big")
