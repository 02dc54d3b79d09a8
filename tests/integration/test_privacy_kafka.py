"""Privacy on a real broker: no raw device id, profile id, member id, IP address or exact
coordinate on any topic churnwatch writes (internal account events, state changelog,
outputs, dead letters), in its log or its HTTP answers; and ``churnwatch accounts erase``
removes an account (404, tombstones)."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
import time

import orjson
import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from models.state_codec import payload
from streams.topics import ensure_topics
from tests.integration.conftest import produce, read_all

pytestmark = [pytest.mark.integration]

ACCOUNTS = 8
HOUR = 3_600_000


def history(t0: int) -> list[dict]:  # type: ignore[type-arg]
    """A few hours of each account: sign-up, logins and viewing from two networks (IPv4
    and IPv6) with GPS-precise coordinates (7 decimals: no cell centre, 5 decimals, nor
    any feature has them), a failed verification and a paid member; raw ids carry a RAW
    marker."""
    out = []
    for a in range(ACCOUNTS):
        acc = f"acc-{a}"

        def ev(i: int, etype: str, ts: int, acc: str = acc, **fields: object) -> None:
            out.append({"event_id": f"{acc}-{i}", "type": etype, "account_id": acc, "ts": ts,
                        **fields})  # fmt: skip

        ev(0, "subscription_started", t0, plan="std", price=9.99, currency="EUR",
           billing_period="month", max_streams=2)  # fmt: skip
        for i in range(1, 13):
            home = i % 3 != 0
            ip = f"198.51.{a}.{10 + i}" if home else f"2001:db8:{a}:77::{i}"
            geo = (
                {
                    "lat": round(48.8532173 + a * 0.5, 7),
                    "lon": round(2.3498716 + a * 0.01 + i * 1e-4, 7),
                }
                if home
                else {"lat": 45.7640019, "lon": 4.8356871}
            )
            dev = f"RAWdevice-{a}-{i % 4}"
            ev(i, "login", t0 + i * HOUR // 4, device_id=dev, ip=ip, geo=geo, device_type="tv")
            ev(100 + i, "playback_started", t0 + i * HOUR // 4 + 1000, session_id=f"s{a}-{i}",
               device_id=dev, profile_id=f"RAWprofile-{a}-{i % 2}", ip=ip, geo=geo)  # fmt: skip
            ev(200 + i, "activity", t0 + i * HOUR // 4 + 2000, action="like", device_id=dev,
               ip=ip)  # fmt: skip
        ev(300, "household_verification", t0 + 4 * HOUR, device_id=f"RAWdevice-{a}-3",
           outcome="failed")  # fmt: skip
        ev(301, "extra_member_added", t0 + 4 * HOUR + 1, member_id=f"RAWmember-{a}")
    return out


def raw_values(events: list[dict]) -> set[bytes]:  # type: ignore[type-arg]
    found = set()
    for e in events:
        for name in ("device_id", "profile_id", "member_id", "ip"):
            if name in e:
                found.add(e[name].encode())
    return found


def leaks(blob: bytes, raw: set[bytes]) -> list[bytes]:
    return sorted(r for r in raw if r in blob)


def raw_coordinates(events: list[dict]) -> set[float]:  # type: ignore[type-arg]
    return {float(e["geo"][k]) for e in events if "geo" in e for k in ("lat", "lon")}


NUMBER = re.compile(rb"-?\d+\.\d+(?:[eE][-+]?\d+)?")


def coordinates_in(blob: bytes, coordinates: set[float]) -> set[float]:
    """The coordinates in ``blob``, as JSON numbers or as msgpack float64 (account state)."""
    as_text = {float(t) for t in NUMBER.findall(blob)}
    return {x for x in coordinates if x in as_text or b"\xcb" + struct.pack(">d", x) in blob}


def feed(w, kafka_bootstrap: str) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
    """Send the history to the input topics, then start the worker ``w``; return the
    events once it has applied them all."""
    s = w.settings
    t0 = int(time.time() * 1000) - 6 * HOUR  # recent: the erasure (now) is not ahead
    events = history(t0)
    subs = [e for e in events if e["type"] in ("subscription_started", "household_verification",
                                               "extra_member_added")]  # fmt: skip
    usage = [e for e in events if e not in subs]
    # all of it before the worker starts: it then holds each topic's events until the
    # other has delivered its backlog. (Sent to a running worker whose partitions have
    # been silent for the idle time, the subscription events, 4 h ahead of the usage,
    # could be released before the usage arrived, which is then late: a test race)
    ensure_topics(s)
    produce(kafka_bootstrap, s.subscription_topic,
            [(e["account_id"].encode(), orjson.dumps(e)) for e in subs])  # fmt: skip
    # usage as unkeyed arrays: ingest keys it by account itself
    produce(kafka_bootstrap, s.usage_topic,
            [(None, orjson.dumps(usage[i : i + 50])) for i in range(0, len(usage), 50)])  # fmt: skip
    w.start()
    w.wait_metric("churnwatch_events_applied_total", len(events))
    return events


def written(w, kafka_bootstrap: str) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    """Every record of every topic the worker writes, as one blob per topic (account
    states inflated: their zstandard frames would hide what they hold)."""
    s = w.settings
    topics = [s.account_events_topic, f"{s.app_id}-accounts-changelog", s.scores_topic,
              s.alerts_topic, s.training_topic, f"{s.app_id}-models-changelog",
              s.dead_letter_topic]  # fmt: skip

    def value(raw: bytes | None) -> bytes:
        return payload(raw) if raw and raw[:4] == b"CWAS" else raw or b""

    return {
        t: b"\n".join((r.key or b"") + b"\t" + value(r.value) for r in recs)
        for t in topics
        for recs in [read_all(kafka_bootstrap, t, timeout=20)]
    }


def test_no_raw_identifier_is_stored_or_forwarded_and_erasure_leaves_tombstones(
    worker_factory, kafka_bootstrap
):
    w = worker_factory()  # coordinates on the default grid, 1 km
    s = w.settings
    events = feed(w, kafka_bootstrap)
    raw, coordinates = raw_values(events), raw_coordinates(events)
    assert any(b"RAWdevice" in r for r in raw) and any(b":" in r for r in raw)
    assert len(coordinates) > 20
    status, doc = w.get_json("/accounts/acc-3")
    assert status == 200 and doc["events_applied"] == len(events) // ACCOUNTS
    assert doc["features"]["sharing"]["distinct_prefixes_28d"] == 2.0  # a /24 and a /48
    assert doc["features"]["sharing"]["places_28d"] == 2.0  # home and Lyon, coarse
    assert (
        leaks(orjson.dumps(doc), raw) == []
        and coordinates_in(orjson.dumps(doc), coordinates) == set()
    )
    # the operator's lookup: the same answer, one JSON line
    shown = subprocess.run([sys.executable, "-m", "streams", "accounts", "show", "acc-3"],
                           env=w.env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert orjson.loads(shown.stdout)["events_applied"] == doc["events_applied"]

    # erase acc-3 through the command line
    done = subprocess.run([sys.executable, "-m", "streams", "accounts", "erase", "acc-3"],
                          env=w.env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "erasure requested for 1 account" in done.stdout
    deadline = time.monotonic() + 60
    while w.get_json("/accounts/acc-3")[0] != 404:
        assert time.monotonic() < deadline, w.log()
        time.sleep(0.3)
    assert w.get_json("/accounts/acc-4")[0] == 200

    changelog = f"{s.app_id}-accounts-changelog"
    blobs = written(w, kafka_bootstrap)
    assert blobs[s.account_events_topic] and blobs[changelog] and blobs[s.scores_topic]
    for topic, blob in blobs.items():
        assert leaks(blob, raw) == [], topic
        assert coordinates_in(blob, coordinates) == set(), topic
    log_text = w.log_path.read_bytes()
    assert leaks(log_text, raw) == [] and coordinates_in(log_text, coordinates) == set()
    assert w.metrics().get("churnwatch_accounts_erased_total") == 1.0
    # an erased account's data is compactable within a day, its tombstone kept a day
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        for topic in (changelog, s.scores_topic):
            described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
            config = {k: v["value"] for k, v in described["topic"][topic].items()}
            assert config.get("max.compaction.lag.ms") == "86400000", (topic, config)
            assert config.get("delete.retention.ms") == "86400000", (topic, config)
    finally:
        admin.close()
    records = {t: read_all(kafka_bootstrap, t, timeout=20)
               for t in (s.account_events_topic, changelog, s.scores_topic)}  # fmt: skip
    # ... while the internal topic does carry the tokens the household needs
    internal = [x for r in records[s.account_events_topic] for x in orjson.loads(r.value)]
    assert any("net" in x and x["net_v"] == 6 for x in internal)
    assert not any("ip" in x for x in internal)

    # the erased account's last record is a tombstone on the changelog and on risk-scores
    for topic in (changelog, s.scores_topic):
        mine = [r for r in records[topic] if r.key == b"acc-3"]
        assert len(mine) >= 2 and mine[-1].value is None, topic
        assert mine[0].value is not None
    # a restart recovers the changelog: the account stays gone, the others stay
    w.stop()
    w2 = worker_factory(CHURNWATCH_STORE="memory").start()
    assert w2.get_json("/accounts/acc-3")[0] == 404
    status, doc = w2.get_json("/accounts/acc-4")
    assert status == 200 and doc["events_applied"] == len(events) // ACCOUNTS


def test_with_coarsening_off_the_same_search_finds_the_coordinates(worker_factory, kafka_bootstrap):
    """The search above can fail: with CHURNWATCH_GEO_GRID_KM=0 every exact coordinate is on
    the internal topic (JSON) and places' and devices' fixes are in the state changelog
    (msgpack); raw identifiers are still nowhere."""
    w = worker_factory(CHURNWATCH_GEO_GRID_KM="0")
    events = feed(w, kafka_bootstrap)
    w.wait_metric("churnwatch_state_writes_total", ACCOUNTS)
    coordinates = raw_coordinates(events)
    s = w.settings
    blobs = written(w, kafka_bootstrap)
    assert coordinates_in(blobs[s.account_events_topic], coordinates) == coordinates
    assert len(coordinates_in(blobs[f"{s.app_id}-accounts-changelog"], coordinates)) >= ACCOUNTS
    for topic, blob in blobs.items():
        assert leaks(blob, raw_values(events)) == [], topic
