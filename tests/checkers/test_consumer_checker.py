"""The consumer-processing checker on hand-built histories: one case per anomaly, and
the allowances each commit discipline makes."""

from __future__ import annotations

from typing import Any

import pytest

from jepsen_py import analyze, consumer
from jepsen_py.history import HistoryError, Op, write_jsonl

ALO, AMO = consumer.AT_LEAST_ONCE, consumer.AT_MOST_ONCE


class History:
    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.log: dict[int, list[int]] = {}
        self.values = 0

    def _pair(self, process: int, f: str, value: Any, kind: str, result: Any, error=None) -> None:
        time = len(self.ops) * 1_000_000
        self.ops.append(Op(len(self.ops), time, process, "invoke", f, value))
        self.ops.append(Op(len(self.ops), time + 500_000, process, kind, f, result, error))

    def sends(self, key: int, count: int, process: int = 9) -> None:
        for _ in range(count):
            log = self.log.setdefault(key, [])
            self._pair(process, "send", [key, self.values], "ok", [len(log), self.values])
            log.append(self.values)
            self.values += 1

    def value_at(self, key: int, offset: int) -> int:
        return self.log[key][offset]

    def consume(
        self,
        process: int,
        key: int,
        offsets: range | list[int],
        *,
        member: str = "m1",
        generation: int = 1,
        commit: str = ALO,
        processed: bool = True,
        events: list[dict] | None = None,
        kind: str = "ok",
        error: str | None = None,
    ) -> None:
        records = [[o, self.value_at(key, o)] for o in offsets]
        value = {
            "member": member,
            "generation": generation,
            "commit": commit,
            "polled": {str(key): records} if records else {},
            "processed": {str(key): records} if records and processed else {},
            "committed": {str(key): offsets[-1] + 1} if records else None,
            "commit_error": None,
            "events": events or [],
        }
        self._pair(process, "consume", None, kind, value, error)

    def lag(self, key: int, status: str) -> None:
        row = {"key": key, "committed": 0, "log_end": 9, "log_start": 0, "lag": 9, "status": status}
        self._pair(8, "lag", None, "ok", {"status": status, "partitions": [row]})


def _assign(keys: list[int], generation: int = 1, member: str = "m1") -> dict:
    return {"event": "assign", "ago_ms": 0, "generation": generation, "member": member,
            "keys": keys, "reason": "assigned"}  # fmt: skip


def _reset(key: int, from_offset: int | None, to_offset: int | None, policy: str) -> dict:
    return {"event": "reset", "ago_ms": 0, "key": key, "from": from_offset, "to": to_offset,
            "policy": policy, "reason": "offset out of range"}  # fmt: skip


def test_every_record_processed_once_is_valid():
    h = History()
    h.sends(0, 10)
    h.consume(0, 0, range(0, 5), events=[_assign([0])])
    h.consume(0, 0, range(5, 10))
    result = consumer.check(h.ops)
    assert result.valid is True, result.anomalies
    assert result.stats["acknowledged_sends"] == 10 and result.stats["unprocessed"] == 0


def test_a_gap_nobody_chose_is_a_silent_skip_and_lost_processing():
    h = History()
    h.sends(0, 10)
    h.consume(0, 0, range(0, 3))
    h.consume(0, 0, range(6, 10))
    result = consumer.check(h.ops)
    assert result.valid is False
    assert result.anomalies["silent-skip"] == [
        {"key": "0", "from_offset": 3, "to_offset": 5, "records": 3}
    ]
    assert [case["offset"] for case in result.anomalies["lost-processing"]] == [3, 4, 5]


def test_a_gap_a_reset_chose_is_skipped_by_reset_with_the_lag_before_it():
    h = History()
    h.sends(0, 10)
    h.consume(0, 0, range(0, 3))
    h.lag(0, "CRITICAL")
    h.consume(0, 0, range(8, 10), events=[_reset(0, 3, 8, "latest")])
    result = consumer.check(h.ops)
    assert result.valid is False
    assert "silent-skip" not in result.anomalies and "lost-processing" not in result.anomalies
    (skip,) = result.anomalies["skipped-by-reset"]
    assert (skip["from_offset"], skip["to_offset"], skip["records"]) == (3, 7, 5)
    assert skip["reset"]["policy"] == "latest" and skip["reset"]["from"] == 3
    assert skip["lag_before"]["status"] == "CRITICAL"


