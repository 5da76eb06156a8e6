"""Command-line checks shared by `replog check`, `replog matrix` and their benchmarks:
every number is checked against what it may be before anything runs, and every bad
argument is one line naming the flag and what is allowed (exit 2)."""

from __future__ import annotations

import argparse
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


def seconds(text: str) -> float:
    """An argparse type: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text}")
    return value


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
