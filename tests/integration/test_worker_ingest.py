"""End to end through real Kafka: valid events reach the account agent exactly once
per event_id, whatever the producer's key or batching; bad input is dead-lettered
with its error kind and never stops the stream."""

from __future__ import annotations

import time
from collections import Counter

import orjson
import pytest
from kafka import KafkaProducer

from tests.integration.conftest import labelled, produce, read_all

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
LAG = "churnwatch_consumer_lag_messages"


def _events(n_accounts: int = 12) -> dict[str, list[dict]]:
    """Per account: a subscription start plus usage, all valid, distinct event ids."""
    out: dict[str, list[dict]] = {}
    for a in range(n_accounts):
        acc = f"acct-{a}"
        evs = [
            {
                "event_id": f"{acc}-s",
                "type": "subscription_started",
                "account_id": acc,
                "ts": T0 + a,
                "plan": "standard",
                "price": 9.99,
                "currency": "EUR",
                "billing_period": "month",
                "max_streams": 2,
                "country": "DE",
            },
        ]
        for i in range(a % 5 + 2):
            ts = T0 + (i + 1) * 60_000 + a
            evs.append(
                {
                    "event_id": f"{acc}-p{i}",
                    "type": "playback_started",
                    "account_id": acc,
                    "ts": ts,
                    "session_id": f"{acc}-sess{i}",
                    "device_id": "tv-1",
                }
            )
            evs.append(
                {
                    "event_id": f"{acc}-q{i}",
                    "type": "playback_stopped",
                    "account_id": acc,
                    "ts": ts + 30_000,
                    "session_id": f"{acc}-sess{i}",
                    "watched_s": 30,
                }
            )
        evs.append(
            {
                "event_id": f"{acc}-x",
                "type": "activity",
                "account_id": acc,
                "ts": "2026-01-01T01:00:00.000+01:00",
                "action": "rating",
                "unknown": 1,
            }
        )
        out[acc] = evs
    return out


def test_valid_events_once_bad_input_dead_lettered(worker_factory, kafka_bootstrap):
    worker = worker_factory(CHURNWATCH_MAX_MESSAGE_BYTES="16384").start()
    s = worker.settings
    per_account = _events()
    subs, usage = [], []
    batch_elements = []
    unaligned = 0  # valid events in messages not keyed by their account
    for i, (acc, evs) in enumerate(sorted(per_account.items())):
        for j, ev in enumerate(evs):
            raw = orjson.dumps(ev)
            if ev["type"] == "subscription_started":
                subs.append((acc.encode(), raw))
            elif i % 3 == 0:
                batch_elements.append(ev)  # batched: key irrelevant
            elif i % 3 == 1:
                usage.append((b"wrong-key", raw))  # producer keyed it wrongly
                unaligned += 1
            else:
                usage.append((None if j % 2 else acc.encode(), raw))
                unaligned += j % 2
    # duplicates: at-least-once delivery sends some events twice
    dups = [per_account["acct-1"][1], per_account["acct-2"][0], per_account["acct-3"][2]]
    usage += [(b"acct-1", orjson.dumps(dups[0])), (b"acct-3", orjson.dumps(dups[2]))]
    subs.append((b"acct-2", orjson.dumps(dups[1])))
    batch_elements.append(per_account["acct-4"][1])  # a duplicate inside a batch

    bad_element = {"event_id": "bad-1", "type": "login", "account_id": "acct-0", "ts": T0}
    batch = batch_elements[:5] + [bad_element, 17] + batch_elements[5:]
    usage.append((None, orjson.dumps(batch)))
    unaligned += len(batch_elements)  # its valid elements
    malformed = [
        (s.usage_topic, b"{not json", "not_json"),
        (s.usage_topic, b'"a string"', "not_object"),
        (
            s.subscription_topic,
            orjson.dumps(
                {"event_id": "m1", "type": "payment_failed", "account_id": "acct-1", "ts": T0}
            ),
            "missing_field",
        ),
        (
            s.subscription_topic,
            orjson.dumps(
                {
                    "event_id": "m2",
                    "type": "payment_failed",
                    "account_id": "acct-1",
                    "ts": T0,
                    "amount": "9",
                }
            ),
            "wrong_type",
        ),
        (
            s.usage_topic,
            orjson.dumps({"event_id": "m3", "type": "teleport", "account_id": "a", "ts": T0}),
            "unknown_type",
        ),
        (s.usage_topic, b'{"pad": "' + b"x" * 20000 + b'"}', "too_large"),
    ]
    produce(kafka_bootstrap, s.subscription_topic, subs)
    produce(kafka_bootstrap, s.usage_topic, usage)
    for topic, raw, _ in malformed:
        produce(kafka_bootstrap, topic, [(None, raw)])

    expected_total = sum(len(v) for v in per_account.values())
    worker.wait_metric("churnwatch_events_applied_total", expected_total)
    worker.wait_metric("churnwatch_duplicates_dropped_total", 4)

    for acc, evs in per_account.items():
        status, doc = worker.get_json(f"/accounts/{acc}")
        assert status == 200, doc
        assert doc["events_applied"] == len(evs), (acc, doc)
    status, doc = worker.get_json("/accounts/nobody")
    assert status == 404

    dead = read_all(kafka_bootstrap, s.dead_letter_topic, expect=len(malformed) + 2)
    records = [orjson.loads(m.value) for m in dead]
    kinds = Counter(r["kind"] for r in records)
    assert kinds == Counter([k for *_, k in malformed] + ["missing_field", "not_object"])
    in_batch = sorted((r["index"], r["kind"]) for r in records if r["index"] is not None)
    assert in_batch == [(5, "missing_field"), (6, "not_object")]
    for r in records:
        assert set(r) >= {"error", "topic", "partition", "offset", "index", "raw"}
        assert r["error"].startswith(r["kind"])

    metrics = worker.metrics()
    assert metrics["churnwatch_events_applied_total"] == expected_total
    assert metrics["churnwatch_duplicates_dropped_total"] == 4
    assert metrics["churnwatch_input_unaligned_events_total"] == unaligned > 0
    assert metrics["churnwatch_dead_letters_total"] == len(malformed) + 2


