"""Churn models: a factory of River pipelines and per-score explanations.

``make_churn_model(kind)`` builds a fresh pipeline (no subclassing, no shared
mutable defaults). ``"logreg"`` (the default, chosen by measurement with
``benchmarks/bench_churn_model.py``) is a fixed log1p of count-like features
with the open-ended ``action_*`` counts hashed into 32 buckets, a running
standard scaler and a logistic regression (Adam, step 1e-3, L2 1e-3). Judged by the honest figure —
each snapshot scored by the model of its own event time, as a worker publishes
it — it beat the former SGD 0.05 by 0.05-0.07 ROC AUC, with several times lower
log loss, and beat fixed transforms without a scaler; raw ``action_*`` input cost
3x the learning time and a 14x larger model for no gain on the default simulator.
On products whose behaviour lives in their own actions
(``benchmarks/bench_churn_matrix.py``) the hashed buckets gained up to 0.03 AUC
at a bounded size. ``"arf"`` is an
Adaptive Random Forest: it handles interactions, but costs ~0.3 ms to predict
and ~2 ms to learn, and its snapshots are MiB.

River 0.26 pipelines update unsupervised steps (the scaler) during
``predict_proba_one`` only inside ``compose.learn_during_predict()``; churnwatch
never enters that context, so scoring never changes a model.
"""

from __future__ import annotations

import functools
import math
import zlib
from typing import Any

from river import compose, forest, linear_model, optim, preprocessing

from models.learner import func_step, last_step_input
from models.linear import FUSED

DEFAULT_KIND = "logreg"
ACTION_BUCKETS = 32  # hashed buckets of the per-action counts in the linear model's input
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
    "usage_hl",
    "usual_actions_count",
    "actrate_",
)


def log1p_counts(x: dict[str, float]) -> dict[str, float]:
    """Fixed transform for the linear model: log1p of count-like features (same keys).

    >>> log1p_counts({"sessions_7d": math.e - 1, "price_increase_pct_90d": 0.5})
    {'sessions_7d': 1.0, 'price_increase_pct_90d': 0.5}
    """
    return {k: math.log1p(v) if v >= 0 and _logged(k) else v for k, v in x.items()}


def model_input(x: dict[str, float]) -> dict[str, float]:
    """What the linear model sees: ``log1p_counts``, with the open-ended ``action_*``
    counts summed into ``ACTION_BUCKETS`` hashed buckets (log1p of each sum), so the
    model has a bounded number of weights whatever the product's action names.

    >>> model_input({"action_like_28d": 3.0, "action_rate_28d": 4.0, "sessions_7d": 0.0})
    {'sessions_7d': 0.0, 'actions_h25_28d': 1.3862943611198906, 'actions_h9_28d': 1.6094379124341003}
    """  # noqa: E501
    out: dict[str, float] = {}
    hashed: dict[str, float] = {}
    for k, v in x.items():
        kind = _INPUT_KIND.get(k)
        if kind is None:
            kind = _input_kind(k)
        if kind == _LOGGED:
            out[k] = math.log1p(v) if v >= 0 else v
        elif kind == _AS_IS:
            out[k] = v
        else:
            hashed[kind] = hashed.get(kind, 0.0) + v
    for bucket, v in hashed.items():
        out[bucket] = math.log1p(v) if v >= 0 else v
    return out


def model_logit(
    x: dict[str, float], params: dict[str, tuple[float, float]], intercept: float
) -> float:
    """``models.linear.logit(model_input(x), params, intercept)`` without building
    ``model_input(x)``: the churn model's logit, one pass over ``x``.

    >>> from models.linear import logit
    >>> x = {"action_like_28d": 3.0, "action_rate_28d": 4.0, "sessions_7d": 1.0}
    >>> params = {"sessions_7d": (2.0, -1.0), "actions_h9_28d": (1.0, 0.5)}
    >>> model_logit(x, params, 0.25) == logit(model_input(x), params, 0.25)
    True
    """
    z = intercept
    hashed: dict[str, float] = {}
    for k, v in x.items():
        kind = _INPUT_KIND.get(k)
        if kind is None:
            kind = _input_kind(k)
        if kind == _LOGGED or kind == _AS_IS:
            p = params.get(k)
            if p is not None:
                z += p[0] * (math.log1p(v) if kind == _LOGGED and v >= 0 else v) + p[1]
        else:
            hashed[kind] = hashed.get(kind, 0.0) + v
    for bucket, v in hashed.items():
        p = params.get(bucket)
        if p is not None:
            z += p[0] * (math.log1p(v) if v >= 0 else v) + p[1]
    return z


_LOGGED, _AS_IS = "log1p", "as is"
# feature name -> _LOGGED, _AS_IS, or the hashed bucket of an ``action_*`` count (crc32:
# the same in every process). A plain dict, not functools.lru_cache: model_input asks it
# for each of ~60 features a score. Action names are the product's: bounded by clearing.
_INPUT_KIND: dict[str, str] = {}
_MAX_KINDS = 4096


