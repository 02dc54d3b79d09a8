"""Viewing sessions: start, stop, close, and the sweep that measures concurrency.

A closed playback credits its place's viewing per day and rhythm and is kept as an
interval until its day is sealed (``evidence._advance``).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from typing import Any

from models.household.state import (
    DAY_MS,
    HOUR_MS,
    MAX_INTERVALS,
    MAX_OPEN_SESSIONS,
    MAX_PENDING_STOPS,
    MAX_SESSION_MS,
    RHYTHM_HALF_LIFE_MS,
    HouseholdState,
    Interval,
    _put_capped,
)


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
        # the rhythm is kept in float32 precision (ample for an hour-of-day profile):
        # the changelog then stores 4 bytes per hour, not 8 (state version 10)
        decay = 0.5 ** ((start - place.hours_ts) / RHYTHM_HALF_LIFE_MS)
        if start >= place.hours_ts:
            place.hours = array("f", [h * decay for h in place.hours]).tolist()
            place.hours_ts = start
            decay = 1.0
        else:
            decay = 1.0 / decay
        hour = (start // HOUR_MS) % 24
        place.hours[hour] = array("f", [place.hours[hour] + viewed / HOUR_MS * decay])[0]
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
