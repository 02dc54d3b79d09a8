"""Event-time alignment of several input partitions (a watermark merge).

Kafka does not align partitions or topics by time: a consumer catching up on a
backlog can read one topic days ahead of the other, and the account state would
then see the slower topic's events as hopelessly late. ``Reorderer`` holds
events and releases them in event-time order, up to the *frontier*: the lowest
"highest event time seen" over the sources (input partitions) that delivered
recently. A source silent for ``idle_ms`` of wall-clock time no longer holds
the others back (idle sources, as in Flink), unless the caller knows it is
*behind*: Kafka holds messages it has not delivered yet (its high watermark is
past the last offset delivered), for example because they wait in the
consumer's buffers behind a backlog of the other topic. Silence then means a
busy consumer, not a quiet source, and releasing past it would make its events
late. A source behind and silent for ``stall_ms`` stops holding the others back
all the same, and at most ``max_held`` events are held (beyond that the oldest
are released), so it can neither stall nor grow without bound.

Each event carries a token (the input message it came from); ``release``
returns the tokens whose events have all been released, so the caller can
acknowledge a message only when everything in it went downstream.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from models.contract import Event


@dataclass
class Reorderer:
    """Hold events until every active source has passed their event time.

    >>> r = Reorderer(idle_ms=1_000)
    >>> e = lambda i, ts: Event(i, "login", "a", ts, {"device_id": "d"})
    >>> r.add("sub", [e("s1", 50)], token="m1", now_ms=0)
    >>> [x.event_id for x in r.release(now_ms=0)[0]]  # "use" has not spoken yet
    ['s1']
    >>> r.add("use", [e("u1", 10), e("u2", 70)], token="m2", now_ms=0)
    >>> r.add("sub", [e("s2", 60)], token="m3", now_ms=0)
    >>> events, done = r.release(now_ms=0)  # frontier = min(60, 70) = 60
    >>> [x.event_id for x in events], done
    (['u1', 's2'], ['m3'])
    >>> events, done = r.release(now_ms=5_000)  # both idle: nothing holds u2 back
    >>> [x.event_id for x in events], done
    (['u2'], ['m2'])
    """

    idle_ms: int = 2_000
    stall_ms: int = 60_000
    max_held: int = 200_000
    _heap: list[tuple[int, int, Event, Hashable]] = field(default_factory=list)
    _seq: Any = field(default_factory=itertools.count)
    _sources: dict[Hashable, tuple[int, int]] = field(default_factory=dict)  # max ts, last seen
    _open: dict[Hashable, int] = field(default_factory=dict)  # token -> events still held
    _behind: set[Hashable] = field(default_factory=set)  # sources with undelivered messages

    @property
    def held(self) -> int:
        return len(self._heap)

    def add(
        self, source: Hashable, events: Sequence[Event], *, token: Hashable, now_ms: int
    ) -> None:
        """Hold ``events`` that ``source`` delivered in the message ``token``."""
        top, _ = self._sources.get(source, (-1, now_ms))
        for event in events:
            top = max(top, event.ts)
            heapq.heappush(self._heap, (event.ts, next(self._seq), event, token))
        self._sources[source] = (top, now_ms)
        self._open[token] = self._open.get(token, 0) + len(events)

    def expect(self, source: Hashable, now_ms: int) -> None:
        """A new source (partition assigned): it holds the others back until it delivers
        or goes idle, so a backlog read from it first is not overtaken at start-up."""
        self._sources.setdefault(source, (-1, now_ms))

    def silent(self, now_ms: int) -> list[Hashable]:
        """Sources that have not delivered for ``idle_ms`` (idle, unless they are behind)."""
        return [src for src, (_, seen) in self._sources.items() if now_ms - seen >= self.idle_ms]

    def mark_behind(self, source: Hashable, behind: bool) -> None:
        """Whether ``source`` is known to hold messages it has not delivered yet."""
        if behind:
            self._behind.add(source)
        else:
            self._behind.discard(source)

    def frontier(self, now_ms: int) -> int | None:
        """Event time up to which every active source has delivered (None: no active source).

        >>> r = Reorderer(idle_ms=1_000, stall_ms=10_000)
        >>> r.add("sub", [Event("s", "login", "a", 5, {})], token="m1", now_ms=0)
        >>> r.add("use", [Event("u", "login", "a", 90, {})], token="m2", now_ms=3_000)
        >>> r.frontier(3_000)  # "sub" is silent: idle
        90
        >>> r.mark_behind("sub", True)  # ... but Kafka has more of it: wait for it
        >>> r.frontier(3_000)
        5
        >>> r.add("use", [Event("v", "login", "a", 95, {})], token="m3", now_ms=10_000)
        >>> r.frontier(10_000)  # ... until it has been silent for stall_ms
        95
        """
        active = [
            top
            for src, (top, seen) in self._sources.items()
            if now_ms - seen < (self.stall_ms if src in self._behind else self.idle_ms)
        ]
        return min(active) if active else None

    def forget(self, source: Hashable) -> None:
        """A source went away (partition revoked): it no longer holds anything back."""
        self._sources.pop(source, None)
        self._behind.discard(source)

    def release(
        self, now_ms: int, keep: Callable[[Event, Hashable], bool] | None = None
    ) -> tuple[list[Event], list[Hashable]]:
        """Events due (in event-time order) and the tokens now fully released.

        ``keep(event, token)``, if given, sees every event released, in order; one it
        returns False for is left out (the caller has dealt with it), and its token
        is released all the same.
        """
        frontier = self.frontier(now_ms)
        out: list[Event] = []
        done: list[Hashable] = []
        heap = self._heap
        while heap and (frontier is None or heap[0][0] <= frontier or len(heap) > self.max_held):
            _, _, event, token = heapq.heappop(heap)
            if keep is None or keep(event, token):
                out.append(event)
            self._open[token] -= 1
            if self._open[token] == 0:
                del self._open[token]
                done.append(token)
        return out, done

    def settle(self, token: Hashable) -> bool:
        """True when ``token`` has nothing held (e.g. a message with no valid event)."""
        if self._open.get(token, 0) == 0:
            self._open.pop(token, None)
            return True
        return False
