"""argparse types and checks shared by every `replog` subcommand: each number and path is
checked against what it may be before any work starts, and a bad argument is one line
naming the flag and what is allowed (exit 2).

It lives in model/ because model/ is the one folder every other may import."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn


class Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line instead of after the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def integer(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high] (no upper end when high is None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{_allowed(low, high)}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{_allowed(low, high)}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its messages
    return parse


def _allowed(low: int, high: int | None) -> str:
    if high is not None:
        return f"must be an integer from {low} to {high}"
    return f"must be an integer >= {low}"


def number_above(
    bound: float, unit: str = "", *, inclusive: bool = False
) -> Callable[[str], float]:
    """An argparse type: a finite number > `bound` (>= with `inclusive`: a limit of 0
    that stops at once), in `unit` (a duration, a rate)."""
    what = f"a number of {unit}" if unit else "a number"
    relation = ">=" if inclusive else ">"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and (value >= bound if inclusive else value > bound)):
            raise argparse.ArgumentTypeError(f"must be {what} {relation} {bound:g}, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


seconds = number_above(0, "seconds")


def existing_directory(text: str) -> str:
    """An argparse type: a directory that exists (where a run writes its files)."""
    if not os.path.isdir(text):
        problem = "not a directory" if os.path.exists(text) else "no such directory"
        raise argparse.ArgumentTypeError(f"{text}: {problem}")
    return text


def new_file(text: str) -> str:
    """An argparse type: a file a run will write (its directory made if missing)."""
    if (reason := unwritable_file(Path(text))) is not None:
        raise argparse.ArgumentTypeError(reason)
    return text


def unwritable_dir(path: Path) -> str | None:
    """Why files cannot be written into directory `path` (created if missing), or None."""
    if path.exists() and not path.is_dir():
        return f"{path} is a file, not a directory"
    return _uncreatable(path)


def unwritable_file(path: Path) -> str | None:
    """Why file `path` cannot be written (its directory created if missing), or None."""
    if path.is_dir():
        return f"{path} is a directory, not a file"
    if path.exists() and not os.access(path, os.W_OK):
        return f"{path} is not writable"
    return _uncreatable(path.parent)


def _uncreatable(directory: Path) -> str | None:
    """Why `directory` cannot be made and written into: its nearest existing ancestor
    must be a writable directory."""
    existing = directory
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        if existing == directory:
            return f"{directory} is a file, not a directory"
        return f"{existing} is a file, so {directory} cannot be a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None
