"""Pseudonymisation and coarse coordinates (models.privacy) and erasure (``account_erased``)
in the pure core."""

from __future__ import annotations

import hmac
import math
import random
import re
import struct
from typing import Any

import orjson
import pytest

from models.account import dump_state
from models.contract import Event, parse_message
from models.engine import EngineConfig, Models, Outputs, Shard, process
from models.household import PrefixCensus, haversine_km, household_features, prefix_hash
from models.privacy import GEO_GRID_KM, Pseudonymiser, coarsen, coarsen_geo
from models.replay import replay
from models.simulator import SimConfig, simulate
from models.state_codec import payload

KEY = b"unit-test-pseudonym-key-0123456789"
SIM = SimConfig(accounts=80, days=45, seed=7)


@pytest.fixture(scope="module")
def events() -> list[dict[str, Any]]:
    return list(simulate(SIM))


def _collect(events: list[dict[str, Any]], p: Pseudonymiser | None) -> dict[str, Any]:
    seen: dict[str, list[Any]] = {"scores": [], "alerts": [], "examples": [], "outcomes": []}

    def keep(out: Outputs) -> None:
        seen["scores"] += out.scores
        seen["alerts"] += out.alerts
        seen["examples"] += out.examples
        seen["outcomes"] += out.action_outcomes

    result = replay(events, cfg=EngineConfig(min_churn_examples=50), on_outputs=keep,
                    pseudonymiser=p)  # fmt: skip
    assert result.failed == 0
    seen["final"] = result.scores
    return seen


def test_features_scores_and_alerts_are_identical_with_and_without_pseudonymisation(
    events: list[dict[str, Any]],
) -> None:
    plain, tokens = _collect(events, None), _collect(events, Pseudonymiser(KEY))
    # every feature snapshot learned from (churn and sharing), every score with its
    # factors, every alert with its reasons, every outcome: equal to the bit
    assert len(plain["examples"]) > 200 and len(plain["scores"]) > 300
    assert {x["model"] for x in plain["examples"]} == {"churn", "sharing"}
    assert any(a["kind"] == "sharing" for a in plain["alerts"])
    assert orjson.dumps(tokens, option=orjson.OPT_SORT_KEYS) == orjson.dumps(
        plain, option=orjson.OPT_SORT_KEYS
    )


def _raw_identifiers(events: list[dict[str, Any]]) -> set[bytes]:
    """Device, profile and member ids and IP addresses in the input (long enough not
    to occur by chance inside other bytes)."""
    found = set()
    for e in events:
        for name in ("device_id", "profile_id", "member_id", "ip"):
            if isinstance(e.get(name), str) and len(e[name]) >= 6:
                found.add(e[name].encode())
    return found


