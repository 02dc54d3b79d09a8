"""An imported model reaches every worker, and survives a SIGKILL of the learner's worker.

Found by ``benchmarks/faults.py --quick --batch 1`` (issue #13): the worker that held
the training topic applied a ``churnwatch models import`` and was SIGKILLed 3 s later;
after its restart one worker scored its partitions with an untrained ``churn-v0`` for
good (``CHURNWATCH_LEARN=false``: no later snapshot comes to correct it).

The cause: the ``models`` GlobalTable applied the changelog records it read after its
recovery only in batches of ``recovery_buffer_size`` (Faust's default, 1000) or at the
next rebalance. The snapshot written by the learner after the restart's rebalance
(the new owner of the training topic applies the re-delivered import) reached the
other worker's consumer and waited there in Faust's buffer.

Two workers with a fixed model: the import is applied by one of them, which is
SIGKILLed at once (before its snapshot is committed) and started again on its data
dir. Events then go to accounts of every partition: each is scored with the imported
model, on whichever worker owns it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from models.churn import make_churn_model
from models.learner import OnlineLearner, dump_bundle
from streams.devworker import TEST_MODEL_KEY
from streams.topics import ensure_topics
from tests.integration.conftest import produce, read_all

pytestmark = [pytest.mark.integration]

IMPORTED_VERSION = 6  # the bundle's churn-v6; the learner's snapshot of it is churn-v7
ACCOUNTS = [f"imp-{i}" for i in range(24)]  # over all 4 partitions of the test topics


def _bundle(path: Path) -> Path:
    learner = OnlineLearner(make_churn_model(), name="churn")
    learner.version = IMPORTED_VERSION
    path.write_bytes(dump_bundle({"churn": learner}, TEST_MODEL_KEY.encode()))
    return path


def _wait_for_line(paths: list[Path], needle: bytes, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for i, p in enumerate(paths):
            if p.exists() and needle in p.read_bytes():
                return i
        time.sleep(0.02)
    raise AssertionError(f"{needle!r} in no log within {timeout}s")


def _event(account: str, ts_ms: int) -> dict[str, object]:
    return {"event_id": f"{account}:start", "type": "subscription_started",
            "account_id": account, "ts": ts_ms, "plan": "basic", "price": 9.99,
            "currency": "EUR", "billing_period": "month", "max_streams": 2}  # fmt: skip


@pytest.mark.timeout(300)
def test_an_imported_model_survives_a_kill_of_the_learner(
    worker_factory, kafka_bootstrap, tmp_path
):
    fixed = {"CHURNWATCH_LEARN": "false"}
    first = worker_factory(**fixed)
    second = worker_factory(CHURNWATCH_DATA_DIR=str(tmp_path / "data2"), **fixed)
    s = first.settings
    ensure_topics(s)
    workers = [first.launch(), second.launch()]
    for w in workers:
        w.wait_ready(120)
    time.sleep(8)  # the group settles with both (the second join is a rebalance of its own)
    for w in workers:
        w.wait_ready(60)

    bundle = _bundle(tmp_path / "bundle.json")
    done = subprocess.run([sys.executable, "-m", "streams", "models", "import", str(bundle)],
                          env=first.env, capture_output=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    # whoever holds the training topic applies it: killed at once, started again
    learner = _wait_for_line(
        [w.log_path for w in workers], b"replaced by an imported churn-v6", timeout=60
    )
    victim = workers[learner]
    assert victim.stop(signal.SIGKILL) == -signal.SIGKILL
    victim.launch().wait_ready(120)
    time.sleep(15)  # past the session timeout (6 s): the dead member leaves, one more rebalance
    for w in workers:
        w.wait_ready(60)

    now = int(time.time() * 1000)
    produce(
        kafka_bootstrap,
        s.subscription_topic,
        [(a.encode(), orjson.dumps(_event(a, now))) for a in ACCOUNTS],
    )
    models: dict[str, object] = {}
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(models) < len(ACCOUNTS):
        for a in ACCOUNTS:
            status, doc = first.get_json(f"/accounts/{a}")
            if status == 200 and doc["models"]["churn"] is not None:
                models[a] = doc["models"]["churn"]
        time.sleep(1)
    assert len(models) == len(ACCOUNTS), models

    newest = f"churn-v{IMPORTED_VERSION + 1}"
    snapshots = read_all(kafka_bootstrap, f"{s.app_id}-models-changelog")
    assert snapshots, "no model snapshot written"
    stale = {a: m for a, m in models.items() if m != newest}
    assert not stale, f"scored with another model than {newest}: {stale}"
    scores = [orjson.loads(m.value) for m in read_all(kafka_bootstrap, s.scores_topic)]
    assert {r["churn_model"] for r in scores if r["account_id"] in ACCOUNTS} == {newest}
