"""A linear River pipeline scored in one pass: what ``OnlineLearner.predict_proba`` uses.

River's ``Pipeline.predict_proba_one`` builds a dict per step: the function step's
output, the scaler's output, then the dot product of that with the weights. For
churnwatch's two models (a function step, a ``StandardScaler``, a
``LogisticRegression``) that was ~26 µs for churn's 60 features and ~12 µs for
sharing's 31, a fifth of the engine's CPU (``benchmarks/bench_scale.py``, stages).
For that shape the probability is

    sigmoid(b + sum over k of w_k (t_k - mean_k) / std_k)
      = sigmoid(b + sum over k of (a_k t_k + c_k)),  a_k = w_k / std_k, c_k = -a_k mean_k

over the keys k of the function step's output t. ``a`` and ``c`` are read off the
model once (``linear_scorer``); the caller builds a new scorer whenever the model
learns (``OnlineLearner`` does). A key the scaler has no variance for is scaled to 0
by River and adds nothing here either. A function step registered in ``FUSED`` with
its fused form is not even run: churn's ``model_input`` (action counts hashed into
buckets, log1p) is done feature by feature inside the sum, and only for the inputs
with a weight (``models.churn.model_logit``). The sum runs in another order than
River's, so the two agree to ~1e-16, not to the bit (``benchmarks/bench_scoring.py``
measures both). Any other pipeline gets no scorer (None): its caller keeps River's
own path.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from river import compose, linear_model, optim, preprocessing

Logit = Callable[[dict[str, float], dict[str, tuple[float, float]], float], float]
# a function step -> the same step fused with the sum (``models.churn.model_logit``):
# the logit without building the step's output dict
FUSED: dict[Any, Logit] = {}


class LinearScorer:
    """``predict_proba_one(x)[True]`` of the pipeline it was read from, as it was then.

    >>> from river import compose, linear_model, preprocessing
    >>> m = compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression())
    >>> for i in range(20):
    ...     m.learn_one({"x": float(i % 4), "y": 1.0}, i % 4 > 1)
    >>> s = linear_scorer(m)
    >>> p = m.predict_proba_one({"x": 3.0, "y": 1.0, "new": 5.0})[True]
    >>> round(s.proba({"x": 3.0, "y": 1.0, "new": 5.0}), 12) == round(p, 12)
    True
    """

    def __init__(
        self,
        fn: Callable[[dict[str, float]], dict[str, float]] | None,
        params: dict[str, tuple[float, float]],
        intercept: float,
    ) -> None:
        self.fn = fn
        self.fused = FUSED.get(fn)
        self.params = params
        self.intercept = intercept

    def proba(self, x: dict[str, float]) -> float:
        if self.fused is not None:
            z = self.fused(x, self.params, self.intercept)
        else:
            z = logit(x if self.fn is None else self.fn(x), self.params, self.intercept)
        if z < -30.0:  # as river.utils.math.sigmoid
            return 0.0
        if z > 30.0:
            return 1.0
        return 1.0 / (1.0 + math.exp(-z))


def logit(t: dict[str, float], params: dict[str, tuple[float, float]], intercept: float) -> float:
    """``intercept`` + the sum of ``a_k t_k + c_k`` over the keys of ``t`` in ``params``."""
    z = intercept
    for k, v in t.items():
        p = params.get(k)
        if p is not None:
            z += p[0] * v + p[1]
    return z


def linear_scorer(model: Any) -> LinearScorer | None:
    """The one-pass scorer of ``model`` as it is now, or None if it is not an (optional
    function step,) ``StandardScaler``, ``LogisticRegression`` pipeline with log loss."""
    steps = list(model.steps.values()) if isinstance(model, compose.Pipeline) else [model]
    fn = None
    if len(steps) == 3 and type(steps[0]) is compose.FuncTransformer:
        fn = steps[0].func
        steps = steps[1:]
    if len(steps) != 2:
        return None
    scaler, lr = steps
    if (
        type(scaler) is not preprocessing.StandardScaler
        or not scaler.with_std
        or scaler.window_size is not None
        or type(lr) is not linear_model.LogisticRegression
        or type(lr.loss) is not optim.losses.Log
    ):
        return None
    weights = lr.weights  # a plain dict (a copy)
    variances = scaler.vars
    params: dict[str, tuple[float, float]] = {}
    for k, mean in scaler.means.items():
        var = float(variances.get(k, 0.0))  # .get: the scaler's defaultdicts stay as they are
        if var:
            a = float(weights.get(k, 0.0)) / math.sqrt(var)
            if a:
                params[k] = (a, -a * float(mean))
    return LinearScorer(fn, params, float(lr.intercept))
