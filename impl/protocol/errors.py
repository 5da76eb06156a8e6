"""What can go wrong on the wire: the codec's exceptions and Kafka's error codes.

Kafka's codes live in `model.errors.Errors` (shared with the model and the harness); they
are re-exported here so broker code takes everything about the wire from one package.

Every decoder in this package raises `ProtocolError` (or a subclass) and nothing else.
What a broker does with each, following Kafka:
- `FrameTooLargeError`: close the connection (the rest of the stream cannot be framed);
- `UnknownApiError`: close the connection;
- `UnsupportedVersionError`: for ApiVersions, answer a v0 response with `UNSUPPORTED_VERSION`
  and the supported ranges (KIP-511); for any other API, close the connection;
- `InvalidRequestError`: for ApiVersions, answer `INVALID_REQUEST`; otherwise close;
- any other `ProtocolError`: close the connection (there is no correlation id to answer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from model.errors import Errors

if TYPE_CHECKING:
    from impl.protocol.messages import RequestHeader

__all__ = [
    "TRANSACTIONS_REFUSED",
    "Errors",
    "FrameTooLargeError",
    "InvalidRequestError",
    "ProtocolError",
    "UnknownApiError",
    "UnsupportedVersionError",
]


# replog has no transaction coordinator (yet). Kafka answers TRANSACTIONAL_ID_AUTHORIZATION_FAILED
# when a transactional.id may not be used (FindCoordinator for key type 1, InitProducerId,
# Produce with a transactional.id or transactional batches), and stock clients take it as
# fatal: librdkafka's init_transactions() raises a fatal error, the Java and kafka-python
# TransactionManagers fail with their transactional-id authorization error. A retriable code
# such as COORDINATOR_NOT_AVAILABLE had them retry until their timeout; UNSUPPORTED_VERSION
# speaks of an API version, not of a key type of an API replog serves. The transactional APIs
# themselves (AddPartitionsToTxn, EndTxn, TxnOffsetCommit...) are not in ApiVersions, so no
# client that read it sends them; one that does is closed on (`UnknownApiError` above).
TRANSACTIONS_REFUSED = Errors.TRANSACTIONAL_ID_AUTHORIZATION_FAILED


class ProtocolError(ValueError):
    """Bytes that are not a Kafka frame or message we accept; the message says what and where."""


class FrameTooLargeError(ProtocolError):
    """A size prefix above the frame limit, or negative."""


class _HeaderParsedError(ProtocolError):
    def __init__(self, message: str, api_key: int, api_version: int, correlation_id: int) -> None:
        super().__init__(message)
        self.api_key = api_key
        self.api_version = api_version
        self.correlation_id = correlation_id


class UnknownApiError(_HeaderParsedError):
    """An API key replog does not serve; the header's first fields parsed fine."""


class UnsupportedVersionError(_HeaderParsedError):
    """A known API at a version outside `SUPPORTED`; the header's first fields parsed fine."""


class InvalidRequestError(ProtocolError):
    """The request header parsed fine, the body did not: `header` says whom to answer."""

    def __init__(self, message: str, header: RequestHeader) -> None:
        super().__init__(message)
        self.header = header
