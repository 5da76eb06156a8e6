"""A simulated 3-broker cluster driven step by step, observed without side effects.

`SimWorld(seed, config)` owns a `SimBridge` (tests/stateful/sim_bridge.py) and a
`SimCluster`: 3 brokers and one dedicated controller (node 1000), so "cut a broker off
from the controller" is a link cut that leaves replication alone, as in the model. One
topic `t` with one partition, replication factor 3. Every method is synchronous: it runs
its operation inside the simulation and returns what a client or an operator saw.

Clients: `produce` (a fresh native Producer per call, retries=0, no idempotence, so an
answer is about exactly one attempt), `fetch` and `list_offsets` (one raw request to the
broker that believes it leads, so errors are the broker's, not a retry loop's).

`settle()` lets simulated time run until nothing observable has changed for
SETTLE_QUIET_S (longer than every timer that can still fire: the broker session timeout
and replica.lag.time.max.ms), or SETTLE_MAX_S passed. `observe()` reads every replica's
log, HW, LEO, log start, leader view and the controller's registration straight from
the objects (no network traffic, so observing changes nothing).

Invariants over observations (`impl_violations`), the impl-side twins of
specs/invariants.py that an observation can decide:
- OneLeaderPerEpoch: no two live brokers lead one epoch.
- LogMatching: live replicas agree (offset, epoch, value) below both their HWs (only
  with leader-epoch truncation and clean elections, as the spec says).
- HighWatermarkMonotonic: a live leader's HW never goes down within its epoch.
- NoAcknowledgedWriteLost: every acknowledged write (acks=all, or any acks where the
  setting under test promises nothing) is at its offset in the log of every live leader
  whose epoch is at least the write's.
- LeaderCompleteness: every record seen below a live leader's HW (committed) is in the
  log of every live leader of that or a later epoch.
- LeaderInIsr: the controller's leader is in the ISR it records.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio
from sim_bridge import SimBridge

from impl.client import OutcomeUnknown, Producer
from impl.client.admin import create_topics, wait_for_leaders
from impl.client.connection import Connection
from impl.client.errors import ClientError, KafkaError
from impl.protocol import API_KEYS
from impl.sim.cluster import PORT, SimCluster
from impl.storage.batch import decode_records, parse_header
from model.config import Config
from model.errors import Errors

TOPIC = "t"
BROKERS = (0, 1, 2)
CONTROLLER = 1000
# Short timers keep every settle short in simulated time; the model uses the same.
TIMING = (
    "replica.lag.time.max.ms=2000",
    "broker.session.timeout.ms=2000",
    "broker.heartbeat.interval.ms=500",
)
SETTLE_POLL_S = 0.1
SETTLE_QUIET_S = 3.0
SETTLE_MAX_S = 30.0
CLIENT_TIMEOUT_MS = 4000
FETCH = API_KEYS["Fetch"]
LIST_OFFSETS = API_KEYS["ListOffsets"]
EARLIEST, LATEST = -2, -1


def value_bytes(value: int) -> bytes:
    return b"%d" % value


@dataclass(frozen=True)
class Replica:
    hw: int
    leo: int
    log_start: int
    leader: int  # the leader in this broker's view
    epoch: int
    is_leader: bool
    records: tuple[tuple[int, int, int], ...]  # (offset, leader epoch, value)


@dataclass(frozen=True)
class Observation:
    leader: int  # the controller's registration; -1 offline
    leader_epoch: int
    isr: tuple[int, ...]
    elr: tuple[int, ...]
    fenced: frozenset[int]
    replicas: dict[int, Replica]  # live brokers only

    def believed_leader(self) -> int:
        """The live broker that believes it leads at the highest epoch, or -1 (the
        model's `leader_of`)."""
        best, best_epoch = -1, -1
        for b, replica in sorted(self.replicas.items()):
            if replica.is_leader and replica.epoch > best_epoch:
                best, best_epoch = b, replica.epoch
        return best


@dataclass(frozen=True)
class Outcome:
    """A client call's answer: kind is "ok", "failed" (definitely not written) or
    "unknown" (may be written); error is the Kafka name (or the client error's)."""

    kind: str
    offset: int = -1
    error: str = "NONE"


@dataclass(frozen=True)
class FetchAnswer:
    error: str
    records: tuple[tuple[int, int], ...] = ()  # (offset, value)
    high_watermark: int = -1
    log_start: int = -1


@dataclass(frozen=True)
class Ack:
    offset: int
    value: int
    leader_epoch: int
    acks: int


@dataclass
class History:
    acked: list[Ack] = field(default_factory=list)
    leader_hw: dict[tuple[int, int], int] = field(default_factory=dict)  # (broker, epoch)
    # offset -> (value, leader epoch) of every record seen below a live leader's HW
    committed: dict[int, tuple[int, int]] = field(default_factory=dict)


def _error_name(error: ClientError) -> str:
    if isinstance(error, KafkaError):
        return Errors(error.code).name
    return type(error).__name__


class SimWorld:
    """The cluster of one example; `close()` ends its trio run."""

    def __init__(
        self, seed: int, config: tuple[str, ...] = (), tear_last_write: bool = False
    ) -> None:
        self.seed = seed
        self.broker_config = (*TIMING, *config)
        self.bridge = SimBridge(seed)
        self.cluster = SimCluster(
            len(BROKERS),
            seed=seed,
            config=self.broker_config,
            controllers=1,
            topic=TOPIC,
            tear_last_write=tear_last_write,
        )
        self.history = History()
        self.cut_links: set = set()
        self.bridge.call(self._start)

    async def _start(self) -> None:
        cluster = self.cluster
        await cluster.start(self.bridge.nursery)
        await cluster.wait_for_brokers()
        runtime = cluster.runtime()
        await create_topics(runtime, cluster.bootstrap, [(TOPIC, 1, len(BROKERS), {})])
        await wait_for_leaders(runtime, cluster.bootstrap, [TOPIC])
        await self._settle()

    def close(self) -> None:
        self.bridge.close()

    # ---- faults ----------------------------------------------------------------------------

    def kill(self, node: int, machine_down: bool = False) -> dict:
        """kill -9; `machine_down`: the whole machine stopped with it, so what it wrote
        into a cut or paused link never arrives (a live kernel would deliver it at the
        heal: a heartbeat of the dead incarnation, say)."""
        return self.bridge.call(self._stop, self.cluster.kill, node, machine_down)

    def crash(self, node: int, machine_down: bool = False) -> dict:
        """Power loss; `machine_down` as for `kill`."""
        return self.bridge.call(self._stop, self.cluster.crash, node, machine_down)

    async def _stop(self, stop: Callable[[int], Awaitable[dict]], node: int, down: bool) -> dict:
        if down:
            # No checkpoint between this and the stop: the node writes nothing after it.
            self.cluster.net.lose_held_bytes(node)
        return await stop(node)

    def restart(self, node: int) -> dict:
        return self.bridge.call(self.cluster.restart, node)

    def pause(self, node: int) -> dict:
        return self.bridge.call(self.cluster.pause, node)

    def resume(self, node: int) -> dict:
        return self.bridge.call(self.cluster.resume, node)

    def isolate(self, node: int) -> None:
        others = [n for n in (*BROKERS, CONTROLLER, "clients") if n != node]
        links = {(node, n) for n in others if n != "clients"} | {(n, node) for n in others}
        self._cut(links)

    def cut_from_brokers(self, node: int) -> None:
        """Cut `node` off from the other brokers only (clients and controller still reach it)."""
        others = [n for n in BROKERS if n != node]
        self._cut({(node, n) for n in others} | {(n, node) for n in others})

    def cut_from_controller(self, node: int) -> None:
        self._cut({(node, CONTROLLER), (CONTROLLER, node)})

    def _cut(self, links: set) -> None:
        # SimCluster.cut replaces the cut set: faults accumulate until `heal`.
        self.cut_links |= links
        self.bridge.call(self.cluster.cut, set(self.cut_links))

    def heal(self) -> None:
        self.cut_links = set()
        self.bridge.call(self.cluster.heal_network)

    def bump_clock(self, node: int, delta_ms: int) -> int:
        return self.bridge.call(self.cluster.adjust_clock, node, delta_ms, False)

    def advance(self, seconds: float) -> None:
        self.bridge.call(trio.sleep, seconds)

    def alive(self) -> set[int]:
        return {n for n in BROKERS if self.cluster.brokers[n] is not None}

    def recovery_point(self, node: int) -> tuple[int, int] | None:
        """(recovery point, log end offset) of `node`'s replica: what a power loss keeps;
        None while the broker has not opened it (restarted without metadata)."""
        broker = self.cluster.brokers[node]
        assert broker is not None, f"broker {node} is down"
        partition = broker.logs.partitions.get((TOPIC, 0))
        if partition is None:
            return None
        return partition.log.recovery_point, partition.log.log_end_offset

    # ---- clients ---------------------------------------------------------------------------

    def produce(self, value: int, acks: int) -> Outcome:
        """Send `value` through a producer bootstrapped from the broker that believes it
        leads (a dead or cut-off bootstrap broker would only cost the client its timeout)."""
        leader = self.observe().believed_leader()
        outcome = self.bridge.call(self._produce, value, acks, max(leader, 0))
        if outcome.kind == "ok" and acks != 0:
            epoch = self._acked_epoch(outcome.offset, leader)
            self.history.acked.append(Ack(outcome.offset, value, epoch, acks))
        return outcome

    def _acked_epoch(self, offset: int, leader: int) -> int:
        broker = self.cluster.brokers.get(leader)
        if broker is None:
            return -1
        return broker.logs.partitions[(TOPIC, 0)].epoch_at(offset)

    async def _produce(self, value: int, acks: int, bootstrap: int) -> Outcome:
        config = Config.parse(
            [
                f"acks={'all' if acks == -1 else acks}",
                "retries=0",
                "enable.idempotence=false",
                "max.in.flight.requests.per.connection=1",
                "linger.ms=0",
                f"request.timeout.ms={CLIENT_TIMEOUT_MS}",
                f"delivery.timeout.ms={CLIENT_TIMEOUT_MS * 2}",
                f"max.block.ms={CLIENT_TIMEOUT_MS}",
            ]
        )
        try:
            runtime = self.cluster.runtime()
            async with Producer(runtime, f"node-{bootstrap}.sim:{PORT}", config) as producer:
                delivery = await producer.send(TOPIC, value_bytes(value), partition=0)
                meta = await delivery.wait()
        except OutcomeUnknown as error:
            return Outcome("unknown", error=_error_name(error))
        except ClientError as error:
            return Outcome("failed", error=_error_name(error))
        return Outcome("ok", offset=meta.offset)

    def fetch(self, offset: int) -> FetchAnswer:
        return self.bridge.call(self._fetch, offset)

    def list_offsets(self, timestamp: int) -> tuple[str, int]:
        return self.bridge.call(self._list_offsets, timestamp)

    async def _request(self, api_key: int, body: dict) -> dict | str:
        leader = self.observe().believed_leader()
        if leader < 0:
            return Errors.NOT_LEADER_OR_FOLLOWER.name
        async with trio.open_nursery() as nursery:
            try:
                connection = await Connection.open(
                    self.cluster.runtime(),
                    nursery,
                    f"node-{leader}.sim",
                    PORT,
                    client_id="stateful",
                    request_timeout_ms=CLIENT_TIMEOUT_MS,
                )
            except ClientError as error:
                return _error_name(error)
            try:
                return await connection.request(api_key, body)
            except ClientError as error:
                return _error_name(error)
            finally:
                await connection.aclose()

    async def _fetch(self, offset: int) -> FetchAnswer:
        body = {
            "replica_id": -1,
            "max_wait_ms": 0,
            "min_bytes": 0,
            "max_bytes": 1 << 20,
            "isolation_level": 0,
            "topics": [
                {
                    "topic": TOPIC,
                    "partitions": [
                        {
                            "partition": 0,
                            "current_leader_epoch": -1,
                            "fetch_offset": offset,
                            "partition_max_bytes": 1 << 20,
                        }
                    ],
                }
            ],
        }
        response = await self._request(FETCH, body)
        if isinstance(response, str):
            return FetchAnswer(response)
        row = response["responses"][0]["partitions"][0]
        code = response.get("error_code", Errors.NONE) or row["error_code"]
        if code != Errors.NONE:
            return FetchAnswer(Errors(code).name)
        hw = row["high_watermark"]
        records = tuple((o, v) for o, _, v in _records(row["records"] or b"") if offset <= o < hw)
        return FetchAnswer("NONE", records, hw, row["log_start_offset"])

    async def _list_offsets(self, timestamp: int) -> tuple[str, int]:
        body = {
            "replica_id": -1,
            "isolation_level": 0,
            "topics": [
                {
                    "name": TOPIC,
                    "partitions": [
                        {"partition_index": 0, "current_leader_epoch": -1, "timestamp": timestamp}
                    ],
                }
            ],
            "timeout_ms": CLIENT_TIMEOUT_MS,
        }
        response = await self._request(LIST_OFFSETS, body)
        if isinstance(response, str):
            return response, -1
        row = response["topics"][0]["partitions"][0]
        if row["error_code"] != Errors.NONE:
            return Errors(row["error_code"]).name, -1
        return "NONE", row["offset"]

    # ---- time and observation --------------------------------------------------------------

    def settle(self) -> Observation:
        self.bridge.call(self._settle)
        return self.observe()

    async def _settle(self) -> None:
        started = trio.current_time()
        last, changed_at = self._fingerprint(), started
        while trio.current_time() - started < SETTLE_MAX_S:
            await trio.sleep(SETTLE_POLL_S)
            now = self._fingerprint()
            if now != last:
                last, changed_at = now, trio.current_time()
            elif trio.current_time() - changed_at >= SETTLE_QUIET_S:
                return

    def _fingerprint(self) -> tuple:
        states = self.cluster.partition_state(TOPIC, 0)
        registration = self._registration()
        return (tuple(sorted(states.items())), registration)

    def _registration(self) -> tuple:
        controller = self.cluster.brokers[CONTROLLER]
        if controller is None or controller.quorum is None:
            return ()
        image = controller.quorum.image
        reg = image.partition(TOPIC, 0)
        fenced = frozenset(b for b in BROKERS if not image.is_unfenced(b))
        if reg is None:
            return ((), fenced)
        return (
            reg.leader,
            reg.leader_epoch,
            tuple(sorted(reg.isr)),
            tuple(sorted(reg.elr)),
            fenced,
        )

    def observe(self) -> Observation:
        registration = self._registration()
        assert len(registration) == 5, f"no registration for {TOPIC}-0: {registration}"
        leader, epoch, isr, elr, fenced = registration
        replicas = {}
        for n in BROKERS:
            broker = self.cluster.brokers[n]
            partition = None if broker is None else broker.logs.partitions.get((TOPIC, 0))
            if partition is None:
                continue
            replicas[n] = Replica(
                partition.high_watermark,
                partition.log.log_end_offset,
                partition.log.log_start_offset,
                partition.leader_id,
                partition.leader_epoch,
                partition.is_leader,
                tuple(record for _, data in partition.log.batches() for record in _records(data)),
            )
        return Observation(leader, epoch, isr, elr, fenced, replicas)


def _records(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, batch leader epoch, value) of every record in whole batches of `data`."""
    out = []
    view = memoryview(data)
    position = 0
    while len(view) - position >= 61:
        header = parse_header(view, position)
        end = position + header.size_bytes
        if end > len(view):
            break
        if not header.is_control:
            for offset, record in decode_records(view[position:end]):
                out.append((offset, header.partition_leader_epoch, int(record.value)))
        position = end
    return out


# ---- invariants on observations --------------------------------------------------------------


def impl_violations(
    history: History,
    observation: Observation,
    *,
    log_matching: bool = True,
    acked_acks: tuple[int, ...] = (-1,),
    completeness: bool = True,
) -> list[str]:
    """Every impl-side invariant the observation breaks (see the module docstring);
    updates the per-epoch HW record in `history`. `acked_acks` lists the acks levels
    whose acknowledged writes must survive; `completeness=False` skips
    LeaderCompleteness (for runs beyond what any setting promises)."""
    found = []
    leaders: dict[int, int] = {}
    for b, replica in sorted(observation.replicas.items()):
        if not replica.is_leader:
            continue
        other = leaders.setdefault(replica.epoch, b)
        if other != b:
            found.append(
                f"OneLeaderPerEpoch: brokers {other} and {b} both lead epoch {replica.epoch}"
            )
        key = (b, replica.epoch)
        before = history.leader_hw.get(key, 0)
        if replica.hw < before:
            found.append(
                f"HighWatermarkMonotonic: leader {b}'s HW went {before} -> {replica.hw} "
                f"in epoch {replica.epoch}"
            )
        history.leader_hw[key] = max(before, replica.hw)
        log = {o: (e, v) for o, e, v in replica.records}
        for ack in history.acked:
            if ack.acks not in acked_acks or replica.epoch < ack.leader_epoch:
                continue
            if log.get(ack.offset, (None, None))[1] != ack.value:
                found.append(
                    f"NoAcknowledgedWriteLost: acked v{ack.value} (offset {ack.offset}, epoch "
                    f"{ack.leader_epoch}, acks={ack.acks}) is missing from leader {b} "
                    f"(epoch {replica.epoch})"
                )
    if completeness:
        found.extend(_leader_completeness(history, observation))
    if observation.leader >= 0 and observation.leader not in observation.isr:
        found.append(f"LeaderInIsr: leader {observation.leader} not in ISR {observation.isr}")
    if log_matching:
        found.extend(_log_matching(observation))
    return found


def _leader_completeness(history: History, observation: Observation) -> list[str]:
    """LeaderCompleteness: a live leader holds every record committed (seen below a
    leader's HW) in its or an earlier epoch; recording what is committed as it goes."""
    found = []
    leaders = [(b, r) for b, r in sorted(observation.replicas.items()) if r.is_leader]
    for b, replica in leaders:
        for offset, _, value in replica.records:
            if offset >= replica.hw:
                break
            seen = history.committed.setdefault(offset, (value, replica.epoch))
            if seen[0] != value and seen[1] <= replica.epoch:
                found.append(
                    f"LeaderCompleteness: offset {offset} was committed as v{seen[0]} "
                    f"(epoch {seen[1]}), leader {b} (epoch {replica.epoch}) committed v{value}"
                )
    for b, replica in leaders:
        log = {o: v for o, _, v in replica.records}
        for offset, (value, epoch) in sorted(history.committed.items()):
            if epoch <= replica.epoch and log.get(offset) != value:
                found.append(
                    f"LeaderCompleteness: leader {b} (epoch {replica.epoch}) lacks committed "
                    f"v{value} at offset {offset}"
                )
                break
    return found


def _log_matching(observation: Observation) -> list[str]:
    items = sorted(observation.replicas.items())
    for i, (a, ra) in enumerate(items):
        for b, rb in items[i + 1 :]:
            limit = min(ra.hw, rb.hw, ra.leo, rb.leo)
            la = {o: (e, v) for o, e, v in ra.records if o < limit}
            lb = {o: (e, v) for o, e, v in rb.records if o < limit}
            for offset in range(limit):
                if la.get(offset) != lb.get(offset):
                    return [
                        f"LogMatching: brokers {a} and {b} differ at offset {offset} below "
                        f"both HWs: {la.get(offset)} vs {lb.get(offset)}"
                    ]
    return []
