"""Graceful shutdown: SIGTERM mid-stream stops consuming, flushes, commits and exits in
bounded time; a new worker resumes from the commit and state changelog, so nothing is lost
and nothing is applied or alerted twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from tests.integration.conftest import produce, read_all

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

T0 = 1_767_225_600_000
STOPS = Path(__file__).resolve().parents[2] / "benchmarks" / "stops.py"


def _stream(n_accounts: int, per_account: int, start: int = 0) -> list[tuple[bytes, bytes]]:
    """Events ``start`` to ``per_account - 1`` of each account (0: the subscription)."""
    msgs = []
    for i in range(start, per_account):
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


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        return {p: consumer.committed(TopicPartition(topic, p)) or 0 for p in parts}
    finally:
        consumer.close()


# The tests' 6 s session timeout is short so that failover tests run quickly; a worker frozen
# past it (a starved CI machine) is expelled from its group, and Kafka refuses its commits.
LONG_SESSION = {"CHURNWATCH_SESSION_TIMEOUT_S": "30", "CHURNWATCH_HEARTBEAT_INTERVAL_S": "3",
                "CHURNWATCH_REBALANCE_TIMEOUT_S": "30"}  # fmt: skip


def test_sigterm_mid_stream_loses_nothing_and_duplicates_nothing(worker_factory, kafka_bootstrap):
    # This test is about the stop, so its worker must stay a member of its group: with
    # the 6 s session, three CI runs on record froze it past that, and every offset was 0
    # after the SIGTERM (test_a_worker_expelled_while_frozen_... below is that case)
    n_accounts, per_account = 300, 40
    first = worker_factory(CHURNWATCH_INGEST_BATCH_MAX="50", **LONG_SESSION).start()
    s = first.settings
    produce(kafka_bootstrap, s.usage_topic, _stream(n_accounts, per_account))
    total = n_accounts * per_account
    applied_at_sigterm = first.wait_metric("churnwatch_events_applied_total", total // 10)
    started = time.monotonic()
    code = first.stop(signal.SIGTERM, timeout=60)
    stopped_in = time.monotonic() - started
    assert code == 0, first.log()
    assert stopped_in < 30
    # the stop committed the input it had applied (one event per message here)
    committed = committed_offsets(kafka_bootstrap, s.app_id, s.usage_topic)
    assert sum(committed.values()) >= applied_at_sigterm, f"{committed}\n{first.log()}"
    _resume_and_check_each_event_applied_once(
        worker_factory, kafka_bootstrap, n_accounts, per_account
    )
    scores = read_all(kafka_bootstrap, s.scores_topic)
    keyed = Counter((m.key, m.value) for m in scores)
    assert keyed and max(keyed.values()) == 1, "a score message was published twice"


def test_a_worker_expelled_while_frozen_then_stopped_applies_each_event_once(
    worker_factory, kafka_bootstrap
):
    """A worker frozen past its session timeout (SIGSTOP: a starved machine) is expelled
    from its group. Thawed, its commits are refused (``UnknownMemberIdError``) and it
    rejoins; stopped right then, it exits cleanly having committed nothing it acknowledged
    while expelled, and the next worker reads that input again: every event applied once.
    (A score it published for a buffer it then could not write may come again from the
    next worker: at least once, as after a crash.)"""
    n_accounts, per_account = 300, 40
    first = worker_factory(CHURNWATCH_INGEST_BATCH_MAX="50").start()  # the 6 s session
    s = first.settings
    messages = _stream(n_accounts, per_account)
    produce(kafka_bootstrap, s.usage_topic, messages[:1500])
    first.wait_metric("churnwatch_events_applied_total", 1200)
    assert first.proc is not None
    first.proc.send_signal(signal.SIGSTOP)
    frozen_at = time.monotonic()
    produce(kafka_bootstrap, s.usage_topic, messages[1500:])
    time.sleep(max(0.0, 9.0 - (time.monotonic() - frozen_at)))
    first.proc.send_signal(signal.SIGCONT)
    time.sleep(1.0)
    assert first.stop(signal.SIGTERM, timeout=60) == 0, first.log()
    log = first.log_path.read_text()  # aiokafka's words for it (pinned, pyproject.toml)
    assert "UnknownMemberIdError" in log or "member_id was not recognized" in log, log[-4000:]
    _resume_and_check_each_event_applied_once(
        worker_factory, kafka_bootstrap, n_accounts, per_account
    )


def _resume_and_check_each_event_applied_once(
    worker_factory, kafka_bootstrap, n_accounts, per_account
):  # type: ignore[no-untyped-def]
    """More input while no worker runs, then a new worker: every event applied exactly once."""
    # the drain may have applied all the first part (it applies everything read), and the
    # new worker must resume, not only recover
    tail = 5
    second = worker_factory(**LONG_SESSION)
    s = second.settings
    produce(kafka_bootstrap, s.usage_topic, _stream(n_accounts, per_account + tail, per_account))
    per_account += tail
    second.start()
    second.wait_metric("churnwatch_events_applied_total", 1, timeout=60)
    deadline = time.monotonic() + 120
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        counts = {}
        for a in range(n_accounts):
            status, doc = second.get_json(f"/accounts/acc-{a}")
            counts[f"acc-{a}"] = doc.get("events_applied", 0) if status == 200 else 0
        if all(c == per_account for c in counts.values()):
            break
        time.sleep(1)
    # every event applied exactly once: none lost, none applied twice. (Messages read after
    # SIGTERM are sent on at once; those applied after Faust's last commit come again to
    # the second worker, which drops them as duplicates.)
    assert all(c == per_account for c in counts.values()), {
        a: c for a, c in counts.items() if c != per_account
    }


@pytest.mark.timeout(300)
def test_a_stop_during_a_backlog_of_unkeyed_arrays_under_a_cpu_burner(kafka_bootstrap, tmp_path):
    """Issue #13: one run of ``benchmarks/stops.py`` (the 20 runs are a command,
    docs/operations.md). Unkeyed arrays go through both event-time merges; messages read
    after the stop gave back what the merges held used to be applied ahead of it, and
    the given-back events, read again by the next worker, came too late (one event lost
    in 2 of 20 runs)."""
    done = subprocess.run(
        [sys.executable, str(STOPS), "--runs", "1", "--accounts", "40", "--days", "30",
         "--burners", "1", "--seed", "19", "--out", str(tmp_path)],
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap},
        capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr[-4000:]}"
    assert "1 of 1 runs lost nothing and doubled nothing" in done.stdout, done.stdout
