"""The Kafka queue, durability and performance checkers on generated histories."""

from __future__ import annotations

import copy

import pytest

from jepsen_py import durability, perf, queue
from jepsen_py.bench import queue_history
from jepsen_py.history import Op


@pytest.fixture(scope="module")
def valid_history() -> list[Op]:
    return queue_history(4000, seed=7)


def _first(history: list[Op], f: str, predicate=lambda op: True) -> Op:
    return next(op for op in history if op.f == f and op.type == "ok" and predicate(op))


def _nonempty_poll(op: Op) -> bool:
    return any(len(records) >= 2 for records in op.value.values())


def test_generated_history_is_valid(valid_history: list[Op]) -> None:
    result = queue.check(valid_history)
    assert result.valid is True, result.anomalies
    assert result.stats["unseen_series"][-1][1] == 0


def test_a_value_nobody_read_below_a_read_offset_is_lost(valid_history: list[Op]) -> None:
    history = copy.deepcopy(valid_history)
    polls = [op for op in history if op.f == "poll" and op.type == "ok"]
    victim = next(records[0] for op in polls for records in op.value.values() if records)
    for op in polls:
        for key in op.value:
            op.value[key] = [record for record in op.value[key] if record != victim]
    result = queue.check(history)
    assert result.valid is False
    assert [case["value"] for case in result.anomalies["lost-write"]] == [victim[1]]


def test_offset_and_value_anomalies(valid_history: list[Op]) -> None:
    history = copy.deepcopy(valid_history)
    poll = _first(history, "poll", _nonempty_poll)
    records = next(r for r in poll.value.values() if len(r) >= 2)
    records[1] = [records[1][0], "intruder"]
    result = queue.check(history)
    assert "inconsistent-offsets" in result.stats["bad_anomalies"]


def test_skips_and_reorders_within_and_across_polls(valid_history: list[Op]) -> None:
    history = copy.deepcopy(valid_history)
    poll = _first(history, "poll", lambda op: any(len(r) >= 3 for r in op.value.values()))
    key = next(k for k, r in poll.value.items() if len(r) >= 3)
    records = poll.value[key]
    poll.value[key] = [records[0], records[2]]
    assert "int-poll-skip" in queue.check(history).anomalies
    poll.value[key] = [records[1], records[0]]
    assert "int-nonmonotonic-poll" in queue.check(history).anomalies


def test_aborted_read_and_allowed_setting() -> None:
    history = [
        Op(0, 0, 0, "invoke", "send", ["k", 1]),
        Op(1, 1, 0, "fail", "send", ["k", 1]),
        Op(2, 2, 1, "invoke", "poll", None),
        Op(3, 3, 1, "ok", "poll", {"k": [[0, 1]]}),
    ]
    result = queue.check(history)
    assert result.valid is False and result.anomalies["aborted-read"][0]["send_index"] == 0
    assert queue.check(history, allowed={"aborted-read"}).valid is True


def test_nonmonotonic_send_and_duplicate() -> None:
    history = [
        Op(0, 0, 0, "invoke", "send", ["k", "a"]),
        Op(1, 1, 0, "ok", "send", [5, "a"]),
        Op(2, 2, 0, "invoke", "send", ["k", "b"]),
        Op(3, 3, 0, "ok", "send", [3, "b"]),
        Op(4, 4, 1, "invoke", "poll", None),
        Op(5, 5, 1, "ok", "poll", {"k": [[3, "b"], [4, "a"], [5, "a"]]}),
    ]
    result = queue.check(history)
    assert {"nonmonotonic-send", "duplicate"} <= set(result.anomalies)


def test_durability_after_heal() -> None:
    history = [
        Op(0, 0, 0, "invoke", "send", ["k", 1]),
        Op(1, 1, 0, "ok", "send", [0, 1]),
        Op(2, 2, 0, "invoke", "send", ["k", 2]),
        Op(3, 3, 0, "ok", "send", [1, 2]),
        Op(4, 4, "nemesis", "invoke", "heal", None),
        Op(5, 5, "nemesis", "info", "heal", None),
        Op(6, 6, 1, "invoke", "poll", None),
        Op(7, 7, 1, "ok", "poll", {"k": [[0, 1]]}),
    ]
    result = durability.check(history)
    assert result.valid is False
    assert result.anomalies["lost-acknowledged"][0]["value"] == 2
    assert durability.check(history, acks="1").valid is True
    assert durability.check(history[:6]).valid == "unknown"


def test_perf_quantiles_and_throughput(valid_history: list[Op]) -> None:
    stats = perf.check(valid_history, bucket_ns=100_000).stats
    assert stats["latency_ns"]["send ok"]["p50"] == 1000
    sends = sum(1 for op in valid_history if op.f == "send" and op.type == "ok")
    assert sum(rate for _, rate in stats["throughput_per_s"]["send ok"]) * 1e-4 == pytest.approx(
        sends
    )
