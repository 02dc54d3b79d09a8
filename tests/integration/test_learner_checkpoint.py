"""A hard kill loses no training example, however long since the last model snapshot.

The first worker snapshots its models only once an hour, learns every example the
population produces, and is SIGKILLed. Had it acknowledged the training messages
as it learned them, Faust would have committed them, and the second worker would
resume from no snapshot with nothing left to learn. It acknowledges them only once
a snapshot holds them, so the second worker gets them all again and learns each
exactly once.
"""

from __future__ import annotations

import signal
import time

import orjson
import pytest

from models.simulator import SimConfig, simulate
from streams.simio import KafkaSink, Progress, RateLimiter, encode_events, pump
from tests.integration.conftest import read_all

pytestmark = [pytest.mark.integration]

SIM = SimConfig(accounts=120, days=50, seed=7)


def test_a_killed_learner_loses_no_example(worker_factory, kafka_bootstrap):
    events = list(simulate(SIM))
    unique = len({e["event_id"] for e in events})
    first = worker_factory(CHURNWATCH_MODEL_SNAPSHOT_S="3600").start()
    s = first.settings
    sink = KafkaSink(
        kafka_bootstrap, {"subscription": s.subscription_topic, "usage": s.usage_topic}, batch=200
    )
    pump(encode_events(events), sink, RateLimiter(None), Progress("checkpoint", None))
    sink.close()

    first.wait_metric("churnwatch_events_applied_total", unique, timeout=300)
    published = {
        ex["example_id"]
        for m in read_all(kafka_bootstrap, s.training_topic)
        for ex in orjson.loads(m.value)
    }
    assert len(published) > 100  # labelled snapshots of both models
    time.sleep(8)  # the learner takes them in, and Faust commits what was acked (2.8 s)
    assert first.metrics().get("churnwatch_model_examples_learned", 0.0) == 0  # no snapshot yet
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL

    second = worker_factory().start()
    learned = second.wait_metric("churnwatch_model_examples_learned", len(published))
    assert learned == len(published)
