"""`replog bench sim`: how much faster than real time the simulator runs the real code.

Two figures on a 3-broker combined-mode cluster (RF=3, min.insync.replicas=2):
- idle: simulated seconds per wall second with no client, and trio task steps per
  simulated second (what an idle cluster costs: heartbeats, Raft ticks, metadata polls);
- load: the same with `--producers` acks=all producers each writing one record every
  1/`--rate` simulated seconds and awaiting its acknowledgement, one consumer tailing,
  and one fault (kill, power loss, pause, isolation, clock bump) every other
  `--fault-interval` simulated seconds; reports simulated seconds per wall second and
  client ops (acknowledged writes + records read) per wall second.
Each figure also gives simulated seconds per CPU second and CPU microseconds per trio
step (time.process_time: less sensitive to other processes than the wall clock), and
the run ends with the load average.
`--profile FILE` writes a cProfile of the load phase.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import random
import time
from dataclasses import dataclass

import trio

from impl.client import Consumer, Producer, TopicPartition
from impl.client.admin import create_topics, wait_for_leaders
from impl.client.errors import ClientError
from impl.runtime.waits import sleep_until
from impl.sim.cluster import SimCluster
from impl.sim.guard import run
from model.arguments import integer, new_file, number_above
from model.config import Config

TOPIC = "jepsen"
PARTITIONS = 3
BROKER_CONFIG = ("min.insync.replicas=2",)
CLIENT_CONFIG = Config.parse(
    ["acks=all", "request.timeout.ms=3000", "delivery.timeout.ms=10000", "linger.ms=1"]
)


class StepCounter(trio.abc.Instrument):
    """Counts trio task steps: the unit of work a simulated second costs.

    Without a per-step hook: a `before_task_step` instrument costs ~1.8 CPU us a step
    (5% of a loaded simulation, which no simulation outside this benchmark pays). trio
    counts every step of a task but its last in the task's `_schedule_points`; the
    count is that sum over the live tasks, plus each exited task's steps, taken when
    it exits (the one hook this needs, once per task)."""

    def __init__(self) -> None:
        self._exited_steps = 0
        self._at_start: dict[trio.lowlevel.Task, int] = {}

    def start(self) -> None:
        """Count from now: hooks `task_exited` and notes each live task's count."""
        self._at_start = {task: task._schedule_points for task in _live_tasks()}
        self._exited_steps = 0
        trio.lowlevel.add_instrument(self)

    def stop(self) -> None:
        trio.lowlevel.remove_instrument(self)

    @property
    def steps(self) -> int:
        live = sum(t._schedule_points - self._at_start.get(t, 0) for t in _live_tasks())
        return self._exited_steps + live

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self._exited_steps += task._schedule_points + 1 - self._at_start.pop(task, 0)


def _live_tasks() -> list[trio.lowlevel.Task]:
    tasks = []
    pending = [trio.lowlevel.current_root_task()]
    while pending:
        task = pending.pop()
        if task is not None:
            tasks.append(task)
            pending.extend(t for n in task.child_nurseries for t in n.child_tasks)
    return tasks


@dataclass
class Figures:
    sim_s: float = 0.0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    steps: int = 0
    writes: int = 0
    reads: int = 0

    def line(self, name: str) -> str:
        ratio = self.sim_s / self.wall_s
        ops = (self.writes + self.reads) / self.wall_s
        return (
            f"{name}: {self.sim_s:.0f} simulated s in {self.wall_s:.2f} wall s = "
            f"{ratio:.1f}x real time ({self.sim_s / self.cpu_s:.1f}x per CPU s); "
            f"{self.steps / self.sim_s:.0f} trio steps per simulated s, "
            f"{self.cpu_s / self.steps * 1e6:.0f} CPU us per step; {self.writes} acked "
            f"writes + {self.reads} reads = {ops:.0f} client ops per wall s"
        )


async def _producer(
    cluster: SimCluster, figures: Figures, writer: int, rate: float, writes_max: int
) -> None:
    """One write every 1/rate simulated s, each awaited; after a stall (a fault held the
    acknowledgement) it resumes at the rate rather than catching up in a burst. The phase
    cancels it; `writes_max` (what the phase can hold at the rate) bounds it regardless."""
    next_at = trio.current_time()
    async with Producer(cluster.runtime(), cluster.bootstrap, CLIENT_CONFIG) as producer:
        for i in range(writes_max):
            delivery = await producer.send(TOPIC, f"w{writer}-{i}".encode())
            try:
                await delivery.wait()
            except ClientError:
                pass
            else:
                figures.writes += 1
            next_at = max(next_at + 1 / rate, trio.current_time())
            await sleep_until(next_at)


