"""The Faust application, built from settings at the edge (nothing at import time).

:func:`create_runtime` returns a :class:`Runtime` that holds the app, its topics,
tables and metrics; the agents and web views in ``streams.agents`` and
``streams.web`` register themselves on it. ``streams.cli`` runs it as a worker.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

import faust
import mode
from aiokafka.partitioner import murmur2

from streams import kafka_security
from streams.metrics import Metrics
from streams.settings import Settings

# An agent that raises takes the worker down (exit code != 0) instead of being
# restarted in a loop or silently stalling: the orchestrator restarts the
# process and ops see it. Bad input never gets here (it is dead-lettered).
CRASH = mode.CrashingSupervisor


def partition_for(account_id: str, partitions: int) -> int:
    """Kafka's default partitioner (murmur2 of the UTF-8 key), as the producer uses it.

    Internal topics and the state changelog are keyed and partitioned this way, so an
    account's events and its state always live in the same partition number.

    >>> partition_for("a-1", 8) == partition_for("a-1", 8)
    True
    >>> 0 <= partition_for("a-2", 8) < 8
    True
    """
    return (murmur2(account_id.encode()) & 0x7FFFFFFF) % partitions


@dataclass
class Runtime:
    settings: Settings
    metrics: Metrics
    app: faust.App
    topics: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)
    services: dict[str, Any] = field(default_factory=dict)
    # set on SIGTERM/SIGINT: agents then hold nothing back (Faust's stop waits for every
    # message read to be acked, and a message held after the drain would stall it)
    stopping: bool = False


def rewind_uncommitted_partitions() -> None:
    """Make Faust's "seek to committed" rewind partitions that have no commit yet.

    After a rebalance, Faust drops the records fetched while its streams were paused
    (table recovery) and seeks every partition back to its committed offset. aiokafka
    seeks only where that offset is > 0, so a partition with no commit stays past the
    records that were dropped: they are never delivered (faust-streaming issue #596
    describes the race). A new deployment reading topics that already hold data, or a
    learner killed before its first commit, lost messages that way (found by
    ``tests/integration/test_learner_checkpoint.py``). This rewinds such partitions to
    their first offset (``consumer_auto_offset_reset="earliest"``); table changelogs
    are left to Faust's recovery. Applied once, by :func:`create_app`.
    """
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    original = AIOKafkaConsumerThread.seek_to_committed
    if getattr(original, "rewinds_uncommitted", False):
        return

    async def seek_to_committed(self: Any) -> Any:
        committed = await original(self)
        changelogs = self.app.tables.changelog_topics
        fresh = [
            tp for tp, offset in committed.items()
            if (offset is None or offset <= 0) and tp.topic not in changelogs
        ]  # fmt: skip
        if fresh:
            await self.seek_to_beginning(*fresh)
        return committed

    seek_to_committed.rewinds_uncommitted = True  # type: ignore[attr-defined]
    AIOKafkaConsumerThread.seek_to_committed = seek_to_committed


def create_app(s: Settings) -> faust.App:
    rewind_uncommitted_partitions()
    brokers = [f"kafka://{host.strip()}" for host in s.kafka_bootstrap_servers.split(",")]
    host = socket.gethostname()
    return faust.App(
        s.app_id,
        broker=brokers,
        broker_credentials=kafka_security.faust_credentials(s),
        autodiscover=False,
        datadir=s.data_dir,
        store="memory://",
        topic_partitions=s.partitions,
        topic_replication_factor=s.replication_factor,
        topic_allow_declare=s.create_topics,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=s.session_timeout_s,
        broker_heartbeat_interval=s.heartbeat_interval_s,
        broker_rebalance_timeout=s.rebalance_timeout_s,
        producer_linger_ms=s.producer_linger_ms,
        producer_max_request_size=max(s.max_message_bytes * 2, 1_048_576),
        consumer_max_fetch_size=max(s.max_message_bytes * 2, 4_194_304),
        processing_guarantee="at_least_once",
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=True,
        # Faust's own pages would serve table data and the cluster layout to anyone
        # (streams.web serves what churnwatch offers, with its access rules)
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_host=host,
        web_bind=s.web_host,
        web_port=s.web_port,
        canonical_url=f"http://{host}:{s.web_port}",
        logging_config=None,
        table_standby_replicas=0,
        stream_wait_empty=True,
    )


def create_runtime(s: Settings, metrics: Metrics | None = None) -> Runtime:
    """The app with every topic, table, agent and web view registered."""
    from streams import web
    from streams.agents import accounts, ingest, lag, learner

    rt = Runtime(settings=s, metrics=metrics or Metrics(), app=create_app(s))
    raw = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    app = rt.app
    rt.topics["input"] = app.topic(*s.input_topics, **raw)
    rt.topics["account_events"] = app.topic(s.account_events_topic, partitions=s.partitions, **raw)
    rt.topics["dead_letter"] = app.topic(s.dead_letter_topic, **raw)
    rt.topics["scores"] = app.topic(s.scores_topic, **raw)
    rt.topics["alerts"] = app.topic(s.alerts_topic, **raw)
    rt.topics["training"] = app.topic(s.training_topic, partitions=1, **raw)
    ingest.register(rt)
    learner.register(rt)
    accounts.register(rt)
    lag.register(rt)
    web.register(rt)
    return rt
