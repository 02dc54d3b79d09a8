"""``household_features``: the household evidence at a time, as documented features."""

from __future__ import annotations

from collections.abc import Set as AbstractSet

from models.household.census import PrefixCensus
from models.household.geo import haversine_km
from models.household.places import (
    DeviceView,
    Window,
    _device_view,
    _home,
    _hubs,
    _peak_hour,
    _second,
    window,
)
from models.household.sessions import _sweep
from models.household.state import (
    DAY_MS,
    HOUR_MS,
    NEW_DEVICE_GRACE_MS,
    SESSION_TIMEOUT_MS,
    STATIONARY_TYPES,
    WINDOW_DAYS,
    HouseholdState,
)

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
    "apart_devices_28d",
    "apart_coactive_days_28d",
    "second_place_own_visits_28d",
    "apart_visits_28d",
)
_SECOND_PLACE_NAMES = tuple(n for n in FEATURE_NAMES if n.startswith("second_place_"))


def household_features(
    hs: HouseholdState,
    now_ms: int,
    *,
    max_streams: int,
    session_timeout_ms: int = SESSION_TIMEOUT_MS,
    census: PrefixCensus | None = None,
    places_seen: Window | None = None,
) -> dict[str, float]:
    """The household evidence at ``now_ms`` over the last 28 days (names in FEATURE_NAMES).

    ``places_seen``: ``places.window(hs, now_ms)``, when the caller computed it already.

    With a ``census``, a place reached only over popular networks (VPN exits,
    carrier NAT: see :class:`PrefixCensus`) is a *hub*: the household on the
    move, like travel. It is never the home (unless there is no other place) nor
    the second place, and no device lives there.

    >>> from models.household import new_household
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

    view, home_of_all = places_seen if places_seen is not None else window(hs, now_ms)
    hubs = _hubs(hs, view, census, now_ms)
    # a hub is nobody's home, even when most days are spent behind the VPN
    home = _home(hs, {p: v for p, v in view.items() if p not in hubs}, now_ms) if hubs else None
    if home is None:  # no hubs, or only hubs (then the busiest stands for home)
        home = home_of_all
    hubs = hubs - {home}
    per_device, residents = _device_view(hs, home, hubs, win)
    # the second place: where somebody lives, else where the most viewing happened
    second = _second(hs, view, home, hubs, residents)
    total_view = sum(v for v, _ in view.values())
    away_view = sum(v for p, (v, _) in view.items() if p != home and not hs.places[p].paid)

    sp: dict[str, float] = dict.fromkeys(_SECOND_PLACE_NAMES, 0.0)
    overlap_ms = 0
    at_home_devices: set[str] = set()
    # devices living at a paid extra member's place, or only seen at hubs
    paid_devices: set[str] = set()
    own_days: set[int] = set()  # days a device living at the second place was active there
    for dev_id, dev, days, at_home, main, where, lives_away in per_device:
        if at_home:
            at_home_devices.add(dev_id)
        if not at_home and where is not None and where.paid:
            paid_devices.add(dev_id)
        if not at_home and all(p in hubs for p in days):
            paid_devices.add(dev_id)  # only ever behind a VPN or carrier pool: on the move
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
            sp["second_place_own_visits_28d"] = float(_visits(own_days, home_days))
            if hp.lat is not None and hp.lon is not None and place.lat is not None:
                assert place.lon is not None  # lat and lon are set together
                sp["second_place_distance_km"] = haversine_km(hp.lat, hp.lon, place.lat, place.lon)
            h1, h2 = _peak_hour(hp), _peak_hour(place)
            if h1 is not None and h2 is not None:
                shift = min(abs(h1 - h2), 24 - abs(h1 - h2))

    paid = sum(1 for p in hs.places.values() if p.paid) + hs.unplaced_paid_members
    apart_devices, apart_days, apart_visits = _apart(hs, per_device, home, hubs, win, lo_day, paid)
    grace = (hs.first_ts or 0) + NEW_DEVICE_GRACE_MS
    feats: dict[str, float] = {
        "observed_days_28d": min(WINDOW_DAYS, (now_ms - hs.first_ts) / DAY_MS)
        if hs.first_ts is not None
        else 0.0,
        "places_28d": float(len(view)),
        "distinct_prefixes_28d": float(sum(1 for v in hs.prefixes.values() if v[0] >= lo_ms)),
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
        "paid_member_places": float(paid),
        "away_devices_failed_28d": float(
            sum(
                1
                for d, t in hs.failed_devices.items()
                if t >= lo_ms and d not in at_home_devices and d not in paid_devices
            )
        ),
        "verifications_failed": float(hs.verifications_failed),
        "verifications_verified": float(hs.verifications_verified),
        "apart_devices_28d": apart_devices,
        "apart_coactive_days_28d": apart_days,
        "apart_visits_28d": apart_visits,
    }
    return {name: float(feats[name]) for name in FEATURE_NAMES}


def _apart(
    hs: HouseholdState,
    per_device: list[DeviceView],
    home_place: int | None,
    hubs: AbstractSet[int],
    win: set[int],
    lo_day: int,
    paid: int,
) -> tuple[float, float, float]:
    """(devices, days active while home was, visits: ``_visits``) of the network group
    living apart from home.

    Devices are grouped by the networks they used (``evidence._link``). The home's
    group is the one with the most device-days at the home place (``home_place``),
    then the most in all; its *line* is a network of that group at the home place,
    seen on two days or more with one address (``_line``). Another group *lives
    apart* when it has a line of its own: a network of the same IP version as the
    home's line (a dual-stack home whose TV uses only IPv4 and whose phones only IPv6
    is one home), kept on two days or more and on at least half of the days the
    group was active, not at a hub (VPN exit, carrier NAT); and it is not phones
    alone (a phone on mobile data keeps a carrier's prefix for days), nor seen at two
    places with geo other than home (somebody moving about: a laptop at the office
    and at a cafe). Its devices never used a network of home's, whatever their geo
    says: a borrower a street away, or both geolocated at the city centre, is
    apart; a trip, a commute or a new lease joins home's group through the devices
    that cross, and a home behind carrier NAT has no line, so no group is apart
    from it. The most active apart groups beyond the ``paid`` extra members count not.
    """
    groups: dict[int, list[DeviceView]] = {}
    for view in per_device:
        if view[1].group >= 0:
            groups.setdefault(view[1].group, []).append(view)
    if len(groups) < 2:
        return 0.0, 0.0, 0.0

    def weight(g: int) -> tuple[int, int, int]:
        views = groups[g]
        at_home = sum(v[2].get(home_place, 0) for v in views) if home_place is not None else 0
        return at_home, sum(sum(v[2].values()) for v in views), -g

    home = max(groups, key=weight)
    home_versions: set[int] = set()
    lines: dict[int, list[tuple[int, int]]] = {}  # group -> (days seen, IP version) of its lines
    lo_ms = lo_day * DAY_MS
    for h, v in hs.prefixes.items():
        if len(v) < 4 or v[3] < 2 or v[0] < lo_ms or v[1] in hubs:
            continue
        version = _line(hs, h, v[1])
        if version < 0:
            continue
        if v[2] == home:
            if v[1] == home_place:  # the home's own line, not a holiday flat's
                home_versions.add(version)
        elif v[2] in groups:
            lines.setdefault(v[2], []).append((v[3], version))
    if not home_versions or not lines:
        return 0.0, 0.0, 0.0
    home_days = _days(groups[home], win)
    found: list[tuple[int, int, int]] = []  # (days active with home, devices, visits) per group
    for g, seen in lines.items():
        views = groups[g]
        if all(view[1].kind == "mobile" for view in views):
            continue
        away = {p for view in views for p in view[2] if p != home_place}
        if len(away) >= 2 and sum(1 for p in away if _has_geo(hs, p)) >= 2:
            continue
        days = _days(views, win)
        if any(2 * n >= len(days) and version in home_versions for n, version in seen):
            found.append((len(days & home_days), len(views), _visits(days, home_days)))
    found.sort(reverse=True)
    if len(found) <= paid:
        return 0.0, 0.0, 0.0
    together, devices, visits = found[paid]
    return float(devices), float(together), float(visits)


def _visits(away: AbstractSet[int], home: AbstractSet[int]) -> int:
    """The separate stays in the days ``away`` (a place's, a group's): runs of its days
    in the order of all days either was active, split by days only home was active. A
    trip is one stay however long (home is quiet while away); a household living
    elsewhere comes and goes while the home keeps watching in between.

    >>> _visits({3, 4, 5}, {1, 2, 3, 5, 6}), _visits({3, 10, 17}, {1, 5, 12, 20})
    (1, 3)
    >>> _visits({3, 10}, set()), _visits(set(), {1})
    (1, 0)
    """
    runs, inside = 0, False
    for day in sorted(away | home):
        if day in away:
            if not inside:
                runs += 1
            inside = True
        else:
            inside = False
    return runs


def _days(views: list[DeviceView], win: set[int]) -> set[int]:
    """The days in ``win`` any of these devices was active."""
    out: set[int] = set()
    for view in views:
        for p in view[2]:
            out |= view[1].place_days[p] & win
    return out


def _has_geo(hs: HouseholdState, pid: int) -> bool:
    place = hs.places.get(pid)
    return place is not None and place.lat is not None


def _line(hs: HouseholdState, h: str, pid: int) -> int:
    """The IP version of network ``h`` (4, 6, 0 if unknown) if it is a *line* at its
    place ``pid``: seen there with one address on two days or more (a home's address
    stays for days); else -1: carrier NAT hands out a new address per connection, and a
    /24 of its pool seen again is a chance, at another address. IPv6 and unknown
    addresses have no host number: seen on two days, they are a line."""
    place = hs.places.get(pid)
    seen = place.prefixes.get(h) if place is not None else None
    if seen is None or len(seen) < 7:
        return -1
    first, last, changed = seen[0] // DAY_MS, seen[1] // DAY_MS, seen[5]
    return seen[2] if last > (changed // DAY_MS if changed else first) else -1
