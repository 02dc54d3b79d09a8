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

A *live* source holds the others back only up to the wall clock: caught up, with
its newest event less than ``live_ms`` behind the wall clock. Its next events will
carry the time they happen, so it has passed every event time up to now (when the
caller last looked), however long it has been silent: waiting for it would only
delay the others (up to ``idle_ms`` on a sparse topic). An event of it that comes
later than that is late by about its producer's delay, less than ``live_ms``, which
the account state absorbs (its allowed lateness is larger). It stays active in the
reports, with that watermark, so downstream it is no idle claim to confirm. A
backlog, however fast it is pumped, carries old event times and is never live.

Events of equal event time are released in ``event_id`` order, whichever partition or
message brought them: arrival order across partitions depends on timing, and the
account state (a score at a subscription event, say) must not.

Each event carries a token (the input message it came from); ``release``
returns the tokens whose events have all been released, so the caller can
acknowledge a message only when everything in it went downstream.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

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
    quiet_ms: int | None = None  # silence of a caught-up source (None: ``idle_ms``)
    live_ms: int | None = None  # a caught-up source this close to the wall clock is live
    _heap: list[tuple[int, str, int, Event, Hashable]] = field(default_factory=list)
    _seq: Any = field(default_factory=itertools.count)
    _sources: dict[Hashable, tuple[int, int]] = field(default_factory=dict)  # max ts, last seen
    _open: dict[Hashable, int] = field(default_factory=dict)  # token -> events still held
    _behind: set[Hashable] = field(default_factory=set)  # sources with undelivered messages
    _caught_up: set[Hashable] = field(default_factory=set)  # ... and those known to have none
    _live: dict[Hashable, int] = field(default_factory=dict)  # ... live: the wall clock then

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
            heapq.heappush(self._heap, (event.ts, event.event_id, next(self._seq), event, token))
        self._sources[source] = (top, now_ms)
        self._open[token] = self._open.get(token, 0) + len(events)

    def expect(self, source: Hashable, now_ms: int) -> None:
        """A new source (partition assigned): it holds the others back until it delivers
        or goes idle, so a backlog read from it first is not overtaken at start-up."""
        self._sources.setdefault(source, (-1, now_ms))

    def _limit(self, source: Hashable) -> int:
        """How long a silent source holds the others back."""
        if source in self._live:
            return 1 << 62  # never idle while live: its watermark is the wall clock
        if source in self._behind:
            return self.stall_ms
        if source in self._caught_up and self.quiet_ms is not None:
            return min(self.quiet_ms, self.idle_ms)
        return self.idle_ms

    def silent(self, now_ms: int) -> list[Hashable]:
        """Sources that have not delivered for ``quiet_ms`` (or ``idle_ms``; every source
        with ``live_ms``): the caller says which are behind (:meth:`mark_behind`) just
        before a release."""
        if self.live_ms is not None:
            least = 0  # a live source is judged at every release, silent or not
        else:
            least = min(self.idle_ms, self.idle_ms if self.quiet_ms is None else self.quiet_ms)
        return [src for src, (_, seen) in self._sources.items() if now_ms - seen >= least]

    def mark_behind(self, source: Hashable, behind: bool, wall_ms: int | None = None) -> None:
        """Whether ``source`` holds messages it has not delivered yet (True), or is known
        to be caught up (False: it stops holding the others back after ``quiet_ms``; if it
        is live, its newest event less than ``live_ms`` before ``wall_ms``, it has passed
        ``wall_ms`` and stays active until looked at again).

        >>> r = Reorderer(idle_ms=3_000, quiet_ms=300)
        >>> r.add("a", [Event("x", "login", "a", 5, {})], token="m1", now_ms=0)
        >>> r.add("b", [Event("y", "login", "a", 9, {})], token="m2", now_ms=0)
        >>> r.frontier(500)  # silent for 0.5 s, nothing known: both still hold back
        5
        >>> r.mark_behind("a", False)  # "a" is caught up: the end of a burst
        >>> r.frontier(500)
        9

        A live source has passed the wall clock, even while silent; a caught-up backlog
        (old event times) holds at its newest event, and so does a live one with more
        in Kafka:

        >>> day = 86_400_000
        >>> r = Reorderer(idle_ms=3_000, live_ms=60_000)
        >>> r.add("a", [Event("x", "login", "a", 100 * day, {})], token="m1", now_ms=0)
        >>> r.add("b", [Event("y", "login", "a", 100 * day + 50, {})], token="m2", now_ms=0)
        >>> r.mark_behind("a", False, wall_ms=100 * day + 1_000)
        >>> r.frontier(0)  # "a" is live: it has passed 1 s after "b"
        8640000050
        >>> r.mark_behind("a", False, wall_ms=101 * day)  # a day old: a backlog, caught up
        >>> r.frontier(0)
        8640000000
        >>> r.mark_behind("a", True, wall_ms=100 * day + 1_000)  # live, but more to read
        >>> r.frontier(0)
        8640000000
        """
        self._live.pop(source, None)
        if behind:
            self._behind.add(source)
            self._caught_up.discard(source)
            return
        self._behind.discard(source)
        self._caught_up.add(source)
        top, _ = self._sources.get(source, (-1, 0))
        if self.live_ms is not None and wall_ms is not None and top >= wall_ms - self.live_ms:
            self._live[source] = wall_ms

    def _tops(self, now_ms: int) -> list[int]:
        """The event time each active source has passed (a live one: the wall clock too)."""
        live = self._live
        return [
            max(top, live[src]) if src in live else top
            for src, (top, seen) in self._sources.items()
            if now_ms - seen < self._limit(src)
        ]

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
        active = self._tops(now_ms)
        return min(active) if active else None

    def vouched(self, now_ms: int) -> int | None:
        """The frontier, if at least two sources hold it back: an event up to it has been
        passed by another source than its own (None: no such guarantee).

        >>> r = Reorderer(idle_ms=1_000)
        >>> r.add("a", [Event("x", "login", "a", 5, {})], token="m1", now_ms=0)
        >>> r.vouched(0), r.add("b", [Event("y", "login", "a", 9, {})], token="m2", now_ms=0)
        (None, None)
        >>> r.vouched(0)
        5
        """
        active = self._tops(now_ms)
        return min(active) if len(active) >= 2 else None

    def forget(self, source: Hashable) -> None:
        """A source went away (partition revoked): it no longer holds anything back."""
        self._sources.pop(source, None)
        self._behind.discard(source)
        self._caught_up.discard(source)
        self._live.pop(source, None)

    def release(
        self, now_ms: int, keep: Callable[[Event, Hashable], bool] | None = None
    ) -> tuple[list[Event], list[Hashable]]:
        """Events due (in event-time order) and the tokens now fully released.

        ``keep(event, token)``, if given, sees every event released, in order; one it
        returns False for is left out (the caller has dealt with it), and its token
        is released all the same.
        """
        done: list[Hashable] = []
        due = _pop_due(self._heap, self._open, self.frontier(now_ms), self.max_held, done)
        out = [event for _, event, token in due if keep is None or keep(event, token)]
        return out, done

    def give_back(self) -> list[Hashable]:
        """Drop every event held; the tokens they came in (at a rebalance the agent
        gives those messages back to Kafka, to be read again, see
        ``streams.faust_compat.give_back``; the sources go with their partitions).

        >>> r = Reorderer()
        >>> r.add("a", [Event("x", "login", "a", 5, {})], token="m1", now_ms=0)
        >>> r.give_back(), r.held, r.release(0)
        (['m1'], 0, ([], []))
        """
        tokens = list(self._open)
        self._heap.clear()
        self._open.clear()
        return tokens

    def settle(self, token: Hashable) -> bool:
        """True when ``token`` has nothing held (e.g. a message with no valid event)."""
        if self._open.get(token, 0) == 0:
            self._open.pop(token, None)
            return True
        return False


