"""The safety matrix as a CI gate: regenerating it with the default bounds must give the
committed reports/safety-matrix.md, cell by cell (about a minute and a half on two
cores: every row of the matrix searched breadth-first, in one worker per core)."""

from pathlib import Path

from model.config import Config
from model.machine import ReplicationModel
from replog_cli import main
from specs import explorer, matrix
from specs.invariants import select
from specs.scopes import SCOPES

COMMITTED = Path(__file__).resolve().parents[2] / "reports" / "safety-matrix.md"
REGENERATE = "regenerate it with `replog matrix` if the change is intended"


def test_regenerating_the_matrix_flips_no_cell_of_the_committed_one():
    committed = COMMITTED.read_text()
    bounds = matrix.Bounds()
    assert f"Scopes searched: {bounds.describe()}." in committed.replace("\n", " "), (
        f"{COMMITTED} was made with other bounds than replog matrix's defaults; {REGENERATE}"
    )
    fresh = matrix.render_markdown(matrix.compute(bounds), bounds)
    flipped = matrix.differences(matrix.parse_markdown(committed), matrix.parse_markdown(fresh))
    assert not flipped, (
        f"{len(flipped)} cell(s) of {COMMITTED.name} flipped ({REGENERATE}):\n  "
        + "\n  ".join(flipped)
    )


def test_render_parse_round_trip_and_flipped_cells_are_named():
    cells = {n: matrix.Cell("held") for n in matrix.COLUMNS}
    table = {
        "defaults": cells,
        "acks=1": {**cells, "NoAcknowledgedWriteLost": matrix.Cell("violated", 3)},
    }
    text = matrix.render_markdown(table, matrix.Bounds())
    parsed = matrix.parse_markdown(text)
    assert parsed["acks=1"]["NoAcknowledgedWriteLost"] == "violated (3)"
    flipped = {**parsed, "acks=1": {**parsed["acks=1"], "NoAcknowledgedWriteLost": "held"}}
    assert matrix.differences(parsed, flipped) == [
        "acks=1 / NoAcknowledgedWriteLost: violated (3) -> held"
    ]


def test_a_search_stopped_by_time_leaves_its_cells_unknown_never_held():
    bounds = matrix.Bounds(depths=(("zombie", 8),), time_limit_s=0.0)
    table = matrix.compute(bounds, jobs=1)
    assert {cell.render() for row in table.values() for cell in row.values()} == {"unknown"}
    assert not matrix.complete(table)
    parsed = matrix.parse_markdown(matrix.render_markdown(table, bounds))
    assert parsed["defaults"]["NoAcknowledgedWriteLost"] == "unknown"


def test_a_violation_found_in_one_scope_outranks_another_scopes_unknown():
    lost = "NoAcknowledgedWriteLost"
    elect = ReplicationModel(Config.parse(["acks=1"]), SCOPES["elect"].scope)
    found = explorer.bfs(elect, select([lost]), explorer.Limits(depth_max=3), collect=True)
    stopped = explorer.Outcome(None, explorer.Stats(stopped_by="time"))
    row = {lost: matrix.Cell("held"), "LogMatching": matrix.Cell("held")}
    matrix.merge(row, stopped)
    assert row == {lost: matrix.Cell("unknown"), "LogMatching": matrix.Cell("unknown")}
    matrix.merge(row, found)
    matrix.merge(row, stopped)
    assert row == {lost: matrix.Cell("violated", 3), "LogMatching": matrix.Cell("unknown")}
    finished = explorer.Outcome(None, explorer.Stats(stopped_by="depth"))
    fresh = {lost: matrix.Cell("held")}
    matrix.merge(fresh, finished)
    assert fresh == {lost: matrix.Cell("held")} and matrix.complete({"row": fresh})


def test_matrix_cli_exits_3_when_a_cell_is_unknown(tmp_path, capsys):
    out = tmp_path / "matrix.md"
    code = main(["matrix", "--time-limit", "0.000001", "--jobs", "1", "--out", str(out)])
    assert code == 3
    assert "| defaults | unknown |" in out.read_text()
    assert main(["matrix", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.endswith(
        f"replog matrix: --out: {tmp_path} is a directory, not a file; "
        "it names the Markdown file to write\n"
    )


def test_committed_matrix_tells_the_operational_claims():
    parsed = matrix.parse_markdown(COMMITTED.read_text())
    assert list(parsed) == [Config.parse(list(s)).label() for s, _ in matrix.ROWS]
    for row in parsed.values():
        assert list(row) == list(matrix.COLUMNS)
    assert set(parsed["defaults"].values()) == {"held"}

    def violated(row, *invariants):
        return all(parsed[row][name].startswith("violated") for name in invariants)

    assert violated("acks=1", "NoAcknowledgedWriteLost")
    assert violated("min.insync.replicas=1", "NoAcknowledgedWriteLost")
    assert violated("unclean.leader.election.enable=true", "LeaderCompleteness")
    assert violated("replog.truncation=high-watermark", "LeaderCompleteness")
    assert violated("replog.truncation=kip-101", "NoDivergence")
    assert violated("replog.isr.expand=hw-only", "NoAcknowledgedWriteLost")
    assert violated("replog.fetch.epoch-fencing=false", "NoDivergence")
    assert violated("replog.elr=false", "NoAcknowledgedWriteLost")
    assert violated("replog.hw.min-isr-guard=false", "LeaderCompleteness")
