"""Network prefixes (salted hashes, never the IP) and distances."""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import math
import socket

from models.household.state import DEFAULT_SALT

PREFIX_BITS = {4: 24, 6: 48}  # the network prefix of each IP version: a home line's


def parse_ip(text: str) -> tuple[bytes, int] | None:
    """(packed address, IP version), or None if ``text`` is no IP address.

    >>> parse_ip("203.0.113.7"), parse_ip("::1")[1], parse_ip("fe80::1%eth0")[1], parse_ip("x")
    ((b'\\xcb\\x00q\\x07', 4), 6, 6, None)
    """
    try:  # inet_pton: 10x faster than ipaddress, and stricter
        return socket.inet_pton(socket.AF_INET, text), 4
    except OSError:
        pass
    try:
        return socket.inet_pton(socket.AF_INET6, text), 6
    except OSError:
        pass
    try:  # what inet_pton refuses and ipaddress takes (an IPv6 scope: fe80::1%eth0)
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    return addr.packed, addr.version


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
    parsed = parse_ip(ip.strip())
    if parsed is None:
        key = ip.encode("utf-8", "replace")  # unparsable: hashed whole, still never stored
        version = 0
    else:  # the network address: the prefix, the host bits zero
        packed, version = parsed
        key = packed[: PREFIX_BITS[version] // 8].ljust(len(packed), b"\0")
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
