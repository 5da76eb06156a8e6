"""The native consumer's group membership (Kafka's ConsumerCoordinator, classic protocol).

One background task in the consumer's nursery finds the coordinator (FindCoordinator),
joins (JoinGroup, answering MEMBER_ID_REQUIRED with the id it was given), syncs
(SyncGroup; the leader computes the assignment with `partition.assignment.strategy`),
then heartbeats every `heartbeat.interval.ms` until the coordinator asks for a rebalance
(REBALANCE_IN_PROGRESS), forgets the member (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION), or
moves (NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, a broken connection). The
coordinator gets its own connection, since a broker answers a connection's requests in
order and a JoinGroup is parked there until the whole group has joined.

- `range` is eager: every owned partition is revoked before joining again.
- `cooperative-sticky` is incremental (KIP-429): only partitions that move are revoked,
  after the SyncGroup that says so, and the member then rejoins at once so that the next
  generation can hand them to their new owner.
- `max.poll.interval.ms`: when the application has not polled for that long, the member
  leaves the group (LeaveGroup) and joins again at its next poll, as Kafka's does.

Every change of assignment is kept in `events` (generation, assigned, revoked, why), so
a checker can tell which member owned which partition in which generation.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from impl.client.assignors import MemberSubscription, assign
from impl.client.connection import Connection
from impl.client.errors import ClientError, DefiniteFailure, NotSent, OutcomeUnknown, kafka_error
from impl.client.metadata import Cluster, TopicPartition
from impl.protocol import API_KEYS, group_data
from impl.protocol.errors import ProtocolError
from model.config import Config
from model.errors import Errors

log = logging.getLogger("replog.client")

FIND_COORDINATOR = API_KEYS["FindCoordinator"]
JOIN_GROUP = API_KEYS["JoinGroup"]
SYNC_GROUP = API_KEYS["SyncGroup"]
HEARTBEAT = API_KEYS["Heartbeat"]
LEAVE_GROUP = API_KEYS["LeaveGroup"]
OFFSET_COMMIT = API_KEYS["OffsetCommit"]
OFFSET_FETCH = API_KEYS["OffsetFetch"]
PROTOCOL_TYPE = "consumer"
# Kafka's client waits this much beyond the rebalance timeout for a JoinGroup answer.
JOIN_SLACK_MS = 5_000
COORDINATOR_ERRORS = frozenset(
    {
        Errors.COORDINATOR_NOT_AVAILABLE,
        Errors.NOT_COORDINATOR,
        Errors.COORDINATOR_LOAD_IN_PROGRESS,
    }
)
REJOIN_ERRORS = frozenset(
    {Errors.ILLEGAL_GENERATION, Errors.UNKNOWN_MEMBER_ID, Errors.REBALANCE_IN_PROGRESS}
)

Listener = Callable[[list[TopicPartition], int], Awaitable[None]]


class CommitFailed(DefiniteFailure):
    """The group moved on (rebalance, expired member): the offsets were not committed."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class CoordinatorUnavailable(DefiniteFailure):
    """No coordinator answered within default.api.timeout.ms."""


