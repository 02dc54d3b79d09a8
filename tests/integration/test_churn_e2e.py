"""Churn early warning end to end through real Kafka, from a trained model.

A new deployment starts from a model trained on *another* simulated population
(``churnwatch models train`` on recorded events, then ``churnwatch models
import``), as a real service would start from last quarter's model. Two
independent deployments (own consumer groups, state, output topics) then
process the same input from scratch at the same time, scoring with that model
and not learning (``CHURNWATCH_LEARN=false``). Asserted:

- churners are alerted before they cancel: floors on recall and on the median
  lead time, and on precision (alerts followed by a cancellation within the
  horizon);
- reprocessing the same input from scratch yields the same churn alerts (ids and
  content) and (nearly all) the same sharing alert ids: see the comment at the
  assertion;
- ``churnwatch models export`` gives back the model that was imported.

The import travels through the training topic to the learner (the models
table's only writer), which applies it within seconds of the start; churn
alerts wait for a trained model, so nothing is alerted before it lands.

A second test imports a model into a *running* learning deployment: the
learner adopts it and learns on from it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from models.contract import parse_ts
from models.evaluation import DAY_MS, churn_alert_quality
from models.learner import load_bundle
from models.simulator import SimConfig, simulate
from streams.devworker import TEST_MODEL_KEY
from streams.simio import KafkaSink, Progress, RateLimiter, encode_events, pump
from tests.integration.conftest import WorkerProc, read_all

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
log = logging.getLogger(__name__)
KEY = TEST_MODEL_KEY.encode()

TRAIN = SimConfig(accounts=400, days=120, seed=5)
POPULATION = SimConfig(accounts=1000, days=75, seed=21)
JUDGED_FROM_DAY = 30  # features need four weeks of history; alerts before that are not judged

# Floors, well under what this model reaches here (see the test output and
# benchmarks/bench_alerts.py), far above chance: about 10% of account-weeks
# cancel within 30 days, so random alerts would have precision ~0.1 and a lead
# of about half the horizon only for the few they catch.
RECALL, PRECISION, MEDIAN_LEAD_DAYS = 0.3, 0.2, 5.0


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "streams", *args], env=env, capture_output=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return done.stdout.decode()


@pytest.fixture(scope="module")
def trained_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Models trained offline on another population's recorded events."""
    d = tmp_path_factory.mktemp("train")
    cli("simulate", "--accounts", str(TRAIN.accounts), "--days", str(TRAIN.days),
        "--seed", str(TRAIN.seed), "--out", str(d), "--quiet")  # fmt: skip
    env = {**os.environ, "CHURNWATCH_MODEL_KEY": TEST_MODEL_KEY}
    out = cli("models", "train", str(d / "events.jsonl"), "--out", str(d / "models.json"), env=env)
    log.warning("trained: %s", out)
    return d / "models.json"


def other_deployment(env: dict[str, str], suffix: str) -> dict[str, str]:
    """Same input topics and broker; its own group, state, outputs and models."""
    keep = {"CHURNWATCH_SUBSCRIPTION_TOPIC", "CHURNWATCH_USAGE_TOPIC"}
    return {
        k: (v + suffix if k.endswith("_TOPIC") and k not in keep or k == "CHURNWATCH_APP_ID" else v)
        for k, v in env.items()
    }


def wait_applied(workers: list[WorkerProc], total: int, timeout: float = 900) -> None:
    """Until every worker has applied (nearly) all events and gone quiet."""
    deadline = time.monotonic() + timeout
    last: list[float] = []
    while time.monotonic() < deadline:
        try:
            now = [w.metrics().get("churnwatch_events_applied_total", 0.0) for w in workers]
        except OSError:  # a busy worker can be slow to answer: ask again
            continue
        if all(n >= 0.99 * total for n in now) and now == last:
            return
        last = now
        time.sleep(3)
    raise AssertionError(f"applied {last} of {total}:\n{workers[0].log()}")