@pytest.mark.parametrize("transactional", [False, True], ids=["plain", "transactional"])
def test_live_input_is_not_held_for_a_quiet_partition(worker_factory, kafka_bootstrap,
                                                      transactional):  # fmt: skip
    """Events stamped with the time they are sent (a live service) go through as they
    come, although the partitions they are not on stay quiet: idle and quiet times of 10
    minutes would otherwise hold them that long (``CHURNWATCH_INPUT_LIVE_S``,
    docs/design.md "Live input").

    Transactional: the quiet partitions' last events came in a committed transaction,
    so each partition ends in a commit marker that no consumer reads. Such a partition
    is caught up all the same: it used to count as behind, held the others back for
    ``CHURNWATCH_INPUT_STALL_S``, and its consumer lag stayed at 1 for good."""
    # (with CHURNWATCH_INPUT_LIVE_S=0 the first 8 events stop at 1 applied)
    worker = worker_factory(CHURNWATCH_INPUT_IDLE_S="600", CHURNWATCH_INPUT_QUIET_S="600",
                            CHURNWATCH_INPUT_STALL_S="600").start()  # fmt: skip
    s = worker.settings
    txn = {"transactional_id": f"live-{s.app_id}"} if transactional else {}
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5, **txn)
    if transactional:
        producer.init_transactions()
        producer.begin_transaction()
    sent = 0

    def send(topic: str, partition: int, ev: dict) -> None:
        nonlocal sent
        producer.send(topic, value=orjson.dumps(ev), partition=partition)
        sent += 1

    def now() -> int:
        return int(time.time() * 1000)

    # every input partition delivers once (a partition never heard of holds the others
    # back until it does, or for the idle time)
    for p in range(s.partitions):
        acc = f"live-{p}"
        send(s.subscription_topic, p, {
            "event_id": f"{acc}-s", "type": "subscription_started", "account_id": acc,
            "ts": now(), "plan": "standard", "price": 9.99, "currency": "EUR",
            "billing_period": "month", "max_streams": 2, "country": "DE"})  # fmt: skip
        send(s.usage_topic, p, {"event_id": f"{acc}-l0", "type": "login", "account_id": acc,
                                "ts": now(), "device_id": "tv-1"})  # fmt: skip
    producer.flush()
    if transactional:
        producer.commit_transaction()
        producer.close()  # the rest from a producer without transactions
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
    worker.wait_metric("churnwatch_events_applied_total", sent, timeout=60)
    # then one usage partition only: newer than every other partition's last event
    for i in range(1, 21):
        send(s.usage_topic, 0, {"event_id": f"live-0-l{i}", "type": "login",
                                "account_id": "live-0", "ts": now(), "device_id": "tv-1"})  # fmt: skip
        time.sleep(0.05)
    producer.flush()
    producer.close()
    worker.wait_metric("churnwatch_events_applied_total", sent, timeout=60)
    assert worker.metrics().get("churnwatch_late_events_dropped_total", 0) == 0
    inputs = {s.subscription_topic, s.usage_topic}
    deadline = time.monotonic() + 30  # everything read is committed: no input lag left
    while lag := {tp: n for tp, n in labelled(worker, LAG, "topic", "partition").items()
                  if tp[0] in inputs}:  # fmt: skip
        assert time.monotonic() < deadline, f"consumer lag stays at {lag}"
        time.sleep(0.5)
