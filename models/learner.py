"""A single-writer online learner with prequential evaluation (no Kafka here).

``OnlineLearner`` wraps any River binary classifier (churn and sharing alike):

- ``predict_proba(x)`` scores and never changes the model;
- ``learn(x, y)`` first scores the example, updates the running metrics with
  that score, and only then learns it (prequential / test-then-train);
  an ``example_id`` seen recently is ignored (at-least-once delivery);
- metrics: examples seen, positives, ROC AUC (exact up to a 1/1000 score
  grid), log loss, expected calibration error over ``n_bins`` equal-width
  bins, and the number of drifts ADWIN detected in the per-example log loss;
- ``snapshot()`` bumps ``version`` and returns the versioned bytes that
  ``from_bytes`` restores (model, metrics and all: the learner's checkpoint);
  ``model_bytes()`` / ``load_model()`` carry only the model and its id to the
  scoring workers.
"""

from __future__ import annotations

import math
import pickle
from typing import Any

from river import drift

SNAPSHOT_VERSION = 1
_MAGIC = b"CWLN"
_MODEL_MAGIC = b"CWMD"
_GRID = 1000
_EPS = 1e-15


class OnlineLearner:
    """Prequential wrapper around a River classifier.

    >>> from models.churn import make_churn_model
    >>> lrn = OnlineLearner(make_churn_model(), name="churn")
    >>> lrn.learn({"x": 1.0}, True, example_id="a:0")
    0.5
    >>> lrn.learn({"x": 1.0}, True, example_id="a:0") is None  # duplicate
    True
    >>> lrn.metrics()["examples"], lrn.model_id
    (1, 'churn-v0')
    >>> OnlineLearner.from_bytes(lrn.snapshot()).model_id
    'churn-v1'
    """

    def __init__(
        self, model: Any, *, name: str = "model", n_bins: int = 10, max_ids: int = 100_000
    ) -> None:
        if n_bins < 1 or max_ids < 0:
            raise ValueError("n_bins must be >= 1 and max_ids >= 0")
        self.model = model
        self.name = name
        self.version = 0
        self.n_bins = n_bins
        self.max_ids = max_ids
        self._ids: dict[str, None] = {}
        self.examples = 0
        self.positives = 0
        self.drifts = 0
        self._log_loss_sum = 0.0
        self._pos = [0] * _GRID
        self._neg = [0] * _GRID
        self._cal_n = [0] * n_bins
        self._cal_p = [0.0] * n_bins
        self._cal_y = [0] * n_bins
        self._adwin = drift.ADWIN()  # type: ignore[no-untyped-call]

    @property
    def model_id(self) -> str:
        return f"{self.name}-v{self.version}"

    def predict_proba(self, x: dict[str, float]) -> float:
        """Probability of the positive class; the model is not changed."""
        return float(self.model.predict_proba_one(x).get(True, 0.0))

    def learn(self, x: dict[str, float], y: bool, *, example_id: str | None = None) -> float | None:
        """Score ``x``, record the score, then learn; returns the score (None: duplicate)."""
        if example_id is not None:
            if example_id in self._ids:
                return None
            self._remember(example_id)
        p = self.predict_proba(x)
        self._record(p, bool(y))
        self.model.learn_one(x, bool(y))
        return p

    def learn_many(self, batch: list[tuple[dict[str, float], bool, str | None]]) -> int:
        """Score every example of ``batch`` first, then learn them all; return how many.

        Delayed labels arrive in bursts (one cancellation labels all of an
        account's pending snapshots at once). Learning one and then scoring its
        near-identical sibling would flatter the prequential metrics; scoring
        the whole burst first keeps them honest.

        >>> from models.churn import make_churn_model
        >>> lrn = OnlineLearner(make_churn_model(), name="churn")
        >>> lrn.learn_many([({"x": 1.0}, True, "a:0"), ({"x": 1.0}, True, "a:7")])
        2
        >>> lrn.metrics()["log_loss"] == -math.log(0.5)  # both scored before learning
        True
        """
        fresh = []
        for x, y, example_id in batch:
            if example_id is not None:
                if example_id in self._ids:
                    continue
                self._remember(example_id)
            fresh.append((x, bool(y)))
        for x, y in fresh:
            self._record(self.predict_proba(x), y)
        for x, y in fresh:
            self.model.learn_one(x, y)
        return len(fresh)

    def metrics(self) -> dict[str, float]:
        """Running prequential metrics (NaN where undefined)."""
        n = self.examples
        return {
            "examples": n,
            "positives": self.positives,
            "roc_auc": self._roc_auc(),
            "log_loss": self._log_loss_sum / n if n else math.nan,
            "ece": (
                sum(abs(p - y) for p, y in zip(self._cal_p, self._cal_y, strict=True)) / n
                if n
                else math.nan
            ),
            "drifts": self.drifts,
            "version": self.version,
        }

    def calibration(self) -> list[tuple[float, float, int]]:
        """Per bin (mean predicted, observed positive rate, count), non-empty bins only."""
        return [
            (p / c, y / c, c)
            for p, y, c in zip(self._cal_p, self._cal_y, self._cal_n, strict=True)
            if c
        ]

    def snapshot(self) -> bytes:
        """Bump the version and return the snapshot bytes."""
        self.version += 1
        return self.to_bytes()

    def to_bytes(self) -> bytes:
        return _MAGIC + bytes([SNAPSHOT_VERSION]) + pickle.dumps(self, protocol=5)

    @classmethod
    def from_bytes(cls, raw: bytes) -> OnlineLearner:
        """Restore a snapshot; raises ValueError on another format or version."""
        if raw[:4] != _MAGIC or len(raw) < 5:
            raise ValueError("not a learner snapshot")
        if raw[4] != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported learner snapshot version {raw[4]}")
        learner = pickle.loads(raw[5:])  # noqa: S301 - our own snapshot topic
        if not isinstance(learner, cls):
            raise ValueError("not a learner snapshot")
        return learner

    def model_bytes(self) -> bytes:
        """The model alone, for scoring workers (small: no metrics, no id memory)."""
        return _MODEL_MAGIC + bytes([SNAPSHOT_VERSION]) + pickle.dumps((self.model_id, self.model))

    def _remember(self, example_id: str) -> None:
        self._ids[example_id] = None
        if len(self._ids) > self.max_ids:
            del self._ids[next(iter(self._ids))]

    def _record(self, p: float, y: bool) -> None:
        self.examples += 1
        self.positives += y
        loss = -math.log(max(p, _EPS) if y else max(1.0 - p, _EPS))
        self._log_loss_sum += loss
        self._adwin.update(loss)  # type: ignore[no-untyped-call]
        self.drifts += self._adwin.drift_detected
        cell = min(int(p * _GRID), _GRID - 1)
        (self._pos if y else self._neg)[cell] += 1
        b = min(int(p * self.n_bins), self.n_bins - 1)
        self._cal_n[b] += 1
        self._cal_p[b] += p
        self._cal_y[b] += y

    def _roc_auc(self) -> float:
        """Mann-Whitney AUC on the score grid (ties within a cell count half)."""
        n_pos, n_neg = self.positives, self.examples - self.positives
        if n_pos == 0 or n_neg == 0:
            return math.nan
        below = 0
        wins = 0.0
        for pos, neg in zip(self._pos, self._neg, strict=True):
            wins += pos * (below + neg / 2)
            below += neg
        return wins / (n_pos * n_neg)


def load_model(raw: bytes) -> tuple[str, Any]:
    """Inverse of ``OnlineLearner.model_bytes``: ``(model_id, model)``.

    >>> from models.churn import make_churn_model
    >>> load_model(OnlineLearner(make_churn_model(), name="churn").model_bytes())[0]
    'churn-v0'
    """
    if raw[:4] != _MODEL_MAGIC or len(raw) < 5:
        raise ValueError("not a model snapshot")
    if raw[4] != SNAPSHOT_VERSION:
        raise ValueError(f"unsupported model snapshot version {raw[4]}")
    model_id, model = pickle.loads(raw[5:])  # noqa: S301 - our own snapshot topic
    return str(model_id), model
