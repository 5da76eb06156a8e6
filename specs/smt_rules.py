"""The replication rules of `model/rules.py` as z3 terms over `specs.smt_state` trees.

Each function here mirrors the model function of the same name and must keep its
meaning: the tests step both on random states and compare, and every counterexample is
replayed in the model. Broker ids are always Python ints (one option per broker or pair
of brokers), so only offsets, epochs and flags are symbolic.
"""

from __future__ import annotations

from typing import Any

import z3

from model.config import Config
from model.machine import MAX_IN_FLIGHT, ReplicationModel
from model.state import NO_LEADER, POWER, UNKNOWN
from specs.smt_state import (
    Broker,
    Controller,
    Dims,
    Flag,
    Num,
    Replica,
    SymState,
    Unsupported,
    abstract,
    leaves,
    num,
    rebuild,
)

ZERO, ONE = num(0), num(1)


# --- small term helpers ------------------------------------------------------------------


def smin(a: Num, b: Num) -> Num:
    return z3.If(a <= b, a, b)


def smax(a: Num, b: Num) -> Num:
    return z3.If(a >= b, a, b)


def pick(items: tuple[Any, ...], index: Num) -> Any:
    """items[index] for a symbolic index (the last item when it is out of range)."""
    result = items[-1]
    for i in range(len(items) - 2, -1, -1):
        result = z3.If(index == i, items[i], result)
    return result


def size(flags: tuple[Flag, ...]) -> Num:
    return z3.Sum([z3.If(f, ONE, ZERO) for f in flags])


def any_of(flags: Any) -> Flag:
    flags = list(flags)
    return z3.Or(flags) if flags else z3.BoolVal(False)


def choose(condition: Flag, then: Any, otherwise: Any) -> Any:
    """Leaf-wise If over two trees of one shape (leaves that are the same term stay)."""
    values = (
        b if a.eq(b) else z3.If(condition, a, b)
        for a, b in zip(leaves(then), leaves(otherwise), strict=True)
    )
    return rebuild(otherwise, values)


def replace_at(items: tuple, index: int, value: Any) -> tuple:
    return (*items[:index], value, *items[index + 1 :])


def with_broker(state: SymState, b: int, broker: Broker) -> SymState:
    return state._replace(brokers=replace_at(state.brokers, b, broker))


def with_replica(state: SymState, b: int, replica: Replica) -> SymState:
    return with_broker(state, b, state.brokers[b]._replace(replica=replica))


# --- rules (model/rules.py) ----------------------------------------------------------


def latest_epoch(r: Replica) -> Num:
    return z3.If(r.epochs_count == 0, -1, pick(r.epoch_ids, r.epochs_count - 1))


def last_fetched_epoch(r: Replica) -> Num:
    return z3.If(r.leo == 0, -1, pick(r.log_epoch, r.leo - 1))


def end_offset_for(r: Replica, epoch: Num) -> tuple[Num, Num]:
    """LeaderEpochFileCache.endOffsetFor over the replica's cache and LEO."""
    latest = pick(r.epoch_ids, r.epochs_count - 1)
    older_epoch, older_offset = num(UNKNOWN), num(UNKNOWN)
    for j in reversed(range(len(r.epoch_ids))):
        later = z3.And(j < r.epochs_count, r.epoch_ids[j] > epoch)
        floor = epoch if j == 0 else r.epoch_ids[j - 1]
        older_epoch = z3.If(later, floor, older_epoch)
        older_offset = z3.If(later, r.epoch_starts[j], older_offset)
    undefined = z3.Or(r.epochs_count == 0, epoch < 0, epoch > latest)
    current = epoch == latest
    return (
        z3.If(undefined, UNKNOWN, z3.If(current, latest, older_epoch)),
        z3.If(undefined, UNKNOWN, z3.If(current, r.leo, older_offset)),
    )


