"""Records of churnwatch's own topics that cannot be read: counted, logged, skipped.

A worker must never stop on one bad record (a bug in a tool that writes the
training topic, a foreign writer, a changelog from an incompatible version):
every internal read goes through ``Skips.skip`` instead of raising into the
agent, whose supervisor would crash the worker, again after every restart.
"""

from __future__ import annotations

import logging
import time

from streams.metrics import Metrics

log = logging.getLogger(__name__)


class Skips:
    """Count each skipped record (``churnwatch_internal_records_skipped_total``) and log
    it with where it was, at most one line per (topic, kind) every ``every_s`` seconds.

    >>> skips = Skips(Metrics())
    >>> skips.skip("training", "not_json", "offset 7", "unexpected end of data")
    >>> skips.metrics.internal_skipped.labels("training", "not_json")._value.get()
    1.0
    """

    def __init__(self, metrics: Metrics, every_s: float = 60.0) -> None:
        self.metrics = metrics
        self.every_s = every_s
        self._logged: dict[tuple[str, str], tuple[float, int]] = {}  # last line, skipped since

    def skip(self, topic: str, kind: str, where: str, why: str) -> None:
        self.metrics.internal_skipped.labels(topic, kind).inc()
        now = time.monotonic()
        last, since = self._logged.get((topic, kind), (-self.every_s, 0))
        if now - last < self.every_s:
            self._logged[topic, kind] = (last, since + 1)
            return
        more = f" ({since} more skipped since the last line)" if since else ""
        log.error("skipped a record of the %s topic at %s: %s: %s%s", topic, where, kind, why, more)
        self._logged[topic, kind] = (now, 0)
