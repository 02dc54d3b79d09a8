"""Folding one event into the household state: places, devices, travel, sealing days."""

from __future__ import annotations

from collections.abc import Mapping
from itertools import chain
from typing import Any

from models.contract import Event
from models.household.geo import _prefix, haversine_km
from models.household.places import _device_view, _home, _second, _window_view
from models.household.sessions import _close, _start, _stop, _sweep
from models.household.state import (
    DAY_MS,
    DEFAULT_SALT,
    FORGET_DAYS,
    HOUR_MS,
    IMPOSSIBLE_KMH,
    IMPOSSIBLE_MIN_KM,
    INHERIT_MS,
    LATENESS_MS,
    MAX_DEVICES,
    MAX_FAILED_DEVICES,
    MAX_PLACES,
    MAX_PLACES_PER_DEVICE,
    MAX_PREFIXES,
    MAX_PREFIXES_PER_PLACE,
    MAX_PROFILES,
    NETWORK_RADIUS_KM,
    PLACE_RADIUS_KM,
    POOL_CHANGE_MS,
    SESSION_TIMEOUT_MS,
    WINDOW_DAYS,
    Device,
    HouseholdState,
    Place,
    _put_capped,
)


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
    >>> from models.household import new_household
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
    h, version, host = _network(f, salt)
    pid = _locate(hs, ts, lat, lon, h, dev)
    day = ts // DAY_MS
    if pid >= 0:
        place = hs.places[pid]
        place.last_ts = max(place.last_ts, ts)
        place.days.setdefault(day, 0)
        if h is not None:
            seen = _seen(place.prefixes.get(h), ts, version, host)
            _put_capped(place.prefixes, h, seen, MAX_PREFIXES_PER_PLACE)
            _put_capped(hs.prefixes, h, _link(hs, hs.prefixes.get(h), dev, ts, pid), MAX_PREFIXES)
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


def _link(
    hs: HouseholdState, old: tuple[int, ...] | None, dev: Device | None, ts: int, pid: int
) -> tuple[int, ...]:
    """A network's record after one more event on it: (last ts, place id, network group,
    days seen); records of states saved before version 11 hold (ts, place id) only and
    are padded here.

    The *network group* joins devices that used a common network, directly or through
    other devices: a home's devices share its line (a new lease is joined by the
    devices that move to it), a commuter's phone joins the home through the home's
    Wi-Fi, a traveller's devices through theirs. A borrower's device that never used
    a network of the owner's stays in a group of its own, wherever its geo puts it
    (``features._apart``). Groups only ever merge.

    >>> hs = HouseholdState()
    >>> tv, phone = Device(0, 0), Device(0, 0)
    >>> hs.prefixes["home"] = _link(hs, None, tv, 0, 0)
    >>> hs.prefixes["cell"] = _link(hs, None, phone, 0, 1)
    >>> tv.group, phone.group
    (0, 1)
    >>> hs.devices = {"tv": tv, "phone": phone}
    >>> hs.prefixes["home"] = _link(hs, hs.prefixes["home"], phone, DAY_MS, 0)
    >>> tv.group == phone.group == hs.prefixes["cell"][2], hs.prefixes["home"][3]
    (True, 2)
    """
    group, days, last = (-1, 0, -1) if old is None or len(old) < 4 else (old[2], old[3], old[0])
    if dev is not None:
        if dev.group < 0:
            dev.group = group if group >= 0 else _new_group(hs)
        elif 0 <= group != dev.group:
            _merge(hs, group, dev.group)
        group = dev.group
    if last < 0 or ts // DAY_MS > last // DAY_MS:
        days += 1
    return (max(ts, last), pid, group, days)


def _new_group(hs: HouseholdState) -> int:
    """A network group number no device or network holds."""
    devices = (d.group for d in hs.devices.values())
    networks = (v[2] for v in hs.prefixes.values() if len(v) > 2)
    return 1 + max(chain(devices, networks), default=-1)


