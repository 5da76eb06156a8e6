"""The named invariants of `specs/invariants.py` as z3 predicates over one step.

Each function returns a Bool that is true when the invariant is *violated* in `after`
(reached from `before`, None at the initial state), with the same meaning as its
namesake: a counterexample found here is replayed in the model and confirmed there.
"""

from __future__ import annotations

from collections.abc import Callable

import z3

from model.state import FETCHING
from specs.smt_rules import any_of, pick
from specs.smt_state import Broker, Flag, SymState

Violated = Callable[[SymState | None, SymState], Flag]


def _leads(broker: Broker, b: int) -> Flag:
    return z3.And(broker.alive, broker.view.known, broker.view.leader == b)


def _differ(a: Broker, b: Broker, offset: int) -> Flag:
    ra, rb = a.replica, b.replica
    return z3.Or(
        ra.log_epoch[offset] != rb.log_epoch[offset], ra.log_value[offset] != rb.log_value[offset]
    )


def leader_in_isr(before: SymState | None, after: SymState) -> Flag:
    ctrl = after.controller
    return any_of(z3.And(ctrl.leader == b, z3.Not(member)) for b, member in enumerate(ctrl.isr))


def one_leader_per_epoch(before: SymState | None, after: SymState) -> Flag:
    brokers = after.brokers
    return any_of(
        z3.And(
            _leads(brokers[a], a),
            _leads(brokers[b], b),
            brokers[a].view.leader_epoch == brokers[b].view.leader_epoch,
        )
        for a in range(len(brokers))
        for b in range(a + 1, len(brokers))
    )


def log_matching(before: SymState | None, after: SymState) -> Flag:
    brokers = after.brokers
    out = []
    for i in range(len(brokers)):
        for j in range(i + 1, len(brokers)):
            a, b = brokers[i].replica, brokers[j].replica
            for offset in range(len(a.log_epoch)):
                below = z3.And(offset < a.hw, offset < b.hw, offset < a.leo, offset < b.leo)
                out.append(z3.And(below, _differ(brokers[i], brokers[j], offset)))
    return any_of(out)


def high_watermark_monotonic(before: SymState | None, after: SymState) -> Flag:
    if before is None:
        return z3.BoolVal(False)
    out = []
    for b, (old, new) in enumerate(zip(before.brokers, after.brokers, strict=True)):
        out.append(
            z3.And(
                _leads(new, b),
                _leads(old, b),
                old.view.leader_epoch == new.view.leader_epoch,
                new.replica.hw < old.replica.hw,
            )
        )
    return any_of(out)


def leader_completeness(before: SymState | None, after: SymState) -> Flag:
    out = []
    for b, broker in enumerate(after.brokers):
        r = broker.replica
        for offset in range(len(after.committed_value)):
            out.append(
                z3.And(
                    _leads(broker, b),
                    offset < after.committed_count,
                    after.committed_epoch[offset] <= broker.view.leader_epoch,
                    z3.Or(offset >= r.leo, r.log_value[offset] != after.committed_value[offset]),
                )
            )
    return any_of(out)


def no_acknowledged_write_lost(before: SymState | None, after: SymState) -> Flag:
    out = []
    for index, write in enumerate(after.writes):
        for b, broker in enumerate(after.brokers):
            r = broker.replica
            out.append(
                z3.And(
                    write.acked,
                    _leads(broker, b),
                    broker.view.leader_epoch >= write.acked_epoch,
                    z3.Or(
                        write.acked_offset >= r.leo,
                        pick(r.log_value, write.acked_offset) != index + 1,
                    ),
                )
            )
    return any_of(out)


def consistent_read(before: SymState | None, after: SymState) -> Flag:
    """Only a consumer can see two values at one offset; the encoding has none."""
    return z3.BoolVal(False)


def no_divergence(before: SymState | None, after: SymState) -> Flag:
    brokers = after.brokers
    out = []
    for lead, leader in enumerate(brokers):
        lr = leader.replica
        for f, follower in enumerate(brokers):
            if f == lead:
                continue
            fr = follower.replica
            follows = z3.And(
                _leads(leader, lead),
                follower.alive,
                follower.view.known,
                follower.view.leader == lead,
                follower.view.leader_epoch == leader.view.leader_epoch,
                fr.phase == FETCHING,
            )
            for offset in range(len(lr.log_epoch)):
                below = z3.And(offset < lr.follower_leo[f], offset < fr.leo, offset < lr.leo)
                out.append(z3.And(follows, below, _differ(leader, follower, offset)))
    return any_of(out)


def _without_a_group(before: SymState | None, after: SymState) -> Flag:
    """The consumer-group invariants: `check_supported` refuses scopes with a consumer
    group or retention, and without one they cannot be violated."""
    return z3.BoolVal(False)


VIOLATED: dict[str, Violated] = {
    "LeaderInIsr": leader_in_isr,
    "OneLeaderPerEpoch": one_leader_per_epoch,
    "LogMatching": log_matching,
    "HighWatermarkMonotonic": high_watermark_monotonic,
    "LeaderCompleteness": leader_completeness,
    "NoAcknowledgedWriteLost": no_acknowledged_write_lost,
    "ConsistentRead": consistent_read,
    "NoDivergence": no_divergence,
    "NoSilentSkip": _without_a_group,
    "AtLeastOnce": _without_a_group,
    "AtMostOnce": _without_a_group,
    "OnePartitionOneOwner": _without_a_group,
}
