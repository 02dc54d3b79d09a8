"""A table recovery that stops reading does not leave the worker unready for good
(``streams/agents/recovery.py``).

The stall is made for real: a transactional producer (a mirror, a restore tool) writes
one account's state again to the accounts changelog, so the partition ends in a
transaction's commit marker. Faust's at-least-once recovery waits for a record at the
marker's offset that never comes: without the watchdog the worker is never ready.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from kafka import KafkaConsumer, TopicPartition

from streams.demo import scrape_samples
from streams.devworker import WorkerError
from tests.integration.conftest import applied, logins, produce

pytestmark = [pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
ACCOUNTS, EVENTS = 40, 5


def end_with_a_transaction_marker(bootstrap: str, changelog: str) -> None:
    """Write a changelog partition's last record again, in a committed transaction."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=3000
    )
    tps = [TopicPartition(changelog, p) for p in consumer.partitions_for_topic(changelog)]
    consumer.assign(tps)
    consumer.seek_to_beginning()
    last = {}
    for record in consumer:
        last[record.partition] = record
    consumer.close()
    assert last, "the first worker wrote no account state"
    record = last[min(last)]

    async def rewrite() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, transactional_id=f"mirror-{changelog}",
            enable_idempotence=True,
        )  # fmt: skip
        await producer.start()
        try:
            async with producer.transaction():
                await producer.send_and_wait(
                    changelog, key=record.key, value=record.value, partition=record.partition
                )
        finally:
            await producer.stop()

    asyncio.run(rewrite())


def stalls(worker) -> dict[str, float]:
    """``churnwatch_recovery_stalls_total`` of a worker, by action."""
    return {labels["action"]: value for name, labels, value in scrape_samples(worker.url + "/metrics")
            if name == "churnwatch_recovery_stalls_total"}  # fmt: skip


@pytest.fixture()
def deployed(worker_factory, kafka_bootstrap) -> str:
    """A deployment whose worker applied every event and stopped; its app id."""
    first = worker_factory().start()
    produce(kafka_bootstrap, first.settings.usage_topic, logins(ACCOUNTS, 0, EVENTS))
    first.wait_metric("churnwatch_events_applied_total", ACCOUNTS * EVENTS)
    assert first.stop(signal.SIGTERM) == 0, first.log()
    return first.settings.app_id


@pytest.fixture()
def marked(deployed, kafka_bootstrap) -> str:
    """... whose accounts changelog ends in a transaction marker."""
    end_with_a_transaction_marker(kafka_bootstrap, f"{deployed}-accounts-changelog")
    return deployed


def hooked(tmp_path: Path, code: str) -> str:
    """A PYTHONPATH whose ``sitecustomize`` runs ``code`` in the worker before it starts."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(code)
    return os.pathsep.join([str(hook), str(REPO)])


def test_a_changelog_ending_in_a_transaction_marker_is_read_to_its_end(
    marked, worker_factory, tmp_path
):
    # without the watchdog: never ready (an empty data dir, so the whole changelog is read)
    stuck = worker_factory(
        CHURNWATCH_RECOVERY_STALL_S="0", CHURNWATCH_DATA_DIR=str(tmp_path / "stuck")
    )
    with pytest.raises(WorkerError, match="not ready within 25"):
        stuck.start(timeout=25)
    assert stuck.stop(signal.SIGTERM) == 0, stuck.log()

    # with it: ready, the partition counted as read, every account's state there
    w = worker_factory(CHURNWATCH_RECOVERY_STALL_S="3", CHURNWATCH_DATA_DIR=str(tmp_path / "w"))
    t = time.monotonic()
    w.start(timeout=60)
    ready_s = time.monotonic() - t
    assert stalls(w) == {"read_to_end": 1, "restarted": 0, "gave_up": 0}, w.log()
    assert "transaction markers, not data): counted as read" in w.log()
    assert set(applied(w, ACCOUNTS).values()) == {EVENTS}, f"ready after {ready_s:.1f}s"


def test_a_recovery_that_restarts_in_vain_exits_for_its_supervisor(
    marked, worker_factory, tmp_path
):
    """The same stall, with the watchdog blind to markers (``read_to_end`` replaced by a
    ``sitecustomize``): it starts the recovery again three times, then exits with an
    error instead of staying unready."""
    blind = "import streams.agents.recovery as r\nr.read_to_end = lambda position, end: False\n"
    w = worker_factory(
        CHURNWATCH_RECOVERY_STALL_S="2", CHURNWATCH_DATA_DIR=str(tmp_path / "w"),
        PYTHONPATH=hooked(tmp_path, blind),
    )  # fmt: skip
    w.launch()
    assert w.proc is not None
    code = w.proc.wait(timeout=120)
    log = w.log()
    assert code != 0, log
    for n in (1, 2, 3):
        assert f"starting it again ({n} of 3)" in log, log
    assert "exiting, for the orchestrator to start the worker again" in log, log


# Faust's recovery resumes its changelog partitions with Consumer.resume_partitions; this
# keeps one of them paused the first time, as a fetch that never resumed would
KEEP_ONE_PAUSED = """
from faust.transport.consumer import Consumer
resume, kept = Consumer.resume_partitions, []
def resume_partitions(self, tps):
    tps = set(tps)
    changelogs = sorted(tp for tp in tps if tp.topic.endswith("-accounts-changelog"))
    if changelogs and not kept:
        kept.append(changelogs[0])
        tps.discard(changelogs[0])
        print("test hook: kept", changelogs[0], "paused", flush=True)
    return resume(self, tps)
Consumer.resume_partitions = resume_partitions
"""


def test_a_recovery_that_stopped_reading_is_started_again_and_completes(
    deployed, worker_factory, tmp_path
):
    """A changelog partition left paused (``KEEP_ONE_PAUSED``): nothing arrives from it,
    its position stays behind its end. The watchdog starts the recovery again, which
    resumes it, and the worker is ready with every account's state."""
    w = worker_factory(
        CHURNWATCH_RECOVERY_STALL_S="3", CHURNWATCH_DATA_DIR=str(tmp_path / "w"),
        PYTHONPATH=hooked(tmp_path, KEEP_ONE_PAUSED),
    )  # fmt: skip
    w.start(timeout=60)
    log = w.log()
    assert "test hook: kept" in log, log
    assert "starting it again (1 of 3)" in log, log
    assert stalls(w) == {"read_to_end": 0, "restarted": 1, "gave_up": 0}, log
    assert set(applied(w, ACCOUNTS).values()) == {EVENTS}
