"""Sharing score: prior, labels, online model, blend, reasons and enforcement policy."""

from __future__ import annotations

import math
import pickle
import random

import pytest

from models.contract import Event
from models.household import FEATURE_NAMES
from models.learner import OnlineLearner
from models.sharing import (
    PRIOR_WEIGHTS,
    SharingPolicy,
    combine,
    make_sharing_model,
    sharing_action,
    sharing_evidence_score,
    sharing_label,
    sharing_reasons,
    sharing_tone,
)

QUIET = dict.fromkeys(FEATURE_NAMES, 0.0)
MODERATE = {
    **QUIET,
    "observed_days_28d": 20.0,
    "places_28d": 2.0,
    "cross_place_overlap_hours_28d": 3.0,
    "second_place_active_days_28d": 2.0,
    "second_place_coactive_days_28d": 2.0,
    "second_place_own_coactive_days_28d": 1.0,
    "second_place_own_devices_28d": 1.0,
    "second_place_prefixes_28d": 1.0,
}
ESTABLISHED = {
    **MODERATE,
    "cross_place_overlap_hours_28d": 20.0,
    "second_place_active_days_28d": 12.0,
    "second_place_coactive_days_28d": 12.0,
    "second_place_own_coactive_days_28d": 12.0,
    "second_place_own_devices_28d": 2.0,
    "second_place_stationary_devices_28d": 1.0,
}


def ev(kind: str, **fields: object) -> Event:
    return Event("e1", kind, "a-1", 0, fields)


# --------------------------------------------------------------------------- labels


@pytest.mark.parametrize(
    ("event", "label"),
    [
        (ev("household_verification", device_id="d", outcome="failed"), True),
        (ev("household_verification", device_id="d", outcome="expired"), True),
        (ev("household_verification", device_id="d", outcome="verified"), False),
        (ev("household_verification", device_id="d", outcome="unknown"), None),
        (ev("extra_member_added", member_id="m"), True),
        (ev("extra_member_added"), True),
        (ev("playback_started", session_id="s", device_id="d"), None),
        (ev("subscription_cancelled"), None),
    ],
)
def test_sharing_label(event, label):
    assert sharing_label(event) is label


# --------------------------------------------------------------------------- prior


def test_prior_is_a_probability_and_ranks_evidence():
    scores = [sharing_evidence_score(f) for f in (QUIET, MODERATE, ESTABLISHED)]
    assert all(0.0 < s < 1.0 for s in scores)
    assert scores[0] < 0.02 < 0.3 < scores[1] < scores[2]
    assert scores[2] > 0.95


# moderate evidence seen by network (a group of devices apart from home's) only
MODERATE_APART = {
    **MODERATE,
    "second_place_own_coactive_days_28d": 0.0,
    "second_place_own_devices_28d": 0.0,
    "apart_devices_28d": 1.0,
    "apart_coactive_days_28d": 1.0,
}


@pytest.mark.parametrize("name", [n for n, w in PRIOR_WEIGHTS.items() if w > 0])
def test_each_positive_signal_raises_the_prior(name):
    base = MODERATE_APART if name.startswith("apart_") else MODERATE
    more = {**base, name: base[name] + 5.0}
    assert sharing_evidence_score(more) > sharing_evidence_score(base)


def test_a_household_apart_counts_once_by_place_or_by_network():
    """The same evidence by place and by network is one household, not two: the stronger
    view counts, and a weaker one beside it adds nothing."""
    assert sharing_evidence_score(MODERATE_APART) == pytest.approx(sharing_evidence_score(MODERATE))
    both = {**MODERATE, "apart_devices_28d": 1.0, "apart_coactive_days_28d": 1.0}
    assert sharing_evidence_score(both) == sharing_evidence_score(MODERATE)
    stronger = {**MODERATE, "apart_devices_28d": 1.0, "apart_coactive_days_28d": 4.0}
    assert sharing_evidence_score(stronger) == sharing_evidence_score(
        {**MODERATE, "second_place_own_coactive_days_28d": 4.0}
    )
    assert [r["feature"] for r in sharing_reasons(stronger)][:2] == [
        "apart_coactive_days_28d",
        "apart_devices_28d",
    ]


