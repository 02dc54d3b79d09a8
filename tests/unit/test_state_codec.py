"""Account state encoding (models.state_codec): round trip, versions, v2 migration, safety."""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
import statistics
import zlib
from array import array
from collections import deque
from pathlib import Path

import orjson
import pytest
import zstandard

from models import state_codec
from models.account import (
    AccountState,
    DayBucket,
    Days,
    Snapshot,
    dump_state,
    load_state,
    new_account,
    pack_floats,
)
from models.alerting import AlertTrack
from models.contract import Event, parse_message
from models.engine import EngineConfig, Models, Outputs, Shard, process
from models.household import MAX_TRAVEL_FLAGS, Device, HouseholdState, Place, evidence
from models.risk import RiskState
from models.simulator import SimConfig, simulate

DATA = Path(__file__).parent / "data"
T0 = 1_767_225_600_000
D = 86_400_000


def rich_risk() -> RiskState:
    return RiskState(
        tracks={"churn": AlertTrack(True, 2), "sharing": AlertTrack(False, 1)},
        published=(0.41, 0.125), scores=(0.43, 0.1), models=("churn-v7", "sharing-v3"),
        scored_ts=T0 + 9 * D, open_alerts={"churn": T0 + 8 * D},
        recent=[{"alert_id": "a-1:churn:2", "kind": "churn", "account_id": "a-1",
                 "ts": "2026-01-09T00:00:00Z", "score": 0.43, "threshold": 0.4,
                 "reasons": [{"feature": "payment_failed_28d", "value": 2.0, "weight": 0.31}],
                 "action": "payment_reminder", "model": "churn-v7",
                 "scores": {"churn": 0.43, "sharing": 0.1}}],
        decided_ts=T0 + 9 * D)  # fmt: skip


