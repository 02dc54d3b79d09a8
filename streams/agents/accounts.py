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

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

import orjson

from models.account import AccountState, dump_state, load_state
from models.contract import MAX_RAW_CHARS, DeadLetter, Event, read_batch
from models.engine import Outputs, Shard, process, risk
from models.features import churn_features
from models.household import PrefixCensus, household_features
from models.partitioning import partition_for
from models.state_codec import VERSION as STATE_VERSION
from streams.faust_compat import store_locally
from streams.metrics import Metrics
from streams.runtime import CRASH, Runtime
from streams.skips import Skips

log = logging.getLogger(__name__)

EXAMPLES_PER_MESSAGE = 200  # training messages stay well under Kafka's 1 MiB default


class AccountStore:
    """This worker's partitions (``models.engine.Shard``), persisted in bulk.

    ``table`` is a Faust table (bytes -> bytes) whose changelog is partitioned by
    the account key exactly like the account-events topic.
    """

    def __init__(self, table: Any, partitions: int, skips: Skips | None = None) -> None:
        self.table = table
        self.partitions = partitions
        self.skips = skips or Skips(Metrics())
        self.shards: dict[int, Shard] = {}
        # networks used away from home by many accounts (VPN exits, carrier NAT): one per
        # worker, shared by its partitions; soft state, rebuilt as accounts are scored
        self.census = PrefixCensus()

    def shard(self, partition: int) -> Shard:
        """The partition's accounts; the first call loads every persisted one."""
        shard = self.shards.get(partition)
        if shard is None:
            shard = self.shards[partition] = Shard()
            for key, raw in list(self.table.items()):
                account_id = key.decode(errors="replace")
                if partition_for(account_id, self.partitions) == partition:
                    state = self._load(account_id, raw)
                    if state is not None:
                        shard.accounts[account_id] = state
                        shard.clock = max(shard.clock, state.max_ts)
                        if raw[4] != STATE_VERSION:  # migrated on read: store it as it is now
                            shard.dirty.add(account_id)
        return shard

    def _load(self, account_id: str, raw: bytes | None) -> AccountState | None:
        """A persisted state; None (the account starts afresh) if it cannot be read."""
        if not raw:
            return None
        try:
            state = load_state(raw)
        except ValueError as exc:
            why = str(exc)
        else:
            if state.account_id == account_id:
                return state
            why = f"holds the state of {state.account_id!r}"
        self.skips.skip("accounts", "bad_state", f"key {account_id!r}", why)
        return None

    def peek(self, account_id: str) -> AccountState | None:
        """The state if this worker holds it (live or persisted), without creating one."""
        shard = self.shards.get(partition_for(account_id, self.partitions))
        state = shard.accounts.get(account_id) if shard else None
        if state is None:
            state = self._load(account_id, self.table.get(account_id.encode()))
        return state

    def clock(self, account_id: str) -> int:
        shard = self.shards.get(partition_for(account_id, self.partitions))
        return shard.clock if shard else 0

    def flush(self) -> list[tuple[int, bytes, bytes]]:
        """Every changed account once, as (partition, key, state bytes), stored locally.

        The caller sends them to the changelog (``Runtime`` producer, in bulk):
        Faust's per-key table write costs ~300-500 µs (DESIGN.md), a batched
        producer send a few µs.
        """
        records = []
        for partition, shard in self.shards.items():
            for account_id in shard.dirty:
                key, raw = account_id.encode(), dump_state(shard.accounts[account_id])
                store_locally(self.table, key, raw)
                records.append((partition, key, raw))
            shard.dirty.clear()
        return records

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop revoked partitions from memory (they reload from the table if they return)."""
        for p in partitions:
            self.shards.pop(p, None)

    @property
    def accounts(self) -> int:
        return sum(len(shard.accounts) for shard in self.shards.values())


def failure_record(event: Event, why: str, topic: str) -> dict[str, Any]:
    """A dead-letter record for a valid event that churnwatch's own code failed on."""
    raw = orjson.dumps(event.to_dict()).decode()[:MAX_RAW_CHARS]
    kind = "processing_error"
    return DeadLetter(kind, f"{kind}: {why}", topic, -1, -1, None, raw).to_record()


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


