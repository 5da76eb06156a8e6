"""Rows 7, 8 and 9 of KAFKA-RULES.md's bug table, driven through the model: the unsafe
setting loses an acknowledged write, the safe one keeps it (or never acknowledges it)."""

from helpers import A, B, C, P, do, fetch_round, log_values, model, shrink, tick

from model import client
from model.errors import Errors
from model.machine import Action
from model.state import DISK, KILL
from specs.invariants import no_acknowledged_write_lost


def acked_values(state):
    return [ack.value for ack in state.acked]


# --- row 8: acks=1 ------------------------------------------------------------------


def acks_story(*settings):
    m = model(*settings)
    s = do(m, m.initial_state(), Action("produce", A, P))
    s = do(m, s, Action("crash", A, -1, KILL), Action("fence", A, P, B))
    return m, do(m, s, Action("deliver", B))


def test_row8_acks_1_loses_a_write_acknowledged_before_any_follower_fetched():
    _, s = acks_story("acks=1")
    assert acked_values(s) == [1]
    assert log_values(s, B) == []
    assert "missing from leader B" in no_acknowledged_write_lost(s)


def test_row8_acks_all_does_not_acknowledge_before_the_isr_has_it():
    _, s = acks_story()
    assert acked_values(s) == []
    assert no_acknowledged_write_lost(s) is None


def test_row8_acks_all_keeps_an_acknowledged_write_across_failover():
    m = model()
    s = do(m, m.initial_state(), Action("produce", A, P))
    s = client.replicate(m, s)
    assert acked_values(s) == [1]
    s = do(m, s, Action("crash", A, -1, KILL), Action("fence", A, P, B))
    s = client.replicate(m, s)
    assert log_values(s, B) == [1]
    assert no_acknowledged_write_lost(s) is None


# --- row 9: min.insync.replicas=1 with acks=all ---------------------------------------


def shrink_to_leader_alone(m):
    s = tick(m, m.initial_state())
    return shrink(m, shrink(m, s, A, B), A, C)


def test_row9_min_isr_1_acknowledges_on_the_leader_alone_and_loses_it():
    m = model("min.insync.replicas=1")
    s = shrink_to_leader_alone(m)
    s = do(m, s, Action("produce", A, P))
    assert acked_values(s) == [1]  # "durability theater": ISR={A} satisfies min.isr=1
    s = do(m, s, Action("crash", A, -1, DISK), Action("fence", A), Action("restart", A))
    s = do(m, s, Action("elect", -1, P, A), Action("deliver", A))
    assert log_values(s, A) == []
    assert "missing from leader A" in no_acknowledged_write_lost(s)


def test_row9_min_isr_2_refuses_the_write_instead():
    m = model()
    s = shrink_to_leader_alone(m)
    s, result = client.produce(m, s, P, 10)
    assert result.error == Errors.NOT_ENOUGH_REPLICAS
    assert log_values(s, A) == [] and acked_values(s) == []


# --- row 7: unclean leader election -------------------------------------------------


def unclean_story(*settings):
    m = model(*settings)
    s = tick(m, m.initial_state())
    s = fetch_round(m, s, C)  # C is caught up; B lags and leaves the ISR
    s = shrink(m, s, A, B)
    s = do(m, s, Action("produce", A, P))
    s = fetch_round(m, fetch_round(m, s, C), C)
    assert acked_values(s) == [1] and log_values(s, B) == []
    s = do(m, s, Action("crash", A, -1, KILL), Action("fence", A, P, C))
    return m, do(m, s, Action("crash", C, -1, KILL))


def test_row7_unclean_election_truncates_committed_data():
    m, s = unclean_story("unclean.leader.election.enable=true")
    s = do(m, s, Action("fence", C, P, B), Action("deliver", B))
    assert "missing from leader B" in no_acknowledged_write_lost(s)
    s = client.replicate(m, do(m, s, Action("restart", A)))
    assert log_values(s, A) == log_values(s, B) == []  # A truncated the committed record


def test_row7_clean_election_waits_for_an_eligible_replica():
    m, s = unclean_story()
    s = do(m, s, Action("fence", C))
    assert not [a for a in m.enabled_actions(s) if a.kind == "elect"]  # offline, not lossy
    s = do(m, s, Action("restart", A), Action("elect", -1, P, A))
    s = client.replicate(m, s)
    assert log_values(s, A) == log_values(s, B) == [1]
    assert no_acknowledged_write_lost(s) is None
