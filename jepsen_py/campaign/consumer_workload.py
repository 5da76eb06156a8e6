"""The `consumer` workload: producers, a consumer group of native consumers, a lag monitor.

Threads: even ones are group members, odd ones produce, and thread 1 also takes
`replog lag` snapshots (so `--concurrency` must be at least 2).

- send    `[key, value]` -> ok `[offset, value]`: a unique integer to partition `key`.
- consume `None` -> one cycle of a member of group GROUP (`replog-consumers`)
  subscribed to the topic: poll (up to max.poll.records), then, by
  `replog.consumer.commit`, after-processing (at-least-once): process, then commit;
  before-processing (at-most-once): commit, then process only if the commit
  succeeded. Processing takes `replog.consumer.processing.ms` per record. In
  `replog.consumer.crash.percent` of the cycles that polled records (drawn from the
  runtime's seeded RNG) the member dies half-way (after processing and before committing, or after
  committing and before processing): the completion is `info`, and the process is
  abandoned without leaving the group, so the coordinator waits out session.timeout.ms
  and then rebalances. The completion value
  is jepsen_py.consumer's (what was polled, processed, committed, and the group's
  assign / revoke / auto.offset.reset events since the last cycle). A poll refused
  under auto.offset.reset=none is `fail` with the error and the reset event.
- lag     `None` -> ok `{"status", "partitions"}`: jepsen_py.lag.describe_group of GROUP,
  judged against the topic's retention.ms as the broker describes it.
- final reads, as the queue workload's: every key from its start to its end offset.

Judged by jepsen_py.consumer, and by the queue and durability checkers while retention
cannot have deleted anything (retention.ms and retention.bytes unlimited or above
RETENTION_CHECKED_MS_MIN), since final reads cannot see records retention deleted.
"""

from __future__ import annotations

from typing import Any

import trio

from impl.client.consumer import Consumer, ConsumerRecord, OffsetReset
from impl.client.errors import ClientError, NoOffsetForPartition, OffsetOutOfRange
from impl.client.group import RebalanceEvent
from impl.client.metadata import TopicPartition
from impl.runtime.runtime import Runtime
from jepsen_py import consumer as consumer_checker
from jepsen_py import perf
from jepsen_py.campaign import generator as g
from jepsen_py.campaign.scheduler import Completion
from jepsen_py.campaign.workloads import (
    QueueClient,
    Target,
    _by_key,
    _describe,
    queue_checks,
)
from jepsen_py.history import Op
from jepsen_py.lag import describe_group, overall_status
from jepsen_py.result import Result
from model.config import Config

GROUP = "replog-consumers"
LAG_THREAD = 1
# A member (thread 0) and a producer that also takes the lag snapshots (thread 1).
CONCURRENCY_MIN = LAG_THREAD + 1
POLL_MS = 200
LAG_INTERVAL_S = 0.5
RETENTION_CHECKED_MS_MIN = 3_600_000
WRITES = frozenset({"send"})


async def start_group_at_zero(
    runtime: Runtime,
    bootstrap: str,
    config: Config,
    topic: str,
    partitions: int,
    group: str = GROUP,
) -> None:
    """Commit offset 0 of every partition for `group` before any member starts: every
    record the run produces is then due for processing, whatever auto.offset.reset says
    (without it, a first member that crashed before its first commit left its successor
    no committed offset, and `latest` skipped what was produced meanwhile)."""
    async with Consumer(runtime, bootstrap, config, group_id=group) as committer:
        await committer.commit({TopicPartition(topic, p): 0 for p in range(partitions)})


def is_member(thread: g.Thread) -> bool:
    return isinstance(thread, int) and thread % 2 == 0


def is_producer(thread: g.Thread) -> bool:
    return isinstance(thread, int) and thread % 2 == 1


