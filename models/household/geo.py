"""Network prefixes (salted hashes, never the IP) and distances."""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import math

from models.household.state import DEFAULT_SALT


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
