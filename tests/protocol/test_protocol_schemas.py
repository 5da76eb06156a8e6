"""schemas.py is what tools/gen_protocol.py makes of Kafka's JSON, and covers what it must."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from impl.protocol import API_KEYS, SUPPORTED, config_apis, group_apis, internal
from impl.protocol import schemas as schemas_module
from impl.protocol.messages import REQUESTS, RESPONSES
from impl.protocol.schema_types import parse_versions

REPO = Path(__file__).resolve().parents[2]
KAFKA_JSON = REPO.parent / "shared" / "kafka-protocol"
GENERATOR = REPO / "tools" / "gen_protocol.py"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_protocol", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not KAFKA_JSON.is_dir(), reason="Kafka's JSON schemas are not checked out")
def test_schemas_py_is_the_generator_output() -> None:
    generator = _generator()
    expected = generator.render_module(generator.load_all(KAFKA_JSON))
    assert Path(schemas_module.__file__).read_text() == expected, (
        "regenerate: python tools/gen_protocol.py ../shared/kafka-protocol"
    )


@pytest.mark.parametrize(
    ("kafka", "ours"),
    [
        ("PartitionIndex", "partition_index"),
        ("ErrorCode", "error_code"),
        ("Topics", "topics"),
        ("timeoutMs", "timeout_ms"),
        ("IsrNodes", "isr_nodes"),
        ("ZkMigrationReady", "zk_migration_ready"),
        ("GenerationIdOrMemberEpoch", "generation_id_or_member_epoch"),
    ],
)
def test_field_names_are_kafkas_in_snake_case(kafka: str, ours: str) -> None:
    assert _generator().snake_case(kafka) == ours


def test_every_api_has_both_halves_and_a_supported_range_inside_kafkas() -> None:
    assert set(REQUESTS) == set(RESPONSES) == set(API_KEYS.values()) == set(SUPPORTED)
    extra = len(group_apis.SUPPORTED) + len(config_apis.SUPPORTED) + len(internal.SUPPORTED)
    assert len(API_KEYS) == 14 + extra
    assert API_KEYS["Produce"] == 0 and API_KEYS["ApiVersions"] == 18
    assert API_KEYS["OffsetForLeaderEpoch"] == 23 and API_KEYS["RaftMessage"] == 1000
    for key, (low, high) in SUPPORTED.items():
        valid_low, valid_high = parse_versions(REQUESTS[key].valid_versions)
        assert valid_low <= low <= high <= valid_high
