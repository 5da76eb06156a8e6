"""The z3 bounded model checker: it follows the model step by step, agrees with the
explorer on the safety-matrix configurations, replays every counterexample, and its CLI.

Bounds are chosen for CI (the file runs in well under a minute on two cores): the
cross-check runs every matrix row in MIXED, a scope with one of each fault the encoding
covers, to depth 5 (where only acks=1 breaks), plus the 7-step KAFKA-15583 story in a
one-write disk scope. Deeper agreement (every row, the default suite) is what
`replog check --engine both` checks on demand; its cost grows about 2.5x per step.
"""

import json
import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import pytest
import z3

from model.config import Config
from model.machine import Action, ReplicationModel, Scope
from replog_cli import main
from specs import check, explorer, matrix, smt, smt_check
from specs.invariants import INVARIANTS, select
from specs.scopes import SCOPES
from specs.smt_actions import Encoding
from specs.smt_state import Unsupported, abstract, normalize

MIXED = Scope(
    brokers=3,
    max_writes=1,
    max_retries=0,
    max_crashes=1,
    max_data_loss_crashes=1,
    crash_kinds=("kill", "disk"),
    max_elections=1,
    max_network_changes=1,
    network_faults=("controller",),
    max_clock_advances=1,
    consumers=False,
)
ROW_DEPTH = 5
STORY = (("replog.hw.min-isr-guard=false",), replace(SCOPES["disk"].scope, max_writes=1), 7)
WALK_SCOPE = replace(MIXED, max_writes=2, max_crashes=2, max_elections=2, max_network_changes=2)
# Every value of every setting the encoding branches on, in four configurations.
WALK_CONFIGS = (
    (),
    ("acks=1", "replog.truncation=kip-101", "replog.isr.expand=hw-only", "replog.elr=false"),
    (
        "min.insync.replicas=1",
        "unclean.leader.election.enable=true",
        "replog.truncation=high-watermark",
        "replog.fetch.epoch-fencing=false",
        "replog.hw.min-isr-guard=false",
    ),
    ("acks=0", "enable.idempotence=false", "replication.factor=2", "min.insync.replicas=1"),
)


def shortest_per_invariant(settings, scope, depth):
    """(explorer, smt): invariant -> length of its shortest counterexample, same bounds.
    Every SMT counterexample is also stepped through the model here."""
    model = ReplicationModel(Config.parse(list(settings)), scope)
    names = list(matrix.COLUMNS)
    explicit = explorer.bfs(model, select(names), explorer.Limits(depth_max=depth), collect=True)
    assert explicit.stats.stopped_by in ("", "depth")
    symbolic = smt.search(model, names, depth, collect=True)
    assert symbolic.stats.depth == depth or not set(names) - set(symbolic.violations)
    for name, violation in symbolic.violations.items():
        assert_replays(model, violation, name)
    return (
        {name: len(v.trace) for name, v in explicit.violations.items()},
        {name: len(v.trace) for name, v in symbolic.violations.items()},
    )


def assert_replays(model, violation, name):
    state = violation.initial
    before = None
    for action, after in violation.trace:
        assert action in model.enabled_actions(state)
        before, state = state, model.step(state, action)
        assert state == after
    assert INVARIANTS[name].violated(before, state) is not None


def test_both_engines_agree_on_every_matrix_row_and_a_deeper_story():
    # The longest case first, so two workers finish together.
    cases = [STORY] + [(settings, MIXED, ROW_DEPTH) for settings, _ in matrix.ROWS]
    with ProcessPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(shortest_per_invariant, *zip(*cases, strict=True)))
    differ = {
        Config.parse(list(settings)).label(): result
        for (settings, _, _), result in zip(cases, results, strict=True)
        if result[0] != result[1]
    }
    assert not differ
    story, rows = (
        results[0][1],
        {s: r[1] for (s, _, _), r in zip(cases[1:], results[1:], strict=True)},
    )
    assert story == {"LeaderCompleteness": 7}
    assert rows[()] == {}
    assert rows[("acks=1",)] == {"NoAcknowledgedWriteLost": 3}


