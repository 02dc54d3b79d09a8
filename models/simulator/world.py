"""Static world of the simulator: places, plans, networks, rhythms, actions.

Everything here is either a constant table or derived from the run's seed by
:class:`World`, so that two runs with the same seed see the same world.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from models.household import haversine_km as km_between  # noqa: F401 (re-exported)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

# name, country, lat, lon, UTC offset in hours (no daylight saving), weight
CITIES: tuple[tuple[str, str, float, float, float, float], ...] = (
    ("New York", "US", 40.71, -74.01, -5, 8),
    ("Los Angeles", "US", 34.05, -118.24, -8, 6),
    ("Chicago", "US", 41.88, -87.63, -6, 4),
    ("Houston", "US", 29.76, -95.37, -6, 3),
    ("Toronto", "CA", 43.65, -79.38, -5, 3),
    ("Vancouver", "CA", 49.28, -123.12, -8, 1.5),
    ("Mexico City", "MX", 19.43, -99.13, -6, 4),
    ("Sao Paulo", "BR", -23.55, -46.63, -3, 5),
    ("Buenos Aires", "AR", -34.60, -58.38, -3, 2),
    ("London", "GB", 51.51, -0.13, 0, 5),
    ("Manchester", "GB", 53.48, -2.24, 0, 1.5),
    ("Dublin", "IE", 53.35, -6.26, 0, 1),
    ("Paris", "FR", 48.86, 2.35, 1, 4),
    ("Lyon", "FR", 45.76, 4.84, 1, 1),
    ("Berlin", "DE", 52.52, 13.40, 1, 3),
    ("Munich", "DE", 48.14, 11.58, 1, 2),
    ("Madrid", "ES", 40.42, -3.70, 1, 2.5),
    ("Barcelona", "ES", 41.39, 2.17, 1, 2),
    ("Rome", "IT", 41.90, 12.50, 1, 2),
    ("Milan", "IT", 45.46, 9.19, 1, 2),
    ("Amsterdam", "NL", 52.37, 4.90, 1, 1.5),
    ("Stockholm", "SE", 59.33, 18.07, 1, 1),
    ("Warsaw", "PL", 52.23, 21.01, 1, 1.5),
    ("Istanbul", "TR", 41.01, 28.98, 3, 2.5),
    ("Cairo", "EG", 30.04, 31.24, 2, 1.5),
    ("Lagos", "NG", 6.52, 3.38, 1, 1.5),
    ("Johannesburg", "ZA", -26.20, 28.05, 2, 1),
    ("Nairobi", "KE", -1.29, 36.82, 3, 1),
    ("Dubai", "AE", 25.20, 55.27, 4, 1),
    ("Mumbai", "IN", 19.08, 72.88, 5.5, 4),
    ("Delhi", "IN", 28.61, 77.21, 5.5, 4),
    ("Singapore", "SG", 1.35, 103.82, 8, 1),
    ("Jakarta", "ID", -6.21, 106.85, 7, 2.5),
    ("Manila", "PH", 14.60, 120.98, 8, 2),
    ("Seoul", "KR", 37.57, 126.98, 9, 2.5),
    ("Tokyo", "JP", 35.68, 139.69, 9, 4),
    ("Osaka", "JP", 34.69, 135.50, 9, 1.5),
    ("Sydney", "AU", -33.87, 151.21, 10, 2),
    ("Melbourne", "AU", -37.81, 144.96, 10, 1.5),
    ("Auckland", "NZ", -36.85, 174.76, 12, 0.5),
)
CITY_INDEX = {c[0]: i for i, c in enumerate(CITIES)}
CITY_CUM = list(accumulate(c[5] for c in CITIES))

# country -> (currency, local price units per USD of list price, decimals)
CURRENCIES: dict[str, tuple[str, float, int]] = {
    "US": ("USD", 1, 2),
    "CA": ("CAD", 1.35, 2),
    "MX": ("MXN", 12, 0),
    "BR": ("BRL", 3, 2),
    "AR": ("ARS", 900, 0),
    "GB": ("GBP", 0.85, 2),
    "IE": ("EUR", 0.95, 2),
    "FR": ("EUR", 0.95, 2),
    "DE": ("EUR", 0.95, 2),
    "ES": ("EUR", 0.95, 2),
    "IT": ("EUR", 0.95, 2),
    "NL": ("EUR", 0.95, 2),
    "SE": ("SEK", 10, 0),
    "PL": ("PLN", 3.5, 2),
    "TR": ("TRY", 20, 0),
    "EG": ("EGP", 25, 0),
    "NG": ("NGN", 900, 0),
    "ZA": ("ZAR", 10, 0),
    "KE": ("KES", 80, 0),
    "AE": ("AED", 3.3, 2),
    "IN": ("INR", 40, 0),
    "SG": ("SGD", 1.2, 2),
    "ID": ("IDR", 8000, 0),
    "PH": ("PHP", 30, 0),
    "KR": ("KRW", 1100, 0),
    "JP": ("JPY", 110, 0),
    "AU": ("AUD", 1.5, 2),
    "NZ": ("NZD", 1.6, 2),
}
COUNTRIES = tuple(sorted(CURRENCIES))

# name, list price in USD per month, max_streams (ordered cheapest first)
PLANS: tuple[tuple[str, float, int], ...] = (
    ("basic", 7.99, 1),
    ("standard", 12.99, 2),
    ("premium", 17.99, 4),
)

CHANNELS = ("web", "app_store", "play_store", "tv_app", "partner_bundle")
CHANNEL_CUM = list(accumulate((5, 2, 2, 1.5, 0.5)))

# Local-hour viewing rhythms (relative weights for hours 0..23).
_RHYTHMS = {
    "evening": (2, 1, 0.5, 0.2, 0.1, 0.1, 0.3, 1, 1, 0.8, 0.8, 1, 1.5, 1.5, 1, 1, 1.5, 2, 4, 7, 9,
                9, 7, 4),
    "kids": (0.2, 0.1, 0, 0, 0, 0, 0.5, 2, 1.5, 0.5, 0.5, 0.5, 1, 1, 2, 4, 6, 7, 7, 5, 3, 1, 0.5,
             0.3),
    "night_owl": (6, 5, 3, 1.5, 0.5, 0.2, 0.1, 0.2, 0.3, 0.5, 0.5, 0.8, 1, 1, 1, 1, 1.5, 2, 3, 4, 5,
                  6, 7, 7),
}  # fmt: skip
RHYTHMS = {name: list(accumulate(w)) for name, w in _RHYTHMS.items()}
RHYTHM_NAMES = tuple(RHYTHMS)

# Open-ended activity actions with relative frequencies; engaged viewers lean
# to the first group, fatigued ones to browsing and searching.
ENGAGED_ACTIONS = ("like", "add_to_list", "rating", "download", "share_link", "review", "rewatch")
BROWSE_ACTIONS = ("browse", "search", "trailer_view", "skip_intro", "subtitle_change")
OTHER_ACTIONS = (
    "audio_change", "remove_from_list", "profile_switch", "notification_open", "cast",
    "message", "parental_control", "download_delete", "settings_open", "help_open",
)  # fmt: skip

DEVICE_TYPES = ("tv", "mobile", "tablet", "web", "console", "other")
PERSONAL_DEVICES = ("mobile", "mobile", "mobile", "tablet", "web", "web", "console", "other")

# First octets of made-up public IPv4 space (avoids private, loopback, multicast).
_V4_FIRST = tuple(o for o in range(11, 224) if o not in (100, 127, 169, 172, 192, 198, 203))


def pick_cum(rng: random.Random, cum: Sequence[float]) -> int:
    """Index drawn with cumulative weights ``cum``.

    >>> pick_cum(random.Random(1), [0.0, 1.0, 1.0])
    1
    """
    x = rng.random() * cum[-1]
    for i, c in enumerate(cum):
        if x < c:
            return i
    return len(cum) - 1


def poisson(rng: random.Random, lam: float) -> int:
    """Poisson draw (Knuth), fine for the small means used here.

    >>> poisson(random.Random(3), 0.0)
    0
    """
    if lam <= 0:
        return 0
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def v4_prefix(rng: random.Random) -> str:
    """A random public-looking /24 prefix ``a.b.c``.

    >>> v4_prefix(random.Random(0)).count(".")
    2
    """
    return f"{rng.choice(_V4_FIRST)}.{rng.randrange(256)}.{rng.randrange(256)}"


def v6_prefix(rng: random.Random, first: str = "2a0") -> str:
    """A random /64 prefix of four groups, e.g. ``2a01:4f8:a1b2:33``.

    >>> v6_prefix(random.Random(0)).count(":")
    3
    """
    return f"{first}{rng.randrange(16):x}:{rng.randrange(65536):x}:{rng.randrange(65536):x}:" + (
        f"{rng.randrange(65536):x}"
    )


def v6_host(rng: random.Random, prefix: str) -> str:
    """An address in a /64 prefix with a random interface id."""
    r = rng.getrandbits(64)
    return f"{prefix}:{r >> 48:x}:{(r >> 32) & 0xFFFF:x}:{(r >> 16) & 0xFFFF:x}:{r & 0xFFFF:x}"


def offset_km(
    rng: random.Random, lat: float, lon: float, lo: float, hi: float
) -> tuple[float, float]:
    """A point between ``lo`` and ``hi`` km away from (lat, lon) in a random direction."""
    d, bearing = rng.uniform(lo, hi), rng.uniform(0, 2 * math.pi)
    dlat = d * math.cos(bearing) / 111.0
    dlon = d * math.sin(bearing) / (111.0 * max(0.2, math.cos(math.radians(lat))))
    return lat + dlat, lon + dlon


@dataclass(slots=True)
class Place:
    """Where a household (or hotel, or VPN exit) is: geo, time zone, network."""

    city: str
    country: str
    lat: float
    lon: float
    tz_hours: float
    v4: str  # /24 prefix "a.b.c"
    v6: str | None  # /64 prefix or None
    geo: dict[str, Any]
    host: int = 0  # the household's current public IPv4 host octet

    def ip(self, rng: random.Random, v6_share: float) -> str:
        if self.v6 is not None and rng.random() < v6_share:
            return v6_host(rng, self.v6)
        return f"{self.v4}.{self.host}"


def make_place(
    rng: random.Random, city_idx: int, lo_km: float, hi_km: float, ipv6_rate: float
) -> Place:
    """A place ``lo_km``..``hi_km`` from the centre of ``CITIES[city_idx]`` with its own network."""
    name, country, clat, clon, tz, _ = CITIES[city_idx]
    lat, lon = offset_km(rng, clat, clon, lo_km, hi_km)
    geo = {"lat": round(lat, 3), "lon": round(lon, 3), "country": country, "city": name}
    v6 = v6_prefix(rng) if rng.random() < ipv6_rate else None
    return Place(name, country, lat, lon, tz, v4_prefix(rng), v6, geo, rng.randrange(2, 255))


class World:
    """Seed-derived shared facts: carrier and VPN networks, the price increase."""

    def __init__(self, seed: int, price_increase_share: float, vpn_exits: int = 8) -> None:
        rng = random.Random(f"world:{seed}")
        # Two mobile carriers per country, each a few /16 CGNAT pools and a v6 /32.
        self.carriers: dict[str, list[tuple[list[str], str]]] = {
            c: [
                ([f"{rng.choice(_V4_FIRST)}.{rng.randrange(256)}" for _ in range(3)],
                 f"26{rng.randrange(256):02x}:{rng.randrange(65536):x}")
                for _ in range(2)
            ]
            for c in COUNTRIES
        }  # fmt: skip
        # A handful of VPN exits, shared by every VPN user of the run.
        exits = rng.sample(range(len(CITIES)), vpn_exits)
        self.vpn_exits = [make_place(rng, i, 0, 15, 0.0) for i in exits]
        self.price_countries = frozenset(
            c for c in COUNTRIES if rng.random() < price_increase_share
        )

    @staticmethod
    def city_geo(city: str) -> dict[str, Any]:
        """The centre of a city, as IP geolocation reports it."""
        name, country, lat, lon, _, _ = CITIES[CITY_INDEX[city]]
        return {"lat": lat, "lon": lon, "country": country, "city": name}

    def carrier_ip(self, rng: random.Random, country: str, carrier: int) -> str:
        """A fresh mobile-carrier address (CGNAT v4 or v6) of ``country``'s carrier."""
        pools, v6 = self.carriers[country][carrier]
        if rng.random() < 0.4:
            return v6_host(rng, f"{v6}:{rng.randrange(65536):x}:{rng.randrange(65536):x}")
        return f"{rng.choice(pools)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
