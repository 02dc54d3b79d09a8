"""The household's structure in a window: where it views, its home, its second place, hubs."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from models.household.state import (
    DAY_MS,
    RHYTHM_MIN_HOURS,
    STATIONARY_TYPES,
    WINDOW_DAYS,
    Device,
    HouseholdState,
    Place,
)

if TYPE_CHECKING:
    from models.household.census import PrefixCensus


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
            not hs.places[p].paid,
            p in stationary,
            p in fixed,
            view[p][1],
            view[p][0],
            -p,
        ),
        default=None,
    )


Window = tuple[dict[int, tuple[int, int]], int | None]


def window(hs: HouseholdState, now_ms: int) -> Window:
    """The places active in the window up to ``now_ms`` (``_window_view``) and the home
    among all of them (``_home``, hubs not set apart): what the census and the features
    both start from, computed once per score."""
    view = _window_view(hs, now_ms)
    return view, _home(hs, view, now_ms)


def _second(
    hs: HouseholdState,
    view: Mapping[int, tuple[int, int]],
    home: int | None,
    hubs: frozenset[int] = frozenset(),
    residents: Mapping[int, int] | None = None,
) -> int | None:
    """The place other than home that no paid extra member covers (not a hub) where
    devices live (``residents``: place -> devices living there), else the most viewed."""
    rest = [p for p in view if p != home and not hs.places[p].paid and p not in hubs]
    lives = residents or {}
    return max(rest, key=lambda p: (p in lives, view[p], -p), default=None)


DeviceView = tuple[str, Device, dict[int, int], int, int, Place | None, bool]


def _device_view(
    hs: HouseholdState, home: int | None, hubs: frozenset[int], win: set[int]
) -> tuple[list[DeviceView], dict[int, int]]:
    """Per device active in the window ``win`` (days): (id, device, place -> active days,
    days at home, main place, that place, lives away); and per place the devices
    living there.

    A device *lives away* when it was never at home and mostly at one unpaid place
    -- not on the move: a device seen at two or more places other than home is
    somebody moving about (a commute along carrier cells, a trip, VPN exits); a TV
    stays put. (A place without geo that shares a network with one of the device's
    places with geo is that place, seen before its geo: ``_places_away``.)
    """
    out: list[DeviceView] = []
    residents: dict[int, int] = {}
    for dev_id, dev in hs.devices.items():
        days = {p: n for p, ds in dev.place_days.items() if (n := len(ds & win))}
        if not days:
            continue
        at_home = days.get(home, 0) if home is not None else 0
        main = max(days, key=days.__getitem__)
        where = hs.places.get(main)
        lives_away = (
            not at_home
            and main != home
            and _places_away(hs, days, home) < 2
            and where is not None
            and not where.paid
            and main not in hubs
            and 2 * days[main] >= sum(days.values())
        )
        if lives_away:
            residents[main] = residents.get(main, 0) + 1
        out.append((dev_id, dev, days, at_home, main, where, lives_away))
    return out, residents


def _places_away(hs: HouseholdState, days: Mapping[int, int], home: int | None) -> int:
    """How many places other than ``home`` a device was seen at (``days``: place ->
    active days), not counting a place without geo that is one of the others seen
    another way: one that shares a network with a place of the device's that has geo
    (that place, its network first seen without geo, so it founded a place of its own)
    or, when the device has a place with geo away, one seen on a single day (a new
    address of that place, a lease that began between two fixes)."""
    away = {p: n for p, n in days.items() if p != home}
    if len(away) < 2:
        return len(away)
    places = [(hs.places.get(p), n) for p, n in away.items()]
    with_geo = [p for p, _ in places if p is not None and p.lat is not None]
    return sum(
        1
        for p, n in places
        if p is None
        or p.lat is not None
        or not (
            (bool(with_geo) and n == 1)
            or any(h in q.prefixes for q in with_geo for h in p.prefixes)
        )
    )


def _hubs(
    hs: HouseholdState,
    view: Mapping[int, tuple[int, int]],
    census: PrefixCensus | None,
    now_ms: int,
) -> frozenset[int]:
    """Places whose networks in the window are all shared: address pools (a third
    address within a day: a VPN exit, carrier NAT) or popular in ``census``."""
    lo_ms = (now_ms // DAY_MS - WINDOW_DAYS + 1) * DAY_MS
    out = []
    for pid in view:
        seen = [(h, v) for h, v in hs.places[pid].prefixes.items() if v[1] >= lo_ms]
        if seen and all(
            (len(v) > 6 and v[6]) or (census is not None and census.popular(h, now_ms))
            for h, v in seen
        ):
            out.append(pid)
    return frozenset(out)


_COS_HOUR = [math.cos(i * math.pi / 12) for i in range(24)]
_SIN_HOUR = [math.sin(i * math.pi / 12) for i in range(24)]


def _peak_hour(place: Place) -> float | None:
    w = sum(place.hours)
    if w < RHYTHM_MIN_HOURS:
        return None
    x = sum(h * c for h, c in zip(place.hours, _COS_HOUR, strict=True))
    y = sum(h * s for h, s in zip(place.hours, _SIN_HOUR, strict=True))
    return (math.atan2(y, x) * 12 / math.pi) % 24