def test_carrier_networks_and_impossible_travel_lower_the_prior():
    base = sharing_evidence_score(ESTABLISHED)
    assert sharing_evidence_score({**ESTABLISHED, "second_place_prefixes_28d": 12.0}) < base
    assert sharing_evidence_score({**ESTABLISHED, "impossible_travel_28d": 4.0}) < base
    rotating = {**ESTABLISHED, "second_place_rotating_prefixes_28d": 2.0}
    assert sharing_evidence_score(rotating) < base


def test_a_leased_line_s_recurring_networks_do_not_count_against_a_lived_in_place():
    """A borrower whose line gets a new address every few days shows a network per
    lease, each seen for days: lived in (a TV there, no home device), those networks are
    not a place of passage's. One-day networks there still count; a place a home device
    visits, or where only a phone lives, is judged by all of its networks as before."""
    leased = {**ESTABLISHED, "second_place_prefixes_28d": 12.0,
              "second_place_recurring_prefixes_28d": 11.0}  # fmt: skip
    assert sharing_evidence_score(leased) == sharing_evidence_score(ESTABLISHED)
    one_day = {**leased, "second_place_prefixes_28d": 16.0}  # 5 of 16 seen on one day only
    assert sharing_evidence_score(one_day) < sharing_evidence_score(leased)
    visited = {**leased, "second_place_shared_devices_28d": 1.0}
    assert sharing_evidence_score(visited) < sharing_evidence_score(
        {**ESTABLISHED, "second_place_shared_devices_28d": 1.0}
    )
    phone = {**leased, "second_place_own_devices_28d": 1.0, "second_place_phone_devices_28d": 1.0,
             "second_place_stationary_devices_28d": 0.0}  # fmt: skip
    assert sharing_evidence_score(phone) == sharing_evidence_score(
        {**phone, "second_place_recurring_prefixes_28d": 1.0}  # settled still, all count
    )
    passage = {**leased, "second_place_recurring_prefixes_28d": 5.0}  # most seen once
    assert sharing_evidence_score(passage) < sharing_evidence_score(ESTABLISHED)


def test_devices_also_seen_at_home_are_the_household_on_the_move():
    """A place visited by home devices (trip, VPN) is no second household."""
    moved = {**MODERATE, "second_place_shared_devices_28d": 1.0}
    assert sharing_evidence_score(moved) < sharing_evidence_score(MODERATE) / 3
    assert sharing_evidence_score({**moved, "second_place_shared_devices_28d": 3.0}) < 0.01


def test_a_place_with_as_many_home_devices_as_residents_is_the_home_seen_twice():
    """Home's own devices seen at the second place, as many as live there: the same
    household geolocated two ways (street vs city centre) or a home network split in
    two. Its co-active days count once; one shared device (a visit) does not do that."""
    split = {
        **QUIET,
        "observed_days_28d": 20.0,
        "second_place_own_devices_28d": 4.0,
        "second_place_own_coactive_days_28d": 5.0,
        "second_place_shared_devices_28d": 4.0,
        "second_place_prefixes_28d": 1.0,
        "second_place_recurring_prefixes_28d": 1.0,
        "second_place_stationary_devices_28d": 1.0,
        "cross_place_overlap_hours_28d": 1.0,
    }
    assert sharing_evidence_score(split) < 0.05
    borrower = {**split, "second_place_shared_devices_28d": 1.0}
    assert sharing_evidence_score(borrower) > 0.99
    more_residents = {**split, "second_place_own_devices_28d": 5.0}
    assert sharing_evidence_score(more_residents) > 0.5


def test_second_household_signals_ramp_up_over_the_first_days():
    """In an account's first days the home is not known yet."""
    scores = [
        sharing_evidence_score({**ESTABLISHED, "observed_days_28d": d}) for d in (0, 1, 3, 7, 20)
    ]
    assert scores == sorted(scores) and scores[0] == sharing_evidence_score(QUIET)
    assert scores[2] < scores[3] == scores[4] > 0.99  # a week to know the home


def test_failed_verification_of_a_device_away_from_home_raises_the_prior():
    failed = {**MODERATE, "away_devices_failed_28d": 1.0}
    assert sharing_evidence_score(failed) > 0.7 > sharing_evidence_score(MODERATE)
    alone = {**QUIET, "away_devices_failed_28d": 1.0}
    assert sharing_evidence_score(alone) < 0.3  # alone, it is an owner's device too


