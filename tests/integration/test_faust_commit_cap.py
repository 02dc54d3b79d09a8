"""faust-streaming #606 on a real broker: a commit never passes a message still in flight.

A stream holds one message of partition 0 and acknowledges every other one. Once a
later message of partition 1 is committed (so Faust has run a commit round after every
acknowledgement of partition 0, twice), partition 0's committed offset must still be the held
message's: a crash re-delivers it. Faust as shipped commits past it (the ``stock`` case
shows it; when upstream fixes #606 that case fails and the patch can go).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
HOLD = 3


def committed(bootstrap: str, group: str, topic: str, partition: int) -> int | None:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return consumer.committed(TopicPartition(topic, partition))
    finally:
        consumer.close()


def wait_for(what: str, check, proc: subprocess.Popen, log: Path, timeout: float = 120):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"probe exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        if value := check():
            return value
        time.sleep(0.3)
    raise AssertionError(f"no {what} within {timeout:.0f}s:\n{log.read_text()[-3000:]}")


@pytest.mark.parametrize(("mode", "expected"), [("patched", HOLD), ("stock", 10)])
def test_a_commit_never_passes_a_message_in_flight(
    kafka_bootstrap: str, new_topic, tmp_path: Path, mode: str, expected: int
) -> None:
    topic = new_topic("compat", partitions=2)
    group = f"compat-{uuid.uuid4().hex[:10]}"
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for i in range(10):
        producer.send(topic, value=b"m%d" % i, partition=0)
    producer.flush()
    log = tmp_path / "probe.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.faust_probe", kafka_bootstrap, topic,
             group, str(HOLD), mode, str(tmp_path / "data")],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env={**os.environ},
        )  # fmt: skip
    try:
        wait_for("partition 0 read", lambda: "seen 0 9" in log.read_text(), proc, log)
        # two commit rounds after every acknowledgement of partition 0 (Faust as shipped
        # needs two to pass the held message: first up to it, then over it)
        for n in (1, 2):
            producer.send(topic, value=b"later", partition=1)
            producer.flush()
            wait_for(
                f"commit {n} of partition 1",
                lambda n=n: committed(kafka_bootstrap, group, topic, 1) == n,
                proc,
                log,
            )
        assert committed(kafka_bootstrap, group, topic, 0) == expected
    finally:
        proc.kill()
        proc.wait()
        producer.close()
