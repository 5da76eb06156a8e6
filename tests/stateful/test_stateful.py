"""The simulated broker cluster and the reference model, driven side by side by Hypothesis.

Rules are client operations (produce with acks 0/1/all, fetch at an offset, ListOffsets
earliest/latest) and faults (kill -9, power loss, restart, isolate a broker, cut it from
the controller, pause, heal, clock bump, advance time). Each rule runs on the impl (a
`SimWorld`, tests/stateful/stateful_harness.py, one guest-mode trio run per example)
and on the model (`ReplicationModel` state, model/client.py's client calls).

Correspondence, step by step:
1. The rule's own action goes to both: produce -> `client.produce` on the broker the
   model's clients would reach (`leader_of`); a power loss -> the model's power `crash`
   (the model `flush`es wherever the impl fsynced a replica whole, e.g. log recovery on
   restart, so both keep the same prefix); a kill -9 -> `flush` then a power `crash`:
   the impl's controller counts a kill as an unclean shutdown (KIP-966 drops the replica
   from ISR and ELR) while the page cache keeps everything, and the model's own `kill`
   is a clean one. Either way the model's crashed broker takes its messages with it,
   so the impl's machine goes down whole (`machine_down`): what it wrote into a cut
   link is lost, not delivered at the heal (a late heartbeat of the dead incarnation
   would unfence it at the controller, which no model step can explain). The HW
   checkpoint runs more often than a settle stays quiet, so a crash keeps the HW the
   model keeps (`HW_CHECKPOINT_INTERVAL_MS`); isolate / cut_controller /
   restart -> the same model actions; pause -> `isolate` (from outside, a stopped process
   and a cut-off one are the same); heal -> `heal` (and resume every paused broker).
   Clock bumps and time advances are no model action: nothing the model observes may
   depend on a broker's wall clock.
2. The impl settles (SimWorld.settle: time runs until nothing changed for longer than
   every timer). Where timing decided (which replica the controller elected, whether
   the ISR shrank, which brokers it fenced), the model is driven with the actions that
   explain what the impl did (`explain`): a leader's `shrink_isr` (after a clock `tick`
   if the model needs one to call the follower lagging), the controller's `fence` (with
   the successor the impl elected), `register`, `elect`; each must be enabled in the
   model, so "the impl's observation is one the model allows" is checked, not assumed.
   Between explanations `client.replicate` lets metadata and fetches flow. If that
   order does not give the impl's replicas, fetches go first (`_catch_up`): a fetch a
   pause or cut held may be answered by the old leader before the heal's election is
   known to either.
3. Everything determined is then compared: the outcome of the rule (offsets, errors by
   Kafka name, "unknown" for a write that may have happened), the fetched records, HW,
   log start, the controller's leader and ISR, the fenced brokers, and for every live
   broker its log (offset -> value), HW, LEO and whether it believes it leads. Leader
   epochs are not compared: the model bumps the epoch twice when it fences a leader
   (offline, then elected), KRaft once; both only ever compare epochs for order.
4. The impl-side invariants (stateful_harness.impl_violations: OneLeaderPerEpoch,
   LogMatching, HighWatermarkMonotonic, NoAcknowledgedWriteLost, LeaderCompleteness,
   LeaderInIsr) are checked on every observation; the two about lost data only while at
   most one power loss happened (min.insync.replicas=2 promises nothing beyond).

A difference fails the step; Hypothesis shrinks the rule sequence and prints it as a
replayable test (with the `seed` of the simulation as the first step's argument).
"""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import Phase, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from stateful_harness import (
    BROKERS,
    EARLIEST,
    LATEST,
    SETTLE_QUIET_S,
    TIMING,
    Observation,
    Outcome,
    SimWorld,
    impl_violations,
)

from model import client
from model.config import Config
from model.errors import Errors
from model.machine import Action, ReplicationModel, Scope
from model.state import NO_LEADER, POWER, State, members

