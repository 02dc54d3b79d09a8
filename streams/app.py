"""The Faust application, built from settings at the edge (nothing at import time).

:func:`create_runtime` builds the app, its topics and the model snapshot table into a
typed :class:`streams.runtime.Runtime`, then lets each agent module and the web views
register on it. ``streams.cli`` runs it as a worker. Agents import ``streams.runtime``,
never this module. Every touch of Faust internals is in ``streams.faust_compat``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from pathlib import Path
from time import monotonic
from typing import Any

import faust
from faust.app import BootStrategy
from faust.sensors import Monitor
from mode import ServiceT

from models.partitioning import partition_for
from streams import faust_compat, kafka_security
from streams.metrics import Metrics
from streams.runtime import CRASH, Runtime, Topics
from streams.settings import Settings
from streams.skips import Skips
from streams.snapshots import ModelCache, models_table

__all__ = ["CRASH", "Runtime", "create_app", "create_runtime", "partition_for"]


def _app_dir(s: Settings) -> Path:
    """The app's data folder, made with its parents (Faust makes only the last level)."""
    path = Path(s.data_dir) / s.app_id
    path.mkdir(parents=True, exist_ok=True)
    return path


class WebFirst(BootStrategy):
    """Faust's default start order, but the web server first: before the producer, so
    ``/healthz`` answers while the producer connects and the tables recover (Faust
    starts it after the producer, which waits for a broker that is down). Subclassing
    ``BootStrategy`` is Faust's documented way to change what starts and in which order.
    """

    def server(self) -> Iterable[ServiceT]:
        return self._chain(
            self.web_server(),
            self.sensors(),
            self.kafka_producer(),
            self.kafka_consumer(),
            self.agents(),
            self.kafka_conductor(),
            self.tables(),
        )


class QuietMonitor(Monitor):
    """Faust's monitor without its bookkeeping per message and per event.

    Faust's ``Monitor`` counts and times every message and event for its statistics
    pages, which churnwatch turns off (``web_stats_enabled=False``; its own metrics are
    in ``streams.metrics``): ~5% of a worker's main thread at one event per message
    (py-spy, docs/design.md). ``App(monitor=...)`` is Faust's way to give the app
    another one. Kept: the time each partition's stream last took an event, which
    Faust's check for a stream that stopped processing reads
    (``stream_inbound_time``), and everything outside the per-message path
    (commits, end offsets, rebalances).
    """

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        pass

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        self.stream_inbound_time[tp] = monotonic()

    def on_stream_event_out(
        self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        pass

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        pass


class RawSchema(faust.Schema):
    """Keys and values as the bytes Kafka holds, which is what the ``raw`` serializer
    gives, without the serializer registry's lookups for every message (overriding
    ``loads_key``/``loads_value`` is Faust's way to customise a schema)."""

    def loads_key(self, app: Any, message: Any, **kwargs: Any) -> Any:
        return message.key

    def loads_value(self, app: Any, message: Any, **kwargs: Any) -> Any:
        return message.value


def create_app(s: Settings) -> faust.App:
    faust_compat.apply()
    if s.deliver_without_tasks:
        faust_compat.deliver_without_tasks()
    brokers = [f"kafka://{host.strip()}" for host in s.kafka_bootstrap_servers.split(",")]
    host = socket.gethostname()
    app = faust.App(
        s.app_id,
        broker=brokers,
        broker_credentials=kafka_security.faust_credentials(s),
        autodiscover=False,
        # one folder per app id: two deployments (consumer groups) given the same data dir
        # must not share RocksDB databases (each holds a lock on its own)
        datadir=str(_app_dir(s)),
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
        monitor=QuietMonitor(),
    )
    app.boot_strategy = WebFirst(app)
    faust_compat.track_revocations(app)
    return app


def create_runtime(s: Settings, metrics: Metrics | None = None) -> Runtime:
    """The app with every topic, table, agent and web view registered."""
    from streams import web
    from streams.agents import accounts, ingest, lag, learner, recovery

    metrics = metrics or Metrics()
    app = create_app(s)
    raw = {
        "schema": RawSchema(
            key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )
    }
    topics = Topics(
        input=app.topic(*s.input_topics, **raw),
        account_events=app.topic(s.account_events_topic, partitions=s.partitions, **raw),
        dead_letter=app.topic(s.dead_letter_topic, **raw),
        scores=app.topic(s.scores_topic, **raw),
        alerts=app.topic(s.alerts_topic, **raw),
        training=app.topic(s.training_topic, partitions=1, **raw),
    )
    skips = Skips(metrics)
    rt = Runtime(
        settings=s,
        metrics=metrics,
        app=app,
        topics=topics,
        skips=skips,
        models=ModelCache(models_table(app), metrics, s.require_model_key(), skips),
    )
    ingest.register(rt)
    learner.register(rt)
    accounts.register(rt)
    lag.register(rt)
    recovery.register(rt)
    web.register(rt)
    return rt