def _merge(hs: HouseholdState, group: int, into: int) -> None:
    """Network group ``group`` becomes ``into`` (a device used a network of both)."""
    for dev in hs.devices.values():
        if dev.group == group:
            dev.group = into
    for h, v in hs.prefixes.items():
        if len(v) > 2 and v[2] == group:
            hs.prefixes[h] = (*v[:2], into, *v[3:])


def _host(ip: str) -> int:
    """The host octet of an IPv4 address (-1 if there is none)."""
    last = ip.strip().rpartition(".")[2]
    return int(last) if last.isdigit() else -1


def _seen(old: tuple[int, ...] | None, ts: int, version: int, host: int) -> tuple[int, ...]:
    """A prefix's record at a place after one more event: (first ts, last ts, IP version,
    last host octet, the one before, ts of the last address change, pool flag). A home
    line keeps its address for days (a lease); a third address within a day is a pool
    that hands out addresses per connection (a VPN exit, carrier NAT): the flag is 1.
    (Two addresses that alternate are one lease change seen out of order.) Records of
    states saved before hold (first, last[, version]) only."""
    if old is None:
        return (ts, ts, version, host, -1, 0, 0)
    last_host = old[3] if len(old) > 3 else -1
    prev_host = old[4] if len(old) > 6 else -1
    changed, pool = (old[5], old[6]) if len(old) > 6 else (0, 0)
    if host >= 0 and last_host >= 0 and host != last_host:
        if host != prev_host and prev_host >= 0 and changed and abs(ts - changed) < POOL_CHANGE_MS:
            pool = 1
        last_host, prev_host, changed = host, last_host, ts
    elif last_host < 0:
        last_host = host
    return (min(old[0], ts), max(old[1], ts), version, last_host, prev_host, changed, pool)


def _network(f: Mapping[str, Any], salt: bytes) -> tuple[str | None, int, int]:
    """(prefix hash, IP version, host number: -1 but for IPv4) of an event: the keyed
    tokens ingest put in place of its IP (``net``, ``net_v``, ``net_host``:
    ``models.privacy``), else the salted hash and last octet of its raw ``ip``."""
    net = f.get("net")
    if net:
        return str(net), int(f.get("net_v") or 0), int(f.get("net_host", -1))
    ip = f.get("ip")
    if not ip:
        return None, 0, -1
    h, version = _prefix(str(ip), salt)
    return h, version, _host(str(ip)) if version == 4 else -1


def _locate(
    hs: HouseholdState,
    ts: int,
    lat: float | None,
    lon: float | None,
    h: str | None,
    dev: Device | None,
) -> int:
    """The place of an event: its network first, then its geo, then its device.

    A known network prefix is the place it was seen at, unless the geo is further
    away than geolocation errs (``NETWORK_RADIUS_KM``: a VPN exit or a carrier pool
    seen in another city): geo is often the city centre (IP geolocation, web and TV
    apps) or noisy, while the same network is the same home. A device whose own geo
    fix has not moved (within ``PLACE_RADIUS_KM`` of its last one) stays at its place,
    if that place has geo, on a new network: a lease, the other IP version or a carrier
    address of the same home, whatever geo other devices report there. Else a new
    network with geo joins the nearest place within ``PLACE_RADIUS_KM`` (or founds one).
    A new network is its device's place when the device lived there (seen there on
    two days or more: the home's address changed, a lease or carrier NAT) or was there
    a moment ago -- if the event has no geo, or the place has none yet; else a new
    place.
    """
    known = hs.prefixes.get(h) if h is not None else None
    if known is not None and known[1] in hs.places:
        if _near(hs, hs.places[known[1]], lat, lon):
            return known[1]
    geo = lat is not None and lon is not None
    if lat is not None and lon is not None and dev is not None and dev.pos is not None:
        # a device whose own fix has not moved is where it was: a new network at the same
        # fix is that place's new address (a lease, the other IP version, carrier NAT).
        # Not if it was last at a place without geo (a new network seen without a fix):
        # that is not where the fix was, which goes where geo puts it (below)
        _, lat0, lon0 = dev.pos
        last = hs.places.get(dev.last_pid)
        if (
            last is not None
            and last.lat is not None
            and (haversine_km(lat, lon, lat0, lon0) <= PLACE_RADIUS_KM)
        ):
            return dev.last_pid
    if dev is not None and dev.last_pid in hs.places:
        # a device that lived somewhere (seen there on two days or more), or a moment ago;
        # with geo, only if that place has none yet (it then takes this fix)
        here = hs.places[dev.last_pid]
        if len(dev.place_days.get(dev.last_pid, ())) >= 2 or abs(ts - dev.last_ts) <= INHERIT_MS:
            if not geo or (here.lat is None and _near(hs, here, lat, lon)):
                return dev.last_pid
    if lat is not None and lon is not None:  # (geo, spelled out for the type checker)
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
        return _new_place(hs, ts, None, None)
    return -1


