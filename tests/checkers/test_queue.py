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
    """A poll that sees the first record's value again at the second record's offset:
    that value now sits at two offsets (duplicate) and that offset holds two values."""
    history = copy.deepcopy(valid_history)
    poll = _first(history, "poll", _nonempty_poll)
    key, records = next((k, r) for k, r in poll.value.items() if len(r) >= 2)
    (first_offset, first_value), (second_offset, second_value) = records[0], records[1]
    records[1] = [second_offset, first_value]
    result = queue.check(history)
    assert result.valid is False
    assert {"duplicate", "inconsistent-offsets"} <= set(result.anomalies)
    assert result.anomalies["duplicate"] == [
        {"key": key, "value": first_value, "offsets": [first_offset, second_offset]}
    ]
    [conflict] = result.anomalies["inconsistent-offsets"]
    assert (conflict["key"], conflict["offset"]) == (key, second_offset)
    assert set(conflict["values"]) == {first_value, second_value}


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


def _healed(final_read: dict, pre_heal_read: dict | None = None) -> list[Op]:
    """Two acknowledged sends to k (offsets 0 and 1), optionally a poll, a heal, and one
    final read returning `final_read`."""
    before = [] if pre_heal_read is None else [("invoke", None), ("ok", pre_heal_read)]
    events = [
        (0, "invoke", "send", ["k", 1]),
        (0, "ok", "send", [0, 1]),
        (0, "invoke", "send", ["k", 2]),
        (0, "ok", "send", [1, 2]),
        *((1, kind, "poll", value) for kind, value in before),
        ("nemesis", "invoke", "heal", None),
        ("nemesis", "info", "heal", None),
        (2, "invoke", "poll", None),
        (2, "ok", "poll", final_read),
    ]
    return [Op(i, i, process, kind, f, value) for i, (process, kind, f, value) in enumerate(events)]


def test_durability_reports_an_acknowledged_record_the_final_reads_passed_over() -> None:
    # Offset 1 was truncated away and rewritten with 3: the read got past it, so 2 is lost.
    history = _healed({"k": [[0, 1], [1, 3]]})
    result = durability.check(history, "all")
    assert result.valid is False
    assert result.anomalies["lost-acknowledged"] == [
        {"key": "k", "value": 2, "offset": 1, "send_index": 2}
    ]
    assert durability.check(_healed({"k": [[0, 1], [1, 2]]}), "all").valid is True


def test_durability_loss_is_invalid_under_any_acks_and_the_note_says_why() -> None:
    """One property under every configuration; the recorded acks only explains the loss,
    and unrecorded acks is said, not assumed."""
    history = _healed({"k": [[0, 1], [1, 3]]})
    for acks, note in (
        ("all", "acks=all (recorded)"),
        ("1", "acks=1 (recorded): Kafka promises nothing"),
        (None, "acks: unknown (not recorded); durability checks only acknowledged writes"),
    ):
        result = durability.check(history, acks)
        assert (result.valid, result.count("lost-acknowledged")) == (False, 1), acks
        assert result.stats["acks"] == acks
        assert result.notes[0].startswith(note)


def test_durability_without_an_acknowledged_send_is_no_evidence() -> None:
    history = [
        Op(0, 0, 0, "invoke", "send", ["k", 1]),
        Op(1, 1, 0, "fail", "send", ["k", 1]),
        Op(2, 2, 1, "invoke", "poll", None),
        Op(3, 3, 1, "ok", "poll", {"k": []}),
    ]
    result = durability.check(history, "all")
    assert result.valid == "unknown"
    assert result.reason == "no evidence (no acknowledged send)"
    assert queue.check(history).valid is True  # an empty poll is still a read it judges
    assert queue.check(history[:2]).reason == (
        "no evidence (no acknowledged send and no completed poll)"
    )


def test_durability_final_read_to_the_end_turns_unreached_into_lost() -> None:
    """A poll invoked "final" reads every key to its end offset: an acknowledged record
    past where it stopped is gone, not unread."""
    history = _healed({"k": [[0, 1]]})
    assert durability.check(history, "all").valid == "unknown"
    history[-2].value = durability.READ_TO_END
    result = durability.check(history, "all")
    assert result.valid is False
    assert result.anomalies["lost-acknowledged"][0]["offset"] == 1


def test_durability_is_unknown_when_final_reads_stop_short() -> None:
    # The final read ends at offset 0: offset 1 may be there, unread, so nothing is lost.
    result = durability.check(_healed({"k": [[0, 1]]}), "all")
    assert result.valid == "unknown" and not result.limit_reached
    assert result.anomalies == {}
    assert result.stats["unreached"] == 1
    assert result.reason is not None
    assert (
        "stop short of 1 acknowledged record(s), e.g. key 'k' offset 1 (read up to offset 0)"
        in result.reason
    )
    no_final_read = _healed({"k": [[0, 1]]})[:6]
    assert durability.check(no_final_read, "all").valid == "unknown"
    assert "not read at all" in str(durability.check(no_final_read, "all").reason)


def test_durability_is_unknown_for_records_before_a_final_read_window() -> None:
    """An ordinary poll reads a window (an interrupted run never reads to the end): a
    record below the window's first offset was never looked for, so it is not lost."""
    history = _healed({"k": [[1, 2]]})
    result = durability.check(history, "all")
    assert result.valid == "unknown"
    assert result.stats["unreached"] == 1 and result.stats["lost"] == 0
    # The same window read from offset 0 passes over the record at 0: then it is lost.
    history = _healed({"k": [[0, 3], [1, 2]]})
    assert durability.check(history, "all").anomalies["lost-acknowledged"] == [
        {"key": "k", "value": 1, "offset": 0, "send_index": 0}
    ]


def test_durability_picks_final_reads_by_position_not_index() -> None:
    """Op indices are labels: here they run backwards, yet only the poll after the heal
    is a final read, so the record it misses is judged lost."""
    history = _healed({"k": [[0, 1], [1, 3]]}, pre_heal_read={"k": [[0, 1], [1, 2]]})
    for position, op in enumerate(history):
        op.index = 100 - position
    result = durability.check(history, "all")
    assert result.valid is False
    assert result.stats["final_reads"] == 1
    assert [case["value"] for case in result.anomalies["lost-acknowledged"]] == [2]


def test_perf_quantiles_and_throughput(valid_history: list[Op]) -> None:
    stats = perf.check(valid_history, bucket_ns=100_000).stats
    assert stats["latency_ns"]["send ok"]["p50"] == 1000
    sends = sum(1 for op in valid_history if op.f == "send" and op.type == "ok")
    assert sum(rate for _, rate in stats["throughput_per_s"]["send ok"]) * 1e-4 == pytest.approx(
        sends
    )