async def _consumer(cluster: SimCluster, figures: Figures) -> None:
    tps = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
    async with Consumer(cluster.runtime(), cluster.bootstrap, CLIENT_CONFIG) as consumer:
        consumer.assign(tps)
        consumer.seek_to_beginning(tps)
        while True:
            try:
                figures.reads += len(await consumer.poll(500))
            except ClientError:
                await trio.sleep(0.5)


async def _faults(cluster: SimCluster, seed: int, interval_s: float) -> None:
    """Every `interval_s`: a kill, power loss, pause, partition or clock bump of a random
    broker (a leader for kill and crash), held for `interval_s`, then ended."""
    rng = random.Random(seed)
    while True:
        await trio.sleep(interval_s)
        node = rng.choice(cluster.nodes)
        kind = rng.choice(("kill", "crash", "pause", "partition", "clock"))
        if kind in ("kill", "crash"):
            node = rng.choice(sorted(set((await cluster.partition_leaders()).values())) or [node])
            await (cluster.kill if kind == "kill" else cluster.crash)(node)
        elif kind == "pause":
            await cluster.pause(node)
        elif kind == "partition":
            others = [n for n in cluster.nodes if n != node]
            await cluster.cut({(node, n) for n in others} | {(n, node) for n in others})
        else:
            await cluster.adjust_clock(
                node, rng.choice((-1, 1)) * rng.randrange(100, 300_000), False
            )
        await trio.sleep(interval_s)
        await cluster.restart(node)
        await cluster.resume(node)
        await cluster.heal_network()
        await cluster.adjust_clock(node, 0, True)


async def _measure(args: argparse.Namespace, idle: Figures, load: Figures) -> None:
    counter = StepCounter()
    async with trio.open_nursery() as nursery:
        cluster = SimCluster(3, seed=args.seed, config=BROKER_CONFIG, topic=TOPIC)
        await cluster.start(nursery)
        await cluster.wait_for_brokers()
        runtime = cluster.runtime()
        await create_topics(runtime, cluster.bootstrap, [(TOPIC, PARTITIONS, 3, {})])
        await wait_for_leaders(runtime, cluster.bootstrap, [TOPIC])
        counter.start()
        await _phase(idle, counter, args.idle_seconds, None)
        async with trio.open_nursery() as clients:
            for writer in range(args.producers):
                writes_max = int(args.rate * args.seconds) + 1
                clients.start_soon(_producer, cluster, load, writer, args.rate, writes_max)
            clients.start_soon(_consumer, cluster, load)
            clients.start_soon(_faults, cluster, args.seed, args.fault_interval)
            profile = cProfile.Profile() if args.profile else None
            await _phase(load, counter, args.seconds, profile)
            if profile is not None:
                profile.dump_stats(args.profile)
            clients.cancel_scope.cancel()
        counter.stop()
        await cluster.heal_network()
        await cluster.stop()
        nursery.cancel_scope.cancel()


async def _phase(
    figures: Figures, counter: StepCounter, seconds: float, profile: cProfile.Profile | None
) -> None:
    steps, sim, wall = counter.steps, trio.current_time(), time.perf_counter()
    cpu = time.process_time()
    if profile is not None:
        profile.enable()
    await trio.sleep(seconds)
    if profile is not None:
        profile.disable()
    figures.wall_s = time.perf_counter() - wall
    figures.cpu_s = time.process_time() - cpu
    figures.sim_s = trio.current_time() - sim
    figures.steps = counter.steps - steps


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="replog bench sim", description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    positive = number_above(0)
    parser.add_argument("--idle-seconds", type=positive, default=60.0, help="simulated s")
    parser.add_argument("--seconds", type=positive, default=120.0, help="simulated s of load")
    parser.add_argument("--producers", type=integer(1), default=2)
    parser.add_argument("--rate", type=positive, default=20.0, help="writes/s per producer")
    parser.add_argument("--fault-interval", type=positive, default=10.0, help="simulated s")
    parser.add_argument(
        "--profile", type=new_file, metavar="FILE", help="cProfile of the load phase"
    )
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    idle, load = Figures(), Figures()
    run(_measure, args, idle, load, seed=args.seed)
    print(idle.line("idle cluster"))
    print(load.line("load with faults"))
    # Other processes share the CPU: wall figures mean little without the load average.
    print("load average (1, 5, 15 min): {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    return 0
