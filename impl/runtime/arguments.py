"""argparse types for replog's subcommands: a bad value becomes argparse's one-line error
naming the option and what it accepts (exit 2), before any work starts."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable


def integer_at_least(minimum: int) -> Callable[[str], int]:
    """An integer >= `minimum` (a count, a size, a bound)."""

    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {raw!r}")
        return value

    return parse


def number_above(bound: float) -> Callable[[str], float]:
    """A finite number > `bound` (a duration, a rate)."""

    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > bound):
            raise argparse.ArgumentTypeError(f"expected a number > {bound:g}, got {raw!r}")
        return value

    return parse


def existing_directory(raw: str) -> str:
    """A directory that exists (where a run writes its files)."""
    if not os.path.isdir(raw):
        problem = "not a directory" if os.path.exists(raw) else "no such directory"
        raise argparse.ArgumentTypeError(f"{raw}: {problem}")
    return raw


def new_file(raw: str) -> str:
    """A file a run will write: not a directory, in a directory that exists."""
    parent = os.path.dirname(raw) or "."
    if os.path.isdir(raw):
        raise argparse.ArgumentTypeError(f"{raw}: is a directory, expected a file name")
    if not os.path.isdir(parent):
        raise argparse.ArgumentTypeError(f"{raw}: no such directory {parent}")
    return raw
