"""Household evidence of one account: places, networks, devices, concurrent viewing.

Everything runs on event time (epoch ms) with bounded memory. The state is a
mutable dataclass updated in place on the hot path by :func:`apply_household`;
:func:`household_features` turns it into a flat dict of documented features
(see ``docs/sharing.md``).

Privacy: an IP address is reduced to its network prefix (IPv4 /24, IPv6 /48),
which is only kept as a salted hash. Raw IPs are never stored.

Places are clusters of activity: an event with ``geo`` joins the nearest place
within :data:`PLACE_RADIUS_KM` (or founds a new one); without ``geo`` a known
prefix maps to the place it was last seen at; with neither, a device's place of
the last :data:`INHERIT_MS` is inherited.

Devices *live* where they are seen: a device never seen at home in the window
and mostly at one other place lives there (a second household's device); one
seen at home and elsewhere is the household on the move. Concurrent viewing,
second-place days and failed verifications count as evidence only for devices
that live away.

Concurrency is measured per UTC day: a day is *sealed* once the watermark
(highest event time minus the allowed lateness) is a session timeout past its
end; its playback intervals are then swept once into small daily aggregates and
dropped. Unsealed days (about the last one or two) are swept on demand when
features are read, so the features are exact for events late by up to the
allowed lateness.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from models.contract import Event

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
WINDOW_DAYS = 28
LATENESS_MS = HOUR_MS  # contract default allowed lateness
SESSION_TIMEOUT_MS = 4 * HOUR_MS  # contract default: a playback with no stop is over after 4 h
INHERIT_MS = 6 * HOUR_MS  # an event without ip/geo inherits its device's place this long
DEFAULT_SALT = b"churnwatch-household-v1"

PLACE_RADIUS_KM = 3.0
IMPOSSIBLE_KMH = 1000.0  # faster than a airliner, door to door
IMPOSSIBLE_MIN_KM = 500.0  # ignore jumps shorter than geolocation error
NEW_DEVICE_GRACE_MS = 7 * DAY_MS  # devices of the account's first week are not "new"
STATIONARY_TYPES = frozenset({"tv", "console"})
RHYTHM_HALF_LIFE_MS = 7 * DAY_MS
RHYTHM_MIN_HOURS = 2.0  # viewing hours a place needs before its evening peak counts

MAX_PLACES = 16
MAX_DEVICES = 32
MAX_PLACES_PER_DEVICE = 8
MAX_PREFIXES = 64
MAX_PREFIXES_PER_PLACE = 16
MAX_PROFILES = 16
MAX_OPEN_SESSIONS = 16
MAX_PENDING_STOPS = 16
MAX_INTERVALS = 512
# the longest viewing a stop can close (loops over its days stay bounded)
MAX_SESSION_MS = DAY_MS
MAX_TRAVEL_FLAGS = 32
MAX_FAILED_DEVICES = 16

POPULAR_ACCOUNTS = 5  # a network used away from home by this many accounts is no household
CENSUS_MAX_PREFIXES = 50_000  # prefixes one census tracks (11 MB with one account each)

FEATURE_NAMES = (
    "observed_days_28d",
    "places_28d",
    "distinct_prefixes_28d",
    "devices_28d",
    "new_devices_28d",
    "profiles_28d",
    "max_concurrent_streams_28d",
    "over_limit_minutes_28d",
    "cross_place_overlap_hours_28d",
    "away_share",
    "second_place_share",
    "second_place_active_days_28d",
    "second_place_coactive_days_28d",
    "second_place_own_coactive_days_28d",
    "second_place_devices_28d",
    "second_place_own_devices_28d",
    "second_place_shared_devices_28d",
    "second_place_stationary_devices_28d",
    "second_place_phone_devices_28d",
    "second_place_prefixes_28d",
    "second_place_oneoff_prefixes_28d",
    "second_place_rotating_prefixes_28d",
    "second_place_recurring_prefixes_28d",
    "second_place_distance_km",
    "impossible_travel_28d",
    "popular_network_places_28d",
    "rhythm_shift_hours",
    "paid_member_places",
    "away_devices_failed_28d",
    "verifications_failed",
    "verifications_verified",
)

Interval = tuple[int, int, int, str]  # (start ms, end ms, place id or -1, device id or "")


@dataclass(slots=True)
class Place:
    """A cluster of activity (geo cell and/or network prefixes)."""

    pid: int
    lat: float | None
    lon: float | None
    n_geo: int = 0
    last_ts: int = 0
    paid: bool = False
    # hash -> (first ts, last ts, IP version 4 / 6, or 0 if unknown); states pickled before
    # the version was kept hold (first, last) pairs, read as version 0
    prefixes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    days: dict[int, int] = field(default_factory=dict)  # day -> viewing ms (key = active)
    hours: list[float] = field(default_factory=lambda: [0.0] * 24)  # decayed viewing h
    hours_ts: int = 0


@dataclass(slots=True)
class Device:
    first_ts: int
    last_ts: int
    kind: str = "other"
    last_pid: int = -1
    pos: tuple[int, float, float] | None = None  # (ts, lat, lon) of the latest geo
    place_days: dict[int, set[int]] = field(default_factory=dict)  # pid -> active days
    overlap: dict[int, int] = field(default_factory=dict)  # sealed day -> cross-place ms


@dataclass(slots=True)
class HouseholdState:
    """Bounded household evidence of one account (see module docstring)."""

    first_ts: int | None = None
    max_ts: int = 0
    sealed_until: int | None = None  # day boundary (ms): days before it are sealed
    next_pid: int = 0
    places: dict[int, Place] = field(default_factory=dict)
    prefixes: dict[str, tuple[int, int]] = field(default_factory=dict)  # hash -> (ts, pid)
    devices: dict[str, Device] = field(default_factory=dict)
    profiles: dict[str, int] = field(default_factory=dict)  # profile -> last ts
    open_sessions: dict[str, tuple[int, int, str]] = field(default_factory=dict)  # ts,pid,dev
    pending_stops: dict[str, tuple[int, float | None]] = field(default_factory=dict)
    intervals: list[Interval] = field(default_factory=list)  # closed, not yet sealed
    day_max_streams: dict[int, int] = field(default_factory=dict)  # sealed day aggregates
    day_over_ms: dict[int, int] = field(default_factory=dict)
    travel_flags: deque[int] = field(default_factory=lambda: deque(maxlen=MAX_TRAVEL_FLAGS))
    unplaced_paid_members: int = 0
    failed_devices: dict[str, int] = field(default_factory=dict)  # device -> last failed ts
    verifications_failed: int = 0
    verifications_verified: int = 0


def new_household() -> HouseholdState:
    """An empty household state.

    >>> hs = new_household()
    >>> len(hs.places), len(hs.devices)
    (0, 0)
    """
    return HouseholdState()


def prefix_hash(ip: str, salt: bytes = DEFAULT_SALT) -> str:
    """Salted hash of an IP's network prefix (IPv4 /24, IPv6 /48); never the IP itself.

    >>> prefix_hash("203.0.113.7") == prefix_hash("203.0.113.200")
    True
    >>> prefix_hash("203.0.113.7") == prefix_hash("203.0.114.7")
    False
    >>> len(prefix_hash("2001:db8::1"))
    16
    """
    return _prefix(ip, salt)[0]


@functools.lru_cache(maxsize=1 << 16)
def _prefix(ip: str, salt: bytes) -> tuple[str, int]:
    """(salted prefix hash, IP version 4 or 6; 0 if unparsable).

    Cached: an account's addresses repeat from event to event, and parsing plus
    hashing was ~13% of the pipeline's time (profile of ``models.replay``).
    """
    try:
        addr = ipaddress.ip_address(ip.strip())
        bits = 24 if addr.version == 4 else 48
        key = ipaddress.ip_network(f"{addr}/{bits}", strict=False).network_address.packed
        version = addr.version
    except ValueError:
        key = ip.encode("utf-8", "replace")  # unparsable: hashed whole, still never stored
        version = 0
    return hashlib.blake2b(key, digest_size=8, key=salt[:64]).hexdigest(), version


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km.

    >>> round(haversine_km(48.8566, 2.3522, 51.5074, -0.1278))
    344
    """
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 12_742.0 * math.asin(min(1.0, math.sqrt(a)))


