"""Churn model factory and explanations: River-style generic checks."""

from __future__ import annotations

import math
import pickle
import random
import zlib

import pytest
from river import compose

from models.churn import (
    ACTION_BUCKETS,
    DEFAULT_KIND,
    KINDS,
    explain,
    make_churn_model,
    model_input,
)
from models.learner import OnlineLearner


def stream(n: int, seed: int = 1) -> list[tuple[dict[str, float], bool]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        fails = float(rng.random() < 0.2) * rng.randint(1, 3)
        hours = rng.expovariate(0.2)
        noise = rng.gauss(0, 1)
        y = rng.random() < (0.8 if fails else 0.3 if hours < 2 else 0.05)
        out.append(({"fails": fails, "hours": hours, "noise": noise}, y))
    return out


def trained(kind: str, n: int = 300, **params: object) -> compose.Pipeline:
    model = make_churn_model(kind, **params)
    for x, y in stream(n):
        model.learn_one(x, y)
    return model


def test_default_is_logistic_regression_and_unknown_settings_fail() -> None:
    assert DEFAULT_KIND == "logreg"
    assert "LogisticRegression" in make_churn_model().steps
    with pytest.raises(ValueError, match="kind"):
        make_churn_model("svm")
    with pytest.raises(ValueError, match="parameters"):
        make_churn_model("logreg", learning_rate=0.1)
    with pytest.raises(ValueError, match="optimizer"):
        make_churn_model("logreg", optimizer="rmsprop")
    with pytest.raises(ValueError, match="scaler"):
        make_churn_model("logreg", scaler="minmax")
    default = make_churn_model()["LogisticRegression"]
    assert type(default.optimizer).__name__ == "Adam"
    assert default.optimizer.learning_rate == 1e-3 and default.l2 == 1e-3
    sgd = make_churn_model("logreg", optimizer="sgd", lr=0.05, intercept_lr=0.001)
    assert type(sgd["LogisticRegression"].optimizer).__name__ == "SGD"
    assert sgd["LogisticRegression"].intercept_lr.learning_rate == 0.001


def test_scaler_choice() -> None:
    assert "StandardScaler" in make_churn_model().steps
    assert "AdaptiveStandardScaler" in make_churn_model(scaler="adaptive").steps
    bare = make_churn_model(scaler="none")
    assert list(bare.steps) == ["model_input", "LogisticRegression"]


def test_action_counts_enter_the_model_input_hashed_unless_asked_raw() -> None:
    x = {"action_like_28d": 4.0, "action_rate_28d": 1.0, "activity_28d": 4.0}
    hashed = model_input(x)
    assert hashed["activity_28d"] == math.log1p(4.0)
    buckets = {k for k in hashed if k.startswith("actions_h")}
    assert len(buckets) == 2 and sum(map(math.expm1, (hashed[k] for k in buckets))) == 5.0
    many = {f"action_promo_{i}_28d": 1.0 for i in range(1000)}  # any vocabulary: bounded
    assert len(model_input(many)) == ACTION_BUCKETS
    for actions, seen in ((False, {"activity_28d"} | buckets), (True, set(x))):
        model = make_churn_model(actions=actions)
        model.learn_one(x, True)
        assert set(model["LogisticRegression"].weights) == seen


def test_linear_model_sees_log1p_of_counts_but_explains_raw_values() -> None:
    model = make_churn_model()
    for _ in range(20):
        model.learn_one({"sessions_7d": 0.0, "price_increase_pct_90d": 0.0}, True)
        model.learn_one({"sessions_7d": 30.0, "price_increase_pct_90d": 0.3}, False)
    scaler = model["StandardScaler"]
    assert scaler.means["sessions_7d"] == pytest.approx(math.log1p(30) / 2)
    assert scaler.means["price_increase_pct_90d"] == pytest.approx(0.15)
    reasons = explain(model, {"sessions_7d": 0.0, "price_increase_pct_90d": 0.0})
    assert {"feature": "sessions_7d", "value": 0.0} in [
        {k: r[k] for k in ("feature", "value")} for r in reasons
    ]


def test_factory_returns_independent_models() -> None:
    a, b = make_churn_model(), make_churn_model()
    a.learn_one({"x": 1.0}, True)
    assert b.predict_proba_one({"x": 1.0})[True] == 0.5


@pytest.mark.parametrize("kind", KINDS)
def test_predict_never_changes_the_model(kind: str) -> None:
    model = trained(kind, n=100)
    before = pickle.dumps(model)
    for x, _ in stream(50, seed=9):
        model.predict_proba_one(x)
    assert pickle.dumps(model) == before


def test_river_updates_the_scaler_only_inside_learn_during_predict() -> None:
    """Pins River 0.26 behaviour that 'scoring never changes a model' relies on."""
    model = trained("logreg", n=50)
    scaler = model["StandardScaler"]
    n_before = dict(scaler.counts)
    with compose.learn_during_predict():
        model.predict_proba_one({"fails": 1.0, "hours": 1.0, "noise": 0.0})
    assert dict(scaler.counts) != n_before


@pytest.mark.parametrize("kind", KINDS)
def test_pickle_round_trip_predicts_the_same(kind: str) -> None:
    model = trained(kind, n=150)
    clone = pickle.loads(pickle.dumps(model))
    for x, _ in stream(20, seed=5):
        assert clone.predict_proba_one(x) == model.predict_proba_one(x)


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_result(kind: str) -> None:
    a, b = trained(kind, n=150), trained(kind, n=150)
    x = {"fails": 1.0, "hours": 0.5, "noise": 0.1}
    assert a.predict_proba_one(x) == b.predict_proba_one(x)


def test_feature_order_does_not_matter() -> None:
    a = make_churn_model()
    b = make_churn_model()
    for x, y in stream(200):
        a.learn_one(x, y)
        b.learn_one(dict(reversed(list(x.items()))), y)
    x = {"noise": 0.3, "hours": 1.0, "fails": 2.0}
    assert a.predict_proba_one(x)[True] == pytest.approx(b.predict_proba_one(x)[True])


def test_logreg_learns_the_signal() -> None:
    model = trained("logreg", n=2000)
    p_fail = model.predict_proba_one({"fails": 2.0, "hours": 5.0, "noise": 0.0})[True]
    p_idle = model.predict_proba_one({"fails": 0.0, "hours": 0.0, "noise": 0.0})[True]
    p_busy = model.predict_proba_one({"fails": 0.0, "hours": 15.0, "noise": 0.0})[True]
    assert p_fail > p_idle > p_busy


def test_explain_logreg_is_coefficient_times_scaled_value() -> None:
    model = trained("logreg", n=1000)
    x = {"fails": 3.0, "hours": 0.0, "noise": 0.0}
    reasons = explain(model, x, k=2)
    assert reasons[0]["feature"] == "fails" and reasons[0]["value"] == 3.0
    scaled = model["StandardScaler"].transform_one(x)
    w = model["LogisticRegression"].weights
    assert reasons[0]["weight"] == pytest.approx(w["fails"] * scaled["fails"], abs=1e-4)
    assert all(r["weight"] > 0 for r in reasons) and len(reasons) <= 2
    # a busy account without failures has no reason to be at risk from 'hours'
    assert "hours" not in [r["feature"] for r in explain(model, {"fails": 0, "hours": 20.0})]


def test_the_learner_scores_a_linear_model_in_one_pass_as_river_does() -> None:
    # models.linear: the same probability as River's predict_proba_one (to ~1e-16, the
    # sum runs in another order), read off the model again whenever it learns
    rng = random.Random(5)

    def with_actions(x: dict[str, float]) -> dict[str, float]:
        names = rng.sample(["play", "like", "share", "rate", "skip", "search"], k=3)
        return {**x, **{f"action_{n}_28d": float(rng.randint(0, 9)) for n in names}}

    learner = OnlineLearner(make_churn_model())
    examples = [(with_actions(x), y) for x, y in stream(600, seed=4)]
    for i in range(0, 600, 100):  # learning in between: every score reads the new weights
        for x, _ in examples[i : i + 100]:
            river = learner.model.predict_proba_one(x)[True]
            assert learner.predict_proba(x) == pytest.approx(river, rel=1e-12, abs=1e-15)
        learner.learn_many([(x, y, None) for x, y in examples[i : i + 100]])
    x = {**examples[0][0], "never_seen_before": 7.0}  # no weight yet: it adds nothing
    assert learner.predict_proba(x) == pytest.approx(learner.model.predict_proba_one(x)[True])
    assert 0.05 < learner.predict_proba(x) < 0.95 and learner.predict_proba(x) != 0.5
    learner.model = trained("logreg", n=50)  # a model put in its place is read afresh
    x = {"fails": 2.0, "hours": 1.0, "noise": 0.0}
    assert learner.predict_proba(x) == pytest.approx(learner.model.predict_proba_one(x)[True])
    # a snapshot carries the model, never a scorer read off it
    assert b"LinearScorer" not in pickle.dumps(learner)
    assert pickle.loads(pickle.dumps(learner)).predict_proba(x) == learner.predict_proba(x)
    forest = OnlineLearner(trained("arf", n=200, n_models=3))  # not linear: River's own path
    assert forest.predict_proba(x) == forest.model.predict_proba_one(x)[True]


def test_explain_falls_back_to_occlusion_for_forests() -> None:
    model = trained("arf", n=600, n_models=3)
    before = pickle.dumps(model)
    reasons = explain(model, {"fails": 3.0, "hours": 0.0, "noise": 0.0}, k=3)
    assert pickle.dumps(model) == before
    assert all(set(r) == {"feature", "value", "weight"} and r["weight"] > 0 for r in reasons)


def test_default_logreg_is_calibrated_on_a_stationary_stream() -> None:
    model = trained("logreg", n=4000)
    test = stream(2000, seed=7)
    p = [model.predict_proba_one(x)[True] for x, _ in test]
    observed = sum(y for _, y in test) / len(test)
    assert sum(p) / len(p) == pytest.approx(observed, abs=0.03)
    # the risky group (a failed payment, true rate 0.8; the linear fit is misspecified)
    risky = [(pi, y) for pi, (x, y) in zip(p, test, strict=True) if x["fails"]]
    mean_p = sum(pi for pi, _ in risky) / len(risky)
    assert mean_p == pytest.approx(sum(y for _, y in risky) / len(risky), abs=0.2)


def test_the_per_name_memory_stays_bounded_whatever_the_action_names() -> None:
    # action names are the product's: a product with thousands of them must not grow the
    # per-name memory of the input transform (nor of the features) without bound
    import models.churn as churn
    import models.features as features

    names = [f"n{i}" for i in range(churn._MAX_KINDS + 50)]
    for n in names:
        churn.model_input({f"action_{n}_28d": 1.0})
        features._bucket(n)
        features._action_feature(n)
    assert 0 < len(churn._INPUT_KIND) <= churn._MAX_KINDS
    assert 0 < len(features._BUCKET) <= features._MAX_NAMES
    assert 0 < len(features._ACTION_FEATURE) <= features._MAX_NAMES
    # a name forgotten when the memory was cleared gets the same answers again
    first = names[0]
    assert first not in features._BUCKET
    assert features._bucket(first) == features._hash_bucket(first)
    assert features._action_feature(first) == f"action_{first}_28d"
    bucket = f"actions_h{zlib.crc32(f'action_{first}_28d'.encode()) % ACTION_BUCKETS}_28d"
    assert model_input({f"action_{first}_28d": 3.0}) == {bucket: math.log1p(3.0)}
