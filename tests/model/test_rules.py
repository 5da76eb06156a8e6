"""One focused test per rule of KAFKA-RULES.md, on the pure rule functions."""

from model import rules
from model.config import Config
from model.errors import Errors
from model.state import FETCHING, UNKNOWN, Replica

N = 3


def replica(log_epochs=(), hw=0, epochs=(), follower_leo=(UNKNOWN,) * N, caught_up=(0,) * N):
    log = tuple((e, i + 1, -1, -1, -1) for i, e in enumerate(log_epochs))
    return Replica(log, hw, 0, epochs, FETCHING, follower_leo, caught_up)


# --- leader-epoch cache --------------------------------------------------------------


def test_end_offset_for_latest_epoch_is_the_leo():
    assert rules.end_offset_for(((0, 0), (2, 3)), 5, 2) == (2, 5)


def test_end_offset_for_older_epoch_is_the_next_epochs_start():
    epochs = ((0, 0), (2, 3), (4, 6))
    assert rules.end_offset_for(epochs, 9, 2) == (2, 6)
    # epoch 3 was never seen: answer under the largest epoch <= 3
    assert rules.end_offset_for(epochs, 9, 3) == (2, 6)
    # older than anything cached: answer under the requested epoch itself
    assert rules.end_offset_for(((2, 4),), 9, 1) == (1, 4)


def test_end_offset_for_unknown_epoch_is_undefined():
    assert rules.end_offset_for((), 0, 1) == (-1, -1)
    assert rules.end_offset_for(((0, 0), (2, 3)), 5, 7) == (-1, -1)
    assert rules.end_offset_for(((0, 0),), 5, -1) == (-1, -1)


def test_follower_learns_epochs_from_appended_records():
    records = tuple((e, 1, -1, -1, -1) for e in (1, 1, 3))
    assert rules.epochs_after_append(((0, 0),), records, 2) == ((0, 0), (1, 2), (3, 4))


def test_truncation_drops_log_tail_epochs_hw_and_recovery_point():
    r = replica((0, 0, 1, 1), hw=3, epochs=((0, 0), (1, 2)))._replace(flushed=4)
    cut = rules.truncate(r, 2)
    assert len(cut.log) == 2 and cut.hw == 2 and cut.flushed == 2
    assert cut.epochs == ((0, 0),)
    assert rules.truncate(r, 9) is r


# --- follower truncation rules -------------------------------------------------------------


def test_kip279_truncates_to_min_of_both_ends_when_epochs_agree():
    # follower has epoch 1 up to offset 4, leader says epoch 1 ends at 3
    assert rules.divergence_truncation_offset(((0, 0), (1, 2)), 4, 0, 1, 3) == 3


def test_kip279_uses_own_end_of_leaders_epoch_when_it_differs():
    # story 3: B asks with epoch 2; A answers (1, 2); B's own epoch 1 ends at 1
    assert rules.divergence_truncation_offset(((0, 0), (1, 0), (2, 1)), 2, 0, 1, 2) == 1


def test_kip279_undefined_answer_falls_back_to_the_hw():
    assert rules.divergence_truncation_offset(((3, 0),), 4, 2, -1, -1) == 2


def test_kip279_follower_whose_records_are_all_newer_truncates_them_all():
    # its cache answers epoch 2 as ending where its epoch 5 starts: offset 0
    assert rules.divergence_truncation_offset(((5, 0),), 4, 0, 2, 3) == 0


def test_kip101_trusts_the_leaders_offset():
    assert rules.kip101_truncation_offset(2, 2) == 2  # keeps the divergent record
    assert rules.kip101_truncation_offset(5, 3) == 3
    assert rules.kip101_truncation_offset(5, -1) == 0


# --- high watermark -------------------------------------------------------------------


def test_leader_hw_is_min_of_isr_leos_and_never_moves_down():
    config = Config()
    r = replica((0, 0, 0), hw=1, follower_leo=(UNKNOWN, 3, 2))
    assert rules.leader_high_watermark(r, 0, 0b111, config) == 2
    assert rules.leader_high_watermark(r, 0, 0b011, config) == 3
    lagging = replica((0, 0, 0), hw=2, follower_leo=(UNKNOWN, 0, 0))
    assert rules.leader_high_watermark(lagging, 0, 0b111, config) == 2


def test_hw_held_below_min_isr_unless_guard_disabled():
    r = replica((0, 0), hw=0)
    assert rules.leader_high_watermark(r, 0, 0b001, Config()) == 0
    unguarded = Config.parse(["replog.hw.min-isr-guard=false"])
    assert rules.leader_high_watermark(r, 0, 0b001, unguarded) == 2


def test_follower_hw_is_min_of_leader_hw_and_own_leo():
    assert rules.follower_high_watermark(5, 3) == 3
    assert rules.follower_high_watermark(2, 3) == 2


# --- ISR --------------------------------------------------------------------------------


