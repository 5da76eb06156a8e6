"""Durability: every acknowledged send is in the final reads taken after the cluster healed.

Final reads are the `ok` polls invoked after the last nemesis `heal` (or, without one,
after the last nemesis op; without any, after every send completed), in history order.
They are taken to read each key from its start. With acks=all an acknowledged record must
survive any fault the cluster was built to tolerate; with acks=1 or 0 Kafka promises
nothing across a leader failure, so losses are reported but allowed.

A record is only judged lost if the final reads of its key got past its offset: a final
read that stopped short proves nothing about the records beyond where it stopped, so
those make the verdict "unknown" rather than a loss.
"""

from __future__ import annotations

from typing import Any

from jepsen_py import queue
from jepsen_py.history import Op, pair_positions
from jepsen_py.result import Result


def check(history: list[Op], acks: str = "all") -> Result:
    completed = [
        (call, ret)
        for call, ret in pair_positions(history)
        if ret is not None and history[ret].type == "ok"
    ]
    acknowledged = [
        (
            history[call].index,
            *queue.sent_record(history[call], call),
            queue.acked_offset(history[ret], ret),
        )
        for call, ret in completed
        if history[call].f == "send"
    ]
    polls = [
        (call, queue.polled(history[ret], ret))
        for call, ret in completed
        if history[call].f == "poll"
    ]
    after = _final_reads_start(history, completed)
    final_reads = [records for call, records in polls if call > after]
    present: set[tuple[str, Any]] = set()
    read_up_to: dict[str, int] = {}
    for by_key in final_reads:
        for key, records in by_key.items():
            for offset, value in records:
                present.add((key, value))
                read_up_to[key] = max(read_up_to.get(key, -1), offset)
    lost, unreached = [], []
    for send_index, key, value, offset in acknowledged:
        if (key, value) in present:
            continue
        case = {"key": key, "value": value, "offset": offset, "send_index": send_index}
        (lost if offset <= read_up_to.get(key, -1) else unreached).append(case)
    stats: dict[str, Any] = {
        "acks": acks,
        "acknowledged_sends": len(acknowledged),
        "final_reads": len(final_reads),
        "lost": len(lost),
        "unreached": len(unreached),
    }
    anomalies = {"lost-acknowledged": lost} if lost else {}
    if lost and acks == "all":
        return Result(False, anomalies, stats)
    if unreached:
        stats["reason"] = _unreached_reason(unreached[0], read_up_to, len(unreached))
        return Result("unknown", anomalies, stats)
    return Result(True, anomalies, stats)


def _unreached_reason(example: dict[str, Any], read_up_to: dict[str, int], count: int) -> str:
    key = example["key"]
    reached = f"read up to offset {read_up_to[key]}" if key in read_up_to else "not read at all"
    return (
        f"the final reads stop short of {count} acknowledged record(s), e.g. key {key!r} "
        f"offset {example['offset']} ({reached}): durability cannot be judged"
    )


def _final_reads_start(history: list[Op], completed: list[tuple[int, int]]) -> int:
    """The history position after which polls count as final reads."""
    nemesis = [position for position, op in enumerate(history) if not op.is_client]
    heals = [position for position in nemesis if history[position].f == "heal"]
    if heals or nemesis:
        return (heals or nemesis)[-1]
    return max((ret for call, ret in completed if history[call].f == "send"), default=-1)
