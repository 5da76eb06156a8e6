"""Plan, start, stop, kill and restart a cluster of `replog broker` processes.

A plan fixes every node's id, roles, port and argv before anything starts, because the
controller quorum's voters must know each other's addresses, and because a harness that
kill -9s a node restarts it with the very same argv (`cluster.json` records them).
Combined mode (the default): brokers 0..N-1, the first `quorum_size` of them also vote.
Dedicated mode: `controllers` controller-only processes with ids from 1000 form the
quorum, as larger Kafka deployments run it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from impl.broker.process import BrokerProcess, BrokerStartError
from model.config import Config, ConfigError

CONTROLLER_ID_BASE = 1000
CLUSTER_FILE = "cluster.json"
NODES_MAX = 32


@dataclass(frozen=True)
class NodePlan:
    node_id: int
    roles: tuple[str, ...]
    host: str
    port: int
    data_dir: Path
    argv: tuple[str, ...]

    @property
    def is_broker(self) -> bool:
        return "broker" in self.roles


@dataclass(frozen=True)
class ClusterSpec:
    data_dir: Path
    brokers: int = 3
    controllers: int = 0
    quorum_size: int = 3
    config: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    # Per-node arguments appended to `replog broker` (a harness's `--link-map FILE`).
    extra_argv: Mapping[int, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.brokers <= NODES_MAX:
            raise ValueError(f"--brokers must be in [1, {NODES_MAX}], not {self.brokers}")
        if not 0 <= self.controllers <= NODES_MAX:
            raise ValueError(f"--controllers must be in [0, {NODES_MAX}], not {self.controllers}")
        if self.controllers == 0 and not 1 <= self.quorum_size <= self.brokers:
            raise ValueError(
                f"--quorum-size must be in [1, --brokers {self.brokers}], not {self.quorum_size}"
            )


def check_fits(config: Config, brokers: int, groups: bool) -> None:
    """ConfigError naming every replica count that needs more brokers than `brokers`
    (a topic created with it could never be placed, or never accept acks=all); with
    `groups`, the offsets topic's too, which the group coordinator needs."""
    needs = {
        "replication.factor": config.replication_factor,
        "min.insync.replicas": config.min_insync_replicas,
    }
    if groups:
        needs["offsets.topic.replication.factor"] = config.offsets_topic_replication_factor
    over = [f"{key}={value}" for key, value in needs.items() if value > brokers]
    if over:
        raise ConfigError(
            f"--brokers {brokers} is too few for {', '.join(over)}: set each to at most "
            f"{brokers} (--config KEY=VALUE) or start more brokers"
        )


def make_writable_dir(flag: str, path: Path) -> None:
    """Create `path` (and its parents) unless it exists; ValueError naming `flag` when
    that fails or the directory is not writable (a file in the way, no permission)."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path}: is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"{flag} {path}: {error.strerror or error}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: not writable")


def free_port(host: str) -> int:
    """A port free right now; the plan pins it so restarts come back to the same one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def plan(spec: ClusterSpec) -> list[NodePlan]:
    ids = list(range(spec.brokers))
    voters = (
        [CONTROLLER_ID_BASE + i for i in range(spec.controllers)]
        if spec.controllers
        else ids[: spec.quorum_size]
    )
    ports = {node: free_port(spec.host) for node in ids + [v for v in voters if v not in ids]}
    quorum = ",".join(f"{v}@{spec.host}:{ports[v]}" for v in voters)
    nodes = []
    for node_id, port in ports.items():
        roles = tuple(
            role
            for role, member in (("broker", node_id in ids), ("controller", node_id in voters))
            if member
        )
        data_dir = spec.data_dir / f"node-{node_id}"
        argv = [sys.executable, "-m", "replog_cli", "broker", "--id", str(node_id)]
        argv += ["--data-dir", str(data_dir), "--listen", f"{spec.host}:{port}"]
        argv += ["--roles", ",".join(roles), "--quorum", quorum]
        for assignment in spec.config:
            argv += ["--config", assignment]
        argv += spec.extra_argv.get(node_id, ())
        nodes.append(NodePlan(node_id, roles, spec.host, port, data_dir, tuple(argv)))
    return nodes


@dataclass
class Cluster:
    spec: ClusterSpec
    nodes: list[NodePlan]
    processes: dict[int, BrokerProcess] = field(default_factory=dict)

    @classmethod
    def planned(cls, spec: ClusterSpec) -> Cluster:
        return cls(spec, plan(spec))

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{n.host}:{n.port}" for n in self.nodes if n.is_broker)

    def start(self) -> Cluster:
        """Start every node (in parallel: a quorum needs its peers to elect a leader)."""
        self.spec.data_dir.mkdir(parents=True, exist_ok=True)
        for node in self.nodes:
            self.processes[node.node_id] = self._process(node).launch()
        for process in self.processes.values():
            process.wait_listening()
        self.write_description()
        return self

    def _process(self, node: NodePlan) -> BrokerProcess:
        log_path = self.spec.data_dir / f"node-{node.node_id}.log"
        return BrokerProcess(node.node_id, node.data_dir, list(node.argv), log_path)

    def restart(self, node_id: int) -> BrokerProcess:
        """Start a stopped or killed node again with its original argv."""
        old = self.processes.get(node_id)
        assert old is None or old.popen is None or old.popen.poll() is not None, "still running"
        node = next(n for n in self.nodes if n.node_id == node_id)
        process = self._process(node).start()
        self.processes[node_id] = process
        self.write_description()
        return process

    def kill(self, node_id: int) -> None:
        self.processes[node_id].kill()

    def stop(self) -> dict[int, int]:
        """SIGCONT (a paused node cannot exit), then SIGTERM every node; their exit codes,
        -9 for one that ignored SIGTERM and was killed."""
        for process in self.processes.values():
            if process.popen is not None and process.popen.poll() is None:
                process.signal(signal.SIGCONT)
        codes = {}
        for node_id, process in self.processes.items():
            try:
                codes[node_id] = process.stop()
            except BrokerStartError:
                codes[node_id] = -signal.SIGKILL
        return codes

    def description(self) -> dict[str, object]:
        rows = []
        for node in self.nodes:
            process = self.processes.get(node.node_id)
            alive = (
                process is not None and process.popen is not None and process.popen.poll() is None
            )
            rows.append(
                {
                    "id": node.node_id,
                    "roles": list(node.roles),
                    "pid": process.pid if alive and process is not None else None,
                    "host": node.host,
                    "port": node.port,
                    "data_dir": str(node.data_dir),
                    "argv": list(node.argv),
                }
            )
        brokers = [r for r in rows if "broker" in r["roles"]]
        controllers = [r for r in rows if "broker" not in r["roles"]]
        return {"bootstrap": self.bootstrap, "brokers": brokers, "controllers": controllers}

    def write_description(self) -> Path:
        path = self.spec.data_dir / CLUSTER_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.description(), indent=2) + "\n")
        temporary.replace(path)
        return path
