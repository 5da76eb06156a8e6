"""Reading, validating and exporting histories; the `replog analyze` entry point."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from jepsen_py import analyze, edn, importers
from jepsen_py.history import HistoryError, Op, parse_jsonl, write_jsonl

DATA = Path(__file__).resolve().parent.parent / "data"


def _line(process: object, kind: str, f: str = "read", value: object = None, index: int = 0) -> str:
    record = {
        "index": index,
        "time": index,
        "process": process,
        "type": kind,
        "f": f,
        "value": value,
    }
    return json.dumps(record)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([_line(0, "ok")], "line 1: ok completion for process 0, which has no open op"),
        (
            [_line(0, "invoke"), _line(0, "invoke")],
            "line 2: process 0 invokes while it has an open op",
        ),
        (
            [_line(0, "invoke"), _line(0, "info"), _line(0, "invoke")],
            "line 3: process 0 invokes again",
        ),
        ([_line(0, "begin")], "line 1: unknown type 'begin'"),
        ([_line(0, "invoke"), _line(0, "ok", f="write")], "line 2: completion f 'write'"),
        (["{"], "line 1: not JSON"),
        (['{"index": 0}'], "line 1: missing field(s) time, process, type, f"),
    ],
)
def test_reader_names_the_bad_line(lines: list[str], message: str) -> None:
    with pytest.raises(HistoryError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        parse_jsonl(lines)


def test_jsonl_round_trip() -> None:
    ops = importers.porcupine_etcd((DATA / "porcupine/jepsen/etcd_001.log").read_text())
    stream = io.StringIO()
    write_jsonl(ops, stream)
    assert parse_jsonl(stream.getvalue().splitlines()) == ops


def test_edn_export_reads_back_as_the_same_history() -> None:
    ops = importers.knossos_edn(
        (DATA / "knossos/data/multi-register/good/multi-register.edn").read_text()
    )
    ops.append(Op(len(ops), len(ops), "nemesis", "info", "partition", {"n1": ["n2"]}, 'why"?'))
    stream = io.StringIO()
    edn.write_history(ops, stream)
    assert importers.knossos_edn(stream.getvalue()) == ops


def test_edn_reader_handles_comments_strings_and_errors() -> None:
    assert edn.loads('; c\n[{:a "x;\\"]" :b nil}, (1 -2) #{:k}]') == [
        {"a": 'x;"]', "b": None},
        [1, -2],
        frozenset({"k"}),
    ]
    with pytest.raises(edn.EdnError, match="line 2"):
        edn.loads("[1\n {:a}]")


def _analyze(*argv: str) -> int:
    return analyze.main(list(argv))


def test_analyze_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    etcd = DATA / "porcupine/jepsen"
    assert _analyze(str(etcd / "etcd_002.log"), "--format", "porcupine-etcd") == 0
    html = tmp_path / "v.html"
    assert (
        _analyze(str(etcd / "etcd_000.log"), "--format", "porcupine-etcd", "--html", str(html)) == 1
    )
    assert "<svg" in html.read_text()
    assert _analyze(str(etcd / "etcd_002.log"), "--format", "porcupine-kv") == 2
    assert (
        _analyze(str(etcd / "etcd_002.log"), "--format", "porcupine-etcd", "--time-limit", "0") == 3
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_text(_line(0, "ok") + "\n")
    assert _analyze(str(bad), "--checker", "queue") == 2
    assert "line 1" in capsys.readouterr().err
    out = tmp_path / "h.edn"
    kv = DATA / "porcupine/kv/c01-ok.txt"
    assert _analyze(str(kv), "--format", "porcupine-kv", "--json", "--export-edn", str(out)) == 0
    assert json.loads(capsys.readouterr().out)["valid"] is True
    assert out.read_text().startswith("[{:index 0")
