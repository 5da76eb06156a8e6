"""A short fault workload on a SimCluster, recorded as an event log.

Used by the determinism tests: acks=all producers write unique values while a script
crashes a partition leader (power loss), restarts it, cuts another leader off from
the other brokers and heals; a consumer then reads every partition
from the start. Every event is one line with its simulated time, so two runs with the
same seed must produce byte-identical logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from impl.client import Consumer, OutcomeUnknown, Producer, TopicPartition
from impl.client.admin import create_topics, wait_for_leaders
from impl.client.errors import ClientError
from impl.sim.cluster import SimCluster
from model.config import Config

TOPIC = "jepsen"
PARTITIONS = 2
CLIENT_CONFIG = Config.parse(
    ["acks=all", "request.timeout.ms=3000", "delivery.timeout.ms=10000", "linger.ms=1"]
)
BROKER_CONFIG = ("min.insync.replicas=2",)
FAULT_HOLD_S = 3.0
WRITE_INTERVAL_S = 0.2
READ_POLLS_MAX = 200
READ_POLL_MS = 100


@dataclass
class EventLog:
    lines: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.lines.append(f"{trio.current_time():.6f} {text}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


async def _produce(cluster: SimCluster, log: EventLog, writer: int, count: int) -> int:
    done = 0
    async with Producer(cluster.runtime(), cluster.bootstrap, CLIENT_CONFIG) as producer:
        for i in range(count):
            value = f"w{writer}-{i}".encode()
            log.add(f"invoke write {value.decode()}")
            delivery = await producer.send(TOPIC, value, partition=i % PARTITIONS)
            try:
                meta = await delivery.wait()
            except OutcomeUnknown as error:
                log.add(f"info write {value.decode()} {type(error).__name__}")
            except ClientError as error:
                log.add(f"fail write {value.decode()} {type(error).__name__}")
            else:
                done += 1
                log.add(f"ok write {value.decode()} p{meta.partition}@{meta.offset}")
            await trio.sleep(WRITE_INTERVAL_S)
    return done


async def _faults(cluster: SimCluster, log: EventLog) -> None:
    await trio.sleep(FAULT_HOLD_S)
    leaders = await cluster.partition_leaders()
    victim = leaders.get(0, 0)
    log.add(f"nemesis crash {victim} {await cluster.crash(victim)}")
    await trio.sleep(FAULT_HOLD_S)
    log.add(f"nemesis restart {victim} {await cluster.restart(victim)}")
    await trio.sleep(FAULT_HOLD_S)
    leaders = await cluster.partition_leaders()
    lonely = leaders.get(1, 1)
    others = [n for n in cluster.nodes if n != lonely]
    links = {(lonely, n) for n in others} | {(n, lonely) for n in others}
    await cluster.cut(links)
    log.add(f"nemesis isolate {lonely}")
    await trio.sleep(FAULT_HOLD_S)
    await cluster.heal_network()
    log.add("nemesis heal")


async def _read_all(cluster: SimCluster, log: EventLog) -> None:
    tps = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
    async with Consumer(cluster.runtime(), cluster.bootstrap, CLIENT_CONFIG) as consumer:
        consumer.assign(tps)
        consumer.seek_to_beginning(tps)
        ends = await consumer.end_offsets(tps)
        seen: dict[TopicPartition, int] = dict.fromkeys(tps, 0)
        for _ in range(READ_POLLS_MAX):
            if all(seen[tp] >= ends[tp] for tp in tps):
                break
            for record in await consumer.poll(READ_POLL_MS):
                tp = TopicPartition(record.topic, record.partition)
                seen[tp] = record.offset + 1
                log.add(f"read p{record.partition}@{record.offset} {record.value!r}")
    log.add(f"final ends {sorted((tp.partition, e) for tp, e in ends.items())}")


async def run_workload(
    seed: int, writers: int = 2, writes_per_writer: int = 60, brokers: int = 3
) -> EventLog:
    """The whole run inside one trio run (call under impl.sim.guard.run)."""
    log = EventLog()
    async with trio.open_nursery() as nursery:
        cluster = SimCluster(brokers, seed=seed, config=BROKER_CONFIG, topic=TOPIC)
        await cluster.start(nursery)
        await cluster.wait_for_brokers()
        runtime = cluster.runtime()
        await create_topics(runtime, cluster.bootstrap, [(TOPIC, PARTITIONS, 3, {})])
        await wait_for_leaders(runtime, cluster.bootstrap, [TOPIC])
        log.add(f"topic ready, leaders {sorted((await cluster.partition_leaders()).items())}")
        async with trio.open_nursery() as load:
            load.start_soon(_faults, cluster, log)
            for writer in range(writers):
                load.start_soon(_produce, cluster, log, writer, writes_per_writer)
        await _read_all(cluster, log)
        for node in cluster.nodes:
            for p in range(PARTITIONS):
                state = cluster.partition_state(TOPIC, p).get(node)
                log.add(f"state n{node} p{p} {state}")
        await cluster.stop()
        nursery.cancel_scope.cancel()
    return log
