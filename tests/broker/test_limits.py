"""A broker that survives its users: connection limits, idle and read timeouts, the
request-bytes pool, rate-limited warnings and descriptor exhaustion, each against a real
broker process and real loopback sockets."""

from __future__ import annotations

import logging
import os
import resource
import select
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import trio
import trio.testing
from broker_wire import SINGLE_BROKER_CONFIG, Wire
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from impl.broker.process import BrokerProcess, broker_argv, start_broker
from impl.protocol import API_KEYS, decode_response, encode_request
from impl.protocol.frames import RequestBytesPool
from impl.runtime.net import LogLimiter
from model.errors import Errors

IDLE_SOCKETS = 1000
FRAME_BYTES = 60 * 1024 * 1024
RSS_LIMIT_BYTES = 200 * 1000 * 1000
SEND_CHUNK_BYTES = 1024 * 1024


@contextmanager
def running(tmp_path: Path, *config: str) -> Iterator[BrokerProcess]:
    broker = start_broker(0, tmp_path / "data", config=[*SINGLE_BROKER_CONFIG, *config])
    try:
        yield broker
    finally:
        assert broker.stop() == 0, broker.log_path.read_text()[-2000:]


def connect(broker: BrokerProcess) -> socket.socket:
    return socket.create_connection((broker.host, broker.port), timeout=10)


def closed_within(sock: socket.socket, timeout_s: float) -> bool:
    """Whether the broker closes `sock` within `timeout_s`; anything it sends is read."""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
    return False


def answers(broker: BrokerProcess) -> bool:
    wire = Wire(broker.bootstrap)
    try:
        return wire.call("ApiVersions", 0, {})["error_code"] == Errors.NONE
    finally:
        wire.close()


