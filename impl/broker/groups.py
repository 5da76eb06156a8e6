"""One consumer group's membership state machine (Kafka's GroupMetadata and the classic
GroupCoordinator's rules), pure: no I/O, no clock, every input an argument.

States and transitions (Kafka's):

    Empty --join--> PreparingRebalance --all joined / rebalance timeout--> CompletingRebalance
    CompletingRebalance --leader's SyncGroup stored--> Stable
    Stable / CompletingRebalance --join of a new member, leave, session expiry,
        changed protocols, the leader rejoining--> PreparingRebalance
    PreparingRebalance --nobody joined--> Empty (the generation still advances)
    any --offsets partition lost or group deleted--> Dead

A JoinGroup or SyncGroup that must wait for the rest of the group gets `WAIT`; the
coordinator parks the request until `join_results` / `sync_results` holds its answer
(every transition that answers parked requests fills them). Time arrives as `now_ms`
(the runtime's monotonic clock), and `tick` applies every deadline that has passed:
session expiry of members not in a rebalance, pending member ids that never joined,
the rebalance timeout, and the initial rebalance delay of an empty group.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import Enum

from model.errors import Errors


class GroupState(Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


# Kafka's GroupMetadata.validPreviousStates: a transition from anywhere else is a bug.
_VALID_PREVIOUS = {
    GroupState.PREPARING_REBALANCE: {
        GroupState.EMPTY,
        GroupState.STABLE,
        GroupState.COMPLETING_REBALANCE,
    },
    GroupState.COMPLETING_REBALANCE: {GroupState.PREPARING_REBALANCE},
    GroupState.STABLE: {GroupState.COMPLETING_REBALANCE},
    GroupState.EMPTY: {GroupState.PREPARING_REBALANCE},
    GroupState.DEAD: set(GroupState),
}


class Wait(Enum):
    """The request is parked until the group answers it."""

    WAIT = "wait"


WAIT = Wait.WAIT


@dataclass
class Member:
    member_id: str
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    group_instance_id: str | None = None
    assignment: bytes = b""
    last_heartbeat_ms: int = 0
    awaiting_join: bool = False
    awaiting_sync: bool = False

    def metadata(self, protocol: str) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol:
                return metadata
        raise AssertionError(f"member {self.member_id} does not support {protocol}")


@dataclass(frozen=True, slots=True)
class JoinResult:
    error: Errors
    generation: int = -1
    protocol_type: str | None = None
    protocol: str | None = None
    leader: str = ""
    member_id: str = ""
    # Only the leader gets the members (id, group instance id, metadata) to assign.
    members: tuple[tuple[str, str | None, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class JoinRequest:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]


@dataclass
class Group:
    group_id: str
    state: GroupState = GroupState.EMPTY
    generation: int = 0
    protocol_type: str | None = None
    protocol: str | None = None
    leader: str | None = None
    members: dict[str, Member] = field(default_factory=dict)
    # Member ids handed out with MEMBER_ID_REQUIRED: id -> deadline (ms).
    pending: dict[str, int] = field(default_factory=dict)
    rebalance_deadline_ms: int = 0
    initial_delay_deadline_ms: int = 0
    join_results: dict[str, JoinResult] = field(default_factory=dict)
    sync_results: dict[str, tuple[Errors, bytes]] = field(default_factory=dict)
    # A generation whose assignment the leader sent and the coordinator is storing.
    storing_generation: int = -1
    rebalances: int = 0
    # group.initial.rebalance.delay.ms
    initial_delay_ms: int = 0

    # ---- state -------------------------------------------------------------------------

    def transition(self, target: GroupState) -> None:
        assert self.state in _VALID_PREVIOUS[target], f"{self.state} -> {target} is not legal"
        self.state = target

    def is_empty(self) -> bool:
        return not self.members

    def all_joined(self) -> bool:
        return not self.pending and all(m.awaiting_join for m in self.members.values())

    def supports(self, protocol_type: str, protocols: list[tuple[str, bytes]]) -> bool:
        """A joiner must share the protocol type and at least one protocol (Kafka's
        isGroupProtocolCompatible)."""
        if not protocols:
            return False
        if self.is_empty():
            return True
        names = {name for name, _ in protocols}
        return protocol_type == self.protocol_type and bool(names & self._candidates())

    def _candidates(self) -> set[str]:
        members = list(self.members.values())
        common = {name for name, _ in members[0].protocols}
        for member in members[1:]:
            common &= {name for name, _ in member.protocols}
        return common

    def select_protocol(self) -> str:
        """Each member votes for its most preferred candidate; most votes wins (ties:
        the candidate the first member prefers)."""
        candidates = self._candidates()
        assert candidates, "members without a common protocol cannot be in one group"
        votes: Counter[str] = Counter()
        for member in self.members.values():
            votes[next(name for name, _ in member.protocols if name in candidates)] += 1
        return max(votes, key=lambda name: votes[name])

    # ---- JoinGroup ---------------------------------------------------------------------

    def join(
        self, request: JoinRequest, new_member_id: str, require_known_id: bool, now_ms: int
    ) -> JoinResult | Wait:
        if self.state is GroupState.DEAD:
            return JoinResult(Errors.COORDINATOR_NOT_AVAILABLE)
        if not self.supports(request.protocol_type, request.protocols):
            return JoinResult(Errors.INCONSISTENT_GROUP_PROTOCOL)
        member_id = request.member_id
        if not member_id and require_known_id:
            # KIP-394: hand out the id first, so a lost response cannot orphan a member.
            self.pending[new_member_id] = now_ms + request.session_timeout_ms
            return JoinResult(Errors.MEMBER_ID_REQUIRED, member_id=new_member_id)
        if not member_id:
            return self._add_member(request, new_member_id, now_ms)
        if member_id in self.pending:
            del self.pending[member_id]
            return self._add_member(request, member_id, now_ms)
        member = self.members.get(member_id)
        if member is None:
            return JoinResult(Errors.UNKNOWN_MEMBER_ID, member_id=member_id)
        return self._rejoin(member, request, now_ms)

    def _add_member(self, request: JoinRequest, member_id: str, now_ms: int) -> Wait:
        member = Member(
            member_id,
            request.client_id,
            request.client_host,
            request.session_timeout_ms,
            request.rebalance_timeout_ms,
            request.protocol_type,
            list(request.protocols),
            request.group_instance_id,
            last_heartbeat_ms=now_ms,
            awaiting_join=True,
        )
        if self.is_empty():
            self.protocol_type = request.protocol_type
        self.members[member_id] = member
        self.join_results.pop(member_id, None)
        if self.leader is None:
            self.leader = member_id
        if self.state is GroupState.PREPARING_REBALANCE:
            self._extend_initial_delay(now_ms)
        else:
            self.prepare_rebalance(now_ms)
        self.maybe_complete_join(now_ms)
        return WAIT

    def _rejoin(self, member: Member, request: JoinRequest, now_ms: int) -> JoinResult | Wait:
        changed = member.protocols != list(request.protocols)
        member.protocols = list(request.protocols)
        member.session_timeout_ms = request.session_timeout_ms
        member.rebalance_timeout_ms = request.rebalance_timeout_ms
        member.last_heartbeat_ms = now_ms
        if self.state is GroupState.COMPLETING_REBALANCE and not changed:
            # The join response was lost: answer it again, same generation.
            return self._join_result(member)
        if self.state is GroupState.STABLE and not changed and member.member_id != self.leader:
            return self._join_result(member)
        member.awaiting_join = True
        # An answer left from an earlier JoinGroup nobody waited for must not answer this one.
        self.join_results.pop(member.member_id, None)
        if self.state is not GroupState.PREPARING_REBALANCE:
            self.prepare_rebalance(now_ms)
        self.maybe_complete_join(now_ms)
        return WAIT

    def _extend_initial_delay(self, now_ms: int) -> None:
        """Kafka's InitialDelayedJoin: while an empty group fills, each new member pushes
        the first rebalance back by the delay, never past the rebalance timeout."""
        if self.initial_delay_deadline_ms > now_ms:
            self.initial_delay_deadline_ms = min(
                now_ms + self.initial_delay_ms, self.rebalance_deadline_ms
            )

    def prepare_rebalance(self, now_ms: int) -> None:
        if self.state is GroupState.COMPLETING_REBALANCE:
            self._answer_syncs(Errors.REBALANCE_IN_PROGRESS)
            for member in self.members.values():
                member.assignment = b""
        timeout_ms = max((m.rebalance_timeout_ms for m in self.members.values()), default=0)
        self.rebalance_deadline_ms = now_ms + timeout_ms
        if self.state is GroupState.EMPTY and self.initial_delay_ms > 0:
            self.initial_delay_deadline_ms = min(
                now_ms + self.initial_delay_ms, self.rebalance_deadline_ms
            )
        else:
            self.initial_delay_deadline_ms = 0
        self.transition(GroupState.PREPARING_REBALANCE)
        self.rebalances += 1

    def maybe_complete_join(self, now_ms: int) -> bool:
        if self.state is not GroupState.PREPARING_REBALANCE:
            return False
        timed_out = now_ms >= self.rebalance_deadline_ms
        delayed = now_ms < self.initial_delay_deadline_ms
        if not timed_out and (delayed or not self.all_joined()):
            return False
        self._complete_join(now_ms)
        return True

    def _complete_join(self, now_ms: int) -> None:
        for member_id in [m for m, member in self.members.items() if not member.awaiting_join]:
            self.remove_member(member_id)
        self.pending.clear()
        self.generation += 1
        if self.is_empty():
            self.protocol = None
            self.protocol_type = None
            self.leader = None
            self.transition(GroupState.EMPTY)
            return
        self.protocol = self.select_protocol()
        if self.leader not in self.members:
            self.leader = next(iter(self.members))
        self.transition(GroupState.COMPLETING_REBALANCE)
        for member in self.members.values():
            member.awaiting_join = False
            member.last_heartbeat_ms = now_ms
            self.join_results[member.member_id] = self._join_result(member)

    def _join_result(self, member: Member) -> JoinResult:
        assert self.protocol is not None and self.leader is not None
        members: tuple[tuple[str, str | None, bytes], ...] = ()
        if member.member_id == self.leader:
            members = tuple(
                (m.member_id, m.group_instance_id, m.metadata(self.protocol))
                for m in self.members.values()
            )
        return JoinResult(
            Errors.NONE,
            self.generation,
            self.protocol_type,
            self.protocol,
            self.leader,
            member.member_id,
            members,
        )

    # ---- SyncGroup, Heartbeat, LeaveGroup ---------------------------------------------

    def check_member(self, member_id: str, generation: int) -> Errors:
        if self.state is GroupState.DEAD:
            return Errors.COORDINATOR_NOT_AVAILABLE
        if member_id not in self.members:
            return Errors.UNKNOWN_MEMBER_ID
        if generation != self.generation:
            return Errors.ILLEGAL_GENERATION
        return Errors.NONE

    def sync(
        self,
        member_id: str,
        generation: int,
        assignments: dict[str, bytes],
        protocol_type: str | None,
        protocol: str | None,
        now_ms: int,
    ) -> tuple[Errors, bytes] | Wait:
        """WAIT: parked until the assignment is stored (the coordinator stores it when
        `storing_generation` is set by the leader's sync)."""
        error = self.check_member(member_id, generation)
        if error != Errors.NONE:
            return error, b""
        if (protocol_type is not None and protocol_type != self.protocol_type) or (
            protocol is not None and protocol != self.protocol
        ):
            return Errors.INCONSISTENT_GROUP_PROTOCOL, b""
        member = self.members[member_id]
        member.last_heartbeat_ms = now_ms
        if self.state is GroupState.PREPARING_REBALANCE:
            return Errors.REBALANCE_IN_PROGRESS, b""
        if self.state is GroupState.STABLE:
            return Errors.NONE, member.assignment
        assert self.state is GroupState.COMPLETING_REBALANCE
        member.awaiting_sync = True
        self.sync_results.pop(member_id, None)
        if member_id == self.leader and self.storing_generation != generation:
            for other in self.members.values():
                other.assignment = bytes(assignments.get(other.member_id, b""))
            self.storing_generation = generation
        return WAIT

    def assignment_stored(self, generation: int, error: Errors) -> None:
        """The coordinator's write of the leader's assignment finished."""
        if generation != self.generation or self.state is not GroupState.COMPLETING_REBALANCE:
            return
        self.storing_generation = -1
        if error != Errors.NONE:
            self._answer_syncs(error)
            for member in self.members.values():
                member.assignment = b""
            return
        self.transition(GroupState.STABLE)
        self._answer_syncs(Errors.NONE)

    def _answer_syncs(self, error: Errors) -> None:
        for member in self.members.values():
            if member.awaiting_sync:
                assignment = member.assignment if error == Errors.NONE else b""
                self.sync_results[member.member_id] = (error, assignment)
                member.awaiting_sync = False

    def heartbeat(self, member_id: str, generation: int, now_ms: int) -> Errors:
        if self.state is GroupState.EMPTY:
            return Errors.UNKNOWN_MEMBER_ID
        error = self.check_member(member_id, generation)
        if error != Errors.NONE:
            return error
        self.members[member_id].last_heartbeat_ms = now_ms
        if self.state is GroupState.PREPARING_REBALANCE:
            return Errors.REBALANCE_IN_PROGRESS
        return Errors.NONE

    def leave(self, member_id: str, now_ms: int) -> Errors:
        if self.state is GroupState.DEAD:
            return Errors.COORDINATOR_NOT_AVAILABLE
        if member_id in self.pending:
            del self.pending[member_id]
            self.maybe_complete_join(now_ms)
            return Errors.NONE
        if member_id not in self.members:
            return Errors.UNKNOWN_MEMBER_ID
        self.remove_member(member_id)
        self._membership_changed(now_ms)
        return Errors.NONE

    def remove_member(self, member_id: str) -> None:
        member = self.members.pop(member_id)
        if member.awaiting_join:
            self.join_results[member_id] = JoinResult(Errors.UNKNOWN_MEMBER_ID, member_id=member_id)
        if member.awaiting_sync:
            self.sync_results[member_id] = (Errors.UNKNOWN_MEMBER_ID, b"")
        if self.leader == member_id:
            self.leader = next(iter(self.members), None)

    def _membership_changed(self, now_ms: int) -> None:
        if self.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            self.prepare_rebalance(now_ms)
        self.maybe_complete_join(now_ms)

    # ---- time --------------------------------------------------------------------------

    def tick(self, now_ms: int) -> bool:
        """Apply every passed deadline; whether anything changed."""
        if self.state is GroupState.DEAD:
            return False
        changed = False
        for member_id, deadline_ms in list(self.pending.items()):
            if now_ms >= deadline_ms:
                del self.pending[member_id]
                changed = True
        expired = [
            m.member_id
            for m in self.members.values()
            if not (m.awaiting_join or m.awaiting_sync)
            and now_ms - m.last_heartbeat_ms > m.session_timeout_ms
        ]
        for member_id in expired:
            self.remove_member(member_id)
        if expired:
            self._membership_changed(now_ms)
            changed = True
        return self.maybe_complete_join(now_ms) or changed

    def unload(self) -> None:
        """This broker stopped coordinating the group: parked requests learn it."""
        for member in self.members.values():
            if member.awaiting_join:
                self.join_results[member.member_id] = JoinResult(Errors.NOT_COORDINATOR)
            if member.awaiting_sync:
                self.sync_results[member.member_id] = (Errors.NOT_COORDINATOR, b"")
        self.state = GroupState.DEAD

    # ---- commits -----------------------------------------------------------------------

    def check_commit(self, member_id: str, generation: int) -> Errors:
        """Kafka's validateOffsetCommit for the classic protocol."""
        if self.state is GroupState.DEAD:
            return Errors.COORDINATOR_NOT_AVAILABLE
        if generation < 0 and not member_id and self.state is GroupState.EMPTY:
            return Errors.NONE
        if generation < 0 and not member_id:
            return Errors.UNKNOWN_MEMBER_ID
        error = self.check_member(member_id, generation)
        if error != Errors.NONE:
            return error
        if self.state is GroupState.COMPLETING_REBALANCE:
            return Errors.REBALANCE_IN_PROGRESS
        return Errors.NONE
