"""Time as the broker sees it: trio's clock for waiting, and a skewable wall clock.

Every timeout and sleep goes through trio (`trio.sleep`, `trio.move_on_after`), so a
broker run under `trio.testing.MockClock` runs on simulated time with no change. The
wall clock (record timestamps, retention, lag) is derived from the same trio clock plus
a fixed origin and a skew that a nemesis can bump, so a clock jump moves only this
broker's idea of "now", as a real NTP step would.
"""

from __future__ import annotations

import time

import trio


class Clock:
    """`monotonic_ms` for intervals, `wall_ms` for timestamps; `skew_ms` shifts the wall."""

    def __init__(self, wall_origin_ms: int | None = None) -> None:
        self._wall_origin_ms = wall_origin_ms
        self._wall_at_zero_ms: int | None = None
        self.skew_ms = 0

    def monotonic_ms(self) -> int:
        return int(trio.current_time() * 1000)

    def wall_ms(self) -> int:
        if self._wall_at_zero_ms is None:
            # Anchored at the first reading inside trio, so wall time then advances
            # exactly with trio's clock (real or mocked) and never from a second source.
            origin = self._wall_origin_ms
            if origin is None:
                origin = int(time.time() * 1000)
            self._wall_at_zero_ms = origin - self.monotonic_ms()
        return self._wall_at_zero_ms + self.monotonic_ms() + self.skew_ms

    def bump(self, delta_ms: int) -> None:
        """Jump the wall clock (a nemesis' clock-bump); monotonic time is unaffected."""
        self.skew_ms += delta_ms

    def reset(self) -> None:
        self.skew_ms = 0