# --------------------------------------------------------------------------- updates


def apply_household(
    hs: HouseholdState,
    event: Event,
    *,
    max_streams: int,
    salt: bytes = DEFAULT_SALT,
    lateness_ms: int = LATENESS_MS,
    session_timeout_ms: int = SESSION_TIMEOUT_MS,
) -> HouseholdState:
    """Fold one event into the household state (in place) and return it.

    Handles ``login``, ``playback_started``, ``playback_stopped``, ``activity``,
    ``household_verification`` and ``extra_member_added``; ignores other types.
    Duplicates must be dropped by the caller; late events (up to
    ``lateness_ms``) are handled exactly.

    >>> from models.contract import Event
    >>> hs = new_household()
    >>> e = Event("e1", "login", "a-1", 0, {"device_id": "d1", "ip": "198.51.100.9",
    ...           "geo": {"lat": 52.52, "lon": 13.40}, "device_type": "tv"})
    >>> hs = apply_household(hs, e, max_streams=2)
    >>> len(hs.places), list(hs.devices)
    (1, ['d1'])
    """
    f, ts, kind = event.fields, event.ts, event.type
    if kind == "household_verification":
        outcome = f.get("outcome")
        if outcome == "verified":
            hs.verifications_verified += 1
        elif outcome in ("failed", "expired"):
            hs.verifications_failed += 1
            if f.get("device_id"):
                device = str(f["device_id"])
                ts = max(ts, hs.failed_devices.get(device, ts))
                _put_capped(hs.failed_devices, device, ts, MAX_FAILED_DEVICES)
        return hs
    if kind == "extra_member_added":
        _mark_paid(hs, ts)
        return hs
    if kind not in ("login", "playback_started", "playback_stopped", "activity"):
        return hs

    hs.first_ts = ts if hs.first_ts is None else min(hs.first_ts, ts)
    if hs.sealed_until is None:
        hs.sealed_until = ts - ts % DAY_MS
    if kind == "playback_stopped":
        _stop(hs, str(f.get("session_id", "")), ts, f.get("watched_s"))
    else:
        pid = _observe(hs, ts, f, salt)
        if kind == "playback_started":
            dev = str(f.get("device_id") or "")
            _start(hs, str(f.get("session_id", "")), ts, pid, dev, session_timeout_ms)
    if ts > hs.max_ts:
        hs.max_ts = ts
        _advance(hs, max_streams, lateness_ms, session_timeout_ms)
    return hs