def precise(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events with a 7th decimal in every coordinate: a GPS fix's precision, which no
    cell centre (5 decimals) and no feature has by chance, unlike the simulator's 3."""
    out = []
    for e in events:
        if "geo" in e:
            g = e["geo"]
            e = {**e, "geo": {**g, "lat": g["lat"] + 1.7e-6, "lon": g["lon"] - 2.3e-6}}
        out.append(e)
    return out


def raw_coordinates(events: list[dict[str, Any]]) -> set[float]:
    """Every ``lat`` and ``lon`` of the input."""
    return {float(e["geo"][k]) for e in events if "geo" in e for k in ("lat", "lon")}


NUMBER = re.compile(rb"-?\d+\.\d+(?:[eE][-+]?\d+)?")


def found_in(blob: bytes, needles: set[bytes]) -> list[bytes]:
    """The needles that occur in ``blob``: ``[n for n in needles if n in blob]``, searched in
    the distinct runs of the needles' own characters instead (an occurrence lies within
    one such run), a fraction of the multi-MB blob, thousands of needles.

    >>> sorted(found_in(b"x abc-1 ab;zabc-12", {b"abc-1", b"bc-12", b"c;z", b"q"}))
    [b'abc-1', b'bc-12']
    """
    chars = set(b"".join(needles))
    runs = re.findall(b"[" + b"".join(re.escape(bytes([c])) for c in sorted(chars)) + b"]+", blob)
    compact = b"\0".join(set(runs)) if 0 not in chars else blob
    return [n for n in needles if n in compact]


def coordinates_in(blob: bytes, coordinates: set[float]) -> set[float]:
    """The coordinates found in ``blob``: as a JSON number (compared as numbers, so 48.853 is
    not found in 48.85301) or as msgpack's float64 (the account state on the changelog)."""
    as_text = {float(t) for t in NUMBER.findall(blob)}
    return {x for x in coordinates if x in as_text or b"\xcb" + struct.pack(">d", x) in blob}


@pytest.mark.parametrize("grid_km", [GEO_GRID_KM, 0.0], ids=["coarsened", "as-sent"])
def test_no_raw_identifier_or_coordinate_reaches_state_or_outputs(
    events: list[dict[str, Any]], grid_km: float
) -> None:
    p = Pseudonymiser(KEY)
    raw = _raw_identifiers(events)
    assert len(raw) > 100 and any(b":" in r for r in raw)  # IPv6 too
    events = precise(events)
    coordinates = raw_coordinates(events)
    assert len(coordinates) > 500
    parsed = []
    for i, e in enumerate(events):
        ok, _ = parse_message(orjson.dumps(e), topic="t", partition=0, offset=i)
        parsed += [p.event(coarsen(x, grid_km)) for x in ok]  # as the ingest agent does
    shard, out, census = Shard(), Outputs(), PrefixCensus()
    for i in range(0, len(parsed), 1000):
        process(shard, parsed[i : i + 1000], Models.fresh(), EngineConfig(), out, census)
    blobs = [payload(dump_state(s)) for s in shard.accounts.values()]  # inflated
    blobs += [orjson.dumps(x) for x in (out.scores, out.alerts, out.examples)]
    blobs += [orjson.dumps([x.to_dict() for x in parsed]), orjson.dumps(census.users)]
    blob = b"\n".join(blobs)
    leaked = found_in(blob, raw)
    assert leaked == []
    # ... and the household holds tokens, not the salted hash of the raw IP
    some_ip = next(e["ip"] for e in events if e.get("ip"))
    assert prefix_hash(some_ip).encode() not in blob
    # exact coordinates: none with the grid; as sent, the states hold places' and
    # devices' fixes and the internal events all of them (the search can fail)
    found = coordinates_in(blob, coordinates)
    if grid_km:
        assert found == set()
    else:
        assert found == coordinates
        states = b"\n".join(payload(dump_state(s)) for s in shard.accounts.values())
        assert len(coordinates_in(states, coordinates)) > 200


def test_coarse_coordinates_are_cell_centres_of_the_grid() -> None:
    rng = random.Random(5)
    for grid_km in (0.5, 1.0, 5.0):
        for _ in range(2000):
            lat, lon = rng.uniform(-85, 85), rng.uniform(-180, 180)
            g = coarsen_geo({"lat": lat, "lon": lon, "city": "X"}, grid_km)
            assert g["city"] == "X" and -90 <= g["lat"] <= 90 and -180 <= g["lon"] <= 180
            # within half a cell's diagonal, the same on the second pass, 5 decimals
            assert haversine_km(lat, lon, g["lat"], g["lon"]) <= grid_km / math.sqrt(2) + 0.01
            assert coarsen_geo(g, grid_km) == g and round(g["lat"], 5) == g["lat"]
    # cells are grid_km across on the ground, at the equator as in the north
    for lat in (0.0, 45.0, 70.0):
        a = coarsen_geo({"lat": lat, "lon": 10.0}, 1.0)
        b = coarsen_geo(
            {"lat": lat, "lon": 10.0 + 1.5 / (111.195 * math.cos(math.radians(lat)))}, 1.0
        )
        c = coarsen_geo({"lat": lat + 1.5 / 111.195, "lon": 10.0}, 1.0)
        assert 0.9 < haversine_km(a["lat"], a["lon"], b["lat"], b["lon"]) < 2.1
        assert 0.9 < (c["lat"] - a["lat"]) * 111.195 < 2.1
    # the poles and the antimeridian stay in range
    for lat, lon in ((90, 180), (-90, -180), (89.9999, 179.9999), (0, -180), (0, 180)):
        g = coarsen_geo({"lat": lat, "lon": lon}, 1.0)
        assert -90 <= g["lat"] <= 90 and -180 <= g["lon"] <= 180
    # an event without geo, or a grid of 0, is left as it is
    e = Event("e", "login", "a", 0, {"device_id": "d"})
    assert coarsen(e) is e
    e = Event("e", "login", "a", 0, {"geo": {"lat": 1.23456, "lon": 2.34567}})
    assert coarsen(e, 0.0) is e and coarsen(e).fields["geo"] != e.fields["geo"]


def test_a_1_km_grid_keeps_the_household_and_the_alerts(events: list[dict[str, Any]]) -> None:
    """Coarsening moves a fix at most 0.71 km, well within the 3 km a place spans: on the
    simulated population the accounts alerted for sharing are the same."""
    runs = {}
    for grid_km in (0.0, GEO_GRID_KM):
        r = replay(events, cfg=EngineConfig(min_churn_examples=50, geo_grid_km=grid_km))
        runs[grid_km] = r
    alerted = [{a["account_id"] for a in r.alerts if a["kind"] == "sharing"} for r in runs.values()]
    assert alerted[0] and alerted[0] == alerted[1]
    plain, coarse = (r.scores for r in runs.values())
    diffs = [abs(plain[a]["sharing_score"] - coarse[a]["sharing_score"]) for a in plain]
    assert max(diffs) < 0.2, sorted(diffs)[-5:]


def test_tokens_are_per_key_per_kind_and_keep_prefixes_apart() -> None:
    p = Pseudonymiser(KEY)
    assert p.token("device_id", "x") != p.token("profile_id", "x")
    assert p.token("device_id", "x") != Pseudonymiser(b"another-key-0123456789").token(
        "device_id", "x"
    )
    net = p.network
    assert net("198.51.100.7")[:2] == net("198.51.100.250")[:2] != net("198.51.101.7")[:2]
    assert net("198.51.100.7")[1] == 4
    assert net("198.51.100.7")[2] != net("198.51.100.250")[2]  # the address within the /24
    assert net("2001:db8:1:2::1") == net("2001:db8:1:ffff::9") != net("2001:db8:2::1")
    assert net("2001:db8:1:2::1")[1] == 6
    assert net("not an ip")[1] == 0 and net("not an ip") != net("not an IP")
    assert net("fe80::1%eth0")[1] == 6 and net(" 198.51.100.7") == net("198.51.100.7")
    assert net("01.2.3.4")[1] == 0  # leading zeros: no address, as for the household
    # the token is HMAC-SHA256 (RFC 2104), short and long keys alike
    for key in (KEY, b"x" * 100):
        mac = hmac.digest(key, b"device_id\0tv-1", "sha256")[:8].hex()
        assert Pseudonymiser(key).token("device_id", "tv-1") == mac
    # empty identifiers stay empty: the features read them as absent
    e = Event("e", "playback_started", "a", 0, {"session_id": "s", "device_id": "", "ip": ""})
    assert p.event(e).fields == {"session_id": "s", "device_id": ""}
    with pytest.raises(ValueError, match="16 bytes"):
        Pseudonymiser(b"short")


def test_household_reads_tokens_like_the_raw_address() -> None:
    p = Pseudonymiser(KEY)
    ips = ["198.51.100.7", "198.51.100.9", "203.0.113.5", "2001:db8::1", "junk"]
    feats = []
    for tokenise in (False, True):
        from models.household import apply_household, new_household

        hs = new_household()
        for i, ip in enumerate(ips * 3):
            e = Event(f"e{i}", "login", "a", i * 3_600_000, {"device_id": f"d{i % 2}", "ip": ip})
            apply_household(hs, p.event(e) if tokenise else e, max_streams=2)
        feats.append(household_features(hs, 20 * 3_600_000, max_streams=2))
    assert feats[0] == feats[1]
    assert feats[0]["distinct_prefixes_28d"] == 4.0  # two /24s, one /48, one unparsable


HOME_GEO, AWAY_GEO = {"lat": 48.85, "lon": 2.35}, {"lat": 45.76, "lon": 4.84}  # 390 km apart


def _login(i: int, account: str, ts: int, ip: str = "198.51.100.7") -> Event:
    """At home (the TV, 198.51.100.0/24) or, on any other network, a phone far away."""
    home = ip == "198.51.100.7"
    fields = {"device_id": "tv" if home else "phone", "ip": ip}
    fields["geo"] = HOME_GEO if home else AWAY_GEO
    return Event(f"{account}-{i}-{ip}", "login", account, ts, fields)


def test_an_erased_account_is_gone_from_memory_and_gets_tombstones() -> None:
    shard, census, models, cfg = Shard(), PrefixCensus(), Models.fresh(), EngineConfig()
    # b shares a's away-from-home network, so the census knows a
    events = [_login(i, a, i * 3_600_000, ip) for i in range(6) for a in ("a", "b")
              for ip in ("198.51.100.7", "203.0.113.1")]  # fmt: skip
    out = Outputs()
    process(shard, events, models, cfg, out, census)
    assert "a" in shard.accounts and any("a" in u for u in census.users.values())
    shard.dirty.clear()
    # the erasure, then a late event of a in the same buffer, and b carrying on
    out = Outputs()
    erase = Event("x1", "account_erased", "a", 10**13, {})
    process(shard, [_login(7, "b", 7 * 3_600_000), erase], models, cfg, out, census)
    assert "a" not in shard.accounts and "a" not in shard.dirty and shard.erased == {"a"}
    assert shard.clock == 7 * 3_600_000  # a request, not activity: no account's events become late
    assert not any("a" in u for u in census.users.values())
    assert out.erased == ["a"] and all(s["account_id"] != "a" for s in out.scores)
    # a store that still holds a's old state is not read back before the tombstone
    shard.load = lambda account_id: pytest.fail(f"read {account_id} back")  # type: ignore[assignment]
    assert shard.find("a") is None
    # the account's events after the erasure start it afresh
    out = Outputs()
    process(shard, [_login(8, "a", 8 * 3_600_000)], models, cfg, out, census)
    assert shard.accounts["a"].events_applied == 1 and "a" in shard.dirty
    assert [s["account_id"] for s in out.scores] == ["a"]


def test_the_pseudonym_key_is_a_required_secret() -> None:
    from streams.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match=r"CHURNWATCH_PSEUDONYM_KEY \(or .*\) is not set"):
        Settings().require_pseudonym_key()
    with pytest.raises(
        SettingsError, match="CHURNWATCH_PSEUDONYM_KEY or CHURNWATCH_HASH_KEY must be"
    ):
        Settings.from_env({"CHURNWATCH_PSEUDONYM_KEY": "short"})
    s = Settings.from_env({"CHURNWATCH_PSEUDONYM_KEY": "p" * 32})
    assert s.require_pseudonym_key() == b"p" * 32
    assert s.shown("pseudonym_key") == "<set>" and "p" * 32 not in repr(s)