def test_follower_out_of_sync_after_lag_time_unless_at_leo():
    config = Config.parse(["replica.lag.time.max.ms=100"])
    r = replica((0, 0), follower_leo=(UNKNOWN, 1, 2), caught_up=(0, 0, 0))
    assert rules.follower_out_of_sync(r, 1, 101, config)
    assert not rules.follower_out_of_sync(r, 1, 100, config)
    assert not rules.follower_out_of_sync(r, 2, 1000, config)


def test_isr_expand_epoch_start_rule_vs_hw_only():
    r = replica((0, 0, 1), hw=1, epochs=((0, 0), (1, 2)))
    assert not rules.may_join_isr(r, 1, Config())
    assert rules.may_join_isr(r, 2, Config())
    assert rules.may_join_isr(r, 1, Config.parse(["replog.isr.expand=hw-only"]))
    assert not rules.may_join_isr(r, 0, Config.parse(["replog.isr.expand=hw-only"]))


def test_isr_removal_below_min_isr_moves_member_to_elr():
    config = Config()
    assert rules.isr_after_removal(0b111, 0, 2, config) == (0b011, 0)
    assert rules.isr_after_removal(0b011, 0, 1, config) == (0b001, 0b010)
    assert rules.isr_after_removal(0b001, 0b010, 0, config) == (0, 0b011)


def test_isr_removal_without_elr_keeps_last_member():
    config = Config.parse(["replog.elr=false"])
    assert rules.isr_after_removal(0b011, 0, 1, config) == (0b001, 0)
    assert rules.isr_after_removal(0b001, 0, 0, config) == (0b001, 0)


def test_isr_addition_clears_elr_at_min_isr():
    config = Config()
    assert rules.isr_after_addition(0b001, 0b110, 1, config) == (0b011, 0)
    assert rules.isr_after_addition(0, 0b110, 1, config) == (0b010, 0b100)


# --- election ----------------------------------------------------------------------


def elect(leader=-1, isr=0, elr=0, last=-1, fenced=0, config=None):
    return rules.election_candidates(leader, isr, elr, last, 0b111, fenced, config or Config())


def test_clean_election_from_unfenced_isr():
    assert elect(isr=0b011, fenced=0b001) == (0b010, True)


def test_elr_then_last_known_leader():
    assert elect(isr=0, elr=0b100, fenced=0b001) == (0b100, False)
    assert elect(isr=0, elr=0, last=2) == (0b100, False)
    assert elect(isr=0, elr=0, last=2, fenced=0b100) == (0, False)


def test_unclean_election_only_when_enabled():
    assert elect(isr=0b001, fenced=0b001) == (0, False)
    unclean = Config.parse(["unclean.leader.election.enable=true"])
    assert elect(isr=0b001, fenced=0b001, config=unclean) == (0b110, False)


def test_preferred_election_moves_within_isr():
    assert elect(leader=0, isr=0b011) == (0b010, True)


# --- produce --------------------------------------------------------------------------


def test_acks_all_refused_below_min_isr_other_acks_ignore_it():
    config = Config()
    assert rules.produce_precheck(0b001, -1, config) == Errors.NOT_ENOUGH_REPLICAS
    assert rules.produce_precheck(0b011, -1, config) == Errors.NONE
    assert rules.produce_precheck(0b001, 1, config) == Errors.NONE


def test_produce_completion_waits_for_hw_then_checks_isr():
    config = Config()
    assert rules.produce_completion(0, 0, 0b111, config) is None
    assert rules.produce_completion(1, 0, 0b111, config) == Errors.NONE
    assert rules.produce_completion(1, 0, 0b001, config) == Errors.NOT_ENOUGH_REPLICAS_AFTER_APPEND


def log_of(*batches):
    return tuple((0, i, pid, pe, seq) for i, (pid, pe, seq) in enumerate(batches))


def test_idempotence_duplicate_returns_original_offset():
    log = log_of((7, 0, 0), (7, 0, 1))
    assert rules.idempotent_check(log, 7, 0, 0) == (Errors.NONE, 0)
    assert rules.idempotent_check(log, 7, 0, 2) == (Errors.NONE, UNKNOWN)


def test_idempotence_sequence_gap_is_out_of_order():
    log = log_of((7, 0, 0))
    assert rules.idempotent_check(log, 7, 0, 2)[0] == Errors.OUT_OF_ORDER_SEQUENCE_NUMBER


def test_idempotence_epochs():
    log = log_of((7, 1, 0))
    assert rules.idempotent_check(log, 7, 0, 1)[0] == Errors.INVALID_PRODUCER_EPOCH
    assert rules.idempotent_check(log, 7, 2, 0) == (Errors.NONE, UNKNOWN)
    assert rules.idempotent_check(log, 7, 2, 1)[0] == Errors.OUT_OF_ORDER_SEQUENCE_NUMBER


def test_idempotence_unknown_producer_accepted_and_window_is_five():
    assert rules.idempotent_check((), 9, 0, 5) == (Errors.NONE, UNKNOWN)
    log = log_of(*[(7, 0, s) for s in range(7)])
    assert rules.idempotent_check(log, 7, 0, 2) == (Errors.NONE, 2)
    assert rules.idempotent_check(log, 7, 0, 1)[0] == Errors.OUT_OF_ORDER_SEQUENCE_NUMBER
