"""Where simulated or replayed events go: JSONL files or Kafka, at a rate, with progress.

The generator itself is pure (``models.simulator``); this module is its I/O edge:
``JsonlSink`` and ``KafkaSink`` (kafka-python producer, key = account_id, or
JSON-array batches), a ``RateLimiter`` on the event count, a rate-limited
``Progress`` line on stderr, and ``replay`` of JSONL files.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

import orjson

from models.contract import parse_message, parse_ts, topic_kind


class Sink(Protocol):
    def send(self, value: bytes, account_id: str, event_type: str, ts: object = None) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    """One event per line, in the order given."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "wb", buffering=1 << 20)  # noqa: SIM115 - closed in close()

    def send(self, value: bytes, account_id: str, event_type: str, ts: object = None) -> None:
        self._file.write(value + b"\n")

    def close(self) -> None:
        self._file.close()


# How long, in event time, a batch may hold an event while later events go out. A
# simulation or a replay runs days of event time per second: batches filled by count
# alone span hours of event time for a sparse topic (subscription events), and a
# partition that waits for its first full batch looks idle to the worker's input merge
# (wall-clock rule) while the others run ahead; its events then arrive later than the
# worker's lateness (1 h by default) and are dropped as late. A producer in production
# sends within its linger of wall time, which is the same bound in event time.
HOLD_MS = 10 * 60_000


TRANSACTION_MESSAGES = 500  # messages per transaction of a transactional KafkaSink


class KafkaSink:
    """Sends to the contract topic of each event type: one event per message keyed by
    ``account_id``, or (``batch`` > 1) JSON arrays of up to ``batch`` events without a
    key, each array sent once full or once the stream is ``hold_ms`` of event time past
    its first event (events given in event time order, as ``pump`` does).

    With a ``transactional_id`` (producer config) it writes as an exactly-once producer
    does: in transactions of ``TRANSACTION_MESSAGES`` messages, each committed when full
    and at :meth:`flush`, so the input holds a commit marker after every one of them.
    """

    def __init__(
        self,
        bootstrap_servers: str | list[str],
        topics: dict[str, str],
        batch: int = 1,
        hold_ms: int = HOLD_MS,
        **producer_config: Any,
    ) -> None:
        from kafka import KafkaProducer

        if not 1 <= batch <= 1000:
            raise ValueError("batch must be within 1..1000 (the contract's limit)")
        config = {"linger_ms": 20, "batch_size": 512 * 1024, "acks": 1, "compression_type": "gzip"}
        self._transactional = bool(producer_config.get("transactional_id"))
        if self._transactional:
            config["acks"] = "all"  # what a transactional producer needs
        config.update(producer_config)
        self._producer = KafkaProducer(bootstrap_servers=bootstrap_servers, **config)
        if self._transactional:
            self._producer.init_transactions()
        self._in_transaction = 0  # messages sent in the open transaction
        self._topics, self._batch, self._hold = topics, batch, hold_ms
        self._buffers: dict[str, list[bytes]] = {kind: [] for kind in topics}
        self._since: dict[str, int] = {}  # kind -> event time of its buffer's first event
        self.messages = 0
        self.errors: list[Exception] = []

    def send(self, value: bytes, account_id: str, event_type: str, ts: object = None) -> None:
        kind = topic_kind(event_type)
        if self._batch == 1:
            self._send(kind, value, account_id.encode())
            return
        if ts is not None:
            ms = parse_ts(ts)
            for held, since in list(self._since.items()):
                if ms - since >= self._hold:
                    self._flush(held)
            self._since.setdefault(kind, ms)
        buffer = self._buffers[kind]
        buffer.append(value)
        if len(buffer) >= self._batch:
            self._flush(kind)

    def _flush(self, kind: str) -> None:
        buffer = self._buffers[kind]
        self._since.pop(kind, None)
        if buffer:
            self._send(kind, b"[" + b",".join(buffer) + b"]", None)
            buffer.clear()

    def _send(self, kind: str, value: bytes, key: bytes | None) -> None:
        if self._transactional and not self._in_transaction:
            self._producer.begin_transaction()
        future = self._producer.send(self._topics[kind], value=value, key=key)
        future.add_errback(self.errors.append)
        self.messages += 1
        if self._transactional:
            self._in_transaction += 1
            if self._in_transaction >= TRANSACTION_MESSAGES:
                self._commit()

    def _commit(self) -> None:
        self._producer.commit_transaction()  # (flushes first)
        self._in_transaction = 0

    def flush(self) -> None:
        """Send the held batches now, and wait until the broker has every message (with
        transactions: commit the open one)."""
        for kind in self._buffers:
            self._flush(kind)
        if self._in_transaction:
            self._commit()
        self._producer.flush()

    def close(self) -> None:
        self.flush()
        self._producer.close()
        if self.errors:
            raise RuntimeError(f"{len(self.errors)} Kafka sends failed, first: {self.errors[0]!r}")


