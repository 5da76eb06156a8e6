"""Leader and follower Partitions exchanging fetches in memory: HW, ISR, divergence and
the truncation variants, one rule per test, with the broker's control flow stubbed by
the `fetch_round` helper."""

from __future__ import annotations

from impl.broker.partition import Appended, Diverging, FetchedData, Partition, Phase
from impl.runtime.fs import MemoryFileSystem
from impl.storage.batch import Record, encode_batch
from impl.storage.log import PartitionLog
from model.config import Config
from model.errors import Errors

A, B, C = 0, 1, 2
REPLICAS = (A, B, C)


def replica(broker: int, config: Config) -> Partition:
    log = PartitionLog.open(MemoryFileSystem(), f"/data{broker}/t-0", config)
    return Partition("t", 0, log, broker, REPLICAS)


def batch(*values: bytes) -> bytes:
    return encode_batch([Record(v) for v in values])


def fetch_round(leader: Partition, follower: Partition, now_ms: int = 0) -> None:
    """One fetch and its response, as the broker's fetcher does it."""
    offset, epoch = follower.fetch_position()
    answer = leader.serve_follower_fetch(follower.broker_id, offset, epoch, 1 << 20, now_ms)
    if isinstance(answer, Diverging):
        follower.truncate_on_divergence(answer.epoch, answer.end_offset)
    elif isinstance(answer, FetchedData):
        follower.append_as_follower(answer.records, answer.high_watermark, now_ms)
    else:
        assert answer == Errors.OFFSET_OUT_OF_RANGE
        follower.truncate_to_leader_end(leader.log.log_end_offset)


def cluster(config: Config) -> tuple[Partition, Partition, Partition]:
    a, b, c = (replica(x, config) for x in REPLICAS)
    isr = frozenset(REPLICAS)
    a.become_leader(1, 1, REPLICAS, isr, now_ms=0)
    b.become_follower(A, 1, 1, REPLICAS, isr)
    c.become_follower(A, 1, 1, REPLICAS, isr)
    return a, b, c


def values(p: Partition) -> list[int]:
    return [h.base_offset for h, _ in p.log.batches()]


def test_hw_advances_only_when_every_isr_member_has_fetched_past_it():
    a, b, c = cluster(Config())
    a.append_as_leader(batch(b"m0"), 0)
    fetch_round(a, b)
    assert a.high_watermark == 0, "C has not fetched m0 yet"
    fetch_round(a, c)
    assert a.high_watermark == 0, "fetches at offset 0 do not show that B or C has m0"
    fetch_round(a, b)
    assert a.high_watermark == 0, "C is still known at offset 0"
    fetch_round(a, c)
    assert a.high_watermark == 1
    assert a.produce_completion(0) == Errors.NONE
    fetch_round(a, b)
    assert b.high_watermark == 1, "followers learn the HW from the next response"


def test_lagging_follower_is_shrunk_out_and_acks_all_then_fails_after_append():
    config = Config(replica_lag_time_max_ms=100)
    a, b, _c = cluster(config)
    a.append_as_leader(batch(b"m0"), 0)
    fetch_round(a, b, now_ms=10)
    fetch_round(a, b, now_ms=20)
    assert a.isr_shrink(now_ms=50) is None, "within the lag limit"
    assert a.isr_shrink(now_ms=150) == frozenset({A, B}), "C never caught up"
    a.pending_isr = frozenset({A, B})
    a.isr_change_committed(frozenset({A, B}), partition_epoch=2)
    assert a.high_watermark == 1, "the HW counts only the ISR"
    a.isr_change_committed(frozenset({A}), partition_epoch=3)
    a.append_as_leader(batch(b"m1"), 0)
    assert a.check_min_isr(-1) == Errors.NOT_ENOUGH_REPLICAS
    assert a.produce_completion(1) is None, "the HW is held by the min-ISR guard"


def test_produce_completion_reports_not_enough_replicas_after_append():
    a, _b, _c = cluster(Config(hw_min_isr_guard=False))
    a.append_as_leader(batch(b"m0"), 0)
    a.isr_change_committed(frozenset({A}), partition_epoch=2)
    assert a.high_watermark == 1
    assert a.produce_completion(0) == Errors.NOT_ENOUGH_REPLICAS_AFTER_APPEND