def _observe(hs: HouseholdState, ts: int, f: Mapping[str, Any], salt: bytes) -> int:
    """Locate an event's place, record device/profile presence; return the place id."""
    device_id = f.get("device_id")
    dev = _device(hs, str(device_id), ts, f.get("device_type")) if device_id else None
    geo = f.get("geo")
    lat = lon = None
    if isinstance(geo, Mapping) and "lat" in geo and "lon" in geo:
        lat, lon = float(geo["lat"]), float(geo["lon"])
    ip = f.get("ip")
    h, version = _prefix(str(ip), salt) if ip else (None, 0)
    pid = _locate(hs, ts, lat, lon, h, dev)
    day = ts // DAY_MS
    if pid >= 0:
        place = hs.places[pid]
        place.last_ts = max(place.last_ts, ts)
        place.days.setdefault(day, 0)
        if h is not None:
            first, last = place.prefixes.get(h, (ts, ts))[:2]
            seen = (min(first, ts), max(last, ts), version)
            _put_capped(place.prefixes, h, seen, MAX_PREFIXES_PER_PLACE)
            _put_capped(hs.prefixes, h, (ts, pid), MAX_PREFIXES)
    if dev is not None:
        if lat is not None and lon is not None:
            _check_travel(hs, dev, ts, lat, lon)
        if pid >= 0:
            if ts >= dev.last_ts:
                dev.last_pid = pid
            days = dev.place_days.get(pid)
            if days is None:
                if len(dev.place_days) >= MAX_PLACES_PER_DEVICE:
                    oldest = min(dev.place_days, key=lambda p: max(dev.place_days[p], default=0))
                    del dev.place_days[oldest]
                days = dev.place_days[pid] = set()
            days.add(day)
        dev.last_ts = max(dev.last_ts, ts)
    profile = f.get("profile_id")
    if profile:
        _put_capped(
            hs.profiles, str(profile), max(ts, hs.profiles.get(str(profile), ts)), MAX_PROFILES
        )
    return pid


def _locate(
    hs: HouseholdState,
    ts: int,
    lat: float | None,
    lon: float | None,
    h: str | None,
    dev: Device | None,
) -> int:
    if lat is not None and lon is not None:
        best, best_km = None, PLACE_RADIUS_KM
        for place in hs.places.values():
            # a degree of latitude is 111.2 km: a place further north or south than the best
            # distance so far is no nearer, whatever its longitude (skips most haversines)
            if place.lat is not None and place.lon is not None:
                if abs(lat - place.lat) * 111.0 > best_km:
                    continue
                km = haversine_km(lat, lon, place.lat, place.lon)
                if km <= best_km:
                    best, best_km = place, km
        if best is None:
            return _new_place(hs, ts, lat, lon)
        if best.lat is not None and best.lon is not None and best.n_geo < 50:
            best.n_geo += 1  # running centre, frozen after 50 fixes
            best.lat += (lat - best.lat) / best.n_geo
            best.lon += (lon - best.lon) / best.n_geo
        return best.pid
    if h is not None:
        known = hs.prefixes.get(h)
        if known is not None and known[1] in hs.places:
            return known[1]
        return _new_place(hs, ts, None, None)
    if dev is not None and dev.last_pid in hs.places and abs(ts - dev.last_ts) <= INHERIT_MS:
        return dev.last_pid
    return -1