class RateLimiter:
    """Paces calls to ``wait()`` to ``rate`` per second (None: no limit)."""

    def __init__(
        self,
        rate: float | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._rate, self._clock, self._sleep = rate, clock, sleep
        self._start = clock()
        self._count = 0

    def wait(self) -> None:
        if self._rate is None:
            return
        self._count += 1
        ahead = self._count / self._rate - (self._clock() - self._start)
        if ahead > 0.005:  # sleep in slices of a few ms, not per event
            self._sleep(ahead)


class Progress:
    """``label: 412,000 events, 98,000/s, event time 2026-03-04, 41%, ETA 1m05s`` at
    most every ``every_s``. The share done comes from the bytes read of ``total_bytes``
    (files) or from event time within ``span_ms`` (a simulation); without either the
    line has no share and no ETA."""

    def __init__(
        self,
        label: str,
        stream: IO[str] | None = sys.stderr,
        every_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        total_bytes: int | None = None,
        span_ms: tuple[int, int] | None = None,
    ) -> None:
        self._label, self._stream, self._every, self._clock = label, stream, every_s, clock
        self._total_bytes, self._span = total_bytes, span_ms
        self._start = self._last = clock()
        self.count = 0
        self.bytes = 0

    def tick(self, ts: object = None, nbytes: int = 0) -> None:
        self.count += 1
        self.bytes += nbytes
        if self._stream is not None and self.count & 1023 == 0:
            now = self._clock()
            if now - self._last >= self._every:
                self._last = now
                self._write(ts, "\n")

    def done(self, ts: object = None, extra: str = "") -> None:
        if self._stream is not None:
            self._write(ts, f"{extra}, done\n", finished=True)

    def fraction(self, ts_ms: int | None) -> float | None:
        """The share done (0..1), if the total is known.

        >>> Progress("p", None, total_bytes=400).fraction(None)
        0.0
        >>> Progress("p", None, span_ms=(0, 1000)).fraction(250)
        0.25
        """
        if self._total_bytes:
            return min(self.bytes / self._total_bytes, 1.0)
        if self._span is not None and ts_ms is not None:
            start, end = self._span
            return min(max((ts_ms - start) / max(end - start, 1), 0.0), 1.0)
        return None

    def _write(self, ts: object, end: str, finished: bool = False) -> None:
        assert self._stream is not None
        elapsed = max(self._clock() - self._start, 1e-9)
        line = f"{self._label}: {self.count:,} events, {self.count / elapsed:,.0f}/s"
        ts_ms = None
        if ts is not None:
            try:
                ts_ms = parse_ts(ts)
                day = datetime.fromtimestamp(ts_ms / 1000, UTC).date()
                line += f", event time {day.isoformat()}"
            except (TypeError, ValueError):
                pass
        share = self.fraction(ts_ms)
        if share is not None and not finished:
            line += f", {share:.0%}"
            if share > 0:
                line += f", ETA {_duration(elapsed * (1 - share) / share)}"
        self._stream.write(line + end)
        self._stream.flush()


def _duration(seconds: float) -> str:
    """``1h02m``, ``3m05s`` or ``42s``.

    >>> _duration(3725), _duration(185), _duration(42.4)
    ('1h02m', '3m05s', '42s')
    """
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def pump(
    items: Iterable[tuple[bytes, str, str, object]],
    sink: Sink,
    limiter: RateLimiter,
    progress: Progress,
) -> None:
    """Send ``(value, account_id, type, ts)`` items to ``sink``, paced and counted."""
    ts: object = None
    for value, account_id, event_type, ts in items:
        limiter.wait()
        sink.send(value, account_id, event_type, ts)
        progress.tick(ts, len(value) + 1)  # + its line end, when read from a file
    progress.done(ts)


def encode_events(events: Iterable[dict[str, Any]]) -> Iterator[tuple[bytes, str, str, object]]:
    """Simulated event dicts as ``pump`` items."""
    for ev in events:
        yield orjson.dumps(ev), ev["account_id"], ev["type"], ev["ts"]


def read_jsonl(
    paths: Iterable[str | Path], on_skip: Callable[[str], None]
) -> Iterator[tuple[bytes, str, str, object]]:
    """Valid events of JSONL files as ``pump`` items, each line sent as it is.

    A line that is not one contract-valid JSON object is passed to ``on_skip`` as
    ``FILE:LINE: skipped: REASON`` and skipped; blank lines are ignored.
    """
    for path in paths:
        with open(path, "rb") as f:
            for lineno, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                reason = None
                if not line.startswith(b"{"):
                    reason = "not a JSON object"
                else:
                    events, dead = parse_message(line, topic=str(path), partition=0, offset=lineno)
                    if dead:
                        reason = dead[0].error
                if reason is not None:
                    on_skip(f"{path}:{lineno}: skipped: {reason}")
                    continue
                ev = events[0]
                yield line, ev.account_id, ev.type, ev.ts