@pytest.mark.timeout(1500)  # training (~0.3M events) + two deployments over ~0.3M events
def test_churners_are_alerted_before_they_cancel_and_reprocessing_repeats_the_ids(
    worker_factory, worker_env, kafka_bootstrap, trained_bundle, tmp_path
):
    imported = load_bundle(trained_bundle.read_bytes(), KEY)
    assert imported["churn"].examples >= 1000  # past the alerting warm-up of a new model
    # two busy workers share two cores here: a longer session timeout than the other
    # tests' 6 s keeps a starved event loop from being taken for a dead member
    timing = {"CHURNWATCH_SESSION_TIMEOUT_S": "30", "CHURNWATCH_HEARTBEAT_INTERVAL_S": "3",
              "CHURNWATCH_REBALANCE_TIMEOUT_S": "30"}  # fmt: skip
    env_a = {**worker_env, **timing, "CHURNWATCH_LEARN": "false"}
    env_b = other_deployment(env_a, "-b")
    for env in (env_a, env_b):
        out = cli("models", "import", str(trained_bundle), env=env)
        assert "imported churn: churn-v" in out, out

    # both deployments score with the imported models from their first event: the input
    # is sent once each scores with them (an event scored before would decide a churn
    # point with an untrained model, which decides nothing, at a time that depends on
    # how fast each deployment started)
    examples = sum(m.examples for m in imported.values())
    a, b = worker_factory(**env_a), worker_factory(**env_b)
    a.start(), b.start()
    for w in (a, b):
        w.wait_metric("churnwatch_model_examples_learned", examples, timeout=180)
    truth: list[dict] = []
    events = list(simulate(POPULATION, truth.append))
    sink = KafkaSink(
        kafka_bootstrap,
        {"subscription": a.settings.subscription_topic, "usage": a.settings.usage_topic},
        batch=200,
    )
    pump(encode_events(events), sink, RateLimiter(None), Progress("e2e", None))
    sink.close()
    distinct = len({e["event_id"] for e in events})
    wait_applied([a, b], distinct)
    time.sleep(3)  # the last buffers' outputs

    # both deployments scored with the imported models, which did not change
    for w in (a, b):
        assert w.metrics()["churnwatch_model_examples_learned"] == examples
    alerts = {}
    for w in (a, b):
        msgs = read_all(kafka_bootstrap, w.settings.alerts_topic)
        alerts[w.settings.app_id] = {(d := orjson.loads(m.value))["alert_id"]: d for m in msgs}
    ids_a, ids_b = (set(v) for v in alerts.values())
    agree = {}
    for kind in ("churn", "sharing"):
        a_ids, b_ids = ({i for i in ids if f":{kind}:" in i} for ids in (ids_a, ids_b))
        assert a_ids and b_ids, kind
        agree[kind] = len(a_ids & b_ids) / len(a_ids | b_ids)
    log.warning("alert ids both deployments published (share of either's): %s", agree)
    # Churn alerts are decided at points the data defines (each subscription event, each
    # UTC midnight of an account's event time), never where a micro-batch happens to end:
    # both deployments publish the same churn alerts, to the field. Sharing alerts are
    # decided on the scores at the end of each micro-batch, whose cuts depend on timing:
    # measured 100% of ids shared, asserted 95%. (1 of 629 churn ids differed in two runs
    # while the daily sweep was scheduled from the partition clock: docs/design.md.)
    counters = ("events_applied_total", "late_events_dropped_total",
                "account_events_forced_total", "duplicates_dropped_total")  # fmt: skip
    seen = {w.settings.app_id: {c: w.metrics().get(f"churnwatch_{c}") for c in counters}
            for w in (a, b)}  # fmt: skip
    assert agree["churn"] == 1.0 and agree["sharing"] >= 0.95, (agree, seen, sorted(
        ids_a ^ ids_b)[:10])  # fmt: skip
    churn_a, churn_b = (
        {i: v for i, v in alerts[w.settings.app_id].items() if v["kind"] == "churn"} for w in (a, b)
    )
    assert churn_a == churn_b

    unique = list(alerts[a.settings.app_id].values())
    end = POPULATION.start_ms + POPULATION.days * DAY_MS
    q = churn_alert_quality(
        unique, truth, start_ms=POPULATION.start_ms + JUDGED_FROM_DAY * DAY_MS, end_ms=end
    )
    log.warning("churn alert quality through Kafka: %s, actions %s", q,
                Counter(x["action"] for x in unique if x["kind"] == "churn"))  # fmt: skip
    assert q["cancellations"] >= 30 and q["alerts_judged"] >= 30, q
    assert q["recall"] >= RECALL, q
    assert q["median_lead_days"] >= MEDIAN_LEAD_DAYS, q
    assert q["precision"] >= PRECISION, q

    exported = tmp_path / "exported.json"
    cli("models", "export", "--out", str(exported), env=env_a)
    back = load_bundle(exported.read_bytes(), KEY)
    for kind, model in imported.items():  # the learner's snapshot of it: one version on
        assert back[kind].version == model.version + 1
        assert {**back[kind].metrics(), "version": 0} == {**model.metrics(), "version": 0}


def test_an_imported_model_replaces_the_learners_and_it_learns_on(
    worker_factory, kafka_bootstrap, trained_bundle, tmp_path
):
    imported = load_bundle(trained_bundle.read_bytes(), KEY)
    w = worker_factory().start()  # learning, from untrained models
    s = w.settings
    small = SimConfig(accounts=60, days=90, seed=3)
    events = list(simulate(small))
    half = small.start_ms + 60 * DAY_MS
    topics = {"subscription": s.subscription_topic, "usage": s.usage_topic}

    def send(part: list[dict]) -> None:
        sink = KafkaSink(kafka_bootstrap, topics, batch=100)
        pump(encode_events(part), sink, RateLimiter(None), Progress("e2e", None))
        sink.close()

    send([e for e in events if parse_ts(e["ts"]) < half])
    own = w.wait_metric("churnwatch_model_examples_learned", 1, timeout=120)
    assert own < imported["churn"].examples  # far fewer than the imported models have seen

    cli("models", "import", str(trained_bundle), env=w.env)
    send([e for e in events if parse_ts(e["ts"]) >= half])
    # the learner adopted the imported models and learns on from them: its snapshots
    # count the imported examples plus the new ones (its own model would count far fewer)
    total = sum(m.examples for m in imported.values())
    w.wait_metric("churnwatch_model_examples_learned", total + 1, timeout=120)
    time.sleep(5)  # a few more snapshots: the learner does not go back to its own model
    assert w.metrics()["churnwatch_model_examples_learned"] > total

    exported = tmp_path / "exported.json"
    cli("models", "export", "--out", str(exported), env=w.env)
    churn = load_bundle(exported.read_bytes(), KEY)["churn"]
    assert churn.examples > imported["churn"].examples
    assert churn.version > imported["churn"].version
