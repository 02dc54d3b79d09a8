"""models.partitioning matches the partitioner Kafka producers use (aiokafka's murmur2)."""

import random

from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from models.partitioning import murmur2, partition_for


def test_murmur2_matches_aiokafka_for_many_keys() -> None:
    rng = random.Random(7)
    keys = [f"acc-{i}".encode() for i in range(5000)]
    keys += [rng.randbytes(rng.randrange(0, 40)) for _ in range(5000)]
    keys += ["компания-😀".encode(), b"\xff" * 7, b""]
    assert [murmur2(k) for k in keys] == [aiokafka_murmur2(k) for k in keys]


@given(st.binary(max_size=64))
def test_murmur2_matches_aiokafka_on_any_bytes(key: bytes) -> None:
    assert murmur2(key) == aiokafka_murmur2(key)


@given(st.text(max_size=40), st.integers(min_value=1, max_value=64))
def test_partition_for_is_kafkas_default_partition(account_id: str, partitions: int) -> None:
    expected = (aiokafka_murmur2(account_id.encode()) & 0x7FFFFFFF) % partitions
    assert partition_for(account_id, partitions) == expected
