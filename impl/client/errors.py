"""What can go wrong for a client, sorted by what it says about a write.

The Jepsen-style harness must tell an operation that certainly did not happen (`:fail`)
from one whose outcome is unknown (`:info`): calling a write failed when it is in the
log makes a checker report a phantom anomaly, the other way round hides a lost write.
So every client error is exactly one of:

- `OutcomeUnknown` -> `:info`. The request reached (or may have reached) a broker and
  no definite answer came back; the write may be in the log, now or later.
- `DefiniteFailure` -> `:fail`. The write is certainly not in the log: it was never
  sent, or a broker answered with an error that Kafka guarantees leaves no trace.

A record is retried under one identity, so its final error is `OutcomeUnknown` as soon
as any one attempt was ambiguous, whatever later attempts answered (a later
NOT_ENOUGH_REPLICAS does not undo an earlier write that timed out).

| error | class | retried by the producer | meaning |
|---|---|---|---|
| `RequestTimeout` | unknown | yes | no response within request.timeout.ms |
| `ConnectionLost` | unknown | yes | the connection broke after the request was written |
| `NotSent` | definite | yes | no connection, or no time to write: never sent |
| `DeliveryTimeout` | definite | - | delivery.timeout.ms passed; no attempt can have written |
| `BufferExhausted` | definite | - | `send` waited max.block.ms for buffer.memory |
| `RecordTooLarge` | definite | - | larger than max.request.size or batch limits |
| `ProducerClosed` | definite | - | the producer closed before the record was sent |
| `IncompatibleBroker` | definite | no | no common version of a needed API |
| REQUEST_TIMED_OUT (7) | unknown | yes | acks=all: appended, not replicated in time |
| NOT_ENOUGH_REPLICAS_AFTER_APPEND (20) | unknown | yes | appended, then the ISR shrank |
| DUPLICATE_SEQUENCE_NUMBER (46) | unknown | no | the broker says it already has the batch |
| KAFKA_STORAGE_ERROR (56) | unknown | yes | the disk failed during the append |
| UNKNOWN_SERVER_ERROR (-1), codes not listed | unknown | no | no promise either way |
| NOT_LEADER_OR_FOLLOWER (6), acks=all produce | unknown | yes | maybe appended, leader lost |
| NOT_LEADER_OR_FOLLOWER (6), LEADER_NOT_AVAILABLE (5) | definite | yes | refused before append |
| FENCED_LEADER_EPOCH (74), UNKNOWN_LEADER_EPOCH (75) | definite | yes | refused before append |
| NOT_ENOUGH_REPLICAS (19) | definite | yes | acks=all refused up front |
| UNKNOWN_TOPIC_OR_PARTITION (3) | definite | yes, until metadata confirms | no such partition |
| CORRUPT_MESSAGE (2), UNKNOWN_PRODUCER_ID (59) | definite | yes | refused before append |
| OUT_OF_ORDER_SEQUENCE_NUMBER (45) | definite | while an earlier batch is open | sequence gap |
| MESSAGE_TOO_LARGE (10), RECORD_LIST_TOO_LARGE (18) | definite | no | refused |
| INVALID_TOPIC_EXCEPTION (17), INVALID_REQUIRED_ACKS (21) | definite | no | refused |
| INVALID_PRODUCER_EPOCH (47), PRODUCER_FENCED (90) | definite | no | fenced |
| UNSUPPORTED_COMPRESSION_TYPE (76), INVALID_RECORD (87) | definite | no | refused |
| INVALID_TIMESTAMP (32) | definite | no | outside the topic's timestamp window |
| OFFSET_OUT_OF_RANGE (1) and consumer errors | definite | - | reads change nothing |

Broker errors are `KafkaError`s (code, retriable) and also one of the two bases, so
`except OutcomeUnknown` catches a REQUEST_TIMED_OUT answer and a client-side timeout alike.
"""

from __future__ import annotations

from model.errors import Errors


class ClientError(Exception):
    """Base of every error the client raises on purpose."""


class OutcomeUnknown(ClientError):
    """The write may or may not be in the log (Jepsen's `:info`)."""


class DefiniteFailure(ClientError):
    """The write is certainly not in the log (Jepsen's `:fail`)."""


class RequestTimeout(OutcomeUnknown):
    """No response within the request's timeout; the connection is closed."""


class ConnectionLost(OutcomeUnknown):
    """The connection broke while the request was being written or awaited."""


class NotSent(DefiniteFailure):
    """The request was never written: no connection, a broken one, or no time to write."""


class DeliveryTimeout(DefiniteFailure):
    """delivery.timeout.ms passed and no attempt could have written the record."""


class BufferExhausted(DefiniteFailure):
    """`send` waited max.block.ms for room in buffer.memory."""


class RecordTooLarge(DefiniteFailure):
    """The record can never be sent within this producer's size limits."""


class ProducerClosed(DefiniteFailure):
    """The producer was closed (or failed) before this record was sent."""


class IncompatibleBroker(DefiniteFailure):
    """The broker does not speak a version of an API this client needs."""


class NoOffsetForPartition(DefiniteFailure):
    """A consumer position is needed and auto.offset.reset=none forbids choosing one."""


class CorruptRecord(DefiniteFailure):
    """A fetched batch failed its CRC or could not be decoded."""


