"""A blocking, bounded Kafka-protocol caller over one loopback socket, for tests."""

from __future__ import annotations

import socket
import struct
from typing import Any

from impl.protocol import API_KEYS, decode_response, encode_request

TIMEOUT_S = 10.0
# A single broker holds every replica, so acks=all can only succeed with min.isr=1.
SINGLE_BROKER_CONFIG = ["min.insync.replicas=1"]


class Wire:
    def __init__(self, bootstrap: str) -> None:
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=TIMEOUT_S)
        self.correlation_id = 0

    def close(self) -> None:
        self.sock.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def receive_frame(self) -> bytes | None:
        """One response frame, or None when the broker closed the connection."""
        prefix = self._exactly(4)
        if prefix is None:
            return None
        (size,) = struct.unpack(">i", prefix)
        return self._exactly(size)

    def _exactly(self, size: int) -> bytes | None:
        chunks = b""
        while len(chunks) < size:
            chunk = self.sock.recv(size - len(chunks))
            if not chunk:
                return None
            chunks += chunk
        return chunks

    def call(self, api: str, version: int, body: dict[str, Any]) -> dict[str, Any]:
        self.correlation_id += 1
        self.send_raw(encode_request(API_KEYS[api], version, self.correlation_id, "test", body))
        frame = self.receive_frame()
        assert frame is not None, f"broker closed the connection instead of answering {api}"
        correlation_id, response = decode_response(API_KEYS[api], version, frame)
        assert correlation_id == self.correlation_id
        return response

    def closed_by_peer(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
