"""Account agent: a thin loop around ``models.engine``.

Reads the internal account-events topic (JSON arrays, partitioned by account).
States live encoded in the ``accounts`` table's local store (RocksDB by default),
the recently used ones decoded in a bounded cache; for each buffer of messages it applies
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
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

import orjson
from faust.types import TP

from models.account import AccountState, dump_state, load_state
from models.alerting import alert_summary
from models.contract import MAX_RAW_CHARS, DeadLetter, Event, read_batch
from models.engine import Outputs, Shard, process, risk
from models.features import churn_features
from models.household import PrefixCensus, household_features
from models.ordering import MARKS_HEADER, WatermarkMerge, behind, decode_report, header
from models.partitioning import partition_for
from models.state_codec import VERSION as STATE_VERSION
from streams.faust_compat import (
    count_recovered,
    generation,
    give_back,
    group_generation,
    read_again,
    revoking,
    rewind,
    rocksdb_states,
    store_locally,
)
from streams.metrics import Metrics
from streams.runtime import CRASH, Runtime
from streams.skips import Skips
from streams.topics import ERASABLE

log = logging.getLogger(__name__)

EXAMPLES_PER_MESSAGE = 200  # training messages stay well under Kafka's 1 MiB default
# events per engine.process call: a partition's events of a buffer (up to 100 messages of
# 500) in one call held the event loop for seconds on a loaded machine (the ingest's merge
# clock and Faust's consumer keepalive with it); ~0.1 s of CPU here
STEP_EVENTS = 2000
# account events held by the merge of upstream ingests, in all (beyond it the oldest go
# on; counted in churnwatch_account_events_forced_total), and how often a timer looks
# at what waits on the clock
MERGE_HELD = 400_000
CENSUS_COUNT_EVERY_S = 5.0  # the census gauges walk it: not at every buffer
MERGE_TICK_S = 0.2
CLAIMS_TIMEOUT_S = 5.0  # one question to Kafka about idle claims (``confirm_claims``)
# the accounts table's store by CHURNWATCH_STORE (the app's default stays memory:// for
# the models table, written from a timer, which Faust's RocksDB store cannot do). With
# an empty path ("rocksdb://") yarl's URL is false and Faust would use the app's store.
STORES = {"rocksdb": "rocksdb:accounts", "memory": "memory:accounts"}
# RocksDB's own memory, per partition database: Faust's defaults (a 2 GiB block cache and
# up to 3 x 64 MiB memtables each) would let 8 partitions take far more than the cache
# of decoded states. The OS page cache serves the rest.
ROCKSDB_OPTIONS = {
    "block_cache_size": 16 * 2**20,
    "write_buffer_size": 16 * 2**20,
    "max_write_buffer_number": 2,
}


class DictStates:
    """Persisted states in a dict (Faust's ``memory://`` table store, tests): every
    partition's keys in one mapping, told apart by ``partition_for``."""

    def __init__(self, table: Any, partitions: int) -> None:
        self.table, self.data, self.partitions = table, table.data, partitions

    def get(self, partition: int, key: bytes, *, assigned: bool = True) -> bytes | None:
        return self.data.get(key)

    def keys(self, partition: int) -> Iterator[bytes]:
        for key in list(self.data.keys()):
            if partition_for(key.decode(errors="replace"), self.partitions) == partition:
                yield key

    def write(
        self, partition: int, items: list[tuple[bytes, bytes | None]], offset: int | None
    ) -> None:
        for key, raw in items:
            store_locally(self.table, key, raw)


class AccountStore:
    """This worker's partitions (``models.engine.Shard``), persisted in bulk.

    ``table`` is a Faust table (bytes -> bytes) whose changelog is partitioned by
    the account key exactly like the account-events topic. Its local store (RocksDB
    partition databases, or a dict) holds every state encoded; at most ``cache``
    decoded states live in memory, least recently used evicted first, and only
    once they are persisted (:meth:`commit`).
    """

    def __init__(
        self, table: Any, partitions: int, skips: Skips | None = None, cache: int | None = None
    ) -> None:
        self.table = table
        self.partitions = partitions
        self.skips = skips or Skips(Metrics())
        self.cache = cache  # None: keep every decoded state
        self.local: Any = rocksdb_states(table) or DictStates(table, partitions)
        self.shards: dict[int, Shard] = {}
        # networks used away from home by many accounts (VPN exits, carrier NAT): one per
        # worker, shared by its partitions; soft state, rebuilt as accounts are scored
        self.census = PrefixCensus()

    def shard(self, partition: int) -> Shard:
        """The partition's accounts: states are read from the local store when needed."""
        shard = self.shards.get(partition)
        if shard is None:
            shard = self.shards[partition] = Shard(
                load=lambda account_id: self._read(partition, account_id),
                ids=lambda: self._ids(partition),
                sweep_chunk=None if self.cache is None else max(100, self.cache // 8),
            )
        return shard

    def _ids(self, partition: int) -> Iterator[str]:
        """The persisted accounts of the partition (for the sweep)."""
        for key in self.local.keys(partition):
            try:
                yield key.decode()
            except UnicodeDecodeError:  # no account id encodes to it: a foreign writer
                self.skips.skip("accounts", "bad_state", f"key {key!r}", "key is not UTF-8")

    def _read(self, partition: int, account_id: str) -> AccountState | None:
        """A persisted state; one in an older format is marked to be written back as it is now."""
        raw = self.local.get(partition, account_id.encode())
        state = self._load(account_id, raw)
        if state is not None and raw is not None and raw[4] != STATE_VERSION:
            self.shards[partition].dirty.add(account_id)
        return state

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
        partition = partition_for(account_id, self.partitions)
        shard = self.shards.get(partition)
        state = shard.accounts.get(account_id) if shard else None
        if state is None:
            raw = self.local.get(partition, account_id.encode(), assigned=shard is not None)
            state = self._load(account_id, raw)
        return state

    def clock(self, account_id: str) -> int:
        shard = self.shards.get(partition_for(account_id, self.partitions))
        return shard.clock if shard else 0

    def flush(
        self, partitions: Iterable[int] | None = None
    ) -> list[tuple[int, bytes, bytes | None]]:
        """Every changed account (of ``partitions``, default all) once, as (partition,
        key, state bytes), after a tombstone (state None) for each account erased.

        The caller sends them to the changelog (``Runtime`` producer, in bulk:
        Faust's per-key table write costs ~300-500 µs, DESIGN.md) and, once Kafka
        has them all, hands them to :meth:`commit`.
        """
        records: list[tuple[int, bytes, bytes | None]] = []
        for partition in self.shards if partitions is None else partitions:
            shard = self.shards[partition]
            records += [(partition, account_id.encode(), None) for account_id in shard.erased]
            shard.erased.clear()
            for account_id in shard.dirty:
                raw = dump_state(shard.accounts[account_id])
                records.append((partition, account_id.encode(), raw))
            shard.dirty.clear()
        return records

    def commit(
        self, records: list[tuple[int, bytes, bytes | None]], offsets: dict[int, int] | None = None
    ) -> None:
        """Store records that the changelog holds (``offsets``: the last changelog offset
        of each partition), then evict the least recently used states past the cache.

        Written locally only once Kafka has them: after a crash between a local
        write and the changelog, the re-delivered input would be dropped as
        duplicates and the state would never reach the changelog.
        """
        offsets = offsets or {}
        by_partition: dict[int, list[tuple[bytes, bytes | None]]] = {}
        for partition, key, raw in records:
            by_partition.setdefault(partition, []).append((key, raw))
        for partition in by_partition.keys() | offsets.keys():
            self.local.write(partition, by_partition.get(partition, []), offsets.get(partition))
        if self.cache is not None and self.shards:
            share = max(1, self.cache // len(self.shards))
            for shard in self.shards.values():
                excess = len(shard.accounts) - share
                if excess <= 0:
                    continue
                # the least recently used first; a state not yet persisted stays
                oldest = islice(shard.accounts, excess + len(shard.dirty))
                for account_id in [a for a in oldest if a not in shard.dirty][:excess]:
                    del shard.accounts[account_id]

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop revoked partitions from memory (they reload from the table if they return)."""
        for p in partitions:
            self.shards.pop(p, None)

    @property
    def accounts(self) -> int:
        """Decoded states in memory."""
        return sum(len(shard.accounts) for shard in self.shards.values())


class MemberFence:
    """Whether the account agent may write what it applied: not while this worker may
    have been expelled from its group without knowing it yet.

    A worker frozen past its session timeout (a paused VM, a stopped process) is
    expelled while it sleeps; its partitions go to another worker, which restores
    their states and applies on. Thawed, it goes on with the buffer in hand until a
    heartbeat tells it, and its states reach the changelog *after* the new owner's,
    older than them: the changelog's last word on those accounts lacks events that the
    new owner applied and committed, and a restore from it loses them (two workers,
    one frozen 10 s mid-backlog against a 6 s session: one account of 1,000 restored
    short by an event, in 1 of 9 runs; ``tests/integration/test_frozen_worker.py``).

    So a buffer is written only while the group coordinator's generation is the one
    the partitions were assigned in (the heartbeat that finds the worker expelled
    resets it at once), and no stall of the event loop long enough for the session to
    run out (``stall_s``: the session timeout less a heartbeat interval) was seen in
    the last ``confirm_s`` (a heartbeat interval and a second: time for the first
    heartbeat after it to be answered). A freeze between the check and the send is
    not covered: Kafka's transactional producers fence that, at a cost this worker
    does not pay (docs/design.md, "A worker frozen past its session").

    >>> fence = MemberFence(stall_s=7.0, confirm_s=4.0)
    >>> fence.may_write(100.0, generation=3, assigned=3)
    True
    >>> fence.may_write(100.5, generation=-1, assigned=3)  # the heartbeat said: expelled
    False
    >>> fence.may_write(108.0, generation=3, assigned=3)  # 7.5 s since the last beat
    False
    >>> fence.may_write(111.9, 3, 3), fence.may_write(112.1, 3, 3)
    (False, True)
    """

    def __init__(self, stall_s: float, confirm_s: float) -> None:
        self.stall_s, self.confirm_s = stall_s, confirm_s
        self.beat_at: float | None = None
        self.stalled_until = float("-inf")

    def beat(self, now: float) -> None:
        """The event loop ran at ``now`` (monotonic seconds)."""
        if self.beat_at is not None and now - self.beat_at >= self.stall_s:
            self.stalled_until = now + self.confirm_s
        self.beat_at = now

    def may_write(self, now: float, generation: int | None, assigned: int) -> bool:
        """``generation``: the coordinator's now (None: not known, not held against it)."""
        self.beat(now)
        return now >= self.stalled_until and generation in (assigned, None)


def _now_ms() -> int:
    """Wall-clock ms: the merge compares it with the write time of records."""
    return int(time.time() * 1000)


def _written_ms(msg: Any, default: int) -> int:
    """When a record was written (its Kafka timestamp, seconds in Faust), else ``default``."""
    ts = getattr(msg, "timestamp", None)
    return int(ts * 1000) if isinstance(ts, int | float) and ts > 0 else default


def failure_record(event: Event, why: str, topic: str) -> dict[str, Any]:
    """A dead-letter record for a valid event that churnwatch's own code failed on."""
    raw = orjson.dumps(event.to_dict()).decode()[:MAX_RAW_CHARS]
    kind = "processing_error"
    return DeadLetter(kind, f"{kind}: {why}", topic, -1, -1, None, raw).to_record()


def by_partition(messages: Iterable[Any], skips: Skips) -> dict[int, list[Event]]:
    """The events of a buffer of account-events messages per partition, in order.

    What cannot be read is skipped and counted (a bug or a foreign writer: never fatal).
    """
    out: dict[int, list[Event]] = {}
    for ev in messages:
        events, bad = read_batch(ev.message.value)
        for why in bad:
            where = f"partition {ev.message.partition} offset {ev.message.offset}"
            kind = "not_json" if why == "not JSON" else "bad_shape"
            skips.skip("account_events", kind, where, why)
        out.setdefault(ev.message.partition, []).extend(events)
    return out


class Upstreams:
    """The account-events partitions of this worker, each merged over the ingests that
    write to it (one per worker) by the watermarks they report (``WatermarkMerge``).

    A message without a report (an older ingest, a foreign writer) passes straight
    through, as before the merge. ``take`` reads a buffer of messages; ``release``
    returns the events due per partition and the messages whose events have all been
    released (acknowledge them once their states are persisted).
    """

    def __init__(
        self, sources: Callable[[], Iterable[str]], skips: Skips, stall_ms: int, max_held: int
    ) -> None:
        self.sources, self.skips = sources, skips
        self.stall_ms, self.max_held = stall_ms, max_held
        self.merges: dict[int, WatermarkMerge] = {}
        # per partition: its topic partition, the next offset to read, and the log's
        # clock (the latest write time of a message read), see ``release``
        self.tps: dict[int, Any] = {}
        self.delivered: dict[int, int] = {}
        self.log_ms: dict[int, int] = {}
        self._through: dict[int, list[Event]] = {}
        self._through_done: list[Any] = []
        self._forgotten = self._forgotten_woken = 0

    @property
    def held(self) -> int:
        return sum(merge.held for merge in self.merges.values())

    @property
    def forced(self) -> int:
        """Events released before every source passed them (see ``WatermarkMerge``)."""
        return sum(merge.forced for merge in self.merges.values()) + self._forgotten

    @property
    def waiting(self) -> bool:
        """Whether events wait on an idle claim to be confirmed (``WatermarkMerge``)."""
        return any(merge.waiting for merge in self.merges.values())

    @property
    def woken(self) -> int:
        """Idle sources found with more written than their reader had read."""
        return sum(merge.woken for merge in self.merges.values()) + self._forgotten_woken

    def claims(self) -> tuple[dict[int, tuple[WatermarkMerge, int]], set[str]]:
        """The merges whose events wait on idle claims (``WatermarkMerge.confirm``): each
        with the point a confirmation asked now covers; and the sources to ask about."""
        asked: dict[int, tuple[WatermarkMerge, int]] = {}
        sources: set[str] = set()
        for p, merge in self.merges.items():
            if merge.waiting:
                asked[p] = (merge, merge.ask())
                sources.update(map(str, merge.claims()))
        return asked, sources

    def confirm(
        self, asked: dict[int, tuple[WatermarkMerge, int]], ends: dict[str, int | None], now_ms: int
    ) -> None:
        """The ends of the claimed sources' logs, for the merges asked (unless forgotten
        since: a rebalance)."""
        for p, (merge, point) in asked.items():
            if self.merges.get(p) is merge:
                merge.confirm(ends, point, now_ms)

    def merge(self, partition: int, now_ms: int) -> WatermarkMerge:
        merge = self.merges.get(partition)
        if merge is None:
            merge = self.merges[partition] = WatermarkMerge(self.stall_ms, self.max_held)
            merge.expect(self.sources(), now_ms)  # each input partition, whoever reads it
        return merge

    def take(self, messages: Iterable[Any], now_ms: int) -> None:
        """Read a buffer of messages. A report counts as made when its message was
        written (the record's timestamp, else ``now_ms``): see ``release``."""
        for ev in messages:
            msg = ev.message
            written = _written_ms(msg, now_ms)
            p = msg.partition
            self.tps[p], self.delivered[p] = getattr(msg, "tp", None), msg.offset + 1
            self.log_ms[p] = max(self.log_ms.get(p, written), written)
            for p, events in by_partition([ev], self.skips).items():
                raw = header(getattr(msg, "headers", None), MARKS_HEADER)
                report = None if raw is None else decode_report(raw)
                if report is None:
                    self._through.setdefault(p, []).extend(events)
                    self._through_done.append(ev)
                else:
                    self.merge(p, written).push(
                        events, token=ev, marks=report.marks, now_ms=written,
                        read=report.read, keyed=report.keyed,
                    )  # fmt: skip

    def release(
        self,
        now_ms: int,
        behind: Callable[[Any, int], bool] = lambda tp, offset: False,
    ) -> tuple[dict[int, list[Event]], list[Any]]:
        """Events due per partition (in order) and the messages fully released.

        An upstream stalls when its report is ``stall_ms`` old. While the partition
        has messages this worker has not read yet (``behind(tp, next offset)``), its
        reports are judged against the log's clock (the write time of the latest
        message read), not the wall clock: a worker slow to read a backlog of one
        ingest's messages has not seen the other ingest's reports written meanwhile,
        and taking that silence for a stall released the first ingest's events ahead
        of them (measured: 1,476 events dropped as late in a CI run of two workers on
        unkeyed input, with no rebalance and no kill). Caught up, it is the wall clock.
        """
        out, done = self._through, self._through_done
        self._through, self._through_done = {}, []
        for p, merge in self.merges.items():
            log = self.log_ms.get(p, now_ms)
            tp = self.tps.get(p)
            lagging = tp is not None and behind(tp, self.delivered[p])
            events, tokens = merge.release(log if lagging else max(now_ms, log))
            if events:
                out.setdefault(p, []).extend(events)
            done += tokens
        return out, done

    def give_back(self) -> list[Any]:
        """Drop every event not applied yet, and forget the merges: the messages they
        came in (a rebalance gives them back to Kafka, ``faust_compat.give_back``)."""
        tokens = list(self._through_done)
        for merge in self.merges.values():
            tokens += merge.give_back()
        self._through_done.clear()
        self.forget(list(self.merges))
        return tokens

    def forget(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            for kept in (self.tps, self.delivered, self.log_ms):
                kept.pop(p, None)
            merge = self.merges.pop(p, None)
            self._forgotten += merge.forced if merge else 0
            self._forgotten_woken += merge.woken if merge else 0
            self._through.pop(p, None)


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
        "recent_alerts": [alert_summary(a) for a in r.recent],  # older states: whole alerts
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
        store=STORES[s.store],
        options=dict(ROCKSDB_OPTIONS) if s.store == "rocksdb" else None,
        # an erased account's older states leave the changelog within a day
        extra_topic_configs=ERASABLE,
        help="Account state (models.account), written in bulk after each buffer",
    )
    count_recovered(table, m.state_recovered.inc)
    skips = rt.skips
    store = AccountStore(table, s.partitions, skips, cache=s.state_cache_accounts)
    rt.accounts_table = table
    model_cache = rt.models

    def lookup(account_id: str) -> dict[str, Any] | None:
        state = store.peek(account_id)
        if state is None:
            return None
        return describe(state, store.clock(account_id))

    rt.lookup = lookup

    async def on_revoked(sender: object, revoked: set[Any], **kwargs: object) -> None:
        gone = [tp.partition for tp in revoked if tp.topic == s.account_events_topic]
        store.forget(gone)
        upstreams.forget(gone)

    app.on_partitions_revoked.connect(on_revoked)

    def sources() -> list[str]:
        """Every input partition (as the ingests name them), whichever worker reads it."""
        consumer: Any = app.consumer
        return [
            f"{i}:{p}"
            for i, topic in enumerate(s.input_topics)
            for p in range(consumer.topic_partitions(topic) or s.partitions)
        ]

    upstreams = Upstreams(
        sources,
        skips,
        stall_ms=int(s.input_stall_s * 1000),
        max_held=max(10_000, MERGE_HELD // s.partitions),
    )
    lock = asyncio.Lock()
    streams: dict[str, Any] = {}
    fence = MemberFence(
        stall_s=s.session_timeout_s - s.heartbeat_interval_s,
        confirm_s=s.heartbeat_interval_s + 1.0,
    )

    async def accounts(stream: Any) -> None:
        streams["accounts"] = stream
        # internal messages hold up to 500 events: 100 of them are plenty per step.
        # Acknowledged here, once their events left the merge and their states persisted
        async for batch in stream.noack_take(
            min(s.ingest_batch_max, 100), within=s.ingest_batch_within_s
        ):
            async with lock:
                keep, later = [], []
                for ev in batch:
                    (keep if read_again(app, ev.message) else later).append(ev)
                if later:  # past a message given back: that one goes first
                    m.given_back.labels("accounts").inc(give_back(app, [e.message for e in later]))
                    if not rt.stopping:
                        rewind(app, [e.message.tp for e in later])
                upstreams.take(keep, _now_ms())
                await apply()
                if rt.stopping:  # read after the drain: its stop would wait for it forever
                    hand_back()
            if upstreams.waiting and not rt.stopping:  # on another worker's idle claim: ask
                await confirm_claims()  # now, not at the next tick (a backlog would go at
                async with lock:  # one buffer per tick: two workers measured 1.09x one)
                    await apply()

    def unread(tp: Any, offset: int) -> bool:
        """Whether Kafka holds messages of ``tp`` from ``offset`` on that were not read."""
        try:
            highwater = app.consumer.highwater(tp)  # the fetcher's latest view
        except Exception:  # noqa: BLE001 - not assigned any more
            return False
        return highwater is not None and behind(highwater, offset)  # unknown: caught up

    async def apply() -> None:
        """Apply what the merge releases, persist, then acknowledge its messages."""
        started = time.monotonic()
        now_s = time.time()
        forced = upstreams.forced
        parts, done = upstreams.release(_now_ms(), behind=unread)
        m.merge_forced.inc(upstreams.forced - forced)
        m.merge_held.set(upstreams.held)
        if not parts:
            for ev in done:  # reports alone
                await streams["accounts"].ack(ev)
            return
        models = model_cache.current()
        out = Outputs()
        # one process() per partition per buffer (an account touched is scored once),
        # in steps of at most STEP_EVENTS so the event loop is never held for long
        applied = dups = late = 0  # counted once the states are written (``fence``)
        for partition, events in parts.items():
            shard = store.shard(partition)
            for i in range(0, max(len(events), 1), STEP_EVENTS):
                step = events[i : i + STEP_EVENTS]
                n = process(shard, step, models, cfg, out, store.census)
                applied, dups, late = applied + n[0], dups + n[1], late + n[2]
                await asyncio.sleep(0)  # let heartbeats, HTTP requests and ingest through
            if events:
                m.event_time_lag.observe(max(0.0, now_s - events[-1].ts / 1000))
        if not may_write(done):
            return
        await publish(out)
        t_flush = time.monotonic()
        records = []
        for p in list(store.shards):  # thousands of states to encode: let heartbeats in
            records += store.flush([p])
            await asyncio.sleep(0)
        if not may_write(done):  # (again: the encoding takes a while, a freeze may come in it)
            return
        acks = await send_all((changelog, key, raw, p) for p, key, raw in records)
        m.events_applied.inc(applied)
        m.duplicates_dropped.inc(dups)
        m.late_dropped.inc(late)
        offsets: dict[int, int] = {}
        for ack in acks:
            p = ack.topic_partition.partition
            offsets[p] = max(ack.offset, offsets.get(p, -1))
        store.commit(records, offsets)
        for ev in done:  # their events are applied and persisted
            await streams["accounts"].ack(ev)
        m.state_writes.inc(len(records))
        m.state_bytes.inc(sum(len(raw) for _, _, raw in records if raw))
        m.state_flush_seconds.observe(time.monotonic() - t_flush)
        m.accounts.set(store.accounts)
        for p, shard in store.shards.items():
            if shard.clock:  # (none before its first event since the assignment)
                m.watermark.labels(str(p)).set((shard.clock - cfg.state.lateness_ms) / 1000)
        m.processing_latency.observe(time.monotonic() - started)

    def may_write(done: list[Any]) -> bool:
        """Whether this buffer may be written (``MemberFence``). If not (this worker may
        have been expelled), its states are dropped unwritten (the next buffer reads them
        from the local store), and its messages and what the merges hold go back to
        Kafka, read again by whoever owns the partitions (this worker, from the commit,
        if it still does)."""
        if fence.may_write(time.monotonic(), group_generation(app), generation(app)):
            return True
        messages = [ev.message for ev in done]
        m.given_back.labels("accounts").inc(give_back(app, messages))
        rewind(app, {msg.tp for msg in messages})
        hand_back()
        store.forget(list(store.shards))
        m.writes_fenced.inc()
        log.warning(
            "a buffer was not written: this worker may have been expelled from its group "
            "(its event loop stalled for %.1f s or more, or the group generation changed); "
            "its %d messages will be read again", fence.stall_s, len(messages),
        )  # fmt: skip
        return False

    def hand_back() -> None:
        """Give what the merges hold back to Kafka, unacknowledged, instead of applying it
        ahead of the upstreams (``faust_compat.give_back``): whoever owns its partitions
        next reads it again (at a rebalance, and at a stop)."""
        held = [ev.message for ev in upstreams.give_back()]
        m.given_back.labels("accounts").inc(give_back(app, held))
        m.merge_held.set(upstreams.held)

    unanswered_since: list[float] = []  # when asking Kafka about idle claims began to fail

    def input_tp(src: str) -> TP:
        """An input partition as the ingests name it (``"topic index:partition"``)."""
        topic, partition = src.split(":")
        return TP(s.input_topics[int(topic)], int(partition))

    async def confirm_claims() -> None:
        """Ask Kafka for the ends of the input partitions another worker reported idle,
        where events wait on that claim (``WatermarkMerge.confirm``). If Kafka does not
        answer for ``CHURNWATCH_INPUT_STALL_S``, the claims are taken as made, as a
        stalled upstream is."""
        asked, sources = upstreams.claims()
        if not sources:
            return
        tps = {src: input_tp(src) for src in sources}
        try:
            got = await asyncio.wait_for(app.consumer.highwaters(*tps.values()), CLAIMS_TIMEOUT_S)
            ends: dict[str, int | None] = {src: got.get(tp) for src, tp in tps.items()}
            unanswered_since.clear()
        except Exception as exc:  # noqa: BLE001 - Kafka away or slow: ask again next tick
            unanswered_since[:] = unanswered_since or [time.monotonic()]
            if time.monotonic() - unanswered_since[0] < s.input_stall_s:
                log.debug("the ends of idle input partitions could not be read: %r", exc)
                return
            ends = dict.fromkeys(sources)
        async with lock:
            woken = upstreams.woken
            upstreams.confirm(asked, ends, _now_ms())
            m.merge_woken.inc(upstreams.woken - woken)

    async def tick() -> None:
        """Release what waits on the clock (a silent upstream's timeout) or on idle
        claims; at a rebalance, give back what is held."""
        fence.beat(time.monotonic())
        if "accounts" not in streams:
            return
        if revoking(app):
            async with lock:
                hand_back()
        elif upstreams.held:
            await confirm_claims()
            async with lock:
                await apply()

    ingest_drain = rt.drain

    async def drain() -> None:
        await ingest_drain()  # what ingest sends goes on first
        if "accounts" in streams:
            async with lock:
                await apply()
                hand_back()

    rt.drain = drain
    app.timer(MERGE_TICK_S, name="churnwatch.accounts_merge")(tick)

    async def count_census() -> None:
        """The census gauges: a pass over it, so not at every buffer."""
        m.census_prefixes.set(len(store.census.users))
        m.census_entries.set(sum(map(len, store.census.users.values())))

    app.timer(CENSUS_COUNT_EVERY_S, name="churnwatch.census_count")(count_census)

    producer = app.producer
    changelog = table.changelog_topic.get_topic_name()

    async def send_all(
        records: Iterable[tuple[str, bytes | None, bytes | None, int | None]],
    ) -> list[Any]:
        """Send in bulk through the producer; Kafka's acks (``RecordMetadata``) once it
        has every record."""
        pending = [
            await producer.send(topic, key, value, partition, None, None)
            for topic, key, value, partition in records
        ]
        return [await fut for fut in pending]

    async def publish(out: Outputs) -> None:
        """Send every output and wait for it.

        The state (with its alert episode counters) is written only after this,
        so a crash can repeat an alert (same ``alert_id``) but never lose one.
        """
        records: list[tuple[str, bytes | None, bytes | None, int | None]] = []
        # an erased account's tombstone first: scores after it are of the account afresh
        records += [(s.scores_topic, a.encode(), None, None) for a in out.erased]
        for msg in out.scores:
            records.append((s.scores_topic, msg["account_id"].encode(), orjson.dumps(msg), None))
            m.observe_score("churn", msg["churn_score"])
            m.observe_score("sharing", msg["sharing_score"])
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
        if out.erased:
            m.accounts_erased.inc(len(out.erased))
            log.info("erased %d account(s): state deleted, tombstones written", len(out.erased))
        m.scores_published.inc(len(out.scores))
        for kind, outcome in out.outcomes:
            m.alert_outcomes.labels(kind, outcome).inc()
        for kind, action, outcome in out.action_outcomes:
            m.action_outcomes.labels(kind, action, outcome).inc()
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