def test_only_days_of_devices_living_at_the_second_place_count():
    visiting = {**ESTABLISHED, "second_place_own_coactive_days_28d": 0.0}
    fewer_days = {**visiting, "second_place_coactive_days_28d": 0.0}
    assert sharing_evidence_score(visiting) == sharing_evidence_score(fewer_days)
    assert sharing_evidence_score(visiting) < sharing_evidence_score(ESTABLISHED)


def test_prior_is_bounded_for_extreme_inputs():
    huge = {k: 1e9 for k in FEATURE_NAMES}
    assert 0.0 <= sharing_evidence_score(huge) <= 1.0


# --------------------------------------------------------------------------- reasons


def test_reasons_are_top_positive_contributions_in_order():
    reasons = sharing_reasons(ESTABLISHED, k=3)
    assert len(reasons) == 3
    weights = [r["weight"] for r in reasons]
    assert weights == sorted(weights, reverse=True) and min(weights) > 0
    assert reasons[0] == {
        "feature": "second_place_own_coactive_days_28d",
        "value": 12.0,
        "weight": 9.0,
    }
    assert all(set(r) == {"feature", "value", "weight"} for r in reasons)
    assert sharing_reasons(ESTABLISHED, k=1) == reasons[:1]
    assert sharing_reasons(QUIET) == []


@pytest.mark.parametrize(
    ("base", "days", "stays"),
    [
        (MODERATE, "second_place_own_coactive_days_28d", "second_place_own_visits_28d"),
        (MODERATE_APART, "apart_coactive_days_28d", "apart_visits_28d"),
    ],
)
def test_a_reason_names_the_stays_when_they_counted(base, days, stays):
    """Days with home or the stays beyond the first, whichever counted (``_together``):
    an operator reading one day with home and a large weight would not see why."""
    came_back = {**base, days: 1.0, stays: 4.0}
    reason = next(r for r in sharing_reasons(came_back, k=10) if r["feature"] in (days, stays))
    assert reason["feature"] == stays and reason["value"] == 4.0
    assert reason["weight"] == pytest.approx(PRIOR_WEIGHTS[days] * 3.0)
    together = {**base, days: 3.0, stays: 2.0}
    reason = next(r for r in sharing_reasons(together, k=10) if r["feature"] in (days, stays))
    assert reason["feature"] == days and reason["value"] == 3.0


def test_reasons_never_include_penalties():
    f = {**ESTABLISHED, "impossible_travel_28d": 3.0, "second_place_prefixes_28d": 9.0}
    names = {r["feature"] for r in sharing_reasons(f, k=10)}
    assert "impossible_travel_28d" not in names and "second_place_prefixes_28d" not in names


# --------------------------------------------------------------------------- model


def test_examples_from_an_older_worker_are_learned_with_the_evidence_they_lack_as_zero():
    """A rolling upgrade: the training topic holds sharing examples from workers that
    did not compute the network-group and stay features yet. They are learned (not
    the whole burst skipped on a missing key), the features they lack read as 0."""
    added = ("apart_devices_28d", "apart_coactive_days_28d",
             "second_place_own_visits_28d", "apart_visits_28d")  # fmt: skip
    older = {k: v for k, v in ESTABLISHED.items() if k not in added}
    zeroed = {**ESTABLISHED, **dict.fromkeys(added, 0.0)}
    lrn = OnlineLearner(make_sharing_model(), name="sharing")
    assert lrn.learn_many([(older, True, "a:0"), (ESTABLISHED, True, "b:0")]) == 2
    assert lrn.predict_proba(older) == lrn.predict_proba(zeroed) > 0.5