# The model's HW survives a crash as if checkpointed at every change; the impl's is
# Kafka's periodic checkpoint. Checkpointing more often than a settle stays quiet makes
# every HW a rule can crash with a checkpointed one, so both restart with the same HW.
HW_CHECKPOINT_INTERVAL_MS = 1000
assert HW_CHECKPOINT_INTERVAL_MS < SETTLE_QUIET_S * 1000
BROKER_CONFIG = (
    "min.insync.replicas=2",
    f"replica.high.watermark.checkpoint.interval.ms={HW_CHECKPOINT_INTERVAL_MS}",
)
UNBOUNDED = 10**9
SCOPE = Scope(
    brokers=len(BROKERS),
    partitions=1,
    max_writes=UNBOUNDED,
    max_retries=0,
    max_crashes=UNBOUNDED,
    max_data_loss_crashes=UNBOUNDED,
    crash_kinds=("kill", "power"),
    max_elections=UNBOUNDED,
    max_network_changes=UNBOUNDED,
    max_clock_advances=UNBOUNDED,
    consumers=False,
)
EXPLAIN_STEPS_MAX = 12
FETCH_ROUNDS_MAX = 50
broker_ids = st.sampled_from(BROKERS)


def _models(config: tuple[str, ...]) -> dict[int, ReplicationModel]:
    """One model per acks level: acks is the client's, the brokers' rules are shared."""
    return {
        acks: ReplicationModel(
            Config.parse([*TIMING, *config, f"acks={'all' if acks == -1 else acks}"]), SCOPE
        )
        for acks in (0, 1, -1)
    }


class Mismatch(AssertionError):
    """The impl did something the model does not allow, or they observe different things."""


def _isr_mask(isr: tuple[int, ...]) -> int:
    return sum(1 << b for b in isr)


def _fetches(model: ReplicationModel, state: State) -> State:
    """`client.replicate` without metadata deliveries: fetches and their answers until
    a whole round changes nothing."""
    for _ in range(FETCH_ROUNDS_MAX):
        before = (state.replicas, state.controller, state.acked)
        for kind in ("fetch", "handle_response"):
            for action in [a for a in model.enabled_actions(state) if a.kind == kind]:
                if action in model.enabled_actions(state):
                    state = model.step(state, action)
        if (state.replicas, state.controller, state.acked) == before:
            return state
    raise Mismatch(f"the model's fetches did not settle within {FETCH_ROUNDS_MAX} rounds")


def _elects_last_leader(state: State, action: Action) -> bool:
    """Whether `action` is an election with ISR and ELR both empty (the last known leader)."""
    if action.kind != "elect":
        return False
    reg = state.controller.partitions[action.partition]
    return reg.leader == NO_LEADER and reg.isr == 0 and reg.elr == 0


