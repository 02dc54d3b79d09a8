"""churnwatch worker processes for tests and benchmarks, isolated from each other.

:func:`isolated_env` gives a worker its own app id (consumer group), uuid-suffixed
topic names, data dir and short group timings (the first consumer-group join then
takes ~3 s instead of ~30 s: session timeout 6 s, heartbeat 1.5 s; DESIGN.md).
:class:`WorkerProc` runs ``python -m streams worker`` with such an environment and
waits for it through its web port (``/readyz``, ``/metrics``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
from kafka import KafkaConsumer, TopicPartition

from streams.demo import scrape
from streams.devbroker import free_port
from streams.settings import Settings

TOPIC_FIELDS = (
    "subscription_topic", "usage_topic", "dead_letter_topic", "scores_topic",
    "alerts_topic", "training_topic", "account_events_topic",
)  # fmt: skip


# the model snapshot key of test and benchmark workers (a real deployment sets a secret one)
TEST_MODEL_KEY = "churnwatch-test-model-key-not-a-secret"
# ... and their pseudonym key (models.privacy)
TEST_PSEUDONYM_KEY = "churnwatch-test-pseudonym-key-not-a-secret"


class WorkerError(AssertionError):
    """A worker did not start, answer or stop in time (an assertion failure in tests)."""


def isolated_env(bootstrap: str, data_dir: Path | str, run: str) -> dict[str, str]:
    """The environment less any CHURNWATCH_* setting, plus a worker of its own named ``run``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURNWATCH_")}
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "CHURNWATCH_APP_ID": f"churnwatch-test-{run}",
            "CHURNWATCH_DATA_DIR": str(data_dir),
            "CHURNWATCH_PARTITIONS": "4",
            "CHURNWATCH_SESSION_TIMEOUT_S": "6",
            "CHURNWATCH_HEARTBEAT_INTERVAL_S": "1.5",
            "CHURNWATCH_REBALANCE_TIMEOUT_S": "10",
            # a recovery that reads nothing is started again after 10 s, not 30 s
            "CHURNWATCH_RECOVERY_STALL_S": "10",
            "CHURNWATCH_LOG_LEVEL": "info",
            "CHURNWATCH_MODEL_KEY": TEST_MODEL_KEY,
            "CHURNWATCH_PSEUDONYM_KEY": TEST_PSEUDONYM_KEY,
        }
    )
    for field_name in TOPIC_FIELDS:
        default = getattr(Settings(), field_name)
        env[Settings.env_name(field_name)] = f"{default}-{run}"
    return env


@dataclass
class WorkerProc:
    settings: Settings
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> WorkerProc:
        """Start the process without waiting for it (see :meth:`wait_ready`)."""
        self.port = free_port()
        self.env["CHURNWATCH_WEB_PORT"] = str(self.port)
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams", "worker"], env=self.env, stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        return self

    def ready(self) -> bool:
        """Whether ``/readyz`` says 200 now; raises if the process has exited."""
        assert self.proc is not None, "launch() first"
        if self.proc.poll() is not None:
            raise WorkerError(f"worker exited {self.proc.returncode}:\n{self.log()}")
        try:
            with urllib.request.urlopen(self.url + "/readyz", timeout=1) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = 90.0) -> WorkerProc:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready():
                return self
            time.sleep(0.3)
        raise WorkerError(f"worker not ready within {timeout}s:\n{self.log()}")

    def start(self, timeout: float = 90.0) -> WorkerProc:
        return self.launch().wait_ready(timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise WorkerError(f"worker did not stop within {timeout}s:\n{self.log()}") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def metrics(self, *names: str) -> dict[str, float]:
        """The worker's /metrics summed by sample name; only ``names`` when given."""
        query = "?" + urlencode([("name[]", name) for name in names]) if names else ""
        return scrape(self.url + "/metrics" + query)

    def get_json(self, path: str) -> tuple[int, dict]:  # type: ignore[type-arg]
        """GET ``path``, with the worker's ``CHURNWATCH_API_TOKEN`` as bearer token if set."""
        token = self.env.get("CHURNWATCH_API_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            request = urllib.request.Request(self.url + path, headers=headers)
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, orjson.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, orjson.loads(exc.read() or b"{}")

    def wait_metric(self, name: str, at_least: float, timeout: float = 90.0) -> float:
        deadline = time.monotonic() + timeout
        value = 0.0
        while time.monotonic() < deadline:
            try:
                value = self.metrics().get(name, 0.0)
            except OSError:
                value = 0.0
            if value >= at_least:
                return value
            time.sleep(0.5)
        raise WorkerError(f"{name} reached {value}, wanted >= {at_least}\n{self.log()}")


def read_all(
    bootstrap: str, topic: str, expect: int | None = None, timeout: float = 30.0, **config: Any
) -> list:  # type: ignore[type-arg]
    """Every message of a topic from the beginning (waits for ``expect`` messages);
    ``config``: more consumer settings (``streams.kafka_security.client_config``)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, **config
    )
    parts = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in parts]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    out: list = []  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            out.extend(records)
        if expect is None:
            ends = consumer.end_offsets(tps)
            if all(consumer.position(tp) >= ends[tp] for tp in tps):
                break
        elif len(out) >= expect:
            break
    consumer.close()
    return out