def truncate(r: Replica, end: Num) -> Replica:
    """rules.truncate: an end at or past the LEO changes nothing."""
    keep = end >= r.leo
    entries = z3.Sum(
        [
            z3.If(z3.And(i < r.epochs_count, r.epoch_starts[i] < end), ONE, ZERO)
            for i in range(len(r.epoch_starts))
        ]
    )
    return r._replace(
        leo=z3.If(keep, r.leo, end),
        hw=z3.If(keep, r.hw, smin(r.hw, end)),
        epochs_count=z3.If(keep, r.epochs_count, entries),
    )


def divergence_truncation_offset(r: Replica, epoch: Num, offset: Num) -> Num:
    own_epoch, own_offset = end_offset_for(r, epoch)
    return z3.If(
        offset < 0,
        smin(r.hw, r.leo),
        z3.If(
            own_offset < 0,
            smin(offset, r.leo),
            z3.If(
                own_epoch != epoch, smin(own_offset, r.leo), smin(smin(offset, own_offset), r.leo)
            ),
        ),
    )


def append_entry(r: Replica, condition: Flag, epoch: Num, start: Num) -> Replica:
    at = r.epochs_count
    return r._replace(
        epochs_count=z3.If(condition, at + 1, at),
        epoch_ids=tuple(
            z3.If(z3.And(condition, at == j), epoch, e) for j, e in enumerate(r.epoch_ids)
        ),
        epoch_starts=tuple(
            z3.If(z3.And(condition, at == j), start, s) for j, s in enumerate(r.epoch_starts)
        ),
    )


def out_of_sync(r: Replica, follower: int, now: Num) -> Flag:
    """rules.follower_out_of_sync; with time in clock advances of lag + 1 ms each, "more
    than the lag ago" is "at an earlier advance"."""
    return z3.And(r.follower_leo[follower] != r.leo, r.caught_up[follower] < now)


