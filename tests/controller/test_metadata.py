"""Metadata records: encoding round trip, strict decoding, and `apply` on the image."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from impl.controller.metadata import (
    NO_LEADER,
    CreateTopic,
    FenceBroker,
    MetadataError,
    MetadataImage,
    MetadataRecord,
    PartitionChange,
    PartitionRegistration,
    RegisterBroker,
    UnfenceBroker,
    apply,
    apply_all,
    decode_batch,
    encode_batch,
)

ids = st.integers(min_value=-1, max_value=2**31 - 1)
names = st.text(min_size=0, max_size=12)
brokers = st.lists(st.integers(0, 9), max_size=5).map(tuple)
records = st.one_of(
    st.builds(RegisterBroker, ids, ids, names, st.integers(0, 65_535)),
    st.builds(FenceBroker, ids, ids),
    st.builds(UnfenceBroker, ids, ids),
    st.builds(
        CreateTopic,
        names,
        names,
        st.lists(brokers, max_size=4).map(tuple),
        st.lists(st.tuples(names, names), max_size=3).map(tuple),
    ),
    st.builds(PartitionChange, names, ids, ids, ids, ids, brokers, brokers, ids),
)


@settings(derandomize=True, max_examples=300)
@given(st.lists(records, min_size=1, max_size=6))
def test_batches_round_trip(batch: list) -> None:
    assert decode_batch(encode_batch(batch)) == tuple(batch)


def test_an_empty_entry_is_a_noop_with_no_records() -> None:
    assert decode_batch(b"") == ()


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"[1]", "version"),
        (b'{"v":2,"records":[]}', "version"),
        (b'{"v":1,"records":[]}', "no records"),
        (b'{"v":1,"records":[{"type":"Nope"}]}', "unknown record type"),
        (b'{"v":1,"records":[{"type":"FenceBroker","broker_id":1}]}', "fields"),
        (b'{"v":1,"records":[{"type":"FenceBroker","broker_id":true,"incarnation":1}]}', "int"),
        (
            b'{"v":1,"records":[{"type":"CreateTopic","name":"t","topic_id":"x",'
            b'"assignments":[[1,"2"]],"configs":[]}]}',
            "CreateTopic.assignments",
        ),
        (
            b'{"v":1,"records":[{"type":"CreateTopic","name":"t","topic_id":"x",'
            b'"assignments":[[1]],"configs":[["a"]]}]}',
            "CreateTopic.configs",
        ),
    ],
)
def test_malformed_batches_are_refused_with_a_reason(data: bytes, complaint: str) -> None:
    with pytest.raises(MetadataError, match=complaint):
        decode_batch(data)


def test_the_encoding_is_compact_versioned_json() -> None:
    data = encode_batch([FenceBroker(1, 2)])
    assert json.loads(data) == {
        "v": 1,
        "records": [{"type": "FenceBroker", "broker_id": 1, "incarnation": 2}],
    }
    assert b" " not in data


def image_with_topic() -> MetadataImage:
    return apply_all(
        MetadataImage(),
        [
            RegisterBroker(1, 1, "h1", 9092),
            RegisterBroker(2, 1, "h2", 9092),
            RegisterBroker(3, 1, "h3", 9092),
            UnfenceBroker(1, 1),
            UnfenceBroker(2, 1),
            CreateTopic("orders", "id-1", ((1, 2, 3), (2, 3, 1)), (("retention.ms", "1000"),)),
        ],
    )


def test_apply_builds_brokers_topics_and_partitions() -> None:
    image = image_with_topic()
    assert image.unfenced_brokers() == (1, 2)
    assert image.brokers[3].fenced and image.brokers[3].host == "h3"
    assert image.topics["orders"].configs == (("retention.ms", "1000"),)
    assert image.partition("orders", 1) == PartitionRegistration(
        replicas=(2, 3, 1),
        leader=2,
        leader_epoch=0,
        partition_epoch=0,
        isr=(2, 3, 1),
        elr=(),
        last_known_leader=2,
    )
    assert image.partition("orders", 2) is None and image.partition("other", 0) is None


def test_apply_is_pure() -> None:
    image = image_with_topic()
    snapshot = (dict(image.brokers), dict(image.topics))
    apply(image, FenceBroker(1, 1))
    apply(image, PartitionChange("orders", 0, 2, 1, 1, (2, 3), (), 2))
    assert (dict(image.brokers), dict(image.topics)) == snapshot


def test_a_partition_change_replaces_the_partition_state() -> None:
    image = apply(image_with_topic(), PartitionChange("orders", 0, 2, 1, 1, (2,), (3,), 2))
    partition = image.partition("orders", 0)
    assert partition is not None
    assert (partition.leader, partition.leader_epoch, partition.partition_epoch) == (2, 1, 1)
    assert (partition.isr, partition.elr, partition.replicas) == ((2,), (3,), (1, 2, 3))


@pytest.mark.parametrize(
    ("record", "complaint"),
    [
        (PartitionChange("orders", 0, 1, 0, 2, (1,), (), 1), "partition epoch 2 after 0"),
        (PartitionChange("orders", 0, 2, 0, 1, (2,), (), 2), "leader epoch 0, expected 1"),
        (PartitionChange("orders", 0, 1, 1, 1, (1,), (), 1), "leader epoch 1, expected 0"),
        (PartitionChange("orders", 0, 7, 1, 1, (1,), (), 7), "not a replica"),
        (PartitionChange("orders", 0, 1, 0, 1, (1, 7), (), 1), "outside the replicas"),
        (PartitionChange("orders", 0, 1, 0, 1, (1, 2), (2,), 1), "both ISR and ELR"),
        (PartitionChange("orders", 5, 1, 0, 1, (1,), (), 1), "no such partition"),
        (FenceBroker(9, 1), "no such broker"),
        (UnfenceBroker(1, 2), "no such broker"),
        (RegisterBroker(1, 1, "h", 1), "does not follow"),
        (CreateTopic("orders", "id-2", ((1,),)), "exists"),
        (CreateTopic("empty", "id-2", ()), "no partitions"),
        (CreateTopic("dup", "id-2", ((1, 1),)), "bad replica list"),
    ],
)
def test_records_that_do_not_fit_the_image_are_refused(
    record: MetadataRecord, complaint: str
) -> None:
    with pytest.raises(MetadataError, match=complaint):
        apply(image_with_topic(), record)


def test_an_offline_partition_keeps_its_last_known_leader() -> None:
    image = apply(image_with_topic(), PartitionChange("orders", 0, NO_LEADER, 1, 1, (1,), (), 1))
    partition = image.partition("orders", 0)
    assert partition is not None and (partition.leader, partition.last_known_leader) == (-1, 1)
