"""A producer may compress its batches with any of Kafka's codecs. The worker reads
input through aiokafka and the tools read topics through kafka-python; without the
codec's library, aiokafka raises ``UnsupportedCodecError`` in Faust's fetcher and the
worker stops (and stops again after every restart, at the same batch). churnwatch
installs them (``aiokafka[lz4,snappy,zstd]``, ``kafka-python[lz4,snappy,zstd]``):
each client decodes what the other encodes.
"""

from __future__ import annotations

import pytest
from aiokafka import codec as aiokafka_codec
from kafka import codec as kafka_codec

PAYLOAD = b'[{"event_id": "e1", "type": "login", "account_id": "acct-1"}]' * 40


@pytest.mark.parametrize("name", ["gzip", "snappy", "lz4", "zstd"])
def test_both_kafka_clients_read_what_the_other_compresses(name: str) -> None:
    for writer, reader in ((kafka_codec, aiokafka_codec), (aiokafka_codec, kafka_codec)):
        assert getattr(reader, f"has_{name}")()
        packed = getattr(writer, f"{name}_encode")(PAYLOAD)
        assert len(packed) < len(PAYLOAD) // 4
        assert getattr(reader, f"{name}_decode")(packed) == PAYLOAD
