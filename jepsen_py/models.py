"""Sequential models for the linearizability checker, with an interface as small as Porcupine's.

A model is `init() -> state`, `step(state, input, output) -> (legal, new_state)`,
`partition(operations) -> independent sub-histories` and `describe_*` for reports. States
must be hashable and immutable: the checker memoizes on them.

`input` is `(f, invoked value)`. `output` is `(type, value)` of the completion, type "ok"
or "fail", or None when the outcome is unknown (`info`, or never completed); such an op may
take effect at any point after its invocation, or never.
Jepsen's `fail` means "did not happen", so the checker drops failed ops, unless a model sets
`observes_failures` (Porcupine's etcd logs: a failed cas saw a different value).

Histories come from files, so before searching the checker asks `input_error` and
`output_error` about every op and reports bad ones as bad input; `step` may then assume
an f from `functions` and well-formed values.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, ClassVar

Input = tuple[str, Any]
Output = tuple[str, Any] | None


@dataclass(frozen=True, slots=True)
class Operation:
    """One client op as the checker sees it. `call`/`ret` are positions in the history;
    `ret` is None when it never completes (an `info`, or still open at the end)."""

    process: int
    call: int
    ret: int | None
    input: Input
    output: Output


class Model:
    name: ClassVar[str]
    functions: ClassVar[tuple[str, ...]]
    observes_failures: ClassVar[bool] = False

    def init(self) -> Hashable:
        raise NotImplementedError

    def input_error(self, input: Input) -> str | None:
        """Why this model cannot judge an op invoked as `input`, or None if it can."""
        f = input[0]
        if f not in self.functions:
            return f"the {self.name} model has no {f!r} op (expected {', '.join(self.functions)})"
        return None

    def output_error(self, input: Input, value: Any) -> str | None:
        """Why `value` cannot be the result of an `ok` completion of `input`, or None."""
        return None

    def step(self, state: Any, input: Input, output: Output) -> tuple[bool, Hashable]:
        raise NotImplementedError

    def partition(self, operations: list[Operation]) -> list[list[Operation]]:
        return [operations]

    def describe_operation(self, input: Input, output: Output) -> str:
        f, value = input
        result = "?" if output is None else _show(output[1]) if output[0] == "ok" else "fail"
        return f"{f}({'' if value is None else _show(value)}) -> {result}"

    def describe_state(self, state: Any) -> str:
        return _show(state)


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + " ".join(_show(item) for item in value) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_show(item) for item in value) + "]"
    return "nil" if value is None else repr(value) if isinstance(value, str) else str(value)


def _scalar(value: Any) -> bool:
    """Values that can live in a model state, which must be hashable: JSON/EDN scalars."""
    return value is None or isinstance(value, str | int | float)


def _pair(value: Any) -> bool:
    return isinstance(value, list | tuple) and len(value) == 2


class Register(Model):
    """read/write; a read with a nil value constrains nothing (Knossos)."""

    name = "register"
    functions = ("read", "write")

    def __init__(self, initial: Hashable = None) -> None:
        self.initial = initial

    def init(self) -> Hashable:
        return self.initial

    def input_error(self, input: Input) -> str | None:
        f, value = input
        if f == "write" and not _scalar(value):
            return f"write value must be a number, string, boolean or nil, got {value!r}"
        return super().input_error(input)

    def step(self, state: Any, input: Input, output: Output) -> tuple[bool, Hashable]:
        f, value = input
        if f == "write":
            return True, value
        seen = None if output is None else output[1]
        return seen is None or seen == state, state


class CasRegister(Register):
    """Knossos' cas-register: initial value 0, nil reads unconstrained, cas [old new]."""

    name = "cas-register"
    functions = ("read", "write", "cas")

    def __init__(self, initial: Hashable = 0) -> None:
        super().__init__(initial)

    def input_error(self, input: Input) -> str | None:
        f, value = input
        if f == "cas" and not (_pair(value) and all(_scalar(item) for item in value)):
            return f"cas value must be [old new], got {value!r}"
        return super().input_error(input)

    def step(self, state: Any, input: Input, output: Output) -> tuple[bool, Hashable]:
        f, value = input
        if f == "cas":
            old, new = value
            return (True, new) if state == old else (False, state)
        return super().step(state, input, output)


class EtcdRegister(CasRegister):
    """Porcupine's etcd register (tests/data/porcupine/FORMAT.md): the cas-register's ops,
    starting absent (None); a nil read saw "absent"; a failed cas saw a value other than its
    `old`; a read whose outcome is unknown or failed is free. Porcupine's logs have no failed
    write; in Jepsen one did not happen, so it is linearized as a no-op."""

    name = "etcd-register"
    observes_failures = True

    def __init__(self) -> None:
        super().__init__(None)

    def step(self, state: Any, input: Input, output: Output) -> tuple[bool, Hashable]:
        f, value = input
        failed = output is not None and output[0] == "fail"
        if f == "read":
            return output is None or failed or output[1] == state, state
        if f == "write":
            return True, state if failed else value
        old, new = value
        if failed:
            return state != old, state
        if state == old:
            return True, new
        return output is None, state


