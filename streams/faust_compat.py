"""Every place churnwatch touches Faust, mode or aiokafka internals, and why.

Nothing else in churnwatch reads a private attribute of these libraries or replaces
one of their methods. Each item says what it relies on, why, and the upstream issue;
``tests/unit/test_faust_compat.py`` fails when the code it relies on changes (a
fingerprint of each patched function's source, plus the behaviour itself), and
``tests/integration/test_faust_commit_cap.py`` shows the commit fix against a real broker.
The dependencies are pinned in ``pyproject.toml`` to the versions in :data:`PINNED`,
the ones those tests passed on.

Patches (applied once by :func:`apply`, from ``streams.app.create_app``):

1. ``rewind_uncommitted`` - ``AIOKafkaConsumerThread.seek_to_committed`` also rewinds
   input partitions that have no commit (faust-streaming #596).
2. ``never_commit_past_in_flight`` - ``Consumer._new_offset`` never returns an offset
   past a message a stream took and has not acknowledged (faust-streaming #606, fix
   proposed in #707, both open); ``Consumer._filter_committable_offsets`` gathers those
   messages once per commit for it.
3. ``deliver_without_tasks`` - ``Consumer.wait_first`` hands a fetched message to the
   streams without creating four asyncio tasks when the delivery does not block (the
   per-message cost of Faust's consumer loop; measured in ``docs/design.md``). Not
   applied by :func:`apply`: ``streams.app.create_app`` applies it unless
   ``CHURNWATCH_DELIVER_WITHOUT_TASKS`` is false (default true since session 29).
4. ``read_committed`` - ``AIOKafkaConsumerThread._create_worker_consumer`` makes the
   worker's consumer read committed records only: an input producer's aborted
   transactions were applied as events.
5. ``commit_past_skipped`` - ``FetchResult.getall`` notes the offsets the fetcher
   passed without a record (a transaction's commit marker, an aborted transaction's
   records, a compacted tail), and ``Consumer._filter_committable_offsets`` commits
   past them: a partition whose log ends in a commit marker counted as one message
   behind for good (:func:`skipped_to` tells the ingest such a partition is caught up),
   and one whose record at offset 0 was followed by two markers was never committed
   past 1 (:func:`fill_holes`).
6. ``seek_while_nothing_is_delivered`` - ``Consumer.perform_seek`` (the seek to the
   committed offsets that ends a rebalance) stops the consumer's flow before it seeks,
   and ``Consumer._wait_next_records`` makes the seeks :func:`rewind` asks for between
   two fetches: a delivery racing a seek moved Faust's read offset or the fetch
   position past records the streams never saw, which Faust then marked as read.
7. ``forget_acks_of_revoked`` - ``Consumer.ack`` ignores a message fetched before its
   partition was revoked (``Consumer.on_partitions_revoked`` notes the generation): Faust
   recorded such an acknowledgement in the partition's fresh books, and a commit could
   pass a message a stream had skipped, not processed (it acknowledges those too).
8. ``check_positioned_only`` - ``AIOKafkaConsumerThread.verify_event_path`` (Faust's
   livelock check, every 2.5 commit intervals) skips a partition aiokafka has no
   position for (being reset, as after a rebalance): reading it raised an
   ``AssertionError`` that crashed the worker.

Accessors (read or write a private attribute, one place each):

- :func:`committed_offset` - ``Consumer._committed_offset``;
- :func:`store_locally` - ``Table.data[key] = value``, a table write without
  Faust's per-key changelog send;
- :func:`rebalancing`, :func:`rebalances`, :func:`revoking` - ``App.rebalancing``,
  ``App.rebalancing_count`` (public, undocumented);
- :func:`give_back` - ``Consumer._unacked_messages``: messages held at a rebalance go
  back to Kafka unacknowledged (with patch 2, which keeps commits below them); and
  :func:`rewind` (``Consumer.seek``, public) when Faust's read offset passed them;
- :func:`graceful_worker` - ``mode.Worker._on_sigterm``/``_on_sigint``;
- :class:`RocksStates`, :func:`rocksdb_states`, :func:`count_recovered` - the accounts
  table's RocksDB partition databases, its persisted changelog offset and its
  recovery count (``tests/unit/test_faust_compat_rocksdb.py``);
- :func:`recovery_pending`, :func:`restart_recovery`, :func:`count_as_read` - what
  ``faust.tables.recovery.Recovery`` still has to read (its ``_recovery_started_at``
  and ``_active_events_received_at``), its own restart signal, and the offset it has
  read to: the recovery watchdog (``streams.agents.recovery``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

PINNED = {"faust-streaming": "0.15.3", "mode-streaming": "0.7.1", "aiokafka": "0.14.0"}

_APPLIED = "churnwatch_patch"  # marks a replaced function, so each patch applies once


def _install(owner: type, name: str, patched: Callable[..., Any]) -> None:
    """Replace ``owner.name`` with ``patched``, marked as a patch (each applies once) and
    with the function it replaces as ``__wrapped__`` (what the fingerprints hash)."""
    setattr(patched, _APPLIED, True)
    patched.__wrapped__ = getattr(owner, name)  # type: ignore[attr-defined]
    setattr(owner, name, patched)


def apply() -> None:
    """Apply the patches the worker runs with (idempotent). Not patch 3: see its doc."""
    rewind_uncommitted()
    never_commit_past_in_flight()
    read_committed()
    commit_past_skipped()
    seek_while_nothing_is_delivered()
    forget_acks_of_revoked()
    check_positioned_only()


# --- 1. faust-streaming #596: partitions without a commit are not rewound ------------


def rewind_uncommitted() -> None:
    """Make Faust's "seek to committed" rewind partitions that have no commit yet.

    After a rebalance, Faust drops the records fetched while its streams were paused
    (table recovery) and seeks every partition back to its committed offset. aiokafka
    seeks only where that offset is > 0, so a partition with no commit stays past the
    records that were dropped: they are never delivered (faust-streaming #596
    describes the race). A new deployment reading topics that already hold data, or a
    learner killed before its first commit, lost messages that way (found by
    ``tests/integration/test_learner_checkpoint.py``). This rewinds such partitions to
    their first offset (``consumer_auto_offset_reset="earliest"``); table changelogs
    are left to Faust's recovery.
    """
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    original = AIOKafkaConsumerThread.seek_to_committed
    if getattr(original, _APPLIED, False):
        return

    async def seek_to_committed(self: Any) -> Any:
        committed = await original(self)
        changelogs = self.app.tables.changelog_topics
        fresh = [
            tp for tp, offset in committed.items()
            if (offset is None or offset <= 0) and tp.topic not in changelogs
        ]  # fmt: skip
        if fresh:
            await self.seek_to_beginning(*fresh)
        return committed

    _install(AIOKafkaConsumerThread, "seek_to_committed", seek_to_committed)


# --- 2. faust-streaming #606: a commit past a message still in flight ----------------


def never_commit_past_in_flight() -> None:
    """Cap each commit at the lowest message a stream took and has not acknowledged.

    ``Consumer._new_offset`` commits the first run of consecutive acknowledged offsets.
    Its guard against an unacknowledged message at the head of that run only fires for
    a hole of two or more (``min(acked) - committed > 1``) and only once something was
    committed (``if committed:`` is false for None and 0). So with the committed offset
    at 10, message 10 still held and 11-20 acknowledged, it commits 21; and on a new
    group it commits past any held message. A crash then loses the held message. The
    ingest agent acknowledges out of order by design (a message is acknowledged once
    its events leave the event-time merge; one with only bad events at once), so it
    hit this: a graceful stop under CPU starvation lost one event in 2 of 9 runs
    (issue #13). Upstream: faust-streaming #606 (open); #707 proposes the same cap.

    Messages a stream took are in ``Consumer._unacked_messages`` (a WeakSet) until
    acknowledged; a partition's messages are taken in offset order, so nothing below
    an acknowledged offset can still be on its way. Messages given back at a rebalance
    (:func:`give_back`) count as in flight until they are read again. Offsets that
    never reach a stream (compaction, transaction markers) are not in flight and keep
    Faust's gap handling.

    A commit asks ``_new_offset`` once per partition (``_filter_committable_offsets``),
    so the messages in flight are gathered by partition once per commit (one pass over
    the WeakSet), not once per partition: with one event per message a worker holds
    thousands, and a pass per partition (24 here) took ~9 ms a commit with 5,000 in
    flight and ~38 ms with 20,000 (gathered once: 1 and 4 ms), the event loop held
    meanwhile (docs/design.md).
    """
    from faust.transport.consumer import Consumer

    original = Consumer._new_offset
    if getattr(original, _APPLIED, False):
        return
    original_filter = Consumer._filter_committable_offsets

    def _filter_committable_offsets(self: Any, tps: Any) -> Any:
        self.__dict__[_IN_FLIGHT] = in_flight(self)  # for each _new_offset of this commit
        try:
            return original_filter(self, tps)
        finally:
            del self.__dict__[_IN_FLIGHT]

    def _new_offset(self: Any, tp: Any) -> int | None:
        acked = self._acked[tp]
        if not acked:
            return None
        committed = self._committed_offset[tp]
        gathered = self.__dict__.get(_IN_FLIGHT)
        pending = list((gathered if gathered is not None else in_flight(self)).get(tp, ()))
        back = given_back(self.app).get(tp)  # see give_back: in flight until read again
        if back is not None:
            pending.append(back)
        lowest = min((o for o in pending if committed is None or o >= committed), default=None)
        if lowest is None or max(acked) < lowest:
            return original(self, tp)
        later = [offset for offset in acked if offset > lowest]
        acked[:] = [offset for offset in acked if offset < lowest]
        try:
            return original(self, tp) if acked else None
        finally:
            acked.extend(later)

    _install(Consumer, "_new_offset", _new_offset)
    _install(Consumer, "_filter_committable_offsets", _filter_committable_offsets)


_IN_FLIGHT = "_churnwatch_in_flight"  # a commit's gathered in-flight offsets (patch 2)


def in_flight(consumer: Any) -> dict[Any, list[int]]:
    """The offsets of the messages the streams took and have not acknowledged, by partition
    (``Consumer._unacked_messages``, a WeakSet: copied before it is read)."""
    out: dict[Any, list[int]] = {}
    for m in list(consumer._unacked_messages):
        if not m.acked:
            out.setdefault(m.tp, []).append(m.offset)
    return out


# --- 3. the per-message cost of Faust's consumer loop --------------------------------


class _Resumed:
    """Awaitable that runs the rest of a coroutine already stepped once by hand.

    ``blocked_on`` is what the coroutine yielded (the future it waits for); the task
    awaiting this waits for it, then the coroutine resumes as if it had never left it.
    """

    __slots__ = ("coro", "blocked_on")

    def __init__(self, coro: Any, blocked_on: Any) -> None:
        self.coro, self.blocked_on = coro, blocked_on

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value = self.coro, self.blocked_on
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # noqa: BLE001 - cancellation: the coroutine's to handle
                try:
                    value = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as done:
                    return done.value


async def _finish(coro: Any, blocked_on: Any) -> Any:
    return await _Resumed(coro, blocked_on)


def deliver_without_tasks() -> None:
    """Hand each fetched message to the streams without four new tasks when nothing blocks.

    Faust's consumer loop (``Consumer._drain_messages``) delivers every message with
    ``await self.wait_first(callback(message), self.suspend_flow.wait())``: mode's
    ``wait_first`` wraps both, plus the service's stopped and crashed events, in four
    tasks and an ``asyncio.wait``, once per message, although the delivery (a put into
    each subscribed stream's queue) almost never blocks. That is about a third of
    Faust's cost per message (DESIGN.md; ``docs/design.md`` has today's figures).

    This steps the delivery once by hand while the flow is active: if it finishes
    (the usual case) the result is returned after one turn of the event loop (as the
    tasks gave the streams), and the flow-suspension waiter, never started, is
    closed. If it blocks (a full queue, flow control, a full producer buffer), the
    rest of it runs under the original ``wait_first``, racing the flow suspension
    exactly as before. The consumer's other ``wait_first`` calls
    (none in faust-streaming 0.15.3 pass a coroutine first) go straight through.

    The worker applies it unless ``CHURNWATCH_DELIVER_WITHOUT_TASKS=false``
    (``benchmarks/bench_scale.py`` applies it for its ``fast-floor`` row, and its
    ``floor`` row is Faust's own delivery). It buys one worker's one-event messages
    ~1.4x (5,568 -> 7,888 ev/s, session 29; arrays of 100 unchanged). It was opt-in
    from session 8 to 28: the integration tier with it lost events of an
    account-events partition that changed hands at a rebalance (sessions 8, 23, 24;
    every offset committed, the events never applied). Session 28's patch 6 removed
    a race of that shape (a delivery during the seek that ends a rebalance, records
    marked as read that no stream had seen); in session 29 everything that had lost
    events with this patch passed with it (``docs/design.md``, "Faust, contained",
    has the runs), and it became the default.
    """
    from faust.transport.consumer import Consumer
    from mode.services import WaitResults

    original = Consumer.wait_first
    if getattr(original, _APPLIED, False):
        return

    async def wait_first(self: Any, *coros: Any, timeout: Any = None) -> Any:
        first = coros[0] if coros else None
        if (
            len(coros) == 2
            and timeout is None
            and asyncio.iscoroutine(first)
            and self.flow_active
            and not self._stopped.is_set()
            and not self._crashed.is_set()
        ):
            try:
                blocked_on = first.send(None)
            except StopIteration as done:
                if asyncio.iscoroutine(coros[1]):
                    coros[1].close()
                # one turn of the event loop per message, as with the tasks: the streams
                # take what was delivered before the next one comes (without it, bursts of
                # 100 filled the stream buffers, and a worker stalled after a rebalance
                # with a partition's fetching paused for good)
                await asyncio.sleep(0)
                return WaitResults([first], [done.value], False)
            coros = (_finish(first, blocked_on), coros[1])
        return await original(self, *coros, timeout=timeout)

    _install(Consumer, "wait_first", wait_first)


# --- 4. records of aborted transactions --------------------------------------------


def read_committed() -> None:
    """Make the worker's consumer read committed records only (``read_committed``).

    Faust builds its consumer with ``isolation_level="read_uncommitted"`` unless the app
    itself is exactly-once (``processing_guarantee``), and offers no setting for it. So
    a producer that writes the input in transactions (Kafka Streams, Flink or Kafka
    Connect with exactly-once delivery, a transactional outbox) and aborts one had its
    aborted events applied: a worker read the five events of an aborted transaction as
    it read the five of the committed one after it (session 26, through a real broker;
    ``tests/integration/test_poison.py`` now shows none applied). This sets the consumer
    Faust builds to ``read_committed`` before it starts (aiokafka's ``__init__`` keeps
    its argument in ``_isolation_level`` and hands it to the fetcher ``start`` makes).

    A record written outside a transaction is committed as it is written, so nothing
    else reads differently: churnwatch's own topics and changelogs, and producers
    without transactions. A partition with a transaction still open is read up to its
    last stable offset; the ingest's merge waits for it as for any input partition that
    is behind (``CHURNWATCH_INPUT_STALL_S`` at most).
    """
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    original = AIOKafkaConsumerThread._create_worker_consumer
    if getattr(original, _APPLIED, False):
        return

    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._isolation_level = "read_committed"  # what __init__ keeps of its argument
        return consumer

    _install(AIOKafkaConsumerThread, "_create_worker_consumer", _create_worker_consumer)


# --- 5. offsets without a record at the end of a partition ---------------------------


_SKIPPED = "churnwatch_skipped"  # on aiokafka's TopicPartitionState: (first, end) or None


def commit_past_skipped() -> None:
    """Commit past the offsets at the end of a partition that hold no record.

    A transactional producer ends each transaction with a commit (or abort) marker: an
    offset that no consumer is given. Faust commits the offset after the last message
    it acknowledged, and fills holes between messages itself (``Consumer._add_gap``),
    but nothing fills a hole at the *end* of a partition. So a partition whose last
    transaction was committed stayed one offset behind for good: its consumer lag
    showed 1, and the ingest's merge, which asks whether Kafka holds more of a quiet
    partition, held every other partition back for ``CHURNWATCH_INPUT_STALL_S`` (60 s)
    each time such a partition went quiet (``tests/integration/test_worker_ingest.py``;
    the same for records of an aborted transaction, and for a compacted input's tail).

    aiokafka's ``FetchResult.getall`` hands out a fetched partition's records and moves
    the consumer's position past everything the fetcher went through, markers and
    aborted records included. Wrapped here, it notes on the partition's state the span
    from the offset after the last record it handed out (or from where it began, when
    it handed out none, joined to the span noted before) to the new position: offsets
    that hold no record. That is a fact about the log, true for good, whatever seeks
    come later (a log only grows; compaction only removes records). ``getall`` runs in
    the consumer's thread, in one piece, so no seek comes between the records and the
    position. ``Consumer._filter_committable_offsets`` (what a commit asks) then moves
    the commit of each acknowledged partition whose committed or next offset lies in
    such a span to the span's end: no message can be in flight there.

    The same wrapper notes every hole it went past, before, between and after the
    records it handed out (:func:`note_passed`), and each commit first puts them into
    Faust's gap tree (:func:`fill_holes`): Faust's own filling of holes between
    messages misses the ones after offset 0.
    """
    from aiokafka.consumer.fetcher import FetchResult
    from faust.transport.consumer import Consumer

    original_getall = FetchResult.getall
    if getattr(original_getall, _APPLIED, False):
        return
    original_filter = Consumer._filter_committable_offsets

    def getall(self: Any, max_records: int | None = None) -> Any:
        state = self._assignment.state_value(self._topic_partition)
        before = state.position if state is not None and state.has_valid_position else None
        records = original_getall(self, max_records)
        if before is not None and state.has_valid_position:
            note_passed(state, before, records)
        return records

    def _filter_committable_offsets(self: Any, tps: Any) -> Any:
        for tp in list(self._acked):
            fill_holes(self, tp)
        offsets = original_filter(self, tps)
        acks = self.app.topics.acks_enabled_for  # stream topics: not the changelogs
        for tp in list(self._acked):  # every partition a stream acknowledged
            at = offsets.get(tp, self._committed_offset.get(tp))
            end = skipped_to(self, tp, at)
            if at is not None and end is not None and end > at and acks(tp.topic):
                offsets[tp] = end
        return offsets

    _install(FetchResult, "getall", getall)
    _install(Consumer, "_filter_committable_offsets", _filter_committable_offsets)


_HOLES = "churnwatch_holes"  # on aiokafka's TopicPartitionState: a deque of (first, end)
HOLES_KEPT = 1024  # per partition between two commits (a changelog's are never taken)


def note_passed(state: Any, before: int, records: list[Any]) -> None:
    """Note on ``state`` (aiokafka's ``TopicPartitionState``) the offsets a ``getall``
    went past without a record, ``before`` being its position when it began:

    - the holes before its first record, between two of its records and after its last
      one (to its new position), kept for the next commit (:func:`fill_holes`), at most
      :data:`HOLES_KEPT` (the oldest go first: a partition that no commit reads, a
      changelog, keeps no more);
    - the span at the end (after its last record, or, with none handed out, from
      ``before``, joined to the span noted before if that one ends there), for
      :func:`skipped_to`.
    """
    after = state.position
    if records:
        first, last = records[0].offset, records[-1].offset
        holes = [(before, first)] if first > before else []
        if last - first + 1 != len(records):  # (contiguous offsets: no hole between)
            holes += [(a.offset + 1, b.offset) for a, b in pairwise(records)
                      if b.offset > a.offset + 1]  # fmt: skip
        tail = (last + 1, after)
    elif after == before:
        return  # nothing passed: what was noted stays true
    else:
        holes = [(before, after)] if after > before else []
        noted = getattr(state, _SKIPPED, None)
        tail = (noted[0] if noted is not None and noted[1] == before else before, after)
    setattr(state, _SKIPPED, tail if after > tail[0] else None)
    if after > tail[0] and records:
        holes.append(tail)
    if not holes:
        return
    kept: deque[tuple[int, int]] | None = getattr(state, _HOLES, None)
    if kept is None:
        kept = deque(maxlen=HOLES_KEPT)
        setattr(state, _HOLES, kept)
    for hole in holes:
        kept.append(hole)  # (the consumer's thread appends, a commit takes: both atomic)


def fill_holes(consumer: Any, tp: Any) -> None:
    """Put the holes the fetcher noted for ``tp`` (:func:`note_passed`) into Faust's gap
    tree, from the committed offset on, where a commit reads them as acknowledged.

    Faust fills it itself from the offsets its drain sees jump, but from its read offset,
    which it keeps as 0 after reading offset 0 and tests for truth: a partition whose
    first record, at 0, is followed by two offsets without one (two transactions'
    markers) was committed to 1 and never past it (session 27, the fault harness's clean
    run with ``--transactional``)."""
    kept = getattr(_partition_state(consumer, tp), _HOLES, None)
    if not kept:
        return
    committed = consumer._committed_offset.get(tp)
    gap = consumer._gap[tp]
    while kept:
        first, end = kept.popleft()
        if committed is not None:
            first = max(first, committed)
        if first < end:
            gap.addi(first, end)
    gap.merge_overlaps()


def skipped_to(consumer: Any, tp: Any, offset: int | None) -> int | None:
    """Where the next record of ``tp`` can be, once everything before ``offset`` is read:
    past the span of offsets without a record that ``offset`` falls in (the fetcher went
    through it: :func:`commit_past_skipped`), else ``offset`` itself. ``consumer`` is the
    app's Faust consumer; its aiokafka consumer keeps the partition's state."""
    if offset is None:
        return None
    span = getattr(_partition_state(consumer, tp), _SKIPPED, None)
    if span is not None and span[0] <= offset < span[1]:
        return int(span[1])
    return offset


def _partition_state(consumer: Any, tp: Any) -> Any:
    """aiokafka's ``TopicPartitionState`` of ``tp`` in the app's Faust ``consumer`` (None:
    not assigned, or the consumer not started, stopped or between subscriptions)."""
    try:
        assignment = consumer._thread._consumer._subscription.subscription.assignment
        return assignment.state_value(tp)
    except AttributeError:
        return None


# --- 6. a seek that a delivery overtakes -----------------------------------------------


def seek_while_nothing_is_delivered() -> None:
    """Let no delivery overtake a seek: Faust's at the end of a rebalance, or a rewind.

    ``Consumer.perform_seek`` (called by the recovery when a rebalance ends) seeks the
    fetcher to the committed offsets in the consumer's thread, then sets Faust's read
    offsets to them. The recovery resumes the stream partitions just before it, while
    the consumer's flow may be running (a recovery with nothing to read resumes it
    early): the drain then fetched from the new position and handed records to the
    streams before the read offsets were set, and the streams skipped them (their
    flow control is resumed after the seek). The fetch position was past them, the read
    offset back at the commit, so the next record came as a jump that
    ``Consumer._drain_messages`` fills as a gap: a commit passed records no stream had
    seen. Found by the fault harness with live transactional input (session 28): 7
    events of a subscription partition never forwarded, and a partition given back
    whose skipped records held the given-back offset stalled instead. Now the flow is
    stopped before the seek (the drain leaves the batch it was handing over, and fetches
    nothing until the recovery resumes the flow after the seek, as both its callers do
    at once); a seek that fails resumes the flow it stopped. ``getmany``, the third
    caller, seeks with the flow stopped already.

    ``Consumer._wait_next_records`` (the drain, before each fetch) first makes the
    seeks :func:`rewind` asked for (:func:`seek_back`).
    """
    from faust.transport.consumer import Consumer

    original_seek = Consumer.perform_seek
    if getattr(original_seek, _APPLIED, False):
        return
    original_wait = Consumer._wait_next_records

    async def perform_seek(self: Any) -> None:
        stopped = self.flow_active
        if stopped:
            self.stop_flow()  # (the drain's delivery in hand returns at once: suspend_flow)
        try:
            await original_seek(self)
        except BaseException:
            if stopped:
                self.resume_flow()
            raise

    async def _wait_next_records(self: Any, timeout: float) -> Any:
        await seek_back(self)
        return await original_wait(self, timeout)

    _install(Consumer, "perform_seek", perform_seek)
    _install(Consumer, "_wait_next_records", _wait_next_records)


# --- 7. an acknowledgement that outlives its partition's revocation -------------------


_GENERATION_REVOKED = "churnwatch_generation_revoked"  # on the app: partition -> the
# consumer generation its last revocation ended (not _REVOKED_AT: a rebalance count)


def forget_acks_of_revoked() -> None:
    """Ignore the acknowledgement of a message fetched before its partition was revoked.

    Faust's revocation first drops the revoked partitions' books
    (``Consumer.on_partitions_revoked``: acknowledged offsets, committed offset), then
    waits for the messages the streams took (``Consumer.wait_empty``), committing as they
    are acknowledged. An acknowledgement after the drop landed in fresh books with no
    committed offset to compare it with (``Consumer.ack``), and it need not mean the
    message was processed: a stream acknowledges the messages it *skips* while the flow
    is suspended (as during a revocation) or for an old generation (``Stream._c_aiter``:
    ``do_ack or value is skipped_value``). The commit that followed -- the revocation's,
    or the next assignment's if the partition came back here, once the seek set the
    committed offset below it -- could pass a message no stream processed (shown on
    Faust's own ``ack`` in the tests). Messages carry the consumer generation they were
    fetched in, and generations only grow: the revocation notes, per partition, the
    generation it ends, and an acknowledgement of a message from that generation or an
    older one only marks the message done (``wait_empty`` stops waiting for it). It is
    read again from the last commit by whichever worker owns the partition next; one an
    agent did finish comes again as a duplicate (the state's event-id memory drops it):
    at least once, where Faust could skip one. Fingerprinted: ``Consumer.ack``,
    ``Consumer.on_partitions_revoked`` and where messages and the app get a generation.
    """
    from faust.transport.consumer import Consumer
    from faust.types.tuples import ack_lock

    original_ack = Consumer.ack
    if getattr(original_ack, _APPLIED, False):
        return
    original_revoked = Consumer.on_partitions_revoked

    async def on_partitions_revoked(self: Any, revoked: Any) -> None:
        book, generation = _book(self.app, _GENERATION_REVOKED), self.app.consumer_generation_id
        book.update((tp, generation) for tp in revoked)  # (before Faust drops the books)
        await original_revoked(self, revoked)

    def ack(self: Any, message: Any) -> bool:
        revoked_in = _book(self.app, _GENERATION_REVOKED).get(message.tp)
        generation = message.generation_id
        if revoked_in is not None and generation is not None and generation <= revoked_in:
            with ack_lock:  # (as Faust's ``ack``: a reentrant lock around the bookkeeping)
                message.acked = True
                self._unacked_messages.discard(message)  # (nothing may wait for it any more)
            return False
        return bool(original_ack(self, message))

    _install(Consumer, "on_partitions_revoked", on_partitions_revoked)
    _install(Consumer, "ack", ack)


# --- 8. the livelock check reads the position of a partition not positioned yet ------


def check_positioned_only() -> None:
    """Skip, in Faust's livelock check, a partition aiokafka has no position for yet.

    Every 2.5 commit intervals outside a rebalance, ``Consumer.verify_all_partitions_active``
    runs ``AIOKafkaConsumerThread.verify_event_path`` for each assigned partition, which
    reads aiokafka's ``TopicPartitionState.position``. That property asserts a position
    is set, and a partition whose position is being reset has none until the fetcher
    answers, though it was fetched from before (which is what gets it past the check's
    first test): a seek to its beginning (patch 1 asks for one after a rebalance where
    a partition has no commit), no commit in Kafka, an offset out of range.
    ``app.rebalancing`` is false by then. The ``AssertionError`` ended the detector's
    task, and with it the worker (the fault harness saw it in 2 of 7 CI runs, on the
    worker that took over the partitions of one that left). The check has nothing to say
    about such a partition until it has a position (nothing fetched since the reset,
    nothing to be slow on), so it is skipped until then; so is one no longer assigned (no
    state: the check yields to the loop between partitions).
    Fingerprinted: ``verify_event_path``, ``verify_all_partitions_active`` and aiokafka's
    ``TopicPartitionState.position``.
    """
    from aiokafka.structs import TopicPartition
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    original = AIOKafkaConsumerThread.verify_event_path
    if getattr(original, _APPLIED, False):
        return

    def verify_event_path(self: Any, now: float, tp: Any) -> None:
        if _positioned(self._consumer, TopicPartition(tp.topic, tp.partition)):
            return original(self, now, tp)  # type: ignore[no-any-return]
        return None

    _install(AIOKafkaConsumerThread, "verify_event_path", verify_event_path)


def _positioned(consumer: Any, tp: Any) -> bool:
    """Whether aiokafka ``consumer`` has a fetch position for ``tp`` (assigned, reset)."""
    subscription = consumer and consumer._fetcher._subscriptions.subscription
    assignment = subscription and subscription.assignment
    state = assignment and assignment.state_value(tp)
    return bool(state and state.has_valid_position)


# --- accessors -----------------------------------------------------------------------


def committed_offset(consumer: Any, tp: Any) -> int | None:
    """The offset this worker last committed for ``tp`` (None: nothing yet, or 0).

    Faust keeps it in ``Consumer._committed_offset`` (no public accessor); reading it
    saves a broker round trip per partition for the lag gauge and the ingest merge.
    """
    offset: int | None = consumer._committed_offset.get(tp)
    return offset


def rebalancing(app: Any) -> bool:
    """Whether a rebalance is under way (``App.rebalancing``, set by
    ``App.on_rebalance_start``; public but undocumented)."""
    return bool(getattr(app, "rebalancing", False))


def rebalances(app: Any) -> int:
    """How many rebalances this worker has started (``App.rebalancing_count``, public
    but undocumented): what tells one rebalance from the next."""
    return int(getattr(app, "rebalancing_count", 0))


def generation(app: Any) -> int:
    """The consumer group generation of this worker's last assignment
    (``App.consumer_generation_id``, public but undocumented; 0 before the first)."""
    return int(getattr(app, "consumer_generation_id", 0))


def group_generation(app: Any) -> int | None:
    """The generation the consumer's group coordinator holds now (aiokafka's
    ``GroupCoordinator.generation``, read as Faust's rebalance listener reads it), None
    before the consumer runs. The heartbeat that finds this worker expelled from its
    group resets it to -1 at once, before Faust hears of any rebalance."""
    try:
        return int(app.consumer._thread._ensure_consumer()._coordinator.generation)
    except Exception:  # noqa: BLE001 - not started, or stopping
        return None


def commits_asked(app: Any) -> dict[Any, int]:
    """Per partition, the offset of the last commit Faust asked Kafka for
    (``Monitor.tp_committed_offsets``: booked whether or not Kafka took it)."""
    return dict(app.monitor.tp_committed_offsets or {})


_GIVEN_BACK = "churnwatch_given_back"
_REVOKED_AT = "churnwatch_revoked_at"


def revoking(app: Any) -> bool:
    """Whether a rebalance is revoking this worker's partitions: it started
    (``App.rebalancing``, ``App.rebalancing_count``, public but undocumented) and its
    ``on_partitions_revoked`` signal has not been sent yet (:func:`track_revocations`).
    Faust waits meanwhile for every message a stream took to be acknowledged
    (``Consumer.wait_empty``); the agents give back what they hold (:func:`give_back`)."""
    return rebalancing(app) and getattr(app, _REVOKED_AT, None) != rebalances(app)


def track_revocations(app: Any) -> None:
    """Note the end of each rebalance's revocation, for :func:`revoking`: its
    ``on_partitions_revoked`` signal, or at the latest its ``on_partitions_assigned``
    (a message given back after the assignment would not be read again before the
    next rebalance, and would hold its partition's commits until then)."""

    async def done(sender: object, tps: object, **kwargs: object) -> None:
        setattr(app, _REVOKED_AT, rebalances(app))

    app.on_partitions_revoked.connect(done, weak=False)
    app.on_partitions_assigned.connect(done, weak=False)


def given_back(app: Any) -> dict[Any, int]:
    """Per partition, the lowest offset given back (:func:`give_back`) and not read again."""
    return _book(app, _GIVEN_BACK)


def _book(app: Any, name: str) -> dict[Any, int]:
    """A dict by partition kept on the app under ``name`` (made on first use)."""
    book: dict[Any, int] | None = getattr(app, name, None)
    if book is None:
        book = {}
        setattr(app, name, book)
    return book


def give_back(app: Any, messages: Iterable[Any]) -> int:
    """Give messages a stream took back to Kafka at a rebalance, unacknowledged.

    An agent that holds events for their event time (the ingest's and the account
    agents' merges) cannot apply them at a rebalance without overtaking a slower
    upstream: its events, read again after the rebalance, would then be late and
    dropped (issue #13: unkeyed input through two workers lost events this way). Nor
    can it wait for Faust's ``wait_empty``, which blocks the rebalance until every
    message taken is acknowledged: its upstreams are paused too. Given back, a message
    leaves ``Consumer._unacked_messages`` (so the revocation goes on at once), its
    offset caps every commit of its partition (``never_commit_past_in_flight``), and
    after the rebalance Faust seeks to the committed offset, so it is read again, by
    whichever worker owns its partition then. Events of it that were applied already
    come again as duplicates (the state's event-id memory drops them). Returns how many.
    """
    unacked, book = app.consumer._unacked_messages, given_back(app)
    n = 0
    for msg in messages:
        unacked.discard(msg)
        book[msg.tp] = min(book.get(msg.tp, msg.offset), msg.offset)
        n += 1
    return n


def read_again(app: Any, msg: Any) -> bool:
    """A message was taken: whether the stream may go on with it (False: give it back too).

    Once the lowest offset given back is read again, Faust tracks it (and what follows)
    in flight itself. Only that offset: a message taken before the rebalance and
    delivered after it has a lower one, and clearing on it would let a commit pass what
    was given back. A message *past* the one given back that comes before it is read
    again (anything read once the worker is stopping, or a delivery fetched before the
    rebalance's seek) must not go ahead of it: its events would pass the given-back
    ones, which would then be too late when they are read again (issue #13: a graceful
    stop under a CPU burner lost one event in 2 of 20 runs this way). The caller gives
    it back as well (:func:`give_back`); it is read again after the given-back one.
    An entry below the committed offset is stale (another worker read past it): it goes.
    """
    book = given_back(app)
    back = book.get(msg.tp)
    if back is None:
        return True
    committed = committed_offset(app.consumer, msg.tp)
    if msg.offset == back or (committed is not None and committed > back):
        del book[msg.tp]
        return True
    return msg.offset < back


def rewind(app: Any, tps: Iterable[Any]) -> None:
    """Ask for partitions to be sought back to their committed offset, after a message
    past one given back came before it (:func:`read_again` said no, and the caller gave
    it back).

    Such a message was fetched before the rebalance's seek and handed over after it.
    Faust moves its read offset to each message it hands over
    (``Consumer._drain_messages``) and drops any later message below it as already
    read, so the given-back one, fetched again from the commit, was dropped: it never
    came back, every later message was given back in turn, and the commits stayed
    below it (``tests/integration/test_two_workers.py``, 1 run in 12). ``Consumer.seek``
    (public) moves the fetch position and Faust's read offset together; it is made
    between two fetches (:func:`seek_back`, patch 6), not here: the consumer's drain
    may be in the middle of a fetched batch, and each message it hands over after a
    seek sets the read offset past the commit again, so that the partition, read again
    from the commit, was dropped up to the batch's end (session 28: two input
    partitions of the fault harness sought back 454 times in 100 s, ~300 of them in the
    first 3 s, and never read again). From the commit, what was read since comes again as
    duplicates, as after any rebalance.
    """
    book, pending = given_back(app), _book(app, _REWINDS)
    count = rebalances(app)
    pending.update((tp, count) for tp in tps if tp in book)


_REWINDS = "churnwatch_rewinds"  # on the app: partitions rewind asked for -> rebalance count


async def seek_back(consumer: Any) -> None:
    """Seek each partition :func:`rewind` asked for to its committed offset, if what was
    given back there is still to be read again. Run by the consumer's drain before each
    fetch (patch 6), when it is not handing over a batch. One asked for before a
    rebalance, or during one, is dropped: Faust seeks every partition it assigns to its
    commit when the rebalance ends."""
    app = consumer.app
    pending = _book(app, _REWINDS)
    if not pending:
        return
    asked, count = dict(pending), rebalances(app)
    pending.clear()
    if rebalancing(app):
        return
    book = given_back(app)
    for tp, then in asked.items():
        if tp in book and then == count:
            try:
                await consumer.seek(tp, committed_offset(consumer, tp) or 0)
            except Exception:  # noqa: BLE001 - revoked meanwhile: its owner reads from the commit
                pass


def store_locally(table: Any, key: bytes, value: bytes | None) -> None:
    """Put ``value`` in the table's local store without Faust's changelog send.

    ``Table.__setitem__`` sends one changelog record per key through Faust's producer
    buffer (~300-500 µs each, DESIGN.md); the account agent sends its changelog
    records itself in bulk and awaits them before acknowledging its input, so it only
    needs the local store (``Table.data``) to hold the value for lookups and reloads.
    ``None`` deletes the key (an erased account's tombstone).
    """
    if value is None:
        table.data.pop(key, None)
    else:
        table.data[key] = value


def graceful_worker(before_stop: Callable[[], Awaitable[None]]) -> type:
    """A ``faust.Worker`` that awaits ``before_stop()`` when SIGTERM or SIGINT arrives,
    then stops as Faust does.

    mode's ``Worker`` has no hook between the signal and its shutdown, so this
    overrides its signal handlers ``_on_sigterm``/``_on_sigint``.
    """
    import faust

    class Worker(faust.Worker):  # type: ignore[misc]
        def _on_sigterm(self) -> None:
            asyncio.ensure_future(self._before_stop(super()._on_sigterm))

        def _on_sigint(self) -> None:
            asyncio.ensure_future(self._before_stop(super()._on_sigint))

        async def _before_stop(self, stop: Callable[[], None]) -> None:
            try:
                await before_stop()
            finally:
                stop()

    return Worker


# --- accounts table on RocksDB (streams.agents.accounts) ----------------------------
#
# churnwatch writes account states to the changelog itself, in bulk (Faust's per-key
# ``Table.__setitem__`` costs 300-500 µs), so Faust never learns the changelog offset
# its local RocksDB store holds, and a restart would replay the whole changelog. These
# write the states and that offset to the partition's database in one RocksDB write
# batch, in the format ``faust.stores.rocksdb.Store.persisted_offset`` reads, and read
# states straight from the partition's database (the store's own ``_get`` searches
# every partition when the key's partition is not in its small index).


class RocksStates:
    """The accounts table's RocksDB partition databases (faust ``stores.rocksdb.Store``)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def get(self, partition: int, key: bytes, *, assigned: bool = True) -> bytes | None:
        """``assigned``: the partition is this worker's (its database is opened if Faust
        has not yet); else read it only if Faust has it open."""
        db = self.store._db_for_partition(partition) if assigned else self.store._dbs.get(partition)
        return None if db is None else db.get(key)

    def keys(self, partition: int) -> Iterator[bytes]:
        for key in self.store._db_for_partition(partition).keys():
            if key != self.store.offset_key:
                yield key

    def write(
        self, partition: int, items: list[tuple[bytes, bytes | None]], offset: int | None
    ) -> None:
        """States (None: delete the key) and the changelog offset that holds them, atomically."""
        from rocksdict import WriteBatch

        batch = WriteBatch(raw_mode=True)
        for key, raw in items:
            if raw is None:
                batch.delete(key)
            else:
                batch.put(key, raw)
        if offset is not None:
            batch.put(self.store.offset_key, str(offset).encode())
        self.store._db_for_partition(partition).write(batch)


def rocksdb_states(table: Any) -> RocksStates | None:
    """The table's RocksDB partition databases, or None for another store."""
    try:
        from faust.stores.rocksdb import Store
    except ImportError:  # pragma: no cover - faust always ships it
        return None
    store = getattr(table, "data", None)
    return RocksStates(store) if isinstance(store, Store) else None


def count_recovered(table: Any, count: Callable[[int], None]) -> None:
    """Call ``count(n)`` for every batch of ``n`` changelog records Faust's recovery
    applies to ``table`` (``Collection.apply_changelog_batch``, called only by
    ``faust.tables.recovery.Recovery``)."""
    apply = table.apply_changelog_batch

    def counted(batch: Iterable[Any]) -> None:
        batch = list(batch)
        count(len(batch))
        apply(batch)

    table.apply_changelog_batch = counted


# --- end of accounts table on RocksDB -----------------------------------------------


# --- table recovery (the watchdog, streams.agents.recovery) -------------------------


@dataclass(frozen=True)
class Pending:
    """An active changelog partition Faust's recovery has not read to its end yet."""

    tp: Any
    offset: int  # the last offset recovery read (or the local store's, at its start)
    highwater: int  # the partition's last offset when this recovery started
    last_event_at: float | None  # monotonic time of its last record in this recovery


def recovery_pending(app: Any) -> tuple[float, list[Pending]] | None:
    """None unless the tables are recovering: then when this recovery started
    (``time.monotonic``) and the partitions it still waits for.

    Faust's recovery ends once every active changelog partition's read offset reaches
    the highwater it took at its start; it logs "No event received ... since recovery
    start" while one does not, and waits on (``Recovery._slurp_changelogs``).
    """
    r = app.tables.recovery
    started = getattr(r, "_recovery_started_at", None)
    if not r.in_recovery or started is None:
        return None
    received = r._active_events_received_at
    pending = []
    for tp in list(r.active_tps):
        highwater, offset = r.active_highwaters.get(tp), r.active_offsets.get(tp)
        if highwater is None or offset is None or highwater - offset <= 0:
            continue
        pending.append(Pending(tp, offset, highwater, received.get(tp)))
    return started, pending


def restart_recovery(app: Any) -> None:
    """Start the recovery again as a rebalance does (``Recovery.signal_recovery_start``):
    highwaters and local offsets taken again, changelog partitions sought to them and
    resumed, the fetcher and the flow resumed."""
    app.tables.recovery.signal_recovery_start.set()


def count_as_read(app: Any, tp: Any, offset: int) -> None:
    """Recovery has read ``tp`` up to ``offset`` (``Recovery.active_offsets``): what
    Faust's own recovery does in exactly-once mode when the consumer's position passed
    the highwater over records that are no data (``detect_aborted_tx``). Its next
    check, within 5 s, ends the recovery if nothing else is pending."""
    app.tables.recovery.active_offsets[tp] = offset
