import json

from replog_cli import main


def test_check_holds_on_defaults_in_a_small_scope(capsys):
    assert main(["check", "--scope", "zombie", "--max-writes", "1", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "no violation (every scope exhausted)" in out
    assert "scope zombie" in out and "exhausted" in out


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
