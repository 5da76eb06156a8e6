import pytest

from model.config import KNOWN_KEYS, Config, ConfigError


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
