"""The recovery watchdog: a table recovery that stopped reading is started again.

A worker is not ready until Faust's table recovery has read every changelog partition
it was assigned up to the partition's end (``faust.tables.recovery``). Two ways were
seen here in which it never gets there, and then the worker sits at ``/readyz`` 503
for good, its partitions unprocessed, while ``/healthz`` says 200:

- the broker went away while a recovery was starting (CI, once: the fault harness's
  broker restart 2 s after a rebalance). Faust logged "No event received for active
  tp ... since recovery start" for as long as the run lasted, though the broker was
  back and the partition held records to read;
- the changelog partition ends in records that carry no data (a transaction's commit
  or abort marker, written by a transactional producer: a mirror or a restore tool).
  The consumer's position passes them but no record with the last offset ever
  arrives, so the read offset never reaches the highwater. Faust handles this only in
  exactly-once mode; churnwatch runs at-least-once (``tests/integration/
  test_recovery_watchdog.py`` writes such a marker and shows it).

Every ``EVERY_S`` seconds, while a recovery runs, a partition that has had no record
for ``CHURNWATCH_RECOVERY_STALL_S`` (since the recovery started or since its last
record) is looked at, once the broker answers (an outage is not a stall: Kafka's own
retries cover it):

- its consumer position is at or past its end offset: everything it holds was read,
  the rest of the offsets are no records. It is counted as read (``read_to_end``);
- otherwise: the recovery is started again, as a rebalance does (``restarted``): the
  highwaters and the local store's offsets are taken again, the partitions sought to
  them and resumed (the test keeps a changelog partition paused, as a fetch that never
  resumed would: the restart resumes it and the recovery completes). After
  ``RESTARTS_BEFORE_EXIT`` restarts in a row that read nothing, the worker exits with an
  error (``gave_up``), for the orchestrator to start it again from its local store (a
  fresh consumer, the changelog tail replayed).

``churnwatch_recovery_stalls_total{action}`` counts each.

The watchdog is a service the app starts with its own (``add_dependency``), not an
``app.timer``: Faust starts its timers only once the first recovery has completed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import mode

from streams import faust_compat
from streams.faust_compat import Pending
from streams.runtime import Runtime

log = logging.getLogger(__name__)

EVERY_S = 5.0
RESTARTS_BEFORE_EXIT = 3
BROKER_WAIT_S = 5.0  # how long to wait for the end offsets and positions


class RecoveryStalled(RuntimeError):
    """The table recovery read nothing through several restarts."""


def stalled(
    pending: Sequence[Pending], started_at: float, now: float, stall_s: float
) -> list[Pending]:
    """The partitions that had no record for ``stall_s``, counted from the recovery's
    start or from their last record in it.

    >>> p = [Pending("a", 5, 9, None), Pending("b", 5, 9, 95.0)]
    >>> [x.tp for x in stalled(p, started_at=80.0, now=100.0, stall_s=10.0)]
    ['a']
    >>> [x.tp for x in stalled(p, started_at=80.0, now=106.0, stall_s=10.0)]
    ['a', 'b']
    >>> stalled(p, started_at=95.0, now=100.0, stall_s=10.0)
    []
    """
    return [
        p for p in pending
        if now - max(started_at, p.last_event_at if p.last_event_at is not None else started_at)
        >= stall_s
    ]  # fmt: skip


def read_to_end(position: int | None, end: int | None) -> bool:
    """The consumer's position is at or past the partition's end offset: nothing more
    will arrive (the offsets left are markers, not records).

    >>> read_to_end(21, 21), read_to_end(20, 21), read_to_end(None, 21), read_to_end(3, None)
    (True, False, False, False)
    """
    return position is not None and end is not None and position >= end


class Watchdog(mode.Service):
    """Calls ``check`` every ``EVERY_S`` seconds from the app's start."""

    mundane_level = "debug"  # no "Starting..." / "Stopping..." at info

    def __init__(self, check: Callable[[], Awaitable[None]], **kwargs: Any) -> None:
        self.check = check
        super().__init__(**kwargs)

    @mode.Service.timer(EVERY_S)
    async def _tick(self) -> None:
        await self.check()


def register(rt: Runtime) -> None:
    app, stalls = rt.app, rt.metrics.recovery_stalls
    stall_s = rt.settings.recovery_stall_s
    if stall_s <= 0:
        return
    # restarts in a row that read nothing, and the records read when the last one began
    restarts: dict[str, Any] = {"count": 0, "seen": None}

    async def watch() -> None:
        try:
            found = faust_compat.recovery_pending(app)
        except AttributeError:  # the tables are not set up yet
            return
        if found is None:
            restarts.update(count=0, seen=None)
            return
        started_at, pending = found
        seen = tuple(sorted((str(p.tp), p.offset) for p in pending))
        if restarts["seen"] is not None and seen != restarts["seen"]:
            restarts.update(count=0, seen=None)  # it read something since: not stuck
        late = stalled(pending, started_at, time.monotonic(), stall_s)
        if not late:
            return
        consumer: Any = app.consumer
        tps = [p.tp for p in late]
        try:
            ends = await asyncio.wait_for(consumer.highwaters(*tps), BROKER_WAIT_S)
            positions = [await asyncio.wait_for(consumer.position(tp), BROKER_WAIT_S) for tp in tps]
        except Exception as exc:  # noqa: BLE001 - the broker does not answer: not a stall
            log.debug("recovery watchdog: the broker does not answer (%r)", exc)
            return
        stuck = []
        for p, position in zip(late, positions, strict=True):
            if read_to_end(position, ends.get(p.tp)):
                log.warning(
                    "table recovery: %s has no record past offset %d but its end offset is "
                    "%s (transaction markers, not data): counted as read",
                    p.tp, p.offset, ends.get(p.tp),
                )  # fmt: skip
                faust_compat.count_as_read(app, p.tp, p.highwater)
                stalls.labels("read_to_end").inc()
            else:
                stuck.append((p, position, ends.get(p.tp)))
        if not stuck:
            return
        where = ", ".join(
            f"{p.tp.topic}[{p.tp.partition}] read to {p.offset}, position {pos}, end {end}"
            for p, pos, end in stuck
        )
        if restarts["count"] >= RESTARTS_BEFORE_EXIT:
            stalls.labels("gave_up").inc()
            log.error(
                "table recovery read nothing for %.0f s after %d restarts (%s): exiting, "
                "for the orchestrator to start the worker again",
                stall_s, restarts["count"], where,
            )  # fmt: skip
            try:
                raise RecoveryStalled(f"table recovery stalled: {where}")
            except RecoveryStalled as exc:  # raised, so that the crash log has a traceback
                await app.crash(exc)
            return
        restarts["count"] += 1
        restarts["seen"] = seen
        stalls.labels("restarted").inc()
        log.warning(
            "table recovery read nothing for %.0f s (%s): starting it again (%d of %d)",
            stall_s, where, restarts["count"], RESTARTS_BEFORE_EXIT,
        )  # fmt: skip
        faust_compat.restart_recovery(app)

    app.add_dependency(Watchdog(watch))