def test_the_pseudonym_key_is_also_read_as_churnwatch_hash_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The issue's name for it: either variable (or its _FILE), or both with one value."""
    from streams.settings import Settings, SettingsError, unknown_env

    key = "h" * 32
    assert Settings.from_env({"CHURNWATCH_HASH_KEY": key}).pseudonym_key == key
    both = {"CHURNWATCH_HASH_KEY": key, "CHURNWATCH_PSEUDONYM_KEY": key}
    assert Settings.from_env(both).pseudonym_key == key and unknown_env(both) == []
    (tmp_path / "k").write_text(key + "\n")
    from_file = {"CHURNWATCH_HASH_KEY_FILE": str(tmp_path / "k")}
    assert Settings.from_env(from_file).pseudonym_key == key and unknown_env(from_file) == []
    with pytest.raises(SettingsError, match="CHURNWATCH_PSEUDONYM_KEY and CHURNWATCH_HASH_KEY"):
        Settings.from_env({**both, "CHURNWATCH_PSEUDONYM_KEY": "p" * 32})
    with pytest.raises(
        SettingsError, match="_PSEUDONYM_KEY or CHURNWATCH_HASH_KEY must be at least 16"
    ):
        Settings.from_env({"CHURNWATCH_HASH_KEY": "short"})