def register(rt: Runtime) -> None:
    s, m, app = rt.settings, rt.metrics, rt.app
    cfg = s.engine_config()
    table = app.Table(
        "accounts",
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=s.partitions,
        use_partitioner=True,
        help="Account state (models.account), written in bulk after each buffer",
    )
    skips = rt.skips
    store = AccountStore(table, s.partitions, skips)
    rt.accounts_table = table
    model_cache = rt.models

    def lookup(account_id: str) -> dict[str, Any] | None:
        state = store.peek(account_id)
        if state is None:
            return None
        return describe(state, store.clock(account_id))

    rt.lookup = lookup

    async def on_revoked(sender: object, revoked: set[Any], **kwargs: object) -> None:
        store.forget(tp.partition for tp in revoked if tp.topic == s.account_events_topic)

    app.on_partitions_revoked.connect(on_revoked)

    async def accounts(stream: Any) -> None:
        # internal messages hold up to 500 events: 100 of them are plenty per step
        async for batch in stream.take_events(
            min(s.ingest_batch_max, 100), within=s.ingest_batch_within_s
        ):
            started = time.monotonic()
            now_s = time.time()
            models = model_cache.current()
            out = Outputs()
            for ev in batch:
                events, bad = read_batch(ev.message.value)
                for why in bad:  # a bug or a foreign writer: skipped, never fatal
                    where = f"partition {ev.message.partition} offset {ev.message.offset}"
                    kind = "not_json" if why == "not JSON" else "bad_shape"
                    skips.skip("account_events", kind, where, why)
                shard = store.shard(ev.message.partition)
                applied, dups, late = process(shard, events, models, cfg, out, store.census)
                await asyncio.sleep(0)  # let heartbeats and HTTP requests through
                m.events_applied.inc(applied)
                m.duplicates_dropped.inc(dups)
                m.late_dropped.inc(late)
                if events:
                    m.event_time_lag.observe(max(0.0, now_s - events[-1].ts / 1000))
            await publish(out)
            t_flush = time.monotonic()
            records = store.flush()
            await send_all((changelog, key, raw, p) for p, key, raw in records)
            m.state_writes.inc(len(records))
            m.state_flush_seconds.observe(time.monotonic() - t_flush)
            m.accounts.set(store.accounts)
            for p, shard in store.shards.items():
                m.watermark.labels(str(p)).set((shard.clock - cfg.state.lateness_ms) / 1000)
            m.processing_latency.observe(time.monotonic() - started)

    producer = app.producer
    changelog = table.changelog_topic.get_topic_name()

    async def send_all(records: Iterable[tuple[str, bytes | None, bytes, int | None]]) -> None:
        """Send in bulk through the producer and wait until Kafka has every record."""
        pending = [
            await producer.send(topic, key, value, partition, None, None)
            for topic, key, value, partition in records
        ]
        for fut in pending:
            await fut

    async def publish(out: Outputs) -> None:
        """Send every output and wait for it.

        The state (with its alert episode counters) is written only after this,
        so a crash can repeat an alert (same ``alert_id``) but never lose one.
        """
        records: list[tuple[str, bytes | None, bytes, int | None]] = []
        for msg in out.scores:
            records.append((s.scores_topic, msg["account_id"].encode(), orjson.dumps(msg), None))
            m.score_distribution.labels("churn").observe(msg["churn_score"])
            m.score_distribution.labels("sharing").observe(msg["sharing_score"])
        for alert in out.alerts:
            records.append(
                (s.alerts_topic, alert["account_id"].encode(), orjson.dumps(alert), None)
            )
            m.alerts.labels(alert["kind"], alert["action"]).inc()
            for reason in alert["reasons"]:
                m.alert_reasons.labels(alert["kind"], reason_label(reason["feature"])).inc()
        for i in range(0, len(out.examples), EXAMPLES_PER_MESSAGE):
            chunk = out.examples[i : i + EXAMPLES_PER_MESSAGE]
            records.append((s.training_topic, None, orjson.dumps(chunk), 0))
            for ex in chunk:
                m.examples_published.labels(ex["model"], str(ex["label"]).lower()).inc()
        await send_all(records)
        m.scores_published.inc(len(out.scores))
        for kind, outcome in out.outcomes:
            m.alert_outcomes.labels(kind, outcome).inc()
        if out.failed:
            await send_all(
                (
                    s.dead_letter_topic,
                    None,
                    orjson.dumps(failure_record(ev, why, s.account_events_topic)),
                    None,
                )
                for ev, why in out.failed
            )
            m.dead_letters.labels("processing_error").inc(len(out.failed))
            log.error(
                "%d event(s) failed in processing; first: %s", len(out.failed), out.failed[0][1]
            )

    app.agent(rt.topics.account_events, name="churnwatch.accounts", supervisor_strategy=CRASH)(
        accounts
    )
