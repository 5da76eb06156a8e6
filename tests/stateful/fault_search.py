"""A seeded random search for lost acknowledged writes and diverged logs in the simulator.

`search(config, trials_max, seed, vocabulary)` runs trials on fresh `SimWorld`s (3
brokers, one controller, stateful_harness.py). A trial draws STEPS_PER_TRIAL steps from
one `random.Random(seed + trial)`: produces with the client's acks; abrupt stops of the
leader or a follower by one of two vocabularies, KILLS (any number of kill -9s) or
ONE_STOP (one kill -9 or power loss per trial: the impl's controller counts a kill -9
as an unclean shutdown, so a kill and a power loss together make two "unclean"
replicas, beyond what the safe defaults promise: see test_stateful_findings'
last-known-leader loss);
restarts; isolating a broker; cutting one from the controller (a leader change without
a crash: the controller fences it and elects another); with KILLS also cutting one from
the other brokers only (a leader keeps its clients and the controller, loses its
followers: the ISR shrinks to it); healing. A third vocabulary, RACES, stops nothing:
it pauses and resumes brokers (a paused leader's held fetch answers arrive late, after
the controller moved on), isolates and cuts them, heals, and produces with acks=1 half
the time under acks=all (recorded as PRODUCE_ACKS1; only acks=all writes must
survive), with the shorter waits of RACE_PAUSES_S; LEADER_MOVES is RACES with rare
heals and frequent cuts (LEADER_MOVE_WEIGHTS). Each step is followed by a pause drawn
from PAUSES_S (RACE_PAUSES_S), so faults land both mid-replication and after the
cluster settled. Targets are the leader half the time. The weights follow the shapes
of the model's shortest counterexamples (`replog check --config X`): a write
acknowledged, a replica losing its tail or never getting it, a leader change before the
tail is repaired.

EXPANSIONS (the KAFKA-7128 shape: a follower back in the ISR before it holds what the
previous leader acknowledged) draws EPISODES_PER_TRIAL episodes instead of single steps
(each recorded as its steps: the fault, then the writes), and changes the cluster, for
the defaults as for the variant: followers fetch one batch at a time (EXPANSION_CONFIG)
over 100 ms links between brokers (SlowLinksWorld; the controller's and the clients'
links stay fast), so a returning follower catches up over several round trips. One
broker at most is paused: an episode moves the pause to a follower ("lag") or to the
leader ("failover", then waits until another broker leads), writes a burst (0 to
BURST_ACKS1_MAX acks=1 records, then one with the client's acks) and waits a draw of
EXPANSION_PAUSES_S (one to a few replication round trips, or past the 2 s timers). Both
changes widen the window the variant needs (from about a millisecond to a few hundred):
of 40 trials of seed 1000, five lose a write; none without the slow links, two without
the one-batch fetches.

After every step, and after a final heal + restart-everyone + settle, the impl-side
invariants (stateful_harness.impl_violations) are checked; a run that a broker ended
because its log refused a fetched batch of a lower leader epoch (LogAppendError) is a
DivergentAppend finding. The first violation ends the search: `Finding` names the
trial's seed and its steps; `run_trial(config, seed, trial, vocabulary)` replays it
(everything in a trial derives from its seed) and `replay` runs a given step list.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from stateful_harness import BROKERS, SimWorld, impl_violations

from impl.storage.log import LogAppendError

KILLS = "kills"  # any number of kill -9s and cuts of a broker from the others, no power loss
ONE_STOP = "one-stop"  # one kill -9 or power loss per trial
# No stops: pauses (a held fetch answer arrives late), cuts, heals and leader changes,
# produces with acks=1 or all (an acks=1 record need not reach a follower before the
# leader moves on), short waits around the 2 s lag and session timers.
RACES = "races"
# RACES' steps, heals rare and cuts frequent, so a leader change can follow a cut
# follower's missed records before anything repairs them (the model's kip-101 story).
LEADER_MOVES = "leader-moves"
STOPLESS = (RACES, LEADER_MOVES)
# Episodes over slow replication links: move the one pause to a follower or the leader,
# write a burst, wait (see the module docstring).
EXPANSIONS = "expansions"
DIVERGENT_APPEND = "DivergentAppend"
PRODUCE_ACKS1 = "produce_acks1"  # a produce with acks=1 under acks=all
VOCABULARIES = (KILLS, ONE_STOP, *STOPLESS, EXPANSIONS)
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
RACE_WEIGHTS = {**WEIGHTS, "pause": 2.0, "resume": 2.0}
LEADER_MOVE_WEIGHTS = {
    "produce": 5.0,
    "heal": 0.4,
    "isolate": 2.0,
    "cut_controller": 2.0,
    "cut_followers": 2.0,
    "pause": 1.0,
    "resume": 1.0,
}
RACE_PAUSES_S = (0.0, 0.0, 0.01, 0.05, 0.2, 0.5, 1.0, 2.5)
LAG, FAILOVER = "lag", "failover"
EPISODES_PER_TRIAL = 12
EXPANSION_WEIGHTS = {LAG: 1.0, FAILOVER: 1.0}
BURST_ACKS1_MAX = 5
EXPANSION_PAUSES_S = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 2.5)
EXPANSION_CONFIG = ("replica.fetch.max.bytes=1",)
BROKER_LINK_LATENCY_S = 0.1
FAILOVER_WAIT_S_MAX = 6.0  # the 2 s session timeout, an election, a metadata round trip
FAILOVER_POLL_S = 0.1


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


class SlowLinksWorld(SimWorld):
    """Every link between two brokers takes BROKER_LINK_LATENCY_S each way (set before
    the first connection: the network keeps a link's latency once drawn)."""

    async def _start(self) -> None:
        latency_s = self.cluster.net.latency_s
        for source in BROKERS:
            for target in BROKERS:
                if source != target:
                    latency_s[(source, target)] = BROKER_LINK_LATENCY_S
        await super()._start()


class Trial:
    """One world and the bookkeeping of one trial."""

    def __init__(self, config: tuple[str, ...], seed: int, vocabulary: str = KILLS) -> None:
        if vocabulary not in VOCABULARIES:
            raise ValueError(f"vocabulary must be one of {VOCABULARIES}, got {vocabulary!r}")
        self.vocabulary = vocabulary
        self.config = tuple(c for c in config if not c.startswith("acks="))
        self.acks = _acks(config)
        if vocabulary == EXPANSIONS:
            self.world = SlowLinksWorld(seed, (*EXPANSION_CONFIG, *self.config))
        else:
            self.world = SimWorld(seed, self.config, tear_last_write=False)
        self.unclean_stops = 0
        self.next_value = 1
        self.paused: set[int] = set()
        self.steps: list[tuple[str, int, float]] = []

    def choices(self) -> list[str]:
        alive = self.world.alive()
        out = ["produce", "heal"]
        if self.vocabulary in STOPLESS:
            if len(self.paused) < len(BROKERS) - 1:
                out.append("pause")
            if self.paused:
                out.append("resume")
            return [*out, "isolate", "cut_controller", "cut_followers"]
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

    def weights(self) -> dict[str, float]:
        return {RACES: RACE_WEIGHTS, LEADER_MOVES: LEADER_MOVE_WEIGHTS}.get(
            self.vocabulary, WEIGHTS
        )

    def pauses_s(self) -> tuple[float, ...]:
        return RACE_PAUSES_S if self.vocabulary in STOPLESS else PAUSES_S

    def _target(self, rng: random.Random) -> int:
        alive = sorted(self.world.alive() - self.paused)
        leader = self.world.observe().believed_leader()
        if leader in alive and rng.random() < 0.5:
            return leader
        return rng.choice(alive)

    def apply(self, action: str, rng: random.Random) -> tuple[str, int]:
        """Run `action`; the step as recorded (action, broker or value)."""
        world = self.world
        if action == "produce":
            value, self.next_value = self.next_value, self.next_value + 1
            if self.vocabulary in STOPLESS and self.acks == -1 and rng.random() < 0.5:
                world.produce(value, 1)
                return PRODUCE_ACKS1, value
            world.produce(value, self.acks)
            return action, value
        return action, self._apply_fault(action, rng)

    def _apply_fault(self, action: str, rng: random.Random) -> int:
        world = self.world
        if action == "restart":
            broker = rng.choice(sorted(set(BROKERS) - world.alive()))
            world.restart(broker)
            return broker
        if action == "heal":
            world.heal()
            return -1
        if action == "resume":
            broker = rng.choice(sorted(self.paused))
            self.paused.discard(broker)
            world.resume(broker)
            return broker
        broker = self._target(rng)
        if action == "pause":
            self.paused.add(broker)
            world.pause(broker)
            return broker
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

    def episode(self, rng: random.Random) -> Iterator[None]:
        """One EXPANSIONS episode; yields after each step it records."""
        kind = rng.choices(list(EXPANSION_WEIGHTS), list(EXPANSION_WEIGHTS.values()))[0]
        broker = self._episode_target(kind, rng)
        self.move_pause(broker)
        if kind == FAILOVER:
            self.await_leader(broker)
        self.steps.append((kind, broker, 0.0))
        yield
        for _ in range(rng.randint(0, BURST_ACKS1_MAX)):
            self.steps.append((*self._write(1), 0.0))
            yield
        action, value = self._write(self.acks)
        pause = rng.choice(EXPANSION_PAUSES_S)
        if pause:
            self.world.advance(pause)
        self.steps.append((action, value, pause))
        yield

    def _episode_target(self, kind: str, rng: random.Random) -> int:
        candidates = sorted(self.world.alive() - self.paused)
        leader = self.world.observe().believed_leader()
        if kind == FAILOVER and leader in candidates:
            return leader
        followers = [b for b in candidates if b != leader]
        return rng.choice(followers or candidates)

    def _write(self, acks: int) -> tuple[str, int]:
        value, self.next_value = self.next_value, self.next_value + 1
        self.world.produce(value, acks)
        return (PRODUCE_ACKS1 if acks == 1 and self.acks != 1 else "produce"), value

    def move_pause(self, broker: int) -> None:
        """Resume the paused broker, if any, then pause `broker` (one pause at a time)."""
        for paused in sorted(self.paused - {broker}):
            self.world.resume(paused)
        if broker not in self.paused:
            self.world.pause(broker)
        self.paused = {broker}

    def await_leader(self, paused: int) -> None:
        """Let time pass until a broker other than `paused` believes it leads, at most
        FAILOVER_WAIT_S_MAX."""
        waited_s = 0.0
        while waited_s < FAILOVER_WAIT_S_MAX:
            leader = self.world.observe().believed_leader()
            if leader not in (-1, paused):
                return
            self.world.advance(FAILOVER_POLL_S)
            waited_s += FAILOVER_POLL_S

    def violations(self) -> list[str]:
        return impl_violations(
            self.world.history, self.world.observe(), acked_acks=(self.acks,) if self.acks else ()
        )

    def finish(self) -> list[str]:
        """Heal, resume and restart every broker, let replication settle, then check."""
        self.world.heal()
        for broker in sorted(self.paused):
            self.world.resume(broker)
        self.paused.clear()
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
        found = _run_steps(state, rng)
    except BaseException:
        refused = _close(state.world)
        if not refused:
            raise
        return Finding(seed, trial, tuple(state.steps), tuple(refused))
    found += _close(state.world)
    return Finding(seed, trial, tuple(state.steps), tuple(found)) if found else None


def _run_steps(state: Trial, rng: random.Random) -> list[str]:
    if state.vocabulary == EXPANSIONS:
        return _run_episodes(state, rng)
    for _ in range(STEPS_PER_TRIAL):
        options = state.choices()
        weights = state.weights()
        action = rng.choices(options, [weights[o] for o in options])[0]
        step = state.apply(action, rng)
        pause = rng.choice(state.pauses_s())
        if pause:
            state.world.advance(pause)
        state.steps.append((*step, pause))
        found = state.violations()
        if found:
            return found
    return state.finish()


def _run_episodes(state: Trial, rng: random.Random) -> list[str]:
    for _ in range(EPISODES_PER_TRIAL):
        for _step in state.episode(rng):
            found = state.violations()
            if found:
                return found
    return state.finish()


def _close(world: SimWorld) -> list[str]:
    """End the world's run; a DivergentAppend for each broker it ended on because the
    broker's log refused a fetched batch whose leader epoch is below one already in the
    log (LogAppendError): a leader's log never holds that, so the follower was handed
    records that diverge from its current leader's log. Any other failure propagates."""
    try:
        world.close()
    except BaseExceptionGroup as group:
        refused, rest = group.split(LogAppendError)
        if refused is None or rest is not None:
            raise
        return [f"{DIVERGENT_APPEND}: {error}" for error in _leaves(refused)]
    return []


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    return [
        leaf
        for error in group.exceptions
        for leaf in (_leaves(error) if isinstance(error, BaseExceptionGroup) else [error])
    ]


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
    config: tuple[str, ...],
    seed: int,
    steps: tuple[tuple[str, int, float], ...],
    vocabulary: str = ONE_STOP,
) -> list[str]:
    """Run exactly these (action, broker or value, pause) steps on a fresh world (seed
    `seed`, the world `vocabulary` searches), then heal and restart everyone; the
    invariant violations seen."""
    state = Trial(config, seed, vocabulary)
    world = state.world
    calls = {
        "pause": lambda broker: (state.paused.add(broker), world.pause(broker)),
        "resume": lambda broker: (state.paused.discard(broker), world.resume(broker)),
        "kill": world.kill,
        "power": world.crash,
        "restart": world.restart,
        "isolate": world.isolate,
        "cut_controller": world.cut_from_controller,
        "cut_followers": world.cut_from_brokers,
        LAG: state.move_pause,
        FAILOVER: lambda broker: (state.move_pause(broker), state.await_leader(broker)),
    }
    found: list[str] = []
    try:
        for action, arg, pause in steps:
            if action == "produce":
                world.produce(arg, state.acks)
            elif action == PRODUCE_ACKS1:
                world.produce(arg, 1)
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
