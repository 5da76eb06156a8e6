"""Client-level calls with results, for differential tests against the impl.

These are the same transitions the explorer takes (`ReplicationModel.leader_append`,
the fetch path, the actions), seen from a client: produce -> offset | error, fetch ->
records + HW | error, list_offsets. Every function is pure: it takes a state and
returns results (and, where something changes, the new state).
"""

from __future__ import annotations

from dataclasses import dataclass

from model import rules
from model.errors import Errors
from model.machine import Action, ReplicationModel
from model.state import NO_LEADER, UNKNOWN, State

LOG_START_OFFSET = 0  # retention arrives with consumer groups; until then logs start at 0


@dataclass(frozen=True)
class ProduceResult:
    error: Errors
    offset: int
    leader_epoch: int
    pending: bool  # acks=all: appended, acknowledged only once the HW passes it


@dataclass(frozen=True)
class FetchResult:
    error: Errors
    records: tuple[tuple[int, int], ...]  # (offset, value)
    high_watermark: int
    log_end_offset: int
    log_start_offset: int


def leader_of(state: State, partition: int) -> int:
    """The live broker that believes it leads `partition` at the highest epoch, or -1."""
    best, best_epoch = NO_LEADER, -1
    for b, broker in enumerate(state.brokers):
        view = broker.views[partition]
        if (
            broker.alive
            and view is not None
            and view.leader == b
            and view.leader_epoch > best_epoch
        ):
            best, best_epoch = b, view.leader_epoch
    return best


def produce(
    model: ReplicationModel,
    state: State,
    partition: int,
    value: int,
    *,
    broker: int | None = None,
    producer: tuple[int, int, int] | None = None,
) -> tuple[State, ProduceResult]:
    """Send one record to `broker` (default: the current leader). `producer` is
    (producer id, producer epoch, sequence) for an idempotent send."""
    target = leader_of(state, partition) if broker is None else broker
    if target == NO_LEADER:
        return state, ProduceResult(Errors.NOT_LEADER_OR_FOLLOWER, UNKNOWN, UNKNOWN, False)
    producer_id, producer_epoch, sequence = producer or (-1, -1, -1)
    record = (0, value, producer_id, producer_epoch, sequence)
    state, error, offset, epoch = model.leader_append(state, target, partition, record)
    if error != Errors.NONE:
        return state, ProduceResult(error, UNKNOWN, epoch, False)
    hw = state.replicas[target][partition].hw
    pending = model.config.acks == -1 and hw <= offset
    return state, ProduceResult(Errors.NONE, offset, epoch, pending)


def produce_outcome(
    model: ReplicationModel, state: State, partition: int, broker: int, result: ProduceResult
) -> Errors | None:
    """What a pending acks=all produce has come to: None while waiting, NONE when
    acknowledged, an error when it failed or its leader moved on (outcome unknown)."""
    if not result.pending:
        return result.error
    view = state.brokers[broker].views[partition]
    if not state.brokers[broker].alive or view is None or view.leader != broker:
        return Errors.NOT_LEADER_OR_FOLLOWER
    if view.leader_epoch != result.leader_epoch:
        return Errors.NOT_LEADER_OR_FOLLOWER
    hw = state.replicas[broker][partition].hw
    return rules.produce_completion(hw, result.offset, view.isr, model.config)


def fetch(state: State, partition: int, offset: int, *, broker: int | None = None) -> FetchResult:
    """A consumer fetch (read_uncommitted): records in [offset, HW) from the leader.
    Offsets in [HW, LEO] return nothing; beyond the LEO or below the log start is
    OFFSET_OUT_OF_RANGE."""
    target = leader_of(state, partition) if broker is None else broker
    view = state.brokers[target].views[partition] if target != NO_LEADER else None
    if view is None or view.leader != target or not state.brokers[target].alive:
        return FetchResult(Errors.NOT_LEADER_OR_FOLLOWER, (), UNKNOWN, UNKNOWN, UNKNOWN)
    replica = state.replicas[target][partition]
    leo = len(replica.log)
    if offset > leo or offset < LOG_START_OFFSET:
        return FetchResult(Errors.OFFSET_OUT_OF_RANGE, (), replica.hw, leo, LOG_START_OFFSET)
    records = tuple((o, replica.log[o][1]) for o in range(offset, replica.hw))
    return FetchResult(Errors.NONE, records, replica.hw, leo, LOG_START_OFFSET)


def list_offsets(
    state: State, partition: int, spec: str, *, broker: int | None = None
) -> tuple[Errors, int]:
    """ListOffsets: `earliest` is the log start offset, `latest` the HW (what a
    read_uncommitted consumer may read up to)."""
    if spec not in ("earliest", "latest"):
        raise ValueError(f"spec must be 'earliest' or 'latest', got {spec!r}")
    result = fetch(state, partition, LOG_START_OFFSET, broker=broker)
    if result.error == Errors.NOT_LEADER_OR_FOLLOWER:
        return result.error, UNKNOWN
    return Errors.NONE, LOG_START_OFFSET if spec == "earliest" else result.high_watermark


def replicate(model: ReplicationModel, state: State, rounds_max: int = 50) -> State:
    """Let metadata and fetches flow until a whole round changes nothing: the quiet
    network a client sees between faults. Each round delivers metadata to every broker,
    sends every fetch it can and receives every response."""
    for _ in range(rounds_max):
        before = (state.replicas, state.brokers, state.controller, state.acked)
        for kind in ("deliver", "fetch", "handle_response"):
            for action in [a for a in model.enabled_actions(state) if a.kind == kind]:
                if action in model.enabled_actions(state):
                    state = model.step(state, action)
        if (state.replicas, state.brokers, state.controller, state.acked) == before:
            return state
    raise AssertionError(f"replication did not settle within {rounds_max} rounds")


def apply(model: ReplicationModel, state: State, *actions: Action) -> State:
    """Apply actions in order, each of which must be enabled (a test's script)."""
    for action in actions:
        enabled = model.enabled_actions(state)
        if action not in enabled:
            raise AssertionError(f"{action} is not enabled; enabled: {enabled}")
        state = model.step(state, action)
    return state
