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


def test_edn_reader_decodes_unicode_escapes_and_maps_as_keys() -> None:
    assert edn.loads('"caf\\u00e9 \\u00E9"') == "café é"
    assert edn.loads("{{1 2, :a 3} 4}") == {frozenset({(1, 2), ("a", 3)}): 4}
    with pytest.raises(edn.EdnError, match=r"^line 2: string escape \\u needs four hex digits"):
        edn.loads('[\n"\\u00"]')


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


def _jsonl(*ops: tuple[str, str, object]) -> str:
    """One client op per (type, f, value), all on process 0, indexed in order."""
    return "".join(
        _line(0, kind, f, value, index) + "\n" for index, (kind, f, value) in enumerate(ops)
    )


_BAD_INPUT = {
    "kv value not a pair": (
        _jsonl(("invoke", "put", 5), ("ok", "put", 5)),
        ["--model", "kv"],
        "line 1: put value must be [key, string], got 5",
    ),
    "kv get result not a pair": (
        _jsonl(("invoke", "get", ["k", None]), ("ok", "get", 5)),
        ["--model", "kv"],
        "line 2: get result must be [key, string], got 5",
    ),
    "log append not a pair": (
        _jsonl(("invoke", "append", "x"), ("ok", "append", ["k", 0])),
        ["--model", "log"],
        "line 1: append value must be [key, argument], got 'x'",
    ),
    "log read offset not an integer": (
        _jsonl(("invoke", "read", ["k", "0"]), ("ok", "read", ["k", None])),
        ["--model", "log"],
        "line 1: read value must be [key, integer offset], got ['k', '0']",
    ),
    "op the model lacks": (
        _jsonl(("invoke", "delete", None), ("ok", "delete", None)),
        ["--model", "etcd-register"],
        "line 1: the etcd-register model has no 'delete' op (expected read, write, cas)",
    ),
    "cas value not a pair": (
        _jsonl(("invoke", "cas", 1), ("ok", "cas", 1)),
        ["--model", "cas-register"],
        "line 1: cas value must be [old new], got 1",
    ),
    "txn micro-op malformed": (
        _jsonl(("invoke", "txn", [["write", "x"]]), ("ok", "txn", [["write", "x"]])),
        ["--model", "multi-register"],
        "line 1: txn micro-op must be [read|write string-key scalar], got ['write', 'x']",
    ),
    "durability poll value a list": (
        _jsonl(("invoke", "poll", None), ("ok", "poll", [1, 2])),
        ["--checker", "durability"],
        "line 2: poll completion value must be {key: [[offset, value], ...]}, got [1, 2]",
    ),
    "durability polled value a list": (
        _jsonl(("invoke", "poll", None), ("ok", "poll", {"k": [[0, [1]]]})),
        ["--checker", "durability"],
        "line 2: a record's value must be a number, string, boolean or null, not a list or map, "
        "got [0, [1]]",
    ),
    "queue polled value a map": (
        _jsonl(("invoke", "poll", None), ("ok", "poll", {"k": [[0, {"v": 1}]]})),
        ["--checker", "queue"],
        "line 2: a record's value must be a number, string, boolean or null, not a list or map, "
        "got [0, {'v': 1}]",
    ),
    "queue records not a list": (
        _jsonl(("invoke", "poll", None), ("ok", "poll", {"k": 5})),
        ["--checker", "queue"],
        "line 2: poll completion value must be {key: [[offset, value], ...]}, got 5 for 'k'",
    ),
    "queue sent value a list": (
        _jsonl(("invoke", "send", ["k", [1]]), ("ok", "send", [0, [1]])),
        ["--checker", "queue"],
        "line 1: a record's value must be a number, string, boolean or null, not a list or map, "
        "got [1]",
    ),
    "send offset not an integer": (
        _jsonl(("invoke", "send", ["k", 1]), ("ok", "send", ["0", 1])),
        ["--checker", "durability"],
        "line 2: send offset must be an integer, got '0'",
    ),
    "edn short unicode escape": (
        '[{:process 0, :type :invoke, :f :read, :value "\\u12"}]',
        ["--format", "knossos-edn"],
        "line 1: string escape \\u needs four hex digits",
    ),
    "edn index not an integer": (
        '[{:process 0, :type :invoke, :f :read, :index "a"}]',
        ["--format", "knossos-edn"],
        "line 1: entry 1: :index and :time must be integers",
    ),
}


@pytest.mark.parametrize(("text", "args", "message"), _BAD_INPUT.values(), ids=list(_BAD_INPUT))
def test_analyze_rejects_malformed_values_with_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    args: list[str],
    message: str,
) -> None:
    path = tmp_path / "history"
    path.write_text(text)
    assert _analyze(str(path), *args) == 2
    captured = capsys.readouterr()
    assert captured.err == f"replog analyze: {path}: {message}\n"
    assert captured.out == ""