class Rules:
    """The rules that depend on the Config, and the state changes several actions share."""

    def __init__(self, model: ReplicationModel) -> None:
        check_supported(model)
        self.model = model
        self.config: Config = model.config
        self.scope = model.scope
        self.dims = Dims.of(model)
        self.replicas = tuple(
            bool(model.replica_masks[0] >> b & 1) for b in range(self.dims.brokers)
        )

    def initial(self) -> SymState:
        return abstract(self.model.initial_state(), self.dims)

    # --- rules that depend on the Config ------------------------------------------------

    def leader_high_watermark(self, r: Replica, leader: int, isr: tuple[Flag, ...]) -> Num:
        config = self.config
        candidate = r.leo
        for f, member in enumerate(isr):
            if f != leader:
                leo = r.follower_leo[f]
                candidate = z3.If(z3.And(member, leo < candidate), leo, candidate)
        advanced = smax(candidate, r.hw)
        if not config.hw_min_isr_guard:
            return advanced
        needed = min(config.min_insync_replicas, config.replication_factor)
        return z3.If(size(isr) < needed, r.hw, advanced)

    def may_join_isr(self, r: Replica, follower_leo: Num) -> Flag:
        if self.config.isr_expand != "epoch-start":
            return follower_leo >= r.hw
        epoch_start = pick(r.epoch_starts, r.epochs_count - 1)
        return z3.And(follower_leo >= r.hw, z3.Or(r.epochs_count == 0, follower_leo >= epoch_start))

    def isr_after_removal(
        self, isr: tuple[Flag, ...], elr: tuple[Flag, ...], b: int
    ) -> tuple[tuple[Flag, ...], tuple[Flag, ...]]:
        remaining = replace_at(isr, b, z3.BoolVal(False))
        if self.config.elr:
            below = z3.And(isr[b], size(remaining) < self.config.min_insync_replicas)
            return remaining, replace_at(elr, b, z3.Or(elr[b], below))
        return replace_at(isr, b, z3.And(isr[b], z3.Not(any_of(remaining)))), elr

    def isr_after_addition(
        self, isr: tuple[Flag, ...], elr: tuple[Flag, ...], b: int
    ) -> tuple[tuple[Flag, ...], tuple[Flag, ...]]:
        isr = replace_at(isr, b, z3.BoolVal(True))
        full = size(isr) >= self.config.min_insync_replicas
        return isr, tuple(
            z3.BoolVal(False) if x == b else z3.And(e, z3.Not(full)) for x, e in enumerate(elr)
        )

    def election_candidates(self, ctrl: Controller) -> tuple[tuple[Flag, ...], Flag]:
        """rules.election_candidates: (who may lead, whether that choice is clean)."""
        n = self.dims.brokers
        unfenced = [z3.And(self.replicas[x], z3.Not(ctrl.fenced[x])) for x in range(n)]
        online = ctrl.leader != NO_LEADER
        from_isr = [z3.And(ctrl.isr[x], unfenced[x]) for x in range(n)]
        has_isr = any_of(from_isr)
        unclean = self.config.unclean_leader_election_enable
        fallback = unfenced if unclean else [z3.BoolVal(False)] * n
        if self.config.elr:
            from_elr = [z3.And(ctrl.elr[x], unfenced[x]) for x in range(n)]
            nobody = z3.Not(z3.Or(any_of(ctrl.isr), any_of(ctrl.elr)))
            last = [z3.And(nobody, ctrl.last_leader == x, unfenced[x]) for x in range(n)]
            fallback = [
                z3.If(any_of(from_elr), from_elr[x], z3.If(any_of(last), last[x], fallback[x]))
                for x in range(n)
            ]
        candidates = tuple(
            z3.If(
                online,
                z3.And(from_isr[x], ctrl.leader != x),
                z3.If(has_isr, from_isr[x], fallback[x]),
            )
            for x in range(n)
        )
        return candidates, z3.Or(online, has_isr)

    # --- helpers shared by actions (machine.py) -----------------------------------------

    def leads(self, broker: Broker, b: int) -> Flag:
        return z3.And(broker.alive, broker.view.known, broker.view.leader == b)

    def alter_partition_accepted(self, state: SymState, leader: int) -> Flag:
        ctrl, broker = state.controller, state.brokers[leader]
        view = broker.view
        return z3.And(
            view.known,
            ctrl.leader == leader,
            ctrl.leader_epoch == view.leader_epoch,
            ctrl.partition_epoch == view.partition_epoch,
            z3.Not(broker.cut),
        )

    def commit_isr_change(
        self,
        state: SymState,
        leader: int,
        isr: tuple[Flag, ...],
        elr: tuple[Flag, ...],
        when: Flag,
    ) -> SymState:
        ctrl = state.controller
        changed = ctrl._replace(isr=isr, elr=elr, partition_epoch=ctrl.partition_epoch + 1)
        broker = state.brokers[leader]
        view = broker.view._replace(isr=isr, partition_epoch=ctrl.partition_epoch + 1)
        after = with_broker(state._replace(controller=changed), leader, broker._replace(view=view))
        return choose(when, after, state)

    def advance_leader_hw(self, state: SymState, leader: int, r: Replica, when: Flag) -> SymState:
        """Set the leader's replica to `r` and, `when` true, move its HW (recording newly
        committed records with the leader's epoch)."""
        view = state.brokers[leader].view
        hw = self.leader_high_watermark(r, leader, view.isr)
        moved = z3.And(when, hw != r.hw)
        count = state.committed_count
        grows = z3.And(moved, hw > count)
        fresh = [z3.And(grows, o >= count, o < hw) for o in range(self.dims.writes)]
        state = state._replace(
            committed_count=z3.If(grows, hw, count),
            committed_value=tuple(
                z3.If(f, r.log_value[o], v)
                for o, (f, v) in enumerate(zip(fresh, state.committed_value, strict=True))
            ),
            committed_epoch=tuple(
                z3.If(f, view.leader_epoch, e)
                for f, e in zip(fresh, state.committed_epoch, strict=True)
            ),
        )
        return with_replica(state, leader, r._replace(hw=z3.If(moved, hw, r.hw)))

    def remove_from_partitions(self, state: SymState, b: int) -> SymState:
        ctrl = state.controller
        isr, elr = self.isr_after_removal(ctrl.isr, ctrl.elr, b)
        led = ctrl.leader == b
        changed = z3.Or(led, z3.Xor(isr[b], ctrl.isr[b]), z3.Xor(elr[b], ctrl.elr[b]))
        return state._replace(
            controller=ctrl._replace(
                isr=isr,
                elr=elr,
                leader=z3.If(led, NO_LEADER, ctrl.leader),
                leader_epoch=z3.If(led, ctrl.leader_epoch + 1, ctrl.leader_epoch),
                partition_epoch=z3.If(changed, ctrl.partition_epoch + 1, ctrl.partition_epoch),
            )
        )

    def elect(self, state: SymState, c: int) -> SymState:
        ctrl = state.controller
        _, clean = self.election_candidates(ctrl)
        alone = tuple(z3.BoolVal(x == c) for x in range(self.dims.brokers))
        without = replace_at(ctrl.elr, c, z3.BoolVal(False))
        ctrl = ctrl._replace(
            leader=num(c),
            leader_epoch=ctrl.leader_epoch + 1,
            partition_epoch=ctrl.partition_epoch + 1,
            isr=tuple(z3.If(clean, a, b) for a, b in zip(ctrl.isr, alone, strict=True)),
            elr=tuple(z3.If(clean, a, b) for a, b in zip(ctrl.elr, without, strict=True)),
            last_leader=num(c),
        )
        budget = state.budget._replace(elections=state.budget.elections + 1)
        return state._replace(controller=ctrl, budget=budget)

    def register(self, state: SymState, b: int) -> SymState:
        fenced = state.controller.fenced[b]
        state = choose(fenced, state, self.remove_from_partitions(state, b))
        ctrl = state.controller
        broker = state.brokers[b]
        if self.config.elr:
            drop = z3.And(broker.unclean, z3.Or(ctrl.isr[b], ctrl.elr[b]))
            ctrl = ctrl._replace(
                isr=replace_at(ctrl.isr, b, z3.And(ctrl.isr[b], z3.Not(drop))),
                elr=replace_at(ctrl.elr, b, z3.And(ctrl.elr[b], z3.Not(drop))),
                partition_epoch=z3.If(drop, ctrl.partition_epoch + 1, ctrl.partition_epoch),
            )
        ctrl = ctrl._replace(fenced=replace_at(ctrl.fenced, b, z3.BoolVal(False)))
        broker = broker._replace(registered=z3.BoolVal(True), unclean=z3.BoolVal(False))
        return with_broker(state._replace(controller=ctrl), b, broker)


def check_supported(model: ReplicationModel) -> None:
    """The encoding covers one partition, crashes that keep or lose the whole disk, cuts
    from the controller, the clock and new writes; not power loss (fsync), isolation,
    producer retries, consumers, consumer groups, or more writes than the producer may
    have in flight (its pending list is not encoded, so that limit must never bind)."""
    scope = model.scope
    problems = []
    if scope.partitions != 1:
        problems.append("more than one partition")
    if scope.max_retries:
        problems.append("producer retries (--max-retries 0)")
    if scope.consumers:
        problems.append("consumers (ConsistentRead)")
    if scope.groups:
        problems.append("consumer groups or retention")
    if scope.max_writes > MAX_IN_FLIGHT:
        problems.append(f"more than {MAX_IN_FLIGHT} writes")
    crashes = scope.max_crashes > 0
    if crashes and scope.max_data_loss_crashes > 0 and POWER in model.crash_kinds:
        problems.append("power-loss crashes (--crash-kinds kill,disk)")
    if scope.max_network_changes > 0 and "isolate" in scope.network_faults:
        problems.append("isolated brokers (--network-faults controller)")
    if problems:
        raise Unsupported("the SMT engine does not encode " + ", ".join(problems))
