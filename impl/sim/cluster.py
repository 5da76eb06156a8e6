"""SimCluster: the real brokers, controllers and clients in one deterministic trio run.

Everything runs the production code (impl.broker.Broker with its controller quorum, the
native clients of impl.client); only the `Runtime` differs: an in-memory network
(impl.sim.net), one `MemoryFileSystem` per node, a `Clock` per node with a wall origin
fixed by the seed, and a `random.Random` per node derived from the master seed.

Running one:

    from impl.sim.cluster import SimCluster
    from impl.sim.guard import run

    async def main():
        async with trio.open_nursery() as nursery:
            cluster = SimCluster(brokers=3, seed=7, config=("min.insync.replicas=2",))
            await cluster.start(nursery)          # returns once every node listens
            await cluster.wait_for_brokers()      # every broker registered, unfenced
            runtime = cluster.runtime()           # endpoint "clients"
            async with Producer(runtime, cluster.bootstrap, config) as producer: ...
            await cluster.crash(0)                # Faults protocol (see below)
            cluster.partition_state("t", 0)       # {node: ReplicaState}
            await cluster.stop()                  # cancels the nodes; nursery closes

    run(main, seed=7)   # trio.run on the simulated clock (guard.SimulatedClock) + the guard

Layout, as `replog cluster` and ProcessCluster configure a real cluster
(impl.cluster.launcher.plan): `SimCluster(brokers, controllers=0, quorum_size=3)` is
combined mode, brokers 0..N-1 with the first `quorum_size` also controllers;
`controllers=K` adds controller-only nodes 1000..1000+K-1 as the quorum. `config` is
the same KEY=VALUE list `replog broker --config` takes. Node n listens on
("node-n.sim", 9092) of the simulated network; `bootstrap` lists the brokers.

Constructor: `SimCluster(brokers=3, *, seed, config=(), controllers=0, quorum_size=3,
topic="jepsen", tear_last_write=True)`. `topic` is the one `partition_leaders` reports
on (the nemesis' "leader" target).

Endpoints and runtimes: `runtime(endpoint="clients")` gives a Runtime whose network
connects from that endpoint (the nemesis' CLIENTS); every client on it shares the
endpoint's links. Any other string names another endpoint (e.g. "control", which no
partition cuts unless its links are named explicitly).

Faults (jepsen_py.campaign.nemesis.Faults, so the existing nemeses drive it unchanged):
- `kill(n)`: a kill -9: `broker.crash()` (no flush, checkpoint or shutdown marker),
  cancel the node's scope, close its connections (the kernel's FIN). The disk is
  untouched: the OS page cache outlives a killed process. Returns {"state": "killed"}.
- `crash(n)`: a power loss: the same, then `fs.crash(tear_last_write=..., rng=node
  rng)`: unsynced bytes are lost and the last write may be torn. Returns
  {"state": "crashed", "unsynced_bytes": N}.
- `restart(n)`: a new Broker on the same simulated disk, its clock's skew reset (the
  skew lives in the process, as with real processes).
- `pause(n)`/`resume(n)`: a SIGSTOP is approximated by holding every byte to and from
  the node (all its links, both directions, connections not reset) and new connections
  to or from it hang. Its own timers still fire while paused (flush, checkpoint, Raft
  election timeouts), but nothing it decides reaches anyone until the resume, when the
  held bytes arrive at once: what peers observe is what they observe of a stopped
  process. The difference from SIGSTOP is local only (a paused leader may shrink its
  ISR view before the resume instead of right after it).
- `cut(links)`: blackhole exactly these (source, target) links (source a node or
  "clients"): an iptables DROP, bytes held both ways, connections kept. `heal_network()`.
- `adjust_clock(n, delta_ms, reset)`: the node's wall clock skew; returns it.
  `partition_leaders()`: partition -> leader of `topic` per the freshest metadata image
  of a live broker. `in_sync_replicas()`: partition -> ISR of `topic` as the live
  replica of the highest leader epoch sees it. `controller_leader()`: the quorum leader
  a majority of live voters name, else None.

Reading state without any network traffic: `partition_state(topic, index)` ->
{node: ReplicaState(high_watermark, log_end_offset, log_start_offset, leader,
leader_epoch, isr, is_leader)} for every live node holding that replica;
`brokers[n]` is the live `Broker` (None while killed); `clock(n)`, `fs(n)`.
Accounting: `down_s[n]`, simulated seconds broker n spent killed, crashed or paused
(ended stretches only, as ProcessCluster counts them); `net.cut_held_bytes[(a, b)]`,
bytes written on link a->b while it was cut.
"""

