"""`replog cluster`: start a cluster of broker processes and keep it up until stopped.

Exit 0 once every broker stopped cleanly; 1 if one did not (a broker's finding); 2 for
bad arguments or settings (checked before anything starts) and when the cluster could
not start.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from impl.broker.process import BrokerStartError
from impl.cluster.launcher import (
    CLUSTER_FILE,
    Cluster,
    ClusterSpec,
    check_fits,
    make_writable_dir,
)
from model.config import Config, ConfigError

EXIT_BAD_STOP = 1
EXIT_HARNESS = 2
QUORUM_SIZE_DEFAULT = 3


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
        "--quorum-size",
        type=int,
        default=None,
        help="voters among the brokers in combined mode "
        f"(default: {QUORUM_SIZE_DEFAULT}, or every broker if fewer)",
    )
    parser.add_argument("--data-dir", default="cluster-data")
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    quorum_size = args.quorum_size
    if quorum_size is None:
        quorum_size = min(QUORUM_SIZE_DEFAULT, max(args.brokers, 1))
    try:
        data_dir = Path(args.data_dir).resolve()
        spec = ClusterSpec(
            data_dir,
            brokers=args.brokers,
            controllers=args.controllers,
            quorum_size=quorum_size,
            config=tuple(args.config),
        )
        check_fits(Config.parse(args.config), args.brokers, groups=True)
        # Last: the only check that leaves something behind (the directory it made).
        make_writable_dir("--data-dir", data_dir)
    except (ConfigError, ValueError) as error:
        print(f"replog cluster: {error}", file=sys.stderr)
        return EXIT_HARNESS
    cluster = Cluster.planned(spec)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        cluster.start()
    except (BrokerStartError, OSError) as error:
        print(f"replog cluster: {error}", file=sys.stderr)
        cluster.stop()
        return EXIT_HARNESS
    for node in cluster.nodes:
        kind = "broker" if node.is_broker else "controller"
        pid = cluster.processes[node.node_id].pid
        print(f"{kind} {node.node_id} pid {pid} {node.host}:{node.port}", flush=True)
    print(f"bootstrap {cluster.bootstrap}", flush=True)
    print(f"cluster description in {spec.data_dir / CLUSTER_FILE}", flush=True)
    stop.wait()
    codes = cluster.stop()
    unclean = {node: code for node, code in codes.items() if code != 0}
    for node, code in unclean.items():
        print(f"replog cluster: node {node} exited with code {code}", file=sys.stderr)
    return EXIT_BAD_STOP if unclean else 0
