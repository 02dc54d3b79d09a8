"""Integration fixtures: churnwatch worker processes against the real broker.

Every worker gets its own app id (consumer group), uuid topic names, data dir
and web port, so tests never see each other's data. Group timings are tuned so
that the first consumer-group join takes ~3 s instead of ~30 s: session timeout
6 s, heartbeat 2 s (DESIGN.md: the first join waits about half the session timeout).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streams.demo import scrape
from streams.devbroker import free_port
from streams.settings import Settings

TOPIC_FIELDS = (
    "subscription_topic", "usage_topic", "dead_letter_topic", "scores_topic",
    "alerts_topic", "training_topic", "account_events_topic",
)  # fmt: skip


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

    def start(self, timeout: float = 90.0) -> WorkerProc:
        self.port = free_port()
        self.env["CHURNWATCH_WEB_PORT"] = str(self.port)
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams", "worker"], env=self.env, stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        raise AssertionError(f"worker not ready within {timeout}s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"worker did not stop within {timeout}s:\n{self.log()}") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def metrics(self) -> dict[str, float]:
        return scrape(self.url + "/metrics")

    def get_json(self, path: str) -> tuple[int, dict]:  # type: ignore[type-arg]
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as resp:
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
        raise AssertionError(f"{name} reached {value}, wanted >= {at_least}\n{self.log()}")


@pytest.fixture()
def worker_env(kafka_bootstrap: str, tmp_path: Path) -> dict[str, str]:
    """Environment for a worker on uuid-named topics (tests may override entries)."""
    run = uuid.uuid4().hex[:10]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURNWATCH_")}
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "CHURNWATCH_APP_ID": f"churnwatch-test-{run}",
            "CHURNWATCH_DATA_DIR": str(tmp_path / "data"),
            "CHURNWATCH_PARTITIONS": "4",
            "CHURNWATCH_SESSION_TIMEOUT_S": "6",
            "CHURNWATCH_HEARTBEAT_INTERVAL_S": "1.5",
            "CHURNWATCH_REBALANCE_TIMEOUT_S": "10",
            "CHURNWATCH_LOG_LEVEL": "info",
        }
    )
    for field_name in TOPIC_FIELDS:
        default = getattr(Settings(), field_name)
        env[Settings.env_name(field_name)] = f"{default}-{run}"
    return env


@pytest.fixture()
def worker_factory(
    worker_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., WorkerProc]]:
    started: list[WorkerProc] = []

    def make(**overrides: str) -> WorkerProc:
        env = {**worker_env, **overrides}
        w = WorkerProc(Settings.from_env(env), env, tmp_path / f"worker{len(started)}.log")
        started.append(w)
        return w

    yield make
    for w in started:
        try:
            w.stop(signal.SIGKILL)
        except AssertionError:
            pass


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    for key, value in messages:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def read_all(bootstrap: str, topic: str, expect: int | None = None, timeout: float = 30.0) -> list:  # type: ignore[type-arg]
    """Every message of a topic from the beginning (waits for ``expect`` messages)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
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