from __future__ import annotations

import posixpath
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import trio

from impl.broker.broker import Broker
from impl.cluster.launcher import CONTROLLER_ID_BASE, NODES_MAX
from impl.runtime.clock import Clock
from impl.runtime.fs import MemoryFileSystem
from impl.runtime.runtime import Runtime
from impl.sim.net import SimNetwork
from model.config import Config

PORT = 9092
DATA_ROOT = "/data"
# 2023-11-14T22:13:20Z plus up to a year, by seed: a fixed wall clock, never time.time.
WALL_ORIGIN_MS = 1_700_000_000_000
WALL_SPREAD_MS = 365 * 24 * 3600 * 1000
BROKERS_WAIT_S = 60.0
BROKERS_POLL_S = 0.05


@dataclass(frozen=True)
class ReplicaState:
    high_watermark: int
    log_end_offset: int
    log_start_offset: int
    leader: int
    leader_epoch: int
    isr: tuple[int, ...]
    is_leader: bool


@dataclass
class SimNode:
    node_id: int
    roles: tuple[str, ...]
    host: str
    fs: MemoryFileSystem
    clock: Clock
    rng: random.Random
    broker: Broker | None = None
    scope: trio.CancelScope | None = None
    stopped: trio.Event = field(default_factory=trio.Event)

    @property
    def data_dir(self) -> str:
        return posixpath.join(DATA_ROOT, f"node-{self.node_id}")


def _host(node_id: int) -> str:
    return f"node-{node_id}.sim"


