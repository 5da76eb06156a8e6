"""Counterexamples for people: a numbered trace in plain words and a Mermaid
sequenceDiagram (participants: client, controller, brokers), like the diagrams of a
Kafka design article."""

from __future__ import annotations

from model.machine import Action
from model.state import (
    CONSUMER_PHASE_NAMES,
    CRASH_NAMES,
    GROUP_STATE_NAMES,
    NO_LEADER,
    Message,
    State,
    broker_name,
    mask_name,
)
from specs.explorer import Violation
from specs.invariants import INVARIANTS


def _log_text(state: State, broker: int, partition: int) -> str:
    replica = state.replicas[broker][partition]
    records = " ".join(f"v{r[1]}@e{r[0]}" for r in replica.log) or "empty"
    return f"[{records}] HW={replica.hw}"


def _registration_text(state: State, partition: int) -> str:
    reg = state.controller.partitions[partition]
    leader = broker_name(reg.leader) if reg.leader != NO_LEADER else "none"
    sets = f"ISR={mask_name(reg.isr)} ELR={mask_name(reg.elr)}"
    return f"leader={leader} epoch={reg.leader_epoch} {sets}"


def _response_text(message: Message) -> str:
    if message.error:
        return f"error {message.error}"
    if message.diverging:
        return f"diverging: epoch {message.last_epoch} ends at {message.offset}"
    if message.kind == 3:
        return f"epoch {message.last_epoch} ends at {message.offset}"
    values = " ".join(f"v{r[1]}" for r in message.records) or "no records"
    return f"{values}, HW={message.leader_hw}"


def effect(before: State, action: Action, after: State) -> str:
    """What an action changed, in a few words."""
    b, p = action.broker, max(action.partition, 0)
    kind = action.kind
    if kind in ("produce", "retry", "consume", "handle_response", "flush", "crash"):
        text = f"{broker_name(b)} {_log_text(after, b, p)}"
    elif kind == "fetch":
        sent = next(m for m in after.slots[b][p] if m.leader == before.brokers[b].views[p].leader)
        text = f"{broker_name(sent.leader)} answers: {_response_text(sent)}"
    elif kind == "deliver":
        view = after.brokers[b].views[p]
        role = "leader" if view.leader == b else f"follower of {broker_name(view.leader)}"
        if view.leader == NO_LEADER:
            role = "without a leader"
        text = f"{broker_name(b)} is {role} at epoch {view.leader_epoch}"
    elif kind in ("elect", "fence", "register", "restart", "shrink_isr"):
        text = _registration_text(after, p)
    elif kind in ("tick", "advance"):
        text = f"now={after.now_ms} ms"
    elif kind in GROUP_KINDS:
        text = _group_effect(before, action, after)
    else:
        text = ""
    new_acks = after.acked[len(before.acked) :]
    if new_acks:
        acked = ", ".join(f"v{a.value} at offset {a.offset}" for a in new_acks)
        text = f"{text}; client acknowledged {acked}" if text else f"client acknowledged {acked}"
    return text


GROUP_KINDS = frozenset(
    (
        "join",
        "sync",
        "heartbeat",
        "poll",
        "process",
        "commit",
        "leave",
        "consumer_crash",
        "consumer_restart",
        "poll_timeout",
        "session_expire",
        "rebalance_timeout",
        "retention",
    )
)


def _group_text(state: State) -> str:
    group = state.consumption.group
    offsets = " ".join(f"p{p}={o}" for p, o in enumerate(group.offsets))
    return f"group {GROUP_STATE_NAMES[group.state]} gen {group.generation}, committed {offsets}"


def _consumer_text(state: State, c: int) -> str:
    consumer = state.consumption.consumers[c]
    if not consumer.alive:
        return f"consumer {c} down"
    owned = ",".join(f"p{p}@{consumer.positions[p]}" for p in consumer.owned) or "nothing"
    return (
        f"consumer {c} {CONSUMER_PHASE_NAMES[consumer.phase]} (member {consumer.member_id}, "
        f"gen {consumer.generation}) owns {owned}"
    )


def _group_effect(before: State, action: Action, after: State) -> str:
    world = after.consumption
    if action.kind == "retention":
        p = action.partition
        old = before.consumption.logs[p].log_start
        return f"log start of p{p}: {old} -> {world.logs[p].log_start}"
    if action.kind in ("session_expire", "rebalance_timeout"):
        return _group_text(after)
    parts = [_consumer_text(after, action.arg)]
    if action.kind == "poll":
        polled = world.consumers[action.arg].buffer
        if polled:
            parts.append("got " + " ".join(f"p{p}:{o}" for p, o in polled))
        for event in world.resets[len(before.consumption.resets) :]:
            target = event.to_offset if event.to_offset >= 0 else "the error (stops)"
            parts.append(f"p{event.partition} reset by {event.policy} to {target}")
    if action.kind in ("join", "sync", "commit", "leave", "poll_timeout"):
        parts.append(_group_text(after))
    return "; ".join(parts)


