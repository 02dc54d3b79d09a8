"""Integration fixtures: churnwatch worker processes against the real broker.

Every worker gets its own app id (consumer group), uuid topic names, data dir
and web port, so tests never see each other's data (``streams.devworker``).
"""

from __future__ import annotations

import signal
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka import KafkaProducer

from streams.devworker import WorkerProc, isolated_env, read_all
from streams.settings import Settings

__all__ = ["WorkerProc", "http_get", "produce", "read_all"]  # tests import these from here


# The longest modules (~80-120 s each here), run first: with ``pytest -n 2 --dist loadfile``
# (.ci/run) the two test processes then end together, instead of one waiting on a long
# module that started last.
LONGEST_FIRST = ("test_churn_e2e.py", "test_soak.py", "test_faults_harness.py", "test_risk_e2e.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files keep order


@pytest.fixture()
def worker_env(kafka_bootstrap: str, tmp_path: Path) -> dict[str, str]:
    """Environment for a worker on uuid-named topics (tests may override entries)."""
    return isolated_env(kafka_bootstrap, tmp_path / "data", uuid.uuid4().hex[:10])


@pytest.fixture()
def worker_factory(
    worker_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., WorkerProc]]:
    started: list[WorkerProc] = []

    def make(**overrides: str) -> WorkerProc:
        env = {**worker_env, **overrides}
        w = WorkerProc(Settings.from_env(env), env, tmp_path / f"worker{len(started)}.log")
        started.append(w)
        return w

    yield make
    for w in started:
        try:
            w.stop(signal.SIGKILL)
        except AssertionError:
            pass


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    for key, value in messages:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def http_get(url: str, token: str | None = None) -> tuple[int, bytes]:
    """GET ``url`` (with ``token`` as bearer token): the status and the body, errors too."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
