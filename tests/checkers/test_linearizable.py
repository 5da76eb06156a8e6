"""The search against generated histories and a brute-force oracle."""

from __future__ import annotations

from itertools import combinations, permutations
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jepsen_py import importers, lin_report, linearizable
from jepsen_py.history import HistoryError, Op, validate
from jepsen_py.models import AppendLog, CasRegister, EtcdRegister, Model, Operation

DATA = Path(__file__).resolve().parent.parent / "data"
REGISTER_VALUES = 3


def _register_call(draw: st.DrawFn) -> tuple[str, object]:
    f = draw(st.sampled_from(["read", "write", "cas"]))
    if f == "read":
        return f, None
    if f == "write":
        return f, draw(st.integers(0, REGISTER_VALUES - 1))
    return f, [draw(st.integers(0, REGISTER_VALUES - 1)) for _ in range(2)]


@st.composite
def linearizable_histories(draw: st.DrawFn, max_ops: int = 7) -> list[Op]:
    """Run ops one by one through the cas-register, then give each a random window around
    its instant; some become `info` (took effect, outcome unknown)."""
    model = CasRegister()
    state = model.init()
    events = []
    for position in range(draw(st.integers(1, max_ops))):
        f, value = _register_call(draw)
        legal, new_state = model.step(state, (f, value), ("ok", None))
        if f == "read":
            result, kind = state, "ok"
        else:
            result, kind = value, "ok" if legal else "fail"
        state = new_state if legal else state
        instant = 100 * position + 50
        call = instant - draw(st.integers(1, 240))
        ret = instant + draw(st.integers(1, 240))
        if kind == "ok" and f != "read" and draw(st.integers(0, 4)) == 0:
            kind = "info"
        events.append((call, position, "invoke", f, value))
        events.append((ret, position, kind, f, result))
    events.sort()
    return [
        Op(index, time, process, kind, f, value)
        for index, (time, process, kind, f, value) in enumerate(events)
    ]


def _brute_force(model: Model, ops: list[Operation]) -> bool:
    """Try every order of every allowed subset: definite ops always, unknown ones maybe."""
    definite = [op for op in ops if op.ret is not None]
    pending = [op for op in ops if op.ret is None]
    for size in range(len(pending) + 1):
        for chosen in combinations(pending, size):
            for order in permutations(definite + list(chosen)):
                if _respects_real_time(order) and _legal(model, order):
                    return True
    return False


def _respects_real_time(order: tuple[Operation, ...]) -> bool:
    return all(
        later.ret is None or later.ret > earlier.call
        for position, earlier in enumerate(order)
        for later in order[position + 1 :]
    )


def _legal(model: Model, order: tuple[Operation, ...]) -> bool:
    state = model.init()
    for op in order:
        legal, state = model.step(state, op.input, op.output)
        if not legal:
            return False
    return True


@settings(derandomize=True, max_examples=200, deadline=None)
@given(linearizable_histories())
def test_generated_linearizable_histories_pass(history: list[Op]) -> None:
    validate(history)
    model = CasRegister()
    result = linearizable.check(history, model)
    assert result.valid == _when_observed(model, history, True)


def _when_observed(model: Model, history: list[Op], verdict: bool) -> bool | str:
    """The verdict, or "unknown" for a history whose ops no outcome was observed for:
    such a history fits every model and tests nothing."""
    observed = any(op.output is not None for op in linearizable.operations(history, model))
    return verdict if observed else "unknown"


@settings(derandomize=True, max_examples=300, deadline=None)
@given(linearizable_histories(max_ops=6), st.data())
def test_mutated_histories_agree_with_brute_force(history: list[Op], data: st.DataObject) -> None:
    reads = [i for i, op in enumerate(history) if op.f == "read" and op.type == "ok"]
    if reads:
        target = history[data.draw(st.sampled_from(reads))]
        target.value = data.draw(st.integers(0, REGISTER_VALUES - 1))
    model = CasRegister()
    expected = _brute_force(model, linearizable.operations(history, model))
    result = linearizable.check(history, model)
    assert result.valid == _when_observed(model, history, expected)


