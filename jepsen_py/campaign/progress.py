"""The progress line while a campaign runs: time left, client outcomes, active faults.

On a terminal it redraws one line every second; otherwise (CI logs) it prints a line
every LOG_INTERVAL_S. A simulated campaign passes a fixed `interval_s` and the task
wakes at it even when nothing is drawn: its wakeups are part of the schedule the seed
replays, so they must not depend on --quiet or on whether stderr is a terminal. Times
are trio's, so under the simulator the line shows simulated seconds left.
"""

from __future__ import annotations

import sys
from typing import TextIO

import trio

from jepsen_py.campaign.nemesis import FaultState
from jepsen_py.campaign.recorder import Recorder

TTY_INTERVAL_S = 1.0
LOG_INTERVAL_S = 10.0
WIDTH_MAX = 120


class Progress:
    def __init__(
        self,
        recorder: Recorder,
        faults: FaultState,
        time_limit_s: float,
        enabled: bool = True,
        stream: TextIO | None = None,
        interval_s: float | None = None,
    ) -> None:
        self.recorder = recorder
        self.faults = faults
        self.time_limit_s = time_limit_s
        self.enabled = enabled
        # Looked up now, not at import: whoever replaced sys.stderr since gets the line.
        self.stream = sys.stderr if stream is None else stream
        self.phase = "running"
        self._tty = self.stream.isatty()
        self._fixed_interval_s = interval_s
        self._done = trio.Event()
        self._started_s = trio.current_time()

    def line(self) -> str:
        left_s = max(0.0, self.time_limit_s - (trio.current_time() - self._started_s))
        outcomes = self.recorder.outcomes
        when = f"{left_s:4.0f}s left" if self.phase == "running" else self.phase
        faults = ", ".join(self.faults.active()) or "none"
        text = (
            f"[{when}] ok {outcomes['ok']} fail {outcomes['fail']} info {outcomes['info']}"
            f" | faults: {faults}"
        )
        return text[:WIDTH_MAX]

    async def run(self) -> None:
        if not self.enabled and self._fixed_interval_s is None:
            return
        interval_s = self._fixed_interval_s or (TTY_INTERVAL_S if self._tty else LOG_INTERVAL_S)
        while not self._done.is_set():
            self._show()
            with trio.move_on_after(interval_s):
                await self._done.wait()
        self._show()
        if self._tty and self.enabled:
            self.stream.write("\n")

    def stop(self) -> None:
        self._done.set()

    def _show(self) -> None:
        if not self.enabled:
            return
        if self._tty:
            self.stream.write("\r\x1b[2K" + self.line())
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()