def _synthetic(n: int, seed: int):
    """Sharers have overlap and resident devices; non-sharers mostly not (noisy labels)."""
    rnd = random.Random(seed)
    for _ in range(n):
        y = rnd.random() < 0.3
        f = dict(QUIET)
        f["cross_place_overlap_hours_28d"] = rnd.expovariate(1 / (12 if y else 1))
        f["second_place_own_devices_28d"] = float(rnd.randint(1, 3) if y else rnd.random() < 0.1)
        f["second_place_coactive_days_28d"] = float(rnd.randint(3, 14) if y else rnd.randint(0, 5))
        f["second_place_own_coactive_days_28d"] = f["second_place_coactive_days_28d"] if y else 0.0
        f["observed_days_28d"] = 28.0
        f["places_28d"] = float(rnd.randint(2, 4) if y else rnd.randint(1, 3))
        yield f, (y if rnd.random() > 0.05 else not y)


def _logloss(pairs):
    return -sum(math.log(p if y else 1 - p) for p, y in pairs) / len(pairs)


def _auc(pairs):
    pos = [p for p, y in pairs if y]
    neg = [p for p, y in pairs if not y]
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def test_model_learns_online_and_stays_calibrated():
    model = make_sharing_model()
    for f, y in _synthetic(3000, seed=1):
        model.learn_one(f, y)
    held = list(_synthetic(600, seed=2))
    probs = [(model.predict_proba_one(f)[True], y) for f, y in held]
    assert _auc(probs) > 0.9
    mean_p = sum(p for p, _ in probs) / len(probs)
    base_rate = sum(y for _, y in held) / len(held)
    assert abs(mean_p - base_rate) < 0.05
    logloss = _logloss(probs)
    assert logloss < 0.3
    assert logloss < _logloss([(sharing_evidence_score(f), y) for f, y in held])  # beats prior


def test_model_does_not_mutate_input_and_ignores_key_order():
    model = make_sharing_model()
    for f, y in _synthetic(200, seed=3):
        model.learn_one(f, y)
    f = dict(ESTABLISHED)
    reordered = dict(reversed(list(f.items())))
    assert model.predict_proba_one(f) == model.predict_proba_one(reordered)
    assert f == ESTABLISHED


def test_model_pickles_and_is_deterministic():
    a, b = make_sharing_model(), make_sharing_model()
    for f, y in _synthetic(300, seed=4):
        a.learn_one(f, y)
        b.learn_one(f, y)
    c = pickle.loads(pickle.dumps(a))
    assert a.predict_proba_one(MODERATE) == b.predict_proba_one(MODERATE)
    assert c.predict_proba_one(MODERATE) == a.predict_proba_one(MODERATE)


def test_the_learner_scores_the_sharing_model_in_one_pass_as_river_does():
    # models.linear, through OnlineLearner.predict_proba: what the engine blends
    learner = OnlineLearner(make_sharing_model())
    assert learner.predict_proba(MODERATE) == 0.5  # untrained
    learner.learn_many([(f, y, None) for f, y in _synthetic(800, seed=6)])
    held = [f for f, _ in _synthetic(300, seed=7)]
    for f in [*held, QUIET, MODERATE, ESTABLISHED]:
        river = learner.model.predict_proba_one(f)[True]
        assert learner.predict_proba(f) == pytest.approx(river, rel=1e-12, abs=1e-15)
    assert len({round(learner.predict_proba(f), 6) for f in held}) > 100


def test_model_factory_takes_params_without_shared_state():
    a, b = make_sharing_model(lr=0.05, l2=0.0), make_sharing_model(lr=0.05, l2=0.0)
    a.learn_one(ESTABLISHED, True)
    assert b.predict_proba_one(ESTABLISHED)[True] == 0.5
    assert a.predict_proba_one(ESTABLISHED)[True] > 0.5


# --------------------------------------------------------------------------- combine


def test_combine_starts_at_the_prior_and_moves_to_the_model():
    assert combine(0.3, None, 500) == 0.3
    assert combine(0.3, 0.9, 0) == 0.3
    blends = [combine(0.1, 0.9, n) for n in (1, 10, 100, 1000, 100_000)]
    assert blends == sorted(blends)
    assert blends[0] < 0.15 and blends[-1] == pytest.approx(0.5)  # the model never dominates
    assert combine(0.1, 0.9, 100_000, max_model_weight=1.0) > 0.89
    assert combine(0.1, 0.9, 100) == pytest.approx(0.5)
    assert combine(0.1, 0.9, 10, half_labels=10) == pytest.approx(0.5)


def test_combine_handles_certain_inputs():
    assert 0.0 < combine(0.0, 1.0, 50) < 1.0


