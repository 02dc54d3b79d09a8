"""Pseudonymisation (models.privacy) and erasure (``account_erased``) in the pure core."""

from __future__ import annotations

import hmac
from typing import Any

import orjson
import pytest

from models.account import dump_state
from models.contract import Event, parse_message
from models.engine import EngineConfig, Models, Outputs, Shard, process
from models.household import PrefixCensus, household_features, prefix_hash
from models.privacy import Pseudonymiser
from models.replay import replay
from models.simulator import SimConfig, simulate

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


def test_no_raw_identifier_reaches_state_or_outputs(events: list[dict[str, Any]]) -> None:
    p = Pseudonymiser(KEY)
    raw = _raw_identifiers(events)
    assert len(raw) > 100 and any(b":" in r for r in raw)  # IPv6 too
    parsed = []
    for i, e in enumerate(events):
        ok, _ = parse_message(orjson.dumps(e), topic="t", partition=0, offset=i)
        parsed += [p.event(x) for x in ok]
    shard, out, census = Shard(), Outputs(), PrefixCensus()
    for i in range(0, len(parsed), 1000):
        process(shard, parsed[i : i + 1000], Models.fresh(), EngineConfig(), out, census)
    blobs = [dump_state(s) for s in shard.accounts.values()]
    blobs += [orjson.dumps(x) for x in (out.scores, out.alerts, out.examples)]
    blobs += [orjson.dumps([x.to_dict() for x in parsed]), orjson.dumps(census.users)]
    blob = b"\n".join(blobs)
    leaked = [r for r in raw if r in blob]
    assert leaked == []
    # ... and the household holds tokens, not the salted hash of the raw IP
    some_ip = next(e["ip"] for e in events if e.get("ip"))
    assert prefix_hash(some_ip).encode() not in blob


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

    with pytest.raises(SettingsError, match="CHURNWATCH_PSEUDONYM_KEY is not set"):
        Settings().require_pseudonym_key()
    with pytest.raises(SettingsError, match="CHURNWATCH_PSEUDONYM_KEY must be at least 16"):
        Settings.from_env({"CHURNWATCH_PSEUDONYM_KEY": "short"})
    s = Settings.from_env({"CHURNWATCH_PSEUDONYM_KEY": "p" * 32})
    assert s.require_pseudonym_key() == b"p" * 32
    assert s.shown("pseudonym_key") == "<set>" and "p" * 32 not in repr(s)


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
