"""The actions of `model/machine.py` as z3 terms: `Encoding.options(state)` gives, for
every action a scope can enable, its guard and the state after it.

Each option is one `model.machine.Action` with the same meaning; the tests step both on
random walks and compare state by state.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import z3

from model.errors import Errors
from model.machine import Action
from model.state import DISK, FETCHING, IDLE, KILL, NO_LEADER, TRUNCATING, UNKNOWN
from specs.smt_rules import (
    ZERO,
    Rules,
    any_of,
    append_entry,
    choose,
    divergence_truncation_offset,
    end_offset_for,
    last_fetched_epoch,
    latest_epoch,
    out_of_sync,
    pick,
    replace_at,
    size,
    smin,
    truncate,
    with_broker,
    with_replica,
)
from specs.smt_state import Controller, Flag, Num, Replica, Slot, SymState, View, num


@dataclass(frozen=True)
class Option:
    """One concrete choice of the step selector: a model action, when it is enabled, and
    the state after it (before produces waiting for the HW are completed)."""

    action: Action
    guard: Flag
    after: SymState


class Encoding(Rules):
    """The transition relation of one ReplicationModel, for the scopes it covers."""

    # --- actions ------------------------------------------------------------------------

    def options(self, state: SymState) -> list[Option]:
        """Every action the scope can ever enable, in a fixed order; kinds that the scope's
        bounds keep disabled in every state are left out."""
        return list(self._options(state))

    def _options(self, state: SymState) -> Iterator[Option]:
        scope, n = self.scope, self.dims.brokers
        crashes = scope.max_crashes > 0 and bool(scope.crash_kinds)
        cuts = "controller" in scope.network_faults and scope.max_network_changes > 0
        clock = scope.max_clock_advances > 0
        for b in range(n):
            for w in range(1, scope.max_writes + 1):
                yield self._produce(state, b, w)
            for other in range(n):
                if other != b:
                    yield self._fetch(state, b, other)
                    yield self._handle_response(state, b, other)
                    if clock:  # nobody falls out of sync before time passes
                        yield self._shrink_isr(state, b, other)
            yield self._deliver(state, b)
            if crashes or cuts:  # fencing and registering follow a crash or a cut
                yield self._fence(state, b, NO_LEADER)
                if scope.max_elections:
                    for c in range(n):
                        if c != b and self.replicas[c]:
                            yield self._fence(state, b, c)
                yield self._register(state, b)
            if crashes:
                for kind in self.model.crash_kinds:
                    yield self._crash(state, b, kind)
                yield self._restart(state, b)
            if cuts:
                yield self._cut_controller(state, b)
        if scope.max_elections:
            for c in range(n):
                if self.replicas[c]:
                    yield self._elect(state, c)
        if cuts:
            yield self._heal(state)
        if clock:
            yield self._tick(state)

    def _produce(self, state: SymState, b: int, value: int) -> Option:
        """Produce of a new record with `value` (= writes so far + 1) at leader b."""
        config = self.config
        broker = state.brokers[b]
        view, r = broker.view, broker.replica
        guard = z3.And(self.leads(broker, b), state.budget.writes == value - 1)
        ok = z3.BoolVal(True)
        if config.acks == -1:
            ok = size(view.isr) >= config.min_insync_replicas
        if config.enable_idempotence:
            # The one producer's sequence is value - 1: it must follow the last record's.
            ok = z3.And(ok, z3.Or(r.leo == 0, pick(r.log_value, r.leo - 1) == value - 1))
        at = [z3.And(ok, r.leo == i) for i in range(self.dims.writes)]
        appended = r._replace(
            leo=z3.If(ok, r.leo + 1, r.leo),
            log_epoch=tuple(
                z3.If(a, view.leader_epoch, e) for a, e in zip(at, r.log_epoch, strict=True)
            ),
            log_value=tuple(z3.If(a, value, v) for a, v in zip(at, r.log_value, strict=True)),
        )
        after = self.advance_leader_hw(state, b, appended, ok)
        after = after._replace(budget=after.budget._replace(writes=num(value)))
        write = after.writes[value - 1]
        if config.acks == 1:
            write = write._replace(
                acked=ok,
                acked_offset=z3.If(ok, r.leo, write.acked_offset),
                acked_epoch=z3.If(ok, view.leader_epoch, write.acked_epoch),
            )
        elif config.acks == -1:
            write = write._replace(
                waiting=ok,
                broker=z3.If(ok, b, write.broker),
                leader_epoch=z3.If(ok, view.leader_epoch, write.leader_epoch),
                offset=z3.If(ok, r.leo, write.offset),
            )
        after = after._replace(writes=replace_at(after.writes, value - 1, write))
        return Option(Action("produce", b, 0), guard, after)

    def _fetch(self, state: SymState, b: int, leader: int) -> Option:
        """Follower b's fetch (or epoch lookup) to `leader`, answered on arrival."""
        config = self.config
        broker, target = state.brokers[b], state.brokers[leader]
        view, r = broker.view, broker.replica
        guard = z3.And(
            broker.alive,
            view.known,
            view.leader == leader,
            r.phase != IDLE,
            target.alive,
            z3.Not(broker.slots[leader].present),
        )
        lookup = r.phase == TRUNCATING
        epoch = view.leader_epoch
        offset = z3.If(lookup, UNKNOWN, r.leo)
        validates = config.truncation == "leader-epoch" and config.fetch_epoch_fencing
        fetched = last_fetched_epoch(r) if validates else num(UNKNOWN)
        last = z3.If(lookup, latest_epoch(r), fetched)
        lv, lr = target.view, target.replica
        error = z3.If(
            z3.Or(z3.Not(lv.known), lv.leader != leader),
            num(int(Errors.NOT_LEADER_OR_FOLLOWER)),
            ZERO,
        )
        if config.fetch_epoch_fencing:
            error = z3.If(
                error != 0,
                error,
                z3.If(
                    epoch < lv.leader_epoch,
                    num(int(Errors.FENCED_LEADER_EPOCH)),
                    z3.If(epoch > lv.leader_epoch, num(int(Errors.UNKNOWN_LEADER_EPOCH)), ZERO),
                ),
            )
        answered = error == 0
        end_epoch, end_offset = end_offset_for(lr, last)
        diverging = z3.And(
            answered,
            z3.Not(lookup),
            last != UNKNOWN,
            z3.Or(end_epoch < last, end_offset < offset),
        )
        out_of_range = z3.And(answered, z3.Not(lookup), z3.Not(diverging), offset > lr.leo)
        served = z3.And(answered, z3.Not(lookup), z3.Not(diverging), z3.Not(out_of_range))
        # The leader's side of a served fetch: follower position, ISR expansion, HW.
        now = state.budget.clock_advances
        follower_leo = replace_at(lr.follower_leo, b, z3.If(served, offset, lr.follower_leo[b]))
        caught_up = replace_at(
            lr.caught_up, b, z3.If(z3.And(served, offset >= lr.leo), now, lr.caught_up[b])
        )
        lr = lr._replace(follower_leo=follower_leo, caught_up=caught_up)
        after = with_replica(state, leader, lr)
        ctrl = after.controller
        joins = z3.And(
            served,
            z3.Not(lv.isr[b]),
            z3.Not(ctrl.fenced[b]),
            self.may_join_isr(lr, offset),
            self.alter_partition_accepted(after, leader),
        )
        isr, elr = self.isr_after_addition(ctrl.isr, ctrl.elr, b)
        after = self.commit_isr_change(after, leader, isr, elr, joins)
        after = self.advance_leader_hw(after, leader, lr, served)
        answered_lookup = z3.And(answered, lookup)
        slot = Slot(
            present=z3.BoolVal(True),
            lookup=lookup,
            epoch=epoch,
            offset=z3.If(answered_lookup, end_offset, z3.If(diverging, end_offset, offset)),
            last_epoch=z3.If(
                z3.Or(answered_lookup, diverging),
                end_epoch,
                z3.If(served, UNKNOWN, last),
            ),
            error=z3.If(out_of_range, int(Errors.OFFSET_OUT_OF_RANGE), error),
            log_epoch=lr.log_epoch,
            log_value=lr.log_value,
            leader_hw=z3.If(served, after.brokers[leader].replica.hw, 0),
            leader_leo=z3.If(z3.Or(diverging, out_of_range, served), lr.leo, 0),
            diverging=diverging,
        )
        follower = after.brokers[b]
        follower = follower._replace(slots=replace_at(follower.slots, leader, slot))
        return Option(Action("fetch", b, 0), guard, with_broker(after, b, follower))

    def _handle_response(self, state: SymState, b: int, leader: int) -> Option:
        config = self.config
        broker = state.brokers[b]
        view, r, message = broker.view, broker.replica, broker.slots[leader]
        guard = z3.And(broker.alive, message.present)
        idle = z3.Or(z3.Not(view.known), view.leader == b, view.leader == NO_LEADER)
        stale = z3.Or(view.leader != leader, message.epoch != view.leader_epoch)
        ignored = z3.Or(idle, stale) if config.fetch_epoch_fencing else idle
        lookup = z3.And(z3.Not(ignored), message.lookup, message.error == 0, z3.Not(stale))
        fetch = z3.And(z3.Not(ignored), z3.Not(message.lookup))
        out_of_range = z3.And(fetch, message.error == int(Errors.OFFSET_OUT_OF_RANGE))
        fine = z3.And(fetch, message.error == 0)
        diverging = z3.And(fine, message.diverging)
        divergence = divergence_truncation_offset(r, message.last_epoch, message.offset)
        if config.truncation == "kip-101":
            lookup_end = z3.If(message.offset >= 0, smin(message.offset, r.leo), 0)
            lookup_phase: Num = num(FETCHING)
        else:
            lookup_end = divergence
            lookup_phase = z3.If(divergence == r.leo, num(FETCHING), num(TRUNCATING))
        end = z3.If(
            lookup,
            lookup_end,
            z3.If(
                out_of_range,
                smin(r.leo, message.leader_leo),
                z3.If(diverging, divergence, r.leo),
            ),
        )
        truncated = truncate(r, end)
        truncated = truncated._replace(phase=z3.If(lookup, lookup_phase, r.phase))
        appends = z3.And(fine, z3.Not(message.diverging), message.offset == r.leo)
        new = [z3.And(appends, i >= r.leo) for i in range(self.dims.writes)]
        grown = truncated._replace(
            leo=z3.If(appends, message.leader_leo, truncated.leo),
            log_epoch=tuple(
                z3.If(a, m, e) for a, m, e in zip(new, message.log_epoch, r.log_epoch, strict=True)
            ),
            log_value=tuple(
                z3.If(a, m, v) for a, m, v in zip(new, message.log_value, r.log_value, strict=True)
            ),
            hw=z3.If(appends, smin(message.leader_hw, message.leader_leo), truncated.hw),
        )
        for i in range(self.dims.writes):
            record_epoch = message.log_epoch[i]
            learns = z3.And(
                new[i],
                i < message.leader_leo,
                z3.Or(grown.epochs_count == 0, record_epoch > latest_epoch(grown)),
            )
            grown = append_entry(grown, learns, record_epoch, num(i))
        slot = message._replace(present=z3.BoolVal(False))
        broker = broker._replace(replica=grown, slots=replace_at(broker.slots, leader, slot))
        return Option(Action("handle_response", b, 0, leader), guard, with_broker(state, b, broker))

    def _shrink_isr(self, state: SymState, b: int, follower: int) -> Option:
        broker = state.brokers[b]
        view = broker.view
        guard = z3.And(
            broker.alive,
            view.known,
            view.leader == b,
            view.isr[follower],
            out_of_sync(broker.replica, follower, state.budget.clock_advances),
            self.alter_partition_accepted(state, b),
        )
        ctrl = state.controller
        isr, elr = self.isr_after_removal(ctrl.isr, ctrl.elr, follower)
        after = self.commit_isr_change(state, b, isr, elr, z3.BoolVal(True))
        after = self.advance_leader_hw(after, b, after.brokers[b].replica, z3.BoolVal(True))
        return Option(Action("shrink_isr", b, 0, follower), guard, after)

    def _deliver(self, state: SymState, b: int) -> Option:
        ctrl = state.controller
        broker = state.brokers[b]
        old = broker.view
        is_leader = ctrl.leader == b
        new = View(
            z3.BoolVal(True),
            ctrl.leader,
            ctrl.leader_epoch,
            z3.If(is_leader, ctrl.partition_epoch, UNKNOWN),
            tuple(z3.And(is_leader, member) for member in ctrl.isr),
        )
        stale = z3.Or(
            z3.Not(old.known),
            old.leader != new.leader,
            old.leader_epoch != new.leader_epoch,
            old.partition_epoch != new.partition_epoch,
            *(z3.Xor(a, c) for a, c in zip(old.isr, new.isr, strict=True)),
        )
        guard = z3.And(broker.alive, broker.registered, z3.Not(broker.cut), stale)
        role_changed = z3.Or(
            z3.Not(old.known), old.leader_epoch != new.leader_epoch, old.leader != new.leader
        )
        after = broker._replace(view=new)
        if self.replicas[b]:
            become = self._become(broker.replica, is_leader, ctrl, state.budget.clock_advances)
            after = after._replace(replica=choose(role_changed, become, broker.replica))
            if self.config.fetch_epoch_fencing:
                after = after._replace(
                    slots=tuple(
                        None
                        if s is None
                        else s._replace(present=z3.And(s.present, z3.Not(role_changed)))
                        for s in after.slots
                    )
                )
        return Option(Action("deliver", b), guard, with_broker(state, b, after))

    def _become(self, r: Replica, is_leader: Flag, ctrl: Controller, now: Num) -> Replica:
        """makeLeader / makeFollower on a new leader epoch."""
        config = self.config
        n = self.dims.brokers
        follows = z3.And(z3.Not(is_leader), ctrl.leader != NO_LEADER)
        if config.truncation == "high-watermark":
            r = truncate(r, z3.If(follows, r.hw, r.leo))
            follower_phase = FETCHING
        elif config.truncation == "leader-epoch" and config.fetch_epoch_fencing:
            follower_phase = FETCHING
        else:
            follower_phase = TRUNCATING
        r = append_entry(
            r, z3.And(is_leader, latest_epoch(r) < ctrl.leader_epoch), ctrl.leader_epoch, r.leo
        )
        return r._replace(
            phase=z3.If(follows, num(follower_phase), num(IDLE)),
            follower_leo=(num(UNKNOWN),) * n,
            caught_up=tuple(z3.If(is_leader, now, 0) for _ in range(n)),
        )

    def _fence(self, state: SymState, b: int, successor: int) -> Option:
        """The controller fences b; with a successor, it also elects it (one KRaft batch)."""
        ctrl = state.controller
        broker = state.brokers[b]
        guard = z3.And(z3.Not(ctrl.fenced[b]), z3.Or(z3.Not(broker.alive), broker.cut))
        after = self.remove_from_partitions(state, b)
        fenced = after.controller._replace(fenced=replace_at(ctrl.fenced, b, z3.BoolVal(True)))
        after = after._replace(controller=fenced)
        led = ctrl.leader == b
        can_elect = state.budget.elections < self.scope.max_elections
        candidates, _ = self.election_candidates(fenced)
        if successor == NO_LEADER:
            guard = z3.And(guard, z3.Or(z3.Not(led), z3.Not(can_elect), z3.Not(any_of(candidates))))
            return Option(Action("fence", b), guard, after)
        guard = z3.And(guard, led, can_elect, candidates[successor])
        return Option(Action("fence", b, 0, successor), guard, self.elect(after, successor))

    def _register(self, state: SymState, b: int) -> Option:
        broker = state.brokers[b]
        guard = z3.And(
            broker.alive,
            z3.Not(broker.cut),
            z3.Or(z3.Not(broker.registered), state.controller.fenced[b]),
        )
        return Option(Action("register", b), guard, self.register(state, b))

    def _elect(self, state: SymState, c: int) -> Option:
        candidates, _ = self.election_candidates(state.controller)
        guard = z3.And(state.budget.elections < self.scope.max_elections, candidates[c])
        return Option(Action("elect", -1, 0, c), guard, self.elect(state, c))

    def _crash(self, state: SymState, b: int, kind: int) -> Option:
        scope, budget = self.scope, state.budget
        broker = state.brokers[b]
        lossy = kind != KILL
        guard = z3.And(broker.alive, budget.crashes < scope.max_crashes)
        if lossy:
            guard = z3.And(guard, budget.data_loss_crashes < scope.max_data_loss_crashes)
        n = self.dims.brokers
        r = broker.replica._replace(
            phase=num(IDLE),
            follower_leo=(num(UNKNOWN),) * n,
            caught_up=(ZERO,) * n,
        )
        if kind == DISK:
            zero = ZERO
            r = r._replace(leo=zero, hw=zero, epochs_count=zero)
        broker = broker._replace(
            alive=z3.BoolVal(False),
            registered=z3.BoolVal(False),
            unclean=z3.Or(broker.unclean, lossy),
            view=broker.view._replace(known=z3.BoolVal(False)),
            replica=r,
        )
        budget = budget._replace(
            crashes=budget.crashes + 1,
            data_loss_crashes=budget.data_loss_crashes + 1 if lossy else budget.data_loss_crashes,
        )
        after = with_broker(state._replace(budget=budget), b, broker)
        return Option(Action("crash", b, -1, kind), guard, _drop_messages(after, b))

    def _restart(self, state: SymState, b: int) -> Option:
        broker = state.brokers[b]
        alive = with_broker(state, b, broker._replace(alive=z3.BoolVal(True)))
        after = choose(broker.cut, alive, self.register(alive, b))
        return Option(Action("restart", b), z3.Not(broker.alive), after)

    def _cut_controller(self, state: SymState, b: int) -> Option:
        budget, broker = state.budget, state.brokers[b]
        guard = z3.And(budget.network_changes < self.scope.max_network_changes, z3.Not(broker.cut))
        after = with_broker(state, b, broker._replace(cut=z3.BoolVal(True)))
        after = after._replace(budget=budget._replace(network_changes=budget.network_changes + 1))
        return Option(Action("cut_controller", b), guard, after)

    def _heal(self, state: SymState) -> Option:
        guard = any_of(broker.cut for broker in state.brokers)
        brokers = tuple(broker._replace(cut=z3.BoolVal(False)) for broker in state.brokers)
        return Option(Action("heal"), guard, state._replace(brokers=brokers))

    def _tick(self, state: SymState) -> Option:
        budget = state.budget
        now = budget.clock_advances
        lagging = []
        for b, broker in enumerate(state.brokers):
            r = broker.replica
            for f in range(self.dims.brokers):
                if f != b:
                    lagging.append(
                        z3.And(
                            self.leads(broker, b),
                            broker.view.isr[f],
                            r.follower_leo[f] != r.leo,
                            z3.Not(out_of_sync(r, f, now)),
                        )
                    )
        guard = z3.And(now < self.scope.max_clock_advances, any_of(lagging))
        after = state._replace(budget=budget._replace(clock_advances=now + 1))
        return Option(Action("tick"), guard, after)

    # --- after every step -----------------------------------------------------------------

    def complete_produces(self, state: SymState) -> SymState:
        """machine._complete_produces: a waiting acks=all produce is dropped when its
        leader moved on, acknowledged once the HW passed it with enough ISR members."""
        if self.config.acks != -1:
            return state
        writes = []
        for write in state.writes:
            dropped, passed = [], []
            for b, broker in enumerate(state.brokers):
                view = broker.view
                moved_on = z3.Or(
                    z3.Not(view.known), view.leader != b, view.leader_epoch != write.leader_epoch
                )
                past = broker.replica.hw > write.offset
                enough = size(view.isr) >= self.config.min_insync_replicas
                dropped.append(z3.Or(moved_on, z3.And(past, z3.Not(enough))))
                passed.append(z3.And(z3.Not(moved_on), past, enough))
            gone = z3.And(write.waiting, pick(tuple(dropped), write.broker))
            acked = z3.And(write.waiting, pick(tuple(passed), write.broker))
            writes.append(
                write._replace(
                    waiting=z3.And(write.waiting, z3.Not(gone), z3.Not(acked)),
                    acked=z3.Or(write.acked, acked),
                    acked_offset=z3.If(acked, write.offset, write.acked_offset),
                    acked_epoch=z3.If(acked, write.leader_epoch, write.acked_epoch),
                )
            )
        return state._replace(writes=tuple(writes))


def _drop_messages(state: SymState, b: int) -> SymState:
    """Responses to or from a crashed broker are lost."""
    brokers = []
    for x, broker in enumerate(state.brokers):
        slots = tuple(
            None if s is None else s._replace(present=z3.And(s.present, x != b, y != b))
            for y, s in enumerate(broker.slots)
        )
        brokers.append(broker._replace(slots=slots))
    return state._replace(brokers=tuple(brokers))
