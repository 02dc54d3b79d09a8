"""streams.faust_compat, accounts table on RocksDB: fails if Faust's RocksDB store changes
under the calls churnwatch makes into it (no broker: the app is never started)."""

from __future__ import annotations

import faust
from faust.events import Event
from faust.types import TP
from faust.types.tuples import Message

from streams.agents.accounts import ROCKSDB_OPTIONS, STORES
from streams.faust_compat import RocksStates, count_recovered, rocksdb_states


def accounts_table(tmp_path, store: str = "rocksdb"):
    app = faust.App("compat-test", datadir=str(tmp_path), store="memory://", autodiscover=False)
    return app, app.Table("accounts", default=None, key_type=bytes, value_type=bytes,
                          partitions=2, use_partitioner=True, store=STORES[store],
                          options=dict(ROCKSDB_OPTIONS))  # fmt: skip


def test_states_and_the_changelog_offset_are_written_where_faust_reads_them(tmp_path):
    app, table = accounts_table(tmp_path)
    states = rocksdb_states(table)
    assert isinstance(states, RocksStates)
    assert table.data.rocksdb_options.block_cache_size == ROCKSDB_OPTIONS["block_cache_size"]
    tp = TP(table.changelog_topic.get_topic_name(), 1)
    assert table.data.persisted_offset(tp) is None
    states.write(1, [(b"a", b"state-a"), (b"b", b"state-b")], 41)
    assert table.data.persisted_offset(tp) == 41  # what Faust's recovery seeks to
    assert states.get(1, b"a") == b"state-a"
    assert states.get(0, b"a", assigned=False) is None and 0 not in table.data._dbs
    assert sorted(states.keys(1)) == [b"a", b"b"]  # not Faust's offset key
    assert table.data.partition_path(1).is_relative_to(tmp_path)
    assert rocksdb_states(accounts_table(tmp_path / "m", "memory")[1]) is None


def test_recovered_changelog_records_are_counted_and_applied(tmp_path):
    app, table = accounts_table(tmp_path)
    counted: list[int] = []
    count_recovered(table, counted.append)
    topic = table.changelog_topic.get_topic_name()
    msgs = [Message(topic, 0, offset, 0.0, 0, {}, key, value, None)
            for offset, (key, value) in enumerate([(b"a", b"1"), (b"b", b"2"), (b"a", b"3")])]  # fmt: skip
    table.apply_changelog_batch([Event(app, m.key, m.value, {}, m) for m in msgs])
    assert counted == [3]
    states = RocksStates(table.data)
    assert states.get(0, b"a") == b"3" and table.data.persisted_offset(TP(topic, 0)) == 2
