"""What a model-checking answer may say, and its exit code: one place for every engine.

A scope "held" only when its bound was reached: the state space exhausted, or every trace
up to the depth bound explored. A search stopped by a time limit or a states cap before
that is "unknown", whatever it had seen: the answer must not depend on the machine's load.
"""

from __future__ import annotations

from collections.abc import Iterable

HELD = "held"
VIOLATED = "violated"
UNKNOWN = "unknown"

EXIT_CODES = {HELD: 0, VIOLATED: 1, UNKNOWN: 3}


def overall(verdicts: Iterable[str]) -> str:
    """Violated if any scope is, else unknown if any scope is, else held."""
    found = set(verdicts)
    if VIOLATED in found:
        return VIOLATED
    return UNKNOWN if UNKNOWN in found else HELD


def exit_code(verdict: str) -> int:
    return EXIT_CODES[verdict]


# The flag that lifts each limit a search may stop on.
GO_FURTHER = {
    "time": "a larger --time-limit (or none) goes further",
    "states": "a larger --states-max goes further",
}
