"""Linearizability checking: Wing & Gong / Lowe search with memoization, just in time.

A *configuration* is `(linearized, state)`: `state` is the model state after some
linearization of the ops placed so far, and `linearized` is a bitset (a Python int) of the
*still open* ops already placed. Ops are placed just in time (Lowe): only when an op
returns is anything placed, namely other open ops and then the returning one, in every
legal order. The search is depth-first over the history's return events; each level's
choices are those configurations, placing the returning op at once tried first. A
configuration that led nowhere at a level is memoized as dead. The history is
linearizable iff some path survives every return.

Exact reductions on top:
- P-compositionality: the model partitions the history (e.g. by key); each part alone,
  interleaved so that one cheap violation ends the check.
- Ops that never return (`info`, or still open at the end) with the same input and output
  are interchangeable, so only the earliest unplaced one of each kind is ever tried.
- Such an op that would leave the state unchanged is never placed: placing it gains nothing.
- Dominance: a configuration that spent a superset of the never-returning ops another one
  spent, with the same state and the same placed returning ops, can do nothing more; it
  is pruned within a level and memoized as dead with it.
- Bit positions of returned ops are reused, so bitsets stay as small as the concurrency.
- `step` results are cached per (op, state).

Limits (`time_limit_s`, `max_configs`) end a check as "unknown", never as a guess.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

from jepsen_py.history import HistoryError, Op, pair_positions
from jepsen_py.models import Model, Operation
from jepsen_py.result import Result, Validity, no_evidence

DEFAULT_MAX_CONFIGS = 2_000_000
_ILLEGAL = object()
_PAUSE = object()
_SLICE_CONFIGS = 2048


@dataclass
class Verdict:
    """The outcome for one partition. On a violation, `failed_op` is the op (index into the
    partition) whose return left no configuration, and `prefix_order` is a linearization of
    the history up to just before that return."""

    valid: Validity
    configs_explored: int = 0
    failed_op: int | None = None
    prefix_order: list[int] = field(default_factory=list)


def operations(history: list[Op], model: Model) -> list[Operation]:
    """The client ops the model judges, in invocation order (see models.py for fail/info).

    Raises HistoryError naming the line of an op the model cannot judge, before any search."""
    result = []
    for call, ret in pair_positions(history):
        invocation = history[call]
        completion = None if ret is None else history[ret]
        input = (invocation.f, invocation.value)
        if problem := model.input_error(input):
            raise HistoryError(call + 1, problem)
        if completion is None or completion.type == "info":
            ret, output = None, None
        elif completion.type == "fail" and not model.observes_failures:
            continue
        else:
            output = (completion.type, completion.value)
            if completion.type == "ok" and (problem := model.output_error(input, output[1])):
                raise HistoryError(ret + 1, problem)
        result.append(Operation(invocation.process, call, ret, input, output))
    return result


@dataclass(frozen=True)
class _Return:
    """What the search needs at one return event: the op, its bit, and who else is open."""

    op: int
    bit: int
    others: tuple[tuple[int, int], ...]
    kinds: tuple[tuple[tuple[int, int], ...], ...]


def _returns(ops: list[Operation]) -> tuple[list[_Return], int]:
    """The return events in order, and the mask of bits that belong to never-returning ops.

    A returned op's bit is reused by later returning ops; a never-returning op gets a bit
    no other op ever holds, so `pending_mask` means the same thing at every level."""
    events = sorted(
        [(operation.call, index) for index, operation in enumerate(ops)]
        + [
            (operation.ret, index)
            for index, operation in enumerate(ops)
            if operation.ret is not None
        ]
    )
    free_bits: list[int] = []
    next_bit = 1
    open_definite: dict[int, int] = {}
    kinds: dict[Any, list[tuple[int, int]]] = {}
    pending_mask = 0
    returns = []
    for position, op in events:
        operation = ops[op]
        if position != operation.call:
            bit = open_definite.pop(op)
            others = tuple((other, other_bit) for other, other_bit in open_definite.items())
            frozen_kinds = tuple(tuple(members) for members in kinds.values())
            returns.append(_Return(op, bit, others, frozen_kinds))
            free_bits.append(bit)
            continue
        if free_bits and operation.ret is not None:
            bit = free_bits.pop()
        else:
            bit, next_bit = next_bit, next_bit << 1
        if operation.ret is None:
            kind = (operation.input[0], repr(operation.input[1]), repr(operation.output))
            kinds.setdefault(kind, []).append((bit, op))
            pending_mask |= bit
        else:
            open_definite[op] = bit
    return returns, pending_mask


Config = tuple[int, Hashable]


class _Search:
    """Depth-first over return events; each level's choices are the configurations in which
    the returning op is placed, found lazily. A configuration that led nowhere at a level is
    remembered, and so is everything it dominates (same state and definite ops, a superset
    of the never-returning ops spent)."""

    def __init__(self, model: Model, ops: list[Operation]) -> None:
        self.model = model
        self.ops = ops
        self.cache: dict[tuple[int, Hashable], Any] = {}
        self.returns, self.pending_mask = _returns(ops)
        self.dead: dict[tuple[int, int, Hashable], list[int]] = {}
        self.explored = 0

    def step(self, op: int, state: Hashable) -> Any:
        key = (op, state)
        new_state = self.cache.get(key, self.cache)
        if new_state is self.cache:
            operation = self.ops[op]
            legal, new_state = self.model.step(state, operation.input, operation.output)
            if not legal:
                new_state = _ILLEGAL
            self.cache[key] = new_state
        return new_state

    def run(self) -> Generator[None, None, Verdict]:
        """Pauses (yields) every `_SLICE_CONFIGS` configurations so a scheduler can
        interleave partitions and enforce limits; returns the verdict."""
        levels = len(self.returns)
        start: Config = (0, self.model.init())
        if not levels:
            return Verdict(True)
        frames = [self.place(0, start)]
        configs = [start]
        chosen: list[tuple[int, ...]] = []
        deepest: list[tuple[int, ...]] = []
        while frames:
            found = next(frames[-1], None)
            if found is _PAUSE:
                yield
                continue
            if found is None:
                frames.pop()
                self.bury(len(frames), configs.pop())
                if chosen:
                    chosen.pop()
                continue
            config, placed = found
            level = len(frames)
            if level == levels:
                return Verdict(True, self.explored, prefix_order=_flatten([*chosen, placed]))
            if self.is_dead(level, config):
                continue
            chosen.append(placed)
            if len(chosen) > len(deepest):
                deepest = list(chosen)
            frames.append(self.place(level, config))
            configs.append(config)
        failed = self.returns[len(deepest)].op
        return Verdict(False, self.explored, failed, _flatten(deepest))

    def bury(self, level: int, config: Config) -> None:
        linearized, state = config
        key = (level, linearized & ~self.pending_mask, state)
        self.dead.setdefault(key, []).append(linearized & self.pending_mask)

    def is_dead(self, level: int, config: Config) -> bool:
        linearized, state = config
        spent = self.dead.get((level, linearized & ~self.pending_mask, state))
        if spent is None:
            return False
        pending = linearized & self.pending_mask
        return any(mask & pending == mask for mask in spent)

    def place(self, level: int, config: Config) -> Iterator[Any]:
        """Each configuration reachable from `config` by placing open ops and then the
        returning op, with the ops placed. Depth-first; placing the returning op right away
        is tried first, then placing ops that will return themselves (they must be placed
        anyway), and never-returning ops last (placing one spends it). Yields
        `_PAUSE` now and then, so one huge closure cannot starve the scheduler."""
        event = self.returns[level]
        op, bit, others, kinds = event.op, event.bit, event.others, event.kinds
        found: set[Config] = set()
        seen: dict[tuple[int, Hashable], list[int]] = {}
        stack: list[tuple[Config, tuple[int, ...]]] = [(config, ())]
        step = self.step
        pending_mask = self.pending_mask
        while stack:
            current, placed = stack.pop()
            linearized, state = current
            pending = linearized & pending_mask
            key = (linearized ^ pending, state)
            spent = seen.get(key)
            if spent is None:
                seen[key] = [pending]
            elif any(mask & pending == mask for mask in spent):
                continue
            else:
                spent.append(pending)
            self.explored += 1
            if not self.explored % _SLICE_CONFIGS:
                yield _PAUSE
            if linearized & bit:
                survivor: Config = (linearized ^ bit, state)
                if survivor not in found:
                    found.add(survivor)
                    yield survivor, placed
                continue
            new_state = step(op, state)
            if new_state is not _ILLEGAL and (linearized, new_state) not in found:
                found.add((linearized, new_state))
                yield (linearized, new_state), (*placed, op)
            for members in kinds:
                for other_bit, other in members:
                    if not linearized & other_bit:
                        new_state = step(other, state)
                        if new_state is not _ILLEGAL and new_state != state:
                            stack.append(((linearized | other_bit, new_state), (*placed, other)))
                        break
            for other, other_bit in others:
                if not linearized & other_bit:
                    new_state = step(other, state)
                    if new_state is not _ILLEGAL:
                        stack.append(((linearized | other_bit, new_state), (*placed, other)))


def _flatten(chosen: list[tuple[int, ...]]) -> list[int]:
    return [op for placed in chosen for op in placed]


def decide(
    model: Model,
    partitions: list[list[Operation]],
    time_limit_s: float | None = None,
    max_configs: int = DEFAULT_MAX_CONFIGS,
) -> list[Verdict]:
    """One verdict per partition. The searches are interleaved, as Porcupine runs them in
    parallel, so one cheap violation ends the check however costly the other parts are;
    the parts not decided by then, or by a limit, are "unknown"."""
    deadline = time.perf_counter() + (float("inf") if time_limit_s is None else time_limit_s)
    searches = [_Search(model, ops) for ops in partitions]
    runs = {index: search.run() for index, search in enumerate(searches)}
    verdicts = [Verdict("unknown") for _ in partitions]
    while runs:
        for index in list(runs):
            try:
                next(runs[index])
            except StopIteration as stop:
                verdicts[index] = stop.value
                del runs[index]
                if stop.value.valid is False:
                    return verdicts
        explored = sum(search.explored for search in searches)
        if explored > max_configs or time.perf_counter() > deadline:
            break
    for index in runs:
        verdicts[index].configs_explored = searches[index].explored
    return verdicts


def check_operations(
    model: Model,
    ops: list[Operation],
    time_limit_s: float | None = None,
    max_configs: int = DEFAULT_MAX_CONFIGS,
) -> Verdict:
    """Decide one partition as it is (no further partitioning)."""
    return decide(model, [ops], time_limit_s, max_configs)[0]


def minimal_window(
    model: Model, ops: list[Operation], failed: int, time_limit_s: float
) -> tuple[list[int], bool]:
    """A smallest set of ops whose observed outcomes contradict each other even if every
    other op's outcome were unknown (`info`: it may have taken effect at any time after
    its invocation, or never). Found by relaxing ops to unknown one at a time, earliest
    first, while the history still fails; it starts from everything invoked before the
    failing return. Returns indices into `ops`, and whether relaxing finished within
    `time_limit_s` (if not, the set is failing but maybe not minimal)."""
    deadline = time.perf_counter() + time_limit_s
    cut = ops[failed].ret
    assert cut is not None
    trial = {
        index: operation if operation.ret is None or operation.ret <= cut else _unknown(operation)
        for index, operation in enumerate(ops)
        if operation.call < cut
    }
    window = [index for index, operation in trial.items() if operation.ret is not None]
    window = window[_relaxable_prefix(model, trial, window, failed, deadline) :]
    for index in list(window):
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            return window, False
        strict = trial[index]
        trial[index] = _unknown(strict)
        if (
            index != failed
            and check_operations(model, list(trial.values()), remaining).valid is False
        ):
            window.remove(index)
        else:
            trial[index] = strict
    return window, True


def _relaxable_prefix(
    model: Model, trial: dict[int, Operation], window: list[int], failed: int, deadline: float
) -> int:
    """Binary search for the longest prefix of `window` that can be relaxed at once while
    the history still fails, so the one-by-one pass only walks the tail; relaxes it in
    `trial` and returns its length."""
    low, high = 0, window.index(failed)
    while low < high:
        middle = (low + high + 1) // 2
        relaxed = dict(trial)
        relaxed |= {index: _unknown(trial[index]) for index in window[:middle]}
        remaining = deadline - time.perf_counter()
        if (
            remaining > 0
            and check_operations(model, list(relaxed.values()), remaining).valid is False
        ):
            low = middle
        else:
            high = middle - 1
    trial |= {index: _unknown(trial[index]) for index in window[:low]}
    return low


def _unknown(operation: Operation) -> Operation:
    return Operation(operation.process, operation.call, None, operation.input, None)


def check(
    history: list[Op],
    model: Model,
    time_limit_s: float | None = None,
    max_configs: int = DEFAULT_MAX_CONFIGS,
    explain_time_limit_s: float = 2.0,
) -> Result:
    """Is `history` linearizable with respect to `model`? On a violation, the anomaly names
    the op that could not be placed, a minimal failing window and the longest linearizable
    prefix with one linearization of it."""
    started = time.perf_counter()
    ops = operations(history, model)
    if all(operation.output is None for operation in ops):
        # Ops whose outcome nobody observed fit every model: they test nothing.
        return no_evidence(
            f"no op completed with an outcome the {model.name} model judges",
            {"model": model.name, "ops": len(ops)},
        )
    partitions = model.partition(ops)
    verdicts = decide(model, partitions, time_limit_s, max_configs)
    stats: dict[str, Any] = {
        "model": model.name,
        "ops": len(ops),
        "partitions": len(partitions),
        "configs_explored": sum(verdict.configs_explored for verdict in verdicts),
    }
    anomalies: dict[str, list[dict[str, Any]]] = {}
    valid: Validity = True
    reason = None
    if any(verdict.valid == "unknown" for verdict in verdicts):
        valid = "unknown"
        undecided = sum(v.valid == "unknown" for v in verdicts)
        stats["undecided_partitions"] = undecided
        limit = "no time limit" if time_limit_s is None else f"time limit {time_limit_s:g} s"
        reason = (
            f"a search limit ({limit}, at most {max_configs} configurations) left "
            f"{undecided} partition(s) undecided"
        )
    for part, verdict in zip(partitions, verdicts, strict=True):
        if verdict.valid is False:
            valid = False
            anomalies["nonlinearizable"] = [
                _violation(history, model, part, verdict, explain_time_limit_s)
            ]
            break
    stats["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 3)
    if valid == "unknown":
        return Result(valid, stats=stats, reason=reason, limit_reached=True)
    return Result(valid, anomalies, stats)


def _violation(
    history: list[Op], model: Model, ops: list[Operation], verdict: Verdict, time_limit_s: float
) -> dict[str, Any]:
    assert verdict.failed_op is not None
    window, minimal = minimal_window(model, ops, verdict.failed_op, time_limit_s)

    def show(index: int) -> dict[str, Any]:
        operation = ops[index]
        return {
            "process": operation.process,
            "index": history[operation.call].index,
            "call": operation.call,
            "ret": operation.ret,
            "op": model.describe_operation(operation.input, operation.output),
        }

    state = model.init()
    prefix = []
    for index in verdict.prefix_order:
        operation = ops[index]
        state = model.step(state, operation.input, operation.output)[1]
        prefix.append({**show(index), "state_after": model.describe_state(state)})
    return {
        "failed_op": show(verdict.failed_op),
        "window": [show(index) for index in window],
        "window_is_minimal": minimal,
        "linearizable_prefix": prefix,
        "partition_ops": [show(index) for index in range(len(ops))],
    }
