"""Ingest agent: raw input messages -> validated events, in event-time order, by account.

Reads both input topics as raw bytes. Bad input becomes dead-letter records
(never an exception). Valid events go through a watermark merge
(``models.ordering.Reorderer``): they are released in event-time order once
every input partition that is still delivering has passed them, so a backlog
read faster from one topic than the other never looks "late" downstream.
Released events are grouped by the partition their ``account_id`` hashes to
and sent as JSON arrays to the internal account-events topic. An input message
is acknowledged only once Kafka holds all of its events, so a crash re-delivers
whatever was still held (and the account state drops what it already applied).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from typing import Any

import orjson

from models.contract import DeadLetter, Event, encode_batch, locate, parse_message
from models.ordering import MARKS_HEADER, Reorderer, behind, chunks, encode_marks, report
from models.partitioning import partition_for
from models.privacy import Pseudonymiser, coarsen
from models.timepolicy import MergedClock, wall_ms
from streams.faust_compat import (
    commits_asked,
    committed_offset,
    generation,
    give_back,
    given_back,
    group_generation,
    read_again,
    rebalancing,
    revoking,
    rewind,
    skipped_to,
)
from streams.metrics import children
from streams.runtime import CRASH, Runtime

log = logging.getLogger(__name__)

# events per internal message: ~150 KB, well under Kafka's 1 MiB default message size
INTERNAL_BATCH = 500
FLUSH_EVERY_S = 0.2  # released events go downstream at least this often
HELD_HIGH_WATER = 100_000  # ... or as soon as this many are held
UNALIGNED_WARN_EVERY_S = 600.0


def route(events: list[Event], partitions: int) -> dict[int, list[Event]]:
    """Group events by the partition of their account (order kept within a partition)."""
    routed: dict[int, list[Event]] = defaultdict(list)
    for event in events:
        routed[partition_for(event.account_id, partitions)].append(event)
    return routed


def keyed_by_account(key: bytes | None, events: list[Event]) -> bool:
    """Whether a message's key is the account_id of every event in it (co-partitioned input).

    >>> e = lambda a: Event("x", "login", a, 0, {})
    >>> keyed_by_account(b"a1", [e("a1"), e("a1")]), keyed_by_account(None, [e("a1")])
    (True, False)
    >>> keyed_by_account(b"a1", [e("a1"), e("a2")])
    False
    """
    return key is not None and all(e.account_id.encode() == key for e in events)


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


def register(rt: Runtime) -> None:
    s, m, app = rt.settings, rt.metrics, rt.app
    dead_letter, account_events = rt.topics.dead_letter, rt.topics.account_events
    reorder = Reorderer(
        idle_ms=int(s.input_idle_s * 1000),
        stall_ms=int(s.input_stall_s * 1000),
        quiet_ms=int(s.input_quiet_s * 1000),
        live_ms=int(s.input_live_s * 1000) or None,
    )
    policy = s.engine_config().time  # the accepted range of event times
    merged = MergedClock(policy)  # ... and the clock of the input merged in event time
    # identifiers become keyed tokens and coordinates cell centres here, before anything
    # holds or forwards them
    pseudonymise, grid_km = Pseudonymiser(s.require_pseudonym_key()).event, s.geo_grid_km
    lock = asyncio.Lock()
    streams: dict[str, Any] = {}
    delivered: dict[Any, int] = {}  # input partition -> next offset the agent will see
    reading: set[Any] = set()  # the input partitions assigned (what ``merged`` merges)

    warned_at = [-UNALIGNED_WARN_EVERY_S]
    topic_index = {topic: i for i, topic in enumerate(s.input_topics)}
    marked: dict[int, bytes] = {}  # account-events partition -> the last report it got
    unkeyed_messages: set[Any] = set()  # held messages whose events are not keyed by account

    def source(tp: Any) -> str:
        """An input partition as the account agents' merge names it."""
        return f"{topic_index[tp.topic]}:{tp.partition}"

    def note_unaligned(n: int) -> None:
        """Count input not keyed by account; say (now and then) if other workers read input."""
        m.unaligned_events.inc(n)
        now = time.monotonic()
        if now - warned_at[0] < UNALIGNED_WARN_EVERY_S:
            return  # the assignment is looked at only when a warning may be due
        consumer: Any = app.consumer
        assigned = [tp for tp in consumer.assignment() if tp.topic in s.input_topics]
        every = sum(consumer.topic_partitions(t) or s.partitions for t in s.input_topics)
        if len(assigned) < every:
            warned_at[0] = now
            log.info(
                "input messages not keyed by account_id while other workers read input too: "
                "an account's events then reach its state through several workers, and each "
                "account agent holds them until the slowest worker's ingest has passed them "
                "(churnwatch_account_events_held). Keyed input needs no such wait "
                "(churnwatch_input_unaligned_events_total counts unkeyed events)"
            )

    def offset_read(tp: Any) -> int | None:
        """The offset after the last message of ``tp`` the agent was given, or the
        committed one it resumes from (None: a new group, from the start of the log)."""
        return delivered.get(tp) or committed_offset(app.consumer, tp)

    def check_backlogs(now_ms: int, wall: int) -> None:
        """Tell the merge which silent partitions still have messages in Kafka (and, with
        ``CHURNWATCH_INPUT_LIVE_S``, which of every partition are live)."""
        consumer: Any = app.consumer
        for tp in reorder.silent(now_ms):
            try:
                highwater = consumer.highwater(tp)  # the fetcher's latest view
            except Exception:  # noqa: BLE001 - not assigned any more: let it go idle
                highwater = 0
            # past a trailing transaction marker (or aborted records): no event is there
            start = skipped_to(consumer, tp, offset_read(tp))
            reorder.mark_behind(tp, behind(highwater, start), wall)

    # force=True on every send: inside the agent (a stop, a full merge) Faust would
    # otherwise attach the record to the message being read and publish it only once that
    # message's offset is committed, while the other messages whose events it carries are
    # acknowledged now and may be committed first: a stop or crash in between lost them.
    # A forced send only hands the record to the producer's buffer: its future is awaited
    # (Kafka has the record) before any input message it came from is acknowledged, or a
    # commit could pass records that a crash then loses.
    async def send_dead(bad: DeadLetter) -> Any:
        m.dead_letters.labels(bad.kind).inc()
        return await dead_letter.send(value=orjson.dumps(bad.to_record()), force=True)

    async def forward() -> None:
        """Send what the frontier allows; acknowledge the messages fully sent.

        Every message to account-events carries this ingest's report on its input
        partitions (``models.ordering.encode_marks``): with several workers, each
        account agent merges the ingests that write to it by these watermarks
        (``WatermarkMerge``), so an account's events read by a slower worker are not late.
        """
        now, wall = _now_ms(), wall_ms()
        check_backlogs(now, wall)
        ahead: list[tuple[Event, Any, tuple[str, str]]] = []
        vouched = reorder.vouched(now)
        vouched = -1 if vouched is None else vouched

        unkeyed: set[str] = set()  # accounts with an event released from an unkeyed message

        def keep(event: Event, token: Any) -> bool:
            if token in unkeyed_messages:
                unkeyed.add(event.account_id)
            why = merged.admit(event.ts, wall_ms=wall, vouched=event.ts <= vouched)
            if why is not None:
                ahead.append((event, token, why))
            return why is None

        events, done = reorder.release(now, keep)
        frontier, active, idle = report(reorder, now)
        active_src, idle_src = list(map(source, active)), list(map(source, idle))
        # what an idle claim stands on: the offset read (the account agents wait for it to
        # be confirmed before another worker's events go past it, ``WatermarkMerge``), past
        # any offsets without a record after it (a transaction's marker: no event is there)
        consumer: Any = app.consumer
        read = {source(tp): skipped_to(consumer, tp, offset_read(tp)) or 0 for tp in idle}
        marks = encode_marks(frontier, active_src, idle_src, read)
        headers = [(MARKS_HEADER, marks)]
        pending = []
        for event, token, (kind, text) in ahead:  # ahead of everything else read
            msg = token.message
            index, raw = locate(msg.value, event.event_id)
            where = (msg.topic, msg.partition, msg.offset, index)
            pending.append(await send_dead(DeadLetter(kind, f"{kind}: {text}", *where, raw)))
        routed = route(events, s.partitions)
        for partition, part in routed.items():
            # keyed by account: no other worker reads events of these accounts, so they wait
            # on no other worker's idle claim (``WatermarkMerge.push``)
            keyed = not unkeyed or not any(e.account_id in unkeyed for e in part)
            for chunk, chunk_marks in chunks(
                part, INTERNAL_BATCH, frontier, active_src, idle_src, read, keyed
            ):
                pending.append(
                    await account_events.send(
                        key=str(partition).encode(),
                        value=encode_batch(chunk),
                        partition=partition,
                        headers=[(MARKS_HEADER, chunk_marks)],
                        force=True,
                    )
                )
            marked[partition] = marks
        # the others hear the report alone (an empty array), when it changed: no heartbeat,
        # so a quiet stream leaves nothing uncommitted. A source reported active keeps its
        # worker's report moving (it delivers, or goes idle or stalls: a change)
        for partition in range(s.partitions):
            if partition not in routed and marked.get(partition) != marks:
                pending.append(
                    await account_events.send(
                        key=str(partition).encode(),
                        value=b"[]",
                        partition=partition,
                        headers=headers,
                        force=True,
                    )
                )
                marked[partition] = marks
        await asyncio.gather(*pending)  # Kafka has them all: now the input may be committed
        stream = streams.get("input")
        for token in done:
            await stream.ack(token)
        unkeyed_messages.difference_update(done)
        m.events_held.set(reorder.held)

    # the per-message counters' children, looked up once per input topic and event type
    # (both bounded: the settings' topics, the contract's types): ``labels`` costs
    # ~1.5 µs a call, ~3.6 µs of each one-event message with the Counter (~1.5% of it)
    consumed, typed = children(m.messages_consumed), children(m.events_consumed)

    async def ingest(stream: Any) -> None:
        stream = streams["input"] = stream.noack()
        async for ev in stream.events():
            msg = ev.message
            if not read_again(app, msg):  # past a message given back: that one goes first
                m.given_back.labels("ingest").inc(give_back(app, [msg]))
                if not rt.stopping:
                    rewind(app, [msg.tp])
                continue
            delivered[msg.tp] = msg.offset + 1
            consumed(msg.topic).inc()
            events, dead = parse_message(
                msg.value, topic=msg.topic, partition=msg.partition, offset=msg.offset,
                max_bytes=s.max_message_bytes, check_ts=policy.checker(),
            )  # fmt: skip
            if dead:
                await asyncio.gather(*[await send_dead(bad) for bad in dead])
            events = [pseudonymise(coarsen(e, grid_km)) for e in events]
            if len(events) == 1:  # (one event per message: no Counter)
                typed(msg.topic, events[0].type).inc()
            else:
                for event_type, n in Counter(e.type for e in events).items():
                    typed(msg.topic, event_type).inc(n)
            if events and not keyed_by_account(msg.key, events):
                note_unaligned(len(events))
                unkeyed_messages.add(ev)
            async with lock:
                reorder.add(msg.tp, events, token=ev, now_ms=_now_ms())
                if reorder.settle(ev):
                    await stream.ack(ev)
                if rt.stopping:  # read after the drain, and Faust's timers have stopped:
                    hand_back()  # or its stop waits for it forever
                elif reorder.held >= HELD_HIGH_WATER and not revoking(app):
                    await forward()  # otherwise the timer sends, in larger batches

    def hand_back() -> None:
        """Give what is held back to Kafka, unacknowledged (``faust_compat.give_back``):
        whoever reads its partitions next reads it again. At a rebalance its sources are
        paused (waiting would stall the rebalance, sending would report them idle); at
        a stop, sending it ahead of the partitions not read yet would make theirs late."""
        held = [ev.message for ev in reorder.give_back()]
        unkeyed_messages.clear()
        m.given_back.labels("ingest").inc(give_back(app, held))
        m.events_held.set(reorder.held)

    async def flush() -> None:
        """Send what the frontier allows; at a rebalance or a stop, give back what is
        held (a report made while the consumer stops would take a partition it no
        longer sees for caught up, and let the others go ahead of its unread input)."""
        if "input" not in streams:
            return
        async with lock:
            if revoking(app) or rt.stopping:
                hand_back()
            else:
                await forward()

    async def drain() -> None:
        """Before a graceful stop: give back what is held, so Faust's stop waits for no
        message read, and whoever reads these partitions next reads it again."""
        consumer: Any = app.consumer
        try:
            assigned = sum(tp.topic in s.input_topics for tp in consumer.assignment())
        except Exception:  # noqa: BLE001 - the consumer not started: nothing is held
            assigned = 0
        busy = ", rebalancing" if rebalancing(app) else ""
        log.info("stopping: %d input partitions assigned (in group generation %s, the "
                 "group's now %s%s)", assigned, generation(app), group_generation(app),
                 busy)  # fmt: skip
        if "input" in streams:
            async with lock:
                hand_back()

    rt.drain = drain

    async def on_assigned(sender: object, assigned: set[Any], **kwargs: object) -> None:
        log.info("rebalance: %d input partitions assigned (%d partitions in all)",
                 sum(tp.topic in s.input_topics for tp in assigned), len(assigned))  # fmt: skip
        now = _now_ms()
        inputs = {tp for tp in assigned if tp.topic in s.input_topics}
        for tp in inputs:
            reorder.expect(tp, now)
        if inputs != reading:  # other partitions: their merged clock starts again
            merged.restart()
            reading.clear()
            reading.update(inputs)

    async def on_revoked(sender: object, revoked: set[Any], **kwargs: object) -> None:
        if revoked and not rt.stopping:
            log.info("rebalance: %d input partitions revoked",
                     sum(tp.topic in s.input_topics for tp in revoked))  # fmt: skip
        for tp in revoked:
            reorder.forget(tp)
            delivered.pop(tp, None)

    async def on_stopped(sender: object, **kwargs: object) -> None:
        """What the stop committed, for the operator (and the shutdown tests' failures).
        Faust books a commit as asked for: one Kafka refused (a worker expelled from its
        group) is in the log as aiokafka's ``OffsetCommit failed`` error."""
        committed = Counter[str]()
        for tp, offset in commits_asked(app).items():
            if tp.topic in s.input_topics:
                committed[tp.topic] += offset
        back = {f"{tp.topic}[{tp.partition}]": offset for tp, offset in given_back(app).items()}
        log.info("stopped: input commits asked for up to %s (offsets summed over partitions); "
                 "given back from %s", dict(committed) or "nothing", back or "none")  # fmt: skip

    app.on_partitions_assigned.connect(on_assigned)
    app.on_partitions_revoked.connect(on_revoked)
    app.on_before_shutdown.connect(on_stopped)
    app.agent(rt.topics.input, name="churnwatch.ingest", supervisor_strategy=CRASH)(ingest)
    app.timer(FLUSH_EVERY_S, name="churnwatch.ingest_flush")(flush)
