"""Workloads: what clients do, how their ops become native-client calls, and which
checkers judge the history.

`queue` (Jepsen's Kafka workload; judged by the queue and durability checkers):
- send   `[key, value]` -> ok `[offset, value]`: a unique integer value to partition `key`;
- poll   `None` -> ok `{key: [[offset, value], ...]}`: the process's consumer polls once;
- assign `[key, ...]` -> ok the same: the consumer takes these partitions (kept ones keep
  their positions); the checker restarts the process's read order here;
- final reads, after the last heal: `assign` of every key, then poll `"final"`, which
  reads each key from its start up to its end offset (checked again once reached).

`log` (the append-only log model; judged for linearizability):
- append `[key, value]` -> ok `[key, offset]`;
- read `[key, offset]` -> ok `[key, value]`, `[key, None]` at or past the high watermark;
- end-offset `[key, None]` -> ok `[key, high watermark]`;
- final reads: end-offset of every key, then a read of every offset up to the largest
  one any op saw.

Keys are partitions of one topic. Errors map to Jepsen's outcomes through
impl.client.errors: OutcomeUnknown -> info, DefiniteFailure -> fail; reads change
nothing, so every read error (and a read that ran out of time) is `fail`.
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import Any

from impl.client.consumer import Consumer, ConsumerRecord
from impl.client.errors import ClientError, OutcomeUnknown
from impl.client.metadata import TopicPartition
from impl.client.producer import Producer
from impl.runtime.runtime import Runtime
from jepsen_py import durability, linearizable, perf, queue
from jepsen_py.campaign import generator as g
from jepsen_py.campaign.scheduler import Completion
from jepsen_py.history import Op, pair_positions
from jepsen_py.models import AppendLog
from jepsen_py.result import Result
from model.config import Config

WORKLOADS = ("queue", "log", "consumer")
POLL_MS = 200
FINAL_READERS = 2
FINAL_READS_PER_KEY_MAX = 5_000
LINEARIZABLE_TIME_LIMIT_S = 120.0
SEND_SHARE = 0.5
POLL_SHARE = 0.45
APPEND_SHARE = 0.4
READ_SHARE = 0.4
WRITES = frozenset({"send", "append"})
# The op kinds each workload's main phase runs; a run with no ok one of a kind tested
# less than it was asked (jepsen_py.campaign.evidence).
OP_KINDS = {
    "queue": ("send", "poll", "assign"),
    "log": ("append", "read", "end-offset"),
    "consumer": ("send", "consume", "lag"),
}


class _Retired(Exception):
    """Passed to the clients' exits: a retired process never flushes what it left."""


@dataclass(frozen=True)
class Target:
    """Where a workload's clients go: the runtime (its network may route through
    proxies), the bootstrap servers, the client settings and the topic."""

    runtime: Runtime
    bootstrap: str
    config: Config
    topic: str
    keys: int


class NativeClient:
    """One process's producer and consumer, opened lazily by the native client."""

    def __init__(self, target: Target, process: int) -> None:
        self.target = target
        self.process = process
        self._stack = AsyncExitStack()
        self.producer: Producer | None = None
        self.consumer: Consumer | None = None

    async def __aenter__(self) -> NativeClient:
        target = self.target
        client_id = f"replog-process-{self.process}"
        self.producer = await self._stack.enter_async_context(
            Producer(target.runtime, target.bootstrap, target.config, client_id=client_id)
        )
        self.consumer = await self._stack.enter_async_context(
            Consumer(target.runtime, target.bootstrap, target.config, client_id=client_id)
        )
        self.consumer.assign(self.partitions(range(target.keys)))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._stack.__aexit__(_Retired, _Retired(), None)

    def partitions(self, keys: Any) -> list[TopicPartition]:
        return [TopicPartition(self.target.topic, int(key)) for key in keys]

    async def invoke(self, f: str, value: Any) -> Completion:
        try:
            return await self._invoke(f, value)
        except OutcomeUnknown as error:
            return Completion("fail" if f not in WRITES else "info", None, _describe(error))
        except ClientError as error:
            return Completion("fail", None, _describe(error))

    async def _invoke(self, f: str, value: Any) -> Completion:
        raise NotImplementedError

    async def produce(self, key: int, value: int) -> int:
        assert self.producer is not None
        delivery = await self.producer.send(self.target.topic, str(value).encode(), partition=key)
        return (await delivery.wait()).offset

    async def read_to_end(self) -> list[ConsumerRecord]:
        """Every record of the assigned partitions from the start to their end offsets,
        asked again once reached until they stop moving."""
        consumer = self.consumer
        assert consumer is not None
        consumer.seek_to_beginning()
        records: list[ConsumerRecord] = []
        ends: dict[TopicPartition, int] = {}
        while True:
            latest = await consumer.end_offsets(consumer.assignment())
            if latest == ends:
                return records
            ends = latest
            while await _behind(consumer, ends):
                records += await consumer.poll(POLL_MS)


