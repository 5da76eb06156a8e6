"""The idempotent-producer rules of KAFKA-RULES.md, one case each."""

from impl.broker.producer_state import (
    BATCHES_PER_PRODUCER_MAX,
    PRODUCERS_PER_PARTITION_MAX,
    SEQUENCE_MAX,
    Duplicate,
    ProducerState,
)
from model.errors import Errors


def state_with(*batches: tuple[int, int, int, int, int, int]) -> ProducerState:
    state = ProducerState()
    for batch in batches:
        state.update(*batch)
    return state


def test_unknown_producer_and_non_idempotent_batches_are_accepted():
    state = ProducerState()
    assert state.check(7, 0, 42, 43) is None
    assert state.check(-1, -1, -1, -1) is None


def test_exact_duplicate_of_any_cached_batch_returns_its_offsets():
    state = state_with((7, 0, 0, 1, 10, 11), (7, 0, 2, 4, 12, 14))
    assert state.check(7, 0, 0, 1) == Duplicate(10, 11)
    assert state.check(7, 0, 2, 4) == Duplicate(12, 14)


def test_only_the_last_five_batches_are_remembered():
    state = ProducerState()
    for n in range(BATCHES_PER_PRODUCER_MAX + 1):
        state.update(7, 0, n, n, 100 + n, 100 + n)
    assert state.check(7, 0, 0, 0) == Errors.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert state.check(7, 0, 1, 1) == Duplicate(101, 101)


def test_next_batch_must_continue_the_sequence():
    state = state_with((7, 0, 0, 1, 10, 11))
    assert state.check(7, 0, 2, 3) is None
    assert state.check(7, 0, 3, 3) == Errors.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert state.check(7, 0, 1, 2) == Errors.OUT_OF_ORDER_SEQUENCE_NUMBER


def test_sequence_wraps_after_int32_max():
    state = state_with((7, 0, SEQUENCE_MAX - 1, SEQUENCE_MAX, 10, 11))
    assert state.check(7, 0, 0, 4) is None
    assert state.check(7, 0, 1, 4) == Errors.OUT_OF_ORDER_SEQUENCE_NUMBER


def test_older_epoch_is_fenced_and_new_epoch_starts_at_zero():
    state = state_with((7, 3, 0, 5, 10, 15))
    assert state.check(7, 2, 6, 6) == Errors.INVALID_PRODUCER_EPOCH
    assert state.check(7, 4, 6, 6) == Errors.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert state.check(7, 4, 0, 0) is None
    state.update(7, 4, 0, 0, 16, 16)
    assert state.check(7, 3, 6, 6) == Errors.INVALID_PRODUCER_EPOCH
    assert state.check(7, 4, 0, 0) == Duplicate(16, 16)
    assert state.check(7, 4, 0, 5) == Errors.OUT_OF_ORDER_SEQUENCE_NUMBER, "old batches forgotten"


def test_producer_count_is_bounded_least_recently_used_first():
    state = ProducerState()
    for producer_id in range(PRODUCERS_PER_PARTITION_MAX + 1):
        state.update(producer_id, 0, 0, 0, producer_id, producer_id)
    assert len(state) == PRODUCERS_PER_PARTITION_MAX
    assert state.check(0, 0, 5, 5) is None, "producer 0 was evicted, so it is unknown"
    assert state.check(1, 0, 5, 5) == Errors.OUT_OF_ORDER_SEQUENCE_NUMBER
