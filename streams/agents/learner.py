"""Learner agent and model snapshots.

Training examples from every account partition meet in the single-partition
training topic, so exactly one worker at a time learns (single writer per
model). Each example is scored before it is learned (``OnlineLearner``); the
learner publishes versioned snapshots to the ``models`` global table every
``CHURNWATCH_MODEL_SNAPSHOT_S`` seconds (2 s), which every worker reads (and which is the
checkpoint a restarted learner resumes from). A training message is acknowledged
only once a snapshot that learned it has been written (``noack_take`` plus
``checkpoint``), and Faust flushes the producer before it commits, so a hard kill
loses no example: what the last snapshot lacks is delivered again, and the
learner's recent example ids drop what it already has. A worker that loses the
training partition drops its in-memory learners; the next owner resumes from
the table.

The table's changelog is ``Settings.models_topic`` (compacted, key = model
kind, value = ``OnlineLearner`` snapshot), which ``churnwatch models export``
reads. ``churnwatch models import`` does not write there: it sends an import
record (``models.learner.import_record``) through the training topic, so the
learner stays the table's only writer; it replaces its model with the imported
one, in order with the examples around it, and learns on from it. With
``CHURNWATCH_LEARN=false`` the learner applies imports and learns nothing.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import orjson

from models.engine import KINDS, Models
from models.learner import OnlineLearner, read_import
from streams.app import CRASH, Runtime
from streams.metrics import Metrics

log = logging.getLogger(__name__)

class ModelCache:
    """The newest model snapshots, deserialised only when a new one arrives."""

    def __init__(self, table: Any, metrics: Metrics) -> None:
        self.table = table
        self.metrics = metrics
        self.raw: dict[str, bytes | None] = dict.fromkeys(KINDS)
        self.models = Models.fresh()

    def current(self) -> Models:
        for kind in KINDS:
            raw = self.table.get(kind)
            if raw is not None and raw is not self.raw[kind]:
                self.raw[kind] = raw
                try:
                    learner = OnlineLearner.from_bytes(raw)
                except ValueError as exc:
                    log.error("ignoring an unreadable %s model snapshot: %s", kind, exc)
                    continue
                setattr(self.models, kind, learner)
                export_model_metrics(self.metrics, learner)
        return self.models


def export_model_metrics(m: Metrics, learner: OnlineLearner) -> None:
    stats = learner.metrics()
    name = learner.name
    m.model_version.labels(name).set(learner.version)
    m.model_examples.labels(name).set(stats["examples"])
    m.model_drifts.labels(name).set(stats["drifts"])
    for gauge, key in (
        (m.model_auc, "roc_auc"),
        (m.model_logloss, "log_loss"),
        (m.model_calibration_error, "ece"),
    ):
        if not math.isnan(stats[key]):
            gauge.labels(name).set(stats[key])


def register(rt: Runtime) -> None:
    app, m, s = rt.app, rt.metrics, rt.settings
    table = app.GlobalTable(
        "models",
        default=None,
        key_type=str,
        value_type=bytes,
        partitions=1,
        use_partitioner=True,  # written from a timer, outside any event
        help="Versioned model snapshots (models.learner.OnlineLearner), one key per model",
    )
    rt.tables["models"] = table
    cache = rt.services["models"] = ModelCache(table, m)
    learners: dict[str, OnlineLearner] = {}
    changed: set[str] = set()
    pending: list[Any] = []  # events learned and not yet in a snapshot: acked once they are
    streams: dict[str, Any] = {}
    if not s.learn:
        log.info("CHURNWATCH_LEARN=false: scoring with the current model snapshots, not learning")

    def learn(by_kind: dict[str, list[dict[str, Any]]]) -> None:
        for kind, examples in by_kind.items():
            if kind not in learners:  # resume from the newest snapshot
                learners[kind] = getattr(cache.current(), kind)
            # score the whole burst, then learn it (honest prequential metrics)
            batch_in = [(ex["features"], ex["label"], ex["example_id"]) for ex in examples]
            if learners[kind].learn_many(batch_in):
                changed.add(kind)
            for ex in examples:
                delay_ms = ex.get("labelled_ts", ex["snapshot_ts"]) - ex["snapshot_ts"]
                m.label_delay.labels(kind).observe(max(0.0, delay_ms / 1000))
        by_kind.clear()

    async def learner(stream: Any) -> None:
        streams["training"] = stream
        async for batch in stream.noack_take(1000, within=0.5):
            by_kind: dict[str, list[dict[str, Any]]] = {}
            for ev in batch:
                doc = orjson.loads(ev.message.value)
                try:
                    imported = read_import(doc)
                except ValueError as exc:
                    log.error("ignoring a model import at offset %d: %s", ev.message.offset, exc)
                    continue
                if imported is not None:  # what came before it was learned by the old model
                    learn(by_kind)
                    kind, model = imported
                    learners[kind] = model
                    changed.add(kind)
                    log.info("model %s: replaced by an imported %s", kind, learners[kind].model_id)
                elif s.learn:
                    for ex in doc:
                        by_kind.setdefault(ex["model"], []).append(ex)
            learn(by_kind)
            pending.extend(batch)
            if rt.stopping:  # read after the last checkpoint: checkpoint again, so it is acked
                await checkpoint()

    async def checkpoint() -> None:
        """Write a snapshot of each changed model, then acknowledge what it learned."""
        done = pending[:]
        pending.clear()
        for kind in sorted(changed):
            table[kind] = learners[kind].snapshot()
            export_model_metrics(m, learners[kind])
        changed.clear()
        for ev in done:
            await streams["training"].ack(ev)

    rt.services["checkpoint"] = checkpoint

    async def on_revoked(sender: object, revoked: set[Any], **kwargs: object) -> None:
        if any(tp.topic == s.training_topic for tp in revoked):
            learners.clear()  # unacked examples go to the next owner, with the table's snapshot
            cache.raw = dict.fromkeys(KINDS)  # and a copy of it, not a learner that went on
            changed.clear()
            pending.clear()

    app.on_partitions_revoked.connect(on_revoked)
    app.agent(rt.topics["training"], name="churnwatch.learner", supervisor_strategy=CRASH)(learner)
    app.timer(s.model_snapshot_s, name="churnwatch.snapshot")(checkpoint)
