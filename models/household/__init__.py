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

The package, one idea a module: ``state`` (the dataclasses and caps), ``geo``
(prefix hashing, distances), ``evidence`` (``apply_household``: an event folded
in), ``sessions`` (viewing sessions and the concurrency sweep), ``places`` (home,
second place, anchors, hubs in a window), ``features`` (``household_features``)
and ``census`` (``PrefixCensus``, across accounts). Import from here.
"""

from __future__ import annotations

from models.household.census import PrefixCensus
from models.household.evidence import apply_household
from models.household.features import FEATURE_NAMES, household_features
from models.household.geo import haversine_km, prefix_hash
from models.household.state import (
    CENSUS_MAX_PREFIXES,
    DAY_MS,
    DEFAULT_SALT,
    HOUR_MS,
    IMPOSSIBLE_KMH,
    IMPOSSIBLE_MIN_KM,
    INHERIT_MS,
    LATENESS_MS,
    MAX_DEVICES,
    MAX_FAILED_DEVICES,
    MAX_INTERVALS,
    MAX_OPEN_SESSIONS,
    MAX_PENDING_STOPS,
    MAX_PLACES,
    MAX_PLACES_PER_DEVICE,
    MAX_PREFIXES,
    MAX_PREFIXES_PER_PLACE,
    MAX_PROFILES,
    MAX_SESSION_MS,
    MAX_TRAVEL_FLAGS,
    NEW_DEVICE_GRACE_MS,
    PLACE_RADIUS_KM,
    POPULAR_ACCOUNTS,
    RHYTHM_HALF_LIFE_MS,
    RHYTHM_MIN_HOURS,
    SESSION_TIMEOUT_MS,
    STATIONARY_TYPES,
    WINDOW_DAYS,
    Device,
    HouseholdState,
    Interval,
    Place,
    new_household,
)

__all__ = [
    "PrefixCensus",
    "apply_household",
    "FEATURE_NAMES",
    "household_features",
    "haversine_km",
    "prefix_hash",
    "DAY_MS",
    "HOUR_MS",
    "WINDOW_DAYS",
    "LATENESS_MS",
    "SESSION_TIMEOUT_MS",
    "INHERIT_MS",
    "DEFAULT_SALT",
    "PLACE_RADIUS_KM",
    "IMPOSSIBLE_KMH",
    "IMPOSSIBLE_MIN_KM",
    "NEW_DEVICE_GRACE_MS",
    "STATIONARY_TYPES",
    "RHYTHM_HALF_LIFE_MS",
    "RHYTHM_MIN_HOURS",
    "MAX_PLACES",
    "MAX_DEVICES",
    "MAX_PLACES_PER_DEVICE",
    "MAX_PREFIXES",
    "MAX_PREFIXES_PER_PLACE",
    "MAX_PROFILES",
    "MAX_OPEN_SESSIONS",
    "MAX_PENDING_STOPS",
    "MAX_INTERVALS",
    "MAX_SESSION_MS",
    "MAX_TRAVEL_FLAGS",
    "MAX_FAILED_DEVICES",
    "POPULAR_ACCOUNTS",
    "CENSUS_MAX_PREFIXES",
    "Interval",
    "Place",
    "Device",
    "HouseholdState",
    "new_household",
]
