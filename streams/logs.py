"""Logging setup: text or JSON lines, level from settings; chatty libraries kept at WARNING.

aiokafka and faust build ``log.debug`` records on their send path even when the
worker runs at warn level (DESIGN.md: ~65 µs per send), so their loggers are
pinned to WARNING unless churnwatch itself runs at debug.
"""

from __future__ import annotations

import logging
import sys
import time

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


def level_number(level: str) -> int:
    name = level.upper()
    return logging.WARNING if name == "WARN" else logging.getLevelName(name)


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level_number(level))
    if level_number(level) > logging.DEBUG:
        for name in CHATTY:
            logging.getLogger(name).setLevel(logging.WARNING)