def render_text(violation: Violation) -> str:
    kind = "Invariant" if violation.invariant in INVARIANTS else "Property"
    lines = [f"{kind} {violation.invariant} violated: {violation.message}", ""]
    lines.append("Initial state:")
    lines.append(state_text(violation.initial))
    before = violation.initial
    for number, (action, after) in enumerate(violation.trace, 1):
        detail = effect(before, action, after)
        lines.append(f"{number:3d}. {action.describe()}" + (f"  -> {detail}" if detail else ""))
        before = after
    lines.append("")
    lines.append("Final state:")
    lines.append(state_text(before))
    return "\n".join(lines)


def state_text(state: State) -> str:
    """The controller's record and every broker's log, one indented line each."""
    lines = []
    for p in range(len(state.controller.partitions)):
        lines.append(f"  controller p{p}: {_registration_text(state, p)}")
        for b, broker in enumerate(state.brokers):
            status = "up" if broker.alive else "down"
            lines.append(f"  {broker_name(b)} ({status}) p{p}: {_log_text(state, b, p)}")
    if state.consumption is not None:
        world = state.consumption
        starts = " ".join(f"p{p}={log.log_start}" for p, log in enumerate(world.logs))
        lines.append(f"  {_group_text(state)}; log start {starts}")
        lines += [f"  {_consumer_text(state, c)}" for c in range(len(world.consumers))]
    return "\n".join(lines)


def state_details(state: State) -> str:
    """What `state_text` leaves out, one indented line each: every broker's view of the
    leadership and the responses in flight to it; the controller's fenced brokers and the
    network; the clock and the client's acknowledged and waiting writes."""
    lines = []
    for b, broker in enumerate(state.brokers):
        for p, view in enumerate(broker.views):
            if view is None:
                seen = "no metadata"
            elif view.leader == NO_LEADER:
                seen = f"no leader at epoch {view.leader_epoch}"
            else:
                seen = f"leader {broker_name(view.leader)} at epoch {view.leader_epoch}"
            flight = ", ".join(
                f"{broker_name(m.leader)}'s answer ({_response_text(m)})" for m in state.slots[b][p]
            )
            lines.append(
                f"  {broker_name(b)} p{p} sees {seen}"
                + (f"; in flight: {flight}" if flight else "")
            )
    lines.append(
        f"  fenced={mask_name(state.controller.fenced)} isolated={mask_name(state.isolated)} "
        f"cut from controller={mask_name(state.controller_cut)} now={state.now_ms} ms"
    )
    acked = ", ".join(f"v{a.value}@{a.offset}" for a in state.acked) or "none"
    waiting = ", ".join(f"v{e.value}" for producer in state.producers for e in producer.pending)
    lines.append(f"  acknowledged: {acked}; waiting: {waiting or 'none'}")
    return "\n".join(lines)


def render_mermaid(violation: Violation) -> str:
    brokers = [broker_name(b) for b in range(len(violation.initial.brokers))]
    lines = ["sequenceDiagram", "    participant Client", "    participant Controller"]
    lines += [f"    participant {name}" for name in brokers]
    everyone = f"{brokers[0]},{brokers[-1]}"
    before = violation.initial
    for action, after in violation.trace:
        lines += [f"    {line}" for line in _arrows(before, action, after, everyone)]
        before = after
    lines.append(f"    Note over {everyone}: VIOLATED {violation.invariant}: {violation.message}")
    return "\n".join(lines) + "\n"


def _arrows(before: State, action: Action, after: State, everyone: str) -> list[str]:
    b, p, kind = action.broker, max(action.partition, 0), action.kind
    name = broker_name(b) if b >= 0 else ""
    detail = effect(before, action, after).replace(";", ",")
    if kind in ("produce", "retry"):
        value = action.arg if kind == "retry" else after.budget.writes
        return [f"Client->>{name}: Produce v{value}", f"Note over {name}: {detail}"]
    if kind == "consume":
        return [f"Client->>{name}: Fetch (consumer)", f"{name}-->>Client: {detail}"]
    if kind == "fetch":
        leader = broker_name(before.brokers[b].views[p].leader)
        return [f"{name}->>{leader}: Fetch", f"{leader}-->>{name}: {detail.split(': ', 1)[-1]}"]
    if kind == "handle_response":
        return [f"Note over {name}: {detail}"]
    if kind == "deliver":
        return [f"Controller->>{name}: metadata ({detail})"]
    if kind == "shrink_isr":
        return [
            f"{name}->>Controller: AlterPartition (drop {broker_name(action.arg)})",
            f"Note over Controller: {detail}",
        ]
    if kind in ("elect", "fence", "register"):
        return [f"Note over Controller: {action.describe()}: {detail}"]
    if kind == "crash":
        return [f"Note over {name}: crash ({CRASH_NAMES[action.arg]}): {detail}"]
    if kind == "restart":
        return [f"Note over {name}: restart", f"Note over Controller: {detail}"]
    if kind == "flush":
        return [f"Note over {name}: fsync"]
    return [f"Note over {everyone}: {action.describe()}" + (f" ({detail})" if detail else "")]