def _pop_due(
    heap: list[tuple[int, str, int, Event, Hashable]],
    open_tokens: dict[Hashable, int],
    frontier: int | None,
    max_held: int,
    done: list[Hashable],
    everything: bool = False,
) -> Iterator[tuple[int, Event, Hashable]]:
    """Pop the held events that are due, in event-time order: those at or before
    ``frontier`` (all of them when it is None or ``everything``), and the oldest beyond
    ``max_held``. A token whose events have all been popped goes to ``done``."""
    while heap and (
        everything or frontier is None or heap[0][0] <= frontier or len(heap) > max_held
    ):
        ts, _, _, event, token = heapq.heappop(heap)
        open_tokens[token] -= 1
        if open_tokens[token] == 0:
            del open_tokens[token]
            done.append(token)
        yield ts, event, token


def behind(highwater: int | None, next_offset: int | None) -> bool:
    """Whether a partition holds messages not yet delivered to the agent.

    ``highwater`` is the consumer's last known end of the log (None before its
    first fetch); ``next_offset`` the offset after the last message delivered, or
    the committed offset the stream resumes from (None: a new group, which starts
    at the beginning of the log).

    >>> behind(120, 120), behind(120, 80), behind(None, 80), behind(0, None), behind(5, None)
    (False, True, True, False, True)
    """
    if highwater is None:
        return True
    return highwater > (next_offset or 0)


