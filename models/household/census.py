"""Networks many accounts use away from home (VPN exits, carrier NAT), across accounts."""

from __future__ import annotations

from dataclasses import dataclass, field

from models.household.places import Window, window
from models.household.state import (
    CENSUS_MAX_PREFIXES,
    DAY_MS,
    POPULAR_ACCOUNTS,
    WINDOW_DAYS,
    HouseholdState,
)


@dataclass(slots=True)
class PrefixCensus:
    """Cross-account census: which accounts used each network prefix *away from home*.

    A prefix that many accounts use away from their own home (in the last
    ``window_ms`` of event time) is a VPN exit, a carrier's NAT pool, a hotel or
    a datacenter -- never somebody's home. A residential prefix shared by many
    subscribers' homes does not count: it is home to each of them. Bounded: at
    most ``2 * popular_accounts`` accounts per prefix (the latest) and
    ``max_prefixes`` prefixes (the least used are evicted first). A census sees
    only the accounts fed to it (one worker's or one partition's): it needs
    ``popular_accounts`` of them per shared network to recognise it.

    >>> from models.contract import Event
    >>> from models.household import DAY_MS, apply_household, new_household, prefix_hash
    >>> hs = new_household()
    >>> for i, ip in enumerate(["198.51.100.1", "203.0.113.9"]):  # home, then a VPN exit
    ...     e = Event(f"e{i}", "login", "a", i * DAY_MS, {"device_id": "d", "ip": ip})
    ...     hs = apply_household(hs, e, max_streams=1)
    >>> census = PrefixCensus(popular_accounts=2)
    >>> census.observe("a", hs); census.observe("b", hs)
    >>> vpn, home = prefix_hash("203.0.113.9"), prefix_hash("198.51.100.1")
    >>> census.accounts(vpn, DAY_MS), census.popular(vpn, DAY_MS), census.popular(home, DAY_MS)
    (2, True, False)
    """

    popular_accounts: int = POPULAR_ACCOUNTS
    max_prefixes: int = CENSUS_MAX_PREFIXES
    window_ms: int = WINDOW_DAYS * DAY_MS
    users: dict[str, dict[str, int]] = field(default_factory=dict)  # prefix -> account -> ts
    swept_day: int = -1  # the event-time day of the last pass that dropped stale entries

    def __post_init__(self) -> None:
        if self.popular_accounts < 2 or self.max_prefixes < 1 or self.window_ms <= 0:
            raise ValueError("popular_accounts must be >= 2, max_prefixes and window_ms > 0")

    def observe(
        self,
        account_id: str,
        hs: HouseholdState,
        places_seen: Window | None = None,
        now_ms: int = 0,
    ) -> None:
        """Record the prefixes ``hs`` used away from its home (cheap when nothing changed).

        The home is the one of the household's window at its newest event: from
        ``places_seen`` (``places.window(hs, now_ms)``, when the caller has it) if
        ``now_ms`` is on that event's day (a window and its home are by day), else computed."""
        if not hs.prefixes:
            return
        if places_seen is None or now_ms // DAY_MS != hs.max_ts // DAY_MS:
            places_seen = window(hs, hs.max_ts)
        home = places_seen[1]
        cap = 2 * self.popular_accounts
        for h, seen in hs.prefixes.items():
            ts, pid = seen[0], seen[1]
            if pid == home:
                continue
            users = self.users.setdefault(h, {})
            if users.get(account_id, -1) >= ts:
                continue
            users[account_id] = ts
            if len(users) > cap:
                del users[min(users, key=users.__getitem__)]
        if hs.max_ts // DAY_MS > self.swept_day:
            self.sweep(hs.max_ts)
        if len(self.users) > self.max_prefixes:
            keep = sorted(
                self.users.items(), key=lambda kv: (len(kv[1]), max(kv[1].values(), default=0))
            )
            self.users = dict(keep[len(keep) - self.max_prefixes * 3 // 4 :])

    def sweep(self, now_ms: int) -> None:
        """Drop the uses older than two windows (at most once per day of event time):
        they count for no account (the second window is slack for partitions that
        lag the one at ``now_ms``), and a census that kept them would grow with every
        network an account ever used, up to ``max_prefixes``.

        >>> c = PrefixCensus(users={"p": {"a": 0, "b": 40 * DAY_MS}, "q": {"a": 0}})
        >>> c.sweep(57 * DAY_MS); c.users, c.swept_day
        ({'p': {'b': 3456000000}}, 57)
        """
        self.swept_day = now_ms // DAY_MS
        lo = now_ms - 2 * self.window_ms
        for prefix, users in list(self.users.items()):
            stale = [a for a, ts in users.items() if ts <= lo]
            for account_id in stale:
                del users[account_id]
            if not users:
                del self.users[prefix]

    def forget(self, account_id: str) -> None:
        """Drop an erased account from every prefix it used."""
        for users in self.users.values():
            users.pop(account_id, None)

    def accounts(self, prefix: str, now_ms: int) -> int:
        """Distinct accounts that used ``prefix`` away from home in the window up to ``now_ms``."""
        users = self.users.get(prefix)
        lo = now_ms - self.window_ms
        return sum(1 for ts in users.values() if ts > lo) if users else 0

    def popular(self, prefix: str, now_ms: int) -> bool:
        """Whether ``prefix`` is a shared network (VPN exit, carrier NAT), not a home."""
        return self.accounts(prefix, now_ms) >= self.popular_accounts