class ConsumerClient(QueueClient):
    """A process's producer, its manual reader for final reads and, once it consumes,
    its own group member."""

    def __init__(self, target: Target, process: int, group: str = GROUP) -> None:
        super().__init__(target, process)
        self.group = group
        self.member: Consumer | None = None
        self._subscribed = False
        self._rebalances_seen = 0
        self._resets_seen = 0

    async def _invoke(self, f: str, value: Any) -> Completion:
        if f == "consume":
            return await self._consume()
        if f == "lag":
            return await self._lag()
        return await super()._invoke(f, value)

    async def __aenter__(self) -> ConsumerClient:
        await super().__aenter__()
        target = self.target
        # Opened here, not at the first consume: its nursery must not live inside the
        # cancel scope of one op. It joins the group only when it first consumes.
        self.member = await self._stack.enter_async_context(
            Consumer(
                target.runtime,
                target.bootstrap,
                target.config,
                client_id=f"replog-member-{self.process}",
                group_id=self.group,
            )
        )
        return self

    def _crashes_now(self) -> bool:
        """Whether this cycle (one that polled records) crashes: the share is
        replog.consumer.crash.percent, drawn from the runtime's seeded RNG."""
        return self.target.runtime.rng.random() * 100 < self.target.config.consumer_crash_percent

    def _joined(self) -> Consumer:
        assert self.member is not None, "the client is entered before it is used"
        if not self._subscribed:
            self.member.subscribe([self.target.topic])
            self._subscribed = True
        return self.member

    async def _consume(self) -> Completion:
        member = self._joined()
        discipline = self.target.config.consumer_commit
        cycle = _Cycle(discipline)
        try:
            records = await member.poll(POLL_MS)
        except (NoOffsetForPartition, OffsetOutOfRange) as error:
            return Completion("fail", self._report(member, cycle), _describe(error))
        cycle.identify(member)
        cycle.polled = records
        crash = bool(records) and self._crashes_now()
        if discipline == consumer_checker.AT_MOST_ONCE:
            await cycle.commit(member)
            if crash:
                return self._crashed(member, cycle, "after committing, before processing")
            if cycle.commit_error is None:
                await self._process(cycle, records)
        else:
            await self._process(cycle, records)
            if crash:
                return self._crashed(member, cycle, "after processing, before committing")
            await cycle.commit(member)
        return Completion("ok", self._report(member, cycle))

    async def _process(self, cycle: _Cycle, records: list[ConsumerRecord]) -> None:
        processing_ms = self.target.config.consumer_processing_ms
        if processing_ms and records:
            await trio.sleep(processing_ms * len(records) / 1000)
        cycle.processed = records

    def _crashed(self, member: Consumer, cycle: _Cycle, where: str) -> Completion:
        return Completion("info", self._report(member, cycle), f"consumer crashed {where}")

    def _report(self, member: Consumer, cycle: _Cycle) -> dict[str, Any]:
        now_ms = self.target.runtime.clock.monotonic_ms()
        rebalances, resets = member.rebalances, member.resets
        events = [_rebalance_event(e, now_ms) for e in rebalances[self._rebalances_seen :]]
        events += [_reset_event(e, now_ms) for e in resets[self._resets_seen :]]
        self._rebalances_seen, self._resets_seen = len(rebalances), len(resets)
        return cycle.to_json(events)

    async def _lag(self) -> Completion:
        target = self.target
        config = target.config.with_values(auto_offset_reset="none")
        try:
            rows = await describe_group(target.runtime, target.bootstrap, self.group, config)
        except ClientError as error:
            return Completion("fail", None, _describe(error))
        partitions = [
            {
                "key": row.partition,
                "committed": row.committed,
                "log_end": row.log_end,
                "log_start": row.log_start,
                "lag": row.lag,
                "status": row.status,
            }
            for row in rows
            if row.topic == target.topic
        ]
        status = overall_status(rows) if rows else "UNKNOWN"
        return Completion("ok", {"status": status, "partitions": partitions})


