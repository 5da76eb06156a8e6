"""The transitions and every produce/fetch error code, through the model's client face."""

from helpers import A, B, C, P, crash, do, fail_over, fetch_round, log_values, model, shrink, tick

from model import client
from model.errors import Errors
from model.machine import Action
from model.state import DISK, FETCH_REQUEST, POWER, Message


def test_acks_all_is_acknowledged_once_every_isr_member_has_it():
    m = model()
    s = m.initial_state()
    s, result = client.produce(m, s, P, 10)
    assert result.pending and result.offset == 0
    s = fetch_round(m, s, B)
    assert client.produce_outcome(m, s, P, A, result) is None  # C has not fetched
    s = client.replicate(m, s)
    assert client.produce_outcome(m, s, P, A, result) == Errors.NONE
    assert all(log_values(s, b) == [10] for b in (A, B, C))


def test_not_enough_replicas_appends_nothing():
    m = model()
    s = tick(m, m.initial_state())
    s = shrink(m, shrink(m, s, A, B), A, C)
    s, result = client.produce(m, s, P, 10)
    assert result.error == Errors.NOT_ENOUGH_REPLICAS
    assert log_values(s, A) == []


def test_not_enough_replicas_after_append_keeps_the_record():
    m = model("replog.hw.min-isr-guard=false")
    s = m.initial_state()
    s, result = client.produce(m, s, P, 10)
    s = tick(m, s)
    s = shrink(m, shrink(m, s, A, B), A, C)  # HW passes with ISR={A}, below min.isr
    assert s.replicas[A][P].hw == 1
    assert client.produce_outcome(m, s, P, A, result) == Errors.NOT_ENOUGH_REPLICAS_AFTER_APPEND
    assert log_values(s, A) == [10]


def test_acks_one_and_zero_ignore_min_isr():
    for acks in ("1", "0"):
        m = model(f"acks={acks}")
        s = tick(m, m.initial_state())
        s = shrink(m, shrink(m, s, A, B), A, C)
        s, result = client.produce(m, s, P, 10)
        assert result.error == Errors.NONE and not result.pending


def test_produce_to_a_follower_is_not_leader():
    m = model()
    _, result = client.produce(m, m.initial_state(), P, 10, broker=B)
    assert result.error == Errors.NOT_LEADER_OR_FOLLOWER


def test_idempotent_retry_returns_the_original_offset():
    m = model()
    s = m.initial_state()
    s, first = client.produce(m, s, P, 10, producer=(7, 0, 0))
    s, again = client.produce(m, s, P, 10, producer=(7, 0, 0))
    assert again.offset == first.offset == 0
    assert log_values(s, A) == [10]
    s, gap = client.produce(m, s, P, 11, producer=(7, 0, 2))
    assert gap.error == Errors.OUT_OF_ORDER_SEQUENCE_NUMBER
    s, fenced = client.produce(m, s, P, 11, producer=(7, -1, 1))
    assert fenced.error == Errors.INVALID_PRODUCER_EPOCH


def test_retry_without_idempotence_duplicates():
    m = model("enable.idempotence=false")
    s = do(m, m.initial_state(), Action("produce", A, P), Action("retry", A, P, 1))
    assert log_values(s, A) == [1, 1]
    m = model()
    s = do(m, m.initial_state(), Action("produce", A, P), Action("retry", A, P, 1))
    assert log_values(s, A) == [1]


def test_fetch_offsets_hw_and_out_of_range():
    m = model()
    s, _ = client.produce(m, m.initial_state(), P, 10)
    s, _ = client.produce(m, s, P, 11)
    s = fetch_round(m, s, B)
    assert client.fetch(s, P, 0).records == ()  # HW is still 0: nothing committed
    s = client.replicate(m, s)
    assert client.fetch(s, P, 0).records == ((0, 10), (1, 11))
    assert client.fetch(s, P, 2).error == Errors.NONE  # at the LEO: empty, not an error
    assert client.fetch(s, P, 3).error == Errors.OFFSET_OUT_OF_RANGE
    assert client.fetch(s, P, 0, broker=B).error == Errors.NOT_LEADER_OR_FOLLOWER
    assert client.list_offsets(s, P, "earliest") == (Errors.NONE, 0)
    assert client.list_offsets(s, P, "latest") == (Errors.NONE, 2)


def test_a_new_leader_whose_hw_lags_its_epoch_start_has_no_latest_offset():
    m = model()
    s, _ = client.produce(m, m.initial_state(), P, 10)
    s, _ = client.produce(m, s, P, 11)
    s = fetch_round(m, s, B)  # B has both records but learned HW 0
    s = do(m, crash(m, s, A), Action("fence", A, P, B), Action("deliver", B))
    assert s.replicas[B][P].hw == 0
    assert client.list_offsets(s, P, "latest") == (Errors.OFFSET_NOT_AVAILABLE, -1)
    assert client.list_offsets(s, P, "earliest") == (Errors.NONE, 0)
    s = client.replicate(m, s)
    assert client.list_offsets(s, P, "latest") == (Errors.NONE, 2)


