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
"""

from __future__ import annotations

import os
import random
import time
import traceback
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import trio

from impl.client.admin import create_topics, wait_for_leaders
from impl.client.errors import ClientError
from impl.client.metadata import ClusterSession, TopicPartition
from impl.client.offsets import LATEST_TIMESTAMP, list_offsets
from impl.cluster.launcher import NODES_MAX
from impl.runtime.runtime import Runtime, real_runtime
from jepsen_py.campaign import generator as g
from jepsen_py.campaign import nemesis as nemeses
from jepsen_py.campaign import outputs, workloads
from jepsen_py.campaign.nemesis import Nemesis
from jepsen_py.campaign.processes import ProcessCluster
from jepsen_py.campaign.progress import Progress
from jepsen_py.campaign.recorder import Recorder
from jepsen_py.campaign.scheduler import Scheduler
from model.config import Config

TOPIC = "jepsen"
HISTORY_FILE = "history.jsonl"
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
PARTITIONS_MAX = 1_000


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

    def __post_init__(self) -> None:
        if self.workload not in workloads.WORKLOADS:
            raise ValueError(f"unknown workload {self.workload!r}")
        if min(self.time_limit_s, self.rate_per_s, self.nemesis_interval_s) <= 0:
            raise ValueError("the time limit, rate and nemesis interval must be positive")
        if not 1 <= self.brokers <= NODES_MAX:
            raise ValueError(f"brokers must be in [1, {NODES_MAX}]")
        if not 1 <= self.concurrency <= CLIENTS_MAX or not 1 <= self.partitions <= PARTITIONS_MAX:
            raise ValueError(
                f"concurrency must be in [1, {CLIENTS_MAX}], partitions in [1, {PARTITIONS_MAX}]"
            )

    def assignments(self) -> tuple[str, ...]:
        """The cluster's and clients' settings: campaign defaults, then the user's."""
        return (*CAMPAIGN_DEFAULTS, *self.config)

    def kafka_config(self) -> Config:
        return Config.parse(list(self.assignments()))

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        record["out"] = str(self.out)
        record["nemeses"] = list(self.nemeses)
        record["config"] = list(self.config)
        record["effective_config"] = self.kafka_config().differences()
        record["command"] = self.command()
        return record

    def command(self) -> str:
        """The command line that replays this campaign (same seed, same settings)."""
        words = ["replog", "campaign", "--workload", self.workload]
        words += ["--nemesis", ",".join(self.nemeses) or "none"]
        words += ["--time-limit", f"{self.time_limit_s:g}", "--rate", f"{self.rate_per_s:g}"]
        words += ["--concurrency", str(self.concurrency), "--brokers", str(self.brokers)]
        words += ["--partitions", str(self.partitions), "--seed", str(self.seed)]
        words += ["--nemesis-interval", f"{self.nemesis_interval_s:g}"]
        words += ["--nemesis-overlap"] if self.nemesis_overlap else []
        for assignment in self.config:
            words += ["--config", assignment]
        return " ".join(words)


@dataclass
class Campaign:
    """What a finished run left: where, its verdict and exit code."""

    run_dir: Path
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return outputs.exit_code(self.results)


def run(spec: CampaignSpec, show_progress: bool = True) -> Campaign:
    run_dir = _new_run_dir(spec)
    with open(run_dir / HISTORY_FILE, "w", encoding="utf-8") as stream:
        return trio.run(_campaign, spec, run_dir, stream, show_progress)


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
    spec: CampaignSpec, run_dir: Path, stream: Any, show_progress: bool
) -> Campaign:
    recorder = Recorder(stream)
    cluster = ProcessCluster(run_dir / "cluster", spec.brokers, spec.assignments(), TOPIC)
    rng = random.Random(spec.seed)
    nemesis = Nemesis(cluster, random.Random(rng.random()))
    facts: dict[str, Any] = {"started_at": time.time()}
    try:
        async with trio.open_nursery() as nursery:
            try:
                await _run_phases(spec, nursery, cluster, recorder, nemesis, rng, show_progress)
            finally:
                with trio.CancelScope(shield=True):
                    facts["cluster"] = await _stop(cluster, nemesis)
                nursery.cancel_scope.cancel()
    # Any failure of the harness ends the run with exit 2 and its traceback in results.json.
    except Exception as error:
        facts["harness_error"] = _format_error(error)
    finally:
        recorder.close()
    facts["duration_s"] = time.time() - facts["started_at"]
    facts["proxies"] = cluster.proxies.stats()
    facts["down_s"] = {str(n): round(s, 3) for n, s in cluster.down_s.items()}
    facts["node_logs"] = {
        str(n): str(p.relative_to(run_dir)) for n, p in cluster.node_logs().items() if p.exists()
    }
    results = outputs.write(run_dir, spec.to_json(), recorder.ops, facts)
    outputs.link_latest(spec.out, run_dir)
    return Campaign(run_dir, results)


async def _run_phases(
    spec: CampaignSpec,
    nursery: trio.Nursery,
    cluster: ProcessCluster,
    recorder: Recorder,
    nemesis: Nemesis,
    rng: random.Random,
    show_progress: bool,
) -> None:
    control = real_runtime(spec.seed)
    config = spec.kafka_config()
    with trio.fail_after(SETUP_TIMEOUT_S):
        await cluster.start(nursery, control)
        # The controller refuses a topic with more replicas than registered brokers.
        await _wait_registered(control, cluster, config)
        replication = min(config.replication_factor, spec.brokers)
        topics = [(TOPIC, spec.partitions, replication, {})]
        await create_topics(control, cluster.bootstrap, topics, config=config)
        await wait_for_leaders(control, cluster.bootstrap, [TOPIC], config=config)
    target = workloads.Target(
        real_runtime(spec.seed, cluster.client_link_map),
        cluster.bootstrap,
        config,
        TOPIC,
        spec.partitions,
    )
    scheduler = Scheduler(
        spec.concurrency, workloads.Clients(spec.workload, target), nemesis, recorder, rng
    )
    recorder.start_clock()
    progress = Progress(recorder, nemesis.state, spec.time_limit_s, enabled=show_progress)
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


async def _wait_registered(runtime: Runtime, cluster: ProcessCluster, config: Config) -> None:
    async with ClusterSession(runtime, cluster.bootstrap, config, HARNESS_CLIENT_ID) as session:
        while True:
            with suppress(ClientError):
                await session.cluster.refresh()
                if set(session.cluster.brokers) >= set(cluster.nodes):
                    return
            await trio.sleep(config.retry_backoff_ms / 1000)


async def _wait_recovered(
    runtime: Runtime, cluster: ProcessCluster, config: Config, partitions: int
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
