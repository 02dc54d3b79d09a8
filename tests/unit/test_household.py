"""Household evidence: hand-built archetypes, out-of-order input, bounds, privacy."""

from __future__ import annotations

import itertools
import pickle
import random

import pytest

from models.contract import Event
from models.household import (
    DAY_MS,
    FEATURE_NAMES,
    HOUR_MS,
    MAX_DEVICES,
    MAX_FAILED_DEVICES,
    MAX_INTERVALS,
    MAX_OPEN_SESSIONS,
    MAX_PENDING_STOPS,
    MAX_PLACES,
    MAX_PREFIXES,
    MAX_PROFILES,
    POPULAR_ACCOUNTS,
    WINDOW_DAYS,
    PrefixCensus,
    apply_household,
    household_features,
    new_household,
    prefix_hash,
)
from models.sharing import sharing_evidence_score

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MIN = 60_000
HOME_GEO = {"lat": 52.520, "lon": 13.405}  # Berlin
HOME_IP = "198.51.100.23"
DAYS = 21

_ids = itertools.count()


def ev(kind: str, ts: int, **fields: object) -> Event:
    return Event(f"e{next(_ids)}", kind, "a-1", ts, fields)


def watch(out, device, start, minutes, *, kind="tv", ip=HOME_IP, geo=HOME_GEO, profile=None):
    """A playback (start + stop) of ``device`` from ``start`` for ``minutes``."""
    sid = f"s{next(_ids)}"
    net = {k: v for k, v in (("ip", ip), ("geo", geo)) if v is not None}
    prof = {"profile_id": profile} if profile else {}
    out.append(
        ev(
            "playback_started",
            start,
            session_id=sid,
            device_id=device,
            device_type=kind,
            **net,
            **prof,
        )
    )
    out.append(
        ev("playback_stopped", start + minutes * MIN, session_id=sid, watched_s=minutes * 60)
    )


def home_life(out, days=range(DAYS), *, devices=(("tv", "tv"), ("phone", "mobile"))):
    """An ordinary household: TV 20:00-22:00 UTC, the phone 21:00-21:40 every other day."""
    for d in days:
        base = T0 + d * DAY_MS
        watch(out, devices[0][0], base + 20 * HOUR_MS, 120, kind=devices[0][1], profile="p1")
        if d % 2 == 0 and len(devices) > 1:
            watch(out, devices[1][0], base + 21 * HOUR_MS, 40, kind=devices[1][1], profile="p2")


def single_household():
    out = []
    home_life(out)
    return out, 2


def big_family():
    """Six devices at one address, four profiles, up to the plan's 4 streams every evening."""
    out = []
    kinds = ["tv", "tv", "tablet", "mobile", "mobile", "web"]
    for d in range(DAYS):
        base = T0 + d * DAY_MS
        for i in range(4):
            dev = (d + i) % 6
            watch(
                out,
                f"dev{dev}",
                base + (19 + i % 2) * HOUR_MS,
                110,
                kind=kinds[dev],
                profile=f"p{i}",
            )
    return out, 4


def traveller():
    """One phone away for a week in Madrid (hotel Wi-Fi); home devices idle meanwhile."""
    out = []
    home_life(out, range(0, 10))
    madrid, hotel_ip = {"lat": 40.4168, "lon": -3.7038}, "203.0.113.80"
    out.append(
        ev(
            "login",
            T0 + 10 * DAY_MS + 7 * HOUR_MS,
            device_id="phone",
            device_type="mobile",
            ip=HOME_IP,
            geo=HOME_GEO,
        )
    )
    for d in range(10, 17):
        watch(
            out, "phone", T0 + d * DAY_MS + 20 * HOUR_MS, 60, kind="mobile", ip=hotel_ip, geo=madrid
        )
    home_life(out, range(17, DAYS))
    return out, 2


def traveller_family_home():
    """The same trip, but the family keeps watching TV at home at the same hour."""
    out, ms = traveller()
    for d in range(10, 17):
        watch(out, "tv", T0 + d * DAY_MS + 20 * HOUR_MS, 120)
    return out, ms


def long_trip():
    """Away most of the window: the hotel becomes the busiest place (the home keeps its TV)."""
    out = []
    home_life(out, range(0, 4))
    madrid, hotel_ip = {"lat": 40.4168, "lon": -3.7038}, "203.0.113.80"
    for d in range(4, DAYS):
        watch(
            out, "phone", T0 + d * DAY_MS + 20 * HOUR_MS, 90, kind="mobile", ip=hotel_ip, geo=madrid
        )
    return out, 2


def commuter():
    """A phone on a carrier network on the way to and from work: a new prefix every
    session, geo along the commute path; the family watches TV at home meanwhile."""
    out = []
    path = [(52.520 + 0.03 * k, 13.405 + 0.05 * k) for k in range(1, 5)]  # up to ~20 km out
    n = itertools.count(1)
    for d in range(DAYS):
        base = T0 + d * DAY_MS
        watch(out, "tv", base + 17 * HOUR_MS, 150, profile="kids")
        watch(out, "tv", base + 20 * HOUR_MS, 90, profile="p1")
        if d % 7 in (5, 6):
            continue
        out.append(
            ev(
                "login",
                base + 6 * HOUR_MS + 50 * MIN,
                device_id="phone",
                device_type="mobile",
                ip=HOME_IP,
                geo=HOME_GEO,
            )
        )
        for hour, leg in ((7, path), (17, path[::-1])):
            for k, (lat, lon) in enumerate(leg):
                watch(
                    out,
                    "phone",
                    base + hour * HOUR_MS + 10 * k * MIN,
                    10,
                    kind="mobile",
                    ip=f"10.{next(n) % 250}.{d}.7",
                    geo={"lat": lat, "lon": lon},
                )
    return out, 2


def commuter_phone_never_home():
    """The commuter's phone is only ever used on the way."""
    out, ms = commuter()
    return [e for e in out if e.type != "login"], ms


def vpn_user():
    """A laptop that is at home, but on four evenings streams through a VPN exit in New York
    (exit addresses rotate) while the TV plays at home."""
    out = []
    home_life(out)
    ny = {"lat": 40.7128, "lon": -74.0060}
    for d in range(DAYS):
        base = T0 + d * DAY_MS
        out.append(
            ev(
                "login",
                base + 19 * HOUR_MS,
                device_id="laptop",
                device_type="web",
                ip=HOME_IP,
                geo=HOME_GEO,
            )
        )
        if d in (3, 8, 13, 18):
            watch(
                out,
                "laptop",
                base + 20 * HOUR_MS + 30 * MIN,
                50,
                kind="web",
                ip=f"192.0.2.{d}",
                geo=ny,
            )
            out.append(
                ev(
                    "activity",
                    base + 21 * HOUR_MS + 30 * MIN,
                    action="rating",
                    device_id="laptop",
                    ip=HOME_IP,
                    geo=HOME_GEO,
                )
            )
    return out, 2


def sharer(geo, ip, *, start_day=0, days=DAYS, hour=19):
    """The account's household plus a second household with its own TV and phone."""
    out = []
    home_life(out)
    for d in range(start_day, days):
        base = T0 + d * DAY_MS
        watch(out, "tv2", base + hour * HOUR_MS + 30 * MIN, 120, geo=geo, ip=ip, profile="x")
        if d % 3 == 0:
            watch(out, "phone2", base + (hour + 1) * HOUR_MS, 45, kind="mobile", geo=geo, ip=ip)
    return out, 2


def far_sharer():
    return sharer({"lat": 48.137, "lon": 11.575}, "203.0.113.5")  # Munich, 500 km


