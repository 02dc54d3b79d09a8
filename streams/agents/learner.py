"""Learner agent and model snapshots.

Training examples from every account partition meet in the single-partition
training topic, so exactly one worker at a time learns (single writer per
model). Each example is scored before it is learned (``OnlineLearner``); the
learner publishes versioned snapshots to the ``models`` global table every
``CHURNWATCH_MODEL_SNAPSHOT_S`` seconds (2 s), which every worker reads (and which is the
checkpoint a restarted learner resumes from). A training message is acknowledged
only once a snapshot that learned it has been written (``noack_take`` plus
``checkpoint``), and Faust flushes the producer before it commits, so a hard kill
loses no example: what the last snapshot lacks is delivered again. Each snapshot
carries the training offset its model learns on from (``learned_offset``), so
the resumed learner skips the re-delivered messages it already holds, and learns
each example exactly once (its small memory of recent example ids only drops
what the account agent published twice). A worker that loses the training
partition drops its in-memory learners; the next owner resumes from the table.

The learner also keeps the probability each example got before it was learned, the
last ``models.quality.WINDOW`` per model (``rt.quality``), for the ``/quality`` page
(``streams.web``). Only in memory: the signed snapshots stay small, and the page says
it shows what this learner learned since it started (a revoke empties it).

The table's changelog is ``Settings.models_topic`` (compacted, key = model
kind, value = ``OnlineLearner`` snapshot signed with ``CHURNWATCH_MODEL_KEY``),
which ``churnwatch models export`` reads. A snapshot or an import not signed with
the key is skipped and counted (``bad_signature``), never unpickled.
``churnwatch models import`` does not write there: it sends an import record
(``models.learner.import_record``) through the training topic, so the learner
stays the table's only writer; it replaces its model with the imported one, in
order with the examples around it, and learns on from it (the imported learner
learns on from the offset after the import record, so a re-delivered
import never replaces a model that has learned past it, and its version continues
from the current model's, so model ids never go back: ``adopt_import``). With
``CHURNWATCH_LEARN=false`` the learner applies imports and learns nothing.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from models.engine import KINDS, published_sharing
from models.learner import OnlineLearner, adopt_import, read_training
from models.quality import Window
from streams.report import as_scored
from streams.runtime import CRASH, Runtime
from streams.snapshots import export_model_metrics, model_key

log = logging.getLogger(__name__)


def register(rt: Runtime) -> None:
    app, m, s = rt.app, rt.metrics, rt.settings
    skips, cache = rt.skips, rt.models
    engine = s.engine_config()  # the sharing scores of /quality, as the engine publishes them
    table = cache.table  # the models global table: this agent is its only writer
    key = cache.key  # snapshots are signed with it (CHURNWATCH_MODEL_KEY)
    learners: dict[str, OnlineLearner] = {}
    changed: set[str] = set()
    pending: list[Any] = []  # events learned and not yet in a snapshot: acked once they are
    streams: dict[str, Any] = {}
    rt.quality = Window(started_ms=int(time.time() * 1000))
    if not s.learn:
        log.info("CHURNWATCH_LEARN=false: scoring with the current model snapshots, not learning")

    def learner_for(kind: str) -> OnlineLearner:
        if kind not in learners:  # resume from the newest snapshot
            learners[kind] = getattr(cache.current(), kind)
        return learners[kind]

    def learn(by_kind: dict[str, list[tuple[int, dict[str, Any]]]]) -> None:
        for kind, items in by_kind.items():
            lrn = learner_for(kind)
            # re-delivered after a restart, and already in the snapshot it resumed from
            examples = [ex for offset, ex in items if not lrn.has_learned(offset)]
            if len(examples) < len(items):
                m.training_redelivered.labels(kind).inc(len(items) - len(examples))
            # score the whole burst, then learn it (honest prequential metrics)
            batch_in = [(ex["features"], ex["label"], ex["example_id"]) for ex in examples]
            before, seen = lrn.learned_offset, lrn.examples

            def scored(
                i: int,
                p: float,
                examples: list[dict[str, Any]] = examples,
                kind: str = kind,
                seen: int = seen,  # the labels the model had learned when it gave p
            ) -> None:
                if kind == "sharing":  # the score published and alerted on, not the model's
                    p = published_sharing(examples[i]["features"], p, seen, engine)
                rt.quality.add(as_scored(examples[i], p))

            try:
                learned = lrn.learn_many(batch_in, offset=items[-1][0], scored=scored)
                if learned or lrn.learned_offset != before:
                    changed.add(kind)
            except Exception as exc:  # noqa: BLE001 - the examples are skipped, never fatal
                why = f"{type(exc).__name__}: {exc}"
                skips.skip("training", "learn_failed", f"{len(examples)} {kind} examples", why)
                continue
            for ex in examples:
                delay_ms = ex.get("labelled_ts", ex["snapshot_ts"]) - ex["snapshot_ts"]
                m.label_delay.labels(kind).observe(max(0.0, delay_ms / 1000))
        by_kind.clear()

    async def learner(stream: Any) -> None:
        streams["training"] = stream
        async for batch in stream.noack_take(1000, within=0.5):
            by_kind: dict[str, list[tuple[int, dict[str, Any]]]] = {}
            for ev in batch:
                offset = ev.message.offset
                msg = read_training(ev.message.value, KINDS, key)
                for kind, why in msg.problems:  # skipped, never fatal (it would come again)
                    skips.skip("training", kind, f"offset {offset}", why)
                if msg.imported is not None:  # what came before it was learned by the old model
                    learn(by_kind)
                    kind, model = msg.imported
                    if learner_for(kind).has_learned(offset):  # re-delivered: applied already
                        continue
                    imported_id = model.model_id
                    # it learns on from after the import, its version after the current one
                    learners[kind] = adopt_import(learners[kind], model, offset)
                    changed.add(kind)
                    log.info("model %s: replaced by an imported %s", kind, imported_id)
                elif s.learn:
                    for ex in msg.examples:
                        by_kind.setdefault(ex["model"], []).append((offset, ex))
            learn(by_kind)
            pending.extend(batch)
            if rt.stopping:  # read after the last checkpoint: checkpoint again, so it is acked
                await checkpoint()

    async def checkpoint() -> None:
        """Write a snapshot of each changed model, then acknowledge what it learned."""
        done = pending[:]
        pending.clear()
        for kind in sorted(changed):
            table[model_key(kind)] = raw = learners[kind].snapshot(key)
            m.model_snapshot_bytes.labels(kind).set(len(raw))
            export_model_metrics(m, learners[kind])
        changed.clear()
        for ev in done:
            await streams["training"].ack(ev)

    rt.checkpoint = checkpoint

    async def on_revoked(sender: object, revoked: set[Any], **kwargs: object) -> None:
        if any(tp.topic == s.training_topic for tp in revoked):
            learners.clear()  # unacked examples go to the next owner, with the table's snapshot
            rt.quality = Window(started_ms=int(time.time() * 1000))  # its page is elsewhere now
            cache.raw = dict.fromkeys(KINDS)  # and a copy of it, not a learner that went on
            changed.clear()
            pending.clear()

    app.on_partitions_revoked.connect(on_revoked)
    app.agent(rt.topics.training, name="churnwatch.learner", supervisor_strategy=CRASH)(learner)
    app.timer(s.model_snapshot_s, name="churnwatch.snapshot")(checkpoint)