# --------------------------------------------------------------------------- policy


def test_moderate_evidence_asks_for_verification():
    assert sharing_action(MODERATE, 0.1, SharingPolicy()) == "household_verification"
    assert sharing_tone(0.1, SharingPolicy()) == "standard"


def test_established_second_household_gets_an_extra_member_offer():
    assert sharing_action(ESTABLISHED, 0.1, SharingPolicy()) == "extra_member_offer"


def test_high_churn_risk_softens_verification_into_an_offer():
    policy = SharingPolicy(soften_above_churn=0.6)
    assert sharing_action(MODERATE, 0.59, policy) == "household_verification"
    assert sharing_action(MODERATE, 0.6, policy) == "extra_member_offer"
    assert sharing_tone(0.6, policy) == "soft"
    assert sharing_action(ESTABLISHED, 0.9, policy) == "extra_member_offer"


def test_thresholds_are_configurable():
    strict = SharingPolicy(established_coactive_days=20)
    assert sharing_action(ESTABLISHED, 0.1, strict) == "household_verification"
    lenient = SharingPolicy(established_coactive_days=1, established_overlap_hours=1.0)
    assert sharing_action(MODERATE, 0.1, lenient) == "extra_member_offer"
    no_soften = SharingPolicy(soften_above_churn=1.0)
    assert sharing_action(MODERATE, 0.99, no_soften) == "household_verification"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"soften_above_churn": 1.5},
        {"established_coactive_days": -1},
        {"established_overlap_hours": -2.0},
    ],
)
def test_policy_fails_fast_on_bad_values(kwargs):
    with pytest.raises(ValueError):
        SharingPolicy(**kwargs)


def test_policy_is_frozen():
    with pytest.raises(AttributeError):
        SharingPolicy().soften_above_churn = 0.1  # type: ignore[misc]


def test_the_calibration_is_a_strictly_increasing_probability_that_keeps_the_alert_levels():
    from models.alerting import AlertConfig
    from models.engine import EngineConfig
    from models.sharing import CALIBRATION, RESET, THRESHOLD, calibrate, check_calibration

    assert check_calibration(CALIBRATION) == CALIBRATION
    grid = [i / 1000 for i in range(1001)]
    mapped = [calibrate(p) for p in grid]
    assert all(0.0 < y < 1.0 for y in mapped)
    assert all(b > a for a, b in zip(mapped, mapped[1:], strict=False))
    # the engine alerts on the calibrated score where it alerted on the blend at 0.7 / 0.5
    assert (THRESHOLD, RESET) == (calibrate(0.7), calibrate(0.5))
    assert EngineConfig().sharing_alert == AlertConfig(THRESHOLD, RESET)
    # between knots the map is linear
    (x0, y0), (x1, y1) = CALIBRATION[-3], CALIBRATION[-2]
    assert calibrate((x0 + x1) / 2) == pytest.approx((y0 + y1) / 2)


def test_a_calibration_fitted_on_scores_recovers_the_share_of_positives():
    """Scores whose true probability is a known increasing function of them: the fitted
    map gives that probability back, and the calibrated scores' ECE is small."""
    from models.evaluation import expected_calibration_error, fit_calibration, reliability
    from models.sharing import calibrate, check_calibration

    rng = random.Random(5)
    truth = lambda s: 0.05 + 0.9 * s**2  # noqa: E731 - the true share at score s
    scores = [rng.random() for _ in range(20_000)]
    labels = [rng.random() < truth(s) for s in scores]
    table = fit_calibration(scores, labels, anchors=(0.7,))
    assert check_calibration(table) == table  # strictly increasing, 0 to 1
    assert 0.7 in [x for x, _ in table]
    for s in (0.1, 0.3, 0.5, 0.7, 0.9):
        assert calibrate(s, table) == pytest.approx(truth(s), abs=0.04)
    held = [rng.random() for _ in range(5_000)]
    held_labels = [rng.random() < truth(s) for s in held]
    raw = expected_calibration_error(reliability(held, held_labels))
    fitted = expected_calibration_error(reliability([calibrate(s, table) for s in held],
                                                    held_labels))  # fmt: skip
    assert raw > 0.1 and fitted < 0.03
