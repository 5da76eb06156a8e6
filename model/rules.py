"""The replication rules of KAFKA-RULES.md, one pure function each.

Every rule that a `replog.*` setting switches lives here with its name, so a reviewer
flipping a setting finds the single place it acts. Inputs are plain values from
`model.state`; nothing here touches whole states.
"""

from __future__ import annotations

from model.config import Config
from model.errors import Errors
from model.state import NO_LEADER, UNKNOWN, Record, Replica

UNDEFINED = (-1, -1)
IDEMPOTENCE_WINDOW = 5  # Kafka keeps the last 5 batches per producer id


def popcount(mask: int) -> int:
    return mask.bit_count()


# --- leader-epoch cache -------------------------------------------------------------


def latest_epoch(epochs: tuple[tuple[int, int], ...]) -> int:
    return epochs[-1][0] if epochs else -1


def end_offset_for(epochs: tuple[tuple[int, int], ...], leo: int, epoch: int) -> tuple[int, int]:
    """LeaderEpochFileCache.endOffsetFor. The latest epoch ends at the LEO; an epoch above
    it is unknown (UNDEFINED); an older one ends where the first later epoch starts,
    reported under the largest cached epoch <= it (or itself if none is that old)."""
    if not epochs or epoch < 0:
        return UNDEFINED
    latest = epochs[-1][0]
    if epoch == latest:
        return (latest, leo)
    if epoch > latest:
        return UNDEFINED
    floor = epoch
    for cached, start in epochs:
        if cached > epoch:
            return (floor, start)
        floor = cached
    raise AssertionError("unreachable: an epoch below the latest ends at a later epoch")


def epochs_after_append(
    epochs: tuple[tuple[int, int], ...], records: tuple[Record, ...], base_offset: int
) -> tuple[tuple[int, int], ...]:
    """A follower learns epoch boundaries from the records it appends."""
    out = epochs
    for index, record in enumerate(records):
        if not out or record[0] > out[-1][0]:
            out = (*out, (record[0], base_offset + index))
    return out


def epochs_after_truncate(
    epochs: tuple[tuple[int, int], ...], end: int
) -> tuple[tuple[int, int], ...]:
    """truncateFromEnd: drop every entry starting at or after the new log end."""
    return tuple(entry for entry in epochs if entry[1] < end)


def last_fetched_epoch(log: tuple[Record, ...]) -> int:
    return log[-1][0] if log else -1


# --- follower truncation --------------------------------------------------------------


def divergence_truncation_offset(
    own_epochs: tuple[tuple[int, int], ...], own_leo: int, own_hw: int, epoch: int, offset: int
) -> int:
    """KIP-279 (AbstractFetcherThread.getOffsetTruncationState): where a follower
    truncates on the leader's answer (epoch, offset) for its last epoch."""
    if offset < 0:
        # The leader knows no epoch that old: fall back to the follower's HW.
        return min(own_hw, own_leo)
    own_epoch, own_offset = end_offset_for(own_epochs, own_leo, epoch)
    if own_offset < 0:
        return min(offset, own_leo)
    if own_epoch != epoch:
        return min(own_offset, own_leo)
    return min(offset, own_offset, own_leo)


def kip101_truncation_offset(own_leo: int, offset: int) -> int:
    """KIP-101: truncate to the leader's end offset for our latest epoch, no questions."""
    return min(offset, own_leo) if offset >= 0 else 0


def truncate(replica: Replica, end: int) -> Replica:
    """Drop log[end:] with the epoch entries that start there; HW and recovery point follow."""
    if end >= len(replica.log):
        return replica
    return replica._replace(
        log=replica.log[:end],
        hw=min(replica.hw, end),
        flushed=min(replica.flushed, end),
        epochs=epochs_after_truncate(replica.epochs, end),
    )


# --- high watermark -------------------------------------------------------------------


def leader_high_watermark(replica: Replica, leader: int, isr: int, config: Config) -> int:
    """New HW = min(leader LEO, LEO of every ISR follower); never moves down; held while
    |ISR| < min(min.insync.replicas, RF) under replog.hw.min-isr-guard (KAFKA-15583)."""
    if config.hw_min_isr_guard and popcount(isr) < min(
        config.min_insync_replicas, config.replication_factor
    ):
        return replica.hw
    candidate = len(replica.log)
    follower_leo = replica.follower_leo
    mask = isr & ~(1 << leader)
    broker = 0
    while mask:
        if mask & 1:
            leo = follower_leo[broker]
            if leo < candidate:
                candidate = leo
        mask >>= 1
        broker += 1
    return candidate if candidate > replica.hw else replica.hw


def follower_high_watermark(leader_hw: int, own_leo: int) -> int:
    return min(leader_hw, own_leo)


# --- ISR ----------------------------------------------------------------------------


