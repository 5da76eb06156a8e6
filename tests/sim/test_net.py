"""The simulated network: in-order bytes after latency, held (not lost) bytes across a
cut, bounded buffers, EOF and reset, refused connects, no leaked streams."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from impl.runtime.net import NetworkError
from impl.sim.guard import deterministic, run
from impl.sim.net import PIPE_BYTES_MAX, SimNetwork

ADDRESS = ("b.sim", 1)


async def _pair(nursery: trio.Nursery, fabric: SimNetwork):
    """A connection from endpoint "a" to a listener of endpoint "b": (client, server)."""
    send, receive = trio.open_memory_channel(1)

    async def handler(stream):
        await send.send(stream)
        await trio.sleep_forever()

    await nursery.start(fabric.view("b").serve, handler, *ADDRESS)
    client = await fabric.view("a").connect(*ADDRESS)
    return client, await receive.receive()


@pytest.fixture(params=["simulated", "mock"])
def clock(request):
    """Parked readers are woken by the SimulatedClock itself; on any other clock (the
    stateful tests' MockClock) by a cancel scope's deadline: both must behave alike."""
    return request.param


def _simulate(fn, clock="simulated"):
    async def main():
        fabric = SimNetwork(random.Random(1))
        async with trio.open_nursery() as nursery:
            client, server = await _pair(nursery, fabric)
            result = await fn(fabric, client, server)
            nursery.cancel_scope.cancel()
        return result

    if clock == "simulated":
        return run(main, seed=1)
    with deterministic(1):
        return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def _receive_exactly(stream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await stream.receive_some()
        assert chunk, "unexpected EOF"
        data += chunk
    return data


def test_bytes_arrive_in_order_after_the_link_latency(clock):
    async def check(fabric, client, server):
        started = trio.current_time()
        for i in range(50):
            await client.send_all(b"%03d" % i)
        data = await _receive_exactly(server, 150)
        return data, trio.current_time() - started, fabric.latency_s[("a", "b")]

    data, elapsed, latency = _simulate(check, clock)
    assert data == b"".join(b"%03d" % i for i in range(50))
    assert elapsed == pytest.approx(latency)


def test_a_cut_holds_bytes_both_ways_and_heal_delivers_them(clock):
    async def check(fabric, client, server):
        fabric.cut({("a", "b")})
        await client.send_all(b"ping")
        await server.send_all(b"pong")
        with trio.move_on_after(10) as held:
            await server.receive_some()
        fabric.heal()
        return held.cancelled_caught, await server.receive_some(), await client.receive_some()

    held, ping, pong = _simulate(check, clock)
    assert held and ping == b"ping" and pong == b"pong"


def test_a_full_buffer_blocks_the_sender_until_the_reader_drains(clock):
    async def check(fabric, client, server):
        fabric.cut({("a", "b")})
        await client.send_all(b"x" * PIPE_BYTES_MAX)
        with trio.move_on_after(5) as blocked:
            await client.send_all(b"y")
        fabric.heal()
        await _receive_exactly(server, PIPE_BYTES_MAX)
        await client.send_all(b"z")
        return blocked.cancelled_caught, await server.receive_some()

    blocked, last = _simulate(check, clock)
    assert blocked and last == b"z"


def test_send_all_nowait_sends_only_where_send_all_would_not_wait(clock):
    async def check(fabric, client, server):
        sent_first = client.send_all_nowait(b"a" * PIPE_BYTES_MAX)
        sent_while_full = client.send_all_nowait(b"b")
        drained = await _receive_exactly(server, PIPE_BYTES_MAX)
        sent_after = client.send_all_nowait(b"c")
        last = await server.receive_some()
        server.close_now()
        await trio.sleep(1)
        with pytest.raises(trio.BrokenResourceError):
            client.send_all_nowait(b"d")
        client.close_now()
        with pytest.raises(trio.ClosedResourceError):
            client.send_all_nowait(b"e")
        return sent_first, sent_while_full, drained == b"a" * PIPE_BYTES_MAX, sent_after, last

    # A full pipe refuses the write and keeps nothing of it: only "c" follows the "a"s.
    assert _simulate(check, clock) == (True, False, True, True, b"c")


def test_close_is_eof_then_reset_and_streams_are_forgotten(clock):
    async def check(fabric, client, server):
        await client.aclose()
        eof = await server.receive_some()
        with pytest.raises(trio.BrokenResourceError):
            await server.send_all(b"late")
        with pytest.raises(trio.ClosedResourceError):
            await client.send_all(b"after close")
        await server.aclose()
        with pytest.raises(NetworkError):
            await fabric.view("a").connect("nobody.sim", 1)
        return eof, {k: len(v) for k, v in fabric.streams.items()}

    eof, open_streams = _simulate(check, clock)
    assert eof == b""
    assert open_streams == {"a": 0, "b": 0}


def test_a_reader_cancelled_before_the_delivery_still_gets_the_bytes_later(clock):
    async def check(fabric, client, server):
        latency = fabric.latency_s[("a", "b")]
        await client.send_all(b"one")
        with trio.move_on_after(latency / 2) as early:
            await server.receive_some()
        await trio.sleep(latency)
        await client.send_all(b"two")
        first = await server.receive_some()
        second = await server.receive_some()
        return early.cancelled_caught, first, second

    early, first, second = _simulate(check, clock)
    assert early and first == b"one" and second == b"two"


def test_a_dead_machine_loses_what_a_cut_held_even_on_closed_connections(clock):
    async def check(fabric, client, server):
        fabric.cut({("a", "b"), ("b", "a")})
        await client.send_all(b"stale")
        await client.aclose()  # the process closed it; its kernel would retransmit
        fabric.lose_held_bytes("a")
        fabric.heal()
        with trio.fail_after(10):
            return await server.receive_some()

    assert _simulate(check, clock) == b"", "only the FIN is left of what a sent"


def test_losing_held_bytes_spares_other_writers_and_unheld_links(clock):
    async def check(fabric, client, server):
        await server.send_all(b"unheld")
        fabric.lose_held_bytes("b")  # no cut: nothing is held, nothing is lost
        fabric.cut({("a", "b")})
        await server.send_all(b"held")
        fabric.lose_held_bytes("a")  # a's machine died: b's bytes to it are not a's
        fabric.heal()
        with trio.fail_after(10):
            return await _receive_exactly(client, 10)

    assert _simulate(check, clock) == b"unheldheld"
