"""A deterministic simulator of RaftNodes over a lossy network and crashing disks.

One seeded `random.Random` decides everything: which message arrives next (so messages
are delayed and reordered), which are dropped or duplicated, partitions, crashes (also
in the middle of persisting a Ready, with a torn last write) and restarts. Each node
has its own MemoryFileSystem, so a crash loses exactly what was not fsynced.

`SafetyChecker` checks Raft's properties after every input a node processes: at most
one leader per term, committed entries never change, leader completeness, every node
applies the same sequence, log matching, and that a restarted node finds on disk
everything it had persisted.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from impl.controller.raft import (
    Entry,
    HardState,
    Message,
    RaftConfig,
    RaftNode,
    Ready,
    Role,
    StorageState,
)
from impl.controller.raft_storage import RaftStorage
from impl.runtime.fs import MemoryFileSystem

RAFT_DIR = "/data/raft"
IN_FLIGHT_MAX = 400
SIM_CONFIG = RaftConfig(
    election_timeout_ms=100,
    heartbeat_interval_ms=20,
    append_entries_max=2,
    uncommitted_entries_max=64,
)


class PowerCut(Exception):
    """Raised by CrashingFileSystem at the armed call: the machine loses power there."""


class CrashingFileSystem:
    """A MemoryFileSystem that loses power before the n-th mutating call once armed."""

    def __init__(self) -> None:
        self.inner = MemoryFileSystem()
        self.calls_left: int | None = None

    def arm(self, calls: int) -> None:
        self.calls_left = calls

    def _mutating(self) -> None:
        if self.calls_left is None:
            return
        if self.calls_left == 0:
            self.calls_left = None
            raise PowerCut
        self.calls_left -= 1

    def exists(self, path: str) -> bool:
        return self.inner.exists(path)

    def list_dir(self, path: str) -> list[str]:
        return self.inner.list_dir(path)

    def size(self, path: str) -> int:
        return self.inner.size(path)

    def read(self, path: str, position: int, size: int) -> bytes:
        return self.inner.read(path, position, size)

    def mkdir(self, path: str) -> None:
        self._mutating()
        self.inner.mkdir(path)

    def append(self, path: str, data: bytes) -> None:
        self._mutating()
        self.inner.append(path, data)

    def truncate(self, path: str, size: int) -> None:
        self._mutating()
        self.inner.truncate(path, size)

    def fsync(self, path: str) -> None:
        self._mutating()
        self.inner.fsync(path)

    def fsync_dir(self, path: str) -> None:
        self._mutating()
        self.inner.fsync_dir(path)

    def rename(self, source: str, target: str) -> None:
        self._mutating()
        self.inner.rename(source, target)

    def remove(self, path: str) -> None:
        self._mutating()
        self.inner.remove(path)

    def close(self) -> None:
        self.inner.close()


@dataclass
class SimNode:
    node_id: int
    fs: CrashingFileSystem = field(default_factory=CrashingFileSystem)
    raft: RaftNode | None = None
    storage: RaftStorage | None = None
    applied: list[Entry] = field(default_factory=list)
    # What this node's disk must hold after a crash: the state after the last Ready it
    # finished persisting, and (while persisting) the Ready in progress.
    durable_entries: list[Entry] = field(default_factory=list)
    durable_hard_state: HardState = field(default_factory=HardState)
    persisting: Ready | None = None


class SafetyChecker:
    def __init__(self) -> None:
        self.leaders: dict[int, int] = {}
        self.committed: list[Entry] = []
        self.commit_terms: list[int] = []
        # Per node incarnation, the commit index checked so far: a step checks only what
        # is newly committed; `check_all` re-checks whole prefixes now and then.
        self._checked: dict[RaftNode, int] = {}

    def check_node(self, node: RaftNode) -> None:
        self._check_commit(node, self._checked.get(node, 0) + 1)
        self._checked[node] = node.commit_index
        if node.role is Role.LEADER:
            if node.term not in self.leaders:
                self._check_leader_completeness(node)
            leader = self.leaders.setdefault(node.term, node.node_id)
            assert leader == node.node_id, (
                f"two leaders in term {node.term}: {leader} and {node.node_id}"
            )

    def _check_commit(self, node: RaftNode, first: int) -> None:
        for index in range(first, node.commit_index + 1):
            entry = node.entry_at(index)
            if index > len(self.committed):
                self.committed.append(entry)
                self.commit_terms.append(node.term)
            assert entry == self.committed[index - 1], (
                f"node {node.node_id} has {entry} committed where "
                f"{self.committed[index - 1]} was committed"
            )

    def _check_leader_completeness(self, node: RaftNode) -> None:
        for index, entry in enumerate(self.committed, start=1):
            if self.commit_terms[index - 1] >= node.term:
                continue
            assert index <= node.last_index and node.entry_at(index) == entry, (
                f"leader {node.node_id} of term {node.term} lacks committed entry {entry}"
            )

    def check_applied(self, sim_node: SimNode, entries: tuple[Entry, ...]) -> None:
        for entry in entries:
            expected_index = len(sim_node.applied) + 1
            assert entry.index == expected_index, f"applied {entry.index}, not {expected_index}"
            assert entry == self.committed[entry.index - 1], (
                f"node {sim_node.node_id} applied {entry}, committed was "
                f"{self.committed[entry.index - 1]}"
            )
            sim_node.applied.append(entry)

    def check_all(self, nodes: list[RaftNode]) -> None:
        """Committed prefixes still unchanged everywhere, and log matching."""
        for node in nodes:
            self._check_commit(node, 1)
        self._check_log_matching(nodes)

    def _check_log_matching(self, nodes: list[RaftNode]) -> None:
        for position, a in enumerate(nodes):
            for b in nodes[position + 1 :]:
                index = min(a.last_index, b.last_index)
                while index > 0 and a.term_at(index) != b.term_at(index):
                    index -= 1
                for i in range(1, index + 1):
                    assert a.entry_at(i) == b.entry_at(i), (
                        f"nodes {a.node_id} and {b.node_id} agree on entry {index}'s term "
                        f"but differ at {i}"
                    )


@dataclass(order=True)
class InFlight:
    deliver_at_ms: int
    sequence: int
    message: Message = field(compare=False)


class Simulation:
    def __init__(
        self,
        size: int,
        seed: int,
        config: RaftConfig = SIM_CONFIG,
        disks: dict[int, StorageState] | None = None,
    ) -> None:
        """`disks` pre-writes some nodes' storage, as if they had run before."""
        self.seed = seed
        self.rng = random.Random(seed)
        self.config = config
        self.now_ms = 0
        self.voters = tuple(range(1, size + 1))
        self.nodes = {node_id: SimNode(node_id) for node_id in self.voters}
        self.in_flight: list[InFlight] = []
        self.sent = 0
        self.group = dict.fromkeys(self.voters, 0)
        self.drop_probability = 0.0
        self.duplicate_probability = 0.0
        self.delay_ms_max = 10
        # A few messages linger for many election timeouts, so stale terms arrive late.
        self.long_delay_probability = 0.0
        self.long_delay_ms_max = 10 * config.election_timeout_ms
        self.checker = SafetyChecker()
        self.proposals = 0
        for node_id, state in (disks or {}).items():
            self._write_disk(self.nodes[node_id], state)
        for node_id in self.voters:
            self.start(node_id)

    def _write_disk(self, sim_node: SimNode, state: StorageState) -> None:
        storage = RaftStorage.open(sim_node.fs, RAFT_DIR)
        if state.entries:
            storage.append(state.entries)
        storage.save_hard_state(state.hard_state)
        sim_node.durable_entries = list(state.entries)
        sim_node.durable_hard_state = state.hard_state

    # --- nodes ------------------------------------------------------------------------

    def live(self) -> list[RaftNode]:
        return [n.raft for n in self.nodes.values() if n.raft is not None]

    def leaders(self) -> list[RaftNode]:
        return [n for n in self.live() if n.role is Role.LEADER]

    def has_settled_leader(self) -> bool:
        """One leader, followed by every live node, with all its entries committed."""
        leaders = self.leaders()
        if len(leaders) != 1 or leaders[0].commit_index != leaders[0].last_index:
            return False
        leader = leaders[0]
        return all(n.leader_id == leader.node_id and n.term == leader.term for n in self.live())

    def start(self, node_id: int) -> None:
        sim_node = self.nodes[node_id]
        assert sim_node.raft is None, f"node {node_id} is running"
        storage = RaftStorage.open(sim_node.fs, RAFT_DIR)
        self._check_recovered(sim_node, storage)
        rng = random.Random(self.rng.getrandbits(64))
        sim_node.storage = storage
        sim_node.raft = RaftNode(node_id, self.voters, storage.state, self.config, rng, self.now_ms)
        sim_node.applied = []
        sim_node.persisting = None
        self.process(node_id)

    def _check_recovered(self, sim_node: SimNode, storage: RaftStorage) -> None:
        """A crash keeps what was persisted; a crash while persisting a Ready keeps the old
        state, or the Ready's truncation and a prefix of its entries (the torn rest is
        cut), and the old or the new hard state."""
        recovered = list(storage.state.entries)
        hard = storage.state.hard_state
        old, ready = sim_node.durable_entries, sim_node.persisting
        if ready is None:
            assert recovered == old, f"node {sim_node.node_id} lost persisted entries"
            assert hard == sim_node.durable_hard_state, (
                f"node {sim_node.node_id} recovered {hard}, persisted {sim_node.durable_hard_state}"
            )
            return
        new = ready.entries_to_persist
        allowed = [old]
        if new:
            kept = old[: new[0].index - 1]
            allowed += [kept + list(new[:count]) for count in range(len(new) + 1)]
        assert recovered in allowed, f"node {sim_node.node_id} recovered a log it never wrote"
        assert hard in (sim_node.durable_hard_state, ready.hard_state_to_persist), (
            f"node {sim_node.node_id} recovered hard state {hard}, never written"
        )
        sim_node.durable_entries = recovered
        sim_node.durable_hard_state = hard

    def crash(self, node_id: int) -> None:
        sim_node = self.nodes[node_id]
        sim_node.raft = None
        sim_node.storage = None
        sim_node.fs.calls_left = None
        sim_node.fs.inner.crash(tear_last_write=True, rng=self.rng)

    def process(self, node_id: int) -> None:
        """The driver loop after one input: check, persist, send, apply, advance."""
        sim_node = self.nodes[node_id]
        raft, storage = sim_node.raft, sim_node.storage
        assert raft is not None and storage is not None
        self.checker.check_node(raft)
        ready = raft.ready()
        if ready.is_empty():
            raft.advance(ready)
            return
        sim_node.persisting = ready
        try:
            storage.persist(ready)
        except PowerCut:
            self.crash(node_id)
            return
        if ready.entries_to_persist:
            first = ready.entries_to_persist[0].index
            sim_node.durable_entries[first - 1 :] = ready.entries_to_persist
        if ready.hard_state_to_persist is not None:
            sim_node.durable_hard_state = ready.hard_state_to_persist
        sim_node.persisting = None
        for message in ready.messages_to_send:
            self.send(message)
        self.checker.check_applied(sim_node, ready.committed_entries_to_apply)
        raft.advance(ready)

    # --- network ----------------------------------------------------------------------

    def send(self, message: Message) -> None:
        if self.rng.random() < self.drop_probability:
            return
        copies = 2 if self.rng.random() < self.duplicate_probability else 1
        for _ in range(copies):
            long = self.rng.random() < self.long_delay_probability
            delay_ms = self.rng.randint(0, self.long_delay_ms_max if long else self.delay_ms_max)
            self.in_flight.append(InFlight(self.now_ms + delay_ms, self.sent, message))
            self.sent += 1

    def due(self) -> list[int]:
        return [i for i, m in enumerate(self.in_flight) if m.deliver_at_ms <= self.now_ms]

    def deliver(self, position: int) -> None:
        message = self.in_flight.pop(position).message
        sim_node = self.nodes[message.target]
        if sim_node.raft is None or self.group[message.source] != self.group[message.target]:
            return
        sim_node.raft.receive(message)
        self.process(message.target)

    def deliver_due(self) -> None:
        """Deliver every message due now, in random order (also those they cause)."""
        while due := self.due():
            self.deliver(self.rng.choice(due))

    def partition(self, groups: dict[int, int]) -> None:
        self.group = dict(groups)

    def heal(self) -> None:
        self.group = dict.fromkeys(self.voters, 0)

    # --- time and clients -------------------------------------------------------------

    def advance(self, delta_ms: int) -> None:
        self.now_ms += delta_ms
        for node_id, sim_node in self.nodes.items():
            if sim_node.raft is not None:
                sim_node.raft.tick(self.now_ms)
                self.process(node_id)

    def propose(self, node_id: int) -> int | None:
        raft = self.nodes[node_id].raft
        assert raft is not None
        self.proposals += 1
        result = raft.propose(b"v%d" % self.proposals)
        self.process(node_id)
        return result if isinstance(result, int) else None

    def run_until(self, condition: Callable[[], bool], limit_ms: int, step_ms: int = 5) -> int:
        """Deliver and tick until `condition()` holds; the sim time it took, or raise."""
        start_ms = self.now_ms
        while not condition():
            assert self.now_ms - start_ms <= limit_ms, f"not done within {limit_ms} ms"
            self.deliver_due()
            self.advance(step_ms)
        return self.now_ms - start_ms
