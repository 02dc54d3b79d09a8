"""Consumer lag per assigned partition, for ``churnwatch_consumer_lag_messages``.

Every ``EVERY_S`` seconds: for each partition this worker consumes, the
partition's high watermark minus the committed offset (messages not yet
processed and committed; before the first commit, minus the log start).
Series of partitions no longer assigned are removed.

Also ``churnwatch_event_loop_delay_seconds``: how late a ``LOOP_PROBE_S`` timer runs.
Everything of a worker shares one event loop, so while CPU work holds it (a step of
the engine, encoding states, a large release of the input merge) HTTP requests,
Kafka heartbeats and commits wait that long.
"""

from __future__ import annotations

import time
from typing import Any

from streams.faust_compat import committed_offset
from streams.runtime import Runtime

EVERY_S = 5.0
LOOP_PROBE_S = 0.25


def register(rt: Runtime) -> None:
    app, gauge = rt.app, rt.metrics.consumer_lag
    watched = {
        *rt.settings.input_topics,
        rt.settings.account_events_topic,
        rt.settings.training_topic,
    }
    shown: set[tuple[str, str]] = set()

    async def measure() -> None:
        consumer: Any = app.consumer
        tps = [tp for tp in consumer.assignment() if tp.topic in watched]
        if not tps:
            return
        highwaters = await consumer.highwaters(*tps)
        uncommitted = [tp for tp in tps if committed_offset(consumer, tp) is None]
        # nothing committed yet: everything since the start of the log is still to do (the
        # fetch position would say 0 while fetched messages wait unprocessed in buffers)
        earliest = await consumer.earliest_offsets(*uncommitted) if uncommitted else {}
        current = set()
        for tp in tps:
            committed = committed_offset(consumer, tp)
            if committed is None:
                committed = earliest.get(tp, 0)
            labels = (tp.topic, str(tp.partition))
            gauge.labels(*labels).set(max(0, highwaters.get(tp, 0) - committed))
            current.add(labels)
        for labels in shown - current:
            gauge.remove(*labels)
        shown.clear()
        shown.update(current)

    app.timer(EVERY_S, name="churnwatch.consumer_lag")(measure)

    last: list[float] = []

    async def probe() -> None:
        """Observe how much later than its interval the timer ran (mode's timers keep
        their rhythm, so a late call is time the loop was held)."""
        now = time.monotonic()
        if last:
            rt.metrics.loop_delay.observe(max(0.0, now - last[0] - LOOP_PROBE_S))
        last[:] = [now]

    app.timer(LOOP_PROBE_S, name="churnwatch.loop_probe")(probe)