def test_fetch_with_old_epoch_is_fenced_and_newer_is_unknown():
    m = model()
    s = fail_over(m, crash(m, m.initial_state(), A), A, B)
    old = Message(FETCH_REQUEST, B, 0, 0, -1, 0, (), 0, 0, False)
    fenced = m._answer(s, C, P, old).slots[C][P][0]
    assert fenced.error == Errors.FENCED_LEADER_EPOCH
    newer = m._answer(s, C, P, old._replace(epoch=5)).slots[C][P][0]
    assert newer.error == Errors.UNKNOWN_LEADER_EPOCH
    unfenced = model("replog.fetch.epoch-fencing=false")
    assert unfenced._answer(s, C, P, old).slots[C][P][0].error == Errors.NONE


def test_stale_response_is_dropped_with_fencing():
    m = model()
    s, _ = client.produce(m, m.initial_state(), P, 10)
    s = do(m, s, Action("fetch", C, P))  # response with v10 from A in flight
    s = do(m, s, Action("elect", -1, P, B), Action("deliver", B), Action("deliver", C))
    assert s.slots[C][P] == ()  # discarded on learning the new epoch
    assert log_values(s, C) == []
    unfenced = model("replog.fetch.epoch-fencing=false")
    s, _ = client.produce(unfenced, unfenced.initial_state(), P, 10)
    s = do(unfenced, s, Action("fetch", C, P), Action("elect", -1, P, B))
    s = do(unfenced, s, Action("deliver", B), Action("deliver", C))
    s = do(unfenced, s, Action("handle_response", C, P, A))
    assert log_values(s, C) == [10]  # the old leader's response is applied


def test_power_loss_keeps_the_flushed_prefix_and_disk_loss_nothing():
    m = model()
    s, _ = client.produce(m, m.initial_state(), P, 10)
    s = do(m, s, Action("flush", A, P))
    s, _ = client.produce(m, s, P, 11)
    assert log_values(crash(m, s, A, POWER), A) == [10]
    assert log_values(crash(m, s, A), A) == [10, 11]
    emptied = crash(m, s, A, DISK)
    assert log_values(emptied, A) == [] and emptied.replicas[A][P].epochs == ()


def test_zombie_leader_keeps_serving_until_it_learns():
    m = model()
    s = do(m, m.initial_state(), Action("cut_controller", A), Action("fence", A, P, B))
    s = do(m, s, Action("deliver", B))
    assert client.leader_of(s, P) == B
    s, zombie = client.produce(m, s, P, 10, broker=A)
    assert zombie.error == Errors.NONE and zombie.pending  # accepted, never acknowledged
    s = client.replicate(m, s)
    assert client.produce_outcome(m, s, P, A, zombie) is None
    s = do(m, s, Action("heal"), Action("register", A), Action("deliver", A))
    assert client.produce_outcome(m, s, P, A, zombie) == Errors.NOT_LEADER_OR_FOLLOWER


def test_leader_epoch_truncation_removes_an_uncommitted_tail():
    m = model()
    s, _ = client.produce(m, m.initial_state(), P, 10)
    s = fail_over(m, crash(m, s, A), A, B)  # v10 only ever reached A
    s, _ = client.produce(m, s, P, 20)
    s = client.replicate(m, do(m, s, Action("restart", A)))
    assert log_values(s, A) == log_values(s, B) == [20]


def test_fenced_broker_leaves_isr_and_elr_forms_below_min_isr():
    m = model()
    s = crash(m, m.initial_state(), C)
    s = do(m, s, Action("fence", C))
    reg = s.controller.partitions[P]
    assert (reg.isr, reg.elr) == (0b011, 0)
    s = fail_over(m, crash(m, s, A), A, B)
    reg = s.controller.partitions[P]
    assert (reg.leader, reg.isr, reg.elr) == (B, 0b010, 0b001)


def test_unclean_restart_leaves_elr_so_a_caught_up_member_leads():
    m = model()
    s = tick(m, m.initial_state())
    s = shrink(m, shrink(m, s, A, B), A, C)  # C leaves below min.isr: C joins the ELR
    assert [a.arg for a in m.enabled_actions(crash(m, s, A, DISK)) if a.kind == "fence"] == [C]
    s = do(m, crash(m, s, A, DISK), Action("fence", A, P, C))
    reg = s.controller.partitions[P]
    assert (reg.leader, reg.isr, reg.elr) == (C, 0b100, 0b001)
    s = do(m, s, Action("restart", A))
    assert s.controller.partitions[P].elr == 0  # an unclean shutdown leaves the ELR


def test_empty_isr_and_elr_fall_back_to_the_last_known_leader():
    m = model("min.insync.replicas=1")
    s = tick(m, m.initial_state())
    s = shrink(m, shrink(m, s, A, B), A, C)  # never below min.isr=1: no ELR
    s = do(m, s, Action("crash", A, -1, DISK), Action("fence", A))
    s = do(m, s, Action("restart", A))
    reg = s.controller.partitions[P]
    assert (reg.isr, reg.elr, reg.leader, reg.last_leader) == (0, 0, -1, A)
    assert [a.arg for a in m.enabled_actions(s) if a.kind == "elect"] == [A]