@pytest.mark.parametrize("settings", WALK_CONFIGS)
def test_the_unrolled_relation_follows_the_model_on_random_walks(settings):
    """Fix each step's action to a random model walk's: the solver must accept it and
    reach the model's states, with the same invariant verdicts, step by step."""
    model = ReplicationModel(Config.parse(list(settings)), WALK_SCOPE)
    steps = 10
    unrolling = smt.Unrolling(model, reduce=False)
    for _ in range(steps):
        unrolling.extend()
    flags = {n: [unrolling.violated(n, k) for k in range(steps + 1)] for n in INVARIANTS}
    rng = random.Random(11)
    checked = 0
    while checked < 3:
        states, actions = [model.initial_state()], []
        while len(actions) < steps and model.enabled_actions(states[-1]):
            enabled = model.enabled_actions(states[-1])
            actions.append(enabled[rng.randrange(len(enabled))])
            states.append(model.step(states[-1], actions[-1]))
        if len(actions) < steps:
            continue  # a walk that got stuck: every unrolled step must take an action
        unrolling.solver.push()
        for choice, action in zip(unrolling.choices, actions, strict=True):
            picks = [c for c, a in zip(choice, unrolling.actions, strict=True) if a == action]
            unrolling.solver.add(z3.Or(picks))
        assert unrolling.solver.check() == z3.sat, actions
        solution = unrolling.solver.model()
        decoded, claimed = unrolling.decode(solution)
        assert decoded == actions
        for k, state in enumerate(states):
            real = normalize(abstract(state, unrolling.dims), unrolling.dims)
            assert smt.difference(normalize(claimed[k], unrolling.dims), real) is None
            for name, inv in INVARIANTS.items():
                before = states[k - 1] if k else None
                expected = inv.violated(before, state) is not None
                assert z3.is_true(solution.eval(flags[name][k], True)) == expected, (name, k)
        unrolling.solver.pop()
        checked += 1


def test_a_trace_the_model_does_not_reproduce_is_an_error_not_a_violation():
    model = ReplicationModel(Config.parse(["acks=1"]), SCOPES["elect"].scope)
    unrolling = smt.Unrolling(model)
    for _ in range(3):
        unrolling.extend()
    solver = unrolling.solver
    solver.add(unrolling.violated("NoAcknowledgedWriteLost", 3))
    assert solver.check() == z3.sat
    actions, states = unrolling.decode(solver.model())
    dims = unrolling.dims
    violation = smt.replay(model, dims, actions, states, "NoAcknowledgedWriteLost")
    assert sorted(a.kind for a, _ in violation.trace) == ["deliver", "elect", "produce"]
    broker = states[3].brokers[0]
    tampered = broker._replace(replica=broker.replica._replace(hw=broker.replica.hw + 1))
    wrong = [*states[:3], states[3]._replace(brokers=(tampered, *states[3].brokers[1:]))]
    with pytest.raises(smt.EncodingError, match="step 3"):
        smt.replay(model, dims, actions, wrong, "NoAcknowledgedWriteLost")
    with pytest.raises(smt.EncodingError, match="not enabled"):
        smt.replay(model, dims, [Action("heal"), *actions[1:]], states, "NoAcknowledgedWriteLost")
    with pytest.raises(smt.EncodingError, match="does not violate"):
        smt.replay(model, dims, actions, states, "LeaderInIsr")


def test_scopes_outside_the_encoding_are_refused_with_the_reason():
    with pytest.raises(Unsupported) as refused:
        Encoding(ReplicationModel(Config(), Scope()))
    message = str(refused.value)
    for reason in ("producer retries", "consumers", "power-loss", "isolated"):
        assert reason in message


