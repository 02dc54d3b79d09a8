"""Ingest agent: raw input messages -> validated events, repartitioned by account.

Reads both input topics as raw bytes, in buffers of up to
``CHURNWATCH_INGEST_BATCH_MAX`` messages. Bad input becomes dead-letter records
(never an exception); valid events are grouped by the partition their
``account_id`` hashes to and sent as one JSON array per partition to the internal
account-events topic, so results never depend on the producer's key or batching,
and Faust's per-message cost is paid per batch, not per event.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import orjson

from models.contract import Event, encode_batch, parse_message
from streams.app import Runtime, partition_for

log = logging.getLogger(__name__)


def route(events: list[Event], partitions: int) -> dict[int, list[Event]]:
    """Group events by the partition of their account (order kept within a partition)."""
    routed: dict[int, list[Event]] = defaultdict(list)
    for event in events:
        routed[partition_for(event.account_id, partitions)].append(event)
    return routed


def register(rt: Runtime) -> None:
    s, m = rt.settings, rt.metrics
    dead_letter, account_events = rt.topics["dead_letter"], rt.topics["account_events"]

    async def ingest(stream):  # type: ignore[no-untyped-def]
        async for batch in stream.take_events(s.ingest_batch_max, within=s.ingest_batch_within_s):
            valid: list[Event] = []
            for ev in batch:
                msg = ev.message
                m.messages_consumed.labels(msg.topic).inc()
                events, dead = parse_message(
                    msg.value or b"",
                    topic=msg.topic,
                    partition=msg.partition,
                    offset=msg.offset,
                    max_bytes=s.max_message_bytes,
                )
                for bad in dead:
                    m.dead_letters.labels(bad.kind).inc()
                    await dead_letter.send(value=orjson.dumps(bad.to_record()))
                for event in events:
                    m.events_consumed.labels(msg.topic, event.type).inc()
                valid.extend(events)
            for partition, events in route(valid, s.partitions).items():
                await account_events.send(
                    key=str(partition).encode(), value=encode_batch(events), partition=partition
                )

    rt.app.agent(rt.topics["input"], name="churnwatch.ingest")(ingest)