def rich_household() -> HouseholdState:
    return HouseholdState(
        first_ts=T0, max_ts=T0 + 9 * D, sealed_until=T0 + 8 * D, next_pid=2,
        places={0: Place(0, 52.52, 13.4, n_geo=7, last_ts=T0 + 9 * D, paid=False,
                         prefixes={"f57492b90ed48c91": (T0, T0 + 9 * D, 4),
                                   "348a51704e2d50c7": (T0, T0 + D)},
                         days={T0 // D: 3_600_000, T0 // D + 1: 1_800_000},
                         hours=[0.0] * 20 + [1.25, 2.5, 0.1 + 0.2, 0.0], hours_ts=T0 + 9 * D),
                1: Place(1, None, None, paid=True)},
        prefixes={"f57492b90ed48c91": (T0 + 9 * D, 0), "348a51704e2d50c7": (T0 + D, 1)},
        devices={"a-1-d1": Device(T0, T0 + 9 * D, "tv", 0, (T0 + 9 * D, 52.52, 13.4),
                                  {0: {T0 // D, T0 // D + 1}}, {T0 // D: 60_000}),
                 "a-1-d2": Device(T0 + D, T0 + 2 * D)},
        profiles={"p1": T0 + 9 * D}, open_sessions={"s9": (T0 + 9 * D, 0, "a-1-d1")},
        pending_stops={"s8": (T0 + 9 * D - 5, None), "s7": (T0 + 9 * D - 6, 12.5)},
        intervals=[(T0 + 8 * D, T0 + 8 * D + 3_600_000, 0, "a-1-d1"),
                   (T0 + 8 * D, T0 + 8 * D + 60_000, -1, "")],
        day_max_streams={T0 // D: 2}, day_over_ms={T0 // D: 0},
        travel_flags=deque([T0 + 3 * D, T0 + 4 * D], maxlen=32), unplaced_paid_members=1,
        failed_devices={"a-1-d2": T0 + 5 * D}, verifications_failed=1, verifications_verified=2)  # fmt: skip


def rich_state() -> AccountState:
    """Every field set, with awkward floats (-0.0, 0.1 + 0.2, 1e300, whole numbers).

    ``data/account_state_v2.bin`` is ``dump_state`` of this state by commit 7b94dcc
    (the risk state then sat in ``alerts={"risk": rich_risk()}``).
    """
    return AccountState(
        account_id="a-1", events_applied=42, first_ts=T0, max_ts=T0 + 9 * D,
        seen_ids={"e41": T0 + 9 * D - 1, "e42": T0 + 9 * D},
        plan="premium", price=17.99, currency="EUR", billing_period="year", max_streams=4,
        plan_ts=T0 + 2 * D, start_ts=T0, status="active",
        status_changes=[(T0, "started"), (T0 + 3 * D, "cancelled"), (T0 + 4 * D, "reactivated")],
        price_changes=[(T0 + 2 * D, 15.99, 17.99)], plan_changes=[(T0 + 2 * D, 1)],
        failed_payments=[T0 + 5 * D, T0 + 6 * D], last_payment_ok_ts=T0 + 7 * D,
        support_contacts=[T0 + 6 * D],
        days=Days.of({T0 // D: DayBucket(3600.0, 2, 5, 3.0, {"like": 2.0, "other": 1.0}),
                      T0 // D + 1: DayBucket(0.1 + 0.2, 0, 1, 0.0, {}),
                      T0 // D + 9: DayBucket(-0.0, 1, 1, 1.5, {"share_link": 0.5})}),
        actions=["like", "share_link"], devices={"a-1-d1": [T0, T0 + 9 * D]},
        profiles={"p1": [T0, T0 + 9 * D]}, open_sessions={"s9": T0 + 9 * D},
        orphan_stops={"s8": (T0 + 9 * D - 5, None), "s7": (T0 + 9 * D - 6, 12.5)},
        expired_sessions=3, last_playback_ts=T0 + 9 * D, last_usage_ts=T0 + 9 * D,
        last_obs_ts=T0 + 7 * D,
        pending=[(T0, Snapshot.of({"tenure_days_log": 0.0, "cancelled": 0.0,
                                   "action_like_28d": 2.0})),
                 (T0 + 7 * D, Snapshot.of({"tenure_days_log": 2.0794415416798357,
                                           "cancelled": 0.0, "action_like_28d": 2.0,
                                           "action_share_link_28d": 0.5,
                                           "engagement_trend": -0.0,
                                           "days_to_renewal": 1e300}))],
        dropped_snapshots=1, risk=rich_risk(), household=rich_household())  # fmt: skip


def rich_state_v4() -> AccountState:
    """``rich_state`` with the fields added in version 4 (open action follow-ups)."""
    s = rich_state()
    s.risk.follow_ups = [("churn", "payment_reminder", T0 + 8 * D),
                         ("sharing", "extra_member_offer", T0 + 9 * D)]  # fmt: skip
    return s


def rich_state_v5() -> AccountState:
    """``rich_state_v4`` with a pending snapshot of the long view (names added in version 5)."""
    s = rich_state_v4()
    s.pending.append((T0 + 14 * D, Snapshot.of({"tenure_days_log": 2.7, "usage_hl3d": 4.5,
                                                "usual_actions_dropped": 0.25,
                                                "acttrend_h7": -1.0,
                                                "action_like_28d": 1.0})))  # fmt: skip
    return s


def same(a: object, b: object) -> bool:
    """Equal down to float bits, types and deque bounds (``==`` calls -0.0 and 0.0 equal)."""
    if isinstance(a, Snapshot) or isinstance(b, Snapshot):  # a snapshot by its values
        a, b = (x.as_dict() if isinstance(x, Snapshot) else x for x in (a, b))
    if dataclasses.is_dataclass(a):
        return type(a) is type(b) and all(
            same(getattr(a, f.name), getattr(b, f.name))
            for f in dataclasses.fields(a)
            if f.compare  # derived caches (compare=False) are not persisted
        )
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple | deque):
        return (
            type(a) is type(b)
            and len(a) == len(b)
            and getattr(a, "maxlen", None) == getattr(b, "maxlen", None)
            and all(same(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, float):
        return type(b) is float and repr(a) == repr(b)
    return type(a) is type(b) and a == b


def rich_state_v7() -> AccountState:
    """``rich_state_v5`` (the long-view names) with a place prefix holding the address-pool
    evidence of version 6: everything version 7 holds."""
    s = rich_state_v5()
    place = next(iter(s.household.places.values()))
    place.prefixes["0123456789abcdef"] = (T0, T0 + 2 * D, 4, 77, 76, T0 + D, 1)
    return s


def rich_state_v11() -> AccountState:
    """``rich_state_v7`` with the network groups of version 11: a device's group, and a
    network's group and days seen."""
    s = rich_state_v7()
    hs = s.household
    for dev in hs.devices.values():
        dev.group = 2
    for h, seen in list(hs.prefixes.items()):
        hs.prefixes[h] = (*seen[:2], 2, 3)
    return s


def test_round_trip_is_exact() -> None:
    s = rich_state_v11()
    assert any(len(v) == 4 for v in s.household.prefixes.values())
    raw = dump_state(s)
    assert raw[:5] == b"CWAS\x0b"
    back = load_state(raw)
    assert back == s and same(back, s)
    assert back.household.travel_flags.maxlen == MAX_TRAVEL_FLAGS
    assert same(load_state(dump_state(new_account("b"))), new_account("b"))


def test_the_wire_schema_covers_every_field_of_the_state() -> None:
    def wire(struct: type, *extra: str) -> set[str]:
        return set(struct.__struct_fields__) - set(extra)

    def names(cls: type) -> set[str]:
        return {f.name for f in dataclasses.fields(cls) if f.compare}  # not derived caches

    assert wire(state_codec._Account, "names") == names(AccountState)
    assert wire(state_codec._Household) == names(HouseholdState)
    assert wire(state_codec._Place) == names(Place)
    assert wire(state_codec._Device) == names(Device)
    assert wire(state_codec._Risk) == names(RiskState)
    assert len(set(state_codec.NAMES)) == len(state_codec.NAMES)


def test_version_3_records_stay_readable() -> None:
    """``data/account_state_v3.bin`` is ``dump_state(rich_state())`` when version 3 was made:
    a change to the schema must come with a new version (and this file kept)."""
    assert same(load_state((DATA / "account_state_v3.bin").read_bytes()), rich_state())


def test_version_3_records_get_no_follow_ups_and_are_written_as_version_11() -> None:
    state = load_state((DATA / "account_state_v3.bin").read_bytes())
    assert state.risk.follow_ups == []
    state.risk.follow_ups.append(("churn", "retention_offer", T0))
    raw = dump_state(state)
    assert raw[:5] == b"CWAS\x0b"
    assert load_state(raw).risk.follow_ups == [("churn", "retention_offer", T0)]


def test_version_4_records_stay_readable() -> None:
    """``data/account_state_v4.bin`` is ``dump_state(rich_state_v4())`` when version 4 was
    made: a change to the schema must come with a new version (and this file kept)."""
    assert same(load_state((DATA / "account_state_v4.bin").read_bytes()), rich_state_v4())


def rich_state_v6() -> AccountState:
    """``rich_state_v4`` with a place prefix holding the address-pool evidence of version 6
    (last host octet, the one before, time of its last change, pool flag)."""
    s = rich_state_v4()
    place = next(iter(s.household.places.values()))
    place.prefixes["0123456789abcdef"] = (T0, T0 + 2 * D, 4, 77, 76, T0 + D, 1)
    return s


def test_version_7_records_stay_readable() -> None:
    """``data/account_state_v7.bin`` is ``dump_state(rich_state_v7())`` when version 7 was
    made: a change to the schema must come with a new version (and this file kept)."""
    raw = (DATA / "account_state_v7.bin").read_bytes()
    assert raw[:5] == b"CWAS\x07"
    back = load_state(raw)
    assert same(back, rich_state_v7())
    assert dump_state(back) == dump_state(rich_state_v7())  # written as version 11


def payload(raw: bytes, version: int = 11) -> bytes:
    """The msgpack array of a version 10 or 11 record (what version 8 stored as is)."""
    assert raw[:5] == b"CWAS" + bytes([version])
    return state_codec.payload(raw)


def test_version_8_records_stay_readable() -> None:
    """``data/account_state_v8.bin`` is ``dump_state(rich_state_v7())`` when version 8 was
    made: a change to the schema must come with a new version (and this file kept).
    Version 9 compressed the same array."""
    raw = (DATA / "account_state_v8.bin").read_bytes()
    assert raw[:5] == b"CWAS\x08"
    assert raw[5:] == state_codec.payload((DATA / "account_state_v9.bin").read_bytes())
    assert same(load_state(raw), rich_state_v7())


def test_version_9_records_stay_readable_and_are_smaller() -> None:
    """``data/account_state_v9.bin`` is ``dump_state(rich_state_v7())`` when version 9 was
    made: a frame without a dictionary."""
    raw = (DATA / "account_state_v9.bin").read_bytes()
    assert raw[:5] == b"CWAS\x09"
    assert same(load_state(raw), rich_state_v7())
    assert len(raw) < 0.8 * len((DATA / "account_state_v8.bin").read_bytes())


def test_version_10_records_stay_readable_and_are_smaller() -> None:
    """``data/account_state_v10.bin`` is ``dump_state(rich_state_v7())`` when version 10
    was made: the frame compressed with ``models/state_v10.zdict``. Its pending snapshot
    packs its counts in a byte each (kind 3 of ``pack_floats``). It reads back as the
    state it was, with no network groups (version 11 added them)."""
    raw = (DATA / "account_state_v10.bin").read_bytes()
    assert payload(raw, 10)  # inflated with the dictionary version 11 shares
    back = load_state(raw)
    assert same(back, rich_state_v7())
    assert len(raw) < len((DATA / "account_state_v9.bin").read_bytes())
    # no network groups: every device in none, every network as (ts, place)
    assert {d.group for d in back.household.devices.values()} == {-1}
    assert {len(v) for v in back.household.prefixes.values()} == {2}


def test_version_10_networks_are_padded_when_next_seen() -> None:
    back = load_state((DATA / "account_state_v10.bin").read_bytes())
    hs = back.household
    h, (ts, pid) = next(iter(hs.prefixes.items()))
    dev = next(iter(hs.devices.values()))
    hs.prefixes[h] = evidence._link(hs, hs.prefixes[h], dev, ts + D, pid)
    assert hs.prefixes[h] == (ts + D, pid, dev.group, 1) and dev.group >= 0
    assert load_state(dump_state(back)) == back


def test_version_11_records_stay_readable() -> None:
    """``data/account_state_v11.bin`` is ``dump_state(rich_state_v11())`` when version 11
    was made: a change to the schema must come with a new version (and this file kept)."""
    raw = (DATA / "account_state_v11.bin").read_bytes()
    assert payload(raw) == payload(dump_state(rich_state_v11()))
    assert same(load_state(raw), rich_state_v11())


def test_the_dictionary_is_the_one_version_10_was_made_with(monkeypatch) -> None:
    raw = (Path(state_codec.__file__).parent / state_codec.DICTIONARY).read_bytes()
    assert hashlib.sha256(raw).hexdigest() == state_codec.DICTIONARY_SHA256
    monkeypatch.setattr(state_codec, "DICTIONARY_SHA256", "0" * 64)
    with pytest.raises(RuntimeError, match="not the dictionary of state version 10"):
        state_codec._dictionary()  # what importing the codec does


def test_a_frame_that_hides_or_inflates_its_size_is_refused_before_it_is_inflated() -> None:
    body = payload(dump_state(new_account("a")))
    for version, dictionary in ((9, None), (10, state_codec._DICTIONARY)):
        header = b"CWAS" + bytes([version])
        unsized = zstandard.ZstdCompressor(dict_data=dictionary, write_content_size=False)
        with pytest.raises(ValueError, match="unknown or too large"):
            load_state(header + unsized.compress(body))
        sized = zstandard.ZstdCompressor(dict_data=dictionary)
        bomb = sized.compress(bytes(state_codec.MAX_PAYLOAD + 1))
        assert len(bomb) < 4096
        with pytest.raises(ValueError, match="unknown or too large"):
            load_state(header + bomb)
        assert same(load_state(header + sized.compress(body)), new_account("a"))


def test_pending_snapshots_are_packed_bit_for_bit_and_once() -> None:
    s = new_account("p")
    values = {"zero": 0.0, "count": 3.0, "rate": 0.1, "neg": -0.25, "negzero": -0.0,
              "tiny": 1e-300, "big": 1e300, "int": 0}  # fmt: skip
    s.pending.append((T0, Snapshot.of(values)))
    raw = dump_state(s)
    back = load_state(raw).pending[0][1]
    assert back.names == tuple(values)
    read = back.as_dict()  # unpacked only when asked (as the snapshot matures)
    assert [repr(v) for v in read.values()] == [repr(float(v)) for v in values.values()]
    assert back.packed == s.pending[0][1].packed  # read back as written, not repacked
    dense = new_account("p")
    dense.pending.append((T0, dict(values)))  # type: ignore[arg-type]
    assert dump_state(dense) == raw  # a plain dict (a version 2 state's) packs the same
    # a snapshot of ~76 churn features: a kind byte each and 4 or 8 bytes per non-zero
    # value, not 8 bytes each
    wide = {f"f{i}": (0.0 if i % 5 == 0 else float(i) if i % 3 else i / 7) for i in range(76)}
    assert len(pack_floats(list(wide.values()))) < 0.7 * 8 * 76


def test_a_corrupt_packed_snapshot_raises_value_error() -> None:
    s = new_account("p")
    s.pending.append((T0, Snapshot.of({"a": 0.1, "b": 2.0})))
    body = payload(dump_state(s))
    packed = s.pending[0][1].packed
    corrupt = state_codec.frame(body.replace(packed, packed[:-1] + b"\x00\x00"))
    with pytest.raises(ValueError, match="corrupt"):
        load_state(corrupt)


def test_days_written_in_the_order_they_came_are_read_in_day_order() -> None:
    # before the day columns a late event's day was written after the days it came after
    s = rich_state_v7()
    assert s.days.day == sorted(s.days.day) and [len(a) for a in s.days.actions] == [2, 0, 1]
    wire = state_codec._DECODER.decode(payload(dump_state(s)))
    wire.days.day = [wire.days.day[i] for i in (1, 0, 2)]  # day 1 came before day 0
    wire.days.watch_s, wire.days.sessions = [0.1 + 0.2, 3600.0, -0.0], [0, 2, 1]
    wire.days.usage_events, wire.days.activity = [1, 5, 1], array("f", [0, 3, 1.5]).tobytes()
    wire.days.action_count = [0, 2, 1]
    raw = state_codec.frame(state_codec._ENCODER.encode(wire))
    back = load_state(raw)
    assert same(back, s)
    wire.days.day[1] = wire.days.day[0]  # a day twice
    raw = state_codec.frame(state_codec._ENCODER.encode(wire))
    with pytest.raises(ValueError, match="a day twice"):
        load_state(raw)


def test_version_6_records_stay_readable() -> None:
    """``data/account_state_v6.bin`` is ``dump_state(rich_state_v6())`` when version 6 was
    made: a change to the schema must come with a new version (and this file kept)."""
    raw = (DATA / "account_state_v6.bin").read_bytes()
    assert raw[:5] == b"CWAS\x06"
    assert same(load_state(raw), rich_state_v6())


def test_a_version_4_prefix_record_gets_the_pool_evidence_when_seen_again() -> None:
    """A version 4 prefix (first, last, version) is padded on its next event: the address
    it was at is unknown, so the first address seen is no change."""
    from models.household.evidence import _seen

    old = load_state((DATA / "account_state_v4.bin").read_bytes())
    place = next(iter(old.household.places.values()))
    h, record = next(iter(place.prefixes.items()))
    assert len(record) == 3
    assert _seen(record, T0 + 10 * D, 4, 9) == (record[0], T0 + 10 * D, 4, 9, -1, 0, 0)
    later = _seen(_seen(record, T0 + 10 * D, 4, 9), T0 + 11 * D, 4, 10)
    assert later[3:] == (10, 9, T0 + 11 * D, 0)


def test_version_5_records_stay_readable_and_keep_the_long_view_names_in_the_table() -> None:
    """``data/account_state_v5.bin`` is ``dump_state(rich_state_v5())`` when version 5 was
    made: a change to the schema must come with a new version (and this file kept)."""
    assert same(load_state((DATA / "account_state_v5.bin").read_bytes()), rich_state_v5())
    v4 = load_state((DATA / "account_state_v4.bin").read_bytes())  # its own names: after 30
    assert same(load_state(dump_state(v4)), v4)
    raw = dump_state(rich_state_v5())
    assert b"usage_hl3d" not in raw and b"acttrend_h7" not in raw  # fixed names: an index


def test_a_version_2_pickle_is_migrated() -> None:
    raw = (DATA / "account_state_v2.bin").read_bytes()
    assert raw[:5] == b"CWAS\x02"
    assert same(load_state(raw), rich_state())


def test_a_simulated_version_2_state_is_migrated() -> None:
    """A real state of ``churnwatch simulate`` data, pickled by commit 7b94dcc."""
    state = load_state((DATA / "account_state_v2_sim.bin").read_bytes())
    assert state.account_id == "a0000007" and len(state.pending) == 5
    assert state.risk.recent and state.risk.recent[0]["alert_id"] == "a0000007:sharing:1"
    assert same(load_state(dump_state(state)), state)


class Exploit:
    """Unpickling this would run ``open(marker, "w")`` (or anything else)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.marker), "w")


class OsSystem:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return os.system, ("false",)


def test_a_crafted_version_2_pickle_raises_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for payload in (Exploit(marker), [Exploit(marker)], OsSystem()):
        with pytest.raises(ValueError, match="not part of an account state"):
            load_state(b"CWAS\x02" + pickle.dumps(payload, protocol=5))
    assert not marker.exists()
    # an allowed class in the wrong place is no state either
    with pytest.raises(ValueError):
        load_state(b"CWAS\x02" + pickle.dumps(deque([1]), protocol=5))


@pytest.mark.parametrize(
    "raw",
    [b"", b"junk", b"CWAS", b"CWAS\x03", b"CWAS\x03garbage", b"CWAS\x02garbage",
     b"XXXX\x03" + dump_state(new_account("a"))[5:], dump_state(new_account("a"))[:-3]],
)  # fmt: skip
def test_garbage_raises_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):
        load_state(raw)


def test_an_unknown_version_raises_value_error() -> None:
    raw = dump_state(new_account("a"))
    for version in (0, 1, 12, 255):
        with pytest.raises(ValueError, match=f"version {version}"):
            load_state(raw[:4] + bytes([version]) + raw[5:])


def events(cfg: SimConfig) -> list[Event]:
    out: list[Event] = []
    for i, raw in enumerate(simulate(cfg)):
        parsed, _ = parse_message(orjson.dumps(raw), topic="t", partition=0, offset=i)
        out += parsed
    return out


def run(evs: list[Event], *, round_trip: bool) -> tuple[list[Outputs], list[Shard]]:
    """``models.replay``'s loop; with ``round_trip`` every state goes through
    ``dump_state``/``load_state`` after every batch, as a restarted worker would."""
    cfg = EngineConfig(min_churn_examples=100)
    models, shards, outs = Models.fresh(), [Shard() for _ in range(4)], []
    for i in range(0, len(evs), 250):
        by_partition: dict[int, list[Event]] = {}
        for e in evs[i : i + 250]:
            by_partition.setdefault(zlib.crc32(e.account_id.encode()) % 4, []).append(e)
        out = Outputs()
        for p, part in by_partition.items():
            process(shards[p], part, models, cfg, out)
        for kind in ("churn", "sharing"):
            models.get(kind).learn_many(
                [(x["features"], x["label"], x["example_id"]) for x in out.examples
                 if x["model"] == kind]
            )  # fmt: skip
        outs.append(out)
        if round_trip:
            for shard in shards:
                shard.accounts = {a: load_state(dump_state(s)) for a, s in shard.accounts.items()}
    return outs, shards


def test_the_engine_gives_the_same_outputs_from_decoded_states() -> None:
    evs = events(SimConfig(accounts=30, days=75, seed=5))
    plain, plain_shards = run(evs, round_trip=False)
    decoded, decoded_shards = run(evs, round_trip=True)
    assert sum(len(o.alerts) for o in plain) > 0 and sum(len(o.examples) for o in plain) > 100
    for a, b in zip(plain, decoded, strict=True):
        assert (a.scores, a.alerts, a.examples, a.outcomes, a.action_outcomes) == (
            b.scores, b.alerts, b.examples, b.outcomes, b.action_outcomes
        )  # fmt: skip
    for a, b in zip(plain_shards, decoded_shards, strict=True):
        assert a.accounts == b.accounts


def test_the_pending_snapshots_of_a_run_are_float32_and_packed_without_float64() -> None:
    """``models.labels.taken`` rounds a snapshot when it is taken: every value of a
    simulated run's pending snapshots is stored in 4 bytes, one or none (kinds 1, 3, 0);
    the counts among them in one."""
    _, shards = run(events(SimConfig(accounts=30, days=75, seed=5)), round_trip=False)
    snapshots = [x for sh in shards for st in sh.accounts.values() for _, x in st.pending]
    assert len(snapshots) > 50
    for x in snapshots:
        values = list(x.as_dict().values())
        assert values == array("f", values).tolist()
        assert 2 not in x.packed[: len(values)]
    kinds = b"".join(x.packed[: len(x.names)] for x in snapshots)
    assert kinds.count(3) > 0.2 * len(kinds)


def test_a_simulated_runs_states_are_smaller_with_the_dictionary() -> None:
    """Version 10's dictionary against version 9's frame of the same arrays, and the
    places' viewing rhythm kept in float32 (a column of 4-byte values)."""
    _, shards = run(events(SimConfig(accounts=30, days=75, seed=5)), round_trip=False)
    states = [st for sh in shards for st in sh.accounts.values()]
    v10 = [dump_state(st) for st in states]
    v9 = [b"CWAS\x09" + zstandard.ZstdCompressor(level=3).compress(payload(r)) for r in v10]
    assert all(
        load_state(a) == load_state(b) == st for a, b, st in zip(v10, v9, states, strict=True)
    )
    assert statistics.median(map(len, v10)) < 0.9 * statistics.median(map(len, v9))
    hours = [place.hours for st in states for place in st.household.places.values()]
    assert len(hours) >= 30 and any(sum(h) > 0 for h in hours)
    assert all(h == array("f", h).tolist() for h in hours)


def test_fields_missing_from_an_old_pickle_get_their_defaults() -> None:
    """States pickled before ``RiskState.decided_ts`` existed lack the slot."""
    old = state_codec._v2(RiskState)()
    old.__setstate__((None, {f.name: getattr(RiskState(), f.name)
                             for f in dataclasses.fields(RiskState) if f.name != "decided_ts"}))  # fmt: skip
    assert state_codec._v2_build(old) == RiskState() and RiskState().decided_ts is None
    place = state_codec._v2(Place)()
    place.__setstate__((None, {"lat": None, "lon": None}))  # no pid
    with pytest.raises(ValueError, match="Place of a version 2 state"):
        state_codec._v2_build(place)
