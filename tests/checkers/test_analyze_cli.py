"""`replog analyze` gives one verdict per checker, the same one the campaign's terminal,
results.json and report.html show, judged with the run's recorded configuration; and
never a verdict without evidence."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jepsen_py import analyze
from jepsen_py.campaign import outputs, runner, sim
from jepsen_py.history import Op, write_jsonl

ROOT = Path(__file__).resolve().parents[2]
SENT = 10
READ_BACK = 2  # the final read finds only the first two records: eight are lost
# Lost values this long make `analyze --json` print ~0.5 MB, more than a pipe usually holds.
LARGE_VALUE_CHARS = 30_000


def _history(lost_value_chars: int = 0) -> list[Op]:
    """SENT acknowledged sends to key k, a heal, then a final read to the end that finds
    only READ_BACK of them (as after an acks=1 leader died with the rest unreplicated)."""
    padding = "x" * lost_value_chars
    events: list[tuple[object, str, str, object]] = []
    for offset in range(SENT):
        value = f"{offset}{padding}"
        events += [(0, "invoke", "send", ["k", value]), (0, "ok", "send", [offset, value])]
    events += [("nemesis", "invoke", "heal", None), ("nemesis", "info", "heal", None)]
    final = {"k": [[offset, f"{offset}{padding}"] for offset in range(READ_BACK)]}
    events += [(1, "invoke", "assign", ["k"]), (1, "ok", "assign", ["k"])]
    events += [(1, "invoke", "poll", "final"), (1, "ok", "poll", final)]
    return [Op(i, i * 1000, p, kind, f, value) for i, (p, kind, f, value) in enumerate(events)]


def _write(path: Path, ops: list[Op]) -> Path:
    with open(path, "w", encoding="utf-8") as stream:
        write_jsonl(ops, stream)
    return path


def _run_dir(tmp_path: Path, config: tuple[str, ...]) -> tuple[Path, dict]:
    """A run directory as a campaign leaves it: spec.json, history.jsonl, results.json,
    report.html (the history synthetic, the files written by the campaign's own code)."""
    spec = runner.CampaignSpec(config=config, nemeses=("kill:leader",), out=tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / runner.SPEC_FILE).write_text(json.dumps(spec.to_json()))
    history = _history()
    _write(run_dir / runner.HISTORY_FILE, history)
    return run_dir, outputs.write(run_dir, spec.to_json(), history, {})


def _analyze(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = analyze.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_empty_history_is_no_verdict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    code, out, err = _analyze(capsys, str(path))
    assert (code, err) == (2, "")
    assert out.rstrip().endswith("verdict: no verdict: no evidence (the history is empty)")
    code, out, _ = _analyze(capsys, str(path), "--json")
    document = json.loads(out)
    assert (code, document["valid"], document["exit_code"]) == (2, "unknown", 2)


def test_invocations_only_are_no_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    invoked = [op for op in _history() if op.type == "invoke" and op.is_client]
    for position, op in enumerate(invoked):
        op.process = position  # each still open at the end: never completed
    path = _write(tmp_path / "open.jsonl", invoked)
    for checker in ("all", "queue", "durability"):
        code, out, _ = _analyze(capsys, str(path), "--checker", checker)
        assert code == 2, checker
        assert (
            "verdict: no verdict: no evidence (no client op completed ok or fail: "
            f"{len(invoked)} invoked, 0 of them ended info, outcome unknown)" in out
        )


def test_a_checker_without_its_kind_of_op_has_no_evidence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sends_only = [op for op in _history() if op.f == "send"]
    path = _write(tmp_path / "sends.jsonl", sends_only)
    code, out, _ = _analyze(capsys, str(path), "--checker", "consumer")
    assert code == 2
    assert "consumer: unknown: no evidence (no consume cycle with an observed outcome)" in out
    reads = [Op(0, 0, 0, "invoke", "read", None), Op(1, 1, 0, "fail", "read", None)]
    path = _write(tmp_path / "reads.jsonl", reads)
    code, out, _ = _analyze(capsys, str(path), "--model", "cas-register")
    assert code == 2
    assert "linearizable: unknown: no evidence (no op completed with an outcome" in out


def test_unknown_f_is_reported_with_its_first_line_and_unknown_type_is_malformed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = _history()
    history[2:2] = [Op(0, 0, 5, "invoke", "frob", None), Op(0, 0, 5, "ok", "frob", None)]
    history.append(Op(0, 0, 6, "invoke", "frob", None))
    path = _write(tmp_path / "frob.jsonl", history)
    code, out, _ = _analyze(capsys, str(path))
    assert code == 1  # the lost writes still count; the frob ops are not silently dropped
    assert (
        "warning: 2 op(s) with f 'frob' (first on line 3) are read by no checker that ran "
        "(queue, durability)" in out
    )
    code, out, _ = _analyze(capsys, str(path), "--json")
    assert json.loads(out)["warnings"] == [
        "2 op(s) with f 'frob' (first on line 3) are read by no checker that ran "
        "(queue, durability)"
    ]
    lines = path.read_text().splitlines()
    lines[4] = lines[4].replace('"type":"invoke"', '"type":"begin"')
    path.write_text("\n".join(lines) + "\n")
    code, out, err = _analyze(capsys, str(path))
    assert (code, out) == (2, "")
    assert err == (
        f"replog analyze: {path}: line 5: unknown type 'begin' "
        "(expected one of ['fail', 'info', 'invoke', 'ok'])\n"
    )


def test_recorded_acks_1_shows_and_lost_writes_are_invalid_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reported contradiction: report.html's checker table said durability VALID with
    lost 8 while its anomaly list, results.json and the terminal said lost-acknowledged 8,
    and analyze claimed acks all. Every view now renders the one durability Result."""
    run_dir, results = _run_dir(tmp_path, ("acks=1",))
    lost = SENT - READ_BACK
    # results.json: the checker entry and the anomaly list.
    durability = results["checkers"]["durability"]
    assert (durability["valid"], durability["anomaly_counts"]) == (
        False,
        {"lost-acknowledged": lost},
    )
    assert results["anomalies"]["durability/lost-acknowledged"]["count"] == lost
    assert results["valid"] is False and results["exit_code"] == 1
    assert durability["stats"]["acks"] == "1"
    # report.html: the checker table row and the anomaly section.
    page = (run_dir / outputs.REPORT_FILE).read_text()
    row = re.search(
        r'<tr><td>durability</td><td><span class="badge (\w+)">(\w+)</span></td><td>(.*?)</td>',
        page,
    )
    assert row is not None
    assert row.group(1, 2) == ("invalid", "INVALID")
    assert row.group(3).startswith(f"INVALID (lost-acknowledged: {lost})<br>acks=1 (recorded)")
    assert f"<h3>durability/lost-acknowledged: {lost}</h3>" in page
    assert '<tr><td>perf</td><td><span class="badge ">MEASURED</span>' in page
    # analyze, text and JSON, reading the recorded configuration beside the history.
    history = str(run_dir / runner.HISTORY_FILE)
    code, out, _ = _analyze(capsys, history)
    assert code == 1
    assert "configuration recorded in spec.json: workload queue, acks=1, " in out
    assert f"durability: INVALID (lost-acknowledged: {lost})" in out
    assert f"  lost-acknowledged: {lost} case(s)" in out
    assert "note: acks=1 (recorded): Kafka promises nothing" in out
    assert "acks=all" not in out and "'all'" not in out
    code, out, _ = _analyze(capsys, history, "--json")
    document = json.loads(out)
    assert document["configuration"]["settings"]["acks"] == "1"
    assert document["checkers"]["durability"]["valid"] is False
    assert document["checkers"]["durability"]["anomaly_counts"] == durability["anomaly_counts"]
    assert set(document["anomalies"]) == set(results["anomalies"])


def test_unrecorded_configuration_is_said_not_defaulted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path / "imported.jsonl", _history())
    code, out, _ = _analyze(capsys, str(path))
    assert code == 1
    assert "configuration: not recorded" in out
    assert "note: acks: unknown (not recorded); durability checks only acknowledged writes" in out
    assert '"acks": null' in out
    code, out, _ = _analyze(capsys, str(path), "--json")
    assert json.loads(out)["configuration"] == {"recorded": False}


def test_a_corrupt_recorded_configuration_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, _ = _run_dir(tmp_path, ("acks=1",))
    (run_dir / runner.SPEC_FILE).write_text('{"workload": "queue"}')
    code, out, err = _analyze(capsys, str(run_dir / runner.HISTORY_FILE))
    assert (code, out) == (2, "")
    assert err.startswith(f"replog analyze: {run_dir / runner.SPEC_FILE}: cannot read the run's ")
    assert err.count("\n") == 1


def test_bad_paths_are_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    history = str(_write(tmp_path / "h.jsonl", _history()))
    cases = {
        (history, "--export-edn", "/nonexistent/x"): (
            "/nonexistent/x: directory /nonexistent does not exist"
        ),
        (history, "--export-edn", str(tmp_path)): f"{tmp_path}: is a directory; give a file path",
        (history, "--html", "/nonexistent/v.html"): (
            "/nonexistent/v.html: directory /nonexistent does not exist"
        ),
        (str(tmp_path),): f"{tmp_path}: is a directory, not a history file",
        (str(tmp_path / "missing.jsonl"),): "missing.jsonl: cannot read: No such file or directory",
    }
    (tmp_path / "binary.jsonl").write_bytes(b"\xff\xfe\x00")
    cases[(str(tmp_path / "binary.jsonl"),)] = "binary.jsonl: not UTF-8 text, so not a jsonl"
    (tmp_path / "bad.jsonl").write_text('{"index": 0, "time": 0}\n')
    cases[(str(tmp_path / "bad.jsonl"),)] = "line 1: missing field(s) process, type, f"
    for argv, message in cases.items():
        code, out, err = _analyze(capsys, *argv)
        assert (code, out) == (2, ""), argv
        assert err.startswith("replog analyze: ") and message in err, (argv, err)
        assert err.count("\n") == 1, err
    assert not (tmp_path / "x").exists()


def test_json_into_a_closed_pipe_leaves_no_traceback(tmp_path: Path) -> None:
    """`replog analyze --json | head -c 10`: the reader takes 10 bytes and goes away;
    and the same with a reader gone before the first byte (the write then fails at
    once, whatever the pipe holds). Either way: no traceback, nothing on stderr."""
    path = _write(tmp_path / "big.jsonl", _history(lost_value_chars=LARGE_VALUE_CHARS))
    command = [sys.executable, str(ROOT / "replog_cli.py"), "analyze", str(path), "--json"]
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    head = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=environment
    )
    assert head.stdout is not None and head.stderr is not None
    assert head.stdout.read(10) == b'{\n "valid"'
    head.stdout.close()
    code = head.wait(timeout=60)
    assert head.stderr.read() == b""
    assert code in (1, 2)  # 1 if the pipe took it all before the reader left
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        gone = subprocess.run(
            command,
            stdout=write_end,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env=environment,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert (gone.returncode, gone.stderr) == (2, b"")


def test_a_simulated_acks_1_campaign_and_analyze_agree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """End to end on the simulator (seeds as tests/sim's zombie-leader test): the run
    records its configuration before it starts, and analyze on its history.jsonl judges
    it with that configuration and the campaign's own checkers, to the same verdict and
    counts as results.json."""
    for seed in (1, 2, 3):
        spec = runner.CampaignSpec(
            nemeses=("partition:one",),
            time_limit_s=9,
            rate_per_s=100,
            concurrency=4,
            partitions=3,
            config=("acks=1",),
            seed=seed,
            nemesis_interval_s=4,
            out=tmp_path / str(seed),
            sim=True,
        )
        campaign = sim.run(spec, show_progress=False)
        if "durability/lost-acknowledged" in campaign.results["anomalies"]:
            break
    else:
        pytest.fail("acks=1 behind a zombie leader lost nothing under seeds 1-3")
    results = campaign.results
    recorded = json.loads((campaign.run_dir / runner.SPEC_FILE).read_text())
    assert recorded["kafka_config"]["acks"] == "1" and recorded["topic_replication_factor"] == 3
    code, out, _ = _analyze(capsys, str(campaign.run_dir / runner.HISTORY_FILE), "--json")
    document = json.loads(out)
    assert code == campaign.exit_code == 1, f"seed {seed}, run {campaign.run_dir}"
    assert document["configuration"]["source"] == runner.SPEC_FILE
    assert document["configuration"]["settings"]["acks"] == "1"
    judged = {name for name in results["checkers"] if name != "cluster"}
    assert set(document["checkers"]) == judged
    for name in judged:
        mine, theirs = document["checkers"][name], results["checkers"][name]
        assert (mine["valid"], mine["verdict"]) == (theirs["valid"], theirs["verdict"]), name
        assert mine["anomaly_counts"] == theirs["anomaly_counts"], name
    assert set(document["anomalies"]) == set(results["anomalies"])
