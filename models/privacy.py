"""Keyed pseudonymisation of the identifiers in events, applied once at ingest.

The ingest agent replaces, in every valid event and before it reaches the internal
account-events topic, each personal identifier by a keyed token (HMAC-SHA256 with
``CHURNWATCH_PSEUDONYM_KEY``, cut to 64 bits, 16 hex digits), so no account state,
changelog, internal topic, output or log line downstream holds the raw value:

- ``device_id``, ``profile_id`` and ``member_id`` become tokens of themselves;
- ``ip`` is dropped and replaced by what the household evidence derives from it
  (``models.household.geo``): ``net``, the token of its network prefix (IPv4 /24,
  IPv6 /48; an address that does not parse: of the whole string), and ``net_v``, the
  IP version (4, 6, or 0 for one that does not parse), and for IPv4 ``net_host``, a
  keyed number of the whole address (whether a line's address changes: pools).

Tokens are equal exactly when the raw values are (up to a 2**-64 chance), and the
features only ever compare identifiers for equality, so features and scores are the
same with and without pseudonymisation (``tests/unit/test_privacy.py`` checks it on
simulated events). Each kind of identifier is hashed in its own domain, so a device
and a profile that share a name get different tokens. Empty strings stay empty
(the features treat an empty identifier as absent).

Coordinates are coarsened (:func:`coarsen`, before the identifiers): ``geo``'s ``lat``
and ``lon`` become the centre of their cell of a grid of ``GEO_GRID_KM`` (default 1 km;
``CHURNWATCH_GEO_GRID_KM``), so no exact position is stored or forwarded either. The
household clusters places within 3 km and flags travel over 500 km, so a 1 km grid (a
fix moves at most 0.71 km) keeps its places and features (docs/security.md,
"Coordinates").

Without the key a token cannot be computed or reversed; with it, anyone can test a
guess (an IPv4 /24 is one of 2**24), so the key is a secret like the others. A new key
gives new tokens: state keyed by the old ones stops matching and ages out of the
windows (docs/security.md, "Key rotation").

>>> p = Pseudonymiser(b"k" * 32)
>>> from models.contract import Event
>>> e = Event("e1", "login", "a-1", 0, {"device_id": "tv-1", "ip": "203.0.113.7"})
>>> q = p.event(e)
>>> sorted(q.fields), q.fields["net_v"], len(q.fields["device_id"])
(['device_id', 'net', 'net_host', 'net_v'], 4, 16)
>>> r = p.event(Event("e2", "login", "a-1", 0, {"device_id": "tv-1", "ip": "203.0.113.200"}))
>>> (r.fields["device_id"], r.fields["net"]) == (q.fields["device_id"], q.fields["net"])
True
>>> Pseudonymiser(b"another key, 16+").event(e).fields == q.fields
False
>>> p.event(Event("e3", "price_changed", "a-1", 0, {"price": 9.5})).fields
{'price': 9.5}
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Mapping
from typing import Any

from models.contract import Event
from models.household.geo import PREFIX_BITS, parse_ip

TOKEN_BYTES = 8  # 64 bits, as the household's prefix hashes: 16 hex digits
# identifier fields tokenised as they are (each in its own domain)
ID_FIELDS = ("device_id", "profile_id", "member_id")
CACHE_SIZE = 1 << 16  # identifiers repeat from event to event: most tokens are a lookup
GEO_GRID_KM = 1.0  # default side of the grid cells coordinates are coarsened to
KM_PER_DEGREE = 111.195  # of latitude, on the haversine's sphere (radius 6371 km)


def coarsen_geo(geo: Mapping[str, Any], grid_km: float) -> dict[str, Any]:
    """``geo`` with ``lat``/``lon`` moved to the centre of their cell of a grid of
    ``grid_km`` x ``grid_km`` (rows of ``grid_km`` of latitude, each cut into columns of
    ``grid_km`` along its centre line, counted from -180), 5 decimals; other keys kept.

    Every point of a cell gives the same centre (at most ``grid_km / sqrt 2`` away), the
    same on every worker, and a centre gives itself (coarsening twice changes nothing).

    >>> g = coarsen_geo({"lat": 48.853217, "lon": 2.349871, "city": "Paris"}, 1.0)
    >>> g
    {'lat': 48.85561, 'lon': 2.35626, 'city': 'Paris'}
    >>> coarsen_geo({"lat": 48.8512, "lon": 2.3496}, 1.0) == {"lat": 48.85561, "lon": 2.35626}
    True
    >>> coarsen_geo(g, 1.0) == g, coarsen_geo({"lat": 90, "lon": 180}, 1.0)
    (True, {'lat': 89.99955, 'lon': 180.0})
    """
    step = grid_km / KM_PER_DEGREE
    row = math.floor(geo["lat"] / step)
    lat = min(90.0, max(-90.0, (row + 0.5) * step))
    lon_step = min(360.0, step / max(math.cos(math.radians(lat)), 1e-9))
    lon = min(180.0, -180.0 + (math.floor((geo["lon"] + 180.0) / lon_step) + 0.5) * lon_step)
    return {**geo, "lat": round(lat, 5), "lon": round(lon, 5)}


def coarsen(event: Event, grid_km: float = GEO_GRID_KM) -> Event:
    """The event with its ``geo`` coarsened (:func:`coarsen_geo`); the event itself if it
    has no ``geo`` or ``grid_km`` is 0 (coordinates kept as sent).

    >>> e = Event("e1", "login", "a-1", 0, {"device_id": "tv-1", "geo": {"lat": 1.0, "lon": 2.0}})
    >>> coarsen(e).fields["geo"], coarsen(e, 0) is e
    ({'lat': 1.00274, 'lon': 2.00098}, True)
    """
    geo = event.fields.get("geo")
    if not grid_km or geo is None:
        return event
    fields = {**event.fields, "geo": coarsen_geo(geo, grid_km)}
    return Event(event.event_id, event.type, event.account_id, event.ts, fields)


class Pseudonymiser:
    """Replaces the identifiers of events by keyed tokens (see the module docstring)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the pseudonym key must have at least 16 bytes")
        # HMAC-SHA256 (RFC 2104) with its two padded-key states hashed once: a copy of
        # each per token is half the cost of ``hmac.digest`` (tests: equal to it)
        block = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        # per instance, so a key's tokens never leak into another's cache
        self.token = functools.lru_cache(maxsize=CACHE_SIZE)(self._token)
        self.network = functools.lru_cache(maxsize=CACHE_SIZE)(self._network)

    def _token(self, domain: str, value: str) -> str:
        """The keyed token of ``value`` in ``domain`` (``device_id``, ``net/24``...)."""
        inner = self._inner.copy()
        inner.update(domain.encode() + b"\0" + value.encode("utf-8", "surrogatepass"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:TOKEN_BYTES].hex()

    def _network(self, ip: str) -> tuple[str, int, int]:
        """(token of the IP's network prefix, IP version 4 or 6 (0 if it does not parse),
        host number): the household tells a home line's lease (one address for days)
        from a pool (VPN exit, carrier NAT: a new address per connection) by whether the
        address within the prefix changes, so an IPv4 address also gets a keyed number
        of the whole address (28 bits; -1 for IPv6 and what does not parse).

        >>> p = Pseudonymiser(b"k" * 32)
        >>> p.network("203.0.113.7")[:2] == (p.token("net/24", "cb0071"), 4)
        True
        >>> a, b = p.network("203.0.113.7"), p.network("203.0.113.8")
        >>> a[0] == b[0], a[2] != b[2], a[2] >= 0
        (True, True, True)
        """
        parsed = parse_ip(ip.strip())
        if parsed is None:
            return self._token("ip", ip), 0, -1
        packed, version = parsed
        bits = PREFIX_BITS[version]
        host = int(self._token("host", packed.hex())[:7], 16) if version == 4 else -1
        return self._token(f"net/{bits}", packed[: bits // 8].hex()), version, host

    def event(self, event: Event) -> Event:
        """The event with its identifiers replaced by tokens (the event itself if it has none)."""
        f = event.fields
        if not any(name in f for name in ("device_id", "profile_id", "member_id", "ip")):
            return event
        out: dict[str, Any] = dict(f)
        for name in ID_FIELDS:
            value = out.get(name)
            if value:  # strings by the contract; "" stays (the features read it as absent)
                out[name] = self.token(name, value)
        ip = out.pop("ip", None)
        if ip:
            out["net"], out["net_v"], host = self.network(ip)
            if host >= 0:
                out["net_host"] = host
        return Event(event.event_id, event.type, event.account_id, event.ts, out)
