"""The simulated network: in-order bytes after latency, held (not lost) bytes across a
cut, bounded buffers, EOF and reset, refused connects, no leaked streams."""

from __future__ import annotations

import random

import pytest
import trio

from impl.runtime.net import NetworkError
from impl.sim.guard import run
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


def _simulate(fn):
    async def main():
        fabric = SimNetwork(random.Random(1))
        async with trio.open_nursery() as nursery:
            client, server = await _pair(nursery, fabric)
            result = await fn(fabric, client, server)
            nursery.cancel_scope.cancel()
        return result

    return run(main, seed=1)


async def _receive_exactly(stream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await stream.receive_some()
        assert chunk, "unexpected EOF"
        data += chunk
    return data


def test_bytes_arrive_in_order_after_the_link_latency():
    async def check(fabric, client, server):
        started = trio.current_time()
        for i in range(50):
            await client.send_all(b"%03d" % i)
        data = await _receive_exactly(server, 150)
        return data, trio.current_time() - started, fabric.latency_s[("a", "b")]

    data, elapsed, latency = _simulate(check)
    assert data == b"".join(b"%03d" % i for i in range(50))
    assert elapsed == pytest.approx(latency)


def test_a_cut_holds_bytes_both_ways_and_heal_delivers_them():
    async def check(fabric, client, server):
        fabric.cut({("a", "b")})
        await client.send_all(b"ping")
        await server.send_all(b"pong")
        with trio.move_on_after(10) as held:
            await server.receive_some()
        fabric.heal()
        return held.cancelled_caught, await server.receive_some(), await client.receive_some()

    held, ping, pong = _simulate(check)
    assert held and ping == b"ping" and pong == b"pong"


def test_a_full_buffer_blocks_the_sender_until_the_reader_drains():
    async def check(fabric, client, server):
        fabric.cut({("a", "b")})
        await client.send_all(b"x" * PIPE_BYTES_MAX)
        with trio.move_on_after(5) as blocked:
            await client.send_all(b"y")
        fabric.heal()
        await _receive_exactly(server, PIPE_BYTES_MAX)
        await client.send_all(b"z")
        return blocked.cancelled_caught, await server.receive_some()

    blocked, last = _simulate(check)
    assert blocked and last == b"z"


def test_close_is_eof_then_reset_and_streams_are_forgotten():
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

    eof, open_streams = _simulate(check)
    assert eof == b""
    assert open_streams == {"a": 0, "b": 0}
