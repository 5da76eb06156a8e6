"""The replicated cluster under process faults: real broker processes on loopback,
kill -9, SIGSTOP, controller failover, and both quorum layouts. Every acknowledged
acks=all write must be read back exactly once, in order per partition."""

from __future__ import annotations

import signal
import time

import confluent_kafka
from cluster_support import (
    active_controller,
    create_topic,
    isr_of,
    leader_of,
    live_brokers,
    produce_while,
    read_all,
    start_cluster,
    wait_for,
)

from impl.client.errors import DefiniteFailure

PRODUCE_S = 4.0


def check_exactly_once_in_order(values: list[bytes], acked: list[int]) -> None:
    numbers = [int(v) for v in values]
    assert len(numbers) == len(set(numbers)), "a value was written twice"
    assert numbers == sorted(numbers), "values out of send order"
    missing = set(acked) - set(numbers)
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {sorted(missing)[:5]}"


def test_kill_the_leader_loses_no_acknowledged_write_and_it_rejoins(tmp_path):
    cluster = start_cluster(tmp_path)
    try:
        create_topic(cluster, "orders")
        leader = leader_of(cluster, "orders", 0)
        acked, errors = produce_while(
            cluster, "orders", PRODUCE_S, during=lambda: cluster.kill(leader)
        )
        assert len(acked) > 100 and not errors, errors[:3]
        assert wait_for(lambda: leader_of(cluster, "orders", 0) not in (-1, leader), "a new leader")
        check_exactly_once_in_order(read_all(cluster, "orders", 1)[0], acked)
        cluster.restart(leader)
        wait_for(
            lambda: leader in isr_of(cluster, "orders", 0),
            "the restarted broker back in the ISR",
        )
    finally:
        cluster.stop()


def test_stalled_follower_leaves_the_isr_and_rejoins_after_sigcont(tmp_path):
    cluster = start_cluster(tmp_path)
    try:
        create_topic(cluster, "stall")
        leader = leader_of(cluster, "stall", 0)
        follower = next(n for n in (0, 1, 2) if n != leader)
        process = cluster.processes[follower]
        process.signal(signal.SIGSTOP)
        stopped = frozenset({follower})
        try:
            acked, _ = produce_while(cluster, "stall", 1.0, avoid=stopped)
            wait_for(
                lambda: follower not in isr_of(cluster, "stall", 0, stopped),
                "the stalled follower to leave the ISR",
            )
        finally:
            process.signal(signal.SIGCONT)
        wait_for(
            lambda: follower in isr_of(cluster, "stall", 0),
            "the follower to rejoin the ISR",
        )
        check_exactly_once_in_order(read_all(cluster, "stall", 1)[0], acked)
    finally:
        cluster.stop()


def test_killing_the_controller_leader_elects_another_and_leadership_keeps_working(tmp_path):
    cluster = start_cluster(tmp_path)
    try:
        create_topic(cluster, "before")
        controller = active_controller(cluster)
        cluster.kill(controller)
        active_controller(cluster, other_than=controller)
        dead = frozenset({controller})
        wait_for(
            lambda: sorted(live_brokers(cluster, dead)) == sorted({0, 1, 2} - dead),
            "the dead broker fenced",
        )
        create_topic(cluster, "after", replication=2, avoid=dead)
        acked, errors = produce_while(cluster, "after", 1.5, avoid=dead)
        assert acked and not errors
        wait_for(
            lambda: leader_of(cluster, "before", 0, dead) not in (-1, controller),
            "every partition led by a live broker",
        )
    finally:
        cluster.stop()


def test_dedicated_quorum_two_broker_kills_refuse_writes_and_lose_nothing(tmp_path):
    cluster = start_cluster(tmp_path, 3, 3)
    try:
        create_topic(cluster, "survive")
        acked, errors = produce_while(cluster, "survive", 1.0)
        assert acked and not errors
        leader = leader_of(cluster, "survive", 0)
        victims = [b for b in (0, 1, 2) if b != leader]
        for victim in victims:
            cluster.kill(victim)
        wait_for(
            lambda: isr_of(cluster, "survive", 0) == [leader],
            "the ISR to shrink to the leader",
        )
        refused, refusals = produce_while(cluster, "survive", 1.0, first=100_000)
        assert not refused, "acks=all must not succeed with one in-sync replica"
        # The client retries NOT_ENOUGH_REPLICAS until delivery.timeout.ms, then reports
        # it as the last error of a definite failure: nothing was written.
        assert refusals and all(isinstance(e, DefiniteFailure) for e in refusals)
        assert all("NOT_ENOUGH_REPLICAS" in str(e) for e in refusals), refusals[:3]
        for victim in victims:
            cluster.restart(victim)
        wait_for(
            lambda: len(isr_of(cluster, "survive", 0)) == 3,
            "both brokers back in the ISR",
        )
        healed, errors = produce_while(cluster, "survive", 1.0, first=200_000)
        assert healed and not errors
        check_exactly_once_in_order(read_all(cluster, "survive", 1)[0], acked + healed)
    finally:
        cluster.stop()


def test_combined_mode_losing_the_quorum_majority_stops_writes_but_loses_nothing(tmp_path):
    cluster = start_cluster(tmp_path)
    try:
        create_topic(cluster, "majority")
        acked, _ = produce_while(cluster, "majority", 1.0)
        leader = leader_of(cluster, "majority", 0)
        victims = [b for b in (0, 1, 2) if b != leader]
        for victim in victims:
            cluster.kill(victim)
        stalled, _ = produce_while(cluster, "majority", 3.0, first=100_000)
        for victim in victims:
            cluster.restart(victim)
        wait_for(
            lambda: len(isr_of(cluster, "majority", 0)) == 3,
            "the cluster to heal",
        )
        check_exactly_once_in_order(read_all(cluster, "majority", 1)[0], acked + stalled)
    finally:
        cluster.stop()


def test_confluent_kafka_producer_and_consumer_across_a_leader_kill(tmp_path):
    cluster = start_cluster(tmp_path)
    try:
        create_topic(cluster, "rdkafka", partitions=3)
        delivered: list[int] = []
        producer = confluent_kafka.Producer(
            {
                "bootstrap.servers": cluster.bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "partitioner": "murmur2_random",
            }
        )

        def on_delivery(error, message) -> None:
            if error is None:
                delivered.append(int(message.value()))

        victim = leader_of(cluster, "rdkafka", 0)
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < PRODUCE_S:
            producer.produce(
                "rdkafka", key=b"%d" % (n % 30), value=b"%d" % n, on_delivery=on_delivery
            )
            producer.poll(0)
            n += 1
            if n == 500:
                cluster.kill(victim)
            time.sleep(0.003)
        assert producer.flush(60) == 0
        consumer = confluent_kafka.Consumer(
            {
                "bootstrap.servers": cluster.bootstrap,
                "group.id": "check",
                "enable.auto.commit": False,
            }
        )
        consumer.assign([confluent_kafka.TopicPartition("rdkafka", p, 0) for p in range(3)])
        seen: list[int] = []
        deadline = time.monotonic() + 30
        while len(seen) < len(delivered) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                seen.append(int(message.value()))
        consumer.close()
        assert len(delivered) > 300
        assert len(seen) == len(set(seen)), "duplicates"
        assert set(delivered) <= set(seen), "acknowledged records lost"
    finally:
        cluster.stop()
