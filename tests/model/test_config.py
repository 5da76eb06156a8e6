from pathlib import Path

import pytest

from model.config import KEYS_DOC, KNOWN_KEYS, Config, ConfigError, keys_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_the_production_setup():
    config = Config()
    assert (config.replication_factor, config.min_insync_replicas, config.acks) == (3, 2, -1)
    assert config.unclean_leader_election_enable is False
    assert config.truncation == "leader-epoch" and config.elr and config.fetch_epoch_fencing
    assert config.label() == "defaults"


def test_parses_kafka_spellings():
    config = Config.parse(["acks=all", "unclean.leader.election.enable=TRUE", "replog.elr=false"])
    assert config.acks == -1
    assert config.unclean_leader_election_enable is True
    assert config.elr is False
    assert Config.parse(["acks=1"]).acks == 1
    assert Config.parse(["acks=-1"]).acks == -1


def test_every_key_round_trips_through_pairs():
    pairs = Config.parse(["acks=0", "min.insync.replicas=1"]).to_pairs()
    assert set(pairs) == set(KNOWN_KEYS)
    assert Config.from_pairs(pairs) == Config.parse(["acks=0", "min.insync.replicas=1"])


def test_label_lists_only_differences():
    assert Config.parse(["acks=1", "min.insync.replicas=1"]).label() == (
        "acks=1,min.insync.replicas=1"
    )


@pytest.mark.parametrize(
    ("assignment", "fragment"),
    [
        ("no.such.key=1", "unknown config key 'no.such.key'"),
        ("acks=2", "bad value '2' for acks"),
        ("replog.truncation=raft", "expected one of leader-epoch, kip-101, high-watermark"),
        ("min.insync.replicas=0", "expected an integer >= 1"),
        ("replica.lag.time.max.ms=soon", "bad value 'soon' for replica.lag.time.max.ms"),
        ("acks", "expected KEY=VALUE"),
        (
            "retention.ms=abc",
            "bad value 'abc' for retention.ms: "
            "expected an integer number of milliseconds (-1 for no limit)",
        ),
        ("retention.bytes=-2", "expected an integer number of bytes (-1 for no limit)"),
        (
            "segment.bytes=13",
            "bad value '13' for segment.bytes: expected an integer number of bytes >= 14",
        ),
        ("max.poll.records=1.5", "expected an integer number of records >= 1"),
        ("flush.ms=9223372036854775808", "at most 9223372036854775807"),
        ("replog.elr=maybe", "bad value 'maybe' for replog.elr: expected true or false"),
        ("isolation.level=serializable", "expected one of read_uncommitted, read_committed"),
        ("min.cleanable.dirty.ratio=nan", "expected a number in [0, 1]"),
        ("replog.consumer.crash.percent=x", "expected an integer percentage in [0, 100]"),
        (
            "retention.msx=1",
            "unknown config key 'retention.msx'; did you mean 'retention.ms'? "
            "(every key: docs/config.md)",
        ),
        ("retention_ms=1", "did you mean 'retention.ms'?"),
        ("min.isr=1", "unknown config key 'min.isr' (every key: docs/config.md)"),
    ],
)
def test_bad_input_is_one_clear_line(assignment, fragment):
    with pytest.raises(ConfigError) as raised:
        Config.parse([assignment])
    assert fragment in str(raised.value)
    assert "\n" not in str(raised.value)


def test_impossible_combination_names_both_keys():
    with pytest.raises(
        ConfigError, match=r"min\.insync\.replicas=3 is larger than replication\.factor=2"
    ):
        Config.parse(["replication.factor=2", "min.insync.replicas=3"])


def test_an_unknown_key_never_lists_every_key():
    with pytest.raises(ConfigError) as raised:
        Config.parse(["replication=3"])
    assert str(raised.value).count("'") <= 2 + 2 * 3


def test_values_at_the_bounds_are_accepted():
    config = Config.parse(
        ["retention.ms=-1", "retention.bytes=0", "segment.bytes=14", "flush.ms=9223372036854775807"]
    )
    assert (config.retention_ms, config.retention_bytes, config.segment_bytes) == (-1, 0, 14)
    assert config.flush_ms == 2**63 - 1


def test_the_keys_doc_is_generated_from_the_key_table():
    doc = (ROOT / KEYS_DOC).read_text()
    assert doc == keys_markdown() + "\n", f"regenerate: python -m model.config > {KEYS_DOC}"
    for key in KNOWN_KEYS:
        assert f"| `{key}` |" in doc
