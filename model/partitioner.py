"""Kafka's default partitioner: murmur2 of the key bytes, seed 0x9747b28c."""

from __future__ import annotations

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's `Utils.murmur2`: a signed 32-bit hash, bit-for-bit as the Java client."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    body = length - (length & 3)
    for i in range(0, body, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    tail = length & 3
    if tail == 3:
        h ^= data[body + 2] << 16
    if tail >= 2:
        h ^= data[body + 1] << 8
    if tail >= 1:
        h ^= data[body]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def default_partition(key: bytes | None, num_partitions: int, sticky: int = 0) -> int:
    """Partition for a record: keyed records hash; keyless ones go to `sticky`.

    Kafka's producer spreads keyless records with a sticky partition it switches per
    batch; the caller owns that choice (passing a rotating `sticky`), so this stays pure.
    """
    if num_partitions <= 0:
        raise ValueError(f"num_partitions must be positive, got {num_partitions}")
    if key is None:
        return sticky % num_partitions
    return (murmur2(key) & 0x7FFFFFFF) % num_partitions