def nearby_sharer():
    return sharer({"lat": 52.470, "lon": 13.300}, "100.64.12.200")  # 9 km across Berlin


LOOKALIKES = {
    "single": single_household,
    "big_family": big_family,
    "traveller": traveller,
    "traveller_family_home": traveller_family_home,
    "long_trip": long_trip,
    "commuter": commuter,
    "commuter_phone_never_home": commuter_phone_never_home,
    "vpn": vpn_user,
}
SHARERS = {"far_sharer": far_sharer, "nearby_sharer": nearby_sharer}


def run(events, max_streams, *, now=None, shuffle_seed=None):
    events = sorted(events, key=lambda e: e.ts)
    if shuffle_seed is not None:  # deliver each event up to 59 minutes late
        rnd = random.Random(shuffle_seed)
        events = sorted(events, key=lambda e: e.ts + rnd.randrange(0, 59 * MIN))
    hs = new_household()
    for e in events:
        apply_household(hs, e, max_streams=max_streams)
    now = now if now is not None else max(e.ts for e in events)
    return hs, household_features(hs, now, max_streams=max_streams)


@pytest.fixture(scope="module")
def feats():
    return {name: run(*build())[1] for name, build in {**LOOKALIKES, **SHARERS}.items()}


def test_features_are_complete_and_named(feats):
    for f in feats.values():
        assert list(f) == list(FEATURE_NAMES)
        assert all(isinstance(v, float) for v in f.values())


def test_single_household(feats):
    f = feats["single"]
    assert f["places_28d"] == 1
    assert f["distinct_prefixes_28d"] == 1
    assert f["devices_28d"] == 2 and f["profiles_28d"] == 2
    assert f["max_concurrent_streams_28d"] == 2
    assert f["over_limit_minutes_28d"] == 0
    assert f["cross_place_overlap_hours_28d"] == 0
    assert f["away_share"] == 0 and f["second_place_active_days_28d"] == 0


def test_big_family_stays_one_place_within_plan(feats):
    f = feats["big_family"]
    assert f["places_28d"] == 1 and f["devices_28d"] == 6 and f["profiles_28d"] == 4
    assert f["max_concurrent_streams_28d"] == 4
    assert f["over_limit_minutes_28d"] == 0
    assert f["cross_place_overlap_hours_28d"] == 0


def test_traveller_is_away_without_overlap(feats):
    f = feats["traveller"]
    assert f["places_28d"] == 2
    assert f["second_place_active_days_28d"] == 7
    assert f["second_place_distance_km"] == pytest.approx(1870, rel=0.02)
    assert f["second_place_own_devices_28d"] == 0  # the phone lives at home
    assert f["cross_place_overlap_hours_28d"] == 0
    assert f["impossible_travel_28d"] == 0  # 11 hours for 1870 km is plausible


def test_commuter_rotates_networks(feats):
    f = feats["commuter"]
    assert f["distinct_prefixes_28d"] > 20
    assert f["second_place_prefixes_28d"] >= 8
    # every network is seen on one day only: carrier rotation, not a second home
    assert f["second_place_oneoff_prefixes_28d"] == f["second_place_prefixes_28d"]
    # the kids' TV runs at 17:00, but the phone comes home: no device lives away
    assert f["cross_place_overlap_hours_28d"] == 0
    assert f["second_place_stationary_devices_28d"] == 0
    assert f["impossible_travel_28d"] == 0


def test_vpn_user_jumps_impossibly(feats):
    f = feats["vpn"]
    assert f["impossible_travel_28d"] == 8  # there and back, four times
    assert f["second_place_own_devices_28d"] == 0
    assert f["second_place_shared_devices_28d"] == 1  # the laptop is at home too
    assert f["second_place_active_days_28d"] == 4
    assert f["cross_place_overlap_hours_28d"] == 0  # overlap of a device that lives at home


@pytest.mark.parametrize("name", sorted(SHARERS))
def test_sharer_has_a_second_household(feats, name):
    f = feats[name]
    assert f["places_28d"] == 2 and f["distinct_prefixes_28d"] == 2
    assert f["second_place_active_days_28d"] == DAYS
    assert f["second_place_coactive_days_28d"] == DAYS
    assert f["second_place_own_devices_28d"] == 2
    assert f["second_place_own_coactive_days_28d"] == DAYS
    assert f["second_place_shared_devices_28d"] == 0
    assert f["second_place_stationary_devices_28d"] == 1
    assert f["second_place_prefixes_28d"] == 1
    assert f["second_place_oneoff_prefixes_28d"] == 0
    # device-hours while home streams too: tv2 20:00-21:30 daily, phone2 20:00-20:45 every 3rd
    assert f["cross_place_overlap_hours_28d"] == pytest.approx(DAYS * 1.5 + 7 * 0.75)
    assert f["impossible_travel_28d"] == 0
    assert f["second_place_share"] > 0.4


def test_nearby_sharer_is_a_separate_place(feats):
    assert 5 < feats["nearby_sharer"]["second_place_distance_km"] < 15


def test_evidence_ranks_every_sharer_above_every_lookalike(feats):
    worst_sharer = min(sharing_evidence_score(feats[n]) for n in SHARERS)
    scores = {n: sharing_evidence_score(feats[n]) for n in LOOKALIKES}
    assert max(scores.values()) < worst_sharer
    assert worst_sharer > 0.95
    assert max(scores.values()) < 0.1, scores


def test_sharer_is_flagged_within_three_days():
    """Three evenings of a new second household already beat every look-alike's month."""
    events, ms = sharer({"lat": 48.137, "lon": 11.575}, "203.0.113.5", start_day=14, days=17)
    _, f = run(events, ms, now=T0 + 17 * DAY_MS)
    assert f["second_place_active_days_28d"] == 3
    assert sharing_evidence_score(f) > 0.5
    for build in LOOKALIKES.values():
        assert sharing_evidence_score(run(*build())[1]) < sharing_evidence_score(f)


@pytest.mark.parametrize("name", sorted({**LOOKALIKES, **SHARERS}))
def test_events_up_to_an_hour_late_give_the_same_features(feats, name):
    events, ms = {**LOOKALIKES, **SHARERS}[name]()
    now = max(e.ts for e in events)
    _, f = run(events, ms, now=now, shuffle_seed=7)
    assert f == pytest.approx(feats[name])


def test_features_have_no_lookahead():
    events, ms = far_sharer()
    cut = T0 + 10 * DAY_MS
    _, past_only = run([e for e in events if e.ts <= cut], ms, now=cut)
    hs, _ = run([e for e in events if e.ts <= cut], ms)
    assert household_features(hs, cut, max_streams=ms) == past_only


def test_window_forgets_after_28_days():
    events, ms = far_sharer()
    hs, _ = run(events, ms)
    later = T0 + (DAYS + 30) * DAY_MS
    apply_household(hs, ev("login", later, device_id="tv", ip=HOME_IP, geo=HOME_GEO), max_streams=2)
    f = household_features(hs, later, max_streams=2)
    assert f["cross_place_overlap_hours_28d"] == 0
    assert f["second_place_active_days_28d"] == 0
    assert f["devices_28d"] == 1


def test_over_limit_minutes_and_concurrency():
    out = []
    base = T0 + 20 * HOUR_MS
    for i in range(3):
        watch(out, f"d{i}", base + i * 10 * MIN, 60)
    _, f = run(out, 2, now=base + 2 * HOUR_MS)
    assert f["max_concurrent_streams_28d"] == 3
    assert f["over_limit_minutes_28d"] == pytest.approx(40)  # 20:20-21:00 three streams


