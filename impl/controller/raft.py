"""A Raft node as a pure state machine (etcd/raft style): inputs in, outputs out, no I/O.

The node never reads a clock, touches a disk or sends a packet. Time arrives through
`tick(now_ms)`, messages through `receive`, proposals through `propose`; everything the
node wants done comes back from `ready()` as one `Ready`, and `advance(ready)` tells the
node that the driver did it. Randomness (the election timeout jitter) comes from the
injected `random.Random`, so a seeded simulation replays exactly.

Driver loop contract (one task owns the node; no other call between `ready` and `advance`):

    node = RaftNode(node_id, voters, storage.state, RaftConfig(), rng, now_ms)
    loop:
        wait for the next input: a message, a proposal, or the tick timer
        (at node.next_deadline_ms(), or every few ms: heartbeat_interval_ms / 4)
        node.tick(now_ms) | node.receive(message) | node.propose(data)  (one or several)
        ready = node.ready()         # if ready.is_empty(): advance(ready) and wait again
        storage.persist(ready)       # 1. entries (fsync), then the hard state (atomic)
        send(ready.messages_to_send) # 2. only after 1: a vote or an ack promises durability;
                                     #    never block on a slow peer, dropping is fine
        apply(ready.committed_entries_to_apply)  # 3. skip no-ops (empty data)
        node.advance(ready)          # 4. the node learns what is durable and applied

A restarted node replays its log: its first `ready()` hands back every committed entry
from index 1 (there are no snapshots), so the state machine is rebuilt from scratch.

Protocol: Raft (Ongaro 2014) with
- pre-vote (thesis 9.6): a node first asks whether it could win, without raising its term,
  so a node that rejoins from a partition does not depose a healthy leader;
- check-quorum (thesis 6.2): a leader that has not heard from a majority within an
  election timeout steps down, so a partitioned leader stops accepting proposals; and
  followers that heard from a leader within an election timeout ignore vote requests
  (leader lease), which check-quorum makes safe;
- a no-op entry at the start of each leader term, so the leader can commit (and a new
  controller can act on) every entry of earlier terms (thesis 3.6.2: a leader commits
  only entries of its own term by counting).
No membership changes, snapshots or learners: observers (brokers) read committed entries
with `entries_from`, served by any node, since committed entries never change.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import Enum

NO_NODE = -1


class Role(Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry. Indices start at 1; an entry with empty data is a leader's no-op."""

    index: int
    term: int
    data: bytes


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable before the node speaks: its term, its vote in that term, and
    the commit index (which only saves re-learning it after a restart)."""

    term: int = 0
    voted_for: int = NO_NODE
    commit: int = 0


@dataclass(frozen=True, slots=True)
class StorageState:
    """What a node finds on disk when it starts."""

    hard_state: HardState = field(default_factory=HardState)
    entries: tuple[Entry, ...] = ()


@dataclass(frozen=True, slots=True)
class RaftConfig:
    # KRaft's controller.quorum.election.timeout.ms default; jitter adds up to as much again.
    election_timeout_ms: int = 1_000
    # Four heartbeats per election timeout, as KRaft's followers fetch (500 ms waits)
    # four times per controller.quorum.fetch.timeout.ms: one late message is no election.
    heartbeat_interval_ms: int = 250
    pre_vote: bool = True
    check_quorum: bool = True
    append_entries_max: int = 64
    append_bytes_max: int = 1 << 20
    entry_bytes_max: int = 1 << 20
    uncommitted_entries_max: int = 1_024

    def __post_init__(self) -> None:
        if not 0 < self.heartbeat_interval_ms < self.election_timeout_ms:
            raise ValueError("need 0 < heartbeat_interval_ms < election_timeout_ms")
        if min(self.append_entries_max, self.append_bytes_max, self.uncommitted_entries_max) < 1:
            raise ValueError("append and proposal limits must be positive")


# --- messages: `source` sends to `target`; `term` is the sender's (or proposed) term ----


@dataclass(frozen=True, slots=True)
class RequestVote:
    source: int
    target: int
    term: int
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False


@dataclass(frozen=True, slots=True)
class VoteResponse:
    source: int
    target: int
    term: int
    granted: bool
    pre_vote: bool = False


@dataclass(frozen=True, slots=True)
class AppendEntries:
    """From the leader (`source`); also the heartbeat, with no entries."""

    source: int
    target: int
    term: int
    prev_index: int
    prev_term: int
    entries: tuple[Entry, ...]
    leader_commit: int


@dataclass(frozen=True, slots=True)
class AppendResponse:
    """On success, `match_index` is the last index known to equal the leader's log. On
    failure, `rejected_index` echoes the request's prev_index and `conflict_index` is where
    the follower suggests the leader try next."""

    source: int
    target: int
    term: int
    success: bool
    match_index: int = 0
    rejected_index: int = 0
    conflict_index: int = 0


Message = RequestVote | VoteResponse | AppendEntries | AppendResponse


@dataclass(frozen=True, slots=True)
class NotLeader:
    """A proposal to a node that is not the leader; `leader_hint` is NO_NODE if unknown."""

    leader_hint: int


@dataclass(frozen=True, slots=True)
class Busy:
    """The leader already holds `RaftConfig.uncommitted_entries_max` uncommitted entries."""

    uncommitted_entries: int


@dataclass(frozen=True, slots=True)
class Ready:
    messages_to_send: tuple[Message, ...]
    entries_to_persist: tuple[Entry, ...]
    hard_state_to_persist: HardState | None
    committed_entries_to_apply: tuple[Entry, ...]

    def is_empty(self) -> bool:
        return not (
            self.messages_to_send
            or self.entries_to_persist
            or self.hard_state_to_persist
            or self.committed_entries_to_apply
        )


@dataclass(slots=True)
class _Progress:
    """The leader's view of one follower. While probing, the leader sends one batch at a
    time from `next_index`; once an append succeeded it pipelines (advances `next_index`
    on send) until a rejection sends it back to probing."""

    next_index: int
    match_index: int = 0
    pipelining: bool = False


class RaftNode:
    def __init__(
        self,
        node_id: int,
        voters: tuple[int, ...],
        storage_state: StorageState,
        config: RaftConfig,
        rng: random.Random,
        now_ms: int,
    ) -> None:
        assert node_id in voters, f"node {node_id} is not among the voters {voters}"
        assert len(set(voters)) == len(voters), f"duplicate voters {voters}"
        hard = storage_state.hard_state
        entries = list(storage_state.entries)
        assert all(e.index == i for i, e in enumerate(entries, start=1)), "log has gaps"
        assert hard.commit <= len(entries), "commit index beyond the recovered log"
        self.node_id = node_id
        self.voters = tuple(sorted(voters))
        self._peers = tuple(v for v in self.voters if v != node_id)
        self._quorum = len(self.voters) // 2 + 1
        self._config = config
        self._rng = rng
        self._now_ms = now_ms
        self.term = hard.term
        self.voted_for = hard.voted_for
        self.commit_index = hard.commit
        self._log = entries
        self.role = Role.FOLLOWER
        self.leader_id = NO_NODE
        self._leader_contact_ms = now_ms
        self._election_deadline_ms = 0
        self._heartbeat_due_ms = 0
        self._quorum_check_due_ms = 0
        self._votes: dict[int, bool] = {}
        self._progress: dict[int, _Progress] = {}
        self._recently_active: set[int] = set()
        self._term_start_index = 0
        self._stable_index = len(entries)
        self._applied_index = 0
        self._persisted_hard_state = hard
        self._outbox: list[Message] = []
        self._pending: Ready | None = None
        self._reset_election_deadline()

    # --- reading ------------------------------------------------------------------------

    @property
    def last_index(self) -> int:
        return len(self._log)

    def term_at(self, index: int) -> int:
        """The term of the entry at `index`; 0 for index 0 (before the first entry)."""
        assert 0 <= index <= len(self._log), f"no entry {index} (last is {len(self._log)})"
        return self._log[index - 1].term if index else 0

    def entry_at(self, index: int) -> Entry:
        assert 1 <= index <= len(self._log), f"no entry {index} (last is {len(self._log)})"
        return self._log[index - 1]

    def is_leader_ready(self) -> bool:
        """Leader with its own no-op committed: every earlier entry is committed, so a
        controller that has applied up to the commit index sees the whole past."""
        return self.role is Role.LEADER and self.commit_index >= self._term_start_index

    def entries_from(self, index: int, bytes_max: int) -> tuple[Entry, ...]:
        """Committed entries from `index` for an observer's fetch: at least one if any
        exists (so an oversized entry still moves), then up to `bytes_max` of data."""
        assert index >= 1, "log indices start at 1"
        out: list[Entry] = []
        size_bytes = 0
        for entry in self._log[index - 1 : self.commit_index]:
            if out and size_bytes + len(entry.data) > bytes_max:
                break
            out.append(entry)
            size_bytes += len(entry.data)
        return tuple(out)

    # --- inputs -------------------------------------------------------------------------

    def tick(self, now_ms: int) -> None:
        self._require_no_pending_ready()
        assert now_ms >= self._now_ms, f"time went backwards: {now_ms} < {self._now_ms}"
        self._now_ms = now_ms
        if self.role is Role.LEADER:
            self._tick_leader()
        elif now_ms >= self._election_deadline_ms:
            self._campaign(pre_vote=self._config.pre_vote)

    def next_deadline_ms(self) -> int:
        """When `tick` may next have something to do (a heartbeat, a quorum check, an
        election): a driver may sleep until then unless a message or proposal comes."""
        if self.role is Role.LEADER:
            return min(self._heartbeat_due_ms, self._quorum_check_due_ms)
        return self._election_deadline_ms

    def propose(self, data: bytes) -> int | NotLeader | Busy:
        """Append `data` as a new entry if leader; the index it will have if committed."""
        self._require_no_pending_ready()
        if not data:
            raise ValueError("empty data is reserved for the leader's no-op entries")
        if len(data) > self._config.entry_bytes_max:
            raise ValueError(f"{len(data)} bytes, more than {self._config.entry_bytes_max}")
        if self.role is not Role.LEADER:
            return NotLeader(self.leader_id)
        uncommitted = self.last_index - self.commit_index
        if uncommitted >= self._config.uncommitted_entries_max:
            return Busy(uncommitted)
        index = self._append_own(data)
        for peer in self._peers:
            if self._progress[peer].pipelining:
                self._send_append(peer)
        return index

    def receive(self, message: Message) -> None:
        self._require_no_pending_ready()
        assert message.target == self.node_id, f"{message} is not for node {self.node_id}"
        if message.source not in self._peers:
            return
        if message.term > self.term and not self._accept_higher_term(message):
            return
        if message.term < self.term:
            self._answer_stale(message)
            return
        match message:
            case RequestVote():
                self._handle_vote_request(message)
            case VoteResponse():
                self._handle_vote_response(message)
            case AppendEntries():
                self._handle_append(message)
            case AppendResponse():
                self._handle_append_response(message)

    # --- outputs ------------------------------------------------------------------------

    def ready(self) -> Ready:
        self._require_no_pending_ready()
        hard = HardState(self.term, self.voted_for, self.commit_index)
        ready = Ready(
            messages_to_send=tuple(self._outbox),
            entries_to_persist=tuple(self._log[self._stable_index :]),
            hard_state_to_persist=None if hard == self._persisted_hard_state else hard,
            committed_entries_to_apply=tuple(self._log[self._applied_index : self.commit_index]),
        )
        self._pending = ready
        return ready

    def advance(self, ready: Ready) -> None:
        """The driver persisted, sent and applied everything in `ready`."""
        assert ready is self._pending, "advance() takes the Ready that ready() returned"
        self._pending = None
        self._outbox.clear()
        if ready.entries_to_persist:
            self._stable_index = ready.entries_to_persist[-1].index
        if ready.hard_state_to_persist is not None:
            self._persisted_hard_state = ready.hard_state_to_persist
        if ready.committed_entries_to_apply:
            self._applied_index = ready.committed_entries_to_apply[-1].index
        if self.role is Role.LEADER:
            # The leader counts itself only for entries on its own disk.
            self._maybe_commit()

    def _require_no_pending_ready(self) -> None:
        assert self._pending is None, "call advance(ready) before feeding the node again"

    # --- terms and roles ----------------------------------------------------------------

    def _accept_higher_term(self, message: Message) -> bool:
        """Whether a message from a higher term may move this node to it."""
        if isinstance(message, RequestVote):
            if self._in_lease():
                return False
            if not message.pre_vote:
                self._become_follower(message.term, NO_NODE)
            return True
        if isinstance(message, VoteResponse) and message.pre_vote and message.granted:
            # A granted pre-vote carries the term the candidate proposes, not one anyone holds.
            return True
        leader = message.source if isinstance(message, AppendEntries) else NO_NODE
        self._become_follower(message.term, leader)
        return True

    def _in_lease(self) -> bool:
        """Heard from a live leader within an election timeout (or is that leader)."""
        if not self._config.check_quorum or self.leader_id == NO_NODE:
            return False
        if self.role is Role.LEADER:
            return True
        return self._now_ms - self._leader_contact_ms < self._config.election_timeout_ms

    def _answer_stale(self, message: Message) -> None:
        """Tell a node from an older term about the current one, so a deposed leader or a
        lagging pre-candidate steps down instead of retrying forever."""
        if isinstance(message, AppendEntries):
            self._send(AppendResponse(self.node_id, message.source, self.term, success=False))
        elif isinstance(message, RequestVote) and message.pre_vote:
            self._send(VoteResponse(self.node_id, message.source, self.term, False, True))

    def _become_follower(self, term: int, leader: int) -> None:
        assert term >= self.term, "terms never go back"
        if term > self.term:
            self.term = term
            self.voted_for = NO_NODE
        self.role = Role.FOLLOWER
        self.leader_id = leader
        if leader != NO_NODE:
            self._leader_contact_ms = self._now_ms
        self._votes = {}
        self._progress = {}
        self._reset_election_deadline()

    def _reset_election_deadline(self) -> None:
        timeout_ms = self._config.election_timeout_ms
        self._election_deadline_ms = self._now_ms + timeout_ms + self._rng.randrange(timeout_ms)

    # --- elections ----------------------------------------------------------------------

    def _campaign(self, pre_vote: bool) -> None:
        if pre_vote:
            self.role = Role.PRE_CANDIDATE
            proposed_term = self.term + 1
        else:
            self.role = Role.CANDIDATE
            self.term += 1
            self.voted_for = self.node_id
            proposed_term = self.term
        self.leader_id = NO_NODE
        self._votes = {self.node_id: True}
        self._reset_election_deadline()
        if self._tally_votes():
            return
        last = self.last_index
        for peer in self._peers:
            request = RequestVote(
                self.node_id, peer, proposed_term, last, self.term_at(last), pre_vote
            )
            self._send(request)

    def _handle_vote_request(self, request: RequestVote) -> None:
        may_vote = (
            self.voted_for == request.source
            or (self.voted_for == NO_NODE and self.leader_id == NO_NODE)
            # A pre-vote for a later term promises nothing in this one.
            or (request.pre_vote and request.term > self.term)
        )
        last = self.last_index
        up_to_date = (request.last_log_term, request.last_log_index) >= (self.term_at(last), last)
        granted = may_vote and up_to_date
        if granted and not request.pre_vote:
            self.voted_for = request.source
            self._reset_election_deadline()
        term = request.term if granted else self.term
        self._send(VoteResponse(self.node_id, request.source, term, granted, request.pre_vote))

    def _handle_vote_response(self, response: VoteResponse) -> None:
        expected = Role.PRE_CANDIDATE if response.pre_vote else Role.CANDIDATE
        if self.role is not expected:
            return
        self._votes[response.source] = response.granted
        self._tally_votes()

    def _tally_votes(self) -> bool:
        """Act on a decided election; True if it was decided."""
        granted = sum(self._votes.values())
        if granted >= self._quorum:
            if self.role is Role.PRE_CANDIDATE:
                self._campaign(pre_vote=False)
            else:
                self._become_leader()
            return True
        if len(self._votes) - granted >= self._quorum:
            self._become_follower(self.term, NO_NODE)
            return True
        return False

    def _become_leader(self) -> None:
        assert self.role is Role.CANDIDATE and self.voted_for == self.node_id, (
            f"node {self.node_id} won term {self.term} without voting for itself"
        )
        self.role = Role.LEADER
        self.leader_id = self.node_id
        next_index = self.last_index + 1
        self._progress = {peer: _Progress(next_index) for peer in self._peers}
        self._recently_active = set()
        self._quorum_check_due_ms = self._now_ms + self._config.election_timeout_ms
        self._heartbeat_due_ms = self._now_ms + self._config.heartbeat_interval_ms
        self._term_start_index = self._append_own(b"")
        for peer in self._peers:
            self._send_append(peer)

    # --- leader -------------------------------------------------------------------------

    def _tick_leader(self) -> None:
        if self._now_ms >= self._quorum_check_due_ms:
            if len(self._recently_active) + 1 < self._quorum:
                self._become_follower(self.term, NO_NODE)
                return
            self._recently_active = set()
            self._quorum_check_due_ms = self._now_ms + self._config.election_timeout_ms
        if self._now_ms >= self._heartbeat_due_ms:
            self._heartbeat_due_ms = self._now_ms + self._config.heartbeat_interval_ms
            for peer in self._peers:
                self._send_append(peer)

    def _append_own(self, data: bytes) -> int:
        index = self.last_index + 1
        self._log.append(Entry(index, self.term, data))
        return index

    def _send_append(self, peer: int) -> None:
        progress = self._progress[peer]
        prev = progress.next_index - 1
        entries = self._batch_from(progress.next_index)
        if progress.pipelining and entries:
            progress.next_index = entries[-1].index + 1
        message = AppendEntries(
            self.node_id, peer, self.term, prev, self.term_at(prev), entries, self.commit_index
        )
        self._send(message)

    def _batch_from(self, index: int) -> tuple[Entry, ...]:
        out: list[Entry] = []
        size_bytes = 0
        for entry in self._log[index - 1 : index - 1 + self._config.append_entries_max]:
            if out and size_bytes + len(entry.data) > self._config.append_bytes_max:
                break
            out.append(entry)
            size_bytes += len(entry.data)
        return tuple(out)

    def _handle_append_response(self, response: AppendResponse) -> None:
        if self.role is not Role.LEADER:
            return
        self._recently_active.add(response.source)
        progress = self._progress[response.source]
        if response.success:
            if response.match_index > progress.match_index:
                progress.match_index = response.match_index
                self._maybe_commit()
            progress.next_index = max(progress.next_index, progress.match_index + 1)
            progress.pipelining = True
            if progress.next_index <= self.last_index:
                self._send_append(response.source)
            return
        if response.rejected_index <= progress.match_index:
            return  # a rejection older than what the follower since accepted
        if not progress.pipelining and response.rejected_index != progress.next_index - 1:
            return  # answers an earlier probe
        progress.next_index = max(progress.match_index + 1, response.conflict_index)
        progress.pipelining = False
        self._send_append(response.source)

    def _maybe_commit(self) -> None:
        """Commit the highest index stored on a majority, if it is from this term."""
        matches = sorted(
            [self._stable_index, *(p.match_index for p in self._progress.values())], reverse=True
        )
        candidate = matches[self._quorum - 1]
        if candidate <= self.commit_index or self.term_at(candidate) != self.term:
            return
        self.commit_index = candidate
        for peer in self._peers:
            self._send_append(peer)

    # --- follower -----------------------------------------------------------------------

    def _handle_append(self, request: AppendEntries) -> None:
        assert self.role is not Role.LEADER, f"two leaders in term {self.term}"
        if self.role is not Role.FOLLOWER or self.leader_id != request.source:
            self._become_follower(self.term, request.source)
        self._leader_contact_ms = self._now_ms
        self._reset_election_deadline()
        prev = request.prev_index
        if prev < 0 or any(e.index != prev + i for i, e in enumerate(request.entries, start=1)):
            return  # malformed: a correct leader sends consecutive entries after prev_index
        if prev > self.last_index or self.term_at(prev) != request.prev_term:
            conflict = self._conflict_index(prev)
            self._send(
                AppendResponse(self.node_id, request.source, self.term, False, 0, prev, conflict)
            )
            return
        match_index = prev + len(request.entries)
        self._store(request.entries)
        commit = min(request.leader_commit, match_index)
        if commit > self.commit_index:
            self.commit_index = commit
        self._send(AppendResponse(self.node_id, request.source, self.term, True, match_index))

    def _conflict_index(self, prev: int) -> int:
        """Where the leader should resume: past our log's end, or the first entry of the
        conflicting term (entries up to our commit index match the leader's for sure)."""
        if prev > self.last_index:
            return self.last_index + 1
        conflict_term = self.term_at(prev)
        first = prev
        while first > 1 and self.term_at(first - 1) == conflict_term:
            first -= 1
        return max(first, self.commit_index + 1)

    def _store(self, entries: tuple[Entry, ...]) -> None:
        """Append what is new; drop our suffix from the first entry that disagrees."""
        for position, entry in enumerate(entries):
            if entry.index > self.last_index:
                self._log.extend(entries[position:])
                return
            if self.term_at(entry.index) != entry.term:
                self._truncate_from(entry.index)
                self._log.extend(entries[position:])
                return

    def _truncate_from(self, index: int) -> None:
        assert index > self.commit_index, f"truncating committed entry {index}"
        del self._log[index - 1 :]
        self._stable_index = min(self._stable_index, index - 1)

    def _send(self, message: Message) -> None:
        self._outbox.append(message)