def test_the_geo_grid_is_a_setting_passed_to_the_engine() -> None:
    from streams.settings import Settings, SettingsError

    assert Settings().engine_config().geo_grid_km == GEO_GRID_KM == EngineConfig().geo_grid_km
    s = Settings.from_env({"CHURNWATCH_GEO_GRID_KM": "0"})
    assert s.geo_grid_km == 0 and s.engine_config().geo_grid_km == 0
    with pytest.raises(SettingsError, match="CHURNWATCH_GEO_GRID_KM must be in"):
        Settings.from_env({"CHURNWATCH_GEO_GRID_KM": "-1"})


class _Table(dict):  # type: ignore[type-arg]
    """What AccountStore needs of a Faust table: a dict and its local ``data`` store."""

    @property
    def data(self) -> _Table:
        return self


def test_the_account_store_writes_the_tombstone_first_and_deletes_locally() -> None:
    from models.partitioning import partition_for
    from streams.agents.accounts import AccountStore

    table = _Table()
    store, models, cfg = AccountStore(table, 4), Models.fresh(), EngineConfig()
    shard = store.shard(partition_for("a", 4))
    logins = [_login(i, "a", i * 3_600_000) for i in range(3)]
    process(shard, logins, models, cfg, Outputs())
    store.commit(store.flush())
    assert b"a" in table and store.peek("a") is not None
    # erased, then an event of the account again, in one buffer: tombstone, then the new state
    erase = Event("x", "account_erased", "a", 0, {})
    process(shard, [erase, _login(9, "a", 9 * 3_600_000)], models, cfg, Outputs())
    records = store.flush()
    assert [(key, raw is None) for _, key, raw in records] == [(b"a", True), (b"a", False)]
    store.commit(records)
    assert store.peek("a").events_applied == 1  # type: ignore[union-attr]
    # erased alone: the key leaves the local store, the lookup finds nothing
    process(shard, [Event("y", "account_erased", "a", 0, {})], models, cfg, Outputs())
    records = store.flush()
    assert records == [(partition_for("a", 4), b"a", None)]
    store.commit(records)
    assert b"a" not in table and store.peek("a") is None and store.accounts == 0


def test_a_replay_forgets_the_scores_of_an_erased_account(events: list[dict[str, Any]]) -> None:
    first = events[0]["account_id"]
    erase = {"event_id": "x", "type": "account_erased", "account_id": first,
             "ts": events[2999]["ts"]}  # fmt: skip
    r = replay([*events[:3000], erase])
    assert first not in r.scores and len(r.scores) > 10 and r.failed == r.dead_letters == 0


def test_compacted_topics_with_account_data_drop_an_erased_account_within_a_day() -> None:
    from streams.settings import Settings
    from streams.topics import ERASABLE, topic_specs

    s = Settings()
    day = {"max.compaction.lag.ms": "86400000", "delete.retention.ms": "86400000"}
    assert ERASABLE == day
    assert topic_specs(s)[s.scores_topic][1] == {"cleanup.policy": "compact", **day}
