"""Which event times churnwatch accepts (../shared/CONTRACT.md, "Bad input").

An event whose ``ts`` lies before a floor, more than a skew ahead of the wall
clock, or more than the skew ahead of the partition's clock is bad input
(dead-letter kinds ``past_ts`` and ``future_ts``). One such event (a valid
``login`` dated 9999-12-31) used to drag the partition's event-time clock
millennia ahead: every loop over days between two times ran for millions of
iterations, and every later event would have been "late".

The floor and the wall clock are checked as each message is parsed
(``TimePolicy.checker``). The partition's clock is checked where the input
partitions are merged in event time (``MergedClock``, after ingest's
``Reorderer``): checked per input partition as it is read, the rule threw away
valid events whenever Kafka delivered one partition ahead of the others (a
backlog's partitions are read unevenly, and an unkeyed producer's batches leave
days-long gaps in each partition; measured through a real broker: 12,000, and
judging only the end of each log still 385, of 45,789 simulated events).
Whatever the time, the engine's work per event is bounded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
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
    >>> p.reject(now + DAY_MS, wall_ms=now) is None  # the edge is accepted
    True
    >>> p.reject(now + DAY_MS + 1, wall_ms=now)
    ('future_ts', "'ts' 2026-01-02T00:00:00Z is more than 1 d ahead of the wall clock")
    >>> p.reject(FLOOR_2000 - 1, wall_ms=now)
    ('past_ts', "'ts' 1999-12-31T23:59:59Z is before the accepted floor 2000-01-01T00:00:00Z")
    """

    max_ahead_ms: int = DAY_MS
    floor_ms: int = FLOOR_2000

    def __post_init__(self) -> None:
        if self.max_ahead_ms <= 0:
            raise ValueError("the accepted skew must be > 0")
        if self.floor_ms < 0:
            raise ValueError("the floor must be >= 0 (1970-01-01)")

    def reject(self, ts: int, *, wall_ms: int) -> tuple[str, str] | None:
        """``(kind, message)`` if ``ts`` is outside the range, else None."""
        if ts < self.floor_ms:
            return "past_ts", f"'ts' {iso(ts)} is before the accepted floor {iso(self.floor_ms)}"
        if ts > wall_ms + self.max_ahead_ms:
            skew = _span(self.max_ahead_ms)
            return "future_ts", f"'ts' {iso(ts)} is more than {skew} ahead of the wall clock"
        return None

    def checker(self, wall: int | None = None) -> TimeCheck:
        """A ``check_ts`` for ``models.contract.parse_message``, at the wall time of one
        message (now, unless given).

        >>> TimePolicy().checker(wall=FLOOR_2000)(FLOOR_2000 + DAY_MS + 1)[0]
        'future_ts'
        """
        return TimeCheck(self, wall_ms() if wall is None else wall)


@dataclass(slots=True)  # one per input message: not frozen, as Event (models.contract)
class TimeCheck:
    policy: TimePolicy
    wall_ms: int

    def __call__(self, ts: int) -> tuple[str, str] | None:
        if self.policy.floor_ms <= ts <= self.wall_ms + self.policy.max_ahead_ms:
            return None  # the common case, without a call
        return self.policy.reject(ts, wall_ms=self.wall_ms)


@dataclass
class MergedClock:
    """The clock of the input partitions merged in event time (ingest's ``Reorderer``):
    an event released more than the skew after it is ahead of everything else this
    worker has read (contract: ahead of the partition's clock). The clock moves on with
    wall time while nothing is released, and has no time before its first event.

    >>> c, t = MergedClock(TimePolicy()), 1_767_225_600_000
    >>> c.admit(t, wall_ms=0), c.admit(t + DAY_MS, wall_ms=0)
    (None, None)
    >>> c.admit(t + 2 * DAY_MS + 1, wall_ms=0)
    ('future_ts', "'ts' 2026-01-03T00:00:00Z is more than 1 d ahead of the partition's \
clock (2026-01-02T00:00:00Z)")
    >>> c.admit(t + 2 * DAY_MS + 1, wall_ms=1)  # a millisecond of quiet later
    >>> c.admit(t + 9 * DAY_MS, wall_ms=1, vouched=True)  # another partition got there too

    ``vouched``: another input partition still delivering has read past ``ts`` already,
    so the event is not ahead of everything else, whatever the gap since the last one
    released (a worker reading a few partitions of a sparse backlog sees gaps of days).
    """

    policy: TimePolicy
    clock: tuple[int, int] | None = None  # (highest event time released, wall time then)

    def restart(self) -> None:
        """Forget the clock: the input partitions it merged changed (a rebalance). A
        partition just taken over can be days ahead of those given away, as its former
        owner read it; judged by the old clock, its valid events were dead-lettered as
        ``future_ts`` after a kill's rebalances (issue #13, fault harness seed 13). Until
        the next event the clock has no time, as at start-up.

        >>> c, t = MergedClock(TimePolicy()), 1_767_225_600_000
        >>> c.admit(t, wall_ms=0), c.admit(t + 5 * DAY_MS, wall_ms=0)[0]
        (None, 'future_ts')
        >>> c.restart(); c.admit(t + 5 * DAY_MS, wall_ms=0), c.admit(t + 6 * DAY_MS, wall_ms=0)
        (None, None)
        """
        self.clock = None

    def admit(self, ts: int, *, wall_ms: int, vouched: bool = False) -> tuple[str, str] | None:
        if self.clock is not None and not vouched:
            top, at = self.clock
            if ts > top + max(0, wall_ms - at) + self.policy.max_ahead_ms:
                skew = _span(self.policy.max_ahead_ms)
                why = f"'ts' {iso(ts)} is more than {skew} ahead of the partition's clock"
                return "future_ts", f"{why} ({iso(top)})"
            if ts <= top:
                return None
        if self.clock is not None and ts <= self.clock[0]:
            return None
        self.clock = (ts, wall_ms)
        return None


def _span(ms: int) -> str:
    """>>> _span(DAY_MS), _span(90 * 60_000), _span(1500)
    ('1 d', '1.5 h', '1.5 s')
    """
    for unit, size in (("d", DAY_MS), ("h", 3_600_000), ("min", 60_000)):
        if ms >= size:
            return f"{ms / size:g} {unit}"
    return f"{ms / 1000:g} s"
