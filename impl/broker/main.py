"""`replog broker`: run one broker process until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import os
import resource
import signal
import sys

import trio

from impl.broker.broker import Broker
from impl.broker.logs import DataDirError
from impl.controller.raft_storage import RaftStorageError
from impl.runtime.fs import JournaledFileSystem
from impl.runtime.net import Address, is_loopback, load_link_map
from impl.runtime.runtime import real_runtime
from model.config import Config, ConfigError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="replog broker",
        description="Run one replog broker: the Kafka wire protocol over a data directory.",
        epilog="Exit 0 after a clean shutdown (SIGTERM or Ctrl-C); 2 for bad arguments or "
        "a data directory that cannot be used.",
    )
    parser.add_argument("--id", type=int, required=True, help="broker.id (>= 0)")
    parser.add_argument("--data-dir", required=True, help="log directory (created if missing)")
    parser.add_argument(
        "--listen", default="127.0.0.1:9092", help="HOST:PORT (port 0 picks a free port)"
    )
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--allow-remote", action="store_true", help="allow a non-loopback listen address"
    )
    parser.add_argument(
        "--quorum",
        metavar="ID@HOST:PORT,...",
        help="the controller quorum's voters; without it the broker runs standalone",
    )
    parser.add_argument(
        "--roles",
        default=None,
        help="broker, controller or broker,controller (default: broker, plus controller "
        "when --id is one of the --quorum voters)",
    )
    parser.add_argument("--seed", type=int, help="seed of the broker's randomness (topic ids)")
    parser.add_argument(
        "--link-map",
        metavar="FILE",
        help='JSON {"HOST:PORT": "HOST:PORT"}: connect to the second instead of the first '
        "(a fault-injection harness routes links through its proxies)",
    )
    parser.add_argument(
        "--fsync-journal",
        metavar="FILE",
        help="record in FILE what each fsync made durable, so a harness can play a power "
        "loss on the data dir after a kill (impl.runtime.fs.lose_unsynced)",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    return parser


def _parse_listen(text: str) -> tuple[str, int]:
    host, separator, port = text.rpartition(":")
    if not separator or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen {text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def parse_quorum(text: str) -> dict[int, tuple[str, int]]:
    """`0@127.0.0.1:9092,1@127.0.0.1:9093` as {0: ("127.0.0.1", 9092), ...}."""
    voters = {}
    for item in text.split(","):
        node, separator, address = item.strip().partition("@")
        if not separator or not node.isdigit():
            raise ValueError(f"--quorum item {item!r}: expected ID@HOST:PORT")
        voters[int(node)] = _parse_listen(address)
    return voters


def _roles(
    text: str | None, broker_id: int, voters: dict[int, tuple[str, int]] | None
) -> tuple[str, ...]:
    if text is None:
        return ("broker", "controller") if voters and broker_id in voters else ("broker",)
    roles = tuple(r.strip() for r in text.split(",") if r.strip())
    if not roles or not set(roles) <= {"broker", "controller"}:
        raise ValueError(f"--roles {text!r}: expected broker, controller or both")
    if "controller" in roles and (voters is None or broker_id not in voters):
        raise ValueError("a controller must be one of the --quorum voters")
    if "broker" not in roles and voters is None:
        raise ValueError("a controller-only node needs --quorum")
    return roles


def main(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        config = Config.parse(args.config)
        host, port = _parse_listen(args.listen)
        voters = parse_quorum(args.quorum) if args.quorum else None
        roles = _roles(args.roles, args.id, voters)
        link_map = load_link_map(args.link_map) if args.link_map else None
    except (ConfigError, ValueError, OSError) as error:
        print(f"replog broker: {error}", file=sys.stderr)
        return 2
    if args.id < 0:
        print("replog broker: --id must be >= 0", file=sys.stderr)
        return 2
    if os.path.exists(args.data_dir) and not os.path.isdir(args.data_dir):
        print(
            f"replog broker: --data-dir {args.data_dir}: exists and is not a directory",
            file=sys.stderr,
        )
        return 2
    try:
        os.makedirs(args.data_dir, exist_ok=True)
    except OSError as error:
        print(
            f"replog broker: --data-dir {args.data_dir}: cannot create it: {error.strerror}",
            file=sys.stderr,
        )
        return 2
    if not is_loopback(host) and not args.allow_remote:
        print(
            f"replog broker: refusing to listen on non-loopback {host}; "
            "pass --allow-remote to expose the broker",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(
        level=args.log_level.upper(),
        format=f"%(asctime)s broker {args.id} %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    _raise_descriptor_limit(config.max_connections)
    try:
        trio.run(
            _serve,
            args.id,
            args.data_dir,
            host,
            port,
            config,
            (args.seed, link_map, args.fsync_journal),
            voters,
            roles,
        )
    except (*STARTUP_ERRORS, BaseExceptionGroup) as error:
        failure = _startup_failure(error)
        if failure is None:
            raise
        print(f"replog broker: {failure}", file=sys.stderr)
        return 2
    return 0


# What a broker that cannot use its data dir, its Raft log or its address raises.
STARTUP_ERRORS = (DataDirError, RaftStorageError, OSError)


def _startup_failure(error: BaseException) -> BaseException | None:
    """The failure to report when everything `error` holds (trio's nurseries wrap what
    their tasks raise in groups) is a STARTUP_ERRORS; None for anything else."""
    leaves = _leaves(error)
    return leaves[0] if all(isinstance(leaf, STARTUP_ERRORS) for leaf in leaves) else None


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


# Descriptors beyond max.connections: segment and index files, the listener, peers.
DESCRIPTORS_BESIDES_CONNECTIONS = 256


def _raise_descriptor_limit(max_connections: int) -> None:
    """Raise the soft descriptor limit to the hard one, as the JVM does for Kafka
    (-XX:+MaxFDLimit), so max.connections is what bounds connections; out of descriptors
    anyway, the broker retries accepting every 100 ms and keeps serving the rest."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = max_connections + DESCRIPTORS_BESIDES_CONNECTIONS
    # Linux refuses an infinite descriptor limit; then raise it to what is needed.
    target = max(soft, needed) if hard == resource.RLIM_INFINITY else hard
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as error:
            logging.getLogger("replog.broker").warning(
                "cannot raise the descriptor limit to %d: %s", target, error
            )
    if soft < needed:
        logging.getLogger("replog.broker").warning(
            "the descriptor limit (ulimit -n) is %d, below max.connections=%d plus %d for "
            "files: connections beyond it wait in the listen backlog",
            soft,
            max_connections,
            DESCRIPTORS_BESIDES_CONNECTIONS,
        )


async def _serve(
    broker_id: int,
    data_dir: str,
    host: str,
    port: int,
    config: Config,
    runtime_args: tuple[int | None, dict[Address, Address] | None, str | None],
    voters: dict[int, tuple[str, int]] | None,
    roles: tuple[str, ...],
) -> None:
    seed, link_map, fsync_journal = runtime_args
    runtime = real_runtime(seed, link_map)
    if fsync_journal is not None:
        runtime.fs = JournaledFileSystem(fsync_journal)
    broker = Broker(broker_id, data_dir, host, port, config, runtime, voters=voters, roles=roles)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            bound_port = await nursery.start(broker.run)
            # The one line a harness waits for; everything else goes to the log.
            kind = "broker" if "broker" in roles else "controller"
            print(f"{kind} {broker_id} listening on {host}:{bound_port}", flush=True)
            async for signum in signals:
                logging.getLogger("replog.broker").info(
                    "received %s, shutting down", signal.Signals(signum).name
                )
                nursery.cancel_scope.cancel()
                break
