from dataclasses import replace
from functools import cache

import networkx as nx
import pytest

from model.config import Config
from model.machine import ReplicationModel
from model.state import NO_LEADER, members
from replog_cli import main
from specs.graph import (
    ENVIRONMENT_KINDS,
    SYSTEM_KINDS,
    GraphTooLarge,
    build,
    check_liveness,
    elected,
    export,
)
from specs.scopes import SCOPES

# The liveness scope without its write: the followers still fall out of the ISR (they
# have not fetched within replica.lag.time.max.ms) and the space is 15 times smaller.
OFFLINE = replace(SCOPES["offline"].scope, max_writes=0)


@cache
def liveness(*settings):
    return check_liveness(Config.parse(list(settings)), OFFLINE)


def test_every_action_kind_is_either_system_or_environment():
    kinds = {name.removeprefix("_do_") for name in dir(ReplicationModel) if name.startswith("_do_")}
    assert not SYSTEM_KINDS & ENVIRONMENT_KINDS
    assert kinds == SYSTEM_KINDS | ENVIRONMENT_KINDS


def test_without_elr_the_partition_stays_offline_once_its_last_isr_member_crashes():
    result, _ = liveness("replog.elr=false")
    assert not result.holds and result.leaderless_sinks > 0 and result.stuck_states > 0
    violation = result.counterexample
    kinds = [action.kind for action, _ in violation.trace]
    assert kinds[:5] == ["tick", "shrink_isr", "shrink_isr", "crash", "fence"]
    final = violation.trace[-1][1]
    reg = final.controller.partitions[0]
    (crashed,) = (b for b, broker in enumerate(final.brokers) if not broker.alive)
    assert reg.leader == NO_LEADER and members(reg.isr) == (crashed,) and reg.elr == 0
    assert "the live replicas (B, C) may not lead" in violation.message
    model = ReplicationModel(Config.parse(["replog.elr=false"]), OFFLINE)
    state = violation.initial
    for action, after in violation.trace:
        assert model.step(state, action) == after
        state = after


def test_defaults_hold_in_the_same_scope_thanks_to_the_elr():
    result, found = liveness()
    assert result.holds and result.counterexample is None and result.stuck_states == 0
    # Not vacuous: the leader crashes after the ISR shrank to it alone, so no live ISR
    # member is left to elect; the eligible leader replicas (KIP-966) are what is left.
    states = [found.state(node) for node in found.graph.nodes]
    assert any(
        not elected(s)
        and s.controller.partitions[0].leader == NO_LEADER
        and all(not s.brokers[b].alive for b in members(s.controller.partitions[0].isr))
        for s in states
    )


def test_unclean_election_restores_availability_without_elr():
    result, _ = liveness("replog.elr=false", "unclean.leader.election.enable=true")
    assert result.holds


def test_graph_export_is_graphml_with_trace_style_labels(tmp_path):
    found = build(ReplicationModel(Config(), OFFLINE))
    path = tmp_path / "states.graphml"
    export(found, path)
    read = nx.read_graphml(path)
    assert read.number_of_nodes() == found.graph.number_of_nodes() > 100
    assert read.number_of_edges() == found.graph.number_of_edges()
    assert read.nodes["0"]["label"].startswith("  controller p0: leader=")
    assert read.nodes["0"]["elected"] is True and read.nodes["0"]["depth"] == 0
    crash = next(data for _, _, data in read.edges(data=True) if data["kind"] == "crash")
    assert crash["environment"] is True and "crashes" in crash["label"]
    with pytest.raises(ValueError, match="GraphML"):
        export(found, tmp_path / "states.dot")


def test_a_graph_larger_than_the_bound_is_a_clear_error():
    with pytest.raises(GraphTooLarge, match="more than 500 states"):
        build(ReplicationModel(Config(), SCOPES["elect"].scope), max_nodes=500)


def test_cli_liveness_and_graph(tmp_path, capsys):
    argv = ["check", "--liveness", "--config", "replog.elr=false", "--max-writes", "0"]
    assert main([*argv, "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "scope offline: LeaderEventuallyElected FAILS" in out
    text = (tmp_path / "trace.txt").read_text()
    assert text.startswith("Property LeaderEventuallyElected violated: p0 has no leader")
    assert (tmp_path / "trace.mmd").read_text().startswith("sequenceDiagram")
    graph = tmp_path / "g.graphml"
    assert main(["check", "--graph", str(graph), "--max-writes", "0"]) == 0
    assert graph.exists() and "states" in capsys.readouterr().out
    assert main(["check", "--graph", str(graph), "--scope", "elect", "--scope", "zombie"]) == 2
    assert main(["check", "--liveness", "--scope", "elect", "--max-nodes", "500"]) == 2
    assert "more than 500 states" in capsys.readouterr().err
