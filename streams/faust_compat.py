"""Calls into Faust internals, each with the reason and a test that fails if Faust
changes under it (``tests/unit/test_faust_compat.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

# --- accounts table on RocksDB (streams.agents.accounts) ----------------------------
#
# churnwatch writes account states to the changelog itself, in bulk (Faust's per-key
# ``Table.__setitem__`` costs 300-500 µs), so Faust never learns the changelog offset
# its local RocksDB store holds, and a restart would replay the whole changelog. These
# write the states and that offset to the partition's database in one RocksDB write
# batch, in the format ``faust.stores.rocksdb.Store.persisted_offset`` reads, and read
# states straight from the partition's database (the store's own ``_get`` searches
# every partition when the key's partition is not in its small index).


class RocksStates:
    """The accounts table's RocksDB partition databases (faust ``stores.rocksdb.Store``)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def get(self, partition: int, key: bytes, *, assigned: bool = True) -> bytes | None:
        """``assigned``: the partition is this worker's (its database is opened if Faust
        has not yet); else read it only if Faust has it open."""
        db = self.store._db_for_partition(partition) if assigned else self.store._dbs.get(partition)
        return None if db is None else db.get(key)

    def keys(self, partition: int) -> Iterator[bytes]:
        for key in self.store._db_for_partition(partition).keys():
            if key != self.store.offset_key:
                yield key

    def write(self, partition: int, items: list[tuple[bytes, bytes]], offset: int | None) -> None:
        """States and the changelog offset that holds them, atomically."""
        from rocksdict import WriteBatch

        batch = WriteBatch(raw_mode=True)
        for key, raw in items:
            batch.put(key, raw)
        if offset is not None:
            batch.put(self.store.offset_key, str(offset).encode())
        self.store._db_for_partition(partition).write(batch)


def rocksdb_states(table: Any) -> RocksStates | None:
    """The table's RocksDB partition databases, or None for another store."""
    try:
        from faust.stores.rocksdb import Store
    except ImportError:  # pragma: no cover - faust always ships it
        return None
    store = getattr(table, "data", None)
    return RocksStates(store) if isinstance(store, Store) else None


def count_recovered(table: Any, count: Callable[[int], None]) -> None:
    """Call ``count(n)`` for every batch of ``n`` changelog records Faust's recovery
    applies to ``table`` (``Collection.apply_changelog_batch``, called only by
    ``faust.tables.recovery.Recovery``)."""
    apply = table.apply_changelog_batch

    def counted(batch: Iterable[Any]) -> None:
        batch = list(batch)
        count(len(batch))
        apply(batch)

    table.apply_changelog_batch = counted


# --- end of accounts table on RocksDB -----------------------------------------------
