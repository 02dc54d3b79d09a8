"""Which event times churnwatch accepts (../shared/CONTRACT.md, "Bad input").

An event whose ``ts`` lies before a floor, more than a skew ahead of the wall
clock, or more than a skew ahead of its input partition's clock is bad input
(dead-letter kinds ``past_ts`` and ``future_ts``). One such event would
otherwise drag the partition's event-time clock years ahead: every other event
would then be "late", and every loop over days between two times (decision
points, observation points, sealed days) would run for millennia.

The partition's clock is the highest event time it delivered, and it moves on
with wall time while the partition is quiet, so a deployment that sees nothing
for a weekend still accepts Monday's events. A partition's events are checked
against the higher of its own clock and the highest clock of all input
partitions (a sparse subscription partition is judged by the busy usage
stream, not by its own last event). A partition's first event after a start
or a rebalance has no clock to be judged by: only the floor and the wall clock
apply to it, so a backlog that starts days after another is not thrown away.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime

DAY_MS = 86_400_000
FLOOR_2000 = 946_684_800_000  # 2000-01-01T00:00:00Z


def iso(ms: int) -> str:
    """Epoch ms as RFC 3339 (UTC) for messages.

    >>> iso(FLOOR_2000)
    '2000-01-01T00:00:00Z'
    """
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        return f"{ms} ms"


def wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class TimePolicy:
    """The accepted range of event times.

    >>> p = TimePolicy(max_ahead_ms=DAY_MS, floor_ms=FLOOR_2000)
    >>> now = 1_767_225_600_000  # 2026-01-01
    >>> p.reject(now, clock_ms=None, wall_ms=now) is None
    True
    >>> p.reject(now + DAY_MS, clock_ms=now, wall_ms=now) is None  # the edge is accepted
    True
    >>> p.reject(now + DAY_MS + 1, clock_ms=None, wall_ms=now)[0]
    'future_ts'
    >>> p.reject(FLOOR_2000 - 1, clock_ms=None, wall_ms=now)
    ('past_ts', "'ts' 1999-12-31T23:59:59Z is before the accepted floor 2000-01-01T00:00:00Z")
    """

    max_ahead_ms: int = DAY_MS
    floor_ms: int = FLOOR_2000

    def __post_init__(self) -> None:
        if self.max_ahead_ms <= 0:
            raise ValueError("the accepted skew must be > 0")
        if self.floor_ms < 0:
            raise ValueError("the floor must be >= 0 (1970-01-01)")

    def reject(self, ts: int, *, clock_ms: int | None, wall_ms: int) -> tuple[str, str] | None:
        """``(kind, message)`` if ``ts`` is outside the range, else None."""
        if ts < self.floor_ms:
            return "past_ts", f"'ts' {iso(ts)} is before the accepted floor {iso(self.floor_ms)}"
        skew = _span(self.max_ahead_ms)
        if ts > wall_ms + self.max_ahead_ms:
            return "future_ts", f"'ts' {iso(ts)} is more than {skew} ahead of the wall clock"
        if clock_ms is not None and ts > clock_ms + self.max_ahead_ms:
            return (
                "future_ts",
                f"'ts' {iso(ts)} is more than {skew} ahead of its partition's clock "
                f"({iso(clock_ms)})",
            )
        return None


def _span(ms: int) -> str:
    """>>> _span(DAY_MS), _span(90 * 60_000), _span(1500)
    ('1 d', '1.5 h', '1.5 s')
    """
    for unit, size in (("d", DAY_MS), ("h", 3_600_000), ("min", 60_000)):
        if ms >= size:
            return f"{ms / size:g} {unit}"
    return f"{ms / 1000:g} s"


@dataclass
class InputClocks:
    """The event-time clocks of input partitions, for :meth:`admit`.

    >>> clocks, t = InputClocks(TimePolicy(), wall=lambda: 2 * 10**12), 1_767_225_600_000
    >>> clocks.admit("p0", t), clocks.admit("p0", t + DAY_MS), clocks.admit("p0", t + 3 * DAY_MS)[0]
    (None, None, 'future_ts')
    >>> clocks.admit("p1", t + 5 * DAY_MS) is None  # a first event: floor and wall clock only
    True
    >>> clocks.admit("p0", t + 3 * DAY_MS) is None  # p0 is judged by the highest clock too
    True
    """

    policy: TimePolicy
    wall: Callable[[], int] = wall_ms
    # source -> (highest event time accepted, wall time when it last moved)
    _clocks: dict[Hashable, tuple[int, int]] = field(default_factory=dict)
    _top: tuple[int, int] | None = None

    def admit(self, source: Hashable, ts: int) -> tuple[str, str] | None:
        """Check ``ts`` from ``source``; an accepted time moves the clocks on."""
        now = self.wall()
        own = self._clocks.get(source)
        clock = None
        if own is not None:
            clock = _moved(own, now)
            if self._top is not None:
                clock = max(clock, _moved(self._top, now))
        why = self.policy.reject(ts, clock_ms=clock, wall_ms=now)
        if why is None:
            if own is None or ts > own[0]:
                self._clocks[source] = (ts, now)
            if self._top is None or ts > self._top[0]:
                self._top = (ts, now)
        return why

    def forget(self, source: Hashable) -> None:
        """A partition went away (revoked): its next event is a first event again."""
        self._clocks.pop(source, None)


def _moved(clock: tuple[int, int], now: int) -> int:
    """A clock moves on with wall time while its source is quiet."""
    ts, at = clock
    return ts + max(0, now - at)
