"""The real brokers and clients on the simulator: elections, crashes with data loss,
partitions, pauses, clocks and connection failures, all in simulated time."""

from __future__ import annotations

import random

import pytest
import trio

from impl.client import Consumer, Producer, TopicPartition
from impl.client.admin import create_topics, wait_for_leaders
from impl.client.connection import Connection
from impl.protocol import API_KEYS
from impl.runtime.net import NetworkError
from impl.sim.cluster import PORT, SimCluster
from impl.sim.guard import run
from jepsen_py.campaign.nemesis import Nemesis
from model.config import Config
from model.errors import Errors

TOPIC = "jepsen"
CLIENT = Config.parse(["acks=all", "request.timeout.ms=3000", "delivery.timeout.ms=20000"])
BROKERS = ("min.insync.replicas=2",)
NEW_LEADER_WAIT_S = 30.0


async def _ready(nursery: trio.Nursery, seed: int, partitions: int = 1) -> SimCluster:
    cluster = SimCluster(3, seed=seed, config=BROKERS, topic=TOPIC)
    await cluster.start(nursery)
    await cluster.wait_for_brokers()
    runtime = cluster.runtime()
    await create_topics(runtime, cluster.bootstrap, [(TOPIC, partitions, 3, {})])
    await wait_for_leaders(runtime, cluster.bootstrap, [TOPIC])
    return cluster


async def _write(cluster: SimCluster, values: list[bytes]) -> list[int]:
    async with Producer(cluster.runtime(), cluster.bootstrap, CLIENT) as producer:
        deliveries = [await producer.send(TOPIC, v, partition=0) for v in values]
        return [(await d.wait()).offset for d in deliveries]


async def _read(cluster: SimCluster, count: int) -> list[bytes]:
    tp = TopicPartition(TOPIC, 0)
    values: list[bytes] = []
    async with Consumer(cluster.runtime(), cluster.bootstrap, CLIENT) as consumer:
        consumer.assign([tp])
        consumer.seek_to_beginning([tp])
        with trio.fail_after(30):
            while len(values) < count:
                values += [r.value for r in await consumer.poll(100)]
    return values


async def _new_leader(cluster: SimCluster, old: int) -> int:
    with trio.fail_after(NEW_LEADER_WAIT_S):
        while True:
            leader = (await cluster.partition_leaders()).get(0)
            if leader is not None and leader != old:
                return leader
            await trio.sleep(0.1)


def simulate(fn, seed: int = 3):
    async def main():
        async with trio.open_nursery() as nursery:
            cluster = await _ready(nursery, seed)
            result = await fn(cluster)
            await cluster.stop()
            nursery.cancel_scope.cancel()
        return result

    return run(main, seed=seed)


def test_cluster_comes_up_and_elects_leaders():
    async def check(cluster: SimCluster):
        controller = await cluster.controller_leader()
        leaders = await cluster.partition_leaders()
        states = cluster.partition_state(TOPIC, 0)
        return controller, leaders, states

    controller, leaders, states = simulate(check)
    assert controller in (0, 1, 2)
    assert set(leaders) == {0} and leaders[0] in (0, 1, 2)
    assert set(states) == {0, 1, 2}
    assert [n for n, s in states.items() if s.is_leader] == [leaders[0]]
    assert all(s.isr == (0, 1, 2) for s in states.values())


def test_acked_writes_survive_a_leader_crash_that_loses_unsynced_bytes():
    async def check(cluster: SimCluster):
        before = await _write(cluster, [b"a%d" % i for i in range(20)])
        leader = (await cluster.partition_leaders())[0]
        killed = await cluster.crash(leader)
        await _new_leader(cluster, leader)
        after = await _write(cluster, [b"b%d" % i for i in range(20)])
        await cluster.restart(leader)
        await cluster.wait_for_brokers()
        return before, after, killed, await _read(cluster, 40)

    before, after, killed, values = simulate(check)
    assert before == list(range(20)) and after == list(range(20, 40))
    assert killed["state"] == "crashed" and killed["unsynced_bytes"] > 0
    assert values == [b"a%d" % i for i in range(20)] + [b"b%d" % i for i in range(20)]


def test_an_isolated_leader_is_replaced():
    async def check(cluster: SimCluster):
        leader = (await cluster.partition_leaders())[0]
        others = [n for n in cluster.nodes if n != leader]
        await cluster.cut({(leader, n) for n in others} | {(n, leader) for n in others})
        new = await _new_leader(cluster, leader)
        stale = cluster.partition_state(TOPIC, 0)[leader]
        await cluster.heal_network()
        return leader, new, stale

    leader, new, stale = simulate(check)
    assert new != leader
    # The zombie still believes it leads: nobody could tell it otherwise.
    assert stale.is_leader