def test_isr_expansion_epoch_start_rule_and_hw_only_variant():
    """Bug #4's decisive step: B leads epoch 2 from offset 2 with HW 1; C has only m0."""
    for rule, joins in (("epoch-start", False), ("hw-only", True)):
        b = replica(B, Config(isr_expand=rule))
        b.become_follower(A, 1, 1, REPLICAS, frozenset(REPLICAS))
        for offset, value in enumerate((b"m0", b"m1")):
            b.log.append_as_follower(
                encode_batch([Record(value)], base_offset=offset, partition_leader_epoch=1)
            )
        b.append_as_follower(b"", leader_hw=1, now_ms=0)
        b.become_leader(2, 2, REPLICAS, frozenset({B}), now_ms=0)
        assert b.log.leader_epoch_entries[-1] == (2, 2)
        served = b.serve_follower_fetch(C, 1, 1, 1 << 20, now_ms=0)
        assert isinstance(served, FetchedData) and b.high_watermark == 1
        assert (b.isr_expansion(C) == frozenset({B, C})) is joins, rule
        assert (b.isr_expansion(C) is None) is not joins, rule


def test_divergent_suffix_is_truncated_by_leader_epoch():
    a, b, _c = cluster(Config())
    a.append_as_leader(batch(b"m0"), 0)
    fetch_round(a, b)
    a.append_as_leader(batch(b"a1"), 0)
    # B becomes leader in epoch 2 without a1 and writes b1 at offset 1.
    b.become_leader(2, 2, REPLICAS, frozenset({A, B, C}), now_ms=0)
    b.append_as_leader(batch(b"b1"), 0)
    a.become_follower(B, 2, 2, REPLICAS, frozenset({A, B, C}))
    assert a.phase is Phase.FETCHING
    fetch_round(b, a)
    assert a.log.log_end_offset == 1, "a1 (epoch 1 past B's epoch-1 end) is cut"
    fetch_round(b, a)
    assert [r for r in a.log.leader_epoch_entries] == [(1, 0), (2, 1)]
    assert a.log.log_end_offset == 2


def test_high_watermark_truncation_drops_unreplicated_suffix_on_becoming_follower():
    a, b, _c = cluster(Config(truncation="high-watermark"))
    a.append_as_leader(batch(b"m0"), 0)
    a.append_as_leader(batch(b"m1"), 0)
    fetch_round(a, b)
    assert (b.log.log_end_offset, b.high_watermark) == (2, 0)
    b.become_follower(C, 2, 2, REPLICAS, frozenset(REPLICAS))
    assert b.log.log_end_offset == 0, "truncated to its own HW (the KIP-101 bug's first step)"


def test_kip101_and_pre_kip320_followers_look_up_once_before_fetching():
    a, b, _c = cluster(Config(truncation="kip-101"))
    assert b.phase is Phase.TRUNCATING
    a.append_as_leader(batch(b"m0"), 0)
    epoch, end = a.end_offset_for(b.log.latest_epoch)
    b.apply_lookup(epoch, end)
    assert b.phase is Phase.FETCHING


def test_follower_ahead_of_the_leader_is_cut_to_the_leaders_end():
    a, b, _c = cluster(Config(fetch_epoch_fencing=False))
    b.phase = Phase.FETCHING
    b.log.append_as_follower(encode_batch([Record(b"x")], base_offset=0, partition_leader_epoch=1))
    b.log.append_as_follower(encode_batch([Record(b"y")], base_offset=1, partition_leader_epoch=1))
    assert b.fetch_position() == (2, -1)
    fetch_round(a, b)
    assert b.log.log_end_offset == 0


def test_fencing_codes_and_non_leader_append():
    a, b, _c = cluster(Config())
    assert a.check_leader_epoch(0) == Errors.FENCED_LEADER_EPOCH
    assert a.check_leader_epoch(2) == Errors.UNKNOWN_LEADER_EPOCH
    assert b.append_as_leader(batch(b"x"), 0) == Errors.NOT_LEADER_OR_FOLLOWER
    assert isinstance(a.append_as_leader(batch(b"x"), 0), Appended)


def test_new_leader_answers_offset_lookups_only_once_its_hw_reaches_its_epoch_start():
    a, b, _c = cluster(Config())
    a.append_as_leader(batch(b"m0"), 0)
    a.append_as_leader(batch(b"m1"), 0)
    for _ in range(2):
        fetch_round(a, b)
        fetch_round(a, _c)
    assert a.high_watermark == 2 and b.high_watermark == 0, "B has not heard of the HW"
    b.become_leader(2, 2, REPLICAS, frozenset({B, C}), now_ms=0)
    assert b.epoch_start_offset == 2
    assert not b.offsets_available(), "B's HW 0 is behind the acknowledged m0, m1 (KIP-207)"
    fetch_round(b, _c)
    assert b.high_watermark == 2 and b.offsets_available()
