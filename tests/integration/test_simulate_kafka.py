"""Round trip: simulate -> Kafka (KafkaSink) -> KafkaConsumer counts and parses every event."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import pytest

from models.contract import parse_message, topic_kind
from models.simulator import SimConfig, simulate
from streams.simio import HOLD_MS, KafkaSink, Progress, RateLimiter, encode_events, pump

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("batch", [1, 100])
def test_every_simulated_event_arrives_and_parses(
    kafka_bootstrap: str, new_topic: Callable[..., str], batch: int
) -> None:
    from kafka import KafkaConsumer

    topics = {"subscription": new_topic("sim-sub", 3), "usage": new_topic("sim-usage", 3)}
    events = list(simulate(SimConfig(accounts=60, days=10, seed=2)))
    sent = Counter((topic_kind(e["type"]), e["event_id"], e["account_id"]) for e in events)
    sink = KafkaSink(kafka_bootstrap, topics, batch=batch)
    pump(encode_events(events), sink, RateLimiter(None), Progress("simulate", None))
    sink.close()
    if batch == 1:
        assert sink.messages == len(events)

    consumer = KafkaConsumer(
        *topics.values(),
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=1000,
    )
    kind_of = {topic: kind for kind, topic in topics.items()}
    received: Counter[tuple[str, str, str]] = Counter()
    messages = 0
    deadline = time.monotonic() + 60
    while sum(received.values()) < len(events) and time.monotonic() < deadline:
        for msg in consumer:
            messages += 1
            parsed, dead = parse_message(
                msg.value, topic=msg.topic, partition=msg.partition, offset=msg.offset
            )
            assert dead == []
            if batch == 1:
                assert len(parsed) == 1 and msg.key == parsed[0].account_id.encode()
            for ev in parsed:
                received[(kind_of[msg.topic], ev.event_id, ev.account_id)] += 1
            # a batch never holds an event while the stream runs HOLD_MS of event time past
            # it (late-dropped events downstream otherwise: see HOLD_MS)
            assert max(e.ts for e in parsed) - parsed[0].ts < HOLD_MS
    consumer.close()
    assert received == sent  # every event, duplicates included, on its contract topic
    assert messages == sink.messages
    if batch > 1:  # batched (60 accounts hold ~5 events per 10 minutes of event time)
        assert messages < len(events) / 4
