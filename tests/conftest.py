"""Shared fixtures. The broker fixture is only used by integration tests, so the unit
tier never starts Java.

``kafka_bootstrap``: ``KAFKA_BOOTSTRAP_SERVERS`` when set, otherwise a real
single-node KRaft broker started for the session from the jars pinned in
``deploy/kafka/pom.xml`` (fetched once with Maven). It never skips: a missing
Java or Maven fails the integration tier with a message naming what to install.

``crafted_pickle``: ``(payload, marker)``: a pickle that creates the file ``marker``
when it is loaded, to prove that a reader runs no code from data.
"""

from __future__ import annotations

import os
import pickle
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing:
        yield existing
        return
    from streams.devbroker import LocalBroker

    with LocalBroker() as broker:
        yield broker.bootstrap


@pytest.fixture()
def new_topic(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    """Create a fresh uuid-named topic: ``new_topic("usage", partitions=4)``."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    created: list[str] = []

    def make(prefix: str = "t", partitions: int = 1, config: dict[str, str] | None = None) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        admin.create_topics([NewTopic(name, partitions, 1, topic_configs=config or {})])
        created.append(name)
        return name

    yield make
    try:
        admin.delete_topics(created)
    except Exception:  # best effort: topics are uniquely named anyway
        pass
    admin.close()


class _Touch:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, ...]:
        return (Path.touch, (self.path,))


@pytest.fixture()
def crafted_pickle(tmp_path: Path) -> tuple[bytes, Path]:
    marker = tmp_path / "code-ran"
    payload = pickle.dumps(_Touch(marker))
    pickle.loads(payload)  # the payload works: loading it makes the marker ...
    assert marker.exists()
    marker.unlink()  # ... which the test then expects never to appear again
    return payload, marker
