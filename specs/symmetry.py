"""Symmetry reduction over broker ids: relabel brokers into a canonical order.

Brokers that hold every partition are interchangeable, so a state and its relabeling
are the same situation. `canonical` sorts brokers by what they hold (ties keep their
order), which picks one member of the orbit deterministically: sound (it never merges
states that differ) though not every orbit collapses to one representative.
"""

from __future__ import annotations

from model.machine import Action
from model.state import Message, Replica, State, View

Perm = tuple[int, ...]  # perm[old id] = new id


def permute_mask(mask: int, perm: Perm) -> int:
    out = 0
    broker = 0
    while mask:
        if mask & 1:
            out |= 1 << perm[broker]
        mask >>= 1
        broker += 1
    return out


def _permute_row(items: tuple, perm: Perm) -> tuple:
    out = list(items)
    for old, new in enumerate(perm):
        out[new] = items[old]
    return tuple(out)


def _permute_id(broker: int, perm: Perm) -> int:
    return perm[broker] if broker >= 0 else broker


def _permute_replica(replica: Replica, perm: Perm) -> Replica:
    return replica._replace(
        follower_leo=_permute_row(replica.follower_leo, perm),
        caught_up_ms=_permute_row(replica.caught_up_ms, perm),
    )


def _permute_view(view: View | None, perm: Perm) -> View | None:
    if view is None:
        return None
    return view._replace(leader=_permute_id(view.leader, perm), isr=permute_mask(view.isr, perm))


def _permute_messages(messages: tuple[Message, ...], perm: Perm) -> tuple[Message, ...]:
    if not messages:
        return messages
    moved = (m._replace(leader=perm[m.leader]) for m in messages)
    return tuple(sorted(moved, key=lambda m: m.leader))


def permute(state: State, perm: Perm) -> State:
    replicas = _permute_row(
        tuple(tuple(_permute_replica(r, perm) for r in row) for row in state.replicas), perm
    )
    brokers = _permute_row(
        tuple(
            b._replace(views=tuple(_permute_view(v, perm) for v in b.views)) for b in state.brokers
        ),
        perm,
    )
    ctrl = state.controller
    partitions = tuple(
        reg._replace(
            leader=_permute_id(reg.leader, perm),
            last_leader=_permute_id(reg.last_leader, perm),
            isr=permute_mask(reg.isr, perm),
            elr=permute_mask(reg.elr, perm),
        )
        for reg in ctrl.partitions
    )
    slots = _permute_row(
        tuple(tuple(_permute_messages(m, perm) for m in row) for row in state.slots), perm
    )
    return state._replace(
        replicas=replicas,
        brokers=brokers,
        controller=ctrl._replace(partitions=partitions, fenced=permute_mask(ctrl.fenced, perm)),
        isolated=permute_mask(state.isolated, perm),
        controller_cut=permute_mask(state.controller_cut, perm),
        slots=slots,
        purgatory=tuple(e._replace(broker=perm[e.broker]) for e in state.purgatory),
    )


def permute_action(action: Action, perm: Perm) -> Action:
    broker = _permute_id(action.broker, perm)
    arg = action.arg
    if action.kind in ("elect", "shrink_isr", "handle_response", "fence") and arg >= 0:
        arg = perm[arg]
    return action._replace(broker=broker, arg=arg)


def inverse(perm: Perm) -> Perm:
    out = [0] * len(perm)
    for old, new in enumerate(perm):
        out[new] = old
    return tuple(out)


def compose(first: Perm, then: Perm) -> Perm:
    """Apply `first`, then `then`."""
    return tuple(then[first[i]] for i in range(len(first)))


def _broker_key(state: State, b: int) -> tuple:
    """What broker b holds and how the controller and network see it. Ids inside
    (follower positions, view leaders) are not relabeled here: ties only cost reduction."""
    broker = state.brokers[b]
    ctrl = state.controller
    roles = 0
    for reg in ctrl.partitions:
        roles = roles << 3 | (reg.leader == b) << 2 | (reg.isr >> b & 1) << 1 | (reg.elr >> b & 1)
    network = (ctrl.fenced >> b & 1) | (state.isolated >> b & 1) << 1
    network |= (state.controller_cut >> b & 1) << 2
    return (broker.alive, broker.registered, broker.unclean, network, roles, state.replicas[b])


_IDENTITY = {n: tuple(range(n)) for n in range(1, 9)}


def canonical(state: State) -> tuple[State, Perm]:
    """(canonical state, perm) with canonical == permute(state, perm)."""
    n = len(state.brokers)
    keys = [_broker_key(state, b) for b in range(n)]
    order = tuple(sorted(range(n), key=keys.__getitem__))
    if order == _IDENTITY[n]:
        return state, order
    perm = inverse(order)
    return permute(state, perm), perm