class OffsetOutOfRange(DefiniteFailure):
    """The broker has no record at the position and auto.offset.reset=none."""

    def __init__(self, message: str, topic: str, partition: int, offset: int) -> None:
        super().__init__(message)
        self.topic = topic
        self.partition = partition
        self.offset = offset


class KafkaError(ClientError):
    """A broker's error code; one of the subclasses below, never raised as itself."""

    def __init__(self, code: int, message: str = "", retriable: bool = False) -> None:
        self.code = code
        self.retriable = retriable
        self.name = code_name(code)
        super().__init__(f"{self.name} ({code}){': ' + message if message else ''}")


class DefiniteKafkaError(KafkaError, DefiniteFailure):
    """A broker refused the request before writing anything."""


class AmbiguousKafkaError(KafkaError, OutcomeUnknown):
    """A broker answered with an error that does not say whether the write happened."""


# code -> (retriable, definite). Codes not listed are neither retriable nor definite.
_CLASSIFICATION: dict[int, tuple[bool, bool]] = {
    Errors.REQUEST_TIMED_OUT: (True, False),
    Errors.NOT_ENOUGH_REPLICAS_AFTER_APPEND: (True, False),
    Errors.DUPLICATE_SEQUENCE_NUMBER: (False, False),
    Errors.KAFKA_STORAGE_ERROR: (True, False),
    Errors.NOT_LEADER_OR_FOLLOWER: (True, True),
    Errors.LEADER_NOT_AVAILABLE: (True, True),
    Errors.FENCED_LEADER_EPOCH: (True, True),
    Errors.UNKNOWN_LEADER_EPOCH: (True, True),
    Errors.NOT_ENOUGH_REPLICAS: (True, True),
    Errors.UNKNOWN_TOPIC_OR_PARTITION: (True, True),
    Errors.CORRUPT_MESSAGE: (True, True),
    Errors.UNKNOWN_PRODUCER_ID: (True, True),
    Errors.OUT_OF_ORDER_SEQUENCE_NUMBER: (False, True),
    Errors.MESSAGE_TOO_LARGE: (False, True),
    Errors.RECORD_LIST_TOO_LARGE: (False, True),
    Errors.INVALID_TOPIC_EXCEPTION: (False, True),
    Errors.INVALID_REQUIRED_ACKS: (False, True),
    Errors.INVALID_PRODUCER_EPOCH: (False, True),
    Errors.PRODUCER_FENCED: (False, True),
    Errors.UNSUPPORTED_COMPRESSION_TYPE: (False, True),
    Errors.INVALID_RECORD: (False, True),
    Errors.INVALID_TIMESTAMP: (False, True),
    Errors.OFFSET_OUT_OF_RANGE: (False, True),
    Errors.UNSUPPORTED_VERSION: (False, True),
    Errors.INVALID_REQUEST: (False, True),
    Errors.TOPIC_ALREADY_EXISTS: (False, True),
    Errors.INVALID_PARTITIONS: (False, True),
    Errors.INVALID_REPLICATION_FACTOR: (False, True),
    Errors.INVALID_REPLICA_ASSIGNMENT: (False, True),
    Errors.INVALID_CONFIG: (False, True),
    Errors.POLICY_VIOLATION: (False, True),
    Errors.NOT_CONTROLLER: (True, True),
}

# Errors after which the client's idea of who leads a partition is stale.
METADATA_ERRORS = frozenset(
    {
        Errors.NOT_LEADER_OR_FOLLOWER,
        Errors.LEADER_NOT_AVAILABLE,
        Errors.FENCED_LEADER_EPOCH,
        Errors.UNKNOWN_LEADER_EPOCH,
        Errors.UNKNOWN_TOPIC_OR_PARTITION,
        Errors.KAFKA_STORAGE_ERROR,
        Errors.NOT_CONTROLLER,
    }
)


def code_name(code: int) -> str:
    try:
        return Errors(code).name
    except ValueError:
        return f"ERROR_{code}"


def is_retriable(code: int) -> bool:
    return _CLASSIFICATION.get(code, (False, False))[0]


def is_definite(code: int) -> bool:
    return _CLASSIFICATION.get(code, (False, False))[1]


def kafka_error(code: int, message: str = "") -> KafkaError:
    """The error for a broker's code, classified by the table in this module's docstring."""
    retriable, definite = _CLASSIFICATION.get(code, (False, False))
    kind = DefiniteKafkaError if definite else AmbiguousKafkaError
    return kind(code, message, retriable)


# Produce errors that Kafka also answers to an acks=all produce that was appended and then
# lost its leader while waiting for the followers (DelayedProduce), so the write may be
# in the log: the client cannot tell this answer from the refusal before the append.
MAYBE_APPENDED_ACKS_ALL = frozenset({Errors.NOT_LEADER_OR_FOLLOWER})


def produce_error(code: int, acks: int, message: str = "") -> KafkaError:
    """A produce partition's error: ambiguous where an acks=all append may have happened."""
    if acks == -1 and code in MAYBE_APPENDED_ACKS_ALL:
        return AmbiguousKafkaError(code, message, is_retriable(code))
    return kafka_error(code, message)


def final_error(error: ClientError, maybe_written: bool) -> ClientError:
    """A record's last error as the caller must see it: ambiguous once any attempt was."""
    if not maybe_written or isinstance(error, OutcomeUnknown):
        return error
    unknown = OutcomeUnknown(f"an earlier attempt may have written the record; last error: {error}")
    unknown.__cause__ = error
    return unknown