def report(reorderer: Reorderer, now_ms: int) -> tuple[int | None, list[Hashable], list[Hashable]]:
    """What an ingest tells downstream about its sources: (frontier, active, idle).

    ``active`` are the sources that hold the frontier back (delivering, or silent but
    behind, up to ``stall_ms``); ``idle`` the other sources it reads. The frontier (None
    when every source is idle) is the event time up to which it has released events.

    >>> r = Reorderer(idle_ms=1_000)
    >>> r.expect("a", 0); r.add("b", [Event("e", "login", "x", 7, {})], token="m", now_ms=0)
    >>> report(r, 0)
    (-1, ['a', 'b'], [])
    >>> report(r, 5_000)
    (None, [], ['a', 'b'])
    """
    active: list[Hashable] = []
    idle: list[Hashable] = []
    for src, (_, seen) in reorderer._sources.items():
        (active if now_ms - seen < reorderer._limit(src) else idle).append(src)
    return reorderer.frontier(now_ms), active, idle


@dataclass
class WatermarkMerge:
    """One internal partition written by several upstream ingests (one per worker),
    released in event-time order.

    Each upstream reads some of the *sources* (input partitions) and reports, with
    every message it writes, how far it has released them: a watermark for the sources
    that are delivering, ``None`` for those that are idle (caught up and quiet). Each
    upstream's messages are in event-time order, but two upstreams interleave at their
    own pace, so events are held here until every source has passed them: the
    *frontier* is the lowest watermark over the sources that are not idle. A source's
    watermark never goes back (a new owner after a rebalance re-reads from its commit,
    behind the old owner's report: what it re-reads up to there was sent already). A
    source not reported for ``stall_ms`` (its worker died, or is starved) stops holding
    the others back, as does one reported idle. Sources are known before they report
    (:meth:`expect`), so a merge rebuilt from the log does not overtake a slower
    upstream whose first report comes a few messages later.

    An idle report is a claim about the past: the source had nothing more when its
    reader said so. Input written since then (a backlog arriving) is read by every
    reader at its own pace, and one ingest's events must not go past another's idle
    sources on the strength of an old claim (issue #13: a starved worker reported its
    partitions idle 2 s before a backlog arrived, the other worker's ingest sent days of
    it meanwhile, and the first one's events came days late: 533 events lost). So an
    idle report names the offset its reader had read (``read``), and events that
    arrived after the claim wait at the idle source's last watermark until the claim is
    confirmed: by a later report from the same reader, or by the end of the source's
    log (:meth:`confirm`: nothing written past the offset read). A source with more
    written is awake again: it holds the others back until its reader reports it (or
    it stalls). Events that the claim's own reader sent are covered by the report they
    came with, so a single upstream never waits for a confirmation.

    With a single upstream every message's events are behind its own report and pass
    straight through, without touching the heap: the co-partitioned one-worker path
    costs a header read per message.

    >>> m = WatermarkMerge(stall_ms=10_000)
    >>> m.expect(["p0", "p1"], now_ms=0)
    >>> e = lambda i, ts: Event(i, "login", "a", ts, {"device_id": "d"})
    >>> m.push([e("a1", 10), e("a2", 30)], token="A", marks={"p0": 30}, now_ms=0)
    >>> m.release(0)  # p1 has not reported: hold
    ([], [])
    >>> m.push([e("b1", 20)], token="B", marks={"p1": 25}, now_ms=1)
    >>> events, done = m.release(1)  # frontier min(30, 25): a2 waits for p1
    >>> [x.event_id for x in events], done
    (['a1', 'b1'], ['B'])
    >>> m.push([], token="C", marks={"p1": None}, now_ms=2)  # p1 is idle now
    >>> events, done = m.release(2)
    >>> [x.event_id for x in events], done
    (['a2'], ['C', 'A'])
    """

    stall_ms: int = 60_000
    max_held: int = 100_000
    _heap: list[tuple[int, str, int, Event, Hashable]] = field(default_factory=list)
    _next: int = 0  # the sequence number of the next event pushed
    _exempt: int = 0  # ... and (counting down) of those that wait on no idle claim
    _marks: dict[Hashable, int] = field(default_factory=dict)  # source -> watermark
    _seen: dict[Hashable, int] = field(default_factory=dict)  # source -> last report
    _idle: set[Hashable] = field(default_factory=set)
    # idle sources reported with the offset their reader had read: that offset, and the
    # sequence number below which the events pushed are covered by the claim
    _read: dict[Hashable, int] = field(default_factory=dict)
    _covered: dict[Hashable, int] = field(default_factory=dict)
    _open: dict[Hashable, int] = field(default_factory=dict)  # token -> events held
    _ready: list[Event] = field(default_factory=list)  # passed straight through
    _done: list[Hashable] = field(default_factory=list)
    forced: int = 0  # events released past the frontier (full, or ``everything``)
    waiting: bool = False  # the last release stopped at an idle claim: :meth:`claims`
    woken: int = 0  # idle sources found with more written than their reader had read

    @property
    def held(self) -> int:
        return len(self._heap)

    def expect(self, sources: Iterable[Hashable], now_ms: int) -> None:
        """Sources some upstream will report (every input partition)."""
        for src in sources:
            self._marks.setdefault(src, -1)
            self._seen.setdefault(src, now_ms)

    def frontier(self, now_ms: int) -> int | None:
        """The lowest watermark of the sources that hold events back (None: none does)."""
        marks = [
            mark
            for src, mark in self._marks.items()
            if src not in self._idle and now_ms - self._seen[src] < self.stall_ms
        ]
        return min(marks) if marks else None

    def push(
        self,
        events: Sequence[Event],
        *,
        token: Hashable,
        marks: Mapping[Hashable, int | None],
        now_ms: int,
        read: Mapping[Hashable, int] | None = None,
        keyed: bool = False,
    ) -> None:
        """An upstream message: its ``events`` and its report (source -> watermark or
        None for idle; ``read``: the offset read of an idle source). ``keyed``: its
        events came in input messages keyed by their account, so no other reader holds
        events of the same accounts and they wait on no idle claim (numbered below 0).
        Nothing is released before :meth:`release`."""
        if keyed:
            first = self._exempt = self._exempt - len(events)
        else:
            first = self._next
            self._next += len(events)
        for src, mark in marks.items():
            self._seen[src] = now_ms
            if mark is None:
                self._idle.add(src)
                if read is not None and src in read:  # covers what came before it
                    self._read[src], self._covered[src] = read[src], self._next
                else:  # an older ingest: its claim stands as made
                    self._read.pop(src, None)
                    self._covered.pop(src, None)
            elif mark >= 0:  # -1: its reader has read nothing of it yet, so it sends
                self._idle.discard(src)  # nothing: no news (a new owner of an idle source)
                self._read.pop(src, None)
                self._covered.pop(src, None)
                if mark > self._marks.get(src, -1):
                    self._marks[src] = mark
        if not self._heap and events:
            frontier = self.frontier(now_ms)
            top = max(e.ts for e in events)
            if (frontier is None or top <= frontier) and not _waits(first, top, self._claims()):
                self._ready.extend(events)
                self._done.append(token)
                return
        for i, event in enumerate(events):
            heapq.heappush(self._heap, (event.ts, event.event_id, first + i, event, token))
        if events:
            self._open[token] = self._open.get(token, 0) + len(events)
        else:
            self._done.append(token)

    def claims(self) -> list[Hashable]:
        """The idle sources whose claims may not cover every event pushed (confirm them,
        :meth:`confirm`)."""
        return [src for src, covered in self._covered.items() if covered < self._next]

    def _claims(self) -> list[tuple[int, int]]:
        """(covered below, watermark) of each of :meth:`claims`."""
        return [(self._covered[src], self._marks.get(src, -1)) for src in self.claims()]

    def confirm(self, ends: Mapping[Hashable, int | None], asked: int, now_ms: int) -> None:
        """The ends of the claimed sources' logs, asked for when :attr:`_next` was
        ``asked`` (read it before asking). A source with more written than its reader
        had read is awake: it holds the others back at its watermark until reported (or
        for ``stall_ms``). One without (or not answered: ``None``, after the caller gave
        up asking) covers every event pushed before the question.

        >>> m = WatermarkMerge()
        >>> m.expect(["a", "b"], now_ms=0)
        >>> e = lambda i, ts: Event(i, "login", "x", ts, {})
        >>> m.push([e("a0", 5)], token="A0", marks={"a": 5}, now_ms=0)
        >>> m.push([], token="B", marks={"b": None}, now_ms=0, read={"b": 7})
        >>> m.push([e("a1", 90)], token="A1", marks={"a": 100}, now_ms=1)
        >>> [x.event_id for x in m.release(1)[0]], m.waiting, m.claims()
        (['a0'], True, ['b'])
        >>> m.confirm({"b": 9}, asked=m.ask(), now_ms=2)  # 2 messages more: awake
        >>> m.release(2)[0], m.frontier(2)
        ([], -1)
        >>> m.push([e("b1", 40)], token="B1", marks={"b": 95}, now_ms=3)
        >>> [x.event_id for x in m.release(3)[0]]
        ['b1', 'a1']
        """
        for src in list(self._covered):
            if src not in ends:
                continue
            end = ends[src]
            if end is not None and end > self._read[src]:
                self._idle.discard(src)
                self._seen[src] = now_ms
                del self._read[src], self._covered[src]
                self.woken += 1
            elif asked > self._covered[src]:
                self._covered[src] = asked

    def ask(self) -> int:
        """The point a confirmation asked for now covers (see :meth:`confirm`)."""
        return self._next

    def give_back(self) -> list[Hashable]:
        """Drop every event not released yet; the tokens they came in (see
        :meth:`Reorderer.give_back`)."""
        tokens = [*self._open, *self._done]
        self._heap.clear()
        self._open.clear()
        self._ready.clear()
        self._done.clear()
        return tokens

    def release(self, now_ms: int, everything: bool = False) -> tuple[list[Event], list[Hashable]]:
        """Events due, in event-time order after what passed straight through, and the
        tokens whose events have all been released (``everything``: the frontier no
        longer matters, e.g. before a rebalance or a stop)."""
        out, done = self._ready, self._done
        self._ready, self._done = [], []
        frontier = self.frontier(now_ms)
        claims = self._claims()
        heap, opened = self._heap, self._open
        self.waiting = False
        while heap:
            ts, _, seq, event, token = heap[0]
            early = (frontier is not None and ts > frontier) or _waits(seq, ts, claims)
            if early and not everything and len(heap) <= self.max_held:
                self.waiting = frontier is None or ts <= frontier
                break
            heapq.heappop(heap)
            self.forced += early
            opened[token] -= 1
            if opened[token] == 0:
                del opened[token]
                done.append(token)
            out.append(event)
        return out, done


