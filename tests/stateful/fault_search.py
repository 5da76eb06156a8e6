"""A seeded random search for lost acknowledged writes and diverged logs in the simulator.

`search(config, trials_max, seed, vocabulary)` runs trials on fresh `SimWorld`s (3
brokers, one controller, stateful_harness.py). A trial draws STEPS_PER_TRIAL steps from
one `random.Random(seed + trial)`: produces with the client's acks; abrupt stops of the
leader or a follower by one of two vocabularies, KILLS (any number of kill -9s) or
ONE_STOP (one kill -9 or power loss per trial: the impl's controller counts a kill -9
as an unclean shutdown, so a kill and a power loss together make two "unclean"
replicas, beyond what the safe defaults promise, see test_stateful_findings B5);
restarts; isolating a broker; cutting one from the controller (a leader change without
a crash: the controller fences it and elects another); with KILLS also cutting one from
the other brokers only (a leader keeps its clients and the controller, loses its
followers: the ISR shrinks to it); healing. Each step is followed
by a pause drawn from PAUSES_S, so faults land both mid-replication and after the
cluster settled. Targets are the leader half the time. The weights follow the shapes of
the model's shortest counterexamples (`replog check --config X`): a write
acknowledged, a replica losing its tail or never getting it, a leader change before the
tail is repaired.

After every step, and after a final heal + restart-everyone + settle, the impl-side
invariants (stateful_harness.impl_violations) are checked. The first violation ends the
search: `Finding` names the trial's seed and its steps; `run_trial(config, seed, trial,
vocabulary)` replays it (everything in a trial derives from its seed) and `replay`
runs a given step list.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from stateful_harness import BROKERS, SimWorld, impl_violations

KILLS = "kills"  # any number of kill -9s and cuts of a broker from the others, no power loss
ONE_STOP = "one-stop"  # one kill -9 or power loss per trial
VOCABULARIES = (KILLS, ONE_STOP)
STEPS_PER_TRIAL = 16
PAUSES_S = (0.0, 0.0, 0.02, 0.1, 0.5, 2.5)
WEIGHTS = {
    "produce": 5.0,
    "kill": 2.0,
    "power": 2.0,
    "restart": 2.5,
    "isolate": 1.5,
    "cut_controller": 1.5,
    "cut_followers": 1.0,
    "heal": 1.0,
}


@dataclass(frozen=True)
class Finding:
    seed: int
    trial: int
    steps: tuple[tuple[str, int, float], ...]  # (action, broker or value, pause seconds)
    violations: tuple[str, ...]

    def describe(self) -> str:
        lines = [f"seed {self.seed} (trial {self.trial}):"]
        lines += [f"  {action} {arg} then wait {pause}s" for action, arg, pause in self.steps]
        lines += [f"  -> {v}" for v in self.violations]
        return "\n".join(lines)


def _acks(config: tuple[str, ...]) -> int:
    for item in config:
        if item.startswith("acks="):
            value = item.removeprefix("acks=")
            return -1 if value in ("all", "-1") else int(value)
    return -1


class Trial:
    """One world and the bookkeeping of one trial."""

    def __init__(self, config: tuple[str, ...], seed: int, vocabulary: str = KILLS) -> None:
        if vocabulary not in VOCABULARIES:
            raise ValueError(f"vocabulary must be one of {VOCABULARIES}, got {vocabulary!r}")
        self.vocabulary = vocabulary
        self.config = tuple(c for c in config if not c.startswith("acks="))
        self.acks = _acks(config)
        self.world = SimWorld(seed, self.config, tear_last_write=False)
        self.unclean_stops = 0
        self.next_value = 1
        self.steps: list[tuple[str, int, float]] = []

    def choices(self) -> list[str]:
        alive = self.world.alive()
        out = ["produce", "heal"]
        if len(alive) > 1 and self.vocabulary == KILLS:
            out.append("kill")
        elif len(alive) > 1 and self.unclean_stops == 0:
            out += ["kill", "power"]
        if len(alive) < len(BROKERS):
            out.append("restart")
        out += ["isolate", "cut_controller"]
        if self.vocabulary == KILLS:
            out.append("cut_followers")
        return out

    def _target(self, rng: random.Random) -> int:
        alive = sorted(self.world.alive())
        leader = self.world.observe().believed_leader()
        if leader in alive and rng.random() < 0.5:
            return leader
        return rng.choice(alive)

    def apply(self, action: str, rng: random.Random) -> int:
        world = self.world
        if action == "produce":
            value, self.next_value = self.next_value, self.next_value + 1
            world.produce(value, self.acks)
            return value
        if action == "restart":
            broker = rng.choice(sorted(set(BROKERS) - world.alive()))
            world.restart(broker)
            return broker
        if action == "heal":
            world.heal()
            return -1
        broker = self._target(rng)
        if action == "kill":
            self.unclean_stops += 1
            world.kill(broker)
        elif action == "power":
            self.unclean_stops += 1
            world.crash(broker)
        elif action == "isolate":
            world.isolate(broker)
        elif action == "cut_followers":
            world.cut_from_brokers(broker)
        else:
            world.cut_from_controller(broker)
        return broker

    def violations(self) -> list[str]:
        return impl_violations(
            self.world.history, self.world.observe(), acked_acks=(self.acks,) if self.acks else ()
        )

    def finish(self) -> list[str]:
        """Heal, restart every broker, let replication settle, then check."""
        self.world.heal()
        for broker in sorted(set(BROKERS) - self.world.alive()):
            self.world.restart(broker)
        self.world.settle()
        return self.violations()


def run_trial(
    config: tuple[str, ...], seed: int, trial: int, vocabulary: str = KILLS
) -> Finding | None:
    rng = random.Random(seed)
    state = Trial(config, seed, vocabulary)
    try:
        for _ in range(STEPS_PER_TRIAL):
            options = state.choices()
            action = rng.choices(options, [WEIGHTS[o] for o in options])[0]
            arg = state.apply(action, rng)
            pause = rng.choice(PAUSES_S)
            if pause:
                state.world.advance(pause)
            state.steps.append((action, arg, pause))
            found = state.violations()
            if found:
                return Finding(seed, trial, tuple(state.steps), tuple(found))
        found = state.finish()
        if found:
            return Finding(seed, trial, tuple(state.steps), tuple(found))
        return None
    finally:
        state.world.close()


def search(
    config: tuple[str, ...],
    trials_max: int,
    seed: int,
    vocabulary: str = KILLS,
    wanted: tuple[str, ...] = (),
) -> Finding | None:
    """The first finding of up to `trials_max` trials with seeds seed, seed+1, ...;
    with `wanted` (invariant names), only a finding that breaks one of them counts."""
    for trial in range(trials_max):
        found = run_trial(config, seed + trial, trial, vocabulary)
        if found is not None and (
            not wanted or any(v.startswith(wanted) for v in found.violations)
        ):
            return found
    return None


def replay(
    config: tuple[str, ...], seed: int, steps: tuple[tuple[str, int, float], ...]
) -> list[str]:
    """Run exactly these (action, broker or value, pause) steps on a fresh world (seed
    `seed`), then heal and restart everyone; the invariant violations seen."""
    state = Trial(config, seed, ONE_STOP)
    world = state.world
    calls = {
        "kill": world.kill,
        "power": world.crash,
        "restart": world.restart,
        "isolate": world.isolate,
        "cut_controller": world.cut_from_controller,
        "cut_followers": world.cut_from_brokers,
    }
    found: list[str] = []
    try:
        for action, arg, pause in steps:
            if action == "produce":
                world.produce(arg, state.acks)
            elif action == "heal":
                world.heal()
            else:
                calls[action](arg)
            if pause:
                world.advance(pause)
            found += state.violations()
        return found + state.finish()
    finally:
        world.close()
