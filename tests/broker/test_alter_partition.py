"""A leader's AlterPartition whose outcome is unknown (Kafka's Partition and
AlterPartitionManager, KIP-497): the pending ISR stays, the same request is sent again,
and the HW counts the maximal ISR (committed ISR plus pending additions) until the
controller or the metadata settles it. The controller is a scripted stand-in for
`ClusterMember.call_controller`; the partitions are real and exchange fetches in memory."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import trio
import trio.testing
from test_replication_rules import REPLICAS, A, B, C, batch, fetch_round, replica

from impl.broker.member import CONTROLLER_RETRY_BACKOFF_MS, ClusterMember, ControllerUnavailable
from impl.broker.partition import Partition
from impl.controller.controller import ControllerError
from impl.runtime.fs import MemoryFileSystem
from model.config import Config
from model.errors import Errors

ALL = frozenset(REPLICAS)


class ScriptedController:
    """Answers AlterPartition calls in order: an exception is raised (no answer), a
    dict is the controller's answer. Records every request body."""

    def __init__(
        self, *answers: BaseException | dict[str, Any], held: trio.Event | None = None
    ) -> None:
        self.answers = list(answers)
        self.held = held
        self.requests: list[dict[str, Any]] = []
        self.times_s: list[float] = []

    async def __call__(self, api: str, body: dict[str, Any]) -> dict[str, Any]:
        assert api == "AlterPartition", api
        assert self.answers, f"unexpected retry {body}"
        self.requests.append(dict(body))
        self.times_s.append(trio.current_time())
        answer = self.answers.pop(0)
        if self.held is not None:
            await self.held.wait()
        if isinstance(answer, BaseException):
            raise answer
        return answer


def member_of(broker_id: int, controller: ScriptedController) -> ClusterMember:
    stand_in = SimpleNamespace(
        broker_id=broker_id, runtime=SimpleNamespace(fs=MemoryFileSystem()), data_dir="/d"
    )
    member = ClusterMember(stand_in, voters={})  # type: ignore[arg-type]
    member.call_controller = controller  # type: ignore[method-assign]
    return member


def leader_with_c_outside_the_isr() -> tuple[Partition, Partition, Partition]:
    """A leads epoch 1 with ISR {A, B} at partition epoch 1; C has caught up with m0."""
    config = Config()
    a, b, c = (replica(x, config) for x in REPLICAS)
    isr = frozenset({A, B})
    a.become_leader(1, 1, REPLICAS, isr, now_ms=0)
    b.become_follower(A, 1, 1, REPLICAS, isr)
    c.become_follower(A, 1, 1, REPLICAS, isr)
    a.append_as_leader(batch(b"m0"), 0)
    for _ in range(2):
        fetch_round(a, b)
        fetch_round(a, c)
    assert a.high_watermark == 1
    return a, b, c


def run_alter(member: ClusterMember, partition: Partition, new_isr: frozenset[int]) -> None:
    """Propose `new_isr` and run until the member's AlterPartition task ends (the mock
    clock jumps over the retry backoff)."""

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            member._nursery = nursery
            member.request_isr_change(partition, new_isr)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_timed_out_addition_stays_pending_is_retried_and_holds_the_hw():
    a, b, c = leader_with_c_outside_the_isr()
    proposal = a.isr_expansion(C)
    assert proposal == ALL
    # The first answer is lost (the controller applied it: partition epoch 2); the retry
    # at partition epoch 1 is then refused as a stale version.
    controller = ScriptedController(
        ControllerUnavailable("answer timed out"),
        {"error_code": ControllerError.INVALID_UPDATE_VERSION},
    )
    run_alter(member_of(A, controller), a, proposal)
    assert len(controller.requests) == 2, "retried after the timeout"
    assert controller.requests[0] == controller.requests[1], "the same request again"
    assert controller.requests[0]["partition_epoch"] == 1
    assert a.pending_isr == ALL, "the outcome is unknown: the addition stays pending"
    assert (a.isr, a.partition_epoch) == (frozenset({A, B}), 1)

    a.append_as_leader(batch(b"m1"), 0)
    fetch_round(a, b)
    fetch_round(a, b)
    assert a.high_watermark == 1, "C may be in the ISR now and has not fetched m1"
    fetch_round(a, c)
    fetch_round(a, c)
    assert a.high_watermark == 2

    # The metadata then shows the applied change (ClusterMember._adopt's path).
    a.isr_change_committed(ALL, partition_epoch=2)
    assert (a.isr, a.pending_isr, a.partition_epoch) == (ALL, None, 2)


