import json

import pytest

from model.config import Config
from replog_cli import main
from specs import check, explorer
from specs.scopes import resolve

# `outage` to depth 6: about 20,000 states, a second or two; far more than a 1 ms
# time limit can search, so that limit stops it before its bound whatever the machine.
OUTAGE_6 = ["check", "--scope", "outage", "--depth", "6", "--jobs", "1"]


def test_check_holds_on_defaults_in_a_small_scope(capsys):
    assert main(["check", "--scope", "zombie", "--max-writes", "1", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "held: no violation; 1 scope(s) exhausted, 0 searched to their depth bound" in out
    assert "scope zombie  HELD" in out and "(state space exhausted)" in out


def test_a_search_stopped_by_its_time_limit_is_unknown_exit_3(capsys):
    assert main([*OUTAGE_6, "--time-limit", "0.001", "--json"]) == 3
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "unknown"
    (scope,) = report["scopes"]
    assert scope["verdict"] == "unknown" and scope["stopped_by"] == "time"
    assert scope["depth"] < scope["bound"] == 6
    assert "a larger --time-limit (or none) goes further" in scope["coverage"]


def test_the_same_search_with_enough_time_holds_to_its_bound(capsys):
    assert main([*OUTAGE_6, "--time-limit", "600"]) == 0
    out = capsys.readouterr().out
    assert "scope outage  HELD" in out
    assert "every trace of <= 6 steps explored: the depth bound" in out
    assert "held: no violation; 0 scope(s) exhausted, 1 searched to their depth bound" in out


def test_the_unknown_line_says_how_far_the_search_got(capsys):
    assert main([*OUTAGE_6, "--time-limit", "0.001"]) == 3
    out = capsys.readouterr().out
    assert "scope outage  UNKNOWN" in out
    assert "time limit hit before the depth bound: every trace of <= " in out
    assert "of 6 steps explored" in out
    assert out.rstrip().endswith(
        "unknown: no violation found, but scope outage stopped before its bound; "
        "a larger --time-limit (or none) goes further"
    )


def test_a_states_cap_is_unknown_too(capsys):
    assert main([*OUTAGE_6, "--states-max", "100", "--json"]) == 3
    (scope,) = json.loads(capsys.readouterr().out)["scopes"]
    assert scope["stopped_by"] == "states" and scope["verdict"] == "unknown"
    assert "a larger --states-max goes further" in scope["coverage"]


def test_random_walks_never_say_held(tmp_path, capsys):
    walks = ["check", "--mode", "random", "--scope", "elect", "--walks", "50", "--jobs", "1"]
    assert main(walks) == 3
    out = capsys.readouterr().out
    assert "HELD" not in out and "held" not in out
    assert "no violation in 50 random walks of <= 40 steps: a sample, not a proof" in out
    assert main([*walks, "--config", "acks=1", "--out", str(tmp_path)]) == 1


@pytest.mark.parametrize("depth", ["-1", "0"])
def test_a_depth_below_1_is_refused_naming_the_flag(depth, capsys):
    with pytest.raises(SystemExit) as refused:
        main(["check", "--depth", depth])
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"replog check: argument --depth: must be an integer >= 1, got {depth} (see --help)\n"
    )


@pytest.mark.parametrize(
    ("flag", "value", "allowed"),
    [
        ("--brokers", "0", "from 1 to 8"),
        ("--max-writes", "-1", ">= 0"),
        ("--jobs", "0", ">= 1"),
        ("--states-max", "0", ">= 1"),
        ("--seed", "-5", ">= 0"),
        ("--walks", "0", ">= 1"),
        ("--smt-depth", "0", "from 1 to 50"),
        ("--max-nodes", "0", ">= 1"),
        ("--time-limit", "-2", "seconds > 0"),
    ],
)
def test_every_numeric_bound_is_checked_up_front(flag, value, allowed, capsys):
    with pytest.raises(SystemExit) as refused:
        main(["check", flag, value])
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"argument {flag}: must be" in err and allowed in err


def test_out_naming_a_file_is_one_line_exit_2_before_the_search(tmp_path, capsys):
    a_file = tmp_path / "report.txt"
    a_file.write_text("")
    assert main(["check", "--scope", "outage", "--out", str(a_file)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # refused before the search started
    assert captured.err == (
        f"replog check: --out: {a_file} is a file, not a directory; "
        "it names the directory trace.txt and trace.mmd go in\n"
    )
    assert main(["check", "--out", str(a_file / "below")]) == 2
    assert f"{a_file} is a file, so {a_file / 'below'} cannot be a directory" in (
        capsys.readouterr().err
    )


def test_progress_lines_come_back_from_the_worker_processes(monkeypatch):
    monkeypatch.setattr(check, "PROGRESS_EVERY_S", 0.05)
    lines: list[str] = []
    scopes = resolve(["outage", "clock"])
    check.run_check(
        Config.parse([]),
        scopes,
        ["NoAcknowledgedWriteLost"],
        explorer.Limits(depth_max=6),
        jobs=2,
        on_progress=lines.append,
    )
    for name in ("outage", "clock"):
        mine = [line for line in lines if line.startswith(f"scope {name}: ")]
        assert mine, f"no progress line from scope {name}"
        assert all(
            "transitions, " in line
            and "distinct states, every trace of <= " in line
            and "of 6 steps explored" in line
            and line.endswith(" states/s")
            for line in mine
        )


def test_progress_goes_to_stderr_unless_quiet_or_json(monkeypatch, capsys):
    monkeypatch.setattr(check, "PROGRESS_EVERY_S", 0.01)
    outage_4 = ["check", "--scope", "outage", "--depth", "4", "--jobs", "1"]  # 0.1-0.5 s
    assert main(outage_4) == 0
    captured = capsys.readouterr()
    assert "replog check: scope outage: " in captured.err
    assert "replog check: scope outage: " not in captured.out
    assert main([*outage_4, "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    assert main([*outage_4, "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert json.loads(captured.out)["verdict"] == "held"


def test_check_reports_a_violation_with_trace_and_diagram(tmp_path, capsys):
    code = main(["check", "--config", "acks=1", "--scope", "elect", "--out", str(tmp_path)])
    assert code == 1
    out = capsys.readouterr().out
    assert "Invariant NoAcknowledgedWriteLost violated" in out
    assert "1. client produces a new record to A" in out
    diagram = (tmp_path / "trace.mmd").read_text()
    assert diagram.startswith("sequenceDiagram")
    assert "Client->>A: Produce v1" in diagram
    assert "VIOLATED NoAcknowledgedWriteLost" in diagram
    assert (tmp_path / "trace.txt").read_text().startswith("Invariant NoAcknowledgedWriteLost")


def test_check_json(tmp_path, capsys):
    code = main(
        ["check", "--config", "acks=1", "--scope", "elect", "--json", "--out", str(tmp_path)]
    )
    assert code == 1
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "violated"
    assert report["violation"]["length"] == 3
    assert report["config"] == {"acks": "1"}


def test_bad_arguments_exit_2(capsys):
    assert main(["check", "--config", "acks=7"]) == 2
    assert "bad value '7' for acks" in capsys.readouterr().err
    assert main(["check", "--invariant", "Nonsense"]) == 2
    assert main(["check", "--scope", "nowhere"]) == 2
    assert main(["check", "--config", "replication.factor=4"]) == 2
    assert main(["nonsense"]) == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "model", "--brokers", "0"], "argument --brokers: must be an integer from 1"),
        (["bench", "model", "--steps", "-1"], "argument --steps: must be an integer >= 1"),
        (
            ["bench", "model", "--config", "replication.factor=4"],
            "replication.factor=4 needs at least that many brokers",
        ),
        (
            ["bench", "check", "--config", "replication.factor=4"],
            "replication.factor=4 needs at least that many brokers",
        ),
        (["bench", "check", "--scope", "nowhere"], "unknown scope 'nowhere'"),
    ],
)
def test_bench_model_and_check_refuse_bad_arguments_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as refused:
        main(argv)
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_graph_naming_a_directory_is_refused_before_building(tmp_path, capsys):
    assert main(["check", "--graph", str(tmp_path), "--scope", "offline"]) == 2
    assert capsys.readouterr().err == (
        f"replog check: --graph: {tmp_path} is a directory, not a file; "
        "it names the GraphML file to write\n"
    )


def test_liveness_reports_progress_while_building_its_graph(monkeypatch, capsys):
    monkeypatch.setattr(check, "PROGRESS_EVERY_S", 0.01)
    liveness = ["check", "--liveness", "--scope", "offline", "--max-writes", "0"]
    assert main(liveness) == 0
    err = capsys.readouterr().err
    assert "replog check: scope offline: " in err and " states in the graph, " in err
    assert main([*liveness, "--quiet"]) == 0
    assert capsys.readouterr().err == ""
