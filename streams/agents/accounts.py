"""Account agent: folds each account's events into its state, in event time.

Reads the internal account-events topic (JSON arrays, already keyed by account
partition). Live states are plain objects in memory; after each buffer of
messages the states that changed are written once each to the ``accounts`` table
(changelog-backed, co-partitioned with the input) — *before* the buffer's
offsets are acknowledged, so a crash never commits input whose state was not
persisted, and a replayed event is dropped by its ``event_id``.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from models.account import (
    AccountState,
    StateConfig,
    apply_event,
    dump_state,
    load_state,
    new_account,
)
from models.contract import Event, decode_batch
from models.features import churn_features
from models.household import household_features
from streams.app import Runtime, partition_for

log = logging.getLogger(__name__)


class AccountStore:
    """Live account states of this worker's partitions, persisted in bulk.

    ``table`` is a Faust table (bytes -> bytes) whose changelog is partitioned by
    the account key exactly like the account-events topic.
    """

    def __init__(self, table: dict[bytes, bytes] | object, partitions: int) -> None:
        self.table = table
        self.partitions = partitions
        self.live: dict[str, AccountState] = {}
        self.dirty: set[str] = set()
        self.clocks: dict[int, int] = defaultdict(int)  # partition -> highest event time seen

    def get(self, account_id: str) -> AccountState:
        state = self.live.get(account_id)
        if state is None:
            raw = self.table.get(account_id.encode())  # type: ignore[attr-defined]
            state = load_state(raw) if raw else new_account(account_id)
            self.live[account_id] = state
        return state

    def peek(self, account_id: str) -> AccountState | None:
        """The state if this worker holds it (live or persisted), without creating one."""
        state = self.live.get(account_id)
        if state is None:
            raw = self.table.get(account_id.encode())  # type: ignore[attr-defined]
            state = load_state(raw) if raw else None
        return state

    def flush(self) -> int:
        for account_id in self.dirty:
            self.table[account_id.encode()] = dump_state(self.live[account_id])  # type: ignore[index]
        n = len(self.dirty)
        self.dirty.clear()
        return n

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop live states of revoked partitions (they reload from the table)."""
        gone = set(partitions)
        for account_id in [a for a in self.live if partition_for(a, self.partitions) in gone]:
            del self.live[account_id]
            self.dirty.discard(account_id)
        for p in gone:
            self.clocks.pop(p, None)


def apply_batch(
    store: AccountStore, partition: int, events: list[Event], cfg: StateConfig
) -> tuple[list[str], int, int]:
    """Apply events of one partition; return (accounts touched, duplicates, late drops)."""
    touched: list[str] = []
    duplicates = late = 0
    for event in events:
        clock = store.clocks[partition] = max(store.clocks[partition], event.ts)
        state = store.get(event.account_id)
        if event.event_id in state.seen_ids:
            duplicates += 1
        elif apply_event(state, event, clock_ms=clock, cfg=cfg):
            state.events_applied += 1
            store.dirty.add(event.account_id)
            touched.append(event.account_id)
        else:
            late += 1
    return touched, duplicates, late


def describe(state: AccountState, clock_ms: int) -> dict[str, Any]:
    """The account lookup document (``/accounts/{id}``)."""
    now = max(clock_ms, state.max_ts)
    return {
        "account_id": state.account_id,
        "status": state.status,
        "plan": state.plan,
        "price": state.price,
        "max_streams": state.max_streams,
        "first_ts": state.first_ts,
        "last_ts": state.max_ts,
        "events_applied": state.events_applied,
        "features": {
            "churn": churn_features(state, now),
            "sharing": household_features(state.household, now, max_streams=state.max_streams),
        },
    }


def register(rt: Runtime) -> None:
    s, m, app = rt.settings, rt.metrics, rt.app
    cfg = StateConfig(
        lateness_ms=int(s.allowed_lateness_s * 1000),
        session_expiry_ms=int(s.session_expiry_s * 1000),
        horizon_ms=int(s.churn_horizon_days * 86_400_000),
    )
    table = app.Table(
        "accounts",
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=s.partitions,
        use_partitioner=True,
        help="Account state (models.account), written in bulk after each buffer",
    )
    store = AccountStore(table, s.partitions)
    rt.tables["accounts"] = table
    rt.services["store"] = store

    def lookup(account_id: str) -> dict[str, Any] | None:
        state = store.peek(account_id)
        if state is None:
            return None
        return describe(state, store.clocks.get(partition_for(account_id, s.partitions), 0))

    rt.services["lookup"] = lookup

    async def on_revoked(sender: object, revoked: set, **kwargs: object) -> None:  # type: ignore[type-arg]
        store.forget(tp.partition for tp in revoked if tp.topic == s.account_events_topic)

    app.on_partitions_revoked.connect(on_revoked)

    async def accounts(stream):  # type: ignore[no-untyped-def]
        async for batch in stream.take_events(s.ingest_batch_max, within=s.ingest_batch_within_s):
            started = time.monotonic()
            now_s = time.time()
            for ev in batch:
                events = decode_batch(ev.message.value)
                touched, dups, late = apply_batch(store, ev.message.partition, events, cfg)
                m.events_applied.inc(len(touched))
                m.duplicates_dropped.inc(dups)
                m.late_dropped.inc(late)
                for event in events:
                    m.event_time_lag.observe(max(0.0, now_s - event.ts / 1000))
            t_flush = time.monotonic()
            m.state_writes.inc(store.flush())
            m.state_flush_seconds.observe(time.monotonic() - t_flush)
            m.accounts.set(len(store.live))
            for p, clock in store.clocks.items():
                m.watermark.labels(str(p)).set((clock - cfg.lateness_ms) / 1000)
            m.processing_latency.observe(time.monotonic() - started)

    app.agent(rt.topics["account_events"], name="churnwatch.accounts")(accounts)
