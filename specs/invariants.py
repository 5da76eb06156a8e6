"""Named invariants over model states (and, for monotonicity, over transitions).

Each returns None when it holds, or a one-line description of the violation. The
docstrings say which configurations promise the property, so that a violation under
an unsafe setting reads as "what this setting costs", not as a model bug.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from model.state import FETCHING, State, broker_name

StateCheck = Callable[[State], "str | None"]
TransitionCheck = Callable[[State, State], "str | None"]


@dataclass(frozen=True)
class Invariant:
    name: str
    check: StateCheck | None
    transition: TransitionCheck | None
    promise: str
    reads: tuple[str, ...] = ()  # State fields a state check depends on
    read_indexes: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Positions, not names: tuple indexing is the cheap part of every transition.
        indexes = tuple(State._fields.index(name) for name in self.reads)
        object.__setattr__(self, "read_indexes", indexes)

    def violated(self, before: State | None, after: State) -> str | None:
        found = violations_of([self], before, after)
        return found[0][1] if found else None


def violations_of(
    invariants: list[Invariant], before: State | None, after: State
) -> list[tuple[Invariant, str]]:
    """Each invariant violated by the transition before -> after (before=None: by the
    initial state `after`) with its message, in the order given.

    A state check is skipped when nothing it reads changed since `before`, where it
    already held. The explorer calls this on every transition, hence one flat loop.
    """
    out = []
    for inv in invariants:
        check = inv.check
        if check is not None:
            if before is not None and inv.read_indexes:
                for index in inv.read_indexes:
                    if before[index] is not after[index]:
                        break
                else:
                    continue
            message = check(after)
        elif before is None or inv.transition is None:
            continue
        else:
            message = inv.transition(before, after)
        if message is not None:
            out.append((inv, message))
    return out


def _leaders(state: State) -> list[tuple[int, int, int]]:
    """(broker, partition, leader epoch) for every live broker that believes it leads.

    It depends on `state.brokers` alone, and four invariants ask for it on each new
    state (siblings often share the brokers too), so the last answer is kept: an
    identity test on the brokers tuple, which the cache keeps alive, is exact.
    """
    brokers = state.brokers
    if brokers is _last_leaders[0]:
        return _last_leaders[1]
    leaders = [
        (b, p, view.leader_epoch)
        for b, broker in enumerate(brokers)
        if broker.alive
        for p, view in enumerate(broker.views)
        if view is not None and view.leader == b
    ]
    _last_leaders[:] = [brokers, leaders]
    return leaders


_last_leaders: list = [None, []]


def leader_in_isr(state: State) -> str | None:
    """The controller's leader is a member of the ISR it records (KIP-966 puts a leader
    elected from the ELR, the last known leader or uncleanly back into the ISR).
    Promised by every configuration."""
    for p, reg in enumerate(state.controller.partitions):
        if reg.leader >= 0 and not reg.isr >> reg.leader & 1:
            return f"p{p}: leader {broker_name(reg.leader)} is not in the ISR"
    return None


def one_leader_per_epoch(state: State) -> str | None:
    """No two brokers lead one partition in the same leader epoch. Promised always."""
    leaders = _leaders(state)
    if len(leaders) < 2:
        return None
    seen: dict[tuple[int, int], int] = {}
    for b, p, epoch in leaders:
        other = seen.setdefault((p, epoch), b)
        if other != b:
            return f"p{p}: {broker_name(other)} and {broker_name(b)} both lead epoch {epoch}"
    return None


def log_matching(state: State) -> str | None:
    """Replicas agree on every offset below the smaller of their HWs. Promised with
    leader-epoch truncation and unclean election off; the HW-based and KIP-101 rules and
    unclean elections break it."""
    for p in range(len(state.controller.partitions)):
        replicas = [row[p] for row in state.replicas]
        for i in range(len(replicas)):
            for j in range(i + 1, len(replicas)):
                a, b = replicas[i], replicas[j]
                for offset in range(min(a.hw, b.hw, len(a.log), len(b.log))):
                    if a.log[offset][:2] != b.log[offset][:2]:
                        return (
                            f"p{p}: {broker_name(i)} and {broker_name(j)} differ at offset "
                            f"{offset}, below both HWs"
                        )
    return None


def high_watermark_monotonic(before: State, after: State) -> str | None:
    """A leader's HW never moves down while it leads one epoch. Promised always."""
    rows_before, rows_after = before.replicas, after.replicas
    if rows_before is rows_after:
        return None
    # Only a replica whose HW went down can break it: find those first, then ask
    # whether its broker led the partition, alive, in the same epoch before and after.
    for b, row in enumerate(rows_after):
        row_before = rows_before[b]
        if row is row_before:
            continue
        for p, replica in enumerate(row):
            if replica.hw >= row_before[p].hw:
                continue
            now, then = after.brokers[b], before.brokers[b]
            view, earlier = now.views[p], then.views[p]
            if not (now.alive and then.alive) or view is None or earlier is None:
                continue
            if view.leader == b == earlier.leader and view.leader_epoch == earlier.leader_epoch:
                return f"p{p}: leader {broker_name(b)}'s HW went down in epoch {view.leader_epoch}"
    return None


