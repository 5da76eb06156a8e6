"""`replog bench checker`: the linearizability checker over the whole Porcupine corpus
(check time only, parsing excluded, best of --reps, as Porcupine's own figures), and the
queue checker over a generated history of --queue-ops ops."""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from jepsen_py import importers, linearizable, queue
from jepsen_py.history import Op
from jepsen_py.models import MODELS
from model.arguments import existing_directory, integer

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "porcupine"
PORCUPINE_TOTAL_MS = 514.6
IMPORTER = {"etcd-register": importers.porcupine_etcd, "kv": importers.porcupine_kv}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="replog bench checker", description=__doc__)
    parser.add_argument("--corpus", type=existing_directory, default=str(CORPUS))
    parser.add_argument("--reps", type=integer(1), default=5)
    parser.add_argument(
        "--queue-ops", type=integer(0), default=1_000_000, help="0: no queue figure"
    )
    args = parser.parse_args(argv)
    mismatches = bench_corpus(Path(args.corpus), args.reps)
    if args.queue_ops:
        bench_queue(args.queue_ops)
    return 1 if mismatches else 0


def bench_corpus(corpus: Path, reps: int) -> int:
    manifest = json.loads((corpus / "manifest.json").read_text())
    rows = []
    mismatches = 0
    for entry in manifest["files"]:
        if entry["expected_linearizable"] is None:
            continue
        history = IMPORTER[entry["model"]]((corpus / entry["path"]).read_text())
        best_ms, valid = min(_time_check(history, entry["model"]) for _ in range(reps))
        if valid != entry["expected_linearizable"]:
            mismatches += 1
            print(f"VERDICT MISMATCH {entry['path']}: got {valid}")
        rows.append((best_ms, entry["path"], entry.get("porcupine_check_ms")))
    total_ms = sum(row[0] for row in rows)
    print(
        f"porcupine corpus: {len(rows)} files, total {total_ms:.1f} ms "
        f"(Porcupine/Go {PORCUPINE_TOTAL_MS} ms), {mismatches} verdict mismatches"
    )
    for best_ms, path, go_ms in sorted(rows, reverse=True)[:5]:
        print(f"  {path:<24} {best_ms:8.1f} ms   (Porcupine {go_ms} ms)")
    return mismatches


def _time_check(history: list[Op], model_name: str) -> tuple[float, object]:
    model = MODELS[model_name]()
    started = time.perf_counter()
    verdicts = linearizable.decide(model, model.partition(linearizable.operations(history, model)))
    elapsed_ms = (time.perf_counter() - started) * 1000
    values = {verdict.valid for verdict in verdicts}
    return elapsed_ms, False if False in values else "unknown" if "unknown" in values else True


def bench_queue(ops: int) -> None:
    history = queue_history(ops, seed=1)
    started = time.perf_counter()
    result = queue.check(history)
    elapsed_s = time.perf_counter() - started
    print(f"queue checker: {len(history)} ops in {elapsed_s:.2f} s, valid={result.valid}")


def queue_history(ops: int, seed: int, keys: int = 8, processes: int = 10) -> list[Op]:
    """A valid Kafka history of about `ops` ops (invocations and completions): producers
    send to random keys, consumers poll forward from their positions and sometimes
    re-assign (restarting from 0), and a final assign+poll per key reads every record."""
    rng = random.Random(seed)
    logs: list[list[int]] = [[] for _ in range(keys)]
    positions: list[list[int]] = [[0] * keys for _ in range(processes)]
    history: list[Op] = []

    def emit(process: int, f: str, call_value: object, value: object) -> None:
        history.append(Op(len(history), len(history) * 1000, process, "invoke", f, call_value))
        history.append(Op(len(history), len(history) * 1000, process, "ok", f, value))

    next_value = 0
    while len(history) < ops - 4 * keys:
        process = rng.randrange(processes)
        roll = rng.random()
        if roll < 0.5:
            key = rng.randrange(keys)
            logs[key].append(next_value)
            emit(process, "send", [key, next_value], [len(logs[key]) - 1, next_value])
            next_value += 1
        elif roll < 0.99:
            emit(process, "poll", None, _poll(logs, positions[process], rng.randrange(keys), 4))
        else:
            positions[process] = [0] * keys
            emit(process, "assign", list(range(keys)), list(range(keys)))
    for key in range(keys):
        emit(0, "assign", [key], [key])
        emit(0, "poll", None, _poll(logs, [0] * keys, key, len(logs[key])))
    return history


def _poll(logs: list[list[int]], position: list[int], key: int, limit: int) -> dict[str, list]:
    start = position[key]
    records = [
        [offset, logs[key][offset]] for offset in range(start, min(start + limit, len(logs[key])))
    ]
    position[key] = start + len(records)
    return {str(key): records}
