"""Round trip: simulate -> Kafka (KafkaSink) -> KafkaConsumer counts and parses every event;
and the loop: simulate --kafka answers a worker's alerts, the worker counts the outcomes."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from models.contract import parse_message, topic_kind
from models.simulator import SimConfig, simulate
from models.simulator.world import DAY_MS
from streams.demo import action_outcomes
from streams.devworker import read_all
from streams.simio import (
    HOLD_MS,
    TRANSACTION_MESSAGES,
    KafkaSink,
    Progress,
    RateLimiter,
    encode_events,
    pump,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("batch", "transactional"), [(1, False), (100, False), (1, True)],
    ids=["1/msg", "100/msg", "1/msg-transactions"],
)  # fmt: skip
def test_every_simulated_event_arrives_and_parses(
    kafka_bootstrap: str, new_topic: Callable[..., str], batch: int, transactional: bool
) -> None:
    """Transactions (the fault harness's ``--transactional``): every event is read
    ``read_committed``, and the log holds a commit marker per transaction and partition."""
    from kafka import KafkaConsumer, TopicPartition

    topics = {"subscription": new_topic("sim-sub", 3), "usage": new_topic("sim-usage", 3)}
    events = list(simulate(SimConfig(accounts=60, days=10, seed=2)))
    sent = Counter((topic_kind(e["type"]), e["event_id"], e["account_id"]) for e in events)
    txn = {"transactional_id": f"sim-{topics['usage']}"} if transactional else {}
    sink = KafkaSink(kafka_bootstrap, topics, batch=batch, **txn)
    pump(encode_events(events), sink, RateLimiter(None), Progress("simulate", None))
    sink.close()
    if batch == 1:
        assert sink.messages == len(events)

    consumer = KafkaConsumer(
        *topics.values(),
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=1000,
        isolation_level="read_committed",
    )
    kind_of = {topic: kind for kind, topic in topics.items()}
    received: Counter[tuple[str, str, str]] = Counter()
    messages = 0
    deadline = time.monotonic() + 60
    while sum(received.values()) < len(events) and time.monotonic() < deadline:
        for msg in consumer:
            messages += 1
            parsed, dead = parse_message(
                msg.value, topic=msg.topic, partition=msg.partition, offset=msg.offset
            )
            assert dead == []
            if batch == 1:
                assert len(parsed) == 1 and msg.key == parsed[0].account_id.encode()
            for ev in parsed:
                received[(kind_of[msg.topic], ev.event_id, ev.account_id)] += 1
            # a batch never holds an event while the stream runs HOLD_MS of event time past
            # it (late-dropped events downstream otherwise: see HOLD_MS)
            assert max(e.ts for e in parsed) - parsed[0].ts < HOLD_MS
    tps = [TopicPartition(t, p) for t in topics.values() for p in range(3)]
    offsets = sum(consumer.end_offsets(tps).values())
    consumer.close()
    assert received == sent  # every event, duplicates included, on its contract topic
    assert messages == sink.messages
    markers = offsets - messages  # one per transaction and partition written
    if transactional:
        assert (
            len(events) / TRANSACTION_MESSAGES
            <= markers
            <= 6 * (len(events) // TRANSACTION_MESSAGES + 1)
        )
    else:
        assert markers == 0
    if batch > 1:  # batched (60 accounts hold ~5 events per 10 minutes of event time)
        assert messages < len(events) / 4


def test_households_answer_the_alerts_and_the_worker_counts_what_the_actions_achieved(
    worker_factory: Callable[..., Any], tmp_path: Path
) -> None:
    """The loop on a real broker: ``simulate --kafka`` reads the worker's alerts while it
    writes, its households answer them, and the worker counts the answers as outcomes of
    the alerts' actions. No crackdown in this run, so every extra member, verification
    and backlash cancellation the worker sees is an answer to one of its alerts."""
    worker = worker_factory(
        CHURNWATCH_SHARING_THRESHOLD="0.5", CHURNWATCH_SHARING_RESET="0.3"
    ).start()
    mix = ("household=0.3,big_family=0,traveller=0,commuter=0,vpn_user=0,sharer=1,"
           "subtle_sharer=0")  # fmt: skip
    sim = tmp_path / "sim"
    done = subprocess.run(
        [sys.executable, "-m", "streams", "simulate", "--kafka", "--accounts", "60",
         "--days", "30", "--seed", "5", "--mix", mix, "--crackdown-day", "100",
         "--follow-worker", "2", "--follow-wait", "60", "--out", str(sim)],
        env=worker.env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "households answered" in done.stderr
    answered = [orjson.loads(line) for line in (sim / "reactions.jsonl").read_bytes().split()]
    reacted = Counter(r["reaction"] for r in answered)
    assert reacted["extra_member"] + reacted["verified"] + reacted["failed"] > 0, done.stderr
    # answered within a few days of event time: the simulator followed the worker
    lags = sorted(r["ts"] - r["alert_ts"] for r in answered)
    assert lags[len(lags) // 2] < 5 * DAY_MS, lags

    decisive = reacted["extra_member"] + reacted["verified"] + reacted["failed"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        outcomes = action_outcomes(worker.url + "/metrics")
        sharing = Counter({o: n for (k, _, o), n in outcomes.items() if k == "sharing"})
        converted = sharing["extra_member_added"] + sharing["verified"]
        if converted + sharing["verification_failed"] >= decisive:
            break
        time.sleep(1)
    assert sharing["extra_member_added"] >= reacted["extra_member"] > 0 or (
        sharing["verified"] >= reacted["verified"] > 0
    ), (sharing, reacted)
    assert sum(n for o, n in sharing.items() if o != "no_change") > 0

    # the run is repeated byte for byte from its recorded answers, without a worker
    again = tmp_path / "again"
    options = [a for a in done.args[4:] if a != "--kafka"]
    options = options[: options.index("--follow-worker")]
    repeat = subprocess.run(
        [sys.executable, "-m", "streams", "simulate", *options, "--alerts-from",
         str(sim / "reactions.jsonl"), "--out", str(again), "--quiet"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert repeat.returncode == 0, repeat.stderr[-3000:]
    s = worker.settings
    sent = Counter(
        m.value
        for topic in (s.subscription_topic, s.usage_topic)
        for m in read_all(worker.settings.kafka_bootstrap_servers, topic)
    )
    assert sent == Counter((again / "events.jsonl").read_bytes().splitlines())