def test_stale_read_is_reported_with_window_and_prefix() -> None:
    history = [
        Op(0, 0, 0, "invoke", "write", 1),
        Op(1, 1, 0, "ok", "write", 1),
        Op(2, 2, 1, "invoke", "read", None),
        Op(3, 3, 1, "ok", "read", 0),
    ]
    result = linearizable.check(history, CasRegister())
    assert result.valid is False
    violation = result.anomalies["nonlinearizable"][0]
    assert violation["failed_op"]["index"] == 2
    assert [op["index"] for op in violation["window"]] == [0, 2]
    assert [op["index"] for op in violation["linearizable_prefix"]] == [0]
    assert "read() -> 0" in lin_report.to_text(violation)
    assert "<svg" in lin_report.to_html(violation)


def test_limits_give_unknown_never_a_guess() -> None:
    history = importers.porcupine_etcd((DATA / "porcupine/jepsen/etcd_002.log").read_text())
    model = EtcdRegister()
    for result in (
        linearizable.check(history, model, max_configs=10),
        linearizable.check(history, model, time_limit_s=0),
    ):
        assert result.valid == "unknown" and result.limit_reached and not result.anomalies
        assert result.reason is not None and "search limit" in result.reason
    assert "time limit 0 s" in str(linearizable.check(history, model, time_limit_s=0).reason)


def test_append_log_model() -> None:
    def op(index: int, process: int, kind: str, f: str, value: object) -> Op:
        return Op(index, index, process, kind, f, value)

    good = [
        op(0, 0, "invoke", "append", ["p0", "a"]),
        op(1, 1, "invoke", "append", ["p0", "b"]),
        op(2, 1, "ok", "append", ["p0", 0]),
        op(3, 0, "ok", "append", ["p0", 1]),
        op(4, 2, "invoke", "read", ["p0", 0]),
        op(5, 2, "ok", "read", ["p0", "b"]),
        op(6, 2, "invoke", "end-offset", ["p0", None]),
        op(7, 2, "ok", "end-offset", ["p0", 2]),
    ]
    assert linearizable.check(good, AppendLog()).valid is True
    bad = [*good[:5], op(5, 2, "ok", "read", ["p0", "a"])]
    assert linearizable.check(bad, AppendLog()).valid is False


def _sequential(*ops: tuple[str, object, str, object]) -> list[Op]:
    """(f, invoked value, completion type, completed value), one after another."""
    history = []
    for process, (f, value, kind, result) in enumerate(ops):
        history.append(Op(len(history), len(history), process, "invoke", f, value))
        history.append(Op(len(history), len(history), process, kind, f, result))
    return history


def test_etcd_failed_write_and_cas_leave_the_register_unchanged() -> None:
    """Jepsen's failed write did not happen, so only the earlier write can be read; a failed
    cas (Porcupine) saw another value and changed nothing."""
    model = EtcdRegister()

    def after_failures(read: int) -> list[Op]:
        return _sequential(
            ("write", 1, "ok", 1),
            ("write", 2, "fail", 2),
            ("cas", [0, 3], "fail", [0, 3]),
            ("read", None, "ok", read),
        )

    assert linearizable.check(after_failures(1), model).valid is True
    assert linearizable.check(after_failures(2), model).valid is False
    assert linearizable.check(after_failures(3), model).valid is False


def test_models_reject_ops_they_cannot_judge() -> None:
    unknown_f = _sequential(("delete", None, "ok", None))
    with pytest.raises(HistoryError, match=r"^line 1: the etcd-register model has no 'delete' op"):
        linearizable.check(unknown_f, EtcdRegister())
    bad_result = _sequential(("end-offset", ["k", None], "ok", ["k", "two"]))
    with pytest.raises(
        HistoryError, match=r"^line 2: end-offset result must be \[key, integer offset\]"
    ):
        linearizable.check(bad_result, AppendLog())
