"""Create the topics churnwatch needs (kafka-python admin), waiting for the broker.

Input and output topics are created with ``CHURNWATCH_PARTITIONS`` partitions
when missing; existing topics are left as they are (a mismatch in partition count
of the internal topics is reported, since state is co-partitioned with them).
"""

from __future__ import annotations

import logging
import time

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from streams.kafka_security import KafkaSecurityError, check_login, client_config, explain, servers
from streams.settings import Settings

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
# Compacted topics that hold an account's data (risk-scores; the accounts table's changelog,
# which Faust creates, with these too): an erased account's older records become
# compactable within a day (Kafka never compacts the active segment; this also rolls it
# after a day instead of segment.ms, 7 days), and its tombstone stays one more day for
# consumers that are behind (docs/security.md, "Retention of every topic")
ERASABLE = {"max.compaction.lag.ms": str(DAY_MS), "delete.retention.ms": str(DAY_MS)}
COMPACTED = {"cleanup.policy": "compact", **ERASABLE}


def topic_specs(s: Settings) -> dict[str, tuple[int, dict[str, str]]]:
    """Topic name -> (partitions, config) for everything churnwatch reads or writes."""
    p = s.partitions
    retention_week = {"retention.ms": str(7 * 86400 * 1000)}
    return {
        s.subscription_topic: (p, {}),
        s.usage_topic: (p, {}),
        s.dead_letter_topic: (p, retention_week),
        s.account_events_topic: (p, retention_week),
        s.scores_topic: (p, COMPACTED),
        s.alerts_topic: (p, {}),
        s.training_topic: (1, retention_week),  # one learner per model reads it
        # the models table's changelog (s.models_topic) is left to Faust to create: a worker
        # whose changelog topic was created outside Faust stalled in tests (docs/design.md)
    }


def connect_admin(
    s: Settings, *, wait_s: float = 300.0, log_every_s: float = 10.0
) -> KafkaAdminClient:
    """An admin client, retrying until the broker answers; a rate-limited line while waiting.

    A refused login or an untrusted broker certificate raises ``KafkaSecurityError`` at
    once, with one line that says what to check."""
    deadline = time.monotonic() + wait_s
    next_log = 0.0
    quiet = _Quiet("kafka")
    while True:
        try:
            with quiet:
                return KafkaAdminClient(
                    bootstrap_servers=servers(s),
                    client_id=f"{s.app_id}-admin",
                    request_timeout_ms=10_000,
                    bootstrap_timeout_ms=5_000,
                    **client_config(s),
                )
        except KafkaError as exc:  # a refused login or certificate: no use waiting
            why = explain(exc, s)
            if why is not None:
                raise KafkaSecurityError(why) from None
            check_login(s)  # kafka-python reports a refused login as "unable to bootstrap"
            now = time.monotonic()
            if now >= deadline:
                raise ConnectionError(
                    f"Kafka at {s.kafka_bootstrap_servers} did not answer for {wait_s:.0f}s: {exc}"
                ) from exc
            if now >= next_log:
                log.warning(
                    "waiting for Kafka at %s (%s); retrying", s.kafka_bootstrap_servers, exc
                )
                next_log = now + log_every_s
            time.sleep(1.0)


class _Quiet:
    """Silence a chatty library logger (kafka-python logs every refused connection)."""

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)

    def __enter__(self) -> None:
        self.level = self.logger.level
        self.logger.setLevel(logging.CRITICAL)

    def __exit__(self, *exc: object) -> None:
        self.logger.setLevel(self.level)


def ensure_topics(s: Settings, *, wait_s: float = 300.0) -> list[str]:
    """Create the missing topics; return the names created."""
    admin = connect_admin(s, wait_s=wait_s)
    try:
        existing = set(admin.list_topics())
        specs = topic_specs(s)
        missing = [
            NewTopic(name, parts, s.replication_factor, topic_configs=cfg)
            for name, (parts, cfg) in specs.items()
            if name not in existing
        ]
        created = []
        for topic in missing:
            try:
                admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:  # another worker was faster
                pass
        if created:
            log.info("created topics: %s", ", ".join(created))
        _check_internal_partitions(admin, s)
        return created
    finally:
        admin.close()


def _check_internal_partitions(admin: KafkaAdminClient, s: Settings) -> None:
    for meta in admin.describe_topics([s.account_events_topic]):
        n = len(meta.get("partitions") or [])
        if n and n != s.partitions:
            raise RuntimeError(
                f"topic {s.account_events_topic} has {n} partitions but CHURNWATCH_PARTITIONS="
                f"{s.partitions}; account state is co-partitioned with it: set them equal"
            )
