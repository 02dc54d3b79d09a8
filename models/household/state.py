"""Household state: places, devices, the whole account's household, and the caps.

Every tunable and bound of the household evidence lives here (times in ms).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
WINDOW_DAYS = 28
LATENESS_MS = HOUR_MS  # contract default allowed lateness
SESSION_TIMEOUT_MS = 4 * HOUR_MS  # contract default: a playback with no stop is over after 4 h
INHERIT_MS = 6 * HOUR_MS  # an event without ip/geo inherits its device's place this long
DEFAULT_SALT = b"churnwatch-household-v1"

PLACE_RADIUS_KM = 3.0
POOL_CHANGE_MS = DAY_MS  # a third address of one prefix this soon: a pool, not a home
NETWORK_RADIUS_KM = 50.0  # a known network with geo this far off is the same place (IP geo)
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
# days after which an unseen place, network, device or profile is forgotten (3 windows)
FORGET_DAYS = 84
MAX_FAILED_DEVICES = 16

POPULAR_ACCOUNTS = 5  # a network used away from home by this many accounts is no household
CENSUS_MAX_PREFIXES = 50_000  # prefixes one census tracks (11 MB with one account each)

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
    # hash -> (first ts, last ts, IP version 4 / 6 or 0 if unknown, last IPv4 host octet or
    # -1, the one before it, ts of the last change, pool flag 0/1); older states hold the
    # first 2 or 3 only
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
    # its network group: devices linked by a network any of them used (-1: none seen yet);
    # see ``models.household.evidence._link``
    group: int = -1


@dataclass(slots=True)
class HouseholdState:
    """Bounded household evidence of one account (see module docstring)."""

    first_ts: int | None = None
    max_ts: int = 0
    sealed_until: int | None = None  # day boundary (ms): days before it are sealed
    next_pid: int = 0
    places: dict[int, Place] = field(default_factory=dict)
    # hash -> (last ts, place id, network group, days seen); states saved before version
    # 11 hold (ts, place id) only (see ``evidence._link``)
    prefixes: dict[str, tuple[int, ...]] = field(default_factory=dict)
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


def _put_capped(d: dict[str, Any], key: str, value: Any, cap: int) -> None:
    """Insert into a dict, evicting the least recently inserted key beyond ``cap``."""
    d.pop(key, None)
    d[key] = value
    if len(d) > cap:
        del d[next(iter(d))]