def answers_again(broker: BrokerProcess, timeout_s: float, why: str) -> None:
    """Retry `answers` until it does, failing with `why` after `timeout_s`: a slot or a
    descriptor is freed asynchronously, when the broker sees the peer's close."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if answers(broker):
                return
        except (AssertionError, OSError):
            pass
        assert time.monotonic() < deadline, why
        time.sleep(0.05)


def frame_prefix(size: int) -> bytes:
    return struct.pack(">i", size)


def raise_descriptor_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime, fields 14 and 15 of proc(5), in clock ticks.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def log_lines(broker: BrokerProcess, text: str) -> list[str]:
    return [line for line in broker.log_path.read_text().splitlines() if text in line]


def test_idle_sockets_do_not_lock_a_stock_client_out(tmp_path):
    raise_descriptor_limit(IDLE_SOCKETS + 200)
    with running(tmp_path) as broker:
        idle = [connect(broker) for _ in range(IDLE_SOCKETS - 1)]
        last = Wire(broker.bootstrap)
        idle.append(last.sock)
        try:
            # Accepted in order: the last one answered, the broker holds all of them.
            assert last.call("ApiVersions", 0, {})["error_code"] == Errors.NONE
            started = time.monotonic()
            admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)
            admin.create_topics([NewTopic("after-idle", 1, 1)])
            admin.close()
            producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
            metadata = producer.send("after-idle", b"value").get(timeout=10)
            producer.close()
            elapsed_s = time.monotonic() - started
        finally:
            for sock in idle:
                sock.close()
        assert metadata.offset == 0
        assert elapsed_s < 10, f"create topic and produce took {elapsed_s:.1f} s"
        assert log_lines(broker, "max.connections=1000 reached"), "the broker was never full"


def test_half_sent_large_frames_stay_within_the_request_bytes_pool(tmp_path):
    """Four frames of 60 MiB sent but for their last byte: the pool (100 MiB) lets one
    arrive and holds the others unread, and small requests are still answered."""
    with running(tmp_path) as broker:
        socks = [connect(broker) for _ in range(4)]
        sent = [0] * len(socks)
        peak_rss = 0
        try:
            for sock in socks:
                sock.sendall(frame_prefix(FRAME_BYTES))
                sock.setblocking(False)
            chunk = bytes(SEND_CHUNK_BYTES)
            deadline = time.monotonic() + 10
            stalled_since = time.monotonic()
            # Until every frame is in but for its last byte, or nothing moved for 2 s.
            while time.monotonic() < deadline and time.monotonic() - stalled_since < 2:
                open_socks = [s for s, n in zip(socks, sent, strict=True) if n < FRAME_BYTES - 1]
                if not open_socks:
                    break
                _, writable, _ = select.select([], open_socks, [], 0.2)
                for sock in writable:
                    index = socks.index(sock)
                    left = FRAME_BYTES - 1 - sent[index]
                    sent[index] += sock.send(chunk[: min(left, SEND_CHUNK_BYTES)])
                    stalled_since = time.monotonic()
                peak_rss = max(peak_rss, rss_bytes(broker.pid))
            peak_rss = max(peak_rss, rss_bytes(broker.pid))
            assert answers(broker), "a small request must not wait for the pool"
        finally:
            for sock in socks:
                sock.close()
        assert max(sent) == FRAME_BYTES - 1, f"no frame got through to its last byte: {sent}"
        assert peak_rss < RSS_LIMIT_BYTES, f"broker RSS {peak_rss / 1e6:.0f} MB, sent {sent}"


def test_frames_waiting_for_the_pool_hold_only_their_share(tmp_path):
    """400 connections each send 256 KiB of a 50 MiB frame: one is granted, the others
    wait, each holding its share of the 4 MiB pool (the 32 KiB minimum), not 256 KiB."""
    raise_descriptor_limit(600)
    # One more than the waiting ones, for the request that shows the broker serves.
    config = ("max.connections=401", "queued.max.request.bytes=4194304")
    with running(tmp_path, *config) as broker:
        assert answers(broker)
        before = rss_bytes(broker.pid)
        socks = [connect(broker) for _ in range(400)]
        try:
            for sock in socks:
                sock.sendall(frame_prefix(50 * 1024 * 1024) + bytes(256 * 1024))
            time.sleep(1)
            grown = rss_bytes(broker.pid) - before
            assert answers(broker)
        finally:
            for sock in socks:
                sock.close()
        assert grown < 40_000_000, f"RSS grew by {grown / 1e6:.0f} MB"


def test_a_frame_larger_than_the_pool_arrives_when_the_pool_is_otherwise_empty(tmp_path):
    names = [{"name": f"missing-{n:04d}"} for n in range(200)]
    request = encode_request(API_KEYS["Metadata"], 12, 1, "test", {"topics": names})
    assert len(request) > 2048
    with running(tmp_path, "queued.max.request.bytes=1024") as broker:
        holder = connect(broker)
        holder.sendall(frame_prefix(512) + b"x")
        wire = Wire(broker.bootstrap)
        # In two parts, so the frame is reserved: granted only once `holder` lets go.
        wire.send_raw(request[:1000])
        time.sleep(0.3)
        wire.send_raw(request[1000:])
        wire.sock.settimeout(0.5)
        try:
            early = wire.receive_frame()
        except TimeoutError:
            early = None
        assert early is None, "answered while the pool was held"
        holder.close()
        wire.sock.settimeout(10)
        frame = wire.receive_frame()
        assert frame is not None
        _, response = decode_response(API_KEYS["Metadata"], 12, frame)
        assert [t["name"] for t in response["topics"]] == [n["name"] for n in names]
        wire.close()


def test_the_pool_grants_in_order_of_room():
    async def main() -> None:
        pool = RequestBytesPool(100, max_connections=10)
        await pool.acquire(150)  # alone: larger than the pool, still granted
        await pool.acquire(0)  # nothing to reserve never waits
        granted: list[int] = []

        async def take(size: int) -> None:
            await pool.acquire(size)
            granted.append(size)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(take, 60)
            await trio.sleep(1)
            assert granted == []
            pool.release(150)
            await trio.sleep(1)
            assert granted == [60]
            nursery.start_soon(take, 50)
            await trio.sleep(1)
            assert granted == [60], "60 + 50 > 100"
            pool.release(60)
        assert granted == [60, 50]
        assert pool.used_bytes == 50

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_trickled_frame_is_closed_by_the_read_timeout(tmp_path):
    with running(tmp_path, "replog.request.read.timeout.ms=1500") as broker:
        sock = connect(broker)
        started = time.monotonic()
        sock.sendall(frame_prefix(100))
        closed = False
        for _ in range(20):
            try:
                sock.sendall(b"x")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if closed_within(sock, 0.5):
                closed = True
                break
        elapsed_s = time.monotonic() - started
        sock.close()
        assert closed, "a frame trickled for 10 s was never closed"
        assert 1.5 <= elapsed_s < 4, f"closed after {elapsed_s:.1f} s"
        assert log_lines(broker, "replog.request.read.timeout.ms=1500")
        assert answers(broker)


def test_idle_connections_are_closed_and_busy_ones_kept(tmp_path):
    with running(tmp_path, "connections.max.idle.ms=1000") as broker:
        idle = Wire(broker.bootstrap)
        busy = Wire(broker.bootstrap)
        assert idle.call("ApiVersions", 0, {})["error_code"] == Errors.NONE
        started = time.monotonic()
        # A request every 0.25 s for 2.5 s keeps `busy` open past twice the idle limit.
        for _ in range(10):
            assert busy.call("ApiVersions", 0, {})["error_code"] == Errors.NONE
            time.sleep(0.25)
        assert closed_within(idle.sock, 0.1), "idle for 2.5 s, limit 1 s"
        assert time.monotonic() - started >= 1.0
        busy.close()
        idle.close()


def test_a_client_that_stops_reading_is_closed_as_idle(tmp_path):
    """Fetch responses the client never reads fill the socket and block the broker's
    send: no traffic, so connections.max.idle.ms closes it with responses still unsent."""
    with running(tmp_path, "connections.max.idle.ms=1000") as broker:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        admin.create_topics([NewTopic("unread", 1, 1)])
        admin.close()
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        for _ in range(10):
            producer.send("unread", bytes(100_000))
        producer.flush(timeout=10)
        producer.close()
        sock = connect(broker)
        fetches = 40
        for correlation_id in range(fetches):
            sock.sendall(encode_request(API_KEYS["Fetch"], 12, correlation_id, "t", FETCH_ALL))
        time.sleep(2.5)
        received = 0
        sock.settimeout(5)
        try:
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
        except ConnectionResetError:
            pass  # closed with our unread requests in its buffer: a reset
        sock.close()
        assert received < fetches * 1_000_000, f"{received} bytes: every response was sent"


FETCH_ALL = {
    "replica_id": -1,
    "max_wait_ms": 0,
    "min_bytes": 0,
    "max_bytes": 1 << 21,
    "topics": [
        {
            "topic": "unread",
            "partitions": [{"partition": 0, "fetch_offset": 0, "partition_max_bytes": 1 << 21}],
        }
    ],
}


def test_max_connections_evicts_the_idlest_and_refuses_when_all_are_mid_request(tmp_path):
    with running(tmp_path, "max.connections=2") as broker:
        idle = Wire(broker.bootstrap)
        assert idle.call("ApiVersions", 0, {})["error_code"] == Errors.NONE
        mid_request = connect(broker)
        mid_request.sendall(frame_prefix(100) + b"half")
        time.sleep(0.2)
        newcomer = Wire(broker.bootstrap)
        assert newcomer.call("ApiVersions", 0, {})["error_code"] == Errors.NONE
        assert closed_within(idle.sock, 2), "the idle connection makes room"
        assert not closed_within(mid_request, 0.2), "a connection mid-request is kept"
        newcomer.send_raw(frame_prefix(100) + b"half")
        time.sleep(0.2)
        refused = connect(broker)
        assert closed_within(refused, 2), "every connection is mid-request: refused"
        assert not closed_within(newcomer.sock, 0.2)
        for sock in (refused, mid_request, newcomer.sock, idle.sock):
            sock.close()
        assert log_lines(broker, "all of them mid-request")


def test_max_connections_per_ip_refuses_the_extra_connection(tmp_path):
    with running(tmp_path, "max.connections.per.ip=2") as broker:
        kept = [Wire(broker.bootstrap), Wire(broker.bootstrap)]
        for wire in kept:
            assert wire.call("ApiVersions", 0, {})["error_code"] == Errors.NONE
        extra = connect(broker)
        assert closed_within(extra, 2)
        extra.close()
        kept.pop().close()
        answers_again(broker, 5, "a freed slot must be reusable")
        kept[0].close()
        assert log_lines(broker, "max.connections.per.ip=2")


def test_warnings_about_bad_connections_are_rate_limited(tmp_path):
    with running(tmp_path, "max.connections.per.ip=2") as broker:
        for _ in range(100):
            bad = connect(broker)
            bad.sendall(frame_prefix(-2))
            assert closed_within(bad, 2)
            bad.close()
        time.sleep(0.2)  # the last bad connection is gone: two holders fit
        holders = [Wire(broker.bootstrap), Wire(broker.bootstrap)]
        for holder in holders:
            assert holder.call("ApiVersions", 0, {})["error_code"] == Errors.NONE
        for _ in range(100):
            refused = connect(broker)
            assert closed_within(refused, 2)
            refused.close()
        for holder in holders:
            holder.close()
    assert len(log_lines(broker, "negative frame size")) == 1
    assert len(log_lines(broker, "refusing a connection")) == 1


def test_the_limiter_reports_what_it_suppressed():
    lines: list[str] = []
    errors: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno == logging.ERROR:
                errors.append(record)
            else:
                lines.append(record.getMessage())

    logger = logging.getLogger("test_limits.limiter")
    logger.addHandler(Collect())
    logger.propagate = False

    async def main() -> None:
        limiter = LogLimiter(logger, interval_s=10)
        for n in range(5):
            limiter.warning("refusals", "refused %d", n)
        limiter.warning("protocol errors", "bad frame")
        limiter.flush()
        assert lines == ["refused 0", "bad frame"]
        await trio.sleep(10)
        limiter.flush()
        # The flushed line counts: 5 falls in its interval.
        limiter.warning("refusals", "refused %d", 5)
        await trio.sleep(10)
        for n in range(6, 9):
            limiter.warning("refusals", "refused %d", n)
        await trio.sleep(10)
        limiter.warning("refusals", "refused %d", 9)
        for _ in range(3):
            try:
                raise RuntimeError("handler bug")
            except RuntimeError:
                limiter.error("internal errors", "internal error")

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert lines == [
        "refused 0",
        "bad frame",
        "4 more refusals suppressed in the last 10 s",
        "refused 6 (1 more refusals suppressed in the last 10 s)",
        "refused 9 (2 more refusals suppressed in the last 10 s)",
    ]
    assert len(errors) == 1, "errors are rate-limited too"
    assert errors[0].exc_info is not None and errors[0].exc_info[0] is RuntimeError


LIMIT_AND_EXEC = (
    "import os, resource, sys; "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[2]))); "
    "os.execv(sys.argv[3], sys.argv[3:])"
)


def limited_broker(tmp_path: Path, soft: int, hard: int) -> BrokerProcess:
    argv = broker_argv(0, tmp_path / "data", config=SINGLE_BROKER_CONFIG)
    limited = [sys.executable, "-c", LIMIT_AND_EXEC, str(soft), str(hard), *argv]
    return BrokerProcess(0, tmp_path / "data", limited, tmp_path / "broker.log").start()


def test_the_broker_raises_its_soft_descriptor_limit_to_the_hard_one(tmp_path):
    broker = limited_broker(tmp_path, 256, 2048)
    try:
        limits = Path(f"/proc/{broker.pid}/limits").read_text()
        row = next(line for line in limits.splitlines() if line.startswith("Max open files"))
        assert row.split()[3:5] == ["2048", "2048"], row
        assert not log_lines(broker, "descriptor limit")
    finally:
        assert broker.stop() == 0


def test_out_of_descriptors_the_broker_neither_spins_nor_dies(tmp_path):
    # The hard limit too, so the broker cannot raise its own.
    broker = limited_broker(tmp_path, 64, 64)
    socks: list[socket.socket] = []
    try:
        for _ in range(100):
            socks.append(connect(broker))
        time.sleep(0.5)
        cpu_before_s = cpu_s(broker.pid)
        time.sleep(2)
        spent_s = cpu_s(broker.pid) - cpu_before_s
        assert broker.popen is not None and broker.popen.poll() is None
        assert spent_s < 0.5, f"{spent_s:.2f} CPU s in 2 s out of descriptors"
        assert len(log_lines(broker, "cannot accept a connection")) == 1
        assert log_lines(broker, "the descriptor limit (ulimit -n) is 64")
        for sock in socks:
            sock.close()
        socks.clear()
        answers_again(broker, 5, "descriptors freed: serving again")
    finally:
        for sock in socks:
            sock.close()
        assert broker.stop() == 0


def test_a_data_dir_that_is_a_file_is_a_one_line_error(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    claimed = tmp_path / "claimed"
    claimed.mkdir()
    (claimed / "meta.properties").write_text("version=0\nbroker.id=7\n")
    for data_dir, reason in (
        (not_a_dir, "not a directory"),
        (not_a_dir / "sub", "cannot"),
        (claimed, "belongs to another broker"),
    ):
        result = subprocess.run(
            broker_argv(0, data_dir),
            capture_output=True,
            text=True,
            timeout=30,
            env=_env(),
        )
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith("replog broker: "), result.stderr
        assert str(data_dir) in result.stderr and reason in result.stderr


def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": root}