def test_a_timed_out_change_is_committed_by_the_retry():
    a, _b, _c = leader_with_c_outside_the_isr()
    controller = ScriptedController(
        ControllerUnavailable("answer timed out"),
        ControllerUnavailable("answer timed out"),
        {"error_code": Errors.NONE, "isr": sorted(ALL), "partition_epoch": 2},
    )
    run_alter(member_of(A, controller), a, ALL)
    assert len(controller.requests) == 3
    assert (a.isr, a.pending_isr, a.partition_epoch) == (ALL, None, 2)
    gaps_s = [later - earlier for earlier, later in itertools.pairwise(controller.times_s)]
    assert min(gaps_s) >= CONTROLLER_RETRY_BACKOFF_MS / 1000, "retries are paced"


def test_a_timed_out_shrink_keeps_counting_the_removed_replica():
    a, b, c = leader_with_c_outside_the_isr()
    a.isr_change_committed(ALL, partition_epoch=2)
    controller = ScriptedController(
        ControllerUnavailable("answer timed out"),
        {"error_code": Errors.FENCED_LEADER_EPOCH},
    )
    run_alter(member_of(A, controller), a, frozenset({A, B}))
    assert len(controller.requests) == 2
    assert a.pending_isr == frozenset({A, B}), "kept until the metadata moves on"
    a.append_as_leader(batch(b"m1"), 0)
    fetch_round(a, b)
    fetch_round(a, b)
    assert a.high_watermark == 1, "the controller may not have removed C, which lacks m1"
    fetch_round(a, c)
    fetch_round(a, c)
    assert a.high_watermark == 2


def test_only_a_not_applied_answer_resets_the_pending_isr():
    a, _b, _c = leader_with_c_outside_the_isr()
    controller = ScriptedController({"error_code": ControllerError.INELIGIBLE_REPLICA})
    run_alter(member_of(A, controller), a, ALL)
    assert len(controller.requests) == 1
    assert (a.isr, a.pending_isr) == (frozenset({A, B}), None)
    assert a.isr_expansion(C) == ALL, "free to propose again"


def test_metadata_during_the_backoff_ends_the_retries():
    a, _b, _c = leader_with_c_outside_the_isr()
    controller = ScriptedController(ControllerUnavailable("answer timed out"))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            member = member_of(A, controller)
            member._nursery = nursery
            member.request_isr_change(a, ALL)
            await trio.testing.wait_all_tasks_blocked()
            a.isr_change_committed(ALL, partition_epoch=2)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert len(controller.requests) == 1, "no retry once the metadata moved on"
    assert (a.isr, a.pending_isr, a.partition_epoch) == (ALL, None, 2)


def test_a_late_answer_leaves_a_newer_pending_change_alone():
    a, _b, _c = leader_with_c_outside_the_isr()

    async def main() -> None:
        held = trio.Event()
        answer = {"error_code": Errors.NONE, "isr": sorted(ALL), "partition_epoch": 2}
        controller = ScriptedController(answer, held=held)
        async with trio.open_nursery() as nursery:
            member = member_of(A, controller)
            member._nursery = nursery
            member.request_isr_change(a, ALL)
            await trio.testing.wait_all_tasks_blocked()
            # The metadata settles the change, and a shrink is proposed at epoch 2
            # before the first answer arrives.
            a.isr_change_committed(ALL, partition_epoch=2)
            a.pending_isr = frozenset({A, B})
            held.set()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert (a.isr, a.partition_epoch) == (ALL, 2)
    assert a.pending_isr == frozenset({A, B}), "the late answer is for an older proposal"
