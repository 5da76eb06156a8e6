"""ListGroups (key 16) and DescribeGroups (key 15), Kafka's own, written from Kafka's
ListGroupsRequest/Response.json and DescribeGroupsRequest/Response.json in the schema
language of `schemas.py` (those files are not among the ones tools/gen_protocol.py
generates from). The group coordinator answers them for the groups it coordinates.
"""

from __future__ import annotations

from impl.protocol.schema_types import Field, Message

DESCRIBE_GROUPS_KEY = 15
LIST_GROUPS_KEY = 16

DESCRIBE_GROUPS_REQUEST = Message(
    "DescribeGroupsRequest",
    DESCRIBE_GROUPS_KEY,
    "request",
    "0-6",
    "5+",
    (
        Field("groups", "[]string", "0+"),
        Field("include_authorized_operations", "bool", "3+"),
    ),
)

DESCRIBE_GROUPS_RESPONSE = Message(
    "DescribeGroupsResponse",
    DESCRIBE_GROUPS_KEY,
    "response",
    "0-6",
    "5+",
    (
        Field("throttle_time_ms", "int32", "1+"),
        Field(
            "groups",
            "[]DescribedGroup",
            "0+",
            fields=(
                Field("error_code", "int16", "0+"),
                Field("error_message", "string", "6+", nullable_versions="6+", default=None),
                Field("group_id", "string", "0+"),
                Field("group_state", "string", "0+"),
                Field("protocol_type", "string", "0+"),
                Field("protocol_data", "string", "0+"),
                Field(
                    "members",
                    "[]DescribedGroupMember",
                    "0+",
                    fields=(
                        Field("member_id", "string", "0+"),
                        Field(
                            "group_instance_id",
                            "string",
                            "4+",
                            nullable_versions="4+",
                            default=None,
                        ),
                        Field("client_id", "string", "0+"),
                        Field("client_host", "string", "0+"),
                        Field("member_metadata", "bytes", "0+"),
                        Field("member_assignment", "bytes", "0+"),
                    ),
                ),
                Field("authorized_operations", "int32", "3+", default=-2147483648),
            ),
        ),
    ),
)

LIST_GROUPS_REQUEST = Message(
    "ListGroupsRequest",
    LIST_GROUPS_KEY,
    "request",
    "0-5",
    "3+",
    (
        Field("states_filter", "[]string", "4+"),
        Field("types_filter", "[]string", "5+"),
    ),
)

LIST_GROUPS_RESPONSE = Message(
    "ListGroupsResponse",
    LIST_GROUPS_KEY,
    "response",
    "0-5",
    "3+",
    (
        Field("throttle_time_ms", "int32", "1+"),
        Field("error_code", "int16", "0+"),
        Field(
            "groups",
            "[]ListedGroup",
            "0+",
            fields=(
                Field("group_id", "string", "0+"),
                Field("protocol_type", "string", "0+"),
                Field("group_state", "string", "4+"),
                Field("group_type", "string", "5+"),
            ),
        ),
    ),
)

MESSAGES: tuple[Message, ...] = (
    DESCRIBE_GROUPS_REQUEST,
    DESCRIBE_GROUPS_RESPONSE,
    LIST_GROUPS_REQUEST,
    LIST_GROUPS_RESPONSE,
)

# Every version Kafka defines: nothing in them needs a feature replog lacks.
SUPPORTED: dict[int, tuple[int, int]] = {DESCRIBE_GROUPS_KEY: (0, 6), LIST_GROUPS_KEY: (0, 5)}
