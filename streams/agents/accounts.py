"""Account agent: a thin loop around ``models.engine``.

Reads the internal account-events topic (JSON arrays, partitioned by account).
Live states are plain objects in memory; for each buffer of messages it applies
the events (idempotent by ``event_id``, in event time), re-scores the accounts
touched, sweeps quiet accounts once per event-time day, and publishes scores,
alerts and training examples. The states that changed are then written once
each to the ``accounts`` table (changelog-backed, co-partitioned with the input)
*before* the buffer is acknowledged, so a crash never commits input whose state
was not persisted, and a re-delivered event is dropped by its ``event_id``.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import orjson

from models.account import DAY_MS, AccountState, load_state, new_account
from models.contract import Event, decode_batch
from models.engine import EngineConfig, Models, Outputs, ingest, risk, score, sweep
from models.features import churn_features
from models.household import household_features
from streams.agents.learner import ModelCache
from streams.app import Runtime, partition_for

log = logging.getLogger(__name__)


class AccountStore:
    """Live account states of this worker's partitions, persisted in bulk.

    ``table`` is a Faust table (bytes -> bytes) whose changelog is partitioned by
    the account key exactly like the account-events topic.
    """

    def __init__(self, table: Any, partitions: int) -> None:
        self.table = table
        self.partitions = partitions
        self.live: dict[str, AccountState] = {}
        self.by_partition: dict[int, set[str]] = defaultdict(set)
        self.loaded: set[int] = set()
        self.dirty: set[str] = set()
        self.clocks: dict[int, int] = defaultdict(int)  # partition -> highest event time
        self.next_sweep: dict[int, int] = {}

    def load_partition(self, partition: int) -> None:
        """Bring every persisted account of ``partition`` into memory (once)."""
        if partition in self.loaded:
            return
        for key, raw in list(self.table.items()):
            account_id = key.decode()
            if account_id not in self.live and partition_for(account_id, self.partitions) == partition:
                state = load_state(raw)
                self.live[account_id] = state
                self.by_partition[partition].add(account_id)
                self.clocks[partition] = max(self.clocks[partition], state.max_ts)
        self.loaded.add(partition)

    def get(self, account_id: str, partition: int) -> AccountState:
        state = self.live.get(account_id)
        if state is None:
            state = self.live[account_id] = new_account(account_id)
            self.by_partition[partition].add(account_id)
        return state

    def peek(self, account_id: str) -> AccountState | None:
        """The state if this worker holds it (live or persisted), without creating one."""
        state = self.live.get(account_id)
        if state is None:
            raw = self.table.get(account_id.encode())
            state = load_state(raw) if raw else None
        return state

    def flush(self) -> int:
        from models.account import dump_state

        for account_id in self.dirty:
            self.table[account_id.encode()] = dump_state(self.live[account_id])
        n = len(self.dirty)
        self.dirty.clear()
        return n

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop live states of revoked partitions (they reload from the table)."""
        for p in set(partitions):
            for account_id in self.by_partition.pop(p, set()):
                self.live.pop(account_id, None)
                self.dirty.discard(account_id)
            self.loaded.discard(p)
            self.clocks.pop(p, None)
            self.next_sweep.pop(p, None)


def process(
    store: AccountStore, partition: int, events: list[Event], models: Models, cfg: EngineConfig,
    out: Outputs,
) -> tuple[int, int, int]:  # fmt: skip
    """Apply one partition's events, score what changed, sweep when a day passed.

    Returns (applied, duplicates, late drops).
    """
    store.load_partition(partition)
    touched: dict[str, AccountState] = {}
    applied = duplicates = late = 0
    for event in events:
        clock = store.clocks[partition] = max(store.clocks[partition], event.ts)
        state = store.get(event.account_id, partition)
        if event.event_id in state.seen_ids:
            duplicates += 1
        elif ingest(state, event, clock_ms=clock, cfg=cfg, out=out):
            state.events_applied += 1
            applied += 1
            touched[event.account_id] = state
        else:
            late += 1
    for state in touched.values():
        score(state, now_ms=state.max_ts, models=models, cfg=cfg, out=out)
    store.dirty.update(touched)
    clock = store.clocks[partition]
    due = store.next_sweep.setdefault(partition, clock - clock % DAY_MS + DAY_MS)
    if clock - cfg.state.lateness_ms >= due:
        for account_id in store.by_partition[partition]:
            if account_id not in touched:
                state = store.live[account_id]
                before = (len(out.examples), len(out.scores), len(out.alerts), risk(state).scored_ts)
                sweep(state, clock_ms=clock, models=models, cfg=cfg, out=out)
                after = (len(out.examples), len(out.scores), len(out.alerts), risk(state).scored_ts)
                if after != before:
                    store.dirty.add(account_id)
        store.next_sweep[partition] = clock - clock % DAY_MS + DAY_MS
    return applied, duplicates, late