@dataclass(frozen=True, slots=True)
class RebalanceEvent:
    time_ms: int
    generation: int
    member_id: str
    assigned: tuple[TopicPartition, ...]
    revoked: tuple[TopicPartition, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class Committed:
    offset: int
    leader_epoch: int
    metadata: str


class GroupMember:
    def __init__(
        self,
        cluster: Cluster,
        config: Config,
        group_id: str,
        client_id: str,
        on_assigned: Listener,
        on_revoked: Listener,
    ) -> None:
        if not group_id:
            raise ValueError("a group id must be non-empty")
        self.cluster = cluster
        self.config = config
        self.group_id = group_id
        self.client_id = client_id
        self.topics: tuple[str, ...] = ()
        self.member_id = ""
        self.generation = -1
        self.leader = ""
        self.owned: set[TopicPartition] = set()
        self.events: list[RebalanceEvent] = []
        self.needs_join = True
        self.last_poll_ms = cluster.runtime.clock.monotonic_ms()
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked
        self._connection: Connection | None = None
        self._polled = trio.Event()
        self._stable = trio.Event()

    @property
    def stable(self) -> bool:
        return not self.needs_join and self.generation >= 0

    def subscribe(self, topics: list[str]) -> None:
        self.topics = tuple(sorted(set(topics)))
        self.needs_join = True

    def polled(self) -> None:
        self.last_poll_ms = self._now_ms()
        self._polled.set()

    async def wait_stable(self) -> None:
        await self._stable.wait()

    def _now_ms(self) -> int:
        return self.cluster.runtime.clock.monotonic_ms()

    # ---- the background task ----------------------------------------------------------

    async def run(self, nursery: trio.Nursery) -> None:
        """Keep the membership alive until cancelled."""
        backoff_s = self.config.retry_backoff_ms / 1000
        while True:
            try:
                if self.needs_join:
                    await self._wait_for_poll()
                    await self._join_and_sync(nursery)
                else:
                    await self._heartbeat(nursery)
            except (NotSent, OutcomeUnknown, CoordinatorUnavailable) as error:
                log.debug("group %s: %s", self.group_id, error)
                await self._drop_coordinator()
                await trio.sleep(backoff_s)

    async def _wait_for_poll(self) -> None:
        """After max.poll.interval.ms expired, join again only once the application polls."""
        while self._now_ms() - self.last_poll_ms > self.config.max_poll_interval_ms:
            self._polled = trio.Event()
            await self._polled.wait()

    # ---- coordinator -------------------------------------------------------------------

    async def coordinator(self, nursery: trio.Nursery) -> Connection:
        if self._connection is not None and self._connection.alive:
            return self._connection
        deadline_ms = self._now_ms() + self.config.default_api_timeout_ms
        while self._now_ms() < deadline_ms:
            found = await self._find_coordinator()
            if found is not None:
                host, port = found
                self._connection = await Connection.open(
                    self.cluster.runtime,
                    nursery,
                    host,
                    port,
                    client_id=self.client_id,
                    request_timeout_ms=self.config.request_timeout_ms,
                )
                return self._connection
            await trio.sleep(self.config.retry_backoff_ms / 1000)
        raise CoordinatorUnavailable(
            f"no coordinator for group {self.group_id} within "
            f"{self.config.default_api_timeout_ms} ms"
        )

    async def _find_coordinator(self) -> tuple[str, int] | None:
        connection = await self.cluster.any_connection()
        body = {"key": self.group_id, "key_type": 0, "coordinator_keys": [self.group_id]}
        response = await connection.request(FIND_COORDINATOR, body)
        row = response["coordinators"][0] if response.get("coordinators") else response
        if row["error_code"] != Errors.NONE:
            log.debug("FindCoordinator %s: %s", self.group_id, Errors(row["error_code"]).name)
            return None
        return row["host"], row["port"]

    async def _drop_coordinator(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with trio.CancelScope(shield=True):
                await connection.aclose()

    async def _request(
        self, nursery: trio.Nursery, api_key: int, body: dict, timeout_ms: int | None = None
    ) -> dict:
        connection = await self.coordinator(nursery)
        return await connection.request(api_key, body, timeout_ms)

    # ---- join and sync -----------------------------------------------------------------

    def _subscription(self) -> bytes:
        owned: dict[str, list[int]] = {}
        for tp in self.owned:
            owned.setdefault(tp.topic, []).append(tp.partition)
        return group_data.encode_subscription(list(self.topics), owned, self.generation)

    async def _join_and_sync(self, nursery: trio.Nursery) -> None:
        strategy = self.config.partition_assignment_strategy
        if strategy == "range" and self.owned:
            await self._revoke(set(self.owned), "eager rebalance")
        self._stable = trio.Event()
        rebalance_timeout_ms = self.config.max_poll_interval_ms
        body = {
            "group_id": self.group_id,
            "session_timeout_ms": self.config.session_timeout_ms,
            "rebalance_timeout_ms": rebalance_timeout_ms,
            "member_id": self.member_id,
            "group_instance_id": None,
            "protocol_type": PROTOCOL_TYPE,
            "protocols": [{"name": strategy, "metadata": self._subscription()}],
            "reason": None,
        }
        timeout_ms = max(self.config.request_timeout_ms, rebalance_timeout_ms + JOIN_SLACK_MS)
        response = await self._request(nursery, JOIN_GROUP, body, timeout_ms)
        error = response["error_code"]
        if error == Errors.MEMBER_ID_REQUIRED:
            self.member_id = response["member_id"]
            return
        if error != Errors.NONE:
            await self._join_failed(error)
            return
        self.member_id = response["member_id"]
        self.generation = response["generation_id"]
        self.leader = response["leader"]
        assignments = []
        if self.member_id == self.leader:
            assignments = await self._assign(response["protocol_name"], response["members"])
        sync = {
            "group_id": self.group_id,
            "generation_id": self.generation,
            "member_id": self.member_id,
            "group_instance_id": None,
            "protocol_type": PROTOCOL_TYPE,
            "protocol_name": response["protocol_name"],
            "assignments": assignments,
        }
        synced = await self._request(nursery, SYNC_GROUP, sync, timeout_ms)
        if synced["error_code"] != Errors.NONE:
            await self._join_failed(synced["error_code"])
            return
        await self._adopt(synced["assignment"] or b"", strategy)

    async def _join_failed(self, error: int) -> None:
        if error in COORDINATOR_ERRORS:
            await self._drop_coordinator()
        elif error in (Errors.UNKNOWN_MEMBER_ID, Errors.ILLEGAL_GENERATION):
            await self._reset_member(Errors(error).name)
        elif error not in REJOIN_ERRORS:
            raise kafka_error(error, f"joining group {self.group_id}")
        await trio.sleep(self.config.retry_backoff_ms / 1000)

    async def _reset_member(self, reason: str) -> None:
        """The coordinator forgot us: what we owned may already be someone else's."""
        if self.owned:
            await self._revoke(set(self.owned), f"lost membership: {reason}")
        self.member_id = ""
        self.generation = -1
        self.needs_join = True

    async def _assign(self, protocol: str, members: list[dict]) -> list[dict]:
        subscriptions = []
        for m in members:
            try:
                body = group_data.decode_subscription(m["metadata"])
            except ProtocolError as error:
                log.warning("member %s sent a bad subscription: %s", m["member_id"], error)
                body = {"topics": [], "owned_partitions": [], "generation_id": -1}
            owned = {o["topic"]: list(o["partitions"]) for o in body.get("owned_partitions") or []}
            subscriptions.append(
                MemberSubscription(
                    m["member_id"], tuple(body["topics"]), owned, body.get("generation_id", -1)
                )
            )
        topics = sorted({t for s in subscriptions for t in s.topics})
        await self.cluster.refresh(topics)
        counts = {t: n for t in topics if (n := self.cluster.partition_count(t)) is not None}
        plan = assign(protocol, subscriptions, counts)
        return [
            {"member_id": member_id, "assignment": group_data.encode_assignment(partitions)}
            for member_id, partitions in plan.items()
        ]

    async def _adopt(self, assignment: bytes, strategy: str) -> None:
        try:
            decoded = group_data.decode_assignment(assignment)
        except ProtocolError as error:
            raise kafka_error(Errors.INCONSISTENT_GROUP_PROTOCOL, str(error)) from error
        new = {TopicPartition(t, p) for t, ps in decoded.items() for p in ps}
        revoked = self.owned - new
        added = new - self.owned
        if revoked:
            await self._revoke(revoked, f"moved in generation {self.generation}")
        self.owned = new
        self.needs_join = bool(revoked) and strategy == "cooperative-sticky"
        if added or not self.events:
            self._record(added, set(), "assigned")
            await self._on_assigned(sorted(added), self.generation)
        if not self.needs_join:
            self._stable.set()

    def give_back(self, partitions: list[TopicPartition], reason: str) -> None:
        """The consumer could not start on these just-assigned partitions (it never took
        them, so no revocation listener runs): stop owning them and rejoin, so that a
        later generation hands them out again."""
        self.owned -= set(partitions)
        self._record(set(), set(partitions), reason)
        self.needs_join = True

    async def _revoke(self, partitions: set[TopicPartition], reason: str) -> None:
        self.owned -= partitions
        self._record(set(), partitions, reason)
        await self._on_revoked(sorted(partitions), self.generation)

    def _record(self, added: set[TopicPartition], revoked: set[TopicPartition], why: str) -> None:
        self.events.append(
            RebalanceEvent(
                self._now_ms(),
                self.generation,
                self.member_id,
                tuple(sorted(added)),
                tuple(sorted(revoked)),
                why,
            )
        )

    # ---- heartbeats, leaving -----------------------------------------------------------

    async def _heartbeat(self, nursery: trio.Nursery) -> None:
        await trio.sleep(self.config.heartbeat_interval_ms / 1000)
        if self.needs_join:
            return
        if self._now_ms() - self.last_poll_ms > self.config.max_poll_interval_ms:
            await self.leave(nursery, "max.poll.interval.ms passed without a poll")
            return
        body = {
            "group_id": self.group_id,
            "generation_id": self.generation,
            "member_id": self.member_id,
            "group_instance_id": None,
        }
        error = (await self._request(nursery, HEARTBEAT, body))["error_code"]
        if error == Errors.NONE:
            return
        if error in COORDINATOR_ERRORS:
            await self._drop_coordinator()
        elif error == Errors.REBALANCE_IN_PROGRESS:
            self.needs_join = True
        elif error in (Errors.UNKNOWN_MEMBER_ID, Errors.ILLEGAL_GENERATION):
            await self._reset_member(Errors(error).name)
        else:
            raise kafka_error(error, f"heartbeat of group {self.group_id}")

    async def leave(self, nursery: trio.Nursery, reason: str) -> None:
        """LeaveGroup (best effort: the session timeout removes us anyway)."""
        if self.owned:
            await self._revoke(set(self.owned), reason)
        if self.member_id and self._connection is not None and self._connection.alive:
            body = {
                "group_id": self.group_id,
                "member_id": self.member_id,
                "members": [
                    {"member_id": self.member_id, "group_instance_id": None, "reason": reason}
                ],
            }
            try:
                await self._connection.request(LEAVE_GROUP, body)
            except ClientError as error:
                log.debug("LeaveGroup %s: %s", self.group_id, error)
        self.member_id = ""
        self.generation = -1
        self.needs_join = True

    # ---- offsets -----------------------------------------------------------------------

    async def commit(
        self, nursery: trio.Nursery, offsets: dict[TopicPartition, tuple[int, int]], simple: bool
    ) -> None:
        """OffsetCommit of (offset, leader epoch) per partition, retried across coordinator
        moves until default.api.timeout.ms. `simple`: outside any generation (assign mode).

        Raises CommitFailed (definite: the group moved on), or, when some attempt may have
        reached the coordinator before time ran out, the OutcomeUnknown of that attempt."""
        topics: dict[str, list[dict]] = {}
        for tp, (offset, epoch) in sorted(offsets.items()):
            topics.setdefault(tp.topic, []).append(
                {
                    "partition_index": tp.partition,
                    "committed_offset": offset,
                    "committed_leader_epoch": epoch,
                    "committed_metadata": "",
                }
            )
        body = {
            "group_id": self.group_id,
            "generation_id_or_member_epoch": -1 if simple else self.generation,
            "member_id": "" if simple else self.member_id,
            "group_instance_id": None,
            "retention_time_ms": -1,
            "topics": [{"name": t, "partitions": rows} for t, rows in topics.items()],
        }
        await self._with_retries(nursery, lambda: self._commit_once(nursery, body))

    async def _commit_once(self, nursery: trio.Nursery, body: dict) -> int:
        response = await self._request(nursery, OFFSET_COMMIT, body)
        codes = [p["error_code"] for t in response["topics"] for p in t["partitions"]]
        failed = [c for c in codes if c != Errors.NONE]
        if not failed:
            return Errors.NONE
        code = failed[0]
        if code in REJOIN_ERRORS:
            if code != Errors.REBALANCE_IN_PROGRESS:
                self.needs_join = True
            raise CommitFailed(code, f"commit refused: {Errors(code).name}")
        # A partition the coordinator's metadata does not have yet (a topic just made)
        # is retried, as the Java client's commitSync retries this retriable error.
        if code in COORDINATOR_ERRORS or code in (
            Errors.REQUEST_TIMED_OUT,
            Errors.UNKNOWN_TOPIC_OR_PARTITION,
        ):
            return code
        raise kafka_error(code, f"OffsetCommit for group {self.group_id}")

    async def fetch_committed(
        self, nursery: trio.Nursery, partitions: list[TopicPartition] | None
    ) -> dict[TopicPartition, Committed | None]:
        """The group's committed offset per partition (None: nothing committed); with
        `partitions` None, every partition the group has committed."""
        topics: dict[str, list[int]] = {}
        for tp in partitions or []:
            topics.setdefault(tp.topic, []).append(tp.partition)
        wanted: list[dict] | None = [
            {"name": t, "partition_indexes": sorted(ps)} for t, ps in topics.items()
        ]
        if partitions is None:
            wanted = None
        body = {
            "group_id": self.group_id,
            "topics": wanted,
            "groups": [
                {"group_id": self.group_id, "member_id": None, "member_epoch": -1, "topics": wanted}
            ],
            "require_stable": False,
        }
        found: dict[TopicPartition, Committed | None] = {}

        async def once() -> int:
            response = await self._request(nursery, OFFSET_FETCH, body)
            group = response["groups"][0] if response.get("groups") else response
            if group.get("error_code", Errors.NONE) != Errors.NONE:
                return group["error_code"]
            for topic in group["topics"]:
                for row in topic["partitions"]:
                    if row["error_code"] != Errors.NONE:
                        return row["error_code"]
                    tp = TopicPartition(topic["name"], row["partition_index"])
                    offset = row["committed_offset"]
                    found[tp] = (
                        Committed(
                            offset, row.get("committed_leader_epoch", -1), row["metadata"] or ""
                        )
                        if offset >= 0
                        else None
                    )
            return Errors.NONE

        await self._with_retries(nursery, once)
        if partitions is None:
            return found
        return {tp: found.get(tp) for tp in partitions}

    async def _with_retries(
        self, nursery: trio.Nursery, attempt: Callable[[], Awaitable[int]]
    ) -> None:
        """Run `attempt` until it returns NONE; retry coordinator errors and lost
        connections until default.api.timeout.ms, then raise (ambiguously if any try was)."""
        deadline_ms = self._now_ms() + self.config.default_api_timeout_ms
        ambiguous: OutcomeUnknown | None = None
        last = "no attempt finished"
        while self._now_ms() < deadline_ms:
            try:
                code = await attempt()
            except (NotSent, CoordinatorUnavailable) as error:
                last = str(error)
                code = Errors.COORDINATOR_NOT_AVAILABLE
            except OutcomeUnknown as error:
                ambiguous = error
                last = str(error)
                code = Errors.REQUEST_TIMED_OUT
            if code == Errors.NONE:
                return
            last = last if code == Errors.COORDINATOR_NOT_AVAILABLE else Errors(code).name
            answer = kafka_error(code, f"group {self.group_id}")
            if ambiguous is None and isinstance(answer, OutcomeUnknown):
                ambiguous = answer
            if code != Errors.UNKNOWN_TOPIC_OR_PARTITION:
                await self._drop_coordinator()
            await trio.sleep(self.config.retry_backoff_ms / 1000)
        if ambiguous is not None:
            raise ambiguous
        raise CoordinatorUnavailable(f"group {self.group_id}: {last}")
