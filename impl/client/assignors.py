"""Partition assignors the group leader runs (pure functions over plain data).

- `range` (Kafka's RangeAssignor, eager): per topic, members subscribed to it sorted by
  member id; n partitions over k members gives each n // k and the first n % k one more.
- `cooperative-sticky` (Kafka's CooperativeStickyAssignor): a balanced assignment
  (counts differ by at most one between members with the same subscription) that keeps
  every member's owned partitions where balance allows; then, for KIP-429's
  incremental protocol, a partition moving from one live owner to another is left
  unassigned for this generation. Its old owner sees it revoked and rejoins at once,
  and the next generation hands it to the new owner, so no partition ever has two
  owners in one generation and partitions that stay are never revoked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Assignment = dict[str, dict[str, list[int]]]
ASSIGNORS = ("range", "cooperative-sticky")


@dataclass(frozen=True)
class MemberSubscription:
    member_id: str
    topics: tuple[str, ...]
    owned: dict[str, list[int]] = field(default_factory=dict)
    generation: int = -1


def assign(
    strategy: str, members: list[MemberSubscription], partition_counts: dict[str, int]
) -> Assignment:
    if strategy == "range":
        return range_assign(members, partition_counts)
    if strategy == "cooperative-sticky":
        return cooperative_sticky_assign(members, partition_counts)
    raise ValueError(f"unknown assignor {strategy!r}; known: {', '.join(ASSIGNORS)}")


def range_assign(members: list[MemberSubscription], partition_counts: dict[str, int]) -> Assignment:
    result: Assignment = {m.member_id: {} for m in members}
    topics = sorted({t for m in members for t in m.topics if t in partition_counts})
    for topic in topics:
        subscribers = sorted(m.member_id for m in members if topic in m.topics)
        count = partition_counts[topic]
        share, extra = divmod(count, len(subscribers))
        start = 0
        for i, member_id in enumerate(subscribers):
            size = share + (1 if i < extra else 0)
            if size:
                result[member_id][topic] = list(range(start, start + size))
            start += size
    return result


def cooperative_sticky_assign(
    members: list[MemberSubscription], partition_counts: dict[str, int]
) -> Assignment:
    target = _sticky_target(members, partition_counts)
    owners = _current_owners(members, partition_counts)
    result: Assignment = {m.member_id: {} for m in members}
    for member_id, partitions in target.items():
        for tp in sorted(partitions):
            owner = owners.get(tp)
            if owner is not None and owner != member_id:
                continue
            result[member_id].setdefault(tp[0], []).append(tp[1])
    return result


def _current_owners(
    members: list[MemberSubscription], partition_counts: dict[str, int]
) -> dict[tuple[str, int], str]:
    """Who owns each partition now; of two claims the newer generation wins (a member
    that missed a rebalance still lists what it owned before)."""
    owners: dict[tuple[str, int], tuple[int, str]] = {}
    for m in members:
        for topic, partitions in m.owned.items():
            if topic not in m.topics or topic not in partition_counts:
                continue
            for p in partitions:
                if 0 <= p < partition_counts[topic]:
                    claim = (m.generation, m.member_id)
                    if (topic, p) not in owners or claim > owners[(topic, p)]:
                        owners[(topic, p)] = claim
    return {tp: member_id for tp, (_, member_id) in owners.items()}


def _sticky_target(
    members: list[MemberSubscription], partition_counts: dict[str, int]
) -> dict[str, set[tuple[str, int]]]:
    by_id = {m.member_id: m for m in members}
    owners = _current_owners(members, partition_counts)
    everything = sorted(
        (t, p)
        for t in {t for m in members for t in m.topics if t in partition_counts}
        for p in range(partition_counts[t])
    )
    assert members, "a group with no members has nothing to assign"
    low, extra = divmod(len(everything), len(members))
    target: dict[str, set[tuple[str, int]]] = {m: set() for m in sorted(by_id)}
    # Keep owned partitions up to the quota; `extra` members may keep one more.
    for member_id in sorted(by_id):
        kept = sorted(tp for tp, owner in owners.items() if owner == member_id)
        quota = low + (1 if extra > 0 and len(kept) > low else 0)
        if quota > low:
            extra -= 1
        target[member_id] = set(kept[:quota])
    taken = {tp for partitions in target.values() for tp in partitions}
    for tp in everything:
        if tp in taken:
            continue
        eligible = [m for m in sorted(by_id) if tp[0] in by_id[m].topics]
        chosen = min(eligible, key=lambda m: (len(target[m]), m))
        target[chosen].add(tp)
    return target