def test_check_smt_holds_on_defaults_and_says_how_far(capsys):
    args = ["check", "--engine", "smt", "--scope", "zombie", "--smt-depth", "4", "--jobs", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "engine: smt, depth <= 4" in out
    assert "smt: held: no violation within 4 steps (every scope searched to its bound)" in out
    assert "scope zombie" in out


def test_check_smt_prints_the_replayed_trace_and_writes_the_diagram(tmp_path, capsys):
    args = ["check", "--engine", "smt", "--config", "acks=1", "--scope", "elect"]
    assert main([*args, "--smt-depth", "4", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "Invariant NoAcknowledgedWriteLost violated" in out
    assert "violated after 3 steps" in out
    assert "client produces a new record to A" in out
    diagram = (tmp_path / "trace.mmd").read_text()
    assert diagram.startswith("sequenceDiagram") and "VIOLATED NoAcknowledgedWriteLost" in diagram


def test_check_smt_json(tmp_path, capsys):
    args = ["check", "--engine", "smt", "--config", "acks=1", "--scope", "elect", "--json"]
    assert main([*args, "--smt-depth", "4", "--out", str(tmp_path)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["engine"] == "smt" and report["verdict"] == "violated"
    assert report["violation"]["length"] == 3
    assert report["scopes"][0]["depth"] == 3 and report["scopes"][0]["bound"] == 4


def test_check_both_agrees_and_exits_like_the_explorer(tmp_path, capsys):
    base = ["check", "--engine", "both", "--smt-depth", "4", "--jobs", "1", "--out", str(tmp_path)]
    assert main([*base, "--scope", "zombie"]) == 0
    assert "both: held: no violation within 4 steps" in capsys.readouterr().out
    assert main([*base, "--scope", "elect", "--config", "acks=1"]) == 1
    out = capsys.readouterr().out
    assert "explicit: scope elect   VIOLATED" in out and "smt:      scope elect   VIOLATED" in out


def test_check_both_exits_2_when_the_engines_disagree(monkeypatch, tmp_path, capsys):
    def blind(model, invariants, depth, **_):
        return smt.SmtOutcome(smt.SmtStats(bound=depth, depth=depth))

    monkeypatch.setattr(smt, "search", blind)
    args = ["check", "--engine", "both", "--config", "acks=1", "--scope", "elect"]
    assert main([*args, "--smt-depth", "4", "--jobs", "1", "--out", str(tmp_path)]) == 2
    assert "the engines disagree" in capsys.readouterr().err


def test_a_solver_stopped_by_its_time_limit_is_unknown_exit_3(capsys):
    args = ["check", "--engine", "smt", "--scope", "outage", "--smt-depth", "7", "--jobs", "1"]
    assert main([*args, "--time-limit", "0.001", "--json"]) == 3
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "unknown"
    assert report["scopes"][0]["verdict"] == "unknown"
    assert report["scopes"][0]["stopped_by"] == "time"
    assert main([*args, "--time-limit", "0.001"]) == 3
    out = capsys.readouterr().out
    assert "scope outage  UNKNOWN" in out and "time limit hit before the bound" in out
    assert "smt: unknown: no violation within" in out


def test_smt_progress_reports_while_the_solver_works(monkeypatch):
    monkeypatch.setattr(check, "PROGRESS_EVERY_S", 0.05)
    lines: list[str] = []
    scopes = [("zombie", SCOPES["zombie"].scope, 40)]
    runs = smt_check.run_smt_check(
        Config.parse([]), scopes, ["NoAcknowledgedWriteLost"], 4, on_progress=lines.append
    )
    assert runs[0].verdict == "held"
    assert lines and all(line.startswith("smt scope zombie: every trace of <= ") for line in lines)


def test_engine_arguments_are_checked(capsys):
    with pytest.raises(SystemExit) as refused:
        main(["check", "--engine", "smt", "--smt-depth", "0"])
    assert refused.value.code == 2
    assert "argument --smt-depth: must be an integer from 1 to" in capsys.readouterr().err
    assert main(["check", "--engine", "smt", "--consumers"]) == 2
    assert "does not encode consumers" in capsys.readouterr().err
    assert main(["check", "--engine", "both", "--mode", "random"]) == 2
    assert main(["check", "--engine", "smt", "--scope", "elect", "--max-retries", "1"]) == 2
    with pytest.raises(SystemExit) as bad:
        main(["check", "--engine", "sat"])
    assert bad.value.code == 2


def test_smt_check_reports_the_shortest_over_scopes():
    scopes = [("zombie", SCOPES["zombie"].scope, 40), ("elect", SCOPES["elect"].scope, 40)]
    runs = smt_check.run_smt_check(Config.parse(["acks=1"]), scopes, ["NoAcknowledgedWriteLost"], 4)
    assert [len(run.outcome.violation.trace) for run in runs] == [3, 3]
    assert smt_check.shortest(runs) is runs[0].outcome.violation
    assert smt_check.covered(runs) == 3
