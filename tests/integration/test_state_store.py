"""Account state on disk: a worker restarted on its data dir recovers from its local
RocksDB store, replaying only the changelog tail, and loses nothing."""

from __future__ import annotations

import signal
import time

import pytest

from tests.integration.conftest import applied, logins, produce

pytestmark = [pytest.mark.integration]

ACCOUNTS, EVENTS = 200, 10


def test_a_restart_replays_only_the_changelog_tail_and_loses_nothing(
    worker_factory, kafka_bootstrap, tmp_path
):
    first = worker_factory().start()
    s = first.settings
    assert s.store == "rocksdb"
    produce(kafka_bootstrap, s.usage_topic, logins(ACCOUNTS, 0, EVENTS))
    first.wait_metric("churnwatch_events_applied_total", ACCOUNTS * EVENTS)
    written = first.wait_metric("churnwatch_state_writes_total", ACCOUNTS)
    assert first.stop(signal.SIGTERM) == 0, first.log()
    assert list((tmp_path / "data").rglob("*accounts*-*.db")), "no RocksDB partition databases"

    second = worker_factory().start()  # same data dir
    recovered = second.metrics()["churnwatch_state_recovered_records_total"]
    # Faust re-reads the record at the persisted offset: at most one per partition
    assert recovered <= s.partitions < ACCOUNTS <= written
    assert set(applied(second, ACCOUNTS).values()) == {EVENTS}
    produce(kafka_bootstrap, s.usage_topic, logins(ACCOUNTS, EVENTS, EVENTS + 1))
    second.wait_metric("churnwatch_events_applied_total", ACCOUNTS)
    assert set(applied(second, ACCOUNTS).values()) == {EVENTS + 1}
    assert second.stop(signal.SIGTERM) == 0, second.log()

    # the same worker without its local store (memory://) replays the whole changelog
    third = worker_factory(CHURNWATCH_STORE="memory", CHURNWATCH_DATA_DIR=str(tmp_path / "d3"))
    third.start()
    assert third.metrics()["churnwatch_state_recovered_records_total"] >= ACCOUNTS
    assert set(applied(third, ACCOUNTS).values()) == {EVENTS + 1}


def test_states_are_written_behind_and_a_kill_before_the_write_loses_nothing(
    worker_factory, kafka_bootstrap
):
    """``CHURNWATCH_STATE_FLUSH_S``: an account busy in many buffers is written once per
    period, and the messages of its events are acknowledged only then, so a worker killed
    before the write has them read again, and applied once, by the next one."""
    first = worker_factory(CHURNWATCH_STATE_FLUSH_S="120").start()
    s = first.settings
    for i in range(5):  # five buffers (the ingest waits 0.1 s for more)
        produce(kafka_bootstrap, s.usage_topic, logins(2, i, i + 1))
        time.sleep(0.4)
    first.wait_metric("churnwatch_events_applied_total", 10)
    assert applied(first, 2) == {"acc-0": 5, "acc-1": 5}
    assert first.metrics()["churnwatch_state_writes_total"] == 0  # within the period
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL

    second = worker_factory(CHURNWATCH_STATE_FLUSH_S="0.5").start()  # the same data dir
    second.wait_metric("churnwatch_events_applied_total", 10)  # read again
    second.wait_metric("churnwatch_state_writes_total", 2)
    assert applied(second, 2) == {"acc-0": 5, "acc-1": 5}  # once each
    produce(kafka_bootstrap, s.usage_topic, logins(2, 5, 6))
    second.wait_metric("churnwatch_events_applied_total", 12)
    assert second.stop(signal.SIGTERM) == 0, second.log()  # a stop writes what waits

    third = worker_factory(CHURNWATCH_STATE_FLUSH_S="120").start()
    assert applied(third, 2) == {"acc-0": 6, "acc-1": 6}
    assert third.metrics()["churnwatch_events_applied_total"] == 0  # nothing read again