def test_records_above_the_highest_processed_are_unprocessed_not_lost():
    h = History()
    h.sends(0, 10)
    h.consume(0, 0, range(0, 4))
    result = consumer.check(h.ops)
    assert result.valid is True and result.stats["unprocessed"] == 6


def test_a_new_group_starting_at_latest_has_not_skipped_what_came_before():
    h = History()
    h.sends(0, 10)
    h.consume(0, 0, range(6, 10), events=[_reset(0, None, 6, "latest")])
    result = consumer.check(h.ops)
    assert result.valid is True, result.anomalies


def test_none_failing_loudly_is_counted_not_an_anomaly():
    h = History()
    h.sends(0, 10)
    h.consume(0, 0, range(0, 3))
    error = "OffsetOutOfRange: offset 3 is out of range and auto.offset.reset=none"
    h.consume(0, 0, [], events=[_reset(0, 3, None, "none")], kind="fail", error=error)
    result = consumer.check(h.ops)
    assert result.valid is True
    (failure,) = result.stats["reset_failures"]
    assert failure["error"] == error and failure["policy"] == "none"


def test_duplicates_are_allowed_at_least_once_and_an_anomaly_at_most_once():
    for commit, valid in ((ALO, True), (AMO, False)):
        h = History()
        h.sends(0, 6)
        h.consume(0, 0, range(0, 4), commit=commit)
        h.consume(1, 0, range(2, 6), member="m2", generation=2, commit=commit)
        result = consumer.check(h.ops)
        assert result.valid is valid, (commit, result.anomalies)
        if valid:
            assert result.stats["duplicates_allowed"] == 2
        else:
            assert [c["offset"] for c in result.anomalies["duplicate-processing"]] == [2, 3]


def test_at_most_once_crash_after_commit_loses_records_allowed():
    h = History()
    h.sends(0, 9)
    h.consume(0, 0, range(0, 3), commit=AMO)
    h.consume(0, 0, range(3, 6), commit=AMO, processed=False, kind="info")
    h.consume(1, 0, range(6, 9), member="m2", generation=2, commit=AMO)
    result = consumer.check(h.ops)
    assert result.valid is True, result.anomalies
    assert result.stats["lost_at_most_once"] == 3 and result.stats["crashes"] == 1


def test_at_least_once_does_not_excuse_the_same_gap():
    h = History()
    h.sends(0, 9)
    h.consume(0, 0, range(0, 3))
    h.consume(0, 0, range(3, 6), processed=False, kind="info")
    h.consume(1, 0, range(6, 9), member="m2", generation=2)
    result = consumer.check(h.ops)
    assert [c["offset"] for c in result.anomalies["lost-processing"]] == [3, 4, 5]


def test_two_members_owning_a_partition_in_one_generation():
    h = History()
    h.sends(0, 6)
    h.consume(0, 0, range(0, 3), events=[_assign([0], 4, "m1")], member="m1", generation=4)
    h.consume(1, 0, range(3, 6), events=[_assign([0], 4, "m2")], member="m2", generation=4)
    result = consumer.check(h.ops)
    (case,) = result.anomalies["two-owners"]
    assert case["generation"] == 4 and case["members"] == ["m1", "m2"]


def test_rebalances_over_time():
    h = History()
    h.sends(0, 3)
    for generation in (1, 2, 3):
        h.consume(0, 0, [], events=[_assign([0], generation)], generation=generation)
    rebalances = consumer.check(h.ops).stats["rebalances"]
    assert rebalances["count"] == 2
    assert [g for g, _ in rebalances["generations"]] == [1, 2, 3]
    assert sum(count for _, count in rebalances["series"]) == 3


def test_a_malformed_consume_is_a_history_error():
    h = History()
    h._pair(0, "consume", None, "ok", {"records": {}})
    with pytest.raises(HistoryError, match="line 2"):
        consumer.check(h.ops)


def test_replog_analyze_runs_the_consumer_checker_on_consume_ops(tmp_path, capsys):
    h = History()
    h.sends(0, 6)
    h.consume(0, 0, range(0, 2))
    h.consume(0, 0, range(4, 6))
    path = tmp_path / "history.jsonl"
    with open(path, "w", encoding="utf-8") as stream:
        write_jsonl(h.ops, stream)
    assert analyze.main([str(path)]) == 1
    assert "silent-skip" in capsys.readouterr().out
    assert analyze.main([str(path), "--checker", "consumer", "--json"]) == 1
