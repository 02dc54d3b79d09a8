"""Model snapshots as every worker sees them: the ``models`` global table and its cache.

The learner (``streams.agents.learner``) writes versioned ``OnlineLearner`` snapshots
to the table; the account agent scores with :class:`ModelCache`, which deserialises a
snapshot only when a new one arrives. Both reach it through the runtime, so neither
agent imports the other.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from models.engine import KINDS, Models
from models.learner import OnlineLearner, SignatureError
from streams.metrics import Metrics
from streams.skips import Skips


def models_table(app: Any) -> Any:
    """The ``models`` global table: one raw key per model kind, replicated to every worker.

    ``recovery_buffer_size=1``: Faust applies the changelog records a worker reads in
    batches of this size (also after its recovery, while it follows the changelog as a
    standby), or at the next rebalance. At its default (1000) a snapshot written after a
    worker's last rebalance stayed in that buffer: a worker scored with an untrained
    model for good after a kill of the learner's worker right after a model import
    (issue #13, ``tests/integration/test_model_import_kill.py``). Faust's GlobalTable
    docstring asks for 1 as well. The table has two keys and a record every 2 s.
    """
    return app.GlobalTable(
        "models",
        default=None,
        key_type=bytes,  # raw: Faust decodes nothing it reads back from the changelog
        value_type=bytes,
        partitions=1,
        use_partitioner=True,  # written from a timer, outside any event
        recovery_buffer_size=1,  # every snapshot read is applied at once (see above)
        help="Versioned model snapshots (models.learner.OnlineLearner), one key per model",
    )


class ModelCache:
    """The newest model snapshots, deserialised only when a new one arrives."""

    def __init__(
        self, table: Any, metrics: Metrics, key: bytes, skips: Skips | None = None
    ) -> None:
        self.table = table
        self.key = key  # snapshots not signed with it are skipped, never unpickled
        self.metrics = metrics
        self.skips = skips or Skips(metrics)
        self.raw: dict[str, bytes | None] = dict.fromkeys(KINDS)
        self.models = Models.fresh()

    def current(self) -> Models:
        for kind in KINDS:
            raw = self.table.get(model_key(kind))
            if raw is not None and raw is not self.raw[kind]:
                self.raw[kind] = raw
                try:
                    learner = OnlineLearner.from_bytes(raw, self.key)
                except ValueError as exc:  # the last good snapshot (or a fresh model) stays
                    why = "bad_signature" if isinstance(exc, SignatureError) else "bad_snapshot"
                    self.skips.skip("models", why, f"key {kind!r}", str(exc))
                    continue
                setattr(self.models, kind, learner)
                export_model_metrics(self.metrics, learner)
        return self.models


def model_key(kind: str) -> bytes:
    """The models changelog key of a model kind: a JSON string, as Faust wrote ``str``
    keys before (so existing changelogs and ``churnwatch models export`` read the same),
    but written and read as raw bytes, so a foreign key in the changelog is just a key
    nobody asks for, not a decode error that stops Faust's table recovery.

    >>> model_key("churn")
    b'"churn"'
    """
    return orjson.dumps(kind)


def export_model_metrics(m: Metrics, learner: OnlineLearner) -> None:
    stats = learner.metrics()
    name = learner.name
    m.model_version.labels(name).set(learner.version)
    m.model_examples.labels(name).set(stats["examples"])
    m.model_drifts.labels(name).set(stats["drifts"])
    if learner.learned_offset is not None:
        m.model_learned_offset.labels(name).set(learner.learned_offset)
    for gauge, key in (
        (m.model_auc, "roc_auc"),
        (m.model_logloss, "log_loss"),
        (m.model_calibration_error, "ece"),
    ):
        if not math.isnan(stats[key]):
            gauge.labels(name).set(stats[key])
    n = learner.n_bins
    for predicted, observed, _ in learner.calibration():  # a bin's mean lies in the bin
        edge = f"{min(int(predicted * n), n - 1) / n:.2f}"
        m.model_calibration.labels(name, edge, "predicted").set(predicted)
        m.model_calibration.labels(name, edge, "observed").set(observed)
