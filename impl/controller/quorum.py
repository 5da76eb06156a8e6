"""A controller quorum member: drives one RaftNode over the network and, while it leads,
acts as the active controller.

One task (`_drive`) owns the node's control flow: it feeds received messages and timer
ticks to the node and runs `_process_ready` after each input. Request handlers in other
tasks may propose; they call `node.propose` and `_process_ready` without awaiting in
between, so under trio's cooperative scheduling no other call can slip between a node's
`ready` and `advance`. Outgoing messages go to one bounded queue per peer; a peer that
cannot keep up loses messages, which Raft tolerates, instead of slowing the quorum.

The committed log is applied to a `MetadataImage`; brokers read the same entries with
MetadataFetch and apply them themselves. While this node leads (and its own no-op has
committed), it keeps a `ControllerState` built from that image and answers broker
registrations, heartbeats, AlterPartition and CreateTopics with the decisions of
`impl.controller.controller`, replying once the decision's entry has committed.
"""

from __future__ import annotations

import logging
import posixpath
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import trio

from impl.client.connection import Connection
from impl.client.errors import ClientError
from impl.controller import controller as decide
from impl.controller.metadata import MetadataImage, apply_all, decode_batch, encode_batch
from impl.controller.raft import (
    Busy,
    Entry,
    Message,
    NotLeader,
    RaftConfig,
    RaftNode,
    Role,
)
from impl.controller.raft_storage import RaftStorage
from impl.controller.raft_wire import RaftWireError, decode_message, encode_message
from impl.protocol import API_KEYS
from impl.runtime import waits
from impl.runtime.runtime import Runtime
from impl.runtime.waits import Flag
from model.config import Config
from model.errors import Errors

log = logging.getLogger("replog.controller")

METADATA_DIR = "__cluster_metadata-0"
TICK_INTERVAL_MS_MAX = 1_000
INBOX_MESSAGES_MAX = 1_024
OUTBOX_MESSAGES_MAX = 1_024
PEER_REQUEST_TIMEOUT_MS = 1_000
PEER_RETRY_BACKOFF_MS = 100
COMMIT_TIMEOUT_MS = 5_000
FENCE_CHECK_INTERVAL_MS = 500

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Outcome:
    """A controller decision after it committed (or why it did not)."""

    error: int
    image: MetadataImage | None = None