class SimCluster:
    """N real brokers (and their quorum) on simulated disks, clocks and network."""

    def __init__(
        self,
        brokers: int = 3,
        *,
        seed: int,
        config: tuple[str, ...] = (),
        controllers: int = 0,
        quorum_size: int = 3,
        topic: str = "jepsen",
        tear_last_write: bool = True,
    ) -> None:
        if not 1 <= brokers <= NODES_MAX or not 0 <= controllers <= NODES_MAX:
            raise ValueError(
                f"brokers must be in [1, {NODES_MAX}], controllers in [0, {NODES_MAX}]"
            )
        if controllers == 0 and not 1 <= quorum_size <= brokers:
            raise ValueError(f"quorum size {quorum_size} must be in [1, brokers={brokers}]")
        self.seed = seed
        self.topic = topic
        self.tear_last_write = tear_last_write
        self.config = Config.parse(list(config))
        self.rng = random.Random(seed)
        self.net = SimNetwork(random.Random(self.rng.getrandbits(64)))
        self.nodes = tuple(range(brokers))
        voter_ids = (
            [CONTROLLER_ID_BASE + i for i in range(controllers)]
            if controllers
            else list(self.nodes[:quorum_size])
        )
        self.voters = {v: (_host(v), PORT) for v in voter_ids}
        self.wall_origin_ms = WALL_ORIGIN_MS + self.rng.randrange(WALL_SPREAD_MS)
        self._nodes: dict[int, SimNode] = {}
        for node_id in [*self.nodes, *(v for v in voter_ids if v not in self.nodes)]:
            roles = tuple(
                role
                for role, member in (
                    ("broker", node_id in self.nodes),
                    ("controller", node_id in self.voters),
                )
                if member
            )
            self._nodes[node_id] = SimNode(
                node_id,
                roles,
                _host(node_id),
                MemoryFileSystem(),
                Clock(self.wall_origin_ms),
                random.Random(self.rng.getrandbits(64)),
            )
        self._nursery: trio.Nursery | None = None
        # Simulated seconds each broker spent killed, crashed or paused (as ProcessCluster).
        self.down_s: dict[int, float] = dict.fromkeys(self.nodes, 0.0)
        self._down_since: dict[int, float] = {}

    # ---- layout ----------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{_host(n)}:{PORT}" for n in self.nodes)

    @property
    def all_nodes(self) -> tuple[int, ...]:
        """Brokers and controller-only nodes."""
        return tuple(self._nodes)

    @property
    def brokers(self) -> dict[int, Broker | None]:
        return {n: node.broker for n, node in self._nodes.items()}

    def clock(self, node: int) -> Clock:
        return self._nodes[node].clock

    def fs(self, node: int) -> MemoryFileSystem:
        return self._nodes[node].fs

    def runtime(self, endpoint: int | str = "clients") -> Runtime:
        """A runtime whose connections come from `endpoint` (own clock and RNG)."""
        rng = random.Random(self.rng.getrandbits(64))
        clock = Clock(self.wall_origin_ms + int(trio.current_time() * 1000))
        clock.wall_ms()
        return Runtime(clock, rng, self.net.view(endpoint), MemoryFileSystem())

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self, nursery: trio.Nursery) -> None:
        """Start every node; returns once all listen (a quorum needs all its peers' ports)."""
        assert self._nursery is None, "started twice"
        self._nursery = nursery
        for node in self._nodes.values():
            node.clock.wall_ms()  # anchors the wall clock at simulated time zero
        for node_id in self._nodes:
            await nursery.start(self._run_node, self._nodes[node_id])

    async def _run_node(
        self, node: SimNode, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        runtime = Runtime(node.clock, node.rng, self.net.view(node.node_id), node.fs)
        node.broker = Broker(
            node.node_id,
            node.data_dir,
            node.host,
            PORT,
            self.config,
            runtime,
            voters=self.voters,
            roles=node.roles,
        )
        node.stopped = trio.Event()
        try:
            with trio.CancelScope() as scope:
                node.scope = scope
                await node.broker.run(task_status=task_status)
        finally:
            node.broker = None
            node.scope = None
            node.stopped.set()

    async def wait_for_brokers(self, timeout_s: float = BROKERS_WAIT_S) -> None:
        """Until every live broker sees every live broker unfenced (simulated seconds)."""
        with trio.fail_after(timeout_s):
            while not self._all_registered():
                await trio.sleep(BROKERS_POLL_S)

    def _all_registered(self) -> bool:
        live = {n for n in self.nodes if self._nodes[n].broker is not None}
        for n in live:
            broker = self._nodes[n].broker
            assert broker is not None and broker.member is not None
            if not live <= set(broker.member.image.unfenced_brokers()):
                return False
        return True

    async def stop(self) -> None:
        """Shut every live node down cleanly (flush, checkpoint) and wait for it."""
        for node in self._nodes.values():
            if node.scope is not None:
                node.scope.cancel()
                await node.stopped.wait()
        self.net.heal()

    # ---- Faults ----------------------------------------------------------------------------

    async def kill(self, node: int) -> dict[str, Any]:
        """kill -9: the process dies, the OS keeps its page cache (nothing is lost)."""
        return await self._stop_abruptly(node, power_loss=False)

    async def crash(self, node: int) -> dict[str, Any]:
        """Power loss: kill -9, then the disk keeps only what was fsynced."""
        return await self._stop_abruptly(node, power_loss=True)

    async def _stop_abruptly(self, node: int, power_loss: bool) -> dict[str, Any]:
        sim = self._nodes[node]
        if sim.broker is None or sim.scope is None:
            return {"state": "already down"}
        sim.broker.crash()
        sim.scope.cancel()
        await sim.stopped.wait()
        self.net.close_node(node)
        self._down(node)
        if not power_loss:
            return {"state": "killed"}
        lost = sim.fs.unsynced_size_bytes()
        sim.fs.crash(tear_last_write=self.tear_last_write, rng=sim.rng)
        return {"state": "crashed", "unsynced_bytes": lost}

    async def restart(self, node: int) -> dict[str, Any]:
        sim = self._nodes[node]
        if sim.broker is not None:
            return {"state": "already up"}
        assert self._nursery is not None, "start() first"
        sim.clock.reset()
        await self._nursery.start(self._run_node, sim)
        self._up(node)
        return {"state": "running"}

    async def pause(self, node: int) -> dict[str, Any]:
        self.net.pause(node)
        self._down(node)
        return {"state": "paused"}

    async def resume(self, node: int) -> dict[str, Any]:
        self.net.resume(node)
        self._up(node)
        return {"state": "running"}

    def _down(self, node: int) -> None:
        if node in self.down_s:
            self._down_since.setdefault(node, trio.current_time())

    def _up(self, node: int) -> None:
        since = self._down_since.pop(node, None)
        if since is not None:
            self.down_s[node] += trio.current_time() - since

    async def cut(self, links: set[tuple[int | str, int]]) -> None:
        self.net.cut(set(links))

    async def heal_network(self) -> None:
        self.net.heal()

    async def adjust_clock(self, node: int, delta_ms: int, reset: bool) -> int:
        clock = self._nodes[node].clock
        if reset:
            clock.reset()
        else:
            clock.bump(delta_ms)
        return clock.skew_ms

    async def partition_leaders(self) -> dict[int, int]:
        member = None
        for n in self.nodes:
            broker = self._nodes[n].broker
            if broker is None or broker.member is None or n in self.net.paused:
                continue
            if member is None or broker.member.applied_index > member.applied_index:
                member = broker.member
        if member is None:
            return {}
        topic = member.image.topics.get(self.topic)
        if topic is None:
            return {}
        return {i: p.leader for i, p in enumerate(topic.partitions) if p.leader >= 0}

    async def in_sync_replicas(self) -> dict[int, tuple[int, ...]]:
        """partition -> ISR of `topic`, from the live broker replica of the highest epoch."""
        freshest: dict[int, tuple[int, tuple[int, ...]]] = {}
        for n in self.nodes:
            broker = self._nodes[n].broker
            if broker is None or n in self.net.paused:
                continue
            for (topic, index), partition in sorted(broker.logs.partitions.items()):
                seen = (partition.leader_epoch, tuple(sorted(partition.isr)))
                if topic == self.topic and seen > freshest.get(index, (-2, ())):
                    freshest[index] = seen
        return {index: isr for index, (_, isr) in sorted(freshest.items())}

    async def controller_leader(self) -> int | None:
        votes: Counter[int] = Counter()
        for v in self.voters:
            broker = self._nodes[v].broker
            if broker is None or broker.quorum is None or v in self.net.paused:
                continue
            leader = broker.quorum.leader_hint()
            if leader in self.voters:
                votes[leader] += 1
        if not votes:
            return None
        leader, count = votes.most_common(1)[0]
        return leader if count > len(self.voters) // 2 else None

    # ---- state -----------------------------------------------------------------------------

    def partition_state(self, topic: str, index: int) -> dict[int, ReplicaState]:
        states = {}
        for n, node in self._nodes.items():
            partition = (
                None if node.broker is None else node.broker.logs.partitions.get((topic, index))
            )
            if partition is None:
                continue
            states[n] = ReplicaState(
                partition.high_watermark,
                partition.log.log_end_offset,
                partition.log.log_start_offset,
                partition.leader_id,
                partition.leader_epoch,
                tuple(sorted(partition.isr)),
                partition.is_leader,
            )
        return states
