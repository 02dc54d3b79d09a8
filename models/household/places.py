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


def _peak_hour(place: Place) -> float | None:
    w = sum(place.hours)
    if w < RHYTHM_MIN_HOURS:
        return None
    x = sum(h * c for h, c in zip(place.hours, _COS_HOUR, strict=True))
    y = sum(h * s for h, s in zip(place.hours, _SIN_HOUR, strict=True))
    return (math.atan2(y, x) * 12 / math.pi) % 24
