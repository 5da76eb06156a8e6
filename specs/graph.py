"""The explored state graph of a small scope as a networkx DiGraph: export, and a
liveness check that once faults stop, a leader is eventually elected.

Nodes are symmetry-reduced states (as the explorer stores them), numbered in
breadth-first order from the initial state (node 0); an edge carries one action that
leads from one to the other. The whole reachable space of the scope is built, so the
scope's budgets, not a depth, must bound it: more than `max_nodes` states is an error.

Liveness ("with faults stopped, a leader is eventually elected"). The action kinds of
`model.machine` split into the environment's (faults, and the repairs of faults) and
the system's own. From every reachable state, using system actions only, a state where
every partition has an elected leader (a live broker that the controller records as
leader and that knows it leads, at the controller's epoch) must be reachable.
Equivalently, every terminal strongly connected component of the system-only graph
(a sink of its condensation: where the system ends up when nothing else happens)
must contain such a state. A broker that crashed stays down and a cut-off one stays cut
off: the question is whether the brokers still up get a leader without waiting for a
repair. Unclean election off is the classic way they do not.

The election budget of a scope bounds exploration, not the controller: after the
faults stop, forced elections (of a partition without a leader) get a fresh budget,
and preferred elections (moving an online partition's leadership) are left out, as no
leader needs them.
"""

from __future__ import annotations

import math
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path

import networkx as nx

from model.config import Config
from model.machine import Action, ReplicationModel, Scope
from model.state import NO_LEADER, State, broker_name, mask_name
from specs import check, symmetry
from specs.check import OnProgress, write_counterexample
from specs.explorer import Progress, Violation, replay
from specs.trace import state_details, state_text

# The environment: faults (a broker or consumer crash, a network fault, the clock
# passing the lag limit or a group timer) and their repairs (restart, heal).
ENVIRONMENT_KINDS = frozenset(
    {
        "crash",
        "restart",
        "isolate",
        "cut_controller",
        "heal",
        "tick",
        "consumer_crash",
        "consumer_restart",
        "advance",
    }
)
# The system: clients, replication, the controller's reactions (fencing a broker whose
# session lapsed, registration, elections), fsync, and the consumer group (consumers,
# the coordinator's timers, retention passes).
SYSTEM_KINDS = frozenset(
    {
        "produce",
        "retry",
        "consume",
        "fetch",
        "handle_response",
        "shrink_isr",
        "deliver",
        "fence",
        "register",
        "elect",
        "flush",
        "join",
        "sync",
        "heartbeat",
        "poll",
        "process",
        "commit",
        "leave",
        "poll_timeout",
        "session_expire",
        "rebalance_timeout",
        "retention",
    }
)
DEFAULT_MAX_NODES = 200_000
PROPERTY = "LeaderEventuallyElected"


class GraphTooLarge(ValueError):
    """The scope reaches more states than the graph may hold."""


@dataclass
class StateGraph:
    """A reachable state graph: `graph` has int nodes (0 = initial) whose `state` is the
    canonical state; each edge's `action` is a canonical-space action leading there."""

    model: ReplicationModel
    graph: nx.DiGraph
    ids: dict[State, int]

    def state(self, node: int) -> State:
        return self.graph.nodes[node]["state"]


def _canonical(model: ReplicationModel, state: State) -> State:
    return symmetry.canonical(state)[0] if model.symmetric else state


def build(
    model: ReplicationModel,
    max_nodes: int = DEFAULT_MAX_NODES,
    progress: Progress[int] | None = None,
) -> StateGraph:
    """Every state the model reaches (symmetry-reduced), every enabled action an edge.
    `progress` hears the number of states found so far."""
    graph = nx.DiGraph()
    initial = _canonical(model, model.initial_state())
    found = StateGraph(model, graph, {initial: 0})
    graph.add_node(0, state=initial)
    _explore(found, model, [0], model.enabled_actions, max_nodes, graph, progress)
    return found


def _explore(
    found: StateGraph,
    model: ReplicationModel,
    start: list[int],
    actions: Callable[[State], list[Action]],
    max_nodes: int,
    edges: nx.DiGraph,
    progress: Progress[int] | None = None,
) -> int:
    """Breadth-first from `start` along `actions`: new states become nodes of `found`,
    transitions edges of `edges`. Returns how many states were new."""
    graph, ids = found.graph, found.ids
    before = len(ids)
    queue = deque(start)
    report_at = time.perf_counter() + progress.every_s if progress is not None else math.inf
    while queue:
        if report_at < math.inf and (now := time.perf_counter()) >= report_at:
            report_at = now + progress.every_s
            progress.report(len(ids))
        node = queue.popleft()
        state = graph.nodes[node]["state"]
        for action in actions(state):
            after = _canonical(model, model.step(state, action))
            target = ids.get(after)
            if target is None:
                if len(ids) >= max_nodes:
                    raise GraphTooLarge(
                        f"the scope reaches more than {max_nodes:,} states; choose a smaller "
                        "scope (fewer writes, elections or faults) or raise the node limit"
                    )
                target = ids[after] = len(ids)
                graph.add_node(target, state=after)
                queue.append(target)
            if not edges.has_edge(node, target):
                edges.add_edge(node, target, action=action)
    return len(ids) - before