class _Cycle:
    """What one consume cycle did, for its completion value."""

    def __init__(self, discipline: str) -> None:
        self.discipline = discipline
        self.member_id = ""
        self.generation = -1
        self.polled: list[ConsumerRecord] = []
        self.processed: list[ConsumerRecord] = []
        self.committed: dict[str, int] | None = None
        self.commit_error: str | None = None

    def identify(self, member: Consumer) -> None:
        """Read right after poll returned (no checkpoint between): the generation the
        polled records were owned in."""
        self.member_id, self.generation = member.member_id, member.generation

    async def commit(self, member: Consumer) -> None:
        """Commit one past the last polled record of each partition (nothing polled,
        nothing to commit)."""
        positions: dict[TopicPartition, int] = {}
        for record in self.polled:
            positions[TopicPartition(record.topic, record.partition)] = record.offset + 1
        if not positions:
            return
        try:
            await member.commit(positions)
        except ClientError as error:
            self.commit_error = _describe(error)
            return
        self.committed = {str(tp.partition): offset for tp, offset in positions.items()}

    def to_json(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "member": self.member_id,
            "generation": self.generation,
            "commit": self.discipline,
            "polled": _by_key(self.polled),
            "processed": _by_key(self.processed),
            "committed": self.committed,
            "commit_error": self.commit_error,
            "events": events,
        }


def _rebalance_event(event: RebalanceEvent, now_ms: int) -> dict[str, Any]:
    kind = "assign" if event.assigned or not event.revoked else "revoke"
    partitions = event.assigned if kind == "assign" else event.revoked
    return {
        "event": kind,
        "ago_ms": max(0, now_ms - event.time_ms),
        "generation": event.generation,
        "member": event.member_id,
        "keys": [tp.partition for tp in partitions],
        "reason": event.reason,
    }


def _reset_event(reset: OffsetReset, now_ms: int) -> dict[str, Any]:
    return {
        "event": "reset",
        "ago_ms": max(0, now_ms - reset.time_ms),
        "key": reset.partition.partition,
        "from": reset.from_offset,
        "to": reset.to_offset,
        "policy": reset.policy,
        "reason": reset.reason,
    }


class ConsumerClients:
    """The ClientFactory of the consumer workload."""

    def __init__(self, target: Target, group: str = GROUP) -> None:
        self.target = target
        self.group = group

    def open(self, process: int) -> ConsumerClient:
        return ConsumerClient(self.target, process, self.group)

    def timeout_type(self, f: str) -> str:
        return "info" if f in WRITES else "fail"


# ---- generators ------------------------------------------------------------------------------


def client_generator(
    keys: int, sends_per_s: float, lag_interval_s: float = LAG_INTERVAL_S
) -> g.Gen:
    """Members consume back to back, producers send at `sends_per_s` in total, thread 1
    also snapshots the group's lag every `lag_interval_s`."""

    def send(n: int, ctx: g.Context) -> dict[str, Any]:
        return {"f": "send", "value": [ctx.rng.randrange(keys), n]}

    lag = g.delay(lag_interval_s, g.FromFunction(lambda ctx: {"f": "lag", "value": None}))
    return g.clients(
        g.any_of(
            g.OnThreads(is_member, g.each_thread(g.FromFunction(_consume))),
            g.OnThreads(is_producer, g.rate(sends_per_s, g.counter(send))),
            g.OnThreads(lambda t: t == LAG_THREAD, lag),
        )
    )


def _consume(ctx: g.Context) -> dict[str, Any]:
    return {"f": "consume", "value": None}


# ---- checkers --------------------------------------------------------------------------------


def retention_unlimited(config: Config) -> bool:
    """Whether retention could not have deleted a record of a campaign-length run."""
    ms_ok = config.retention_ms == -1 or config.retention_ms >= RETENTION_CHECKED_MS_MIN
    return ms_ok and config.retention_bytes == -1


def check(history: list[Op], config: Config) -> dict[str, Result]:
    results = {"consumer": consumer_checker.check(history)}
    if retention_unlimited(config):
        results.update(queue_checks(history, config))
    results["perf"] = perf.check(history)
    return results
