"""Kafka's default partitioner (murmur2), in pure Python: live and replay use this one.

The producer's default partitioner (Java client, librdkafka's ``murmur2_random``,
aiokafka) maps a key to ``(murmur2(key) & 0x7fffffff) % partitions``. The worker
routes validated events and writes account state with it; ``models.replay`` shards
accounts with it, so a replay puts an account in the partition the live worker does.
"""

from __future__ import annotations

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's 32-bit murmur2 (seed 0x9747b28c), as an unsigned int (as aiokafka gives it).

    >>> murmur2(b"21"), murmur2(b"foobar"), murmur2(b"")
    (3321034988, 3504634814, 275646681)
    """
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    tail = length & ~3
    for i in range(0, tail, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for(account_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives the UTF-8 key ``account_id``.

    Internal topics and the state changelog are keyed and partitioned this way, so an
    account's events and its state always live in the same partition number.

    >>> partition_for("a-1", 8) == partition_for("a-1", 8)
    True
    >>> [partition_for(k, 8) for k in ("acc-0", "acc-1", "acc-2")]
    [6, 5, 4]
    """
    return (murmur2(account_id.encode()) & 0x7FFFFFFF) % partitions