async def _behind(consumer: Consumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return True
    return False


def _describe(error: ClientError) -> str:
    return f"{type(error).__name__}: {error}"


def _decoded(record: ConsumerRecord) -> int | str | None:
    if record.value is None:
        return None
    text = record.value.decode(errors="replace")
    return int(text) if text.lstrip("-").isdigit() else text


def _by_key(records: list[ConsumerRecord]) -> dict[str, list[list[Any]]]:
    grouped: dict[str, list[list[Any]]] = defaultdict(list)
    for record in records:
        grouped[str(record.partition)].append([record.offset, _decoded(record)])
    return dict(grouped)


class QueueClient(NativeClient):
    async def _invoke(self, f: str, value: Any) -> Completion:
        assert self.consumer is not None
        if f == "send":
            key, payload = value
            return Completion("ok", [await self.produce(key, payload), payload])
        if f == "assign":
            self.consumer.assign(self.partitions(value))
            return Completion("ok", value)
        if value == durability.READ_TO_END:
            return Completion("ok", _by_key(await self.read_to_end()))
        return Completion("ok", _by_key(await self.consumer.poll(POLL_MS)))


class LogClient(NativeClient):
    async def _invoke(self, f: str, value: Any) -> Completion:
        key, argument = value
        if f == "append":
            return Completion("ok", [key, await self.produce(key, argument)])
        end = await self._end_offset(key)
        if f == "end-offset":
            return Completion("ok", [key, end])
        if argument >= end:
            return Completion("ok", [key, None])
        return Completion("ok", [key, await self._read_at(key, argument)])

    async def _end_offset(self, key: int) -> int:
        assert self.consumer is not None
        tp = TopicPartition(self.target.topic, key)
        return (await self.consumer.end_offsets([tp]))[tp]

    async def _read_at(self, key: int, offset: int) -> int | str | None:
        """The record at `offset` (below the high watermark, so it exists unless the log
        lost it: then None, which the model rejects)."""
        consumer = self.consumer
        assert consumer is not None
        tp = TopicPartition(self.target.topic, key)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        while True:
            for record in await consumer.poll(POLL_MS):
                if record.offset >= offset:
                    return _decoded(record) if record.offset == offset else None


class Clients:
    """The ClientFactory of a workload."""

    def __init__(self, workload: str, target: Target) -> None:
        self.kind = QueueClient if workload == "queue" else LogClient
        if workload == "consumer":
            self.kind = _consumer().ConsumerClient
        self.target = target

    def open(self, process: int) -> NativeClient:
        return self.kind(self.target, process)

    def timeout_type(self, f: str) -> str:
        return "info" if f in WRITES else "fail"


# ---- generators --------------------------------------------------------------------------


def _queue_op(n: int, ctx: g.Context, keys: int) -> dict[str, Any]:
    roll = ctx.rng.random()
    if roll < SEND_SHARE:
        return {"f": "send", "value": [ctx.rng.randrange(keys), n]}
    if roll < SEND_SHARE + POLL_SHARE:
        return {"f": "poll", "value": None}
    chosen = ctx.rng.sample(range(keys), ctx.rng.randint(1, keys))
    return {"f": "assign", "value": sorted(chosen)}


def _log_op(n: int, ctx: g.Context, keys: int) -> dict[str, Any]:
    roll = ctx.rng.random()
    key = ctx.rng.randrange(keys)
    if roll < APPEND_SHARE:
        return {"f": "append", "value": [key, n]}
    if roll < APPEND_SHARE + READ_SHARE:
        # Offsets up to a little past the most a key can hold so far: some reads miss.
        return {"f": "read", "value": [key, ctx.rng.randrange(int(n * APPEND_SHARE / keys) + 2)]}
    return {"f": "end-offset", "value": [key, None]}


def client_generator(workload: str, keys: int, ops_per_s: float) -> g.Gen:
    if workload == "consumer":
        return _consumer().client_generator(keys, ops_per_s)
    make = _queue_op if workload == "queue" else _log_op
    return g.clients(g.rate(ops_per_s, g.counter(lambda n, ctx: make(n, ctx, keys))))


def final_reads(workload: str, keys: int, history: list[Op]) -> g.Gen:
    """The reads after the last heal, built once the main phase is over."""
    if workload in ("queue", "consumer"):
        read = g.seq(
            {"f": "assign", "value": list(range(keys))},
            {"f": "poll", "value": durability.READ_TO_END},
        )
        readers = set(range(FINAL_READERS))
        return g.clients(g.OnThreads(lambda t: t in readers, g.each_thread(read)))
    highest = _highest_offsets(history)
    ops: list[g.GenLike] = [{"f": "end-offset", "value": [key, None]} for key in range(keys)]
    for key in range(keys):
        last = min(highest.get(key, -1) + 1, FINAL_READS_PER_KEY_MAX)
        ops += [{"f": "read", "value": [key, offset]} for offset in range(last + 1)]
    return g.clients(g.seq(*ops))


def _highest_offsets(history: list[Op]) -> dict[int, int]:
    highest: dict[int, int] = {}
    for op in history:
        if not op.is_client or op.type != "ok" or op.f not in ("append", "end-offset"):
            continue
        key, offset = op.value
        highest[key] = max(highest.get(key, -1), offset if op.f == "append" else offset - 1)
    return highest


# ---- checkers ------------------------------------------------------------------------------


def final_reads_complete(history: list[Op]) -> bool:
    """Whether a final read reached the end of every key (queue workload)."""
    return any(
        history[call].f == "poll"
        and history[call].value == durability.READ_TO_END
        and history[ret].type == "ok"
        for call, ret in pair_positions(history)
        if ret is not None
    )


def final_reads_done(workload: str, history: list[Op]) -> bool:
    """Whether the final reads completed: a final poll reached the end of every key
    (queue, consumer), or every op after the last nemesis op, the final heal, ended ok
    (log: the end offsets and the reads up to them)."""
    if workload in ("queue", "consumer"):
        return final_reads_complete(history)
    last_heal = max((at for at, op in enumerate(history) if op.process == "nemesis"), default=-1)
    final = [
        history[ret].type if ret is not None else "none"
        for call, ret in pair_positions(history)
        if history[call].is_client and call > last_heal
    ]
    return bool(final) and all(outcome == "ok" for outcome in final)


def queue_checks(history: list[Op], config: Config) -> dict[str, Result]:
    """The queue and durability checkers of a history of sends and final reads."""
    complete = final_reads_complete(history)
    # Without complete final reads, a write nobody read may just be unread, not lost.
    allowed = queue.JEPSEN_ALLOWED | (set() if complete else {"unseen"})
    results = {"queue": queue.check(history, allowed)}
    results["queue"].stats["final_reads_complete"] = complete
    acks = "all" if config.acks == -1 else str(config.acks)
    results["durability"] = durability.check(history, acks)
    return results


def check(workload: str, history: list[Op], config: Config) -> dict[str, Result]:
    """Every checker the workload's history is judged by, by name."""
    if workload == "consumer":
        return _consumer().check(history, config)
    results: dict[str, Result] = {}
    if workload == "queue":
        results.update(queue_checks(history, config))
    else:
        results["linearizable"] = linearizable.check(
            history, AppendLog(), LINEARIZABLE_TIME_LIMIT_S
        )
    results["perf"] = perf.check(history)
    return results


def _consumer() -> ModuleType:
    """The consumer workload, which builds on this module's clients: imported late."""
    from jepsen_py.campaign import consumer_workload

    return consumer_workload
