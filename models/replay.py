"""Replay a history through the whole pipeline in one process, without Kafka.

The same code as the worker — contract parsing, ``engine.process`` per
partition, and a learner that learns every example after it was scored — fed
from an iterable of contract events (simulator output or your own JSONL).
Benchmarks and quality tests use it; the worker's agents are the same functions
with Kafka around them.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from models.contract import Event, parse_message
from models.engine import EngineConfig, Models, Outputs, Shard, process
from models.household import PrefixCensus
from models.partitioning import partition_for
from models.privacy import Pseudonymiser, coarsen
from models.timepolicy import MergedClock


@dataclass
class ReplayResult:
    models: Models
    alerts: list[dict[str, Any]] = field(default_factory=list)
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)  # latest per account
    examples: int = 0
    # what the alerts achieved: (kind, action, outcome) -> count (models.outcomes)
    action_outcomes: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    events: int = 0
    applied: int = 0
    dead_letters: int = 0
    failed: int = 0  # valid events (or account scorings) our own code raised on
    seconds: float = 0.0
    clock_ms: int = 0

    def digest(self) -> str:
        """A hash of everything the replay gave (alerts, each account's last score, the
        counts, what the alerts achieved; not the time it took): equal runs, equal digests."""
        outputs = [self.alerts, sorted(self.scores.items()),
                   [self.events, self.applied, self.dead_letters, self.failed, self.examples,
                    self.clock_ms],
                   sorted((list(k), v) for k, v in self.action_outcomes.items())]  # fmt: skip
        return hashlib.sha256(orjson.dumps(outputs)).hexdigest()


def replay(
    events: Iterable[dict[str, Any]],
    *,
    cfg: EngineConfig | None = None,
    models: Models | None = None,
    partitions: int = 8,
    batch: int = 1000,
    on_outputs: Callable[[Outputs], None] | None = None,
    on_examples: Callable[[list[dict[str, Any]], Models], None] | None = None,
    pseudonymiser: Pseudonymiser | None = None,
) -> ReplayResult:
    """Run ``events`` (contract dicts, in arrival order) through parse, state, scores, learning.

    ``on_outputs`` sees each batch's outputs after the learner learned its examples;
    ``on_examples`` sees the examples with the models before they learn them.
    Coordinates are coarsened to ``cfg.geo_grid_km`` after parsing, and ``pseudonymiser``
    replaces identifiers, as the worker's ingest does.

    >>> from models.simulator import SimConfig, simulate
    >>> r = replay(simulate(SimConfig(accounts=20, days=20, seed=1)))
    >>> r.applied > 0 and len(r.scores) == 20 and r.failed == 0
    True
    """
    cfg = cfg or EngineConfig()
    result = ReplayResult(models=models or Models.fresh())
    shards = [Shard() for _ in range(partitions)]
    census = PrefixCensus()  # one per process, shared by its partitions, as in a worker
    check_ts = cfg.time.checker()  # the accepted range of event times, as at ingest
    merged = MergedClock(cfg.time)  # the replayed sequence is the merged input
    pending: list[Event] = []
    started = time.perf_counter()

    def flush() -> None:
        by_partition: dict[int, list[Event]] = {}
        for e in pending:
            p = partition_for(e.account_id, partitions)  # as the live worker routes it
            by_partition.setdefault(p, []).append(e)
        pending.clear()
        out = Outputs()
        for p, part in by_partition.items():
            result.applied += process(shards[p], part, result.models, cfg, out, census)[0]
        if on_examples is not None and out.examples:
            on_examples(out.examples, result.models)
        for kind in ("churn", "sharing"):  # the learner: score the batch, then learn it
            batch_in = [(x["features"], x["label"], x["example_id"]) for x in out.examples]
            result.models.get(kind).learn_many(
                [b for b, x in zip(batch_in, out.examples, strict=True) if x["model"] == kind]
            )
        result.examples += len(out.examples)
        result.failed += len(out.failed)
        result.alerts += out.alerts
        result.action_outcomes.update(out.action_outcomes)
        for account_id in out.erased:  # account_erased: its latest score is a tombstone
            result.scores.pop(account_id, None)
        for s in out.scores:
            result.scores[s["account_id"]] = s
        if on_outputs is not None:
            on_outputs(out)

    for i, raw in enumerate(events):
        result.events += 1
        parsed, dead = parse_message(
            orjson.dumps(raw), topic="replay", partition=0, offset=i,
            check_ts=check_ts,
        )  # fmt: skip
        wall = check_ts.wall_ms
        kept = [e for e in parsed if merged.admit(e.ts, wall_ms=wall) is None]
        if cfg.geo_grid_km:
            kept = [coarsen(e, cfg.geo_grid_km) for e in kept]
        if pseudonymiser is not None:
            kept = [pseudonymiser.event(e) for e in kept]
        result.dead_letters += len(dead) + len(parsed) - len(kept)
        pending += kept
        if len(pending) >= batch:
            flush()
    flush()
    result.clock_ms = max((s.clock for s in shards), default=0)
    result.seconds = time.perf_counter() - started
    return result
