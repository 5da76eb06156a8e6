"""The safety matrix as a CI gate: regenerating it with the default bounds must give the
committed reports/safety-matrix.md, cell by cell (about a minute and a half on two
cores: every row of the matrix searched breadth-first, in one worker per core)."""

from pathlib import Path

import pytest

from model.config import Config
from specs import matrix

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
    cells = {n: matrix.Cell(False, 0) for n in matrix.COLUMNS}
    table = {
        "defaults": cells,
        "acks=1": {**cells, "NoAcknowledgedWriteLost": matrix.Cell(True, 3)},
    }
    text = matrix.render_markdown(table, matrix.Bounds())
    parsed = matrix.parse_markdown(text)
    assert parsed["acks=1"]["NoAcknowledgedWriteLost"] == "violated (3)"
    flipped = {**parsed, "acks=1": {**parsed["acks=1"], "NoAcknowledgedWriteLost": "held"}}
    assert matrix.differences(parsed, flipped) == [
        "acks=1 / NoAcknowledgedWriteLost: violated (3) -> held"
    ]


def test_a_search_stopped_by_time_is_an_error_not_a_cell():
    bounds = matrix.Bounds(depths=(("zombie", 40),), time_limit_s=0.0)
    with pytest.raises(matrix.NotDeterministic, match="time limit"):
        matrix.compute(bounds, jobs=1)


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