def test_a_paused_leader_is_replaced_and_rejoins_after_resume():
    async def check(cluster: SimCluster):
        leader = (await cluster.partition_leaders())[0]
        await cluster.pause(leader)
        new = await _new_leader(cluster, leader)
        await cluster.resume(leader)
        with trio.fail_after(NEW_LEADER_WAIT_S):
            while cluster.partition_state(TOPIC, 0)[leader].is_leader:
                await trio.sleep(0.1)
        await _write(cluster, [b"after"])
        with trio.fail_after(NEW_LEADER_WAIT_S):
            while cluster.partition_state(TOPIC, 0)[new].isr != (0, 1, 2):
                await trio.sleep(0.1)
        return leader, new, cluster.partition_state(TOPIC, 0)

    leader, new, states = simulate(check)
    assert new != leader
    assert states[leader].leader == new and states[leader].log_end_offset == 1


def test_clock_bump_is_visible_through_the_clock_adjust_api():
    async def check(cluster: SimCluster):
        skew = await cluster.adjust_clock(1, 120_000, reset=False)
        runtime = cluster.runtime("control")
        async with trio.open_nursery() as nursery:
            connection = await Connection.open(
                runtime, nursery, "node-1.sim", PORT, client_id="t", request_timeout_ms=3000
            )
            answer = await connection.request(
                API_KEYS["ClockAdjust"], {"delta_ms": 0, "reset": False}
            )
            await connection.aclose()
        unskewed = cluster.clock(0).wall_ms()
        return skew, answer, unskewed

    skew, answer, unskewed = simulate(check)
    assert skew == 120_000
    assert answer["error_code"] == Errors.NONE and answer["skew_ms"] == 120_000
    assert answer["wall_ms"] - unskewed >= 120_000 - 10


def test_connect_across_a_cut_link_hangs_and_down_nodes_refuse():
    async def check(cluster: SimCluster):
        net = cluster.runtime("clients").net
        await cluster.cut({("clients", 2)})
        started = trio.current_time()
        with trio.move_on_after(5) as hung:
            await net.connect("node-2.sim", PORT)
        waited = trio.current_time() - started
        await cluster.heal_network()
        stream = await net.connect("node-2.sim", PORT)
        await stream.aclose()
        await cluster.kill(2)
        with pytest.raises(NetworkError):
            await net.connect("node-2.sim", PORT)
        with pytest.raises(NetworkError):
            await net.connect("nowhere.sim", PORT)
        await cluster.cut({("clients", 2)})
        with trio.move_on_after(5) as hung_on_dead:
            await net.connect("node-2.sim", PORT)
        return hung.cancelled_caught, waited, hung_on_dead.cancelled_caught

    cancelled, waited, cancelled_on_dead = simulate(check)
    assert cancelled and waited == pytest.approx(5.0)
    # A SYN into a DROP rule gets no RST, whether or not anything listens behind it.
    assert cancelled_on_dead


def test_the_campaign_nemesis_drives_the_sim_cluster_unchanged():
    ops = [
        ("kill", "leader"),
        ("restart", "all"),
        ("crash", "one"),
        ("restart", "all"),
        ("pause", "controller"),
        ("resume", "all"),
        ("partition", "halves"),
        ("heal", "network"),
        ("clock-bump", "all"),
        ("heal", "all"),
    ]

    async def check(cluster: SimCluster):
        nemesis = Nemesis(cluster, random.Random(5))
        done = []
        for f, value in ops:
            completion = await nemesis.invoke(f, value)
            done.append((f, completion.type, completion.value))
            await trio.sleep(2)
        await cluster.wait_for_brokers()
        return done, await _write(cluster, [b"after-faults"])

    done, offsets = simulate(check)
    assert [t for _, t, _ in done] == ["ok"] * len(ops), done
    killed = done[0][2]
    assert killed["processes"][str(killed["nodes"][0])]["state"] == "killed"
    crashed = done[2][2]
    assert crashed["processes"][str(crashed["nodes"][0])]["state"] == "crashed"
    assert done[6][2]["cut"], "halves cut no link"
    assert all(skew != 0 for skew in done[8][2]["skew_ms"].values())
    assert done[9][2]["clocks"] == {"0": 0, "1": 0, "2": 0}
    assert offsets == [0]
