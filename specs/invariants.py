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


def _gaps(offsets: tuple[int, ...], start: int, end: int) -> list[tuple[int, int]]:
    """The ranges [a, b) of [start, end) missing from ascending `offsets`."""
    present = set(offsets)
    out: list[tuple[int, int]] = []
    offset = start
    while offset < end:
        if offset in present:
            offset += 1
            continue
        first = offset
        while offset < end and offset not in present:
            offset += 1
        out.append((first, offset))
    return out


def _claimed_end(state: State, p: int) -> int:
    """How far the group claims to have consumed partition p: past everything delivered,
    its committed offset, and every live consumer's position."""
    world = state.consumption
    delivered = world.delivered[p]
    end = max(delivered[-1] + 1 if delivered else -1, world.group.offsets[p])
    for consumer in world.consumers:
        if consumer.alive and p in consumer.owned:
            end = max(end, consumer.positions[p])
    return end


def _skip_cause(state: State, p: int, first: int, end: int) -> str | None:
    """Why the group moved past [first, end) unread, or None when auto.offset.reset
    chose it: a consumer without a committed offset started at `end` by its policy."""
    for event in state.consumption.resets:
        if event.partition != p or event.to_offset < end:
            continue
        if event.from_offset < 0 and event.to_offset == end:
            return None
        if 0 <= event.from_offset <= first:
            return (
                f"auto.offset.reset={event.policy} moved consumer {event.consumer} from "
                f"{event.from_offset} to {event.to_offset} after OFFSET_OUT_OF_RANGE (log "
                f"start {event.log_start}, HW {event.high_watermark})"
            )
    return "no reset explains it"


def no_silent_skip(state: State) -> str | None:
    """The group never moves past an offset it did not deliver, unless auto.offset.reset
    chose to: from where the group first started on a partition, every offset up to its
    committed offset and its consumers' positions was handed to the application by some
    poll, except a range a consumer without a committed offset skipped by its policy
    (recorded in `resets`). A position that fell off the log (retention deleted it
    unread) is no choice: its reset breaks the invariant whatever the policy (`latest`
    jumps to the head, `earliest` to the new log start), and the message names the
    skipped range and the reset. `none` stops the consumer with the error instead, and
    a consumer that stays within retention never skips. Promised while no consumer lags
    past retention.ms / retention.bytes."""
    world = state.consumption
    if world is None:
        return None
    for p, start in enumerate(world.starts):
        if start < 0:
            continue
        for first, end in _gaps(world.delivered[p], start, _claimed_end(state, p)):
            cause = _skip_cause(state, p, first, end)
            if cause is not None:
                return f"p{p}: offsets [{first}, {end}) were skipped: {cause}"
    return None


def at_least_once(state: State) -> str | None:
    """Everything committed was processed: every delivered offset below the group's
    committed offset has been processed, or is still held by a live consumer that will
    process it (offsets never delivered are NoSilentSkip's). Promised by
    replog.consumer.commit=after-processing; committing before processing loses what a
    crash interrupts."""
    world = state.consumption
    if world is None:
        return None
    for p, delivered in enumerate(world.delivered):
        committed = world.group.offsets[p]
        if not delivered or committed <= delivered[0]:
            continue
        processed = set(world.processed[p])
        for c in world.consumers:
            if c.alive:
                processed.update(o for q, o in c.buffer if q == p)
        for offset in delivered:
            if offset >= committed:
                break
            if offset not in processed:
                return (
                    f"p{p}: offset {offset} is below the committed offset {committed} but "
                    "was never processed"
                )
    return None


def at_most_once(state: State) -> str | None:
    """Nothing is processed twice, across consumer restarts and rebalances. Promised by
    replog.consumer.commit=before-processing; committing after processing redelivers
    what a crash or a rebalance interrupts between the two."""
    world = state.consumption
    if world is None or not world.reprocessed:
        return None
    p, offset = world.reprocessed[0]
    return f"p{p}: offset {offset} was processed twice"


def one_partition_one_owner(state: State) -> str | None:
    """Within one generation a partition has one owner: the coordinator's assignment of
    the current generation is disjoint, and no two live consumers of the same
    generation consume one partition (with cooperative-sticky, a partition that moves is
    revoked before it is assigned again). A consumer of an older generation (a zombie
    whose session expired) may still read: its commits are fenced. Promised always."""
    world = state.consumption
    if world is None:
        return None
    seen: dict[int, int] = {}
    for member in world.group.members:
        for p in member.assignment:
            other = seen.setdefault(p, member.member_id)
            if other != member.member_id:
                return (
                    f"p{p}: assigned to members {other} and {member.member_id} in generation "
                    f"{world.group.generation}"
                )
    owners: dict[tuple[int, int], int] = {}
    for c, consumer in enumerate(world.consumers):
        if not consumer.alive or consumer.generation < 0:
            continue
        for p in consumer.owned:
            other = owners.setdefault((consumer.generation, p), c)
            if other != c:
                return (
                    f"p{p}: consumers {other} and {c} both consume it in generation "
                    f"{consumer.generation}"
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
        Invariant(
            "NoSilentSkip",
            no_silent_skip,
            None,
            "no consumer lagging past retention",
            ("consumption",),
        ),
        Invariant(
            "AtLeastOnce",
            at_least_once,
            None,
            "replog.consumer.commit=after-processing",
            ("consumption",),
        ),
        Invariant(
            "AtMostOnce",
            at_most_once,
            None,
            "replog.consumer.commit=before-processing",
            ("consumption",),
        ),
        Invariant(
            "OnePartitionOneOwner", one_partition_one_owner, None, "always", ("consumption",)
        ),
    )
}

# The invariants over consumer groups and retention: they hold trivially in a scope
# without a group, so checks over such scopes (the safety matrix, the SMT engine) leave
# them out.
GROUP_INVARIANTS = ("NoSilentSkip", "AtLeastOnce", "AtMostOnce", "OnePartitionOneOwner")


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
