"""Raft under a seeded storm of drops, delays, reordering, duplicates, partitions and
crashes (also mid-persist, with torn writes), checked at every step; after each storm the
network heals and a leader must emerge and commit within a bounded time.

Reproduce one run: `.venv/bin/pytest tests/controller/test_raft_sim.py -k "seed-3-"`.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from raft_sim import IN_FLIGHT_MAX, SIM_CONFIG, Simulation

ROUNDS = 10
STORM_STEPS = 2000
FULL_CHECK_EVERY_STEPS = 50
# Bounds after healing, in simulated ms, with about 4x headroom over the slowest run seen
# (530 ms to a settled leader, 150 ms to apply a proposal everywhere): elections may need
# several rounds of split (pre-)votes, and a leader from before the heal steps down first.
LEADER_WITHIN_MS = 20 * SIM_CONFIG.election_timeout_ms
COMMIT_WITHIN_MS = 5 * SIM_CONFIG.election_timeout_ms

RUNS = [(3, seed) for seed in range(1, 9)] + [(5, seed) for seed in range(9, 15)]
# Plain Raft (no pre-vote, no check-quorum) must be just as safe, and live once healed.
PLAIN_CONFIG = replace(SIM_CONFIG, pre_vote=False, check_quorum=False)
PLAIN_RUNS = [(3, 15), (5, 16)]


# Relative weights of the events of one storm step: messages usually flow and time
# passes; faults are rare enough that leaders live long enough to commit.
STORM_EVENTS = {
    "deliver": 55.0,
    "advance": 20.0,
    "propose": 8.0,
    "drop": 4.0,
    "crash": 0.2,
    "crash_leader": 0.2,
    "power_cut": 0.3,
    "restart": 1.5,
    "partition": 0.3,
    "isolate_leader": 0.3,
    "heal": 0.8,
}


def storm_step(sim: Simulation) -> None:
    rng = sim.rng
    (event,) = rng.choices(tuple(STORM_EVENTS), weights=tuple(STORM_EVENTS.values()))
    due = sim.due()
    if len(sim.in_flight) > IN_FLIGHT_MAX or (event == "deliver" and due):
        sim.deliver(rng.choice(due) if due else 0)
    elif event in ("deliver", "advance"):
        sim.advance(rng.randint(1, 20))
    elif event == "propose":
        _propose(sim)
    elif event == "drop" and sim.in_flight:
        sim.in_flight.pop(rng.randrange(len(sim.in_flight)))
    elif event == "crash":
        _crash_one(sim, sorted(n.node_id for n in sim.live()))
    elif event == "crash_leader":
        _crash_one(sim, sorted(n.node_id for n in sim.leaders()))
    elif event == "power_cut":
        _power_cut_while_persisting(sim)
    elif event == "restart":
        _restart_one(sim)
    elif event == "partition":
        sim.partition({node_id: rng.randint(0, 1) for node_id in sim.voters})
    elif event == "isolate_leader" and sim.leaders():
        leader = rng.choice(sorted(n.node_id for n in sim.leaders()))
        sim.partition({node_id: int(node_id == leader) for node_id in sim.voters})
    elif event == "heal":
        sim.heal()


def _propose(sim: Simulation) -> None:
    live = sorted(n.node_id for n in sim.live())
    if live:
        leaders = [n.node_id for n in sim.leaders()]
        sim.propose(sim.rng.choice(leaders or live))


def _crash_one(sim: Simulation, candidates: list[int]) -> None:
    if candidates:
        sim.crash(sim.rng.choice(candidates))


def _power_cut_while_persisting(sim: Simulation) -> None:
    live = sorted(n.node_id for n in sim.live())
    if live:
        sim.nodes[sim.rng.choice(live)].fs.arm(sim.rng.randint(0, 6))


def _restart_one(sim: Simulation) -> None:
    down = sorted(node_id for node_id, n in sim.nodes.items() if n.raft is None)
    if down:
        sim.start(sim.rng.choice(down))


def heal_and_check_liveness(sim: Simulation) -> None:
    """A settled leader within LEADER_WITHIN_MS, then a new proposal applied everywhere
    within COMMIT_WITHIN_MS."""
    sim.heal()
    for node_id, sim_node in sim.nodes.items():
        sim_node.fs.calls_left = None
        if sim_node.raft is None:
            sim.start(node_id)
    sim.drop_probability = sim.duplicate_probability = sim.long_delay_probability = 0.0
    sim.delay_ms_max = 5
    sim.run_until(sim.has_settled_leader, LEADER_WITHIN_MS)
    leader = sim.leaders()[0]
    index = sim.propose(leader.node_id)
    assert index is not None, f"settled leader {leader.node_id} refused a proposal"
    sim.run_until(
        lambda: all(len(sim.nodes[n].applied) >= index for n in sim.voters), COMMIT_WITHIN_MS
    )


def run_storm(sim: Simulation) -> None:
    for round_number in range(ROUNDS):
        sim.drop_probability, sim.duplicate_probability, sim.delay_ms_max = 0.05, 0.02, 30
        sim.long_delay_probability = 0.02
        for step in range(STORM_STEPS):
            try:
                storm_step(sim)
                if step % FULL_CHECK_EVERY_STEPS == 0:
                    sim.checker.check_all(sim.live())
            except AssertionError as error:
                raise AssertionError(
                    f"seed={sim.seed} size={len(sim.voters)} round={round_number} "
                    f"step={step} t={sim.now_ms}ms: {error}"
                ) from error
        try:
            heal_and_check_liveness(sim)
            sim.checker.check_all(sim.live())
        except AssertionError as error:
            raise AssertionError(
                f"seed={sim.seed} size={len(sim.voters)} round={round_number} "
                f"after healing, t={sim.now_ms}ms: {error}"
            ) from error


@pytest.mark.parametrize(("size", "seed"), RUNS, ids=[f"nodes-{n}-seed-{s}-" for n, s in RUNS])
def test_raft_is_safe_under_faults_and_live_after_healing(size: int, seed: int) -> None:
    check_run(Simulation(size, seed))


@pytest.mark.parametrize(
    ("size", "seed"), PLAIN_RUNS, ids=[f"plain-nodes-{n}-seed-{s}-" for n, s in PLAIN_RUNS]
)
def test_plain_raft_is_safe_under_faults_and_live_after_healing(size: int, seed: int) -> None:
    check_run(Simulation(size, seed, PLAIN_CONFIG))


def check_run(sim: Simulation) -> None:
    run_storm(sim)
    assert sim.checker.committed, f"seed={sim.seed}: nothing was ever committed"
    assert len(sim.checker.leaders) > ROUNDS, f"seed={sim.seed}: too few elections to mean much"


def test_same_seed_same_run() -> None:
    first, second = Simulation(3, 42), Simulation(3, 42)
    for sim in (first, second):
        for _ in range(400):
            storm_step(sim)
    assert first.checker.committed == second.checker.committed
    assert first.checker.leaders == second.checker.leaders
    assert first.now_ms == second.now_ms
