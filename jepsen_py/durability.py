"""Durability: every acknowledged send is in the final reads taken after the cluster healed.

Final reads are the `ok` polls invoked after the last nemesis `heal` (or, without one,
after the last nemesis op; without any, after every send completed), in history order.
They are taken to read each key from its start. The property is the same under every
configuration: an acknowledged record that is gone is a lost acknowledged write, and the
result is invalid. The recorded `acks` only explains it: with acks=all the record had to
survive any fault the cluster was built to tolerate (a broker bug or an unsafe
min.insync.replicas); with acks=1 or 0 Kafka promises nothing across a leader failure,
so the loss is the configuration's documented price, said in a note. Unrecorded `acks`
(an imported history) is said, never assumed.

A record is only judged lost if a final read of its key spanned its offset (returned
records on both sides of it, or at it), or a final read was a read to the end of every
key (a poll invoked with value "final", the campaign's last read): a final read that
started after it or stopped short of it proves nothing about it, so such records make
the verdict "unknown" rather than a loss.
"""

from __future__ import annotations

from typing import Any

from jepsen_py import queue
from jepsen_py.history import Op, pair_positions
from jepsen_py.result import Result, no_evidence

# The client ops this checker reads; any other f is not its evidence.
FUNCTIONS = frozenset({"send", "poll"})
# A final poll invoked with this value reads every key from its start to its end offset.
READ_TO_END = "final"


def check(history: list[Op], acks: str | None) -> Result:
    """`acks` as the run recorded it ("all", "1", "0"), or None when it was not recorded."""
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
    notes = [_ACKS_NOTES.get(acks, _ACKS_NOTES[None])]
    if not acknowledged:
        return no_evidence("no acknowledged send", {"acks": acks}, notes)
    after = _final_reads_start(history, completed)
    final_polls = [(call, by_key) for call, by_key in polls if call > after]
    to_end = any(history[call].value == READ_TO_END for call, _ in final_polls)
    present: set[tuple[str, Any]] = set()
    read_up_to: dict[str, int] = {}
    # Each final poll's span of offsets per key: a poll reads a key's offsets in order
    # with nothing skipped, so a record inside a span that the span lacks is gone; one
    # outside every span was never looked for (an ordinary poll reads a window, and an
    # interrupted run has no read to the end).
    spans: dict[str, list[tuple[int, int]]] = {}
    for _, by_key in final_polls:
        for key, records in by_key.items():
            for _, value in records:
                present.add((key, value))
            if records:
                offsets = [offset for offset, _ in records]
                spans.setdefault(key, []).append((min(offsets), max(offsets)))
                read_up_to[key] = max(read_up_to.get(key, -1), max(offsets))
    lost, unreached = [], []
    for send_index, key, value, offset in acknowledged:
        if (key, value) in present:
            continue
        case = {"key": key, "value": value, "offset": offset, "send_index": send_index}
        looked_for = to_end or any(low <= offset <= high for low, high in spans.get(key, ()))
        (lost if looked_for else unreached).append(case)
    stats: dict[str, Any] = {
        "acks": acks,
        "acknowledged_sends": len(acknowledged),
        "final_reads": len(final_polls),
        "final_read_to_end": to_end,
        "lost": len(lost),
        "unreached": len(unreached),
        "counts": {"lost-acknowledged": len(lost)} if lost else {},
    }
    if lost:
        return Result(False, {"lost-acknowledged": lost}, stats, notes=notes)
    if unreached:
        reason = _unreached_reason(unreached[0], read_up_to, len(unreached))
        return Result("unknown", stats=stats, reason=reason, notes=notes)
    return Result(True, stats=stats, notes=notes)


_ACKS_NOTES = {
    "all": "acks=all (recorded): an acknowledged record had to survive every fault the "
    "cluster was built to tolerate",
    "1": "acks=1 (recorded): Kafka promises nothing for a record only the leader had when "
    "it failed; a loss here is the configuration's documented price, not a broker bug",
    "0": "acks=0 (recorded): the client never waits for the broker; an acknowledgement "
    "proves nothing, so a loss is the configuration's documented price",
    None: "acks: unknown (not recorded); durability checks only acknowledged writes",
}


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