def _waits(seq: int, ts: int, claims: list[tuple[int, int]]) -> bool:
    """Whether the event pushed as ``seq`` at event time ``ts`` waits for an idle claim
    (``WatermarkMerge._claims``) that does not cover it to be confirmed."""
    for covered, mark in claims:
        if seq >= covered and ts > mark:
            return True
    return False


MARKS_HEADER = "churnwatch-marks"  # Kafka header of the internal account-events messages


def encode_marks(
    frontier: int | None,
    active: Iterable[str],
    idle: Iterable[str],
    read: Mapping[str, int] | None = None,
    keyed: bool = False,
) -> bytes:
    """An ingest's report on its sources, as the header value of what it writes
    (``read``: the next offset of each idle source; ``keyed``: every event of the
    message came keyed by its account; see ``WatermarkMerge``).

    >>> encode_marks(42, ["0:1"], ["1:0"], {"1:0": 7}, keyed=True)
    b'{"w":42,"a":["0:1"],"i":["1:0"],"o":{"1:0":7},"k":1}'
    """
    doc: dict[str, Any] = {"w": frontier, "a": list(active), "i": list(idle)}
    if read:
        doc["o"] = dict(read)
    if keyed:
        doc["k"] = 1
    return orjson.dumps(doc)


def chunks(
    events: Sequence[Event],
    size: int,
    frontier: int | None,
    active: list[str],
    idle: list[str],
    read: Mapping[str, int] | None = None,
    keyed: bool = False,
) -> Iterator[tuple[Sequence[Event], bytes]]:
    """One release of an ingest for one account-events partition (events in event-time
    order), as messages of at most ``size`` events, each with the report it may carry.

    The last carries the ingest's report (``frontier``). An earlier one must not: the
    merge reads it first, and with another ingest's report it would release everything
    up to the frontier, so the events of the later messages of the same release would
    come behind the account's clock, late by up to the span of the release (days in a
    backlog: issue #13, two workers on unkeyed input lost events this way whenever the
    account agent's buffer ended between two such messages). An earlier message
    reports, for the same sources, just below its own last event instead.

    >>> e = lambda i, ts: Event(f"e{i}", "login", "a", ts, {})
    >>> [(len(c), decode_report(m)[0]) for c, m in chunks([e(1, 10), e(2, 20), e(3, 30)], 2, 90, ["0:1"], ["0:2"])]
    [(2, {'0:2': None, '0:1': 19}), (1, {'0:2': None, '0:1': 90})]
    """  # noqa: E501
    for i in range(0, len(events), size):
        part = events[i : i + size]
        last = i + size >= len(events)
        watermark = frontier if last else part[-1].ts - 1
        yield part, encode_marks(watermark, active, idle, read, keyed)


