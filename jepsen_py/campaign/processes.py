"""The nemesis' `Faults` for a cluster of real `replog broker` processes on loopback.

Brokers run as `replog cluster` runs them (impl.cluster.launcher), with their data dirs
under the campaign's run directory. Every broker-to-broker and client-to-broker link
goes through a proxy of `net_proxy` (each broker's `--link-map`, the clients' runtime),
so partitions need no root. Kill is SIGKILL and restart the same argv; pause is
SIGSTOP/SIGCONT; crash is SIGKILL and then a power loss played on the node's files: each broker
runs with `--fsync-journal`, and `lose_unsynced` cuts every file back to what its last
fsync made durable before the restart. Clocks move through the brokers' ClockAdjust
admin request. Control
traffic (clock requests, leader look-ups) goes straight to the brokers, never through
a proxy, so the harness reaches a node whatever the partition.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from contextlib import suppress
from pathlib import Path
from typing import Any

import trio

from impl.broker.process import BrokerStartError
from impl.client.connection import Connection
from impl.client.errors import ClientError
from impl.client.metadata import ClusterSession, TopicPartition
from impl.cluster.launcher import Cluster, ClusterSpec
from impl.protocol import API_KEYS
from impl.runtime.fs import lose_unsynced
from impl.runtime.net import Address
from impl.runtime.runtime import Runtime
from jepsen_py.campaign.nemesis import CLIENTS, FaultError, Link
from jepsen_py.campaign.net_proxy import ProxyNetwork
from model.config import Config
from model.errors import Errors

CONTROL_TIMEOUT_MS = 3_000
CLOCK_ADJUST = API_KEYS["ClockAdjust"]
METADATA_FETCH = API_KEYS["MetadataFetch"]
METADATA = API_KEYS["Metadata"]
# MetadataFetch from past any log: the answer carries the leader and no entries.
BEYOND_LOG_INDEX = 2**62
CLIENT_ID = "replog-nemesis"
SIGNAL_SETTLE_TIMEOUT_S = 1.0
SIGNAL_SETTLE_POLL_S = 0.01


class ProcessCluster:
    """Broker processes, their proxies, and the faults done to them."""

    def __init__(self, root: Path, brokers: int, config: tuple[str, ...], topic: str) -> None:
        self.root = root
        self.topic = topic
        self.nodes = tuple(range(brokers))
        link_maps = {
            n: ("--link-map", str(root / f"links-{n}.json"), "--fsync-journal", self.journal(n))
            for n in self.nodes
        }
        spec = ClusterSpec(
            root,
            brokers=brokers,
            quorum_size=min(3, brokers),
            config=config,
            extra_argv=link_maps,
        )
        self.cluster = Cluster.planned(spec)
        self.proxies = ProxyNetwork()
        self.client_link_map: dict[Address, Address] = {}
        self.down_s: dict[int, float] = dict.fromkeys(self.nodes, 0.0)
        self._down_since: dict[int, float] = {}
        self.runtime: Runtime | None = None

    def journal(self, node: int) -> str:
        return str(self.root / f"fsync-{node}.jsonl")

    @property
    def bootstrap(self) -> str:
        return self.cluster.bootstrap

    def address(self, node: int) -> Address:
        plan = next(p for p in self.cluster.nodes if p.node_id == node)
        return plan.host, plan.port

    async def start(self, nursery: trio.Nursery, runtime: Runtime) -> None:
        """Proxies first (their ports go into the link maps), then the brokers."""
        self.runtime = runtime
        self.root.mkdir(parents=True, exist_ok=True)
        for source in (*self.nodes, CLIENTS):
            routes = {}
            for target in self.nodes:
                if source == target:
                    continue
                proxy = await self.proxies.add(nursery, source, target, self.address(target))
                routes[self.address(target)] = (proxy.host, proxy.port)
            if source == CLIENTS:
                self.client_link_map = routes
            else:
                text = {f"{h}:{p}": f"{ph}:{pp}" for (h, p), (ph, pp) in routes.items()}
                (self.root / f"links-{source}.json").write_text(json.dumps(text, indent=1))
        try:
            await trio.to_thread.run_sync(self.cluster.start)
        except BrokerStartError as error:
            raise FaultError(f"the cluster did not start: {error}") from error

    async def stop(self) -> dict[int, int]:
        """Resume, then SIGTERM every broker; their exit codes (-9 when one had to be
        killed because it ignored SIGTERM)."""
        return await trio.to_thread.run_sync(self.cluster.stop)

    # ---- Faults ----------------------------------------------------------------------------

    async def kill(self, node: int) -> dict[str, Any]:
        process = self.cluster.processes[node]
        await trio.to_thread.run_sync(self.cluster.kill, node)
        self._down(node)
        assert process.popen is not None
        return {"pid": process.pid, "exit_code": process.popen.returncode}

    async def crash(self, node: int) -> dict[str, Any]:
        killed = await self.kill(node)
        loss = await trio.to_thread.run_sync(lose_unsynced, self.journal(node))
        return {**killed, "files_cut": loss.files, "lost_bytes": loss.lost_bytes}

    async def restart(self, node: int) -> dict[str, Any]:
        try:
            process = await trio.to_thread.run_sync(self.cluster.restart, node)
        except BrokerStartError as error:
            raise FaultError(f"broker {node} did not restart: {error}") from error
        self._up(node)
        return {"pid": process.pid}

    async def pause(self, node: int) -> dict[str, Any]:
        process = self.cluster.processes[node]
        process.signal(signal.SIGSTOP)
        self._down(node)
        return {"pid": process.pid, "state": await _settled_state(process.pid, "T")}

    async def resume(self, node: int) -> dict[str, Any]:
        process = self.cluster.processes[node]
        process.signal(signal.SIGCONT)
        self._up(node)
        return {"pid": process.pid, "state": await _settled_state(process.pid, "T", until=False)}

    async def cut(self, links: set[Link]) -> None:
        self.proxies.cut(set(links))

    async def heal_network(self) -> None:
        self.proxies.heal()

    async def adjust_clock(self, node: int, delta_ms: int, reset: bool) -> int:
        body = {"delta_ms": delta_ms, "reset": reset}
        response = await self._control(node, CLOCK_ADJUST, body)
        if response is None or response["error_code"] != Errors.NONE:
            raise FaultError(f"broker {node} did not adjust its clock: {response}")
        return response["skew_ms"]

    async def partition_leaders(self) -> dict[int, int]:
        assert self.runtime is not None, "start() first"
        config = Config.parse([f"request.timeout.ms={CONTROL_TIMEOUT_MS}"])
        leaders = {}
        with suppress(ClientError):
            async with ClusterSession(self.runtime, self.bootstrap, config, CLIENT_ID) as session:
                await session.cluster.refresh([self.topic])
                count = session.cluster.partition_count(self.topic) or 0
                for partition in range(count):
                    entry = session.cluster.leader(TopicPartition(self.topic, partition))
                    if entry is not None:
                        leaders[partition] = entry.leader_id
        return leaders

    async def in_sync_replicas(self) -> dict[int, tuple[int, ...]]:
        """Each running broker's view; per partition the one of the highest leader epoch."""
        freshest: dict[int, tuple[int, tuple[int, ...]]] = {}
        body = {"topics": [{"name": self.topic}], "allow_auto_topic_creation": False}
        for node in self.nodes:
            if node in self._down_since:
                continue
            response = await self._control(node, METADATA, body)
            topics = response["topics"] if response is not None else []
            for topic in topics:
                for p in topic["partitions"] if topic["name"] == self.topic else []:
                    seen = (p.get("leader_epoch", -1), tuple(p["isr_nodes"]))
                    if p["error_code"] == Errors.NONE and seen > freshest.get(
                        p["partition_index"], (-2, ())
                    ):
                        freshest[p["partition_index"]] = seen
        return {partition: isr for partition, (_, isr) in freshest.items()}

    async def controller_leader(self) -> int | None:
        """The quorum leader most voters name (a partitioned ex-leader may still think
        it leads; the majority knows better)."""
        votes: Counter[int] = Counter()
        voters = [p.node_id for p in self.cluster.nodes if "controller" in p.roles]
        for voter in voters:
            body = {"from_index": BEYOND_LOG_INDEX, "max_bytes": 1}
            response = await self._control(voter, METADATA_FETCH, body)
            if response is not None and response["leader_id"] in voters:
                votes[response["leader_id"]] += 1
        if not votes:
            return None
        leader, count = votes.most_common(1)[0]
        return leader if count > len(voters) // 2 else None

    async def _control(self, node: int, api_key: int, body: dict) -> dict | None:
        """One request straight to a node (no proxy); None if it does not answer."""
        assert self.runtime is not None, "start() first"
        host, port = self.address(node)
        async with trio.open_nursery() as nursery:
            try:
                connection = await Connection.open(
                    self.runtime,
                    nursery,
                    host,
                    port,
                    client_id=CLIENT_ID,
                    request_timeout_ms=CONTROL_TIMEOUT_MS,
                )
            except ClientError:
                return None
            try:
                return await connection.request(api_key, body)
            except ClientError:
                return None
            finally:
                await connection.aclose()

    def _down(self, node: int) -> None:
        self._down_since.setdefault(node, trio.current_time())

    def _up(self, node: int) -> None:
        since = self._down_since.pop(node, None)
        if since is not None:
            self.down_s[node] += trio.current_time() - since

    def node_logs(self) -> dict[int, Path]:
        return {n: self.root / f"node-{n}.log" for n in self.nodes}


async def _settled_state(pid: int, state: str, until: bool = True) -> str:
    """The process's state letter from /proc once it is (or, until=False, is no longer)
    `state`: signals arrive asynchronously. "?" where /proc cannot tell."""
    seen = "?"
    with trio.move_on_after(SIGNAL_SETTLE_TIMEOUT_S):
        while True:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                return "?"
            seen = stat.rpartition(")")[2].split()[0]
            if (seen == state) == until:
                return seen
            await trio.sleep(SIGNAL_SETTLE_POLL_S)
    return seen
