"""Account state on disk: a worker restarted on its data dir recovers from its local
RocksDB store, replaying only the changelog tail, and loses nothing."""

from __future__ import annotations

import signal

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
    written = first.metrics()["churnwatch_state_writes_total"]
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