def _new_place(hs: HouseholdState, ts: int, lat: float | None, lon: float | None) -> int:
    if len(hs.places) >= MAX_PLACES:
        del hs.places[min(hs.places.values(), key=lambda p: p.last_ts).pid]
    pid = hs.next_pid
    hs.next_pid += 1
    place = Place(pid, lat, lon, n_geo=1 if lat is not None else 0, last_ts=ts)
    if hs.unplaced_paid_members > 0:  # a member paid for before we saw their place
        hs.unplaced_paid_members -= 1
        place.paid = True
    hs.places[pid] = place
    return pid


def _device(hs: HouseholdState, device_id: str, ts: int, kind: Any) -> Device:
    dev = hs.devices.get(device_id)
    if dev is None:
        if len(hs.devices) >= MAX_DEVICES:
            del hs.devices[min(hs.devices, key=lambda d: hs.devices[d].last_ts)]
        dev = hs.devices[device_id] = Device(first_ts=ts, last_ts=ts)
    dev.first_ts = min(dev.first_ts, ts)
    if kind:
        dev.kind = str(kind)
    return dev


def _check_travel(hs: HouseholdState, dev: Device, ts: int, lat: float, lon: float) -> None:
    if dev.pos is not None:
        pts, plat, plon = dev.pos
        km = haversine_km(plat, plon, lat, lon)
        hours = max(abs(ts - pts), 60_000) / HOUR_MS
        if km >= IMPOSSIBLE_MIN_KM and km / hours > IMPOSSIBLE_KMH:
            hs.travel_flags.append(ts)
        if ts < pts:
            return
    dev.pos = (ts, lat, lon)


def _start(hs: HouseholdState, sid: str, ts: int, pid: int, dev: str, timeout_ms: int) -> None:
    stop = hs.pending_stops.pop(sid, None)
    if stop is not None:  # its stop arrived first (out of order)
        _close(hs, ts, min(stop[0], ts + timeout_ms), pid, dev, stop[1])
        return
    if len(hs.open_sessions) >= MAX_OPEN_SESSIONS:
        oldest = min(hs.open_sessions, key=lambda s: hs.open_sessions[s][0])
        ots, opid, odev = hs.open_sessions.pop(oldest)
        _close(hs, ots, min(ots + timeout_ms, max(ts, ots)), opid, odev, None)
    hs.open_sessions[sid] = (ts, pid, dev)


def _stop(hs: HouseholdState, sid: str, ts: int, watched_s: Any) -> None:
    watched = float(watched_s) if isinstance(watched_s, int | float) else None
    opened = hs.open_sessions.pop(sid, None)
    if opened is None:
        _put_capped(hs.pending_stops, sid, (ts, watched), MAX_PENDING_STOPS)
    else:  # a stop days after its start is a lost stop's session, not days of viewing
        end = min(max(ts, opened[0]), opened[0] + MAX_SESSION_MS)
        _close(hs, opened[0], end, opened[1], opened[2], watched)


