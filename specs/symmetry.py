"""Symmetry reduction over broker ids: relabel brokers into a canonical order.

Brokers that hold every partition are interchangeable, so a state and its relabeling
are the same situation. `canonical` sorts brokers by what they hold (ties keep their
order), which picks one member of the orbit deterministically: sound (it never merges
states that differ) though not every orbit collapses to one representative.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from operator import itemgetter

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


@dataclass(frozen=True)
class _Relabeling:
    """Everything `permute` needs for one perm, computed once: broker ids (with -1, no
    broker, kept as it is), a C-level row reordering and every mask's image."""

    ids: tuple[int, ...]  # ids[b] = perm[b]; ids[-1] = -1 (the extra last entry)
    row: Callable[[tuple], tuple]
    masks: tuple[int, ...]  # at most 2**8 of them


@cache
def _relabeling(perm: Perm) -> _Relabeling:
    row = itemgetter(*inverse(perm)) if len(perm) > 1 else tuple
    masks = tuple(permute_mask(mask, perm) for mask in range(1 << len(perm)))
    return _Relabeling((*perm, -1), row, masks)


def _permute_id(broker: int, perm: Perm) -> int:
    return perm[broker] if broker >= 0 else broker


def _message_leader(message: Message) -> int:
    return message.leader


def permute(state: State, perm: Perm) -> State:
    # Plain loops rather than generator expressions: a permuted state costs as much as
    # a few transitions, and one in ten transitions needs one.
    relabel = _relabeling(perm)
    ids, row, masks = relabel.ids, relabel.row, relabel.masks
    replicas = []
    for owned in state.replicas:
        moved = []
        for r in owned:
            moved.append(
                r._replace(follower_leo=row(r.follower_leo), caught_up_ms=row(r.caught_up_ms))
            )
        replicas.append(tuple(moved))
    brokers = []
    for broker in state.brokers:
        views: list[View | None] = []
        for v in broker.views:
            views.append(None if v is None else v._replace(leader=ids[v.leader], isr=masks[v.isr]))
        brokers.append(broker._replace(views=tuple(views)))
    ctrl = state.controller
    partitions = []
    for reg in ctrl.partitions:
        partitions.append(
            reg._replace(
                leader=ids[reg.leader],
                last_leader=ids[reg.last_leader],
                isr=masks[reg.isr],
                elr=masks[reg.elr],
            )
        )
    slots = []
    for row_slots in state.slots:
        moved_slots = []
        for messages in row_slots:
            if messages:
                messages = tuple(
                    sorted(
                        [m._replace(leader=ids[m.leader]) for m in messages], key=_message_leader
                    )
                )
            moved_slots.append(messages)
        slots.append(tuple(moved_slots))
    purgatory = state.purgatory
    if purgatory:
        purgatory = tuple([e._replace(broker=ids[e.broker]) for e in purgatory])
    return state._replace(
        replicas=row(tuple(replicas)),
        brokers=row(tuple(brokers)),
        controller=ctrl._replace(partitions=tuple(partitions), fenced=masks[ctrl.fenced]),
        isolated=masks[state.isolated],
        controller_cut=masks[state.controller_cut],
        slots=row(tuple(slots)),
        purgatory=purgatory,
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


def broker_keys(state: State) -> list[tuple[int, tuple[Replica, ...]]]:
    """What each broker holds and how the controller and network see it (`_roles`),
    then its replicas. Ids inside (follower positions, view leaders) are not relabeled
    here: ties only cost reduction."""
    return list(zip(_roles(state), state.replicas, strict=True))


def _roles(state: State) -> list[int]:
    """Per broker: its flags (alive, registered, unclean), network bits and role in each
    partition (leader, ISR, ELR), packed into one int of fixed-width fields, which
    orders like the tuple of those fields and is cheaper to build and compare.

    They depend on the brokers, the controller and the network only, which most
    transitions leave alone, so the last answer is kept: identity tests on tuples the
    cache keeps alive are exact.
    """
    brokers, ctrl = state.brokers, state.controller
    isolated, cut = state.isolated, state.controller_cut
    last = _last_roles
    if brokers is last[0] and ctrl is last[1] and isolated == last[2] and cut == last[3]:
        return last[4]
    fenced, partitions = ctrl.fenced, ctrl.partitions
    roles = []
    for b, (alive, registered, unclean, _) in enumerate(brokers):
        small = (alive << 2 | registered << 1 | unclean) << 3
        small |= (fenced >> b & 1) | (isolated >> b & 1) << 1 | (cut >> b & 1) << 2
        for reg in partitions:
            small = small << 3 | (reg[0] == b) << 2 | (reg[3] >> b & 1) << 1 | (reg[4] >> b & 1)
        roles.append(small)
    last[:] = [brokers, ctrl, isolated, cut, roles]
    return roles


_last_roles: list = [None, None, 0, 0, []]
_IDENTITY = {n: tuple(range(n)) for n in range(1, 9)}


def canonical(state: State) -> tuple[State, Perm]:
    """(canonical state, perm) with canonical == permute(state, perm)."""
    roles = _roles(state)
    replicas = state.replicas
    n = len(roles)
    for b in range(n - 1):
        # Compare (role, replicas) keys, building no tuple: roles settle most pairs.
        if roles[b] < roles[b + 1]:
            continue
        if roles[b] == roles[b + 1] and replicas[b] <= replicas[b + 1]:
            continue
        break
    else:
        # Already in order (most states are): a stable sort would give the identity.
        return state, _IDENTITY[n]
    keys = list(zip(roles, replicas, strict=True))
    order = tuple(sorted(range(n), key=keys.__getitem__))
    perm = inverse(order)
    return permute(state, perm), perm
