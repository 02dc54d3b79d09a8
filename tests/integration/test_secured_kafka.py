"""churnwatch through a secured Kafka (SASL_SSL, SCRAM and PLAIN), on one broker start.

The local KRaft broker gets a SASL_SSL listener: a certificate signed by a CA made
at test time (keytool) and a user written at format time (``--add-scram``). Through
it run ``topics``, ``simulate --kafka``, the worker, ``replay`` and ``models
import``/``export``; a wrong password and an untrusted certificate each give one
line naming what to check. The same worker then receives model imports that would
create a file when unpickled: they are skipped and counted, ``models export`` skips
such snapshots in the models topic, and the file never appears. ``/accounts/*``
asks for the bearer token.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from models.contract import parse_ts
from models.learner import load_bundle
from streams.devbroker import LocalBroker
from streams.devworker import TEST_MODEL_KEY, WorkerProc, isolated_env
from streams.kafka_security import client_config
from streams.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

TOKEN = "integration-api-token-0123456789"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    with LocalBroker(workdir=tmp_path_factory.mktemp("kafka"), sasl_ssl=True) as b:
        yield b


@pytest.fixture()
def env(broker: LocalBroker, tmp_path: Path) -> dict[str, str]:
    run = uuid.uuid4().hex[:10]
    env = isolated_env(broker.sasl_bootstrap, tmp_path / "data", run)
    env.update(broker.client_env())
    env["CHURNWATCH_API_TOKEN"] = TOKEN
    return env


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams", *args], env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def skipped(worker: WorkerProc, topic: str, kind: str) -> float:
    with urllib.request.urlopen(worker.url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "churnwatch_internal_records_skipped_total" and sample.labels == {
                "topic": topic,
                "kind": kind,
            }:
                return sample.value
    return 0.0


def get(worker: WorkerProc, path: str, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(worker.url + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_every_command_runs_through_sasl_ssl_and_no_code_runs_from_data(
    env, tmp_path, crafted_pickle
):
    s = Settings.from_env(env)
    created = ok(cli(env, "topics"))
    assert s.training_topic in created and "created" in created

    sim, population = tmp_path / "sim", ["--accounts", "20", "--days", "14", "--seed", "3"]
    ok(cli(env, "simulate", "--kafka", *population, "--quiet"))
    ok(cli(env, "simulate", "--out", str(sim), *population, "--quiet"))  # the same events
    lines = (sim / "events.jsonl").read_bytes().splitlines()
    sent, last_ts = len(lines), max(parse_ts(orjson.loads(line)["ts"]) for line in lines)

    worker = WorkerProc(s, env, tmp_path / "worker.log").start()
    try:
        worker.wait_metric("churnwatch_events_consumed_total", sent)

        # replay, with another SCRAM mechanism; the account is then served to a token holder
        mine = tmp_path / "mine.jsonl"
        mine.write_bytes(
            orjson.dumps({"event_id": "sec-1", "type": "subscription_started",
                          "account_id": "sec-acct", "ts": last_ts,
                          "plan": "basic", "price": 9.99, "currency": "EUR",
                          "billing_period": "month", "max_streams": 2}) + b"\n"
        )  # fmt: skip
        ok(cli({**env, "CHURNWATCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256"}, "replay", str(mine)))
        deadline = time.monotonic() + 60
        while get(worker, "/accounts/sec-acct", TOKEN)[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        status, body = get(worker, "/accounts/sec-acct", TOKEN)
        assert status == 200 and b"sec-acct" in body
        status, body = get(worker, "/accounts/sec-acct", "not-the-token")
        assert status == 401 and "bearer token is required" in orjson.loads(body)["error"]
        assert get(worker, "/accounts/sec-acct")[0] == 401
        assert get(worker, "/table/")[0] == 404  # Faust's table pages are off

        # models: trained offline, imported (PLAIN), exported again through Kafka
        bundle, exported = tmp_path / "models.json", tmp_path / "exported.json"
        ok(cli(env, "models", "train", str(sim / "events.jsonl"), "--out", str(bundle),
               "--quiet"))  # fmt: skip
        ok(cli({**env, "CHURNWATCH_KAFKA_SASL_MECHANISM": "PLAIN"}, "models", "import",
               str(bundle)))  # fmt: skip
        key = TEST_MODEL_KEY.encode()
        wanted = {kind: lrn.metrics()["examples"] for kind, lrn in load_bundle(
            bundle.read_bytes(), key).items()}  # fmt: skip
        deadline = time.monotonic() + 60
        while True:  # until the learner has snapshotted every imported model
            if cli(env, "models", "export", "--out", str(exported)).returncode == 0:
                got = load_bundle(exported.read_bytes(), key)
                if got.keys() == wanted.keys():
                    break
            assert time.monotonic() < deadline, worker.log()
            time.sleep(1)
        assert {kind: lrn.metrics()["examples"] for kind, lrn in got.items()} == wanted

        # code in a snapshot or an import is never run: both skipped and counted
        payload, marker = crafted_pickle
        evil, forged = b"CWLN\x02" + payload, b"CWLN\x03" + bytes(32) + payload
        producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap_servers,
                                 **client_config(s))  # fmt: skip
        for raw in (evil, forged):
            snapshot = base64.b64encode(raw).decode()
            producer.send(
                s.training_topic,
                partition=0,
                value=orjson.dumps({"model_import": "churn", "snapshot": snapshot}),
            )
            producer.send(s.models_topic, key=b'"churn"', value=raw)  # fmt: skip
        producer.flush()
        producer.close()
        deadline = time.monotonic() + 60
        while skipped(worker, "training", "bad_signature") < 2:
            assert time.monotonic() < deadline, worker.log()
            time.sleep(0.5)
        # (the worker that owns the models table does not read its changelog back until it
        # restarts: tests/unit/test_model_cache.py feeds ModelCache the same records)
        refused = cli(env, "models", "export", "--out", str(tmp_path / "again.json"))
        assert "skipping churn: signature does not match the model key" in refused.stderr
        assert not marker.exists()
    finally:
        worker.stop()
    log = (tmp_path / "worker.log").read_text()
    assert env["CHURNWATCH_KAFKA_PASSWORD"] not in log and TOKEN not in log


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"CHURNWATCH_KAFKA_PASSWORD": "wrong-password-123"},
         "Kafka refused the login of user churnwatch (SCRAM-SHA-512): check"),
        ({"CHURNWATCH_KAFKA_CA_FILE": ""},
         "the TLS certificate of Kafka at 127.0.0.1:"),
    ],
)  # fmt: skip
def test_a_wrong_password_or_an_untrusted_certificate_is_one_clear_line(env, change, message):
    env = {**env, **change}
    for command in (["topics"], ["worker"], ["simulate", "--kafka", "--accounts", "2"]):
        done = cli(env, *command)
        assert done.returncode == 1, (command, done.stderr[-3000:])
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (command, done.stderr[-3000:])
        assert "wrong-password-123" not in done.stderr