def _input_kind(name: str) -> str:
    if len(_INPUT_KIND) >= _MAX_KINDS:
        _INPUT_KIND.clear()
    if name.startswith("action_"):
        kind = f"actions_h{zlib.crc32(name.encode()) % ACTION_BUCKETS}_28d"
    else:
        kind = _LOGGED if _logged(name) else _AS_IS
    _INPUT_KIND[name] = kind
    return kind


FUSED[model_input] = model_logit  # models.linear scores the churn model with model_logit


@functools.lru_cache(maxsize=4096)
def _logged(name: str) -> bool:
    """Whether the linear model sees ``name`` through log1p (cached: names repeat)."""
    return name.startswith(LOG_FEATURE_PREFIXES)


def make_churn_model(kind: str = DEFAULT_KIND, **params: Any) -> compose.Pipeline:
    """A fresh, untrained churn classifier.

    ``logreg`` params: ``optimizer`` ("sgd", "adam" or "adagrad"), ``lr``,
    ``l2``, ``intercept_lr``, ``scaler`` ("running", "adaptive" or "none"),
    ``actions`` (True: every ``action_*`` feature is an input of its own; False: they
    are hashed into ``ACTION_BUCKETS`` sums).
    ``arf`` params: ``n_models`` (10), ``seed`` (42), ``max_features`` ("sqrt").

    >>> m = make_churn_model()
    >>> m.predict_proba_one({"x": 1.0})
    {False: 0.5, True: 0.5}
    >>> make_churn_model("arf", n_models=3)["ARFClassifier"].n_models
    3
    """
    if kind == "logreg":
        p = {**LOGREG_DEFAULTS, **params}
        optimizer, scaler = str(p.pop("optimizer")), str(p.pop("scaler"))
        lr, l2, intercept_lr = float(p.pop("lr")), float(p.pop("l2")), float(p.pop("intercept_lr"))
        actions = bool(p.pop("actions"))
        _no_more(kind, p)
        if optimizer not in _OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {optimizer!r}; choose one of {sorted(_OPTIMIZERS)}"
            )
        if scaler not in _SCALERS:
            raise ValueError(f"unknown scaler {scaler!r}; choose one of {sorted(_SCALERS)}")
        steps: list[Any] = [func_step(log1p_counts if actions else model_input)]
        scaler_cls = _SCALERS[scaler]
        if scaler_cls is not None:
            steps.append(scaler_cls())
        steps.append(
            linear_model.LogisticRegression(
                optimizer=_OPTIMIZERS[optimizer](lr), l2=l2, intercept_lr=intercept_lr
            )
        )
        return compose.Pipeline(*steps)
    if kind == "arf":
        arf = forest.ARFClassifier(
            n_models=int(params.pop("n_models", 10)),
            seed=int(params.pop("seed", 42)),
            max_features=params.pop("max_features", "sqrt"),
        )
        _no_more(kind, params)
        return compose.Pipeline(arf)
    raise ValueError(f"unknown churn model kind {kind!r}; choose one of {KINDS}")


LOGREG_DEFAULTS: dict[str, Any] = {
    "optimizer": "adam",
    "lr": 1e-3,
    "l2": 1e-3,
    "intercept_lr": 0.01,
    "scaler": "running",
    "actions": False,
}
_OPTIMIZERS = {"sgd": optim.SGD, "adam": optim.Adam, "adagrad": optim.AdaGrad}
_SCALERS = {
    "running": preprocessing.StandardScaler,
    "adaptive": preprocessing.AdaptiveStandardScaler,
    "none": None,
}


def _no_more(kind: str, params: dict[str, Any]) -> None:
    if params:
        raise ValueError(f"unknown parameters for {kind!r}: {sorted(params)}")


def explain(
    model: compose.Pipeline,
    features: dict[str, float],
    k: int = 3,
) -> list[dict[str, Any]]:
    """Top ``k`` factors raising the score: ``{"feature", "value", "weight"}``.

    For a linear final step the weight is coefficient x transformed value; for any
    other model it is the score drop when the feature is left out (occlusion, k +
    len(features) predictions: use it for alerts, not per event). Factors with a
    weight <= 0 are not reasons and are left out.

    >>> m = make_churn_model()
    >>> for _ in range(50):
    ...     m.learn_one({"fails": 2.0, "hours": 0.0}, True)
    ...     m.learn_one({"fails": 0.0, "hours": 9.0}, False)
    >>> [r["feature"] for r in explain(m, {"fails": 2.0, "hours": 0.0})]
    ['fails', 'hours']
    """
    weights = getattr(list(model.steps.values())[-1], "weights", None)
    if weights is not None:
        xt = last_step_input(model, features)[1]
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
