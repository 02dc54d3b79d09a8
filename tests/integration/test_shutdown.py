"""Graceful shutdown: SIGTERM mid-stream stops consuming, flushes, commits and exits in
bounded time; a new worker resumes from the commit and state changelog, so nothing is lost
and nothing is applied or alerted twice."""

from __future__ import annotations

import signal
import time
from collections import Counter

import orjson
import pytest

from tests.integration.conftest import produce, read_all

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

T0 = 1_767_225_600_000


def _stream(n_accounts: int, per_account: int) -> list[tuple[bytes, bytes]]:
    msgs = []
    for i in range(per_account):
        for a in range(n_accounts):
            acc = f"acc-{a}"
            if i == 0:
                ev = {"event_id": f"{acc}-s", "type": "subscription_started", "account_id": acc,
                      "ts": T0 + a, "plan": "p", "price": 7.5, "currency": "USD",
                      "billing_period": "month", "max_streams": 2}  # fmt: skip
            else:
                ev = {"event_id": f"{acc}-{i}", "type": "login", "account_id": acc,
                      "ts": T0 + i * 1000 + a, "device_id": f"d{i % 3}"}  # fmt: skip
            msgs.append((acc.encode(), orjson.dumps(ev)))
    return msgs


def test_sigterm_mid_stream_loses_nothing_and_duplicates_nothing(worker_factory, kafka_bootstrap):
    n_accounts, per_account = 300, 40
    first = worker_factory(CHURNWATCH_INGEST_BATCH_MAX="50").start()
    s = first.settings
    produce(kafka_bootstrap, s.usage_topic, _stream(n_accounts, per_account))
    total = n_accounts * per_account
    first.wait_metric("churnwatch_events_applied_total", total // 10)
    started = time.monotonic()
    code = first.stop(signal.SIGTERM, timeout=60)
    stopped_in = time.monotonic() - started
    applied_before = first.log()  # kept for the assertion message
    assert code == 0, applied_before
    assert stopped_in < 30

    second = worker_factory().start()
    second.wait_metric("churnwatch_events_applied_total", 1, timeout=60)
    deadline = time.monotonic() + 120
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        counts = {}
        for a in range(0, n_accounts, 37):
            status, doc = second.get_json(f"/accounts/acc-{a}")
            counts[f"acc-{a}"] = doc.get("events_applied", 0) if status == 200 else 0
        if all(c == per_account for c in counts.values()):
            break
        time.sleep(1)
    assert all(c == per_account for c in counts.values()), counts
    # applied exactly once: the second worker's own counter plus the first's persisted work
    assert second.metrics()["churnwatch_duplicates_dropped_total"] == 0

    scores = read_all(kafka_bootstrap, s.scores_topic)
    keyed = Counter((m.key, m.value) for m in scores)
    assert keyed and max(keyed.values()) == 1, "a score message was published twice"
