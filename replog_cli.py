"""The `replog` command: a thin dispatcher. Each subcommand's logic lives in its package.

Every entry names `module:function`; the function takes the remaining argv and returns
the exit code. Modules are imported only when their subcommand runs, so `replog check`
does not pay for trio or z3 start-up it does not use.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import traceback

COMMANDS: dict[str, tuple[str, str]] = {
    "check": ("specs.cli:check_main", "explore the model for invariant violations"),
    "matrix": ("specs.cli:matrix_main", "the safety matrix: invariants x configurations"),
    "broker": ("impl.broker.main:main", "run one broker process (Kafka wire protocol)"),
    "cluster": ("impl.cluster.cli:main", "run a cluster of broker processes on loopback"),
    "dump-log": ("impl.storage.dump:main", "print the batches of Kafka segment files"),
    "produce": ("impl.client.cli:produce_main", "send lines of stdin as records to a topic"),
    "consume": ("impl.client.cli:consume_main", "print the records of a topic"),
    "campaign": (
        "jepsen_py.campaign.cli:campaign_main",
        "fault-injection campaign against a broker cluster; writes a report",
    ),
    "report": ("jepsen_py.campaign.cli:report_main", "re-check and re-render a campaign's report"),
    "analyze": (
        "jepsen_py.analyze:main",
        "check a recorded history: linearizability, Kafka queue, durability, perf",
    ),
    "lag": (
        "jepsen_py.lag:main",
        "consumer-group lag against the log end and against retention (exit codes alert)",
    ),
}

BENCHMARKS: dict[str, tuple[str, str]] = {
    "model": ("model.bench:main", "random-walk steps per second of the reference model"),
    "check": ("specs.bench:main", "explicit-state explorer: distinct states per second"),
    "storage": ("impl.storage.bench:main", "segment append/read MB/s vs a plain file"),
    "protocol": ("impl.protocol.bench:main", "wire codec encode/decode MB/s"),
    "broker": (
        "impl.broker.bench:main",
        "one broker process: produce/consume throughput and latency vs a trio echo server",
    ),
    "cluster": (
        "impl.cluster.bench:main",
        "3 broker processes: RF=3 acks=all vs RF=1 acks=1 throughput; leader failover time",
    ),
    "sim": (
        "impl.sim.bench:main",
        "simulator: simulated s per wall s, idle and under load with faults",
    ),
    "checker": (
        "jepsen_py.bench:main",
        "linearizability checker on the Porcupine corpus; queue checker on 1M ops",
    ),
}


def _usage(table: dict[str, tuple[str, str]], prog: str) -> str:
    width = max(len(name) for name in table)
    lines = [f"usage: {prog} COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {about}" for name, (_, about) in table.items()]
    return "\n".join(lines)


def _dispatch(table: dict[str, tuple[str, str]], argv: list[str], prog: str) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage(table, prog))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in table:
        print(f"{prog}: unknown command {name!r}\n\n{_usage(table, prog)}", file=sys.stderr)
        return 2
    module_name, _, function_name = table[name][0].partition(":")
    entry = getattr(importlib.import_module(module_name), function_name)
    return int(entry(rest))


def bench_main(argv: list[str]) -> int:
    return _dispatch(BENCHMARKS, argv, "replog bench")


EXIT_HARNESS = 2


def _leaf(error: BaseException) -> BaseException:
    """The first non-group exception inside `error`: trio wraps a task's failure in
    ExceptionGroups, and the user wants the cause, not the nesting."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def _save_traceback(error: BaseException) -> str:
    """Write the full traceback to a file for a bug report; return its path."""
    with tempfile.NamedTemporaryFile(
        "w", prefix="replog-crash-", suffix=".txt", delete=False
    ) as out:
        traceback.print_exception(error, file=out)
    return out.name


def _silence_stdout() -> None:
    """After a reader closed our stdout (`replog ... | head`), the interpreter's final
    flush would raise again: point stdout at /dev/null so exit is quiet."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; whatever escapes it becomes one line on stderr and exit 2.

    Subcommands report the errors they expect themselves; this is the net under them,
    so a user never sees a Python traceback (REPLOG_TRACEBACK=1 shows it, for us).
    """
    args = sys.argv[1:] if argv is None else argv
    prog = "replog" if not args or args[0].startswith("-") else f"replog {args[0]}"
    try:
        if args and args[0] == "bench":
            return bench_main(args[1:])
        benchmarks = ", ".join(BENCHMARKS)
        table = {**COMMANDS, "bench": ("replog_cli:bench_main", f"benchmarks: {benchmarks}")}
        return _dispatch(table, args, "replog")
    except BaseException as raised:
        error = _leaf(raised)
        if isinstance(error, SystemExit):
            raise error from None
        if os.environ.get("REPLOG_TRACEBACK"):
            raise
        if isinstance(error, BrokenPipeError):
            _silence_stdout()
            return EXIT_HARNESS
        if isinstance(error, KeyboardInterrupt):
            print(f"{prog}: interrupted", file=sys.stderr)
            return EXIT_HARNESS
        if isinstance(error, OSError):
            where = f": {error.filename}" if error.filename else ""
            print(f"{prog}: {error.strerror or error}{where}", file=sys.stderr)
            return EXIT_HARNESS
        path = _save_traceback(raised)
        print(
            f"{prog}: internal error: {type(error).__name__}: {error} "
            f"(a bug in replog; traceback in {path})",
            file=sys.stderr,
        )
        return EXIT_HARNESS


if __name__ == "__main__":
    sys.exit(main())
