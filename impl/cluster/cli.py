"""`replog cluster`: start a cluster of broker processes and keep it up until stopped."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from impl.broker.process import BrokerStartError
from impl.cluster.launcher import CLUSTER_FILE, Cluster, ClusterSpec
from model.config import Config, ConfigError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="replog cluster",
        description="Start broker processes on loopback (and a controller quorum), print "
        "their addresses, write DATA_DIR/cluster.json, and stop them all on Ctrl-C/SIGTERM.",
    )
    parser.add_argument("--brokers", type=int, default=3)
    parser.add_argument(
        "--controllers",
        type=int,
        default=0,
        help="dedicated controller processes (default 0: the first brokers also vote)",
    )
    parser.add_argument(
        "--quorum-size", type=int, default=3, help="voters among the brokers in combined mode"
    )
    parser.add_argument("--data-dir", default="cluster-data")
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        Config.parse(args.config)
        spec = ClusterSpec(
            Path(args.data_dir).resolve(),
            brokers=args.brokers,
            controllers=args.controllers,
            quorum_size=min(args.quorum_size, args.brokers),
            config=tuple(args.config),
        )
    except (ConfigError, ValueError) as error:
        print(f"replog cluster: {error}", file=sys.stderr)
        return 2
    cluster = Cluster.planned(spec)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        cluster.start()
    except BrokerStartError as error:
        print(f"replog cluster: {error}", file=sys.stderr)
        cluster.stop()
        return 1
    for node in cluster.nodes:
        kind = "broker" if node.is_broker else "controller"
        pid = cluster.processes[node.node_id].pid
        print(f"{kind} {node.node_id} pid {pid} {node.host}:{node.port}", flush=True)
    print(f"bootstrap {cluster.bootstrap}", flush=True)
    print(f"cluster description in {spec.data_dir / CLUSTER_FILE}", flush=True)
    stop.wait()
    codes = cluster.stop()
    return 0 if all(code == 0 for code in codes.values()) else 1
