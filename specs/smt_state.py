"""The SMT engine's picture of a model state: the fields of `model.state` that the core
replication rules read, as trees of z3 terms with bounded arrays.

A tree is a NamedTuple (or tuple) whose leaves are z3 terms: Bool for flags and broker
sets, small bit-vectors for offsets, epochs and counters. The same tree types carry plain Python
values (a decoded SAT model, or the abstraction of a model `State`), so the two sides
can be compared field by field. Arrays have fixed capacity; a length field says how much
of each is meaningful, and `normalize` blanks the rest ("junk" the encoding may leave
behind) so that equal situations compare equal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import count
from typing import Any, NamedTuple

import z3

from model.machine import ReplicationModel
from model.state import (
    FETCH_RESPONSE,
    LOOKUP_RESPONSE,
    NO_LEADER,
    UNKNOWN,
    Message,
    State,
)
from model.state import Replica as ModelReplica
from model.state import View as ModelView

Num = Any  # a z3 bit-vector term, or a Python int in a concrete tree
Flag = Any  # a z3 Bool term, or a Python bool in a concrete tree


# Numbers are signed bit-vectors so that z3's incremental SAT solver (QF_FD) can
# bit-blast them; with integers it needs its general SMT core, about five times slower
# on these ite-heavy terms. Every number is an
# offset, epoch, counter or error code (at most 75); the fastest growing, leader and
# partition epochs, gain at most 2 per step, so MAX_DEPTH steps stay below 127.
NUM_BITS = 8
MAX_DEPTH = 50


def num(value: int) -> Num:
    return z3.BitVecVal(value, NUM_BITS)


class Slot(NamedTuple):
    """A response in flight to a follower from one leader (model.state.Message). Instead
    of `records` (the leader's log from the fetch offset) it keeps the leader's whole
    log as it answered: the records are log[offset:leader_leo]."""

    present: Flag
    lookup: Flag  # LOOKUP_RESPONSE, else FETCH_RESPONSE
    epoch: Num
    offset: Num
    last_epoch: Num
    error: Num
    log_epoch: tuple[Num, ...]
    log_value: tuple[Num, ...]
    leader_hw: Num
    leader_leo: Num
    diverging: Flag


class View(NamedTuple):
    known: Flag  # False: the model's view is None
    leader: Num
    leader_epoch: Num
    partition_epoch: Num
    isr: tuple[Flag, ...]


class Replica(NamedTuple):
    """A record is (leader epoch, value); the producer fields are implied by the value."""

    leo: Num
    hw: Num
    log_epoch: tuple[Num, ...]
    log_value: tuple[Num, ...]
    epochs_count: Num  # the leader-epoch cache: entries [0, epochs_count) are meaningful
    epoch_ids: tuple[Num, ...]
    epoch_starts: tuple[Num, ...]
    phase: Num
    follower_leo: tuple[Num, ...]
    caught_up: tuple[Num, ...]  # in clock advances: now_ms / (replica.lag.time.max.ms + 1)


class Broker(NamedTuple):
    alive: Flag
    registered: Flag
    unclean: Flag
    cut: Flag  # cut off from the controller (State.controller_cut)
    view: View
    replica: Replica
    slots: tuple[Slot | None, ...]  # [leader]; None at the broker's own index


class Controller(NamedTuple):
    leader: Num
    leader_epoch: Num
    partition_epoch: Num
    last_leader: Num
    isr: tuple[Flag, ...]
    elr: tuple[Flag, ...]
    fenced: tuple[Flag, ...]


class Write(NamedTuple):
    """The fate of the write of value index+1: waiting in a leader's purgatory (acks=all)
    and/or acknowledged. Each value is appended at most once (no retries)."""

    waiting: Flag
    broker: Num
    leader_epoch: Num
    offset: Num
    acked: Flag
    acked_offset: Num
    acked_epoch: Num


class Budget(NamedTuple):
    writes: Num
    crashes: Num
    data_loss_crashes: Num
    elections: Num
    network_changes: Num
    clock_advances: Num  # also the clock: now_ms = clock_advances * (lag + 1)


class SymState(NamedTuple):
    brokers: tuple[Broker, ...]
    controller: Controller
    budget: Budget
    writes: tuple[Write, ...]
    committed_count: Num
    committed_value: tuple[Num, ...]
    committed_epoch: tuple[Num, ...]


class Unsupported(ValueError):
    """A scope or state outside what the SMT encoding covers."""


@dataclass(frozen=True)
class Dims:
    """Array capacities. Every value is written at most once and keeps its offset when
    copied, so a log never holds more than `writes` records; every leader-epoch cache
    entry is an epoch someone led in, and only the initial leader and elections create
    those. A scope without writes still gets one (unused) log entry: arrays are never
    empty."""

    brokers: int
    writes: int
    epochs: int
    lag_ms: int

    @classmethod
    def of(cls, model: ReplicationModel) -> Dims:
        scope = model.scope
        return cls(
            scope.brokers,
            max(1, scope.max_writes),
            scope.max_elections + 1,
            model.config.replica_lag_time_max_ms,
        )


# --- trees ---------------------------------------------------------------------------


def leaves(tree: Any) -> Iterator[Any]:
    if tree is None:
        return
    if isinstance(tree, tuple):
        for child in tree:
            yield from leaves(child)
    else:
        yield tree


def rebuild(template: Any, values: Iterator[Any]) -> Any:
    """A tree shaped like `template` whose leaves are taken from `values` in order."""
    if template is None:
        return None
    if isinstance(template, tuple):
        children = [rebuild(child, values) for child in template]
        return type(template)(*children) if hasattr(template, "_fields") else tuple(children)
    return next(values)


def map_tree(function: Callable[[Any], Any], tree: Any) -> Any:
    return rebuild(tree, (function(leaf) for leaf in leaves(tree)))


def fresh(template: Any, prefix: str) -> Any:
    """New z3 constants shaped like a concrete tree (bools become Bool, ints Int)."""
    numbers = count()

    def make(leaf: Any) -> Any:
        name = f"{prefix}.{next(numbers)}"
        return z3.Bool(name) if isinstance(leaf, bool) else z3.BitVec(name, NUM_BITS)

    return map_tree(make, template)


def literal(tree: Any) -> Any:
    """A concrete tree as z3 literals."""
    return map_tree(lambda v: z3.BoolVal(v) if isinstance(v, bool) else num(v), tree)


def evaluate(model: z3.ModelRef, tree: Any) -> Any:
    """The concrete tree a SAT model assigns to a tree of terms."""

    def value(term: Any) -> Any:
        result = model.eval(term, model_completion=True)
        return z3.is_true(result) if z3.is_bool(result) else result.as_signed_long()

    return map_tree(value, tree)


def equal(a: Any, b: Any) -> list[Any]:
    """Leaf-wise equalities between two trees of one shape."""
    return [x == y for x, y in zip(leaves(a), leaves(b), strict=True)]


# --- from model states ---------------------------------------------------------------


def _padded(values: list[int], size: int, what: str) -> tuple[int, ...]:
    if len(values) > size:
        raise Unsupported(f"{what} holds {len(values)} entries, the encoding {size}")
    return (*values, *[0] * (size - len(values)))


def _ticks(ms: int, dims: Dims) -> int:
    ticks, rest = divmod(ms, dims.lag_ms + 1)
    if rest:
        raise Unsupported(f"time {ms} ms is not a whole number of clock advances")
    return ticks


def _replica(replica: ModelReplica, dims: Dims) -> Replica:
    log = replica.log
    return Replica(
        leo=len(log),
        hw=replica.hw,
        log_epoch=_padded([r[0] for r in log], dims.writes, "a log"),
        log_value=_padded([r[1] for r in log], dims.writes, "a log"),
        epochs_count=len(replica.epochs),
        epoch_ids=_padded([e for e, _ in replica.epochs], dims.epochs, "an epoch cache"),
        epoch_starts=_padded([s for _, s in replica.epochs], dims.epochs, "an epoch cache"),
        phase=replica.phase,
        follower_leo=tuple(replica.follower_leo),
        caught_up=tuple(_ticks(ms, dims) for ms in replica.caught_up_ms),
    )


def _flags(mask: int, brokers: int) -> tuple[bool, ...]:
    return tuple(bool(mask >> b & 1) for b in range(brokers))


def _view(view: ModelView | None, dims: Dims) -> View:
    if view is None:
        return View(False, NO_LEADER, UNKNOWN, UNKNOWN, _flags(0, dims.brokers))
    return View(
        True, view.leader, view.leader_epoch, view.partition_epoch, _flags(view.isr, dims.brokers)
    )


def _slot(message: Message | None, dims: Dims) -> Slot:
    if message is None:
        return empty_slot(dims)
    if message.kind not in (FETCH_RESPONSE, LOOKUP_RESPONSE):
        raise Unsupported(f"a request in flight: {message}")
    records = message.records
    log = [(0, 0)] * message.offset + [(r[0], r[1]) for r in records] if records else []
    return Slot(
        present=True,
        lookup=message.kind == LOOKUP_RESPONSE,
        epoch=message.epoch,
        offset=message.offset,
        last_epoch=message.last_epoch,
        error=int(message.error),
        log_epoch=_padded([e for e, _ in log], dims.writes, "a response"),
        log_value=_padded([v for _, v in log], dims.writes, "a response"),
        leader_hw=message.leader_hw,
        leader_leo=message.leader_leo,
        diverging=message.diverging,
    )


def empty_slot(dims: Dims) -> Slot:
    zeros = (0,) * dims.writes
    return Slot(False, False, 0, 0, 0, 0, zeros, zeros, 0, 0, False)


def _writes(state: State, dims: Dims) -> tuple[Write, ...]:
    out = []
    for value in range(1, dims.writes + 1):
        waiting = [e for e in state.purgatory if e.value == value]
        acked = [a for a in state.acked if a.value == value]
        if len(waiting) > 1 or len(acked) > 1:
            raise Unsupported(f"v{value} is waiting or acknowledged more than once")
        entry = waiting[0] if waiting else None
        ack = acked[0] if acked else None
        out.append(
            Write(
                waiting=entry is not None,
                broker=entry.broker if entry else 0,
                leader_epoch=entry.leader_epoch if entry else 0,
                offset=entry.offset if entry else 0,
                acked=ack is not None,
                acked_offset=ack.offset if ack else 0,
                acked_epoch=ack.leader_epoch if ack else 0,
            )
        )
    return tuple(out)


def abstract(state: State, dims: Dims) -> SymState:
    """The concrete tree of a model state (partition 0; the encoding has one partition)."""
    if len(state.controller.partitions) != 1 or state.isolated:
        raise Unsupported("the encoding has one partition and no isolated brokers")
    n = dims.brokers
    reg = state.controller.partitions[0]
    brokers = []
    for b, broker in enumerate(state.brokers):
        messages = {m.leader: m for m in state.slots[b][0]}
        brokers.append(
            Broker(
                alive=broker.alive,
                registered=broker.registered,
                unclean=broker.unclean,
                cut=bool(state.controller_cut >> b & 1),
                view=_view(broker.views[0], dims),
                replica=_replica(state.replicas[b][0], dims),
                slots=tuple(
                    None if leader == b else _slot(messages.get(leader), dims)
                    for leader in range(n)
                ),
            )
        )
    controller = Controller(
        reg.leader,
        reg.leader_epoch,
        reg.partition_epoch,
        reg.last_leader,
        _flags(reg.isr, n),
        _flags(reg.elr, n),
        _flags(state.controller.fenced, n),
    )
    budget = state.budget
    ticks = budget.clock_advances
    if _ticks(state.now_ms, dims) != ticks:
        raise Unsupported("the clock moved other than by clock advances")
    committed = state.committed[0]
    return SymState(
        brokers=tuple(brokers),
        controller=controller,
        budget=Budget(
            budget.writes,
            budget.crashes,
            budget.data_loss_crashes,
            budget.elections,
            budget.network_changes,
            ticks,
        ),
        writes=_writes(state, dims),
        committed_count=len(committed),
        committed_value=_padded([v for v, _ in committed], dims.writes, "committed"),
        committed_epoch=_padded([e for _, e in committed], dims.writes, "committed"),
    )


# --- normal form ---------------------------------------------------------------------


def _blank_from(values: tuple[int, ...], start: int, end: int) -> tuple[int, ...]:
    return tuple(v if start <= i < end else 0 for i, v in enumerate(values))


def _normal_slot(slot: Slot, dims: Dims) -> Slot:
    if not slot.present:
        return empty_slot(dims)
    carries_records = not slot.lookup and slot.error == 0 and not slot.diverging
    start, end = (slot.offset, slot.leader_leo) if carries_records else (0, 0)
    return slot._replace(
        log_epoch=_blank_from(slot.log_epoch, start, end),
        log_value=_blank_from(slot.log_value, start, end),
    )


def _normal_replica(replica: Replica) -> Replica:
    leo, entries = replica.leo, replica.epochs_count
    return replica._replace(
        log_epoch=_blank_from(replica.log_epoch, 0, leo),
        log_value=_blank_from(replica.log_value, 0, leo),
        epoch_ids=_blank_from(replica.epoch_ids, 0, entries),
        epoch_starts=_blank_from(replica.epoch_starts, 0, entries),
    )


def normalize(state: SymState, dims: Dims) -> SymState:
    """A concrete tree with every meaningless array entry and field set to its blank."""
    blank_view = View(False, NO_LEADER, UNKNOWN, UNKNOWN, (False,) * dims.brokers)
    brokers = tuple(
        broker._replace(
            view=broker.view if broker.view.known else blank_view,
            replica=_normal_replica(broker.replica),
            slots=tuple(None if s is None else _normal_slot(s, dims) for s in broker.slots),
        )
        for broker in state.brokers
    )
    writes = tuple(
        Write(
            w.waiting,
            w.broker if w.waiting else 0,
            w.leader_epoch if w.waiting else 0,
            w.offset if w.waiting else 0,
            w.acked,
            w.acked_offset if w.acked else 0,
            w.acked_epoch if w.acked else 0,
        )
        for w in state.writes
    )
    committed = state.committed_count
    return state._replace(
        brokers=brokers,
        writes=writes,
        committed_value=_blank_from(state.committed_value, 0, committed),
        committed_epoch=_blank_from(state.committed_epoch, 0, committed),
    )
