"""The worker's Faust app: what it keeps per message, and how it reads its topics."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import faust
import pytest
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP, Message

from streams.app import QuietMonitor, RawSchema, create_app
from streams.settings import Settings


@pytest.fixture(scope="module")
def app() -> Any:
    return create_app(Settings(kafka_bootstrap_servers="127.0.0.1:9"))  # never started


def test_the_monitor_keeps_only_when_each_stream_last_took_an_event(app: Any) -> None:
    monitor, tp = app.monitor, TP("input", 3)
    assert isinstance(monitor, QuietMonitor)
    message = Message("input", 3, 7, 0.0, 0, {}, None, b"v", None)
    monitor.on_message_in(tp, 7, message)
    state = monitor.on_stream_event_in(tp, 7, object(), object())
    monitor.on_stream_event_out(tp, 7, object(), object(), state)
    monitor.on_message_out(tp, 7, message)
    assert (monitor.messages_received_total, monitor.events_total, monitor.events_active) == (
        0,
        0,
        0,
    )
    assert message.time_in is None and not monitor.events_runtime
    assert tp in monitor.stream_inbound_time  # what Faust's stall check reads


def test_faust_still_reads_when_a_stream_last_took_an_event() -> None:
    """Why QuietMonitor keeps ``stream_inbound_time``: when this fails, Faust's check
    for a stream that stopped processing reads something else, and the monitor may
    have to keep that instead."""
    assert "monitor.stream_inbound_time.get(tp)" in inspect.getsource(AIOKafkaConsumerThread)


@pytest.mark.parametrize(("key", "value"), [(b"a-1", b'{"x": 1}'), (None, b"[]"), (b"k", None)])
def test_the_raw_schema_decodes_as_fausts_raw_serializer_does(
    app: Any, key: bytes | None, value: bytes | None
) -> None:
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw"}
    ours = RawSchema(**raw, value_serializer="raw", allow_empty=True)
    fausts = faust.Schema(**raw, value_serializer="raw", allow_empty=True)
    message = Message("input", 0, 1, 0.0, 0, {}, key, value, None)

    async def decode(schema: faust.Schema) -> tuple[Any, Any]:
        event = await schema.compile(app)(message)
        return event.key, event.value

    assert asyncio.run(decode(ours)) == asyncio.run(decode(fausts)) == (key, value)