class QuorumNode:
    def __init__(
        self,
        node_id: int,
        voters: dict[int, Address],
        data_dir: str,
        config: Config,
        runtime: Runtime,
        raft_config: RaftConfig | None = None,
    ) -> None:
        assert node_id in voters, f"node {node_id} is not a voter of {sorted(voters)}"
        self.node_id = node_id
        self.voters = voters
        self.config = config
        self.runtime = runtime
        self.storage = RaftStorage.open(runtime.fs, posixpath.join(data_dir, METADATA_DIR))
        self.node = RaftNode(
            node_id,
            tuple(voters),
            self.storage.state,
            raft_config or RaftConfig(),
            runtime.rng,
            runtime.clock.monotonic_ms(),
        )
        self.image = MetadataImage()
        self.applied_index = 0
        self.active: decide.ControllerState | None = None
        self._commit_waiters: dict[int, trio.Event] = {}
        # A queue and a Flag rather than a memory channel: the driver's wait for the next
        # message then ends at its timer without a cancel scope (see impl.runtime.waits).
        self._inbox: deque[Message] = deque()
        self._inbox_arrived = Flag()
        self._outboxes = {
            peer: trio.open_memory_channel[Message](OUTBOX_MESSAGES_MAX)
            for peer in voters
            if peer != node_id
        }
        self._image_listeners: list[Callable[[MetadataImage], None]] = []
        self._committed = trio.Event()

    # ---- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            for peer, (_, outbox) in self._outboxes.items():
                nursery.start_soon(self._send_to_peer, peer, outbox)
            nursery.start_soon(self._check_sessions)
            await self._drive()

    def on_image(self, listener: Callable[[MetadataImage], None]) -> None:
        """Call `listener(image)` after every applied committed entry (combined mode)."""
        self._image_listeners.append(listener)

    # ---- the driver --------------------------------------------------------------------

    async def _drive(self) -> None:
        self._process_ready()
        while True:
            # Sleep until the node's next timer, not a fixed tick: an idle quorum wakes
            # for heartbeats and messages only. The cap is a safety net, not a tick.
            wait_ms = self.node.next_deadline_ms() - self.runtime.clock.monotonic_ms()
            wait_s = min(max(wait_ms, 0), TICK_INTERVAL_MS_MAX) / 1000
            if await self._message_by(trio.current_time() + wait_s):
                # The node's clock must be current before it handles the message: an
                # election deadline it resets is counted from its last tick.
                self.node.tick(self.runtime.clock.monotonic_ms())
                self._drain_inbox()
            self.node.tick(self.runtime.clock.monotonic_ms())
            self._process_ready()

    async def _message_by(self, deadline: float) -> bool:
        """Whether a message is queued by `deadline`, scheduled as a memory channel's
        `receive` under `trio.move_on_at(deadline)` would be: a passed deadline or a
        queued message costs one checkpoint, else the wait ends at the first arrival."""
        if deadline <= trio.current_time():
            await trio.lowlevel.checkpoint()
            return False
        if self._inbox:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return True
        self._inbox_arrived = Flag()
        return await self._inbox_arrived.wait_until(deadline)

    def _drain_inbox(self) -> None:
        while self._inbox:
            self.node.receive(self._inbox.popleft())

    def _process_ready(self) -> None:
        """Persist, send, apply, advance: the contract of `RaftNode.ready()`."""
        ready = self.node.ready()
        self.storage.persist(ready)
        for message in ready.messages_to_send:
            self._enqueue(message)
        self._apply(ready.committed_entries_to_apply)
        self.node.advance(ready)
        self._track_leadership()

    def _enqueue(self, message: Message) -> None:
        send, _ = self._outboxes[message.target]
        try:
            send.send_nowait(message)
        except trio.WouldBlock:
            log.debug("dropping a message to %d: its queue is full", message.target)

    def _apply(self, entries: tuple[Entry, ...]) -> None:
        for entry in entries:
            assert entry.index == self.applied_index + 1, "entries apply in order, once"
            if entry.data:
                self.image = apply_all(self.image, decode_batch(entry.data))
            self.applied_index = entry.index
            waiter = self._commit_waiters.pop(entry.index, None)
            if waiter is not None:
                waiter.set()
        if entries:
            self._committed.set()
            self._committed = trio.Event()
            for listener in self._image_listeners:
                listener(self.image)

    def _track_leadership(self) -> None:
        """Become the active controller once our no-op committed; stop when we lose it."""
        leading = self.node.is_leader_ready() and self.applied_index >= self.node.commit_index
        if leading and self.active is None:
            now_ms = self.runtime.clock.monotonic_ms()
            self.active = decide.ControllerState(
                self.image, decide.Sessions.fresh(self.image, now_ms)
            )
            log.info("node %d is the active controller (term %d)", self.node_id, self.node.term)
        elif not leading and self.active is not None and self.node.role is not Role.LEADER:
            self.active = None
            for waiter in self._commit_waiters.values():
                waiter.set()
            self._commit_waiters.clear()
            log.info("node %d is no longer the active controller", self.node_id)

    # ---- peers -------------------------------------------------------------------------

    def receive_raft_message(self, data: bytes) -> Errors:
        """A RaftMessage request's payload; queued for the driver (dropped when full)."""
        try:
            message = decode_message(data)
        except RaftWireError as error:
            log.warning("dropping a malformed Raft message: %s", error)
            return Errors.INVALID_REQUEST
        if message.target != self.node_id or message.source not in self._outboxes:
            return Errors.INVALID_REQUEST
        if len(self._inbox) >= INBOX_MESSAGES_MAX:
            log.debug("dropping a message from %d: the inbox is full", message.source)
        else:
            self._inbox.append(message)
            self._inbox_arrived.set()
        return Errors.NONE

    async def _send_to_peer(self, peer: int, outbox: trio.MemoryReceiveChannel[Message]) -> None:
        host, port = self.voters[peer]
        while True:
            try:
                async with trio.open_nursery() as nursery:
                    connection = await Connection.open(
                        self.runtime,
                        nursery,
                        host,
                        port,
                        client_id=f"controller-{self.node_id}",
                        request_timeout_ms=PEER_REQUEST_TIMEOUT_MS,
                    )
                    await self._pump(connection, outbox)
            except* ClientError as group:
                log.debug("link to controller %d down: %s", peer, group.exceptions[0])
            await waits.sleep(PEER_RETRY_BACKOFF_MS / 1000)

    async def _pump(
        self, connection: Connection, outbox: trio.MemoryReceiveChannel[Message]
    ) -> None:
        try:
            async for message in outbox:
                body = {"cluster_id": "replog", "data": encode_message(message)}
                await connection.request(API_KEYS["RaftMessage"], body)
        finally:
            with trio.CancelScope(shield=True):
                await connection.aclose()

    # ---- the active controller ---------------------------------------------------------

    async def _check_sessions(self) -> None:
        """Fence brokers whose session expired (only the active controller acts)."""
        while True:
            await waits.sleep(FENCE_CHECK_INTERVAL_MS / 1000)
            if self.active is not None:
                now_ms = self.runtime.clock.monotonic_ms()
                decision = decide.fence_expired_brokers(self.active, now_ms, self.config)
                if decision.records:
                    await self.commit(decision)

    async def commit(self, decision: decide.Decision) -> Outcome:
        """Propose a decision's records and wait until they commit (or we lose the lead)."""
        if self.active is None:
            return Outcome(Errors.NOT_CONTROLLER)
        if decision.error != Errors.NONE:
            return Outcome(decision.error)
        if not decision.records:
            self.active = decision.state
            return Outcome(Errors.NONE, self.image)
        term = self.node.term
        proposed = self.node.propose(encode_batch(decision.records))
        if isinstance(proposed, NotLeader):
            return Outcome(Errors.NOT_CONTROLLER)
        if isinstance(proposed, Busy):
            return Outcome(Errors.REQUEST_TIMED_OUT)
        self.active = decision.state
        waiter = trio.Event()
        self._commit_waiters[proposed] = waiter
        self._process_ready()
        with trio.move_on_after(COMMIT_TIMEOUT_MS / 1000):
            await waiter.wait()
        # An index holds our entry only if it carries our term: a new leader may have
        # replaced it, and then it committed something else.
        committed = self.applied_index >= proposed and proposed <= self.node.last_index
        if committed and self.node.term_at(proposed) == term:
            return Outcome(Errors.NONE, self.image)
        self._commit_waiters.pop(proposed, None)
        return Outcome(Errors.NOT_CONTROLLER if self.active is None else Errors.REQUEST_TIMED_OUT)

    def leader_hint(self) -> int:
        return self.node.leader_id

    async def wait_for_commit(self, index: int, timeout_ms: int) -> None:
        """Until entry `index` is committed here, or `timeout_ms` passed (a long poll)."""
        with trio.move_on_after(timeout_ms / 1000):
            while self.node.commit_index < index:
                await self._committed.wait()

    def committed_entries(self, from_index: int, bytes_max: int) -> tuple[Entry, ...]:
        """Committed entries from `from_index` (1-based), for a broker's MetadataFetch."""
        if from_index > self.node.commit_index:
            return ()
        entries = self.node.entries_from(from_index, bytes_max)
        return tuple(e for e in entries if e.index <= self.node.commit_index)
