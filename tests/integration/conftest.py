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

import orjson
import pytest
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from streams.devworker import WorkerProc, isolated_env, read_all
from streams.settings import Settings

__all__ = [
    "WorkerProc",
    "applied",
    "http_get",
    "logins",
    "produce",
    "read_all",
]  # tests import these from here


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


T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def logins(accounts: int, first: int, last: int) -> list[tuple[bytes, bytes]]:
    """Login events ``first``..``last - 1`` of accounts ``acc-0``..: keyed, one a minute."""
    return [
        (f"acc-{a}".encode(), orjson.dumps({
            "event_id": f"acc-{a}-{i}", "type": "login", "account_id": f"acc-{a}",
            "ts": T0 + i * 60_000 + a, "device_id": "tv"}))
        for i in range(first, last) for a in range(accounts)
    ]  # fmt: skip


def applied(worker: WorkerProc, accounts: int) -> dict[str, int]:
    """Events applied per account ``acc-0``.., as the worker's account lookup says (0 if
    it does not know the account)."""
    out = {}
    for a in range(accounts):
        status, doc = worker.get_json(f"/accounts/acc-{a}")
        out[f"acc-{a}"] = doc["events_applied"] if status == 200 else 0
    return out


def labelled(worker, name: str, *labels: str) -> dict[tuple[str, ...], float]:  # type: ignore[no-untyped-def]
    """Samples of one metric by the values of ``labels``."""
    with urllib.request.urlopen(worker.url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[tuple[str, ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.value:  # known label values start at 0
                out[tuple(sample.labels[k] for k in labels)] = sample.value
    return out


def http_get(url: str, token: str | None = None) -> tuple[int, bytes]:
    """GET ``url`` (with ``token`` as bearer token): the status and the body, errors too."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
