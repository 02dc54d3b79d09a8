"""The simulator's side of the loop: read churnwatch's alerts while the events go out.

``simulate --kafka`` passes an :class:`AlertFeed` as the ``alerts`` callable of
``models.simulator.simulate``: before the simulator lives day ``d`` it returns the
``risk-alerts`` messages read since its last call, and the households of the alerted
accounts answer them at the start of day ``d`` (``models/simulator/reactions.py``).

A simulator runs days of event time per second, so an alert comes back from the
worker days of event time after the events that raised it. With ``lag_days`` the feed
paces the simulator to the worker: before day ``d`` it waits until the worker's output
(the event time of its ``risk-scores`` and ``risk-alerts`` records) has reached the
start of day ``d - lag_days``, flushing the sink's held batches first (the worker
cannot get past them). A worker whose output has not moved for ``wait_s`` seconds is
not waited for any more (the run goes on freely, with a note on stderr).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO, Any, Protocol

import orjson

from models.contract import parse_ts
from models.simulator import is_alert
from models.simulator.world import DAY_MS


class Source(Protocol):
    def poll(self, timeout_s: float) -> list[tuple[str, bytes | None]]:
        """(topic, value) of the records read within ``timeout_s``."""
        ...

    def close(self) -> None: ...


class AlertFeed:
    """``feed(d)``: the alerts read since the last call (see the module docstring)."""

    def __init__(
        self,
        source: Source,
        alerts_topic: str,
        start_ms: int,
        *,
        lag_days: float | None = None,
        wait_s: float = 60.0,
        flush: Callable[[], None] = lambda: None,
        log: IO[str] | None = sys.stderr,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source, self._alerts_topic, self._start = source, alerts_topic, start_ms
        self._lag, self._wait_s, self._flush, self._log = lag_days, wait_s, flush, log
        self._clock = clock
        self._inbox: list[dict[str, Any]] = []
        self.progress_ms = -1  # event time the worker's output has reached
        self.alerts_read = 0
        self.waited_s = 0.0

    def __call__(self, day: int) -> list[dict[str, Any]]:
        self._read(0.0)
        if self._lag is not None and day > self._lag:
            self._pace(self._start + int((day - self._lag) * DAY_MS))
        alerts, self._inbox = self._inbox, []
        return alerts

    def _pace(self, target_ms: int) -> None:
        if self.progress_ms >= target_ms:
            return
        self._flush()  # held batches: the worker cannot pass them
        started = since = self._clock()
        last = self.progress_ms
        while self.progress_ms < target_ms:
            self._read(0.2)
            now = self._clock()
            if self.progress_ms > last:
                last, since = self.progress_ms, now
            elif now - since >= self._wait_s:
                if self._log is not None:
                    self._log.write(
                        f"simulate: the worker's output has not moved for {self._wait_s:g}s;"
                        " not waiting for it any more\n"
                    )
                self._lag = None
                break
        self.waited_s += self._clock() - started

    def _read(self, timeout_s: float) -> None:
        for topic, value in self._source.poll(timeout_s):
            if value is None:  # a tombstone (an erased account)
                continue
            try:
                message = orjson.loads(value)
                ts = parse_ts(message["ts"])
            except (orjson.JSONDecodeError, TypeError, ValueError, KeyError):
                continue
            self.progress_ms = max(self.progress_ms, ts)
            if topic == self._alerts_topic and isinstance(message, dict) and is_alert(message):
                self.alerts_read += 1
                self._inbox.append(message)

    def close(self) -> None:
        self._source.close()


class KafkaSource:
    """Records of ``topics`` written after it started: their partitions are read from
    the end as found at start-up, and a topic created later from its beginning."""

    def __init__(self, bootstrap_servers: str | list[str], topics: list[str], **config: Any):
        from kafka import KafkaConsumer

        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False,
            **config,
        )  # fmt: skip
        self._topics = topics
        self._found: set[str] = set()
        self._looked = 0.0
        self._find(at_start=True)

    def _find(self, at_start: bool = False) -> None:
        from kafka import TopicPartition

        self._looked = time.monotonic()
        new = []
        for topic in self._topics:
            if topic in self._found:
                continue
            partitions = self._consumer.partitions_for_topic(topic)
            if partitions:
                self._found.add(topic)
                new += [TopicPartition(topic, p) for p in sorted(partitions)]
        if not new:
            return
        self._consumer.assign(sorted(self._consumer.assignment(), key=str) + new)
        if at_start:  # what is there already belongs to earlier runs
            self._consumer.seek_to_end(*new)
            for tp in new:
                self._consumer.position(tp)  # resolve the end now, not at the first poll
        else:
            self._consumer.seek_to_beginning(*new)

    def poll(self, timeout_s: float) -> list[tuple[str, bytes | None]]:
        if len(self._found) < len(self._topics) and time.monotonic() - self._looked > 2.0:
            self._find()
        if not self._found:
            if timeout_s:
                time.sleep(timeout_s)
            return []
        batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000))
        return [(tp.topic, r.value) for tp, records in batches.items() for r in records]

    def close(self) -> None:
        self._consumer.close()
