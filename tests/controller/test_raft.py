"""RaftNode behaviour in small, scripted situations (a reliable simulated network)."""

from __future__ import annotations

import random

import pytest
from raft_sim import SIM_CONFIG, Simulation

from impl.controller.raft import (
    NO_NODE,
    AppendEntries,
    Busy,
    Entry,
    HardState,
    NotLeader,
    RaftConfig,
    RaftNode,
    RequestVote,
    Role,
    StorageState,
)

TIMEOUT_MS = SIM_CONFIG.election_timeout_ms


def settled(sim: Simulation) -> RaftNode:
    sim.run_until(sim.has_settled_leader, 20 * TIMEOUT_MS)
    return sim.leaders()[0]


def applied_everywhere(sim: Simulation, index: int) -> bool:
    return all(len(n.applied) >= index for n in sim.nodes.values() if n.raft is not None)


def isolate(sim: Simulation, node_id: int) -> None:
    sim.partition({n: int(n == node_id) for n in sim.voters})


def test_single_node_elects_itself_and_commits_after_persisting() -> None:
    sim = Simulation(1, seed=1)
    leader = settled(sim)
    assert leader.term == 1 and leader.is_leader_ready()
    index = sim.propose(leader.node_id)
    assert index == 2  # after the leader's no-op
    sim.run_until(lambda: applied_everywhere(sim, index), TIMEOUT_MS)
    assert [e.data for e in sim.nodes[1].applied] == [b"", b"v1"]


def test_three_nodes_elect_one_leader_and_replicate_in_order() -> None:
    sim = Simulation(3, seed=2)
    leader = settled(sim)
    assert sorted(n.role.value for n in sim.live()) == ["follower", "follower", "leader"]
    indices = [sim.propose(leader.node_id) for _ in range(5)]
    sim.run_until(lambda: applied_everywhere(sim, indices[-1]), 5 * TIMEOUT_MS)
    logs = {tuple(n.applied) for n in sim.nodes.values()}
    assert len(logs) == 1
    assert [e.data for e in next(iter(logs))][1:] == [b"v1", b"v2", b"v3", b"v4", b"v5"]


def test_proposal_to_a_follower_names_the_leader() -> None:
    sim = Simulation(3, seed=3)
    leader = settled(sim)
    follower = next(n for n in sim.live() if n is not leader)
    assert follower.propose(b"x") == NotLeader(leader.node_id)


def test_isolated_leader_steps_down_within_two_election_timeouts() -> None:
    """Check-quorum: a leader cut off from the majority stops taking proposals."""
    sim = Simulation(3, seed=4)
    old = settled(sim)
    isolate(sim, old.node_id)
    sim.run_until(lambda: old.role is not Role.LEADER, 2 * TIMEOUT_MS)
    assert isinstance(old.propose(b"late"), NotLeader)
    new = settled_majority_leader(sim, exclude=old.node_id)
    assert new.term > old.term


def settled_majority_leader(sim: Simulation, exclude: int) -> RaftNode:
    def elected() -> bool:
        return any(n.node_id != exclude and n.is_leader_ready() for n in sim.leaders())

    sim.run_until(elected, 20 * TIMEOUT_MS)
    return next(n for n in sim.leaders() if n.node_id != exclude)


def test_pre_vote_keeps_a_rejoining_follower_from_deposing_the_leader() -> None:
    sim = Simulation(3, seed=5)
    leader = settled(sim)
    term = leader.term
    follower = next(n for n in sim.live() if n is not leader)
    isolate(sim, follower.node_id)
    end_ms = sim.now_ms + 20 * TIMEOUT_MS
    sim.run_until(lambda: sim.now_ms >= end_ms, 21 * TIMEOUT_MS)
    assert follower.term == term, "an isolated node must not raise its term without pre-votes"
    sim.heal()
    sim.run_until(lambda: follower.leader_id == leader.node_id, 5 * TIMEOUT_MS)
    assert leader.role is Role.LEADER and leader.term == term


def test_lower_term_leader_is_told_the_current_term() -> None:
    sim = Simulation(3, seed=6)
    old = settled(sim)
    isolate(sim, old.node_id)
    new = settled_majority_leader(sim, exclude=old.node_id)
    stale = AppendEntries(old.node_id, new.node_id, old.term, 0, 0, (), 0)
    new.receive(stale)
    ready = new.ready()
    new.advance(ready)
    (answer,) = ready.messages_to_send
    assert answer.target == old.node_id and answer.term == new.term and not answer.success


def test_follower_truncates_a_conflicting_uncommitted_suffix() -> None:
    base = (Entry(1, 1, b"a"), Entry(2, 1, b"b"))
    stale = StorageState(HardState(2, 1, 2), (*base, Entry(3, 2, b"lost")))
    current = StorageState(HardState(3, 2, 2), (*base, Entry(3, 3, b"kept")))
    sim = Simulation(3, seed=7, disks={1: stale, 2: current, 3: current})
    leader = settled(sim)
    assert leader.node_id != 1, "node 1's last term is older, it cannot win"
    node1 = sim.nodes[1].raft
    assert node1 is not None and node1.entry_at(3) == Entry(3, 3, b"kept")
    assert [e.data for e in sim.nodes[1].durable_entries[:3]] == [b"a", b"b", b"kept"]