class ClusterVersusModel(RuleBasedStateMachine):
    # The brokers' settings on each side: equal, except in the test that shows a
    # difference between impl and model is caught.
    impl_config: tuple[str, ...] = BROKER_CONFIG
    model_config: tuple[str, ...] = BROKER_CONFIG

    def __init__(self) -> None:
        super().__init__()
        self.world: SimWorld | None = None
        self.models = _models(self.model_config)
        self.model = self.models[-1]
        self.state: State = self.model.initial_state()
        self.next_value = 1
        self.power_losses = 0
        # The controller elected the last known leader with ISR and ELR empty (KIP-966's
        # fallback): what min.insync.replicas promised may be gone, in the model too.
        self.last_leader_elected = False
        self.paused: set[int] = set()

    # ---- setup and teardown ----------------------------------------------------------------

    @initialize(seed=st.integers(0, 2**16))
    def start(self, seed: int) -> None:
        self.world = SimWorld(seed, self.impl_config)
        self._check(self.world.observe())

    def teardown(self) -> None:
        if self.world is not None:
            self.world.close()

    # ---- the model side ------------------------------------------------------------------

    def _enabled(self, action: Action) -> bool:
        return action in self.model.enabled_actions(self.state)

    def _step(self, action: Action) -> None:
        if not self._enabled(action):
            raise Mismatch(f"the model does not allow {action} ({action.describe()})")
        self.state = self.model.step(self.state, action)

    def _reachable_leader(self) -> int:
        """The broker the model's clients reach, -1 when none is (down or cut off)."""
        leader = client.leader_of(self.state, 0)
        if leader == NO_LEADER or self.state.isolated >> leader & 1:
            return -1
        return leader

    # ---- explaining the impl's timing choices ------------------------------------------

    def _explanations(self, seen: Observation) -> list[list[Action]]:
        """Candidate model actions (each a short sequence) that move the model's
        controller towards what the impl's controller shows, most specific first."""
        reg = self.state.controller.partitions[0]
        fenced = {b for b in BROKERS if self.state.controller.fenced >> b & 1}
        out: list[list[Action]] = []
        for f in members(reg.isr & ~_isr_mask(seen.isr)):
            if reg.leader >= 0 and f != reg.leader:
                out.append([Action("shrink_isr", reg.leader, 0, f)])
                out.append([Action("tick"), Action("shrink_isr", reg.leader, 0, f)])
        for b in sorted(seen.fenced - fenced):
            if reg.leader == b and seen.leader >= 0:
                out.append([Action("fence", b, 0, seen.leader)])
            out.append([Action("fence", b)])
        for b in sorted(fenced - seen.fenced):
            out.append([Action("register", b)])
        if seen.leader >= 0 and seen.leader != reg.leader:
            out.append([Action("elect", -1, 0, seen.leader)])
        return out

    def _controller_matches(self, seen: Observation) -> bool:
        reg = self.state.controller.partitions[0]
        fenced = {b for b in BROKERS if self.state.controller.fenced >> b & 1}
        return (
            reg.leader == seen.leader
            and reg.isr == _isr_mask(seen.isr)
            and fenced == set(seen.fenced)
        )

    def _try(self, actions: list[Action]) -> bool:
        state = self.state
        last_leader = False
        for action in actions:
            if action not in self.model.enabled_actions(state):
                return False
            last_leader = last_leader or _elects_last_leader(state, action)
            state = self.model.step(state, action)
        self.state = state
        self.last_leader_elected = self.last_leader_elected or last_leader
        return True

    def _explain(self, seen: Observation) -> None:
        """Explanations are tried before replication too: the impl may have shrunk a
        follower out of the ISR before the heal that let it catch up."""
        for _ in range(EXPLAIN_STEPS_MAX):
            if self._controller_matches(seen):
                after = client.replicate(self.model, self.state)
                settled = after.controller == self.state.controller
                self.state = after
                if settled:
                    return
                continue
            if any(self._try(actions) for actions in self._explanations(seen)):
                continue
            after = client.replicate(self.model, self.state)
            if after == self.state:
                break
            self.state = after
        reg = self.state.controller.partitions[0]
        raise Mismatch(
            f"no model step explains the impl's controller: impl leader {seen.leader} "
            f"ISR {seen.isr} fenced {sorted(seen.fenced)}; model {reg} "
            f"fenced mask {self.state.controller.fenced:b}"
        )

    # ---- comparing -----------------------------------------------------------------------

    def _compare_replicas(self, seen: Observation) -> None:
        assert self.world is not None
        alive = {b for b, broker in enumerate(self.state.brokers) if broker.alive}
        if alive != self.world.alive():
            raise Mismatch(
                f"live brokers: impl {sorted(self.world.alive())}, model {sorted(alive)}"
            )
        for b in sorted(alive - set(seen.replicas)):
            # Restarted without reaching the controller: the replica is not open yet.
            if self.state.brokers[b].views[0] is not None:
                raise Mismatch(f"broker {b} has not opened its replica; the model's has a view")
        for b, replica in seen.replicas.items():
            mine = self.state.replicas[b][0]
            view = self.state.brokers[b].views[0]
            impl_log = tuple((o, v) for o, _, v in replica.records)
            model_log = tuple((o, record[1]) for o, record in enumerate(mine.log))
            model_leads = view is not None and view.leader == b
            if impl_log != model_log:
                raise Mismatch(f"broker {b} log: impl {impl_log}, model {model_log}")
            if (replica.hw, replica.leo, replica.log_start) != (mine.hw, len(mine.log), 0):
                raise Mismatch(
                    f"broker {b} HW/LEO/log start: impl {replica.hw}/{replica.leo}/"
                    f"{replica.log_start}, model {mine.hw}/{len(mine.log)}/0"
                )
            if replica.is_leader != model_leads:
                raise Mismatch(
                    f"broker {b} believes it leads: impl {replica.is_leader}, model {model_leads}"
                )

    def _follow_fsyncs(self) -> None:
        """A replica the impl fsynced whole (log recovery on restart does) is flushed in
        the model at the same point, so a later power loss keeps the same prefix."""
        assert self.world is not None
        for b in sorted(self.world.alive()):
            point = self.world.recovery_point(b)
            replica = self.state.replicas[b][0]
            if point is not None and point[0] == len(replica.log) > replica.flushed:
                self._step(Action("flush", b, 0))

    def _catch_up(self, seen: Observation) -> None:
        """Drive the model to what the impl shows, in the first order that explains it:
        controller steps first, or fetches first (a follower's fetch that a pause or cut
        held may reach the old leader, and be answered, before either hears of the new
        leadership at the heal)."""
        start = (self.state, self.last_leader_elected)
        errors = []
        for fetches_first in (False, True):
            self.state, self.last_leader_elected = start
            if fetches_first:
                self.state = _fetches(self.model, self.state)
            try:
                self._explain(seen)
                self._follow_fsyncs()
                self._compare_replicas(seen)
                return
            except Mismatch as error:
                errors.append(error)
        raise errors[0]

    def _check(self, seen: Observation) -> None:
        self._catch_up(seen)
        assert self.world is not None
        # Two power losses, or one and a kill -9 that left the power-lost replica the last
        # known leader, may lose what min.insync.replicas=2 committed, in the model too
        # (test_stateful_findings.py): past that, only the invariants every setting
        # promises are checked.
        promised = self.power_losses <= 1 and not self.last_leader_elected
        violations = impl_violations(
            self.world.history,
            seen,
            acked_acks=(-1,) if promised else (),
            completeness=promised,
        )
        if violations:
            raise Mismatch("; ".join(violations))

    def _settle_and_check(self) -> None:
        assert self.world is not None
        self._check(self.world.settle())

    # ---- client rules ----------------------------------------------------------------------

    @rule(acks=st.sampled_from((-1, 1, 0)))
    def produce(self, acks: int) -> None:
        assert self.world is not None
        value, self.next_value = self.next_value, self.next_value + 1
        target = self._reachable_leader()
        got = self.world.produce(value, acks)
        if target < 0:
            self._settle_and_check()
            if got.kind == "ok":
                raise Mismatch(f"impl acknowledged v{value} while the model has no leader to reach")
            return
        self.state, result = client.produce(self.models[acks], self.state, 0, value, broker=target)
        seen = self.world.settle()
        self._check(seen)
        self._compare_produce(value, acks, target, result, got)

    def _compare_produce(
        self, value: int, acks: int, target: int, result: client.ProduceResult, got: Outcome
    ) -> None:
        if result.error != Errors.NONE:
            expected = Outcome("failed", error=result.error.name)
        elif not result.pending:
            expected = Outcome("ok", offset=result.offset if acks != 0 else -1)
        else:
            final = client.produce_outcome(self.models[acks], self.state, 0, target, result)
            if final == Errors.NONE:
                expected = Outcome("ok", offset=result.offset)
            else:
                # Still waiting or its leader moved on: the client cannot know.
                expected = Outcome("unknown", error=got.error)
        if (got.kind, got.offset) != (expected.kind, expected.offset) or (
            got.kind == "failed" and got.error != expected.error
        ):
            raise Mismatch(f"produce v{value} acks={acks}: impl {got}, model {expected}")

    @rule(data=st.data())
    def fetch(self, data: st.DataObject) -> None:
        assert self.world is not None
        leader = self._reachable_leader()
        end = len(self.state.replicas[leader][0].log) if leader >= 0 else 0
        offset = data.draw(st.integers(0, end + 1), label="offset")
        got = self.world.fetch(offset)
        if leader < 0:
            if got.error == "NONE":
                raise Mismatch(f"impl answered a fetch while the model has no leader: {got}")
            return
        want = client.fetch(self.state, 0, offset)
        if (got.error, got.records) != (want.error.name, want.records) or (
            got.error == "NONE"
            and (got.high_watermark, got.log_start) != (want.high_watermark, want.log_start_offset)
        ):
            raise Mismatch(f"fetch at {offset}: impl {got}, model {want}")

    @rule(spec=st.sampled_from(("earliest", "latest")))
    def list_offsets(self, spec: str) -> None:
        assert self.world is not None
        leader = self._reachable_leader()
        got = self.world.list_offsets(EARLIEST if spec == "earliest" else LATEST)
        if leader < 0:
            if got[0] == "NONE":
                raise Mismatch(f"impl answered ListOffsets while the model has no leader: {got}")
            return
        error, offset = client.list_offsets(self.state, 0, spec)
        if got != (error.name, offset):
            raise Mismatch(f"ListOffsets {spec}: impl {got}, model {(error.name, offset)}")

    # ---- fault rules -----------------------------------------------------------------------

    def _alive(self, broker: int) -> bool:
        return self.state.brokers[broker].alive

    @rule(broker=broker_ids, power_loss=st.booleans())
    def crash(self, broker: int, power_loss: bool) -> None:
        assert self.world is not None
        if not self._alive(broker):
            return
        if power_loss:
            point = self.world.recovery_point(broker)
            if point is None:
                # Not open since a restart: what its page cache still holds unsynced is
                # not observable here, so the model's `flushed` could not be matched.
                return
            synced, end = point
            replica = self.state.replicas[broker][0]
            if synced >= end and replica.flushed < len(replica.log):
                self._step(Action("flush", broker, 0))
            elif synced not in (end, replica.flushed):
                raise Mismatch(
                    f"broker {broker} fsynced [0, {synced}) of {end}, the model {replica.flushed}"
                )
            self.world.crash(broker, machine_down=True)
            self.power_losses += 1
        else:
            # The impl's controller calls a kill -9 an unclean shutdown (no clean-shutdown
            # marker, as in Kafka) though the page cache keeps everything: in the model, a
            # power loss right after an fsync of the whole replica.
            replica = self.state.replicas[broker][0]
            if replica.flushed < len(replica.log):
                self._step(Action("flush", broker, 0))
            self.world.kill(broker, machine_down=True)
        self._step(Action("crash", broker, -1, POWER))
        self._settle_and_check()

    @rule(broker=broker_ids)
    def restart(self, broker: int) -> None:
        assert self.world is not None
        if self._alive(broker):
            return
        self.world.restart(broker)
        self._step(Action("restart", broker))
        self._settle_and_check()

    @rule(broker=broker_ids)
    def isolate(self, broker: int) -> None:
        assert self.world is not None
        if self.state.isolated >> broker & 1:
            return
        self.world.isolate(broker)
        self._step(Action("isolate", broker))
        self._settle_and_check()

    @rule(broker=broker_ids)
    def cut_from_controller(self, broker: int) -> None:
        assert self.world is not None
        if (self.state.isolated | self.state.controller_cut) >> broker & 1:
            return
        self.world.cut_from_controller(broker)
        self._step(Action("cut_controller", broker))
        self._settle_and_check()

    @precondition(lambda self: len(self.paused) < len(BROKERS))
    @rule(broker=broker_ids)
    def pause(self, broker: int) -> None:
        assert self.world is not None
        if not self._alive(broker) or self.state.isolated >> broker & 1:
            return
        self.world.pause(broker)
        self.paused.add(broker)
        self._step(Action("isolate", broker))
        self._settle_and_check()

    @rule()
    def heal(self) -> None:
        assert self.world is not None
        if not (self.state.isolated or self.state.controller_cut):
            return
        for broker in sorted(self.paused):
            self.world.resume(broker)
        self.paused.clear()
        self.world.heal()
        self._step(Action("heal"))
        self._settle_and_check()

    @rule(broker=broker_ids, delta_ms=st.sampled_from((-600_000, -5_000, 5_000, 3_600_000)))
    def bump_clock(self, broker: int, delta_ms: int) -> None:
        assert self.world is not None
        if not self._alive(broker):
            return
        self.world.bump_clock(broker, delta_ms)
        self._settle_and_check()

    @rule(seconds=st.sampled_from((0.5, 2.5, 10.0)))
    def advance_time(self, seconds: float) -> None:
        assert self.world is not None
        self.world.advance(seconds)
        self._settle_and_check()

    @invariant()
    def model_leader_in_isr(self) -> None:
        reg = self.state.controller.partitions[0]
        assert reg.leader < 0 or reg.isr >> reg.leader & 1, f"model: leader outside ISR {reg}"


# (examples, rules per example) by Hypothesis profile (tests/conftest.py).
SIZES = {"ci": (10, 25), "dev": (10, 25), "campaign": (1_000, 100)}
EXAMPLES, STEPS = SIZES.get(settings.get_current_profile_name(), SIZES["ci"])
TestClusterVersusModel = ClusterVersusModel.TestCase
TestClusterVersusModel.settings = settings(max_examples=EXAMPLES, stateful_step_count=STEPS)


class ImplWithoutHwGuard(ClusterVersusModel):
    """The impl runs replog.hw.min-isr-guard=false (KAFKA-15583 off), the model does not."""

    impl_config = (*BROKER_CONFIG, "replog.hw.min-isr-guard=false")


def test_the_correspondence_catches_an_impl_that_differs_from_the_model():
    """Teeth for the comparison itself: an impl whose HW ignores min.insync.replicas is
    told apart from the model within the CI budget (no shrinking: finding is the point)."""
    with pytest.raises(Mismatch, match="HW"):
        run_state_machine_as_test(
            ImplWithoutHwGuard,
            settings=settings(
                max_examples=EXAMPLES * 3,
                stateful_step_count=STEPS,
                phases=[Phase.generate],
                database=None,
            ),
        )
