"""Reproducibility is checked: same seed, same bytes; another seed, another run; the
hash seed changes nothing; and the guard refuses what a seed cannot decide."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import trio

from impl.sim.guard import NondeterminismError, deterministic, run
from impl.sim.workload import run_workload

ROOT = Path(__file__).resolve().parents[2]
SEED = 11
WRITES = 40


def _log(seed: int) -> str:
    return run(run_workload, seed, 2, WRITES, seed=seed).text()


def test_same_seed_same_history_and_another_seed_another():
    first = _log(SEED)
    assert "nemesis crash" in first and "nemesis heal" in first
    assert first.count(" ok write ") >= WRITES, first
    assert "read p0@0" in first
    assert _log(SEED) == first
    assert _log(SEED + 1) != first


def test_history_does_not_depend_on_the_hash_seed():
    script = (
        "import sys, hashlib\n"
        "from impl.sim.guard import run\n"
        "from impl.sim.workload import run_workload\n"
        f"text = run(run_workload, {SEED}, 2, {WRITES}, seed={SEED}).text()\n"
        "print(hashlib.sha256(text.encode()).hexdigest())\n"
    )
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for hash_seed in ("1", "2")
    ]
    digests = set()
    for process in runs:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        digests.add(out.strip())
    assert len(digests) == 1, digests


def _wall_clock_read() -> float:
    return time.time()


def _monotonic_read() -> float:
    return time.monotonic()


@pytest.mark.parametrize(
    "action",
    [
        _wall_clock_read,
        _monotonic_read,
        lambda: random.random(),
        lambda: random.choice([1, 2]),
        lambda: threading.Thread(target=print).start(),
        lambda: socket.socket().connect(("127.0.0.1", 9)),
    ],
)
def test_the_guard_refuses_what_the_seed_does_not_decide(action):
    with deterministic(SEED), pytest.raises(NondeterminismError):
        action()


def test_the_guard_lets_trio_keep_time_and_restores_everything():
    real_time = time.time

    async def sleep_a_while() -> float:
        await trio.sleep(10)
        return trio.current_time()

    assert run(sleep_a_while, seed=SEED) == pytest.approx(10)
    assert time.time is real_time
    assert isinstance(random.random(), float)