def follower_out_of_sync(replica: Replica, follower: int, now_ms: int, config: Config) -> bool:
    """Kafka's isFollowerOutOfSync: behind the leader's LEO for longer than the lag limit."""
    if replica.follower_leo[follower] == len(replica.log):
        return False
    return now_ms - replica.caught_up_ms[follower] > config.replica_lag_time_max_ms


def some_follower_may_be_out_of_sync(replica: Replica, now_ms: int, config: Config) -> bool:
    """A cheap necessary condition for `follower_out_of_sync` of any follower: someone
    was last caught up longer than the lag limit ago."""
    return now_ms - min(replica.caught_up_ms) > config.replica_lag_time_max_ms


def may_join_isr(replica: Replica, follower_leo: int, config: Config) -> bool:
    """ISR expansion: LEO >= HW and, under `epoch-start` (KAFKA-7128), >= the start of the
    leader's current epoch."""
    if follower_leo < replica.hw:
        return False
    if config.isr_expand == "epoch-start" and replica.epochs:
        return follower_leo >= replica.epochs[-1][1]
    return True


def isr_after_removal(isr: int, elr: int, broker: int, config: Config) -> tuple[int, int]:
    """Remove a broker from the ISR. With ELR (KIP-966) a removal that leaves fewer than
    min.insync.replicas puts the removed, caught-up member into the ELR and may empty
    the ISR; without it the last member is never removed."""
    bit = 1 << broker
    if not isr & bit:
        return isr, elr
    remaining = isr & ~bit
    if config.elr:
        if popcount(remaining) < config.min_insync_replicas:
            elr |= bit
        return remaining, elr
    if remaining == 0:
        return isr, elr
    return remaining, elr


def isr_after_addition(isr: int, elr: int, broker: int, config: Config) -> tuple[int, int]:
    """A member back in the ISR leaves the ELR; an ISR back at min size clears the ELR."""
    isr |= 1 << broker
    elr &= ~(1 << broker)
    if popcount(isr) >= config.min_insync_replicas:
        elr = 0
    return isr, elr


# --- leader election (controller) ----------------------------------------------------


def election_candidates(
    leader: int,
    isr: int,
    elr: int,
    last_leader: int,
    replicas: int,
    fenced: int,
    config: Config,
) -> tuple[int, bool]:
    """Who may lead next, and whether that choice is from the ISR (clean).

    Offline partition: unfenced ISR; else unfenced ELR; else, if ISR and ELR are both
    empty, the last known leader; else, with unclean election, any unfenced replica.
    Online partition: a preferred/manual election moves leadership within the ISR.
    """
    unfenced = replicas & ~fenced
    if leader != NO_LEADER:
        return isr & unfenced & ~(1 << leader), True
    if isr & unfenced:
        return isr & unfenced, True
    if config.elr:
        if elr & unfenced:
            return elr & unfenced, False
        if isr == 0 and elr == 0 and last_leader != NO_LEADER and unfenced >> last_leader & 1:
            return 1 << last_leader, False
    if config.unclean_leader_election_enable:
        return unfenced, False
    return 0, False


# --- produce ------------------------------------------------------------------------


def produce_precheck(isr: int, acks: int, config: Config) -> Errors:
    """acks=all with |ISR| < min.insync.replicas is refused before anything is appended."""
    if acks == -1 and popcount(isr) < config.min_insync_replicas:
        return Errors.NOT_ENOUGH_REPLICAS
    return Errors.NONE


def idempotent_check(
    log: tuple[Record, ...], producer_id: int, producer_epoch: int, sequence: int
) -> tuple[Errors, int]:
    """(error, duplicate offset). A cached duplicate returns its original offset (error
    NONE, offset >= 0); otherwise the sequence must follow the producer's last one."""
    seen = 0
    for offset in range(len(log) - 1, -1, -1):
        record = log[offset]
        if record[2] != producer_id:
            continue
        if producer_epoch < record[3]:
            return Errors.INVALID_PRODUCER_EPOCH, UNKNOWN
        if seen == 0:
            last_epoch, last_sequence = record[3], record[4]
        if record[3] == producer_epoch and record[4] == sequence:
            return Errors.NONE, offset
        seen += 1
        if seen >= IDEMPOTENCE_WINDOW:
            break
    if seen == 0:
        return Errors.NONE, UNKNOWN
    # A new producer epoch starts again at sequence 0.
    ok = sequence == 0 if producer_epoch > last_epoch else sequence == last_sequence + 1
    return (Errors.NONE if ok else Errors.OUT_OF_ORDER_SEQUENCE_NUMBER), UNKNOWN


def produce_completion(hw: int, offset: int, isr: int, config: Config) -> Errors | None:
    """A waiting acks=all produce: None while the HW is below it; then acknowledged, or
    NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR shrank below min.insync.replicas."""
    if hw <= offset:
        return None
    if popcount(isr) < config.min_insync_replicas:
        return Errors.NOT_ENOUGH_REPLICAS_AFTER_APPEND
    return Errors.NONE
