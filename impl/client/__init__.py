"""The native Kafka client: producer, consumer (manual assignment or a group), admin, CLI.

Every outcome is one of `impl.client.errors`: `OutcomeUnknown` (Jepsen's :info) or
`DefiniteFailure` (:fail). The client reaches the network only through runtime.net,
time only through trio and runtime.clock, randomness only through runtime.rng.
"""

from impl.client.admin import create_topics, wait_for_leaders
from impl.client.consumer import Consumer, ConsumerRecord, OffsetReset
from impl.client.errors import (
    ClientError,
    DefiniteFailure,
    KafkaError,
    OutcomeUnknown,
)
from impl.client.group import CommitFailed, RebalanceEvent
from impl.client.metadata import TopicPartition
from impl.client.producer import Delivery, Producer, RecordMetadata

__all__ = [
    "ClientError",
    "CommitFailed",
    "Consumer",
    "ConsumerRecord",
    "DefiniteFailure",
    "Delivery",
    "KafkaError",
    "OffsetReset",
    "OutcomeUnknown",
    "Producer",
    "RebalanceEvent",
    "RecordMetadata",
    "TopicPartition",
    "create_topics",
    "wait_for_leaders",
]