def test_restarted_node_replays_every_committed_entry() -> None:
    sim = Simulation(3, seed=8)
    leader = settled(sim)
    index = sim.propose(leader.node_id)
    sim.run_until(lambda: applied_everywhere(sim, index), 5 * TIMEOUT_MS)
    follower = next(n.node_id for n in sim.live() if n is not leader)
    before = list(sim.nodes[follower].applied)
    sim.crash(follower)
    sim.start(follower)
    sim.run_until(lambda: len(sim.nodes[follower].applied) >= len(before), 5 * TIMEOUT_MS)
    assert sim.nodes[follower].applied[: len(before)] == before


def test_entries_from_serves_only_committed_entries_within_bytes_max() -> None:
    sim = Simulation(3, seed=9)
    leader = settled(sim)
    for _ in range(3):
        sim.propose(leader.node_id)
    sim.run_until(lambda: applied_everywhere(sim, 4), 5 * TIMEOUT_MS)
    isolate(sim, leader.node_id)
    assert isinstance(leader.propose(b"uncommitted"), int)
    assert [e.index for e in leader.entries_from(1, bytes_max=1 << 20)] == [1, 2, 3, 4]
    assert [e.index for e in leader.entries_from(2, bytes_max=4)] == [2, 3]
    assert [e.index for e in leader.entries_from(2, bytes_max=0)] == [2]
    assert leader.entries_from(5, bytes_max=1 << 20) == ()


def test_leader_refuses_proposals_beyond_the_uncommitted_limit() -> None:
    sim = Simulation(3, seed=10)
    leader = settled(sim)
    isolate(sim, leader.node_id)
    results = [leader.propose(b"p%d" % i) for i in range(SIM_CONFIG.uncommitted_entries_max + 1)]
    assert all(isinstance(r, int) for r in results[:-1])
    assert results[-1] == Busy(SIM_CONFIG.uncommitted_entries_max)


def test_feeding_the_node_before_advance_is_a_driver_bug() -> None:
    node = RaftNode(1, (1, 2, 3), StorageState(), SIM_CONFIG, random.Random(0), now_ms=0)
    node.ready()
    with pytest.raises(AssertionError, match="advance"):
        node.tick(1)


def test_votes_and_appends_from_strangers_or_malformed_are_ignored() -> None:
    node = RaftNode(1, (1, 2, 3), StorageState(), SIM_CONFIG, random.Random(0), now_ms=0)
    node.receive(RequestVote(9, 1, 5, 0, 0))
    node.receive(AppendEntries(2, 1, 1, 0, 0, (Entry(3, 1, b"gap"),), 0))
    ready = node.ready()
    node.advance(ready)
    assert ready.messages_to_send == () and node.last_index == 0
    assert node.leader_id == 2 and node.term == 1  # the term is learned, the entry is not


def test_empty_and_oversized_proposals_are_refused() -> None:
    config = RaftConfig(entry_bytes_max=8)
    node = RaftNode(1, (1,), StorageState(), config, random.Random(0), now_ms=0)
    with pytest.raises(ValueError, match="no-op"):
        node.propose(b"")
    with pytest.raises(ValueError, match="bytes"):
        node.propose(b"123456789")
    assert node.propose(b"x") == NotLeader(NO_NODE)


def test_next_deadline_is_the_timer_tick_acts_on() -> None:
    """A driver sleeping until next_deadline_ms misses nothing: before it a tick does
    nothing, at it a follower campaigns and a leader sends heartbeats."""
    sim = Simulation(3, seed=4)
    leader = settled(sim)
    follower = next(n.raft for n in sim.nodes.values() if n.raft not in (None, leader))
    assert follower is not None and follower.role is Role.FOLLOWER
    due_ms = follower.next_deadline_ms()
    assert due_ms > sim.now_ms
    follower.tick(due_ms - 1)
    quiet = follower.ready()
    assert follower.role is Role.FOLLOWER and not quiet.messages_to_send
    follower.advance(quiet)
    follower.tick(due_ms)
    campaign = follower.ready()
    assert {m.target for m in campaign.messages_to_send} == set(sim.voters) - {follower.node_id}
    heartbeat_ms = max(leader.next_deadline_ms(), sim.now_ms)
    assert heartbeat_ms <= sim.now_ms + SIM_CONFIG.heartbeat_interval_ms
    leader.tick(heartbeat_ms)
    beats = leader.ready().messages_to_send
    assert {m.target for m in beats if isinstance(m, AppendEntries)} == set(sim.voters) - {
        leader.node_id
    }
