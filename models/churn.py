"""Churn models: a factory of River pipelines and per-score explanations.

``make_churn_model(kind)`` builds a fresh pipeline (no subclassing, no shared
mutable defaults). ``"logreg"`` (the default, chosen by measurement, see
``benchmarks/bench_churn_model.py``) is a fixed log1p of count-like features,
a running standard scaler and a logistic regression (plain SGD, step 0.05,
L2 1e-3). On the replayed simulator it matched ARF in ROC AUC, was better
calibrated than ARF and than Adam, and cost about a tenth as much per predict
and learn. ``"arf"`` is an Adaptive Random Forest: it handles interactions,
but costs ~0.2 ms to predict and ~1 ms to learn, and its snapshots are MiB.

River 0.26 pipelines update unsupervised steps (the scaler) during
``predict_proba_one`` only inside ``compose.learn_during_predict()``; churnwatch
never enters that context, so scoring never changes a model.
"""

from __future__ import annotations

import math
from typing import Any

from river import compose, forest, linear_model, optim, preprocessing

DEFAULT_KIND = "logreg"
KINDS = ("logreg", "arf")
# heavy-tailed non-negative counts and durations: a linear model sees their log1p
LOG_FEATURE_PREFIXES = (
    "watch_hours_",
    "sessions_",
    "activity_",
    "action_",
    "active_days_",
    "days_since_",
    "days_to_renewal",
    "support_contacts_",
    "payment_failed_",
    "devices_",
    "profiles_",
)


def log1p_counts(x: dict[str, float]) -> dict[str, float]:
    """Fixed transform for the linear model: log1p of count-like features (same keys).

    >>> log1p_counts({"sessions_7d": math.e - 1, "price_increase_pct_90d": 0.5})
    {'sessions_7d': 1.0, 'price_increase_pct_90d': 0.5}
    """
    return {
        k: math.log1p(v) if v >= 0 and k.startswith(LOG_FEATURE_PREFIXES) else v
        for k, v in x.items()
    }


def make_churn_model(kind: str = DEFAULT_KIND, **params: Any) -> compose.Pipeline:
    """A fresh, untrained churn classifier.

    ``logreg`` params: ``optimizer`` ("sgd" or "adam"), ``lr`` (0.05), ``l2`` (1e-3).
    ``arf`` params: ``n_models`` (10), ``seed`` (42), ``max_features`` ("sqrt").

    >>> m = make_churn_model()
    >>> m.predict_proba_one({"x": 1.0})
    {False: 0.5, True: 0.5}
    >>> make_churn_model("arf", n_models=3)["ARFClassifier"].n_models
    3
    """
    if kind == "logreg":
        optimizer = str(params.pop("optimizer", "sgd"))
        lr = float(params.pop("lr", 0.05))
        l2 = float(params.pop("l2", 1e-3))
        _no_more(kind, params)
        if optimizer not in _OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {optimizer!r}; choose one of {sorted(_OPTIMIZERS)}"
            )
        return compose.Pipeline(
            compose.FuncTransformer(log1p_counts),
            preprocessing.StandardScaler(),
            linear_model.LogisticRegression(optimizer=_OPTIMIZERS[optimizer](lr), l2=l2),
        )
    if kind == "arf":
        arf = forest.ARFClassifier(
            n_models=int(params.pop("n_models", 10)),
            seed=int(params.pop("seed", 42)),
            max_features=params.pop("max_features", "sqrt"),
        )
        _no_more(kind, params)
        return compose.Pipeline(arf)
    raise ValueError(f"unknown churn model kind {kind!r}; choose one of {KINDS}")


_OPTIMIZERS = {"sgd": optim.SGD, "adam": optim.Adam}


def _no_more(kind: str, params: dict[str, Any]) -> None:
    if params:
        raise ValueError(f"unknown parameters for {kind!r}: {sorted(params)}")


def explain(
    model: compose.Pipeline, features: dict[str, float], k: int = 3
) -> list[dict[str, Any]]:
    """Top ``k`` factors raising the score: ``{"feature", "value", "weight"}``.

    For a linear final step the weight is coefficient x transformed value; for
    any other model it is the score drop when the feature is left out
    (occlusion, k + len(features) predictions: use it for alerts, not per event).
    Factors with a weight <= 0 are not reasons and are left out.

    >>> m = make_churn_model()
    >>> for _ in range(50):
    ...     m.learn_one({"fails": 2.0, "hours": 0.0}, True)
    ...     m.learn_one({"fails": 0.0, "hours": 9.0}, False)
    >>> [r["feature"] for r in explain(m, {"fails": 2.0, "hours": 0.0})]
    ['fails', 'hours']
    """
    *head, last = model.steps.values()
    weights = getattr(last, "weights", None)
    if weights is not None:
        xt = features
        for step in head:
            xt = step.transform_one(xt)
        scored = [(f, weights.get(f, 0.0) * xt.get(f, 0.0)) for f in features]
    else:
        base = _p(model, features)
        scored = [
            (f, base - _p(model, {g: v for g, v in features.items() if g != f})) for f in features
        ]
    top = sorted((s for s in scored if s[1] > 0), key=lambda s: -s[1])[:k]
    return [{"feature": f, "value": features[f], "weight": round(w, 4)} for f, w in top]


def _p(model: compose.Pipeline, x: dict[str, float]) -> float:
    return float(model.predict_proba_one(x).get(True, 0.0))
