"""Partition shapes, nemesis names, and the link proxy's blackhole."""

from __future__ import annotations

import random
from functools import partial

import pytest
import trio

from jepsen_py.campaign import nemesis
from jepsen_py.campaign.net_proxy import LinkProxy

NODES = (0, 1, 2, 3, 4)


def reachable(links: set[tuple[object, int]], source: object, target: int) -> bool:
    return (source, target) not in links


@pytest.mark.parametrize("seed", range(5))
def test_halves_split_brokers_and_clients_in_two(seed: int) -> None:
    parts = nemesis.halves(NODES, random.Random(seed))
    assert sorted(map(str, parts[0] + parts[1])) == sorted(map(str, (*NODES, nemesis.CLIENTS)))
    links = nemesis.grudge_links(parts)
    for a in parts[0]:
        for b in parts[1]:
            if isinstance(b, int):
                assert not reachable(links, a, b)
            if isinstance(a, int):
                assert not reachable(links, b, a)
    assert all(isinstance(target, int) for _, target in links)


@pytest.mark.parametrize("seed", range(5))
def test_isolate_one_leaves_clients_connected(seed: int) -> None:
    links = nemesis.isolate_one(NODES, random.Random(seed))
    (lonely,) = (
        {a for a, _ in links}
        & {b for _, b in links}
        & {n for n in NODES if sum(1 for a, _ in links if a == n) == len(NODES) - 1}
    )
    assert len(links) == 2 * (len(NODES) - 1)
    assert all(nemesis.CLIENTS not in link for link in links)
    assert all(lonely in link for link in links)


@pytest.mark.parametrize("seed", range(5))
def test_majorities_ring_gives_each_broker_a_majority_of_five(seed: int) -> None:
    links = nemesis.majorities_ring(NODES, random.Random(seed))
    for node in NODES:
        sees = {node} | {other for other in NODES if other != node and (node, other) not in links}
        assert len(sees) == 3
    assert all((b, a) in links for a, b in links), "ring cuts are symmetric"


@pytest.mark.parametrize("seed", range(5))
def test_bridge_keeps_one_node_linked_to_both_sides(seed: int) -> None:
    links = nemesis.bridge(NODES, random.Random(seed))
    cut_nodes = {a for a, _ in links}
    (bridge,) = set(NODES) - cut_nodes
    assert all(bridge not in link for link in links)
    assert len(links) == 2 * 2 * 2


def test_parse_kinds() -> None:
    assert nemesis.parse_kinds("kill, partition,kill") == ("kill", "partition")
    assert nemesis.parse_kinds("none") == ()
    assert nemesis.parse_kinds("partition:inbound,crash:leader") == (
        "partition:inbound",
        "crash:leader",
    )
    with pytest.raises(ValueError, match="unknown nemesis flood"):
        nemesis.parse_kinds("kill,flood")
    with pytest.raises(ValueError, match="unknown variant 'sideways' of partition"):
        nemesis.parse_kinds("partition:sideways")


@pytest.mark.parametrize("seed", range(5))
def test_inbound_cuts_only_the_links_into_one_broker(seed: int) -> None:
    links = nemesis.inbound(NODES, random.Random(seed))
    (lonely,) = {target for _, target in links}
    assert links == {(n, lonely) for n in NODES if n != lonely}
    assert all(reachable(links, lonely, n) for n in NODES if n != lonely)
    assert reachable(links, nemesis.CLIENTS, lonely)


class FakeFaults:
    """A cluster on paper: what the nemesis asked for, and a fixed metadata view."""

    nodes = (0, 1, 2)

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    async def crash(self, node: int) -> dict:
        self.calls.append(("crash", node))
        return {"lost_bytes": 10}

    async def restart(self, node: int) -> dict:
        self.calls.append(("restart", node))
        return {"pid": 1}

    async def partition_leaders(self) -> dict[int, int]:
        return {0: 0, 1: 1, 2: 2, 3: 0}

    async def in_sync_replicas(self) -> dict[int, tuple[int, ...]]:
        return {0: (0, 1, 2), 1: (1,), 2: (2, 0), 3: (0, 1, 2)}


def test_crash_targets_the_leader_with_the_fewest_in_sync_replicas() -> None:
    async def main() -> None:
        faults = FakeFaults()
        nem = nemesis.Nemesis(faults, random.Random(0))
        crashed = await nem.invoke("crash", "leader")
        assert crashed.type == "ok" and crashed.value["nodes"] == [1]
        assert nem.state.killed == nem.state.crashed == {1}
        assert nem.state.active() == ["crash [1]"]
        assert nem.ending_ops()[0] == {"f": "restart", "value": "all"}
        await nem.invoke("restart", "all")
        assert faults.calls == [("crash", 1), ("restart", 1)]
        assert not nem.state.killed and not nem.state.crashed

    trio.run(main)


async def _echo(stream: trio.SocketStream) -> None:
    async for data in stream:
        await stream.send_all(data)


def test_a_cut_link_holds_bytes_until_healed_and_keeps_the_connection() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, _echo, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            proxy = LinkProxy("client->echo", ("127.0.0.1", port))
            await nursery.start(proxy.serve)
            stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
            await stream.send_all(b"before")
            assert await stream.receive_some(100) == b"before"
            proxy.cut()
            await stream.send_all(b"during")
            with trio.move_on_after(0.3) as silent:
                await stream.receive_some(100)
            assert silent.cancelled_caught, "nothing crosses a cut link"
            assert proxy.stats.blocked_bytes == len(b"during")
            proxy.heal()
            assert await stream.receive_some(100) == b"during", "held bytes arrive after heal"
            assert proxy.stats.connections == 1, "a cut is not a reset"
            await stream.aclose()
            nursery.cancel_scope.cancel()

    trio.run(main)
