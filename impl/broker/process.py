"""Start and stop `replog broker` as an OS process (for tests, benchmarks and clusters).

A broker prints exactly one line on stdout once it listens ("broker N listening on
HOST:PORT"); `start` waits for that line, so callers never race the bind. Its log goes
to a file next to its data dir, where a failed start's reason can be read back.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
_LISTENING = re.compile(r"(?:broker|controller) (\d+) listening on (\S+):(\d+)")


class BrokerStartError(RuntimeError):
    """The broker exited or stayed silent; the message carries the tail of its log."""


@dataclass
class BrokerProcess:
    broker_id: int
    data_dir: Path
    argv: list[str]
    log_path: Path
    host: str = ""
    port: int = 0
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.popen is not None, "not started"
        return self.popen.pid

    def start(self, timeout_s: float = START_TIMEOUT_S) -> BrokerProcess:
        return self.launch().wait_listening(timeout_s)

    def launch(self) -> BrokerProcess:
        """Spawn the process without waiting for it to listen."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self.popen = subprocess.Popen(
                self.argv, stdout=subprocess.PIPE, stderr=log_file, env=_child_env()
            )
        return self

    def wait_listening(self, timeout_s: float = START_TIMEOUT_S) -> BrokerProcess:
        """Read the one line the process prints once it listens; BrokerStartError if not."""
        line = self._first_line(timeout_s)
        match = _LISTENING.search(line)
        if match is None:
            self.kill()
            raise BrokerStartError(f"broker {self.broker_id} did not start: {self._log_tail()}")
        self.host, self.port = match.group(2), int(match.group(3))
        return self

    def _first_line(self, timeout_s: float) -> str:
        assert self.popen is not None and self.popen.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.popen.stdout, selectors.EVENT_READ)
            if not selector.select(timeout_s):
                return ""
        return self.popen.stdout.readline().decode(errors="replace")

    def _log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM and wait: the broker flushes and checkpoints. Returns the exit code."""
        if self.popen is None or self.popen.poll() is not None:
            return self.popen.returncode if self.popen else 0
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise BrokerStartError(
                f"broker {self.broker_id} ignored SIGTERM for {timeout_s} s"
            ) from None

    def kill(self) -> None:
        """SIGKILL: a crash, no flush."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        if self.popen is not None and self.popen.stdout is not None:
            self.popen.stdout.close()

    def signal(self, signum: int) -> None:
        assert self.popen is not None, "not started"
        self.popen.send_signal(signum)


def broker_argv(
    broker_id: int, data_dir: Path, listen: str = "127.0.0.1:0", config: list[str] | None = None
) -> list[str]:
    argv = [sys.executable, "-m", "replog_cli", "broker", "--id", str(broker_id)]
    argv += ["--data-dir", str(data_dir), "--listen", listen]
    for assignment in config or []:
        argv += ["--config", assignment]
    return argv


def start_broker(
    broker_id: int,
    data_dir: Path,
    config: list[str] | None = None,
    listen: str = "127.0.0.1:0",
) -> BrokerProcess:
    """Start a broker on a free loopback port (unless `listen` names one) and wait for it."""
    argv = broker_argv(broker_id, data_dir, listen, config)
    log_path = data_dir.parent / f"broker-{broker_id}.log"
    return BrokerProcess(broker_id, data_dir, argv, log_path).start()


def _child_env() -> dict[str, str]:
    # The child must import this checkout's packages whatever the caller's cwd is.
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