def _near(hs: HouseholdState, place: Place, lat: float | None, lon: float | None) -> bool:
    """Whether a geo fix (if any) is within ``NETWORK_RADIUS_KM`` of ``place``. A place
    without geo takes the fix as its centre -- unless another place is there already
    (then the fix goes there, and so does the network from now on)."""
    if lat is None or lon is None:
        return True
    if place.lat is None or place.lon is None:
        for other in hs.places.values():
            if other.lat is not None and other.lon is not None:
                if haversine_km(lat, lon, other.lat, other.lon) <= PLACE_RADIUS_KM:
                    return False
        place.lat, place.lon, place.n_geo = lat, lon, 1
        return True
    return haversine_km(lat, lon, place.lat, place.lon) <= NETWORK_RADIUS_KM


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


def _mark_paid(hs: HouseholdState, ts: int) -> None:
    view = _window_view(hs, ts)
    home = _home(hs, view, ts)
    day = ts // DAY_MS
    _, residents = _device_view(hs, home, frozenset(), set(range(day - WINDOW_DAYS + 1, day + 1)))
    second = _second(hs, view, home, frozenset(), residents)
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
        _forget(hs, (hs.max_ts // DAY_MS - FORGET_DAYS) * DAY_MS)


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


def _forget(hs: HouseholdState, before_ms: int) -> None:
    """Forget the places, networks, devices and profiles last seen before ``before_ms``
    (``FORGET_DAYS`` ago, once per sealed day). No feature looks back that far, and a
    state that kept them would grow with every network and device an account ever
    used, up to the caps (measured by ``benchmarks/soak.py``: a median state of 7 KB
    growing to 17 KB over 900 days of households that change networks and devices).

    >>> from collections import deque
    >>> from models.household.state import Device, HouseholdState, Place
    >>> hs = HouseholdState()
    >>> hs.places = {0: Place(0, None, None, last_ts=10), 1: Place(1, None, None, last_ts=99)}
    >>> hs.places[1].prefixes = {"old": (0, 5, 4), "new": (0, 50, 4)}
    >>> hs.prefixes = {"old": (5, 1), "new": (50, 1)}
    >>> hs.devices = {"tv": Device(0, 99), "phone": Device(0, 20)}
    >>> hs.profiles, hs.travel_flags = {"kid": 1, "mum": 60}, deque([1, 70], maxlen=32)
    >>> _forget(hs, 30)
    >>> list(hs.places), list(hs.places[1].prefixes), list(hs.prefixes), list(hs.devices)
    ([1], ['new'], ['new'], ['tv'])
    >>> hs.profiles, list(hs.travel_flags)
    ({'mum': 60}, [70])
    """
    for pid in [p.pid for p in hs.places.values() if p.last_ts < before_ms]:
        del hs.places[pid]
    for place in hs.places.values():
        for h in [h for h, seen in place.prefixes.items() if seen[1] < before_ms]:
            del place.prefixes[h]
    for h in [h for h, seen in hs.prefixes.items() if seen[0] < before_ms]:
        del hs.prefixes[h]
    for d in [d for d, dev in hs.devices.items() if dev.last_ts < before_ms]:
        del hs.devices[d]
    for kept in (hs.profiles, hs.failed_devices):
        for key in [k for k, ts in kept.items() if ts < before_ms]:
            del kept[key]
    while hs.travel_flags and hs.travel_flags[0] < before_ms:
        hs.travel_flags.popleft()
