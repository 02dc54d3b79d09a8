"""A worker whose broker is unreachable waits with a visible, rate-limited log line, and
its liveness endpoint answers meanwhile (a liveness probe must not restart it)."""

import os
import subprocess
import sys
import time

import pytest

from streams.devbroker import free_port
from streams.devworker import TEST_MODEL_KEY, TEST_PSEUDONYM_KEY
from tests.integration.conftest import http_get

pytestmark = pytest.mark.e2e


def test_worker_waits_for_the_broker_without_crashing(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURNWATCH_")}
    env.update(KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",
               CHURNWATCH_DATA_DIR=str(tmp_path), CHURNWATCH_WEB_PORT=str(free_port()),
               CHURNWATCH_MODEL_KEY=TEST_MODEL_KEY,
               CHURNWATCH_PSEUDONYM_KEY=TEST_PSEUDONYM_KEY)  # fmt: skip
    log = tmp_path / "worker.log"
    proc = subprocess.Popen([sys.executable, "-m", "streams", "worker"], env=env,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{env['CHURNWATCH_WEB_PORT']}"
    try:
        deadline = time.monotonic() + 14
        live = None
        while time.monotonic() < deadline:
            try:
                live = http_get(url + "/healthz")
                break
            except OSError:  # not listening yet
                time.sleep(0.1)
        assert live is not None and live[0] == 200, log.read_text()
        assert b"waiting for Kafka" in live[1]
        status, body = http_get(url + "/readyz")
        assert status == 503 and b"waiting for Kafka" in body, (status, body)
        time.sleep(max(0.0, deadline - time.monotonic()))
        assert proc.poll() is None, log.read_text()
        assert http_get(url + "/healthz")[0] == 200  # still waiting, still alive
    finally:
        proc.kill()
        proc.wait()
    waiting = [line for line in log.read_text().splitlines() if "waiting for Kafka" in line]
    assert 1 <= len(waiting) <= 2, log.read_text()  # one line per 10 s, not one per attempt
    assert "Traceback" not in log.read_text()
