"""DescribeConfigs (key 32), Kafka's own, written from Kafka 4.0's
DescribeConfigsRequest/Response.json in the schema language of `schemas.py` (those files
are not among the ones tools/gen_protocol.py generates from). Kafka 4.0 dropped v0
(KIP-896), so the versions are 1-4; the v0-only IsDefault field stays as Kafka lists it.
Any broker answers topics from its metadata image, and its own broker configs.
"""

from __future__ import annotations

from impl.protocol.schema_types import Field, Message

DESCRIBE_CONFIGS_KEY = 32

DESCRIBE_CONFIGS_REQUEST = Message(
    "DescribeConfigsRequest",
    DESCRIBE_CONFIGS_KEY,
    "request",
    "1-4",
    "4+",
    (
        Field(
            "resources",
            "[]DescribeConfigsResource",
            "0+",
            fields=(
                Field("resource_type", "int8", "0+"),
                Field("resource_name", "string", "0+"),
                Field("configuration_keys", "[]string", "0+", nullable_versions="0+"),
            ),
        ),
        Field("include_synonyms", "bool", "1+", default=False),
        Field("include_documentation", "bool", "3+", default=False),
    ),
)

DESCRIBE_CONFIGS_RESPONSE = Message(
    "DescribeConfigsResponse",
    DESCRIBE_CONFIGS_KEY,
    "response",
    "1-4",
    "4+",
    (
        Field("throttle_time_ms", "int32", "0+"),
        Field(
            "results",
            "[]DescribeConfigsResult",
            "0+",
            fields=(
                Field("error_code", "int16", "0+"),
                Field("error_message", "string", "0+", nullable_versions="0+"),
                Field("resource_type", "int8", "0+"),
                Field("resource_name", "string", "0+"),
                Field(
                    "configs",
                    "[]DescribeConfigsResourceResult",
                    "0+",
                    fields=(
                        Field("name", "string", "0+"),
                        Field("value", "string", "0+", nullable_versions="0+"),
                        Field("read_only", "bool", "0+"),
                        Field("config_source", "int8", "1+", default=-1),
                        Field("is_default", "bool", "0"),
                        Field("is_sensitive", "bool", "0+"),
                        Field(
                            "synonyms",
                            "[]DescribeConfigsSynonym",
                            "1+",
                            fields=(
                                Field("name", "string", "1+"),
                                Field("value", "string", "1+", nullable_versions="0+"),
                                Field("source", "int8", "1+"),
                            ),
                        ),
                        Field("config_type", "int8", "3+", default=0),
                        Field("documentation", "string", "3+", nullable_versions="0+"),
                    ),
                ),
            ),
        ),
    ),
)

MESSAGES: tuple[Message, ...] = (DESCRIBE_CONFIGS_REQUEST, DESCRIBE_CONFIGS_RESPONSE)

# Every version Kafka 4.0 defines: nothing in them needs a feature replog lacks.
SUPPORTED: dict[int, tuple[int, int]] = {DESCRIBE_CONFIGS_KEY: (1, 4)}
