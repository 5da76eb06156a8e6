from pathlib import Path

from model.config import Config
from specs import matrix

COMMITTED = Path(__file__).resolve().parents[2] / "reports" / "safety-matrix.md"


def test_a_shallow_matrix_already_shows_acks_1_losing_data():
    table = matrix.compute(matrix.Bounds(depth_max=4), jobs=1)
    assert table["acks=1"]["NoAcknowledgedWriteLost"] == matrix.Cell(True, 3)
    assert all(not cell.violated for cell in table["defaults"].values())
    assert set(table) == {Config.parse(list(s)).label() for s, _ in matrix.ROWS}


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


def test_committed_matrix_has_every_row_and_column_and_the_taught_claims():
    parsed = matrix.parse_markdown(COMMITTED.read_text())
    assert list(parsed) == [Config.parse(list(s)).label() for s, _ in matrix.ROWS]
    for row in parsed.values():
        assert list(row) == list(matrix.COLUMNS)
    assert set(parsed["defaults"].values()) == {"held"}
    assert parsed["acks=1"]["NoAcknowledgedWriteLost"].startswith("violated")
    assert parsed["min.insync.replicas=1"]["NoAcknowledgedWriteLost"].startswith("violated")
    assert parsed["unclean.leader.election.enable=true"]["LeaderCompleteness"].startswith(
        "violated"
    )