def _close(
    hs: HouseholdState, start: int, end: int, pid: int, dev: str, watched_s: float | None
) -> None:
    """Record a finished playback: viewing per place and day, rhythm, interval."""
    if pid >= 0 and pid in hs.places:
        place = hs.places[pid]
        viewed = end - start if watched_s is None else min(end - start, int(watched_s * 1000))
        for day, ms in _split_days(start, end, viewed):
            place.days[day] = place.days.get(day, 0) + ms
        decay = 0.5 ** ((start - place.hours_ts) / RHYTHM_HALF_LIFE_MS)
        if start >= place.hours_ts:
            place.hours = [h * decay for h in place.hours]
            place.hours_ts = start
            decay = 1.0
        else:
            decay = 1.0 / decay
        place.hours[(start // HOUR_MS) % 24] += viewed / HOUR_MS * decay
    sealed = hs.sealed_until if hs.sealed_until is not None else start
    if end > sealed:
        hs.intervals.append((max(start, sealed), end, pid, dev))
        if len(hs.intervals) > MAX_INTERVALS:
            hs.intervals.sort()
            del hs.intervals[0]


def _split_days(start: int, end: int, viewed: int) -> Iterable[tuple[int, int]]:
    """Spread ``viewed`` ms over the UTC days of [start, end) in proportion."""
    span = max(end - start, 1)
    t = start
    while True:
        day = t // DAY_MS
        nxt = min(end, (day + 1) * DAY_MS)
        yield day, viewed * (nxt - t) // span if end > start else viewed
        if nxt >= end:
            return
        t = nxt


def _mark_paid(hs: HouseholdState, ts: int) -> None:
    view = _window_view(hs, ts)
    home = _home(hs, view, ts)
    second = _second(hs, view, home)
    if second is None:
        hs.unplaced_paid_members += 1
    else:
        hs.places[second].paid = True


def _advance(hs: HouseholdState, max_streams: int, lateness_ms: int, timeout_ms: int) -> None:
    """Expire timed-out sessions and seal the days the watermark has passed."""
    watermark = hs.max_ts - lateness_ms
    for sid, (start, pid, dev) in list(hs.open_sessions.items()):
        if start + timeout_ms <= watermark:
            del hs.open_sessions[sid]
            _close(hs, start, start + timeout_ms, pid, dev, None)
    assert hs.sealed_until is not None
    target = (watermark - timeout_ms) // DAY_MS * DAY_MS
    sealed_any = False
    while hs.sealed_until < target:
        lo = hs.sealed_until
        if hs.intervals:
            lo = max(lo, min(iv[0] for iv in hs.intervals) // DAY_MS * DAY_MS)
        else:
            lo = target
        if lo >= target:
            hs.sealed_until = target
            break
        hi = lo + DAY_MS
        peak, over, overlap = _sweep(hs.intervals, lo, hi, max_streams)
        day = lo // DAY_MS
        hs.day_max_streams[day] = peak
        hs.day_over_ms[day] = over
        for dev_id, ms in overlap.items():
            if dev_id in hs.devices:
                hs.devices[dev_id].overlap[day] = ms
        hs.intervals = [iv for iv in hs.intervals if iv[1] > hi]
        hs.sealed_until = hi
        sealed_any = True
    if sealed_any:
        _prune(hs, hs.max_ts // DAY_MS - WINDOW_DAYS)


def _prune(hs: HouseholdState, oldest_day: int) -> None:
    """Drop per-day data that fell out of the window (once per sealed day)."""
    for d in (hs.day_max_streams, hs.day_over_ms):
        for day in [k for k in d if k < oldest_day]:
            del d[day]
    for place in hs.places.values():
        for day in [k for k in place.days if k < oldest_day]:
            del place.days[day]
    for dev in hs.devices.values():
        for day in [k for k in dev.overlap if k < oldest_day]:
            del dev.overlap[day]
        for pid in list(dev.place_days):
            days = {d for d in dev.place_days[pid] if d >= oldest_day and pid in hs.places}
            if days:
                dev.place_days[pid] = days
            else:
                del dev.place_days[pid]


def _sweep(
    intervals: Iterable[Interval], lo: int, hi: int, max_streams: int
) -> tuple[int, int, dict[str, int]]:
    """Sweep intervals clipped to [lo, hi).

    Returns (peak concurrent streams, ms above ``max_streams``, per device the ms
    it streamed while at least two known places streamed).

    >>> _sweep([(0, 10, 0, "tv"), (5, 20, 1, "phone"), (6, 8, 1, "")], 0, 100, 2)
    (3, 2, {'tv': 5, 'phone': 5})
    """
    points: list[tuple[int, int, int, str]] = []
    for s, e, pid, dev in intervals:
        s, e = max(s, lo), min(e, hi)
        if s < e:
            points.append((s, 1, pid, dev))
            points.append((e, -1, pid, dev))
    points.sort()  # at equal times ends (-1) sort before starts: back to back is not overlap
    active = peak = over = 0
    per_place: dict[int, int] = {}
    per_dev: dict[str, int] = {}
    overlap: dict[str, int] = {}
    prev = lo
    for t, delta, pid, dev in points:
        dt = t - prev
        if dt > 0:
            if active > max_streams:
                over += dt
            if len(per_place) >= 2:
                for d in per_dev:
                    overlap[d] = overlap.get(d, 0) + dt
        prev = t
        active += delta
        peak = max(peak, active)
        if pid >= 0:
            _bump(per_place, pid, delta)
            _bump(per_dev, dev, delta)
    overlap.pop("", None)
    return peak, over, overlap


def _bump(counts: dict[Any, int], key: Any, delta: int) -> None:
    n = counts.get(key, 0) + delta
    if n > 0:
        counts[key] = n
    else:
        counts.pop(key, None)


def _put_capped(d: dict[str, Any], key: str, value: Any, cap: int) -> None:
    """Insert into a dict, evicting the least recently inserted key beyond ``cap``."""
    d.pop(key, None)
    d[key] = value
    if len(d) > cap:
        del d[next(iter(d))]


# --------------------------------------------------------------------------- features


def _window_view(hs: HouseholdState, now_ms: int) -> dict[int, tuple[int, int]]:
    """Per place with activity in the window: (viewing ms, active days)."""
    lo, hi = now_ms // DAY_MS - WINDOW_DAYS + 1, now_ms // DAY_MS
    out = {}
    for pid, place in hs.places.items():
        days = [ms for d, ms in place.days.items() if lo <= d <= hi]
        if days:
            out[pid] = (sum(days), len(days))
    return out


def _anchors(
    hs: HouseholdState, view: Mapping[int, tuple[int, int]], now_ms: int
) -> tuple[set[int], set[int]]:
    """Places of ``view`` where, in the window up to ``now_ms``, a TV or console was
    active, and places with a network seen on two or more days (a fixed line)."""
    lo_day, hi_day = now_ms // DAY_MS - WINDOW_DAYS + 1, now_ms // DAY_MS
    stationary: set[int] = set()
    for dev in hs.devices.values():
        if dev.kind in STATIONARY_TYPES:
            for pid, days in dev.place_days.items():
                if pid in view and any(lo_day <= d <= hi_day for d in days):
                    stationary.add(pid)
    lo_ms = lo_day * DAY_MS
    fixed = {
        pid
        for pid in view
        if any(v[1] >= lo_ms and v[0] // DAY_MS < v[1] // DAY_MS
               for v in hs.places[pid].prefixes.values())
    }  # fmt: skip
    return stationary, fixed


def _home(hs: HouseholdState, view: Mapping[int, tuple[int, int]], now_ms: int) -> int | None:
    """The account's home among the places of ``view``.

    A place no paid extra member covers; where a TV or console plays, then with a
    fixed-line network (a place only phones and laptops pass through on changing
    networks -- a commute, a hotel for a night -- is nobody's home); then active on
    the most days, with the most viewing, the oldest.
    """
    stationary, fixed = _anchors(hs, view, now_ms)
    return max(
        view,
        key=lambda p: (
            not hs.places[p].paid, p in stationary, p in fixed, view[p][1], view[p][0], -p
        ),
        default=None,
    )


def _second(
    hs: HouseholdState,
    view: Mapping[int, tuple[int, int]],
    home: int | None,
    hubs: frozenset[int] = frozenset(),
) -> int | None:
    """The most-viewed place other than home that no paid extra member covers (not a hub)."""
    rest = [p for p in view if p != home and not hs.places[p].paid and p not in hubs]
    return max(rest, key=lambda p: (view[p], -p), default=None)


def _hubs(
    hs: HouseholdState, view: Mapping[int, tuple[int, int]], census: PrefixCensus, now_ms: int
) -> frozenset[int]:
    """Places whose networks in the window are all popular in ``census``."""
    lo_ms = (now_ms // DAY_MS - WINDOW_DAYS + 1) * DAY_MS
    out = []
    for pid in view:
        seen = [h for h, v in hs.places[pid].prefixes.items() if v[1] >= lo_ms]
        if seen and all(census.popular(h, now_ms) for h in seen):
            out.append(pid)
    return frozenset(out)


_COS_HOUR = [math.cos(i * math.pi / 12) for i in range(24)]
_SIN_HOUR = [math.sin(i * math.pi / 12) for i in range(24)]
_SECOND_PLACE_NAMES = tuple(n for n in FEATURE_NAMES if n.startswith("second_place_"))


def _peak_hour(place: Place) -> float | None:
    w = sum(place.hours)
    if w < RHYTHM_MIN_HOURS:
        return None
    x = sum(h * c for h, c in zip(place.hours, _COS_HOUR, strict=True))
    y = sum(h * s for h, s in zip(place.hours, _SIN_HOUR, strict=True))
    return (math.atan2(y, x) * 12 / math.pi) % 24


def household_features(
    hs: HouseholdState,
    now_ms: int,
    *,
    max_streams: int,
    session_timeout_ms: int = SESSION_TIMEOUT_MS,
    census: PrefixCensus | None = None,
) -> dict[str, float]:
    """The household evidence at ``now_ms`` over the last 28 days (names in FEATURE_NAMES).

    With a ``census``, a place reached only over popular networks (VPN exits,
    carrier NAT: see :class:`PrefixCensus`) is a *hub*: the household on the
    move, like travel. It is never the home (unless there is no other place) nor
    the second place, and no device lives there.

    >>> f = household_features(new_household(), 0, max_streams=2)
    >>> f["places_28d"], f["cross_place_overlap_hours_28d"], len(f) == len(FEATURE_NAMES)
    (0.0, 0.0, True)
    """
    now_day = now_ms // DAY_MS
    lo_day = now_day - WINDOW_DAYS + 1
    lo_ms = lo_day * DAY_MS
    sealed = hs.sealed_until if hs.sealed_until is not None else now_ms
    live = list(hs.intervals)
    live += [
        (s, min(now_ms, s + session_timeout_ms), p, d) for s, p, d in hs.open_sessions.values()
    ]
    peak, over_ms, live_overlap = _sweep(live, sealed, now_ms + 1, max_streams)
    in_win = range(lo_day, now_day + 1)
    win = set(in_win)
    peak = max([peak] + [v for d, v in hs.day_max_streams.items() if d in in_win])
    over_ms += sum(v for d, v in hs.day_over_ms.items() if d in in_win)

    view = _window_view(hs, now_ms)
    hubs = _hubs(hs, view, census, now_ms) if census is not None else frozenset()
    # a hub is nobody's home, even when most days are spent behind the VPN
    home = _home(hs, {p: v for p, v in view.items() if p not in hubs}, now_ms)
    if home is None:  # only hubs: the busiest stands for home
        home = _home(hs, view, now_ms)
    hubs = hubs - {home}
    second = _second(hs, view, home, hubs)
    total_view = sum(v for v, _ in view.values())
    away_view = sum(v for p, (v, _) in view.items() if p != home and not hs.places[p].paid)

    sp: dict[str, float] = dict.fromkeys(_SECOND_PLACE_NAMES, 0.0)
    overlap_ms = 0
    at_home_devices: set[str] = set()
    paid_devices: set[str] = set()  # devices living at a paid extra member's place
    own_days: set[int] = set()  # days a device living at the second place was active there
    for dev_id, dev in hs.devices.items():
        days = {p: n for p, ds in dev.place_days.items() if (n := len(ds & win))}
        if not days:
            continue
        at_home = days.get(home, 0) if home is not None else 0
        if at_home:
            at_home_devices.add(dev_id)
        main = max(days, key=days.__getitem__)
        where = hs.places.get(main)
        if not at_home and where is not None and where.paid:
            paid_devices.add(dev_id)
        # lives away: never at home, and mostly at one (unpaid) place -- not on the move
        # (a device seen at two or more places other than home is somebody moving about:
        # a commute along carrier cells, a trip, VPN exits; a TV stays put)
        lives_away = (
            not at_home
            and main != home
            and sum(1 for p in days if p != home) < 2
            and where is not None
            and not where.paid
            and main not in hubs
            and 2 * days[main] >= sum(days.values())
        )
        if lives_away:
            overlap_ms += live_overlap.get(dev_id, 0)
            overlap_ms += sum(v for d, v in dev.overlap.items() if d in in_win)
        if second is not None and second in days:
            sp["second_place_devices_28d"] += 1
            if at_home:
                sp["second_place_shared_devices_28d"] += 1
            elif lives_away and main == second:
                sp["second_place_own_devices_28d"] += 1
                own_days |= dev.place_days[second] & win
                if dev.kind in STATIONARY_TYPES:
                    sp["second_place_stationary_devices_28d"] += 1
                elif dev.kind == "mobile":
                    sp["second_place_phone_devices_28d"] += 1

    shift = 0.0
    if second is not None:
        place = hs.places[second]
        sp["second_place_share"] = view[second][0] / total_view if total_view else 0.0
        sp["second_place_active_days_28d"] = view[second][1]
        seen = [
            (v[0] // DAY_MS, v[1] // DAY_MS, v[2] if len(v) > 2 else 0)
            for v in place.prefixes.values()
            if v[1] >= lo_ms
        ]
        sp["second_place_prefixes_28d"] = len(seen)
        oneoff = [version for a, b, version in seen if a == b]
        sp["second_place_oneoff_prefixes_28d"] = len(oneoff)
        sp["second_place_recurring_prefixes_28d"] = len(seen) - len(oneoff)
        # rotation: a second one-day network of the same IP version (a dual-stack home
        # shows one IPv4 and one IPv6 prefix, each possibly on one day only so far)
        sp["second_place_rotating_prefixes_28d"] = sum(
            max(oneoff.count(version) - 1, 0) for version in set(oneoff)
        )
        if home is not None:
            hp = hs.places[home]
            home_days = hp.days.keys() & win
            sp["second_place_coactive_days_28d"] = len(place.days.keys() & home_days)
            sp["second_place_own_coactive_days_28d"] = len(own_days & home_days)
            if hp.lat is not None and hp.lon is not None and place.lat is not None:
                assert place.lon is not None  # lat and lon are set together
                sp["second_place_distance_km"] = haversine_km(hp.lat, hp.lon, place.lat, place.lon)
            h1, h2 = _peak_hour(hp), _peak_hour(place)
            if h1 is not None and h2 is not None:
                shift = min(abs(h1 - h2), 24 - abs(h1 - h2))

    grace = (hs.first_ts or 0) + NEW_DEVICE_GRACE_MS
    feats: dict[str, float] = {
        "observed_days_28d": min(WINDOW_DAYS, (now_ms - hs.first_ts) / DAY_MS)
        if hs.first_ts is not None
        else 0.0,
        "places_28d": float(len(view)),
        "distinct_prefixes_28d": float(sum(1 for t, _ in hs.prefixes.values() if t >= lo_ms)),
        "devices_28d": float(sum(1 for d in hs.devices.values() if d.last_ts >= lo_ms)),
        "new_devices_28d": float(
            sum(1 for d in hs.devices.values() if d.first_ts >= max(lo_ms, grace))
        ),
        "profiles_28d": float(sum(1 for t in hs.profiles.values() if t >= lo_ms)),
        "max_concurrent_streams_28d": float(peak),
        "over_limit_minutes_28d": over_ms / 60_000,
        "cross_place_overlap_hours_28d": overlap_ms / HOUR_MS,
        "away_share": away_view / total_view if total_view else 0.0,
        **sp,
        "impossible_travel_28d": float(sum(1 for t in hs.travel_flags if t >= lo_ms)),
        "popular_network_places_28d": float(len(hubs)),
        "rhythm_shift_hours": shift,
        "paid_member_places": float(
            sum(1 for p in hs.places.values() if p.paid) + hs.unplaced_paid_members
        ),
        "away_devices_failed_28d": float(
            sum(
                1
                for d, t in hs.failed_devices.items()
                if t >= lo_ms and d not in at_home_devices and d not in paid_devices
            )
        ),
        "verifications_failed": float(hs.verifications_failed),
        "verifications_verified": float(hs.verifications_verified),
    }
    return {name: float(feats[name]) for name in FEATURE_NAMES}


# --------------------------------------------------------------------------- census


@dataclass(slots=True)
class PrefixCensus:
    """Cross-account census: which accounts used each network prefix *away from home*.

    A prefix that many accounts use away from their own home (in the last
    ``window_ms`` of event time) is a VPN exit, a carrier's NAT pool, a hotel or
    a datacenter -- never somebody's home. A residential prefix shared by many
    subscribers' homes does not count: it is home to each of them. Bounded: at
    most ``2 * popular_accounts`` accounts per prefix (the latest) and
    ``max_prefixes`` prefixes (the least used are evicted first). A census sees
    only the accounts fed to it (one worker's or one partition's): it needs
    ``popular_accounts`` of them per shared network to recognise it.

    >>> hs = new_household()
    >>> for i, ip in enumerate(["198.51.100.1", "203.0.113.9"]):  # home, then a VPN exit
    ...     e = Event(f"e{i}", "login", "a", i * DAY_MS, {"device_id": "d", "ip": ip})
    ...     hs = apply_household(hs, e, max_streams=1)
    >>> census = PrefixCensus(popular_accounts=2)
    >>> census.observe("a", hs); census.observe("b", hs)
    >>> vpn, home = prefix_hash("203.0.113.9"), prefix_hash("198.51.100.1")
    >>> census.accounts(vpn, DAY_MS), census.popular(vpn, DAY_MS), census.popular(home, DAY_MS)
    (2, True, False)
    """

    popular_accounts: int = POPULAR_ACCOUNTS
    max_prefixes: int = CENSUS_MAX_PREFIXES
    window_ms: int = WINDOW_DAYS * DAY_MS
    users: dict[str, dict[str, int]] = field(default_factory=dict)  # prefix -> account -> ts

    def __post_init__(self) -> None:
        if self.popular_accounts < 2 or self.max_prefixes < 1 or self.window_ms <= 0:
            raise ValueError("popular_accounts must be >= 2, max_prefixes and window_ms > 0")

    def observe(self, account_id: str, hs: HouseholdState) -> None:
        """Record the prefixes ``hs`` used away from its home (cheap when nothing changed)."""
        if not hs.prefixes:
            return
        home = _home(hs, _window_view(hs, hs.max_ts), hs.max_ts)
        cap = 2 * self.popular_accounts
        for h, (ts, pid) in hs.prefixes.items():
            if pid == home:
                continue
            users = self.users.setdefault(h, {})
            if users.get(account_id, -1) >= ts:
                continue
            users[account_id] = ts
            if len(users) > cap:
                del users[min(users, key=users.__getitem__)]
        if len(self.users) > self.max_prefixes:
            keep = sorted(
                self.users.items(), key=lambda kv: (len(kv[1]), max(kv[1].values(), default=0))
            )
            self.users = dict(keep[len(keep) - self.max_prefixes * 3 // 4 :])

    def accounts(self, prefix: str, now_ms: int) -> int:
        """Distinct accounts that used ``prefix`` away from home in the window up to ``now_ms``."""
        users = self.users.get(prefix)
        lo = now_ms - self.window_ms
        return sum(1 for ts in users.values() if ts > lo) if users else 0

    def popular(self, prefix: str, now_ms: int) -> bool:
        """Whether ``prefix`` is a shared network (VPN exit, carrier NAT), not a home."""
        return self.accounts(prefix, now_ms) >= self.popular_accounts
