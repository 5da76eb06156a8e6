"""The net under every subcommand (replog_cli.main): whatever a subcommand lets escape
becomes one line on stderr and exit 2, never a traceback.

Each case registers a stand-in subcommand that raises, and calls `main` in process.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import replog_cli


def _raise_value_error(argv: list[str]) -> int:
    raise ValueError("the stand-in broke")


def _raise_in_group(argv: list[str]) -> int:
    # The shape trio gives a failing task: the cause two groups deep.
    leaf = FileNotFoundError(2, "No such file or directory", "/nowhere/data")
    raise BaseExceptionGroup("outer", [ExceptionGroup("inner", [leaf])])


def _raise_interrupt(argv: list[str]) -> int:
    raise KeyboardInterrupt


def _exit_code_of_argv(argv: list[str]) -> int:
    return int(argv[0])


def _run(
    monkeypatch: pytest.MonkeyPatch, command: Callable[[list[str]], int], argv: list[str]
) -> int:
    monkeypatch.setitem(
        replog_cli.COMMANDS, "standin", (f"{__name__}:{command.__name__}", "a test stand-in")
    )
    monkeypatch.delenv("REPLOG_TRACEBACK", raising=False)
    return replog_cli.main(["standin", *argv])


def test_an_unexpected_exception_is_one_line_and_its_traceback_is_saved(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(monkeypatch, _raise_value_error, []) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert err.startswith("replog standin: internal error: ValueError: the stand-in broke")
    saved = Path(err.rsplit("traceback in ", 1)[1].rstrip(")\n"))
    try:
        assert "Traceback" in saved.read_text()
        assert "_raise_value_error" in saved.read_text()
    finally:
        saved.unlink()


def test_an_os_error_inside_exception_groups_names_its_cause(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(monkeypatch, _raise_in_group, []) == 2
    assert capsys.readouterr().err == "replog standin: No such file or directory: /nowhere/data\n"


def test_an_interrupt_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(monkeypatch, _raise_interrupt, []) == 2
    assert capsys.readouterr().err == "replog standin: interrupted\n"


def test_a_subcommand_keeps_its_own_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _run(monkeypatch, _exit_code_of_argv, ["3"]) == 3


def test_replog_traceback_shows_the_traceback_for_debugging(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(
        replog_cli.COMMANDS, "standin", (f"{__name__}:_raise_value_error", "a test stand-in")
    )
    monkeypatch.setenv("REPLOG_TRACEBACK", "1")
    with pytest.raises(ValueError, match="the stand-in broke"):
        replog_cli.main(["standin"])