class MultiRegister(Model):
    """Knossos' multi-register: `txn` of [f k v] micro-ops (read/write) applied atomically.
    A read with a nil value constrains nothing. State: sorted (key, value) pairs."""

    name = "multi-register"
    functions = ("txn",)

    def __init__(self, initial: dict[Any, Any] | None = None) -> None:
        self.initial = tuple(sorted((initial or {}).items()))

    def init(self) -> Hashable:
        return self.initial

    def input_error(self, input: Input) -> str | None:
        return super().input_error(input) or _txn_error(input[1])

    def output_error(self, input: Input, value: Any) -> str | None:
        return _txn_error(value)

    def step(self, state: Any, input: Input, output: Output) -> tuple[bool, Hashable]:
        micro_ops = output[1] if output is not None and output[0] == "ok" else input[1]
        registers = dict(state)
        for micro_f, key, micro_value in micro_ops:
            if micro_f == "write":
                registers[key] = micro_value
            elif not _may_read(output, micro_value, registers.get(key)):
                return False, state
        return True, tuple(sorted(registers.items()))


def _txn_error(micro_ops: Any) -> str | None:
    """Keys must be strings because the state is sorted by key."""
    if not isinstance(micro_ops, list | tuple):
        return f"txn value must be a list of [f key value] micro-ops, got {micro_ops!r}"
    for micro_op in micro_ops:
        if (
            not isinstance(micro_op, list | tuple)
            or len(micro_op) != 3
            or micro_op[0] not in ("read", "write")
            or not isinstance(micro_op[1], str)
            or not _scalar(micro_op[2])
        ):
            return f"txn micro-op must be [read|write string-key scalar], got {micro_op!r}"
    return None


def _may_read(output: Output, seen: Any, current: Any) -> bool:
    """A read inside a txn with an unknown outcome, or that saw nil, constrains nothing."""
    return output is None or seen is None or seen == current


def _by_key(operations: list[Operation]) -> list[list[Operation]]:
    groups: dict[Any, list[Operation]] = defaultdict(list)
    for operation in operations:
        groups[operation.input[1][0]].append(operation)
    return list(groups.values())


def _lookup(state: tuple[tuple[Any, Any], ...], key: Any, default: Any) -> Any:
    for existing, value in state:
        if existing == key:
            return value
    return default


def _assign(state: tuple[tuple[Any, Any], ...], key: Any, value: Any) -> Hashable:
    """`state` with `key` set; pairs stay sorted by key so equal maps are equal tuples."""
    keys = [existing for existing, _ in state]
    at = bisect.bisect_left(keys, key)
    after = at + 1 if at < len(keys) and keys[at] == key else at
    return (*state[:at], (key, value), *state[after:])


class _PerKey(Model):
    """A model whose state is one independent value per key: empty at first, and the
    history splits by key (P-compositionality)."""

    def init(self) -> Hashable:
        return ()

    def partition(self, operations: list[Operation]) -> list[list[Operation]]:
        return _by_key(operations)


class KV(_PerKey):
    """Porcupine's kv: get/put/append on string keys, every key starts as "". Values are
    `[key, string]`. Keys are independent, so the history is partitioned by key."""

    name = "kv"
    functions = ("get", "put", "append")

    def input_error(self, input: Input) -> str | None:
        f, value = input
        if problem := super().input_error(input):
            return problem
        if not (_pair(value) and _scalar(value[0])):
            return f"{f} value must be [key, string], got {value!r}"
        if f != "get" and not isinstance(value[1], str):
            return f"{f} value must be [key, string], got {value!r}"
        return None

    def output_error(self, input: Input, value: Any) -> str | None:
        if input[0] == "get" and not (_pair(value) and isinstance(value[1], str)):
            return f"get result must be [key, string], got {value!r}"
        return None

    def step(self, state: Any, input: Input, output: Output) -> tuple[bool, Hashable]:
        f, (key, value) = input
        current = _lookup(state, key, "")
        if f == "get":
            return output is None or output[1][1] == current, state
        if f == "put":
            return True, _assign(state, key, value)
        return True, _assign(state, key, current + value)


class AppendLog(_PerKey):
    """The broker's partitions: one append-only log per key, offsets from 0.

    append `[k, v]` -> `[k, offset]`; read `[k, offset]` -> `[k, v]` (nil past the end);
    end-offset `[k, nil]` -> `[k, log end offset]`. Partitioned by key."""

    name = "log"
    functions = ("append", "read", "end-offset")

    def input_error(self, input: Input) -> str | None:
        f, value = input
        if problem := super().input_error(input):
            return problem
        if not (_pair(value) and _scalar(value[0]) and _scalar(value[1])):
            return f"{f} value must be [key, argument], got {value!r}"
        if f == "read" and not _offset(value[1]):
            return f"read value must be [key, integer offset], got {value!r}"
        return None

    def output_error(self, input: Input, value: Any) -> str | None:
        f = input[0]
        if not _pair(value):
            return f"{f} result must be [key, result], got {value!r}"
        if f != "read" and not _offset(value[1]):
            return f"{f} result must be [key, integer offset], got {value!r}"
        return None

    def step(self, state: Any, input: Input, output: Output) -> tuple[bool, Hashable]:
        f, (key, argument) = input
        log = _lookup(state, key, ())
        result = None if output is None else output[1][1]
        if f == "append":
            legal = output is None or result == len(log)
            return legal, _assign(state, key, (*log, argument)) if legal else state
        if f == "read":
            at = log[argument] if 0 <= argument < len(log) else None
            return output is None or result == at, state
        return output is None or result == len(log), state


def _offset(value: Any) -> bool:
    return type(value) is int


MODELS: dict[str, Callable[[], Model]] = {
    "register": Register,
    "cas-register": CasRegister,
    "etcd-register": EtcdRegister,
    "multi-register": lambda: MultiRegister({"x": 0, "y": 0}),
    "kv": KV,
    "log": AppendLog,
}
