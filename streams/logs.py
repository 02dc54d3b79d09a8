"""Logging setup: text or JSON lines, level from settings; chatty libraries kept at WARNING.

aiokafka and faust build ``log.debug`` records on their send path even when the
worker runs at warn level (DESIGN.md: ~65 µs per send), so their loggers are
pinned to WARNING unless churnwatch itself runs at debug.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

import orjson

CHATTY = ("aiokafka", "faust", "mode", "kafka", "aiohttp.access")


class JsonFormatter(logging.Formatter):
    converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc).decode()


class Throttle(logging.Filter):
    """At most one line per ``every_s`` for each repeated library message.

    A broker down for 24 s made aiokafka, Faust and mode log ~300,000 ERROR lines
    (30.8 MB; issue #13): each retry, for each connection, with a traceback. This
    keeps the first line of each kind (logger, message template and its first
    argument, which names the connection or partition) per window and counts the
    rest into the next one it lets through. churnwatch's own loggers are not touched.

    >>> t, now = Throttle(every_s=10, clock=lambda: now[0]), [0.0]
    >>> def line(n):
    ...     r = logging.LogRecord("aiokafka", 40, "", 1, "Unable connect to %r", (n,), None)
    ...     return r.getMessage() if t.filter(r) else None
    >>> [line("node-1"), line("node-1"), line("node-2"), line("node-1")]
    ["Unable connect to 'node-1'", None, "Unable connect to 'node-2'", None]
    >>> now[0] = 10.5
    >>> line("node-1")
    "Unable connect to 'node-1' (2 more like it in the last 10 s)"
    """

    MAX_KINDS = 1_000  # forget the oldest kinds beyond this many

    def __init__(self, every_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every_s, self.clock = every_s, clock
        self._kinds: dict[tuple[str, str, str], list[float]] = {}  # kind -> [last, dropped]

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(CHATTY):
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        kind = (record.name, str(record.msg), repr(args[0])[:200] if args else "")
        now = self.clock()
        seen = self._kinds.get(kind)
        if seen is not None and now - seen[0] < self.every_s:
            seen[1] += 1
            return False
        if seen is not None and seen[1]:
            record.msg = (
                f"{record.getMessage()} ({int(seen[1])} more like it in the last "
                f"{self.every_s:.0f} s)"
            )
            record.args = None
        if seen is None and len(self._kinds) >= self.MAX_KINDS:
            del self._kinds[next(iter(self._kinds))]
        self._kinds[kind] = [now, 0]
        return True


def level_number(level: str) -> int:
    name = level.upper()
    return logging.WARNING if name == "WARN" else logging.getLevelName(name)


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(Throttle())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level_number(level))
    if level_number(level) > logging.DEBUG:
        for name in CHATTY:
            logging.getLogger(name).setLevel(logging.WARNING)
