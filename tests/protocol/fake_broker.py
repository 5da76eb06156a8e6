"""A single-node, in-memory stand-in for a Kafka broker, built only on impl.protocol.

It exists to put stock clients (kafka-python, confluent-kafka/librdkafka) in front of the
codec: it answers just enough of every supported API for a producer (idempotent or not)
and a group consumer to work, and records the (api_key, api_version) of every request.
Response bodies are written as supersets of all versions' fields: the codec drops what a
version does not have, which is what lets one handler serve every version.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import trio

from impl.protocol import (
    API_KEYS,
    DEFAULT_MAX_FRAME_BYTES,
    Errors,
    ProtocolError,
    Request,
    RequestHeader,
    UnsupportedVersionError,
    api_versions_body,
    decode_request,
    encode_response,
    receive_frame,
)
from impl.storage.batch import iter_batches, with_base_offset_and_epoch

NODE_ID = 0
PRODUCER_ID = 4242
EMPTY_WAIT_SECONDS = 0.02
API_NAMES = {key: name for name, key in API_KEYS.items()}


@dataclass
class FakeBroker:
    host: str = "127.0.0.1"
    port: int = 0
    partitions_per_topic: int = 1
    requests: list[tuple[int, int]] = field(default_factory=list)
    logs: dict[tuple[str, int], list[bytes]] = field(default_factory=dict)
    group_assignment: dict[str, bytes] = field(default_factory=dict)
    committed: dict[tuple[str, int], int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def versions_used(self) -> dict[str, set[int]]:
        used: dict[str, set[int]] = {}
        for key, version in self.requests:
            used.setdefault(API_NAMES[key], set()).add(version)
        return used

    # ---- topics and logs -------------------------------------------------------------

    def create_topic(self, name: str, partitions: int | None = None) -> None:
        for index in range(partitions or self.partitions_per_topic):
            self.logs.setdefault((name, index), [])

    def topics(self) -> list[str]:
        return sorted({topic for topic, _ in self.logs})

    def end_offset(self, topic: str, partition: int) -> int:
        batches = self.logs[(topic, partition)]
        if not batches:
            return 0
        _, header = next(iter_batches(batches[-1]))
        return header.next_offset

    def append(self, topic: str, partition: int, records: bytes) -> int:
        base = self.end_offset(topic, partition)
        next_offset = base
        for position, header in iter_batches(records):
            batch = bytes(records[position : position + header.size_bytes])
            self.logs[(topic, partition)].append(with_base_offset_and_epoch(batch, next_offset, 0))
            next_offset += header.last_offset_delta + 1
        return base

    def read(self, topic: str, partition: int, offset: int) -> bytes:
        kept = []
        for batch in self.logs[(topic, partition)]:
            _, header = next(iter_batches(batch))
            if header.next_offset > offset:
                kept.append(batch)
        return b"".join(kept)

    # ---- serving ---------------------------------------------------------------------

    async def serve(self, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, stream: trio.SocketStream) -> None:
        async with stream:
            while True:
                try:
                    frame = await receive_frame(stream, DEFAULT_MAX_FRAME_BYTES)
                except (ProtocolError, trio.BrokenResourceError):
                    return
                if frame is None:
                    return
                response = await self._respond(frame)
                if response is None:
                    return
                try:
                    await stream.send_all(response)
                except trio.BrokenResourceError:
                    return

    async def _respond(self, frame: bytes) -> bytes | None:
        try:
            request = decode_request(frame)
        except UnsupportedVersionError as error:
            self.errors.append(str(error))
            if error.api_key != API_KEYS["ApiVersions"]:
                return None
            header = RequestHeader(error.api_key, error.api_version, error.correlation_id, None)
            return encode_response(header, api_versions_body(Errors.UNSUPPORTED_VERSION))
        except ProtocolError as error:
            self.errors.append(str(error))
            return None
        self.requests.append((request.header.api_key, request.header.api_version))
        if request.header.api_key == API_KEYS["Produce"] and request.body["acks"] == 0:
            self._on_Produce(request)
            return b""
        result = getattr(self, f"_on_{API_NAMES[request.header.api_key]}")(request)
        body = await result if inspect.isawaitable(result) else result
        return encode_response(request.header, body)

    # ---- handlers (one per API; bodies are supersets of every version's fields) -----

    def _on_ApiVersions(self, request: Request) -> dict[str, Any]:
        return api_versions_body()

    def _broker(self) -> dict[str, Any]:
        return {"node_id": NODE_ID, "host": self.host, "port": self.port, "rack": None}

    def _topic_metadata(self, name: str) -> dict[str, Any]:
        partitions = sorted(index for topic, index in self.logs if topic == name)
        return {
            "error_code": 0,
            "name": name,
            "partitions": [
                {
                    "partition_index": index,
                    "leader_id": NODE_ID,
                    "leader_epoch": 0,
                    "replica_nodes": [NODE_ID],
                    "isr_nodes": [NODE_ID],
                }
                for index in partitions
            ],
        }

    def _on_Metadata(self, request: Request) -> dict[str, Any]:
        requested = request.body["topics"]
        if requested is None or (request.header.api_version == 0 and not requested):
            names = self.topics()
        else:
            names = [topic["name"] for topic in requested]
        for name in names:
            self.create_topic(name)
        return {
            "brokers": [self._broker()],
            "cluster_id": "replog-fake",
            "controller_id": NODE_ID,
            "topics": [self._topic_metadata(name) for name in names],
        }

    def _on_CreateTopics(self, request: Request) -> dict[str, Any]:
        results = []
        for topic in request.body["topics"]:
            exists = any(name == topic["name"] for name, _ in self.logs)
            self.create_topic(topic["name"], max(1, topic["num_partitions"]))
            code = Errors.TOPIC_ALREADY_EXISTS if exists else Errors.NONE
            results.append({"name": topic["name"], "error_code": code, "error_message": None})
        return {"topics": results}

    def _on_InitProducerId(self, request: Request) -> dict[str, Any]:
        return {"error_code": 0, "producer_id": PRODUCER_ID, "producer_epoch": 0}

    def _on_Produce(self, request: Request) -> dict[str, Any]:
        responses = []
        for topic in request.body["topic_data"]:
            partitions = []
            for data in topic["partition_data"]:
                base = self.append(topic["name"], data["index"], data["records"])
                partitions.append({"index": data["index"], "error_code": 0, "base_offset": base})
            responses.append({"name": topic["name"], "partition_responses": partitions})
        return {"responses": responses}

    def _fetch_partitions(self, topic: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for part in topic["partitions"]:
            key = (topic["topic"], part["partition"])
            out.append(
                {
                    "partition_index": part["partition"],
                    "error_code": 0,
                    "high_watermark": self.end_offset(*key),
                    "last_stable_offset": self.end_offset(*key),
                    "log_start_offset": 0,
                    "aborted_transactions": None,
                    "records": self.read(*key, part["fetch_offset"]),
                }
            )
        return out

    async def _on_Fetch(self, request: Request) -> dict[str, Any]:
        responses = [
            {"topic": topic["topic"], "partitions": self._fetch_partitions(topic)}
            for topic in request.body["topics"]
        ]
        if not any(p["records"] for r in responses for p in r["partitions"]):
            await trio.sleep(min(request.body["max_wait_ms"] / 1000, EMPTY_WAIT_SECONDS))
        return {"error_code": 0, "session_id": 0, "responses": responses}

    def _on_ListOffsets(self, request: Request) -> dict[str, Any]:
        topics = []
        for topic in request.body["topics"]:
            partitions = []
            for part in topic["partitions"]:
                end = self.end_offset(topic["name"], part["partition_index"])
                offset = 0 if part["timestamp"] == -2 else end
                partitions.append(
                    {
                        "partition_index": part["partition_index"],
                        "error_code": 0,
                        "old_style_offsets": [offset],
                        "timestamp": -1,
                        "offset": offset,
                        "leader_epoch": 0,
                    }
                )
            topics.append({"name": topic["name"], "partitions": partitions})
        return {"topics": topics}

    def _on_FindCoordinator(self, request: Request) -> dict[str, Any]:
        keys = request.body.get("coordinator_keys") or [request.body.get("key", "")]
        node = {"node_id": NODE_ID, "host": self.host, "port": self.port}
        return {
            "error_code": 0,
            "error_message": None,
            **node,
            "coordinators": [{"key": key, **node, "error_code": 0} for key in keys],
        }

    def _on_JoinGroup(self, request: Request) -> dict[str, Any]:
        member_id = request.body["member_id"] or "member-1"
        protocol = request.body["protocols"][0]
        return {
            "error_code": 0,
            "generation_id": 1,
            "protocol_type": request.body["protocol_type"],
            "protocol_name": protocol["name"],
            "leader": member_id,
            "member_id": member_id,
            "members": [{"member_id": member_id, "metadata": protocol["metadata"]}],
        }

    def _on_SyncGroup(self, request: Request) -> dict[str, Any]:
        for assignment in request.body["assignments"]:
            self.group_assignment[assignment["member_id"]] = assignment["assignment"]
        return {
            "error_code": 0,
            "protocol_type": request.body.get("protocol_type"),
            "protocol_name": request.body.get("protocol_name"),
            "assignment": self.group_assignment.get(request.body["member_id"], b""),
        }

    def _on_Heartbeat(self, request: Request) -> dict[str, Any]:
        return {"error_code": 0}

    def _on_LeaveGroup(self, request: Request) -> dict[str, Any]:
        members = request.body.get("members", [])
        return {
            "error_code": 0,
            "members": [
                {"member_id": m["member_id"], "group_instance_id": m["group_instance_id"]}
                for m in members
            ],
        }

    def _on_OffsetCommit(self, request: Request) -> dict[str, Any]:
        topics = []
        for topic in request.body["topics"]:
            for part in topic["partitions"]:
                self.committed[(topic["name"], part["partition_index"])] = part["committed_offset"]
            partitions = [
                {"partition_index": p["partition_index"], "error_code": 0}
                for p in topic["partitions"]
            ]
            topics.append({"name": topic["name"], "partitions": partitions})
        return {"topics": topics}

    def _offsets(self, topics: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        wanted = topics or [
            {"name": name, "partition_indexes": [p for t, p in self.committed if t == name]}
            for name in sorted({t for t, _ in self.committed})
        ]
        return [
            {
                "name": topic["name"],
                "partitions": [
                    {
                        "partition_index": index,
                        "committed_offset": self.committed.get((topic["name"], index), -1),
                        "committed_leader_epoch": -1,
                        "metadata": "",
                        "error_code": 0,
                    }
                    for index in topic["partition_indexes"]
                ],
            }
            for topic in wanted
        ]

    def _on_OffsetFetch(self, request: Request) -> dict[str, Any]:
        groups = request.body.get("groups", [])
        return {
            "error_code": 0,
            "topics": self._offsets(request.body.get("topics")),
            "groups": [
                {"group_id": g["group_id"], "topics": self._offsets(g["topics"]), "error_code": 0}
                for g in groups
            ],
        }
