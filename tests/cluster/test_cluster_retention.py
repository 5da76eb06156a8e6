"""Retention on the replicated cluster: a follower stalled while the leader's retention
deleted everything it had not copied comes back, finds its fetch offset below the
leader's log start (OFFSET_OUT_OF_RANGE), starts over at the leader's log start
(Kafka's truncateFullyAndStartAt), catches up and rejoins the ISR."""

from __future__ import annotations

import signal
from pathlib import Path

from cluster_support import admin, isr_of, leader_of, produce_while, start_cluster, wait_for
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaTimeoutError

TOPIC = "short"
RETENTION = {"segment.bytes": "1024", "retention.ms": "1500"}


def _log_start(bootstrap: str) -> int | None:
    """The leader's log start, or None when the lookup timed out: until the controller
    fences the SIGSTOPped follower, metadata still lists it, and a request kafka-python
    sends it (it accepts connections, never answers) stalls; `wait_for` asks again."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        tp = TopicPartition(TOPIC, 0)
        return consumer.beginning_offsets([tp])[tp]
    except KafkaTimeoutError:
        return None
    finally:
        consumer.close()


def _segment_bases(data_dir: Path) -> list[int]:
    return sorted(int(p.stem) for p in (data_dir / f"{TOPIC}-0").glob("*.log"))


def test_a_follower_behind_the_leaders_log_start_starts_over_there_and_rejoins(tmp_path):
    cluster = start_cluster(tmp_path, 3, 0, "log.retention.check.interval.ms=200")
    try:
        client = admin(cluster)
        try:
            client.create_topics([NewTopic(TOPIC, 1, 3, topic_configs=RETENTION)])
        finally:
            client.close()
        wait_for(lambda: leader_of(cluster, TOPIC, 0) >= 0, "a leader")
        leader = leader_of(cluster, TOPIC, 0)
        follower = next(n for n in (0, 1, 2) if n != leader)
        stopped = frozenset({follower})
        process = cluster.processes[follower]
        process.signal(signal.SIGSTOP)
        try:
            acked, errors = produce_while(cluster, TOPIC, 2.0, avoid=stopped)
            assert acked and not errors, errors[:3]
            live = ",".join(
                f"{n.host}:{n.port}" for n in cluster.nodes if n.is_broker and n.node_id != follower
            )
            start = wait_for(lambda: _log_start(live), "retention to move the leader's log start")
            assert follower not in isr_of(cluster, TOPIC, 0, stopped)
        finally:
            process.signal(signal.SIGCONT)
        wait_for(lambda: follower in isr_of(cluster, TOPIC, 0), "the follower back in the ISR")
        node = next(n for n in cluster.nodes if n.node_id == follower)
        assert _segment_bases(node.data_dir)[0] >= start, "its log starts at the leader's start"
    finally:
        cluster.stop()