class Report(NamedTuple):
    marks: dict[Hashable, int | None]  # source -> watermark (None: idle)
    read: dict[Hashable, int]  # idle source -> offset read (none from older ingests)
    keyed: bool  # every event came keyed by its account


def decode_report(raw: bytes) -> Report | None:
    """The :class:`Report` of :func:`encode_marks`; None if unreadable.

    >>> decode_report(encode_marks(42, ["0:1"], ["1:0"], {"1:0": 7}))
    Report(marks={'1:0': None, '0:1': 42}, read={'1:0': 7}, keyed=False)
    >>> decode_report(encode_marks(None, [], ["1:0"]))[0], decode_report(b"nope")
    ({'1:0': None}, None)
    """
    try:
        doc = orjson.loads(raw)
        w = doc["w"]
        if w is not None and type(w) is not int:
            return None
        marks: dict[Hashable, int | None] = {str(src): None for src in doc["i"]}
        if w is not None:
            marks.update((str(src), w) for src in doc["a"])
        read: dict[Hashable, int] = {}
        for src, offset in (doc.get("o") or {}).items():
            if type(offset) is int and marks.get(src, 0) is None:
                read[src] = offset
        return Report(marks, read, doc.get("k") == 1)
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return None


def header(headers: Any, name: str) -> bytes | None:
    """A Kafka header's value from a record's headers (pairs or a mapping)."""
    if not headers:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in items:
        if key == name:
            return bytes(value) if value is not None else None
    return None
