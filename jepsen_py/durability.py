"""Durability: every acknowledged send is in the final reads taken after the cluster healed.

Final reads are the `ok` polls invoked after the last nemesis `heal` (or, without one,
after the last nemesis op; without any, after every send completed). With acks=all an
acknowledged record must survive any fault the cluster was built to tolerate; with acks=1
or 0 Kafka promises nothing across a leader failure, so losses are reported but allowed.
"""

from __future__ import annotations

from typing import Any

from jepsen_py.history import Op, pair_positions
from jepsen_py.result import Result


def check(history: list[Op], acks: str = "all") -> Result:
    pairs = [
        (history[call], history[ret])
        for call, ret in pair_positions(history)
        if ret is not None and history[ret].type == "ok"
    ]
    acknowledged = [
        (invocation, completion) for invocation, completion in pairs if invocation.f == "send"
    ]
    after = _final_reads_start(history, acknowledged)
    final_reads = [c for i, c in pairs if i.f == "poll" and i.index > after]
    stats: dict[str, Any] = {
        "acks": acks,
        "acknowledged_sends": len(acknowledged),
        "final_reads": len(final_reads),
    }
    if acknowledged and not final_reads:
        stats["reason"] = "no final reads after heal: durability cannot be judged"
        return Result("unknown", {}, stats)
    present = {
        (str(key), value)
        for completion in final_reads
        for key, records in completion.value.items()
        for _, value in records
    }
    lost = [
        {
            "key": str(invocation.value[0]),
            "value": invocation.value[1],
            "offset": completion.value[0],
            "send_index": invocation.index,
        }
        for invocation, completion in acknowledged
        if (str(invocation.value[0]), invocation.value[1]) not in present
    ]
    stats["lost"] = len(lost)
    anomalies = {"lost-acknowledged": lost} if lost else {}
    return Result(acks != "all" or not lost, anomalies, stats)


def _final_reads_start(history: list[Op], acknowledged: list[tuple[Op, Op]]) -> int:
    """The op index after which polls count as final reads."""
    nemesis = [op for op in history if not op.is_client]
    heals = [op for op in nemesis if op.f == "heal"]
    if heals or nemesis:
        return (heals or nemesis)[-1].index
    return max((completion.index for _, completion in acknowledged), default=-1)