def reason_label(feature: str) -> str:
    """Bounded metric label for a reason: open-ended per-action features fold into one."""
    return "action_*" if feature.startswith("action_") else feature


def describe(state: AccountState, clock_ms: int) -> dict[str, Any]:
    """The account lookup document (``/accounts/{id}``)."""
    now = max(clock_ms, state.max_ts)
    r = risk(state)
    return {
        "account_id": state.account_id,
        "status": state.status,
        "plan": state.plan,
        "price": state.price,
        "max_streams": state.max_streams,
        "first_ts": state.first_ts,
        "last_ts": state.max_ts,
        "events_applied": state.events_applied,
        "scores": {"churn": r.scores[0], "sharing": r.scores[1], "scored_ts": r.scored_ts},
        "models": {"churn": r.models[0], "sharing": r.models[1]},
        "recent_alerts": r.recent,
        "features": {
            "churn": churn_features(state, now),
            "sharing": household_features(state.household, now, max_streams=state.max_streams),
        },
    }


def engine_config(rt: Runtime) -> EngineConfig:
    from models.account import StateConfig
    from models.alerting import AlertConfig

    s = rt.settings
    return EngineConfig(
        state=StateConfig(
            lateness_ms=int(s.allowed_lateness_s * 1000),
            session_expiry_ms=int(s.session_expiry_s * 1000),
            horizon_ms=int(s.churn_horizon_days * DAY_MS),
        ),
        churn_alert=AlertConfig(s.churn_threshold, s.churn_reset),
        sharing_alert=AlertConfig(s.sharing_threshold, s.sharing_reset),
        score_delta=s.score_delta,
    )


def register(rt: Runtime) -> None:
    s, m, app = rt.settings, rt.metrics, rt.app
    cfg = engine_config(rt)
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
    model_cache: ModelCache = rt.services["models"]
    scores_topic, alerts_topic = rt.topics["scores"], rt.topics["alerts"]
    training_topic = rt.topics["training"]

    def lookup(account_id: str) -> dict[str, Any] | None:
        state = store.peek(account_id)
        if state is None:
            return None
        return describe(state, store.clocks.get(partition_for(account_id, s.partitions), 0))

    rt.services["lookup"] = lookup

    async def on_revoked(sender: object, revoked: set[Any], **kwargs: object) -> None:
        store.forget(tp.partition for tp in revoked if tp.topic == s.account_events_topic)

    app.on_partitions_revoked.connect(on_revoked)

    async def accounts(stream: Any) -> None:
        async for batch in stream.take_events(s.ingest_batch_max, within=s.ingest_batch_within_s):
            started = time.monotonic()
            now_s = time.time()
            models = model_cache.current()
            out = Outputs()
            for ev in batch:
                events = decode_batch(ev.message.value)
                applied, dups, late = process(store, ev.message.partition, events, models, cfg, out)
                m.events_applied.inc(applied)
                m.duplicates_dropped.inc(dups)
                m.late_dropped.inc(late)
                if events:
                    m.event_time_lag.observe(max(0.0, now_s - events[-1].ts / 1000))
            await publish(out)
            t_flush = time.monotonic()
            m.state_writes.inc(store.flush())
            m.state_flush_seconds.observe(time.monotonic() - t_flush)
            m.accounts.set(len(store.live))
            for p, clock in store.clocks.items():
                m.watermark.labels(str(p)).set((clock - cfg.state.lateness_ms) / 1000)
            m.processing_latency.observe(time.monotonic() - started)

    async def publish(out: Outputs) -> None:
        """Send every output, then wait until Kafka has them all.

        The state (with its alert episode counters) is written only after this,
        so a crash can repeat an alert (same ``alert_id``) but never lose one.
        """
        pending = []
        for msg in out.scores:
            key = msg["account_id"].encode()
            pending.append(await scores_topic.send(key=key, value=orjson.dumps(msg)))
            m.score_distribution.labels("churn").observe(msg["churn_score"])
            m.score_distribution.labels("sharing").observe(msg["sharing_score"])
        for alert in out.alerts:
            key = alert["account_id"].encode()
            pending.append(await alerts_topic.send(key=key, value=orjson.dumps(alert)))
            m.alerts.labels(alert["kind"], alert["action"]).inc()
            for reason in alert["reasons"]:
                m.alert_reasons.labels(alert["kind"], reason_label(reason["feature"])).inc()
        if out.examples:
            pending.append(await training_topic.send(value=orjson.dumps(out.examples), partition=0))
            for ex in out.examples:
                m.examples_published.labels(ex["model"], str(ex["label"]).lower()).inc()
        for fut in pending:
            await fut
        m.scores_published.inc(len(out.scores))
        for kind, outcome in out.outcomes:
            m.alert_outcomes.labels(kind, outcome).inc()

    app.agent(rt.topics["account_events"], name="churnwatch.accounts")(accounts)