def leader_completeness(state: State) -> str | None:
    """A running leader holds every record committed (HW passed) in its or an earlier
    epoch. Promised with acks-independent safe settings: unclean election off,
    min.insync.replicas >= 2 or no data loss, leader-epoch truncation, KAFKA-15583 guard."""
    for b, p, epoch in _leaders(state):
        log = state.replicas[b][p].log
        for offset, (value, committed_epoch) in enumerate(state.committed[p]):
            if committed_epoch > epoch:
                continue
            if offset >= len(log) or log[offset][1] != value:
                return (
                    f"p{p}: leader {broker_name(b)} (epoch {epoch}) lacks committed "
                    f"v{value} at offset {offset}"
                )
    return None


def no_acknowledged_write_lost(state: State) -> str | None:
    """Every acknowledged write is in the log of every later leader, at its offset.
    Promised only with acks=all, min.insync.replicas >= 2 (more than the brokers that
    lose unflushed data at once), unclean.leader.election.enable=false and the default
    replog.* rules; acks=1 and min.insync.replicas=1 are the classic ways to lose it."""
    leaders = list(_leaders(state))
    for ack in state.acked:
        for b, p, epoch in leaders:
            if p != ack.partition or epoch < ack.leader_epoch:
                continue
            log = state.replicas[b][p].log
            if ack.offset >= len(log) or log[ack.offset][1] != ack.value:
                return (
                    f"p{p}: acknowledged v{ack.value} (offset {ack.offset}, epoch "
                    f"{ack.leader_epoch}) is missing from leader {broker_name(b)} (epoch {epoch})"
                )
    return None


def consistent_read(state: State) -> str | None:
    """An offset a consumer has read never shows it another value. Promised where
    LeaderCompleteness is."""
    if state.read_conflict:
        return "a consumer read two different values at one offset"
    return None


def no_divergence(state: State) -> str | None:
    """A follower that the leader has accepted a fetch from at offset k agrees with the
    leader on every record below k: divergence that fetching would never repair.
    Promised with leader-epoch truncation; KIP-101 and HW truncation break it."""
    for leader, p, epoch in _leaders(state):
        leader_replica = state.replicas[leader][p]
        for f, broker in enumerate(state.brokers):
            view = broker.views[p]
            if f == leader or not broker.alive or view is None:
                continue
            if view.leader != leader or view.leader_epoch != epoch:
                continue
            follower = state.replicas[f][p]
            if follower.phase != FETCHING:
                continue
            limit = min(leader_replica.follower_leo[f], len(follower.log), len(leader_replica.log))
            for offset in range(limit):
                if follower.log[offset][:2] != leader_replica.log[offset][:2]:
                    return (
                        f"p{p}: follower {broker_name(f)} diverges from leader "
                        f"{broker_name(leader)} at offset {offset}, yet fetches past it"
                    )
    return None


_VIEWS_AND_LOGS = ("brokers", "replicas")

INVARIANTS: dict[str, Invariant] = {
    inv.name: inv
    for inv in (
        Invariant("LeaderInIsr", leader_in_isr, None, "always", ("controller",)),
        Invariant("OneLeaderPerEpoch", one_leader_per_epoch, None, "always", ("brokers",)),
        Invariant(
            "LogMatching",
            log_matching,
            None,
            "leader-epoch truncation, clean elections",
            ("replicas",),
        ),
        Invariant("HighWatermarkMonotonic", None, high_watermark_monotonic, "always"),
        Invariant(
            "LeaderCompleteness",
            leader_completeness,
            None,
            "safe defaults",
            (*_VIEWS_AND_LOGS, "committed"),
        ),
        Invariant(
            "NoAcknowledgedWriteLost",
            no_acknowledged_write_lost,
            None,
            "acks=all, min.insync.replicas>=2, clean elections, default replog.* rules",
            (*_VIEWS_AND_LOGS, "acked"),
        ),
        Invariant("ConsistentRead", consistent_read, None, "safe defaults", ("read_conflict",)),
        Invariant("NoDivergence", no_divergence, None, "leader-epoch truncation", _VIEWS_AND_LOGS),
    )
}


def select(names: list[str] | None) -> list[Invariant]:
    """The named invariants (all when `names` is empty); unknown names raise ValueError."""
    if not names:
        return list(INVARIANTS.values())
    unknown = [n for n in names if n not in INVARIANTS]
    if unknown:
        raise ValueError(f"unknown invariant {unknown[0]!r}; known: {', '.join(INVARIANTS)}")
    return [INVARIANTS[n] for n in names]


def first_violation(
    invariants: list[Invariant], before: State | None, after: State
) -> tuple[str, str] | None:
    for inv in invariants:
        message = inv.violated(before, after)
        if message is not None:
            return inv.name, message
    return None
