import pytest

from model.partitioner import default_partition, murmur2


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_kafka_vectors(key, expected):
    assert murmur2(key) == expected


def test_keyed_records_follow_the_hash():
    assert default_partition(b"21", 7) == (-973932308 & 0x7FFFFFFF) % 7
    assert default_partition(b"abc", 3) == 479470107 % 3


def test_keyless_records_use_the_callers_sticky_partition():
    assert [default_partition(None, 3, sticky=s) for s in range(4)] == [0, 1, 2, 0]


def test_partition_count_must_be_positive():
    with pytest.raises(ValueError, match="num_partitions"):
        default_partition(b"k", 0)
