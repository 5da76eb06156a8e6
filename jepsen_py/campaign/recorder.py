"""The history as it happens: ops numbered, timed and written out as they are recorded.

Each op is appended to `history.jsonl` at once (flushed every FLUSH_EVERY_OPS ops and
at close), so a campaign that dies half-way still leaves the history up to that point.
Times are nanoseconds since the campaign started, on trio's clock, so a simulated run
under MockClock records simulated time.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, TextIO

import trio

from jepsen_py.history import Op

FLUSH_EVERY_OPS = 256


class Recorder:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.ops: list[Op] = []
        self.origin_s = trio.current_time()
        self.outcomes: Counter[str] = Counter()
        self._stream = stream

    def start_clock(self) -> None:
        """Time 0 is when the clients start, not when the cluster began to boot."""
        assert not self.ops, "the clock starts before the first op"
        self.origin_s = trio.current_time()

    def now_s(self) -> float:
        return trio.current_time() - self.origin_s

    def record(
        self, process: int | str, type_: str, f: str, value: Any, error: str | None = None
    ) -> Op:
        op = Op(len(self.ops), int(self.now_s() * 1e9), process, type_, f, value, error)
        self.ops.append(op)
        if isinstance(process, int) and type_ != "invoke":
            self.outcomes[type_] += 1
        if self._stream is not None:
            self._stream.write(json.dumps(op.to_json(), separators=(",", ":")) + "\n")
            if len(self.ops) % FLUSH_EVERY_OPS == 0:
                self._stream.flush()
        return op

    def close(self) -> None:
        if self._stream is not None:
            self._stream.flush()
