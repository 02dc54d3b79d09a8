"""streams.agents.accounts without Kafka: bulk persistence, recovery, dedup, sweeps."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from models.account import DAY_MS, dump_state, load_state, new_account
from models.contract import Event, encode_batch
from models.engine import EngineConfig, Models, Outputs, process, risk
from models.ordering import MARKS_HEADER, encode_marks
from streams.agents.accounts import AccountStore, Upstreams, describe
from streams.agents.accounts import by_partition as group
from streams.app import partition_for
from streams.metrics import Metrics
from streams.skips import Skips

T0 = 1_767_225_600_000
P = 4


def events_for(acc: str, n: int, start: int = T0) -> list[Event]:
    out = [Event(f"{acc}-s", "subscription_started", acc, start,
                 {"plan": "p", "price": 5.0, "currency": "EUR", "billing_period": "month",
                  "max_streams": 2})]  # fmt: skip
    out += [Event(f"{acc}-l{i}", "login", acc, start + i * 60_000, {"device_id": "tv"})
            for i in range(1, n)]  # fmt: skip
    return out


def by_partition(events: list[Event]) -> dict[int, list[Event]]:
    out: dict[int, list[Event]] = {}
    for e in events:
        out.setdefault(partition_for(e.account_id, P), []).append(e)
    return out


class Table(dict):
    """What AccountStore needs of a Faust table: a dict and its local ``data`` store."""

    @property
    def data(self):
        return self


def test_each_changed_account_is_written_once_per_buffer_and_recovers():
    table = Table()
    store, cfg, models = AccountStore(table, P), EngineConfig(), Models.fresh()
    evs = events_for("a", 20) + events_for("b", 5)
    out = Outputs()
    for p, part in by_partition(evs).items():
        assert process(store.shard(p), part, models, cfg, out)[0] == len(part)
    records = store.flush()
    assert sorted(key for _, key, _ in records) == [b"a", b"b"]
    assert all(p == partition_for(key.decode(), P) for p, key, _ in records)
    assert store.flush() == []  # nothing changed since
    assert not table  # stored locally only once the changelog has them
    store.commit(records)

    recovered = AccountStore(table, P)  # a new worker owning the same partitions
    assert recovered.shard(partition_for("a", P)).find("a").events_applied == 20
    # a re-delivered buffer after a crash is dropped event by event
    for p, part in by_partition(evs).items():
        applied, dups, late = process(recovered.shard(p), part, models, cfg, Outputs())
        assert (applied, dups, late) == (0, len(part), 0)


def test_a_kill_in_the_middle_of_a_buffers_writes_loses_nothing_on_re_delivery():
    """A worker killed while sending a buffer's states to the changelog persisted some
    of them: "ahead" reached the end of the buffer (3 h of event time), "slow" did
    not. The buffer comes again from the committed offset: ahead's events are
    duplicates, and slow's must all be applied, though ahead's state is loaded first."""
    cfg, models = EngineConfig(), Models.fresh()
    ahead, slow = "ahead", "slow"
    p = partition_for(ahead, P)
    assert partition_for(slow, P) == p
    table = Table()
    store = AccountStore(table, P)
    process(store.shard(p), events_for(ahead, 1) + events_for(slow, 1), models, cfg, Outputs())
    store.commit(store.flush())
    buffer = [
        Event(f"{acc}-{i}", "login", acc, T0 + i * 360_000, {"device_id": "tv"})
        for i in range(1, 31)
        for acc in (ahead, slow)
    ]
    process(store.shard(p), buffer, models, cfg, Outputs())
    records = store.flush()
    store.commit([r for r in records if r[1] == ahead.encode()])  # killed half way
    assert load_state(table[slow.encode()]).events_applied == 1

    recovered = AccountStore(table, P)
    shard = recovered.shard(p)
    assert shard.find(ahead).max_ts == T0 + 3 * 3_600_000  # loaded before slow's events
    applied, duplicates, late = process(shard, buffer, models, cfg, Outputs())
    assert (applied, duplicates + late) == (30, 30)  # ahead's: seen, or older than its clock
    assert shard.find(slow).events_applied == 31


def test_late_events_beyond_the_lateness_are_dropped():
    store, cfg, models = AccountStore(Table(), P), EngineConfig(), Models.fresh()
    p = partition_for("a", P)
    process(store.shard(p), events_for("a", 2, start=T0 + 10 * 3_600_000), models, cfg, Outputs())
    store.commit(store.flush())
    late = Event("old", "login", "a", T0, {"device_id": "tv"})
    assert process(store.shard(p), [late], models, cfg, Outputs()) == (0, 0, 1)
    assert store.shard(p).dirty == {"a"}  # labels or decisions may have changed it


def test_quiet_accounts_are_swept_once_a_day_of_event_time_passes():
    store, cfg, models = AccountStore(Table(), P), EngineConfig(), Models.fresh()
    quiet, busy = "q", "b"
    p = partition_for(quiet, P)
    while partition_for(busy, P) != p:
        busy += "x"
    out = Outputs()
    process(store.shard(p), events_for(quiet, 1), models, cfg, out)
    scored_before = len(out.scores)
    store.flush()
    # 40 days later only the busy account sends events
    later = events_for(busy, 3, start=T0 + 40 * DAY_MS)
    process(store.shard(p), later, models, cfg, out)
    assert quiet in store.shard(p).dirty
    negatives = [x for x in out.examples if x["account_id"] == quiet]
    assert negatives and not any(x["label"] for x in negatives)
    assert len(out.scores) > scored_before


def test_a_buffer_spanning_midnight_decides_it_for_the_accounts_it_touched_before():
    """One buffer holds an account's last event of the day and the partition's events
    past the next midnight: the sweep at that midnight decides it for that account too
    (its own events decided the points up to its last one only)."""
    cfg, models = EngineConfig(), Models.fresh()
    store = AccountStore(Table(), P)
    quiet, busy = "q", "b"
    p = partition_for(quiet, P)
    while partition_for(busy, P) != p:
        busy += "x"
    day = 40 * DAY_MS
    process(store.shard(p), events_for(quiet, 1) + events_for(busy, 1), models, cfg, Outputs())
    hour = 3_600_000
    buffer = [
        Event("q-last", "login", quiet, T0 + day - 9 * hour, {"device_id": "tv"}),
        *(Event(f"b-{i}", "login", busy, T0 + day - 8 * hour + i * hour, {"device_id": "tv"})
          for i in range(11)),
    ]  # fmt: skip
    process(store.shard(p), buffer, models, cfg, Outputs())
    assert risk(store.shard(p).find(quiet)).decided_ts == T0 + day


def test_forget_drops_revoked_partitions_only():
    store, cfg, models = AccountStore(Table(), P), EngineConfig(), Models.fresh()
    evs = [e for acc in "abcdefgh" for e in events_for(acc, 1)]
    for p, part in by_partition(evs).items():
        process(store.shard(p), part, models, cfg, Outputs())
    gone = partition_for("a", P)
    store.forget([gone])
    assert gone not in store.shards and store.shards
    assert store.peek("a") is None  # nothing was persisted: no table entry to fall back on


def test_lookup_document():
    store, cfg, models = AccountStore(Table(), P), EngineConfig(), Models.fresh()
    process(store.shard(partition_for("a", P)), events_for("a", 3), models, cfg, Outputs())
    doc = describe(store.peek("a"), T0)
    assert doc["events_applied"] == 3 and doc["status"] == "active"
    assert doc["models"] == {"churn": "churn-v0", "sharing": "sharing-v0"}
    assert "tenure_days_log" in doc["features"]["churn"]


def test_unreadable_states_in_the_changelog_are_skipped_and_counted():
    from models.account import dump_state, new_account
    from streams.metrics import Metrics
    from streams.skips import Skips

    good = new_account("good")
    good.max_ts = T0
    table = Table({
        b"good": dump_state(good),
        b"junk": b"not a state at all",
        b"trunc": dump_state(new_account("trunc"))[:12],
        b"other": dump_state(new_account("someone-else")),
        b"\xff\xfe": b"CWAS\x02garbage",
    })  # fmt: skip
    skips = Skips(Metrics())
    store = AccountStore(table, 1, skips)
    shard = store.shard(0)  # loads persisted states as needed: never raises
    assert [shard.find(k) for k in ("junk", "trunc", "other")] == [None] * 3
    assert list(shard.accounts) == [] and shard.find("good").max_ts == T0
    assert store.peek("junk") is None and store.peek("good").max_ts == T0
    # the sweep visits every persisted account and skips the unreadable ones
    cfg, models = EngineConfig(), Models.fresh()
    process(shard, events_for("good", 1, start=T0 + 3 * DAY_MS), models, cfg, Outputs())
    process(shard, events_for("good2", 1, start=T0 + 5 * DAY_MS), models, cfg, Outputs())
    skipped = skips.metrics.internal_skipped.labels("accounts", "bad_state")._value.get()
    assert skipped == 3 + 1 + 4  # read by id, junk again on peek, then the sweep reads all 4


def test_a_state_in_an_older_format_is_rewritten_in_the_current_one():
    """Version 2 (pickle) and 3 records are migrated on load and written back as the
    current version (11)."""
    data = Path(__file__).parent / "data"
    old = (data / "account_state_v2_sim.bin").read_bytes()
    v3 = (data / "account_state_v3.bin").read_bytes()  # account "a-1"
    table = Table({b"a0000007": old, b"a-1": v3, b"a": dump_state(new_account("a"))})
    store = AccountStore(table, P)
    for account in ("a0000007", "a-1", "a"):
        store.shard(partition_for(account, P)).find(account)
    records = store.flush()
    store.commit(records)
    assert sorted(key for _, key, _ in records) == [b"a-1", b"a0000007"]
    assert table[b"a0000007"][:5] == table[b"a-1"][:5] == b"CWAS\x0b"
    assert load_state(table[b"a0000007"]) == load_state(old)
    assert load_state(table[b"a-1"]) == load_state(v3)


def test_a_buffer_is_processed_once_per_partition_so_each_account_is_scored_once():
    a, b = events_for("a", 6), events_for("c", 3)
    pa, pb = partition_for("a", P), partition_for("c", P)
    assert pa != pb

    def msg(partition, offset, value):
        return SimpleNamespace(
            message=SimpleNamespace(partition=partition, offset=offset, value=value)
        )

    buffer = [msg(pa, 0, encode_batch(a[:3])), msg(pb, 0, encode_batch(b)),
              msg(pa, 1, b"not json"), msg(pa, 2, encode_batch(a[3:]))]  # fmt: skip
    skips = Skips(Metrics())
    parts = group(buffer, skips)
    assert parts == {pa: a, pb: b}  # in order, across the messages of the buffer
    assert skips.metrics.internal_skipped.labels("account_events", "not_json")._value.get() == 1
    out = Outputs()
    store, models, cfg = AccountStore(Table(), P), Models.fresh(), EngineConfig()
    for p, events in parts.items():
        process(store.shard(p), events, models, cfg, out)
    assert sorted(s["account_id"] for s in out.scores) == ["a", "c"]  # one score each


def ids_in(p: int, n: int, prefix: str = "c") -> list[str]:
    """``n`` account ids of partition ``p``."""
    out, i = [], 0
    while len(out) < n:
        if partition_for(f"{prefix}{i}", P) == p:
            out.append(f"{prefix}{i}")
        i += 1
    return out


def test_the_cache_evicts_only_persisted_states_least_recently_used_first():
    table, cfg, models = Table(), EngineConfig(), Models.fresh()
    store = AccountStore(table, P, cache=3)
    p = 0
    accs = ids_in(p, 5)
    shard = store.shard(p)
    for acc in accs:
        process(shard, events_for(acc, 2), models, cfg, Outputs())
    process(shard, [Event("again", "login", accs[0], T0 + 90_000, {"device_id": "tv"})],
            models, cfg, Outputs())  # fmt: skip
    records = store.flush()
    process(shard, [Event("x", "login", accs[1], T0 + 95_000, {"device_id": "tv"})],
            models, cfg, Outputs())  # fmt: skip
    store.commit(records)  # accs[1] changed since the flush: not persisted, kept
    assert list(shard.accounts) == [accs[4], accs[0], accs[1]]
    assert shard.dirty == {accs[1]}
    # a miss reads the store: nothing was lost
    assert shard.find(accs[2]).events_applied == 2
    assert store.peek(accs[3]).events_applied == 2 and accs[3] not in shard.accounts
    store.commit(store.flush())
    assert len(shard.accounts) == 3 and accs[1] not in shard.dirty
    assert AccountStore(table, P).shard(p).find(accs[1]).events_applied == 3


def test_the_sweep_visits_evicted_accounts_in_chunks():
    table, cfg, models = Table(), EngineConfig(), Models.fresh()
    store = AccountStore(table, P, cache=2)
    p = 1
    quiet, (busy,) = ids_in(p, 6), ids_in(p, 1, prefix="b")
    shard = store.shard(p)
    shard.sweep_chunk = 4
    for acc in quiet:
        process(shard, events_for(acc, 1), models, cfg, Outputs())
    store.commit(store.flush())
    assert len(shard.accounts) == 2

    def swept() -> set[str]:
        return {a for a in quiet if load_state(table[a.encode()]).risk.scored_ts > T0}

    process(shard, events_for(busy, 1, start=T0 + 3 * DAY_MS), models, cfg, Outputs())
    assert len(shard.accounts) <= 2 + 4 + 1  # the cache, one chunk, the busy account
    store.commit(store.flush())
    assert 0 < len(swept()) < len(quiet)  # the day's sweep goes on in the next buffer
    later = Event("b2", "login", busy, T0 + 4 * DAY_MS, {"device_id": "tv"})
    process(shard, [later], models, cfg, Outputs())
    store.commit(store.flush())
    assert swept() == set(quiet) and len(shard.accounts) == 2


def test_label_timers_fire_for_evicted_accounts():
    table, models = Table(), Models.fresh()
    cfg = EngineConfig()
    store = AccountStore(table, P, cache=1)
    p = 2
    acc, (other,) = ids_in(p, 1)[0], ids_in(p, 1, prefix="o")
    shard = store.shard(p)
    process(shard, events_for(acc, 1), models, cfg, Outputs())
    # a day later the account has a pending churn snapshot, and is then evicted
    process(shard, events_for(acc, 2, start=T0 + DAY_MS + 1)[1:], models, cfg, Outputs())
    assert load_state(dump_state(shard.accounts[acc])).pending, "a snapshot to label"
    process(shard, events_for(other, 1, start=T0 + DAY_MS + 2), models, cfg, Outputs())
    store.commit(store.flush())
    assert acc not in shard.accounts
    due = shard._due[acc]
    # the timer fires at its horizon (before the day's sweep reaches the account)
    shard.sweep_chunk = 0
    out = Outputs()
    late = Event("o2", "login", other, due + cfg.state.lateness_ms, {"device_id": "tv"})
    process(shard, [late], models, cfg, out)
    assert [x["account_id"] for x in out.examples if x["model"] == "churn"] == [acc]
    assert acc in shard.dirty


class Token:
    """A stream event as the merge keeps it (hashable, like Faust's)."""

    def __init__(self, message: SimpleNamespace) -> None:
        self.message = message


def test_upstreams_merge_reporting_ingests_and_pass_the_others_through():
    a, b = events_for("a", 4), events_for("a", 4, start=T0 + 30_000)
    b = [Event(f"b{i}", e.type, e.account_id, e.ts, e.fields) for i, e in enumerate(b)]
    p = partition_for("a", P)

    def msg(offset, events, marks=None):
        headers = [(MARKS_HEADER, encode_marks(*marks))] if marks else None
        value = encode_batch(events)
        return Token(SimpleNamespace(partition=p, offset=offset, value=value, headers=headers))

    ups = Upstreams(lambda: ["0:0", "0:1"], Skips(Metrics()), stall_ms=60_000, max_held=1000)
    first, second = msg(0, a, (a[-1].ts, ["0:0"], [])), msg(1, b, (b[-1].ts, ["0:1"], []))
    ups.take([first], now_ms=0)
    assert ups.release(0) == ({}, [])  # "0:1" has not reported yet
    ups.take([second], now_ms=0)
    parts, done = ups.release(0)  # both reported: in event time, up to the slower one
    due = [e.event_id for e in sorted(a + b, key=lambda e: e.ts) if e.ts <= a[-1].ts]
    assert [e.event_id for e in parts[p]] == due and len(due) == 7
    assert done == [first]  # the second message's last event waits for "0:0" to pass it
    foreign = msg(2, events_for("c", 1))  # no report (an older ingest): straight through
    ups.take([foreign], now_ms=0)
    assert ups.release(0) == ({p: foreign_events(foreign)}, [foreign])
    assert ups.held == 1
    ups.forget([p])
    assert ups.held == 0 and ups.forced == 0


def foreign_events(ev):
    return group([ev], Skips(Metrics()))[ev.message.partition]