def test_playback_without_stop_ends_after_session_timeout():
    out = [ev("playback_started", T0, session_id="s", device_id="d", ip=HOME_IP, geo=HOME_GEO)]
    out.append(ev("login", T0 + 2 * DAY_MS, device_id="d", ip=HOME_IP, geo=HOME_GEO))
    hs, _ = run(out, 1)
    assert not hs.open_sessions
    assert hs.places[0].days[T0 // DAY_MS] == 4 * HOUR_MS


def test_stop_before_start_is_paired():
    out = [
        ev("playback_stopped", T0 + 30 * MIN, session_id="s"),
        ev("playback_started", T0, session_id="s", device_id="d", ip=HOME_IP, geo=HOME_GEO),
    ]
    hs = new_household()
    for e in out:
        apply_household(hs, e, max_streams=1)
    assert not hs.pending_stops and not hs.open_sessions
    assert hs.places[0].days[T0 // DAY_MS] == 30 * MIN


def test_paid_extra_member_place_no_longer_counts():
    events, ms = far_sharer()
    events.append(ev("extra_member_added", T0 + 10 * DAY_MS + 12 * HOUR_MS, member_id="m"))
    _, f = run(events, ms)
    assert f["paid_member_places"] == 1
    assert f["cross_place_overlap_hours_28d"] == 0
    assert f["second_place_own_devices_28d"] == 0
    assert sharing_evidence_score(f) < 0.05


def test_member_paid_before_their_place_appears_is_attached_to_the_next_place():
    events, ms = far_sharer()
    events.append(ev("extra_member_added", T0 + 5 * MIN, member_id="m"))
    _, f = run(events, ms)
    assert f["paid_member_places"] == 1
    assert f["second_place_active_days_28d"] == 0


def test_verification_outcomes_are_counted():
    hs = new_household()
    for outcome in ("failed", "expired", "verified"):
        apply_household(
            hs, ev("household_verification", T0, device_id="d", outcome=outcome), max_streams=1
        )
    f = household_features(hs, T0, max_streams=1)
    assert (f["verifications_failed"], f["verifications_verified"]) == (2, 1)


def test_other_event_types_are_ignored():
    hs = new_household()
    apply_household(hs, ev("payment_failed", T0, amount=9.99), max_streams=1)
    assert hs == new_household()


def test_rhythm_shift_between_time_zones():
    out = []
    home_life(out, range(7))
    ny = {"lat": 40.7128, "lon": -74.0060}
    for d in range(7):  # 20:00 in New York = 01:00 UTC
        watch(out, "tv2", T0 + d * DAY_MS + 25 * HOUR_MS, 120, ip="203.0.113.9", geo=ny)
    _, f = run(out, 2)
    assert 4 < f["rhythm_shift_hours"] < 6
    _, same = run(nearby_sharer()[0], 2)
    assert same["rhythm_shift_hours"] < 1.5


def test_places_without_geo_fall_back_to_prefixes():
    out = []
    for d in range(3):
        watch(out, "tv", T0 + d * DAY_MS + 20 * HOUR_MS, 60, geo=None)
        watch(out, "tv2", T0 + d * DAY_MS + 20 * HOUR_MS, 60, geo=None, ip="203.0.113.5")
    out.append(ev("activity", T0 + 3 * DAY_MS, action="like", device_id="tv"))  # no ip/geo
    hs, f = run(out, 2)
    assert f["places_28d"] == 2
    assert f["cross_place_overlap_hours_28d"] == pytest.approx(3)
    assert hs.devices["tv"].last_pid == hs.devices["tv"].last_pid >= 0


def test_ip_addresses_never_stored():
    events, ms = commuter()
    more, _ = vpn_user()
    hs, _ = run(events + more, ms)
    blob = pickle.dumps(hs)
    ips = {e.fields["ip"] for e in events + more if "ip" in e.fields}
    for ip in ips:
        assert ip.encode() not in blob
        assert ip.rsplit(".", 1)[0].encode() not in blob  # nor the /24 prefix
    assert prefix_hash(HOME_IP).encode() in blob  # what is kept: the salted prefix hash
    assert prefix_hash(HOME_IP, b"other salt") != prefix_hash(HOME_IP)


def test_memory_is_bounded_under_random_events():
    rnd = random.Random(1)
    hs = new_household()
    ts = T0
    kinds = ["login", "playback_started", "playback_stopped", "activity"]
    for i in range(10_000):
        ts += rnd.randrange(0, 20 * MIN)
        fields: dict[str, object] = {
            "device_id": f"d{rnd.randrange(100)}",
            "session_id": f"s{rnd.randrange(5000)}",
            "profile_id": f"p{rnd.randrange(50)}",
            "action": "x",
        }
        if rnd.random() < 0.9:
            fields["ip"] = f"{rnd.randrange(1, 255)}.{rnd.randrange(255)}.{rnd.randrange(255)}.1"
        if rnd.random() < 0.8:
            fields["geo"] = {"lat": rnd.uniform(-60, 60), "lon": rnd.uniform(-180, 180)}
        late = rnd.randrange(0, HOUR_MS)
        apply_household(hs, ev(rnd.choice(kinds), ts - late, **fields), max_streams=3)
        if i % 1000 == 0:
            household_features(hs, ts, max_streams=3)
    assert len(hs.places) <= MAX_PLACES and len(hs.devices) <= MAX_DEVICES
    assert len(hs.prefixes) <= MAX_PREFIXES and len(hs.profiles) <= MAX_PROFILES
    assert len(hs.open_sessions) <= MAX_OPEN_SESSIONS
    assert len(hs.pending_stops) <= MAX_PENDING_STOPS
    assert len(hs.intervals) <= MAX_INTERVALS
    assert all(len(p.days) <= 29 for p in hs.places.values())
    assert all(len(d.overlap) <= 29 for d in hs.devices.values())
    assert len(hs.failed_devices) <= MAX_FAILED_DEVICES
    assert len(hs.day_max_streams) <= 29
    assert len(pickle.dumps(hs)) < 100_000
    f = household_features(hs, ts, max_streams=3)
    assert f["places_28d"] <= MAX_PLACES


def test_traveller_variants_lack_a_resident_device(feats):
    f = feats["traveller_family_home"]
    # the hotel streamed while the home TV did, but by the phone that lives at home
    assert f["cross_place_overlap_hours_28d"] == 0
    assert f["second_place_coactive_days_28d"] == 7
    assert f["second_place_own_coactive_days_28d"] == 0
    assert f["second_place_own_devices_28d"] == 0
    assert f["second_place_shared_devices_28d"] == 1
    g = feats["long_trip"]  # the hotel is the busiest place, but the TV keeps the home home
    assert g["second_place_active_days_28d"] == DAYS - 4
    assert g["second_place_shared_devices_28d"] == 1  # the phone was at home before the trip
    assert g["second_place_distance_km"] == pytest.approx(1870, rel=0.02)
    assert g["second_place_coactive_days_28d"] == 0
    assert g["cross_place_overlap_hours_28d"] == 0


def test_failed_verification_counts_only_for_devices_away_from_home():
    events, ms = far_sharer()
    end = T0 + DAYS * DAY_MS
    for device in ("tv2", "tv", "stranger"):  # lives away, lives at home, never seen
        events.append(ev("household_verification", end, device_id=device, outcome="failed"))
    events.append(ev("household_verification", end, device_id="phone2", outcome="verified"))
    _, f = run(events, ms)
    assert f["away_devices_failed_28d"] == 2
    assert f["verifications_failed"] == 3 and f["verifications_verified"] == 1
    _, later = run(events, ms, now=end + 28 * DAY_MS)
    assert later["away_devices_failed_28d"] == 0  # out of the window


def test_home_is_the_place_active_on_most_days():
    """A long binge somewhere else on one day does not move the home."""
    out = []
    home_life(out, range(5))
    watch(out, "tv9", T0 + 5 * DAY_MS, 600, geo={"lat": 48.137, "lon": 11.575}, ip="203.0.113.5")
    _, f = run(out, 2)
    assert f["second_place_active_days_28d"] == 1
    assert f["second_place_distance_km"] > 400


def test_observed_days_measure_usage_history():
    out = []
    home_life(out, range(3))
    _, f = run(out, 2, now=T0 + 2 * DAY_MS)
    assert f["observed_days_28d"] == pytest.approx(2 - 20 / 24)
    _, g = run(out, 2, now=T0 + 60 * DAY_MS)
    assert g["observed_days_28d"] == 28


# --------------------------------------------------------------------------- prefix census


def vpn_only_laptop():
    """A laptop that only ever streams through a VPN exit (never at home), on four
    evenings while the TV plays at home: alone, this looks like a second household."""
    out = []
    home_life(out)
    ny = {"lat": 40.7128, "lon": -74.0060}
    for d in (3, 8, 13, 18):
        watch(out, "laptop", T0 + d * DAY_MS + 20 * HOUR_MS, 50, kind="web", ip="192.0.2.9", geo=ny)
    return out, 2


def census_of(hs, accounts):
    census = PrefixCensus()
    for account in accounts:
        census.observe(account, hs)
    return census


@pytest.mark.parametrize("name", [*LOOKALIKES, *SHARERS, "vpn_only_laptop"])
def test_census_below_threshold_changes_nothing(name):
    events, ms = {**LOOKALIKES, **SHARERS, "vpn_only_laptop": vpn_only_laptop}[name]()
    hs, plain = run(events, ms)
    census = census_of(hs, [f"a{i}" for i in range(POPULAR_ACCOUNTS - 1)])
    assert household_features(hs, hs.max_ts, max_streams=ms, census=census) == plain
    assert plain["popular_network_places_28d"] == 0


def test_vpn_exit_used_by_many_accounts_is_no_second_household():
    hs, plain = run(*vpn_only_laptop())
    assert plain["second_place_own_devices_28d"] == 1  # the known false positive, without census
    assert sharing_evidence_score(plain) > 0.9
    census = census_of(hs, [f"a{i}" for i in range(POPULAR_ACCOUNTS)])
    assert census.popular(prefix_hash("192.0.2.200"), hs.max_ts)
    f = household_features(hs, hs.max_ts, max_streams=2, census=census)
    assert f["popular_network_places_28d"] == 1
    assert f["second_place_own_devices_28d"] == 0 and f["second_place_active_days_28d"] == 0
    assert f["cross_place_overlap_hours_28d"] == 0
    assert sharing_evidence_score(f) < 0.05


@pytest.mark.parametrize("home_kind", ["tv", "web"])
def test_a_popular_exit_is_nobodys_home(home_kind):
    """Most evenings behind the VPN: the exit is the busiest place, yet the device at home is
    the household, not a second one. A TV anchors the home even without a census; a laptop
    at home does not, and then the exit is taken for the home until the census knows it."""
    out = []
    ny = {"lat": 40.7128, "lon": -74.0060}
    for d in range(DAYS):
        base = T0 + d * DAY_MS
        watch(out, "laptop", base + 19 * HOUR_MS, 50, kind="web", ip="192.0.2.9", geo=ny)
        if d % 3 == 0:
            watch(out, "homedev", base + 20 * HOUR_MS, 120, kind=home_kind)
    hs, plain = run(out, 2)
    census = census_of(hs, ["a-1"])
    if home_kind == "tv":  # the laptop lives at the exit: the no-census false positive
        assert plain["second_place_own_devices_28d"] == 1
        assert plain["second_place_distance_km"] > 6000
        assert census.accounts(prefix_hash("192.0.2.9"), hs.max_ts) == 1
    else:  # home taken for the exit
        assert plain["second_place_own_devices_28d"] == 1
        assert census.accounts(prefix_hash("192.0.2.9"), hs.max_ts) == 0  # this account's "home"
    others, _ = run(*vpn_only_laptop())  # other accounts use the exit away from home
    for i in range(POPULAR_ACCOUNTS):
        census.observe(f"a{i}", others)
    f = household_features(hs, hs.max_ts, max_streams=2, census=census)
    assert f["popular_network_places_28d"] == 1 and f["second_place_own_devices_28d"] == 0
    assert f["away_share"] > 0.5 and sharing_evidence_score(f) < 0.05


def test_a_home_network_shared_by_many_homes_is_not_popular():
    """A residential prefix that is *home* to many accounts (one ISP pool) keeps being
    evidence when an account's borrowers live on it."""
    homes, munich, events = new_household(), {"lat": 48.137, "lon": 11.575}, []
    for d in range(DAYS):
        watch(events, "tv9", T0 + d * DAY_MS + 20 * HOUR_MS, 60, ip="203.0.113.77", geo=munich)
    for e in events:
        apply_household(homes, e, max_streams=2)
    census = census_of(homes, [f"n{i}" for i in range(20)])
    hs, plain = run(*far_sharer())
    census.observe("a-1", hs)
    assert census.accounts(prefix_hash("203.0.113.5"), hs.max_ts) == 1
    assert household_features(hs, hs.max_ts, max_streams=2, census=census) == plain


def test_census_forgets_accounts_outside_its_window():
    hs, _ = run(*vpn_only_laptop())
    census = census_of(hs, [f"a{i}" for i in range(POPULAR_ACCOUNTS)])
    vpn = prefix_hash("192.0.2.1")
    assert census.accounts(vpn, hs.max_ts) == POPULAR_ACCOUNTS
    assert census.accounts(vpn, hs.max_ts + WINDOW_DAYS * DAY_MS) == 0
    assert not census.popular(vpn, hs.max_ts + WINDOW_DAYS * DAY_MS)


def test_census_memory_is_bounded():
    hs, _ = run(*vpn_only_laptop())
    census = PrefixCensus(popular_accounts=3, max_prefixes=40)
    for i in range(100):
        census.observe(f"a{i}", hs)  # one prefix, many accounts
    assert len(census.users[prefix_hash("192.0.2.1")]) <= 6
    rnd = random.Random(5)
    for i in range(300):  # many prefixes, one account each
        other = new_household()
        for d in range(2):
            ip = HOME_IP if d == 0 else f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.1"
            apply_household(
                other, ev("login", T0 + d * DAY_MS, device_id="p", ip=ip), max_streams=1
            )
        census.observe(f"b{i}", other)
    assert len(census.users) <= 40
    assert census.popular(prefix_hash("192.0.2.1"), hs.max_ts)  # the most used one survives
    pickle.loads(pickle.dumps(census))


def test_census_rejects_bad_parameters():
    with pytest.raises(ValueError):
        PrefixCensus(popular_accounts=1)
    with pytest.raises(ValueError):
        PrefixCensus(max_prefixes=0)


# --------------------------------------------------------------------------- commuters


def _carrier_ip(n: int, version: int) -> str:
    """A fresh mobile-carrier address: a new /24 (or /48) every time."""
    return f"100.{64 + n % 60}.{n % 250}.9" if version == 4 else f"2001:db8:{n:x}::9"


def commuter_busier_than_home():
    """The phone streams at lunch at work (13 km out) every weekday on a new carrier address
    and is never used at home; the TV at home plays on weekends and on Wednesday evenings
    only. Work is active on more days than home."""
    out = []
    work = {"lat": 52.520 + 0.08, "lon": 13.405 + 0.12}
    for d in range(DAYS):
        base = T0 + d * DAY_MS
        if d % 7 in (2, 5, 6):
            watch(out, "tv", base + 20 * HOUR_MS, 120, profile="p1")
        if d % 7 < 5:
            watch(out, "phone", base + 12 * HOUR_MS, 30, kind="mobile",
                  ip=_carrier_ip(d, 4), geo=work)  # fmt: skip
    return out, 2


def test_a_tv_anchors_the_home_even_when_a_commute_spot_is_busier():
    events, ms = commuter_busier_than_home()
    _, f = run(events, ms)
    # the home is where the TV plays: the second place is work, not the living room
    assert f["second_place_active_days_28d"] == 15 and f["second_place_coactive_days_28d"] == 3
    assert f["second_place_stationary_devices_28d"] == 0
    assert f["second_place_distance_km"] == pytest.approx(12.0, abs=0.5)
    assert f["second_place_rotating_prefixes_28d"] == 14  # a new /24 every weekday
    assert sharing_evidence_score(f) < 0.01


def test_a_fixed_line_anchors_the_home_without_device_types():
    """Same, with no device types at all: the home's network recurs, the carrier's never."""
    events, ms = commuter_busier_than_home()
    untyped = [
        Event(e.event_id, e.type, e.account_id, e.ts,
              {k: v for k, v in e.fields.items() if k != "device_type"})
        for e in events
    ]  # fmt: skip
    _, f = run(untyped, ms)
    assert f["second_place_active_days_28d"] == 15
    assert sharing_evidence_score(f) < 0.01


def test_a_device_seen_at_two_places_away_from_home_lives_nowhere():
    """A laptop never used at home, at the office (fixed line) on weekdays and at a cafe
    (another fixed line, not the home's /24: a network seen at home is home) twice a week:
    its owner moving about, not a second household."""
    out = []
    home_life(out)
    office, cafe = {"lat": 52.60, "lon": 13.50}, {"lat": 52.45, "lon": 13.30}
    for d in range(DAYS):
        base = T0 + d * DAY_MS
        if d % 7 < 5:
            watch(out, "laptop", base + 12 * HOUR_MS, 30, kind="web", ip="192.0.2.40", geo=office)
        if d % 7 in (1, 3):
            watch(out, "laptop", base + 18 * HOUR_MS, 40, kind="web", ip="203.0.113.200",
                  geo=cafe)  # fmt: skip
    _, f = run(out, 2)
    assert f["places_28d"] == 3
    assert f["second_place_own_devices_28d"] == 0 and f["second_place_own_coactive_days_28d"] == 0
    assert f["cross_place_overlap_hours_28d"] == 0
    assert sharing_evidence_score(f) < 0.05


def spot_on_two_days(device, kind, nets):
    """A new account: the home TV every evening from day 0, and ``device`` (never at home)
    at one place 9 km out on days 1 and 2, over the networks ``nets`` (one per day)."""
    out = []
    home_life(out, range(4), devices=(("tv", "tv"),))
    spot = {"lat": 52.470, "lon": 13.300}
    for d, ip in zip((1, 2), nets, strict=True):
        watch(out, device, T0 + d * DAY_MS + 18 * HOUR_MS, 40, kind=kind, ip=ip, geo=spot)
    return out, 2


def test_a_phone_on_one_day_networks_is_a_commute_until_the_network_recurs():
    """Two days of a phone that never comes home, over a new carrier address each day
    (IPv4, then IPv6 -- no rotation within one IP version yet): a commute spot."""
    _, phone = run(*spot_on_two_days("phone", "mobile", [_carrier_ip(1, 4), _carrier_ip(2, 6)]))
    assert phone["second_place_own_devices_28d"] == 1
    assert phone["second_place_own_coactive_days_28d"] == 2
    assert phone["second_place_rotating_prefixes_28d"] == 0  # v4 + v6: could be dual stack
    assert phone["second_place_recurring_prefixes_28d"] == 0
    assert phone["second_place_phone_devices_28d"] == 1
    assert sharing_evidence_score(phone) < 0.4
    # a borrower's phone on its home line (the same /24 both days) is settled
    _, fixed = run(*spot_on_two_days("phone", "mobile", ["203.0.113.5", "203.0.113.77"]))
    assert fixed["second_place_recurring_prefixes_28d"] == 1
    # in the account's first days the home is not known yet (RAMP_DAYS): the same evidence
    # alerts once the account has a week of history
    week = {"observed_days_28d": 7.0}
    assert sharing_evidence_score(phone) < sharing_evidence_score(fixed)
    assert sharing_evidence_score({**fixed, **week}) > 0.7 > sharing_evidence_score(fixed)
    assert sharing_evidence_score({**phone, **week}) < 0.4
    # so is a tablet on a dual-stack line (v4 one day, v6 the next): tablets stay put
    dual = ["203.0.113.5", "2001:db8:aa::5"]
    _, tablet = run(*spot_on_two_days("tab", "tablet", dual))
    assert tablet["second_place_rotating_prefixes_28d"] == 0
    assert sharing_evidence_score({**tablet, **week}) > 0.7


CITY_CENTRE = {"lat": 52.470, "lon": 13.300}  # 9 km from HOME_GEO


def lease_change_seen_first_by(device_geo):
    """The home's TV (street geo) on the home line every evening from day 0; a tablet on
    the home line later each evening, reporting ``device_geo``; on day 7 the line gets a
    new /24 and from then on the tablet is the first to use it each evening."""
    out = []
    for d in range(14):
        base = T0 + d * DAY_MS
        ip, hour = (HOME_IP, 23) if d < 7 else ("198.51.101.23", 18)
        watch(out, "tab", base + hour * HOUR_MS, 40, kind="tablet", ip=ip, geo=device_geo)
        watch(out, "tv", base + 20 * HOUR_MS, 120, kind="tv", ip=ip)
    return out, 2


def test_a_device_whose_fix_has_not_moved_takes_a_new_network_to_its_place():
    """A tablet whose apps geolocate it at the city centre, 9 km off, is the first on the
    home's new lease: its own fix did not move, so the new network is the home's."""
    _, f = run(*lease_change_seen_first_by(CITY_CENTRE))
    assert f["places_28d"] == 1
    assert f["second_place_own_devices_28d"] == 0
    assert sharing_evidence_score(f) < 0.05


def test_a_device_whose_fix_moved_founds_a_place_on_a_new_network():
    """The same sequence with the tablet at the street until day 6 and at the city centre
    from day 7: it moved, so the new network's first fix founds a new place."""
    out, ms = lease_change_seen_first_by(HOME_GEO)
    for e in out:
        if e.fields.get("device_id") == "tab" and e.ts >= T0 + 7 * DAY_MS and "geo" in e.fields:
            e.fields["geo"] = CITY_CENTRE
    _, f = run(out, ms)
    assert f["places_28d"] == 2


def test_rotation_counts_one_day_networks_per_ip_version():
    v4s = [_carrier_ip(1, 4), _carrier_ip(2, 4)]
    _, f = run(*spot_on_two_days("phone", "mobile", v4s))
    assert f["second_place_oneoff_prefixes_28d"] == 2
    assert f["second_place_rotating_prefixes_28d"] == 1
    assert sharing_evidence_score(f) < 0.1


def test_a_paid_member_busier_than_home_never_becomes_the_home():
    """The member watches daily, the owner's TV every third day: the member's place is the
    busiest, yet once paid for it neither counts nor turns the owner's home into evidence;
    the member's failed verification from before the payment no longer counts either."""
    out = []
    munich = {"lat": 48.137, "lon": 11.575}
    for d in range(DAYS):
        base = T0 + d * DAY_MS
        watch(out, "tv2", base + 19 * HOUR_MS, 120, geo=munich, ip="203.0.113.5")
        if d % 3 == 0:
            watch(out, "tv", base + 20 * HOUR_MS, 60)
    out.append(ev("household_verification", T0 + 2 * DAY_MS, device_id="tv2", outcome="failed"))
    out.append(ev("extra_member_added", T0 + 2 * DAY_MS + MIN, member_id="m"))
    _, f = run(out, 2)
    assert f["paid_member_places"] == 1
    assert f["second_place_active_days_28d"] == 0 and f["second_place_own_devices_28d"] == 0
    assert f["away_devices_failed_28d"] == 0
    assert sharing_evidence_score(f) < 0.05


# --------------------------------------------------------------------------- placement


def test_a_device_geolocated_at_the_city_centre_on_the_home_network_is_at_home():
    """A web client's geo is IP geolocation (the city centre, 6 km off) while the TV's is
    the address: the same home network is the same home, not a second household."""
    out = []
    home_life(out)
    centre = {"lat": 52.470, "lon": 13.330}  # about 7 km from HOME_GEO
    for d in range(DAYS):
        watch(out, "laptop", T0 + d * DAY_MS + 19 * HOUR_MS, 60, kind="web", geo=centre)
    _, f = run(out, 2)
    assert f["places_28d"] == 1 and f["second_place_own_devices_28d"] == 0
    assert sharing_evidence_score(f) < 0.05


def test_the_same_network_far_away_is_another_place():
    """A network known at home seen with geo 500 km away is not the home (a VPN exit or a
    carrier pool geolocated elsewhere): geo beyond geolocation error wins."""
    out = []
    home_life(out)
    watch(out, "tablet", T0 + 3 * DAY_MS + 19 * HOUR_MS, 60, kind="tablet",
          geo={"lat": 48.137, "lon": 11.575})  # fmt: skip
    _, f = run(out, 2)
    assert f["places_28d"] == 2


def test_without_geo_a_home_device_on_a_new_address_stays_home_and_a_new_device_does_not():
    """No geo anywhere. The ISP changes the home's address on day 10 (a lease): the TV
    and phone, which lived at home, are still at home. A new device on its own network
    (never seen at home) is somewhere else."""
    out = []
    for d in range(DAYS):
        ip = HOME_IP if d < 10 else "192.0.2.77"
        watch(out, "tv", T0 + d * DAY_MS + 20 * HOUR_MS, 120, ip=ip, geo=None)
        if d % 2 == 0:
            watch(out, "phone", T0 + d * DAY_MS + 21 * HOUR_MS, 40, kind="mobile", ip=ip,
                  geo=None)  # fmt: skip
        if d >= 12:
            watch(out, "stick", T0 + d * DAY_MS + 21 * HOUR_MS, 60, ip="203.0.113.5", geo=None)
    _, f = run(out, 2)
    assert f["places_28d"] == 2
    assert f["second_place_own_devices_28d"] == 1 and f["second_place_shared_devices_28d"] == 0


def _laptop_behind(hosts):
    """Home life, and a laptop never at home streaming twice an evening from New York over
    one /24, at the addresses ``hosts(day, k)``, on 8 days while the TV plays at home."""
    out = []
    home_life(out)
    ny = {"lat": 40.7128, "lon": -74.0060}
    for d in range(4, 12):
        for k in range(2):
            watch(out, "laptop", T0 + d * DAY_MS + (19 + 2 * k) * HOUR_MS, 60, kind="web",
                  ip=f"203.0.113.{hosts(d, k)}", geo=ny)  # fmt: skip
    return run(out, 2)[1]


def test_an_address_pool_is_a_hub_and_a_fixed_address_a_home():
    """An address that changes twice within a day is a pool handing out an address per
    connection (a VPN exit): nobody lives there. The same place at one address lives."""
    pool = _laptop_behind(lambda d, k: 10 + 2 * d + k)
    assert pool["popular_network_places_28d"] == 1 and pool["second_place_own_devices_28d"] == 0
    assert sharing_evidence_score(pool) < 0.1
    fixed = _laptop_behind(lambda d, k: 10)
    assert fixed["popular_network_places_28d"] == 0 and fixed["second_place_own_devices_28d"] == 1
    assert sharing_evidence_score(fixed) > 0.7


def test_two_addresses_seen_out_of_order_are_one_lease_change_not_a_pool():
    """Around a lease change, events of the old and the new address interleave (late
    delivery, a session across the change): A B A B is a home line, A B C a pool."""
    from models.household.evidence import _seen

    rec = None
    for k, host in enumerate((10, 11, 10, 11, 10)):
        rec = _seen(rec, T0 + k * HOUR_MS, 4, host)
    assert rec is not None and rec[6] == 0
    for k, host in enumerate((12,)):
        rec = _seen(rec, T0 + (6 + k) * HOUR_MS, 4, host)
    assert rec[6] == 1


# --------------------------------------------------------------------------- network groups


def borrower_on_own_line(geo=HOME_GEO, ip="203.0.113.77", kind="tablet", days=range(1, DAYS, 2)):
    """The household, and a borrower's device on a line of its own (never the home's),
    every other day, geolocated where ``geo`` says (default: at the home, as a borrower
    a street away or two homes both geolocated at the city centre are)."""
    out = []
    home_life(out)
    for d in days:
        watch(out, "pad", T0 + d * DAY_MS + 18 * HOUR_MS, 60, kind=kind, ip=ip, geo=geo)
    return out, 2


def test_a_borrower_on_its_own_line_at_the_home_geo_lives_apart():
    """Geo puts the borrower's tablet at home (one place), but it never used a network
    of the home's: a household apart by network, alerted as one living elsewhere."""
    hs, f = run(*borrower_on_own_line())
    assert f["places_28d"] == 1 and f["second_place_own_devices_28d"] == 0
    assert hs.devices["pad"].group != hs.devices["tv"].group == hs.devices["phone"].group
    assert f["apart_devices_28d"] == 1 and f["apart_coactive_days_28d"] == 10
    assert sharing_evidence_score(f) > 0.9


def test_a_borrower_seen_apart_both_ways_needs_no_week_to_know_the_home():
    """A new account's first days: the second-household signals wait a week (one home
    seen two ways looks like two), unless both views see the borrower -- its tablet
    lives at a place geo puts 11 km away *and* on a line of its own. Then it is
    alerted on the fourth day; seen one way only, it waits."""
    elsewhere = {"lat": 52.600, "lon": 13.500}

    def first_days(geo, phone_visits=False):
        out = []
        home_life(out, range(4))
        for d in (1, 2, 3):
            watch(out, "pad", T0 + d * DAY_MS + 18 * HOUR_MS, 60, kind="tablet",
                  ip="203.0.113.77", geo=geo)  # fmt: skip
        if phone_visits:  # the home's phone at a friend's, on the friend's Wi-Fi
            watch(out, "phone", T0 + 2 * DAY_MS + 12 * HOUR_MS, 30, kind="mobile",
                  ip="192.0.2.40", geo=elsewhere)  # fmt: skip
        return run(out, 2)[1]

    week = {"observed_days_28d": 7.0}
    both = first_days(elsewhere)
    assert both["observed_days_28d"] < 7 and both["second_place_distance_km"] > 3
    assert both["second_place_own_devices_28d"] == 1 and both["apart_devices_28d"] == 1
    assert sharing_evidence_score(both) > 0.9
    # by network only: geo puts the tablet at the home, or reports nothing for it (a
    # place without geo is also how a home's duplicate looks), or the second place by
    # geo is where the home's phone visited
    for one_way in (first_days(HOME_GEO), first_days(None), first_days(HOME_GEO, True)):
        assert one_way["apart_devices_28d"] == 1
        assert sharing_evidence_score(one_way) < 0.7
        assert sharing_evidence_score({**one_way, **week}) > 0.7  # alerted after a week


def test_every_lookalike_has_no_household_apart_by_network(feats):
    for name in LOOKALIKES:
        assert feats[name]["apart_devices_28d"] == 0, name


def test_a_device_that_used_the_home_line_joins_the_home_for_good():
    """Groups only merge: the borrower's tablet, brought to the owner's home once and
    used on its Wi-Fi, is one of the home's devices from then on (conservative)."""
    out, ms = borrower_on_own_line()
    watch(out, "pad", T0 + 2 * DAY_MS + 12 * HOUR_MS, 30, kind="tablet")
    hs, f = run(out, ms)
    assert hs.devices["pad"].group == hs.devices["tv"].group
    assert f["apart_devices_28d"] == 0


def test_a_new_lease_is_joined_by_the_devices_that_move_to_it():
    out = []
    home_life(out, range(10))
    for d in range(10, DAYS):  # the ISP moved the home to another /24
        base = T0 + d * DAY_MS
        watch(out, "tv", base + 20 * HOUR_MS, 120, ip="198.51.101.23", profile="p1")
        if d % 2 == 0:
            watch(out, "phone", base + 21 * HOUR_MS, 40, kind="mobile", ip="198.51.101.23")
    hs, f = run(out, 2)
    assert len({d.group for d in hs.devices.values()}) == 1
    assert f["apart_devices_28d"] == 0


def test_a_home_behind_carrier_nat_has_no_line_so_no_group_is_apart():
    """Carrier NAT: an address from the carrier's pool per session, so no network links
    the home's devices; a /24 of the pool seen again (at another address) is chance."""
    rnd = random.Random(7)
    out = []
    for d in range(DAYS):
        base = T0 + d * DAY_MS
        for dev, kind, hour, pool in (("tv", "tv", 20, 200), ("pad", "tablet", 18, 3)):
            ip = f"100.{64 + (pool == 3)}.{rnd.randrange(pool)}.{rnd.randrange(1, 255)}"
            watch(out, dev, base + hour * HOUR_MS, 60, kind=kind, ip=ip)
    hs, f = run(out, 2)
    assert len({d.group for d in hs.devices.values()}) > 1
    assert f["apart_devices_28d"] == 0


def test_phones_alone_on_a_network_of_their_own_are_not_a_household_apart():
    """A phone on mobile data keeps a carrier's IPv6 prefix for days; a dual-stack home
    (its TV on IPv6 too) has a line of that version, so only the phone rule tells them
    apart from a borrower's tablet on its own IPv6 line."""

    def dual_stack(kind):
        out, ms = borrower_on_own_line(ip="2001:db8:77::1", kind=kind)
        for d in range(DAYS):
            watch(out, "tv", T0 + d * DAY_MS + 23 * HOUR_MS, 30, ip="2001:db8:1::23")
        return out, ms

    assert run(*dual_stack("mobile"))[1]["apart_devices_28d"] == 0
    assert run(*dual_stack("tablet"))[1]["apart_devices_28d"] == 1


def test_one_carrier_prefix_at_a_new_address_every_session_is_no_line():
    """A tablet on mobile data whose carrier hands out addresses of one /24: the same
    network every day, never at one address, so not a line (``features._line``)."""
    rnd = random.Random(3)
    out = []
    home_life(out)
    for d in range(1, DAYS, 2):
        ip = f"100.64.9.{rnd.randrange(1, 255)}"
        watch(out, "pad", T0 + d * DAY_MS + 18 * HOUR_MS, 60, kind="tablet", ip=ip)
    _, f = run(out, 2)
    assert f["apart_devices_28d"] == 0


def test_the_home_line_is_at_the_home_place():
    """A family behind carrier NAT (no line at home) whose tablet used a holiday flat's
    line on a trip: that line is not the home's, so the TV's address seen twice by
    chance does not make the TV a household apart from the tablet."""
    rnd = random.Random(5)
    out = []
    flat = {"lat": 41.90, "lon": 12.50}  # Rome
    for d in range(DAYS):
        base = T0 + d * DAY_MS
        if d in range(5, 9):
            watch(out, "pad", base + 18 * HOUR_MS, 60, kind="tablet", ip="192.0.2.99", geo=flat)
        else:
            ip = f"100.64.{rnd.randrange(200)}.{rnd.randrange(1, 255)}"
            watch(out, "pad", base + 18 * HOUR_MS, 60, kind="tablet", ip=ip)
    for d, ip in ((2, "100.65.0.7"), (12, "100.65.1.9"), (16, "100.65.0.7")):
        watch(out, "tv", T0 + d * DAY_MS + 20 * HOUR_MS, 60, ip=ip)  # 100.65.0.7 twice
    hs, f = run(out, 2)
    assert hs.devices["pad"].group != hs.devices["tv"].group
    assert f["apart_devices_28d"] == 0


def test_a_dual_stack_home_split_by_ip_version_is_one_home():
    """A home whose TV only uses IPv4 and whose tablet only IPv6: two groups, one home."""
    out = []
    home_life(out, devices=(("tv", "tv"),))
    for d in range(DAYS):
        watch(out, "pad", T0 + d * DAY_MS + 18 * HOUR_MS, 60, kind="tablet", ip="2001:db8:5::9")
    hs, f = run(out, 2)
    assert hs.devices["pad"].group != hs.devices["tv"].group
    assert f["apart_devices_28d"] == 0


def test_a_borrower_seen_once_without_geo_still_lives_at_its_place():
    """A borrower's tablet 17 km out every fourth day, on a new address of its line at
    each visit (a lease per visit), once without geo: the visits with a fix are at the
    place of that fix, not at the place the visit without geo founded (the tablet's
    place a moment before), and that one sighting does not make the tablet somebody
    moving about: it lives at its place."""
    out = []
    home_life(out)
    spot = {"lat": 52.60, "lon": 13.55}
    for i, d in enumerate(range(1, DAYS, 4)):
        watch(out, "pad", T0 + d * DAY_MS + 18 * HOUR_MS, 60, kind="tablet",
              ip=f"203.0.{100 + i}.7", geo=None if i == 1 else spot)  # fmt: skip
    hs, f = run(out, 2)
    (there,) = [p for p in hs.places.values() if p.lat is not None and p.lat > 52.55]
    assert len(hs.devices["pad"].place_days[there.pid]) == 4
    assert f["second_place_own_devices_28d"] == 1
    assert f["second_place_active_days_28d"] == 4 and f["second_place_distance_km"] > 10


def test_a_device_apart_seen_at_two_places_away_is_somebody_moving_about():
    out, ms = borrower_on_own_line(geo={"lat": 52.60, "lon": 13.50})
    for d in range(2, DAYS, 4):  # the same laptop, another line, 20 km from the first
        watch(out, "pad", T0 + d * DAY_MS + 12 * HOUR_MS, 30, kind="tablet", ip="192.0.2.40",
              geo={"lat": 52.45, "lon": 13.20})  # fmt: skip
    _, f = run(out, ms)
    assert f["apart_devices_28d"] == 0


def test_a_paid_extra_member_apart_by_network_counts_no_more():
    out, ms = borrower_on_own_line()
    out.append(ev("extra_member_added", T0 + 12 * DAY_MS, member_id="m"))
    _, f = run(out, ms)
    assert f["paid_member_places"] == 1 and f["apart_devices_28d"] == 0
    assert sharing_evidence_score(f) < 0.05


def test_a_line_used_on_a_few_of_a_groups_days_is_a_visit_not_its_home():
    """A tablet on mobile data (a new carrier address every day) that used the
    grandparents' Wi-Fi on two of its 14 days: visits, not a household of its own."""
    out = []
    home_life(out)
    for d in range(14):
        ip = "192.0.2.50" if d in (3, 10) else f"100.64.{d}.{d + 7}"
        watch(out, "pad", T0 + d * DAY_MS + 16 * HOUR_MS, 60, kind="tablet", ip=ip)
    _, f = run(out, 2)
    assert f["apart_devices_28d"] == 0


# --------------------------------------------------------------------------- stays


BORROWER_DAYS = (3, 8, 13, 18)


def borrower_between_home_days(*, together=(3,), ip="2001:db8:77::5", geo=CITY_CENTRE):
    """A borrower's tablet on ``BORROWER_DAYS`` (its own network: IPv6 only, so not a
    line of an IP version the home's has, by default; geo 9 km off), and the home
    watching on every day of the three weeks but the borrower's, except those in
    ``together``: the two rarely watch on the same day."""
    out = []
    home_life(out, [d for d in range(DAYS) if d not in BORROWER_DAYS or d in together])
    for d in BORROWER_DAYS:
        watch(out, "pad", T0 + d * DAY_MS + 18 * HOUR_MS, 60, kind="tablet", ip=ip, geo=geo)
    return out, 2


def test_a_borrower_who_comes_back_while_home_watches_lives_alongside_it():
    """One day together with home, but four separate stays with home watching before and
    after each: the stays beyond the first count as days together (``_together``)."""
    _, f = run(*borrower_between_home_days())
    assert f["second_place_own_devices_28d"] == 1 and f["apart_devices_28d"] == 0
    assert f["second_place_own_coactive_days_28d"] == 1
    assert f["second_place_own_visits_28d"] == 4
    assert sharing_evidence_score(f) > 0.9
    assert sharing_evidence_score({**f, "second_place_own_visits_28d": 0.0}) < 0.4
    # two stays are what a trip to the same place twice looks like: the second only counts
    assert sharing_evidence_score({**f, "second_place_own_visits_28d": 2.0}) < 0.4
    # never on a day with home: stays alone are not a household alongside (a trip is one
    # stay while the home is quiet, but several trips to the same hotel are several)
    _, apart = run(*borrower_between_home_days(together=()))
    assert apart["second_place_own_coactive_days_28d"] == 0
    assert apart["second_place_own_visits_28d"] == 4
    assert sharing_evidence_score(apart) < 0.1


def test_a_stay_away_is_one_visit_whatever_its_length():
    """A hotel TV on every evening of a five-day trip, the home watching on the day it
    left and the day it came back: one stay, counted by its two days together only."""
    out = []
    home_life(out, [d for d in range(DAYS) if d not in (9, 10, 11)])
    madrid = {"lat": 40.4168, "lon": -3.7038}
    for d in range(8, 13):
        watch(out, "hoteltv", T0 + d * DAY_MS + 22 * HOUR_MS, 60, ip="203.0.113.80", geo=madrid)
    _, f = run(out, 2)
    assert f["second_place_own_coactive_days_28d"] == 2
    assert f["second_place_own_visits_28d"] == 1
    score = sharing_evidence_score(f)
    assert score == sharing_evidence_score({**f, "second_place_own_visits_28d": 0.0})


def test_a_household_apart_by_network_that_comes_back_lives_alongside_home():
    """The same stays seen by the network view: a tablet on a line of its own (IPv4, as
    the home's), geolocated at the home."""
    _, f = run(*borrower_between_home_days(ip="203.0.113.77", geo=HOME_GEO))
    assert f["second_place_own_devices_28d"] == 0
    assert f["apart_devices_28d"] == 1 and f["apart_coactive_days_28d"] == 1
    assert f["apart_visits_28d"] == 4
    assert sharing_evidence_score(f) > 0.9
    assert sharing_evidence_score({**f, "apart_visits_28d": 0.0}) < 0.4


def test_a_place_first_seen_without_geo_is_the_place_its_network_later_shows():
    """A borrower's tablet on its own IPv6 network, first without geo (a place of its
    own, without geo), then with geo at the borrower's place, founded meanwhile by the
    owner's phone on a visit: two places by the record, one by the network they share,
    so the tablet lives there (it is not somebody moving about)."""
    there = {"lat": 52.600, "lon": 13.500}
    out = []
    home_life(out)
    watch(out, "phone", T0 + DAY_MS + 12 * HOUR_MS, 30, kind="mobile", ip="203.0.113.77",
          geo=there)  # fmt: skip
    for d, geo in ((2, None), (4, None), (6, None), (8, there), (10, there), (12, there)):
        watch(out, "pad", T0 + d * DAY_MS + 18 * HOUR_MS, 60, kind="tablet",
              ip="2001:db8:77::5", geo=geo)  # fmt: skip
    hs, f = run(out, 2)
    pads = {pid: hs.places[pid].lat for pid in hs.devices["pad"].place_days}
    assert len(pads) == 2 and None in pads.values()  # the record: two places
    assert f["second_place_own_devices_28d"] == 1 and f["apart_devices_28d"] == 0
    assert sharing_evidence_score(f) > 0.7
    # a second place with geo (another network) is somebody moving about, as before
    for e in out:
        if (
            e.fields.get("device_id") == "pad"
            and e.fields.get("geo") is None
            and e.ts < T0 + 7 * DAY_MS
        ):
            e.fields["ip"] = "2001:db8:99::5"
            e.fields["geo"] = {"lat": 52.45, "lon": 13.20}
    _, moving = run(out, 2)
    assert moving["second_place_own_devices_28d"] == 0


def test_a_tv_far_away_watching_alongside_home_is_a_household_whatever_its_networks():
    """A TV 500 km from home that plays on the evenings home does, on a new address of its
    line at every visit: no hotel (the household is at home those days) and no error of
    geolocation (it errs by tens of km, not hundreds), so its networks do not count
    against it. The same TV 5 km out could be the home itself, split in two by geo: there
    they do."""

    def tv_at(geo):
        out = []
        home_life(out)
        for d in range(1, DAYS, 2):
            watch(out, "tv2", T0 + d * DAY_MS + 19 * HOUR_MS, 90, kind="tv",
                  ip=f"203.0.{d}.7", geo=geo)  # fmt: skip
        return run(out, 2)[1]

    far = tv_at({"lat": 48.14, "lon": 11.58})
    assert far["second_place_distance_km"] > 400
    assert far["second_place_rotating_prefixes_28d"] >= 4
    assert sharing_evidence_score(far) > 0.9
    near = tv_at({"lat": 52.565, "lon": 13.405})
    assert 3 < near["second_place_distance_km"] < 50
    assert sharing_evidence_score(near) < 0.5