def export(found: StateGraph, path: Path) -> None:
    """Write the graph as GraphML (networkx's writer): each node labeled with the
    controller's record and every broker's log (as in a trace), whether a leader is
    elected and its BFS depth; each edge with its action in words and its kind."""
    if path.suffix.lower() != ".graphml":
        raise ValueError(f"cannot write {path}: the graph is written as GraphML (.graphml)")
    depths = nx.single_source_shortest_path_length(found.graph, 0)
    out = nx.DiGraph()
    for node, data in found.graph.nodes(data=True):
        state = data["state"]
        label = f"{state_text(state)}\n{state_details(state)}"
        out.add_node(node, label=label, elected=elected(state), depth=depths[node])
    for u, v, data in found.graph.edges(data=True):
        action = data["action"]
        out.add_edge(
            u,
            v,
            label=action.describe(),
            kind=action.kind,
            environment=action.kind in ENVIRONMENT_KINDS,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    nx.write_graphml(out, path)


def elected(state: State) -> bool:
    """Every partition has a leader that is alive, recorded by the controller, and knows
    it leads at the controller's leader epoch."""
    for p, reg in enumerate(state.controller.partitions):
        if reg.leader == NO_LEADER:
            return False
        broker = state.brokers[reg.leader]
        view = broker.views[p]
        if not broker.alive or view is None:
            return False
        if view.leader != reg.leader or view.leader_epoch != reg.leader_epoch:
            return False
    return True


@dataclass
class Liveness:
    holds: bool
    states: int  # reachable states (with faults)
    closure: int  # states only the fresh election budget reaches, after faults stop
    sinks: int  # terminal SCCs of the system-only graph
    leaderless_sinks: int
    stuck_states: int  # states from which no elected leader is reachable
    counterexample: Violation | None  # a shortest path into a leaderless sink


def check_liveness(
    config: Config,
    scope: Scope,
    max_nodes: int = DEFAULT_MAX_NODES,
    progress: Progress[int] | None = None,
) -> tuple[Liveness, StateGraph]:
    """Whether, once faults stop, every reachable state can still get a leader elected
    (see the module docstring); with the reachable state graph."""
    found = build(ReplicationModel(config, scope), max_nodes, progress)
    reachable = found.graph.number_of_nodes()
    # Enough elections for every forced one after the faults stop: a partition loses
    # its leader at most once per fencing, and each broker is fenced at most once.
    calm = ReplicationModel(
        config, replace(scope, max_elections=scope.max_elections + scope.brokers + 1)
    )
    system = nx.DiGraph()
    closure = _explore(
        found, calm, list(range(reachable)), _system_actions(calm), max_nodes, system, progress
    )
    system.add_nodes_from(found.graph.nodes)
    good = {node for node, state in found.graph.nodes(data="state") if elected(state)}
    condensed = nx.condensation(system)
    sinks = [c for c in condensed.nodes if condensed.out_degree(c) == 0]
    leaderless = [c for c in sinks if not good & condensed.nodes[c]["members"]]
    stuck = set(system.nodes) - _reaching(system, good)
    # On a finite graph the two formulations agree; a disagreement is a bug here.
    assert bool(stuck) == bool(leaderless), "leaderless sinks and stuck states disagree"
    counterexample = None
    if leaderless:
        targets = set().union(*(condensed.nodes[c]["members"] for c in leaderless))
        counterexample = _counterexample(calm, nx.compose(found.graph, system), targets)
    result = Liveness(
        holds=not leaderless,
        states=reachable,
        closure=closure,
        sinks=len(sinks),
        leaderless_sinks=len(leaderless),
        stuck_states=len(stuck),
        counterexample=counterexample,
    )
    return result, found


def _system_actions(model: ReplicationModel) -> Callable[[State], list[Action]]:
    """The system actions enabled in a state, without preferred elections."""

    def actions(state: State) -> list[Action]:
        out = []
        for action in model.enabled_actions(state):
            if action.kind in ENVIRONMENT_KINDS:
                continue
            if action.kind not in SYSTEM_KINDS:
                raise AssertionError(f"action kind {action.kind!r} is neither system nor fault")
            online = state.controller.partitions[action.partition].leader != NO_LEADER
            if action.kind == "elect" and online:
                continue
            out.append(action)
        return out

    return actions


def _reaching(graph: nx.DiGraph, targets: set[int]) -> set[int]:
    """Every node with a path to one of `targets` (the targets included)."""
    seen = set(targets)
    queue = deque(targets)
    while queue:
        for before in graph.predecessors(queue.popleft()):
            if before not in seen:
                seen.add(before)
                queue.append(before)
    return seen


def _counterexample(model: ReplicationModel, graph: nx.DiGraph, targets: set[int]) -> Violation:
    """A shortest path from the initial state (faults included) into `targets`."""
    lengths = nx.single_source_shortest_path_length(graph, 0)
    target = min((node for node in targets if node in lengths), key=lengths.__getitem__)
    path = nx.shortest_path(graph, 0, target)
    actions = [graph.edges[u, v]["action"] for u, v in pairwise(path)]
    trace = replay(model, actions)
    start = model.initial_state()
    final = trace[-1][1] if trace else start
    return Violation(PROPERTY, _why_offline(final), trace, start)


def _why_offline(state: State) -> str:
    """Why no leader can be elected any more, in a line."""
    up = [b for b, broker in enumerate(state.brokers) if broker.alive]
    down = [broker_name(b) for b in range(len(state.brokers)) if b not in up]
    live = ", ".join(broker_name(b) for b in up) or "none"
    return "; ".join(
        f"p{p} has no leader and no fault-free way to one: ISR={mask_name(reg.isr)} "
        f"ELR={mask_name(reg.elr)} fenced={mask_name(state.controller.fenced)}, down: "
        f"{', '.join(down) or 'none'}; the live replicas ({live}) may not lead"
        for p, reg in enumerate(state.controller.partitions)
    )


def describe(result: Liveness) -> str:
    verdict = "holds" if result.holds else "FAILS"
    return (
        f"{PROPERTY} {verdict}: {result.states:,} reachable states (+{result.closure:,} only "
        f"after faults stop), {result.sinks:,} terminal SCCs of the fault-free graph, "
        f"{result.leaderless_sinks:,} of them leaderless; {result.stuck_states:,} states "
        "can no longer get a leader"
    )


def _progress(name: str, on_progress: OnProgress | None) -> Progress[int] | None:
    """Graph building's progress lines, every check.PROGRESS_EVERY_S."""
    if on_progress is None:
        return None
    started = time.perf_counter()

    def report(states: int) -> None:
        elapsed_s = time.perf_counter() - started
        on_progress(
            f"scope {name}: {states:,} states in the graph, {elapsed_s:.0f} s, "
            f"{states / elapsed_s:,.0f} states/s"
        )

    return Progress(report, check.PROGRESS_EVERY_S)


def run(
    config: Config,
    scopes: list[tuple[str, Scope, int]],
    *,
    liveness: bool,
    graph_path: Path | None,
    max_nodes: int,
    out: Path | None,
    on_progress: OnProgress | None = None,
) -> int:
    """`replog check --liveness` / `--graph FILE`: 0 holds (or written), 1 fails, 2 when
    the request cannot be met (several scopes for one file, a graph too large)."""
    if graph_path is not None and len(scopes) != 1:
        print("replog check: --graph needs exactly one --scope", file=sys.stderr)
        return 2
    failed = None
    for name, scope, _ in scopes:
        progress = _progress(name, on_progress)
        try:
            if liveness:
                result, found = check_liveness(config, scope, max_nodes, progress)
                print(f"scope {name}: {describe(result)}")
                failed = failed or result.counterexample
            else:
                found = build(ReplicationModel(config, scope), max_nodes, progress)
            if graph_path is not None:
                export(found, graph_path)
                nodes, edges = found.graph.number_of_nodes(), found.graph.number_of_edges()
                print(f"scope {name}: {nodes:,} states, {edges:,} edges written to {graph_path}")
        except (GraphTooLarge, ValueError) as error:
            print(f"replog check: scope {name}: {error}", file=sys.stderr)
            return 2
    if failed is None:
        return 0
    label = config.label().replace("=", "-").replace(",", "_")
    text, diagram = write_counterexample(failed, out or Path("reports/check") / f"{label}-liveness")
    print()
    print(text.read_text(), end="")
    print(f"\ntrace: {text}\ndiagram (Mermaid): {diagram}")
    return 1
