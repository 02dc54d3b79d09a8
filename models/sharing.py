"""Sharing score: evidence prior, online River model, blend, reasons and action.

The score is ``combine(prior, model_proba, n_labels_seen)``:

- the *prior* :func:`sharing_evidence_score` is a fixed logistic of a few
  strong household signals (weights in :data:`PRIOR_WEIGHTS`), so the score
  works from the first day, before any label exists;
- the *model* :func:`make_sharing_model` is a scaled logistic regression
  learned online from ``household_verification`` and ``extra_member_added``
  outcomes (:func:`sharing_label`); its inputs are the household features plus
  the prior's logit, so it can learn how far to trust the prior;
- :func:`combine` moves from the prior to the model in logit space as labels
  accumulate;
- :func:`calibrate` maps the blend to the share of accounts scored like it that are
  shared (:data:`CALIBRATION`): what is published and alerted on.

The recommended action (:func:`sharing_action`) depends on how established the
second household is and on the account's churn risk. See ``docs/sharing.md``.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from river import compose, linear_model, optim, preprocessing

from models.contract import Event
from models.household import FEATURE_NAMES
from models.household.state import NETWORK_RADIUS_KM
from models.learner import func_step

# Prior: logit = BIAS + sum(weight * transform(feature)). Transforms are fixed
# (log1p of hours, counts capped) so one strong signal cannot dominate alone.
# A second household is a place with devices that *live* there (never at home),
# active on the same days as home, over a stable network. Devices that come and
# go between home and that place, rotating networks and impossible jumps are the
# household on the move (travel, commute, VPN), never a second household.
PRIOR_BIAS = -4.0
PRIOR_WEIGHTS: dict[str, float] = {
    "second_place_own_devices_28d": 1.5,  # min(n, 2) devices living at the 2nd place
    "second_place_own_coactive_days_28d": 1.8,  # min(n, 5) days they were active with home
    "cross_place_overlap_hours_28d": 0.6,  # log1p(h) they streamed while another place did
    "second_place_stationary_devices_28d": 0.5,  # min(n, 2) of them TVs or consoles
    "away_devices_failed_28d": 3.0,  # min(n, 2) devices not at home that failed verification
    "second_place_shared_devices_28d": -2.0,  # min(n, 3) devices seen at home and there
    "second_place_prefixes_28d": -1.5,  # min(max(n - 2, 0), 4) networks beyond v4 + v6
    "second_place_rotating_prefixes_28d": -2.0,  # min(n, 4) more one-day networks per IP version
    "impossible_travel_28d": -1.0,  # min(n, 5) impossible jumps of one device (VPN)
    # the same two signals when the devices live apart by network rather than by place
    # (a group of devices that never used a network of home's): the larger pair counts
    "apart_devices_28d": 1.5,  # min(n, 2) devices of the apart group
    "apart_coactive_days_28d": 1.8,  # min(n, 5) days it was active with home
}
# The home is unknown in an account's first days: the second-household signals
# ramp up linearly over this many days of observed usage. A week: a household's
# own structure (which network and geo is home, which devices cross over) takes
# that long to show; before it, one home seen two ways (a new lease or the other
# IP version first used by a device geolocated at the city centre) has devices
# "living" on each side, active on the same days (measured: most look-alike false
# positives on the tuning cells fired with 2-6 days of history).
RAMP_DAYS = 7.0
# Further from home than geolocation errs (``NETWORK_RADIUS_KM``): a place this far is
# not the home itself seen two ways (``_far_household``)
FAR_KM = NETWORK_RADIUS_KM
# ... unless both views see the same thing: devices living at a second place that geo
# puts elsewhere *and* a group of devices apart by network (its own line, of an IP
# version the home's line has, never a network of the home's). The confusions the week
# waits out do not pass both: a lease change or the other IP version is one group by
# network, and city-centre geo is one place by network. Measured on the tuning cells:
# worst median delay 5.01 -> 4.02 d, no look-alike alerted more (docs/sharing.md).
_OWN = ("second_place_own_devices_28d", "second_place_own_coactive_days_28d")
_APART = ("apart_devices_28d", "apart_coactive_days_28d")
# each "days with home" term and the stays it counts instead, once there is one such
# day, when they are more (_together; an alert's reasons then name the stays)
_STAYS = {
    "second_place_own_coactive_days_28d": "second_place_own_visits_28d",
    "apart_coactive_days_28d": "apart_visits_28d",
}
_RAMPED = frozenset(list(PRIOR_WEIGHTS)[:4]) | frozenset(_APART)


def _settled(f: Mapping[str, float]) -> bool:
    """Whether the second place looks like somewhere people live, not a spot a phone
    passes through: a network there recurs on another day, or a device other than a
    phone lives there, or there is no network to judge by (geo only)."""
    return (
        f["second_place_recurring_prefixes_28d"] > 0
        or f["second_place_own_devices_28d"] > f["second_place_phone_devices_28d"]
        or f["second_place_prefixes_28d"] == 0
    )


def _mirror(f: Mapping[str, float]) -> bool:
    """Whether the second place is the household itself seen a second way (its home
    geolocated at the city centre, a home network split in two): at least two of the
    home's own devices are seen there, as many as live there. A borrower household's
    devices are never in the owner's living room, and the owner's rarely at theirs."""
    shared = f["second_place_shared_devices_28d"]
    return shared >= 2 and shared >= f["second_place_own_devices_28d"]


def _networks(f: Mapping[str, float]) -> float:
    """The second place's networks that count against it (beyond a home's v4 and v6):
    all of them, except at a place that looks lived in by a line whose address changes
    every few days -- most of its networks recur, something other than a phone lives
    there, and none of the home's devices is seen there -- where only the networks that
    do not recur count. A leased line shows a new network with each lease, seen for the
    days the lease lasts; a place of passage (a hotel, a commute, a VPN exit) shows
    networks seen once, or is where the household's own devices go.

    >>> f = {"second_place_prefixes_28d": 6.0, "second_place_recurring_prefixes_28d": 5.0,
    ...      "second_place_shared_devices_28d": 0.0, "second_place_own_devices_28d": 1.0,
    ...      "second_place_phone_devices_28d": 0.0}
    >>> _networks(f), _networks({**f, "second_place_shared_devices_28d": 1.0})
    (1.0, 6.0)
    >>> _networks({**f, "second_place_phone_devices_28d": 1.0})  # a phone alone: as before
    6.0
    """
    n = f["second_place_prefixes_28d"]
    recurring = f["second_place_recurring_prefixes_28d"]
    if (
        2 * recurring >= n
        and f["second_place_shared_devices_28d"] == 0
        and f["second_place_own_devices_28d"] > f["second_place_phone_devices_28d"]
    ):
        return n - recurring
    return n


def _agree(f: Mapping[str, float]) -> bool:
    """Whether the place view and the network view both see a household living
    elsewhere: devices living at a second place with geo of its own, and a group of
    devices apart by network. Then its home is known enough: no week's ramp."""
    return (
        f["apart_devices_28d"] > 0
        and f["second_place_own_devices_28d"] > 0
        and f["second_place_distance_km"] > 0
    )


def _far_household(f: Mapping[str, float], together: float) -> bool:
    """Whether the second place is a household far from home whatever its networks: a TV
    or console lives there, none of the home's devices is seen there, it is further from
    home than geolocation errs (``FAR_KM``: so not the home itself split in two by geo,
    city centre and street), and it played alongside home on three days or more
    (``together``: so not a hotel, where the household is while home is quiet). Its
    networks then do not count against it: a line whose address changes at every visit
    shows a new network each time, and a home's own new IPv6 prefix at every session
    makes the owner's home look like that too when the borrower's is taken for home.

    >>> f = {"second_place_stationary_devices_28d": 1.0, "second_place_shared_devices_28d": 0.0,
    ...      "second_place_distance_km": 500.0}
    >>> _far_household(f, 3.0), _far_household({**f, "second_place_distance_km": 5.0}, 3.0)
    (True, False)
    """
    return (
        f["second_place_stationary_devices_28d"] >= 1.0
        and f["second_place_shared_devices_28d"] == 0
        and f["second_place_distance_km"] > FAR_KM
        and together >= 3.0
    )


def _together(days: float, visits: float) -> float:
    """The days a household living elsewhere showed it lives alongside home: the days
    both were active, or (once there is one) its stays beyond the first (runs of its
    days split by days only home was active: ``second_place_own_visits_28d``), whichever
    is more. A subtle borrower and the owner rarely watch on the same day, but the
    borrower comes back while the home keeps watching; a trip is one stay, together with
    home only on the days it leaves and returns, and a second trip to the same place is
    a second stay: only the third counts.

    >>> _together(1.0, 4.0), _together(0.0, 4.0), _together(3.0, 2.0)
    (3.0, 0.0, 3.0)
    """
    return max(days, visits - 1.0) if days >= 1.0 else days


def _prior_inputs(f: Mapping[str, float]) -> dict[str, float]:
    """The transformed value of each prior signal."""
    ramp = 1.0 if _agree(f) else min(1.0, f["observed_days_28d"] / RAMP_DAYS)
    # days of a phone on networks that never recur count once: a commute, not a home
    days_cap = 5.0 if _settled(f) and not _mirror(f) else 1.0
    together = {days: _together(f[days], f[stays]) for days, stays in _STAYS.items()}
    # the second place's networks, unless it is a household far away (then none count)
    far = _far_household(f, together["second_place_own_coactive_days_28d"])
    networks = 0.0 if far else _networks(f)
    rotating = 0.0 if far else f["second_place_rotating_prefixes_28d"]
    x = {
        "second_place_own_devices_28d": min(f["second_place_own_devices_28d"], 2.0),
        "second_place_own_coactive_days_28d": min(
            together["second_place_own_coactive_days_28d"], days_cap
        ),
        "cross_place_overlap_hours_28d": math.log1p(f["cross_place_overlap_hours_28d"]),
        "second_place_stationary_devices_28d": min(f["second_place_stationary_devices_28d"], 2.0),
        "away_devices_failed_28d": min(f["away_devices_failed_28d"], 2.0),
        "second_place_shared_devices_28d": min(f["second_place_shared_devices_28d"], 3.0),
        "second_place_prefixes_28d": min(max(networks - 2.0, 0.0), 4.0),
        "second_place_rotating_prefixes_28d": min(rotating, 4.0),
        "impossible_travel_28d": min(f["impossible_travel_28d"], 5.0),
        "apart_devices_28d": min(f["apart_devices_28d"], 2.0),
        "apart_coactive_days_28d": min(together["apart_coactive_days_28d"], 5.0),
    }
    # one household living elsewhere, seen by place or by network: the stronger view counts
    weaker = _OWN if _weighed(x, _APART) > _weighed(x, _OWN) else _APART
    x.update(dict.fromkeys(weaker, 0.0))
    return {k: v * ramp if k in _RAMPED else v for k, v in x.items()}


def _weighed(x: Mapping[str, float], names: tuple[str, ...]) -> float:
    return sum(PRIOR_WEIGHTS[k] * x[k] for k in names)


def _contributions(f: Mapping[str, float]) -> dict[str, float]:
    return {k: PRIOR_WEIGHTS[k] * x for k, x in _prior_inputs(f).items()}


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def sharing_evidence_score(features: Mapping[str, float]) -> float:
    """Transparent prior probability of sharing from household evidence alone.

    >>> quiet = dict.fromkeys(FEATURE_NAMES, 0.0)
    >>> round(sharing_evidence_score(quiet), 3)
    0.018
    >>> sharer = {**quiet, "observed_days_28d": 20.0, "second_place_own_devices_28d": 1.0,
    ...           "second_place_own_coactive_days_28d": 3.0, "second_place_prefixes_28d": 1.0}
    >>> round(sharing_evidence_score(sharer), 2)
    0.95
    >>> round(sharing_evidence_score({**sharer, "second_place_shared_devices_28d": 1.0}), 2)
    0.71
    >>> round(sharing_evidence_score({**sharer, "second_place_shared_devices_28d": 2.0}), 2)
    0.01
    """
    return _sigmoid(PRIOR_BIAS + sum(_contributions(features).values()))


def sharing_reasons(features: Mapping[str, float], k: int = 3) -> list[dict[str, Any]]:
    """The ``k`` prior signals that raise the score most (weight = logit contribution).
    A "days with home" term that counted the stays (``_together``) is named by them.

    >>> f = {**dict.fromkeys(FEATURE_NAMES, 0.0), "second_place_own_devices_28d": 2.0,
    ...      "observed_days_28d": 10.0, "second_place_shared_devices_28d": 1.0}
    >>> sharing_reasons(f)
    [{'feature': 'second_place_own_devices_28d', 'value': 2.0, 'weight': 3.0}]
    >>> stays = {**f, "second_place_own_coactive_days_28d": 1.0, "second_place_own_visits_28d": 4.0}
    >>> sharing_reasons(stays, k=1)
    [{'feature': 'second_place_own_visits_28d', 'value': 4.0, 'weight': 5.4}]
    """
    pos = [(w, name) for name, w in _contributions(features).items() if w > 0]
    pos.sort(reverse=True)
    out = []
    for w, name in pos[:k]:
        stays = _STAYS.get(name)
        if stays is not None and _together(features[name], features[stays]) > features[name]:
            name = stays
        out.append({"feature": name, "value": float(features[name]), "weight": round(w, 3)})
    return out


def sharing_label(event: Event) -> bool | None:
    """Label carried by an event: True = shared outside the household.

    >>> from models.contract import Event
    >>> sharing_label(Event("e", "household_verification", "a", 0, {"outcome": "expired"}))
    True
    >>> sharing_label(Event("e", "household_verification", "a", 0, {"outcome": "verified"}))
    False
    >>> sharing_label(Event("e", "login", "a", 0, {"device_id": "d"})) is None
    True
    """
    if event.type == "extra_member_added":
        return True
    if event.type == "household_verification":
        outcome = event.fields.get("outcome")
        if outcome in ("failed", "expired"):
            return True
        if outcome == "verified":
            return False
    return None


# What the model sees: the second-household evidence, not the household's size
# (devices, profiles and streams at home are big families, not sharing) and not
# the running verification counts (they *are* past labels, on biased samples:
# only suspicious accounts are challenged, and owners fail too). Heavy-tailed
# counts get log1p; shares, distances and hours of shift are bounded already.
MODEL_FEATURES = tuple(n for n in FEATURE_NAMES if n.startswith("second_place_")) + (
    "cross_place_overlap_hours_28d",
    "away_share",
    "away_devices_failed_28d",
    "impossible_travel_28d",
    "popular_network_places_28d",
    "rhythm_shift_hours",
    "observed_days_28d",
    *_APART,
    "apart_visits_28d",
)
_UNLOGGED = frozenset({"away_share", "second_place_share", "rhythm_shift_hours"})


# Features added since the first sharing examples (network groups, stays): an example a
# worker of an older version put on the training topic lacks them and reads them as 0,
# evidence not seen, rather than failing the learner's whole burst with a KeyError
# (``streams.agents.learner``: ``learn_failed``).
_ADDED = (
    "apart_devices_28d",
    "apart_coactive_days_28d",
    "second_place_own_visits_28d",
    "apart_visits_28d",
)


def sharing_model_input(features: Mapping[str, float]) -> dict[str, float]:
    """Fixed transforms of the evidence features plus the prior's logit (model input).

    >>> x = sharing_model_input(dict.fromkeys(FEATURE_NAMES, 0.0))
    >>> round(x["prior_logit"], 1), x["second_place_own_devices_28d"], "devices_28d" in x
    (-4.0, 0.0, False)
    >>> older = {k: v for k, v in dict.fromkeys(FEATURE_NAMES, 0.0).items() if k not in _ADDED}
    >>> sharing_model_input(older) == x
    True
    """
    if not all(name in features for name in _ADDED):
        features = {**dict.fromkeys(_ADDED, 0.0), **features}
    x = {
        name: float(features[name]) if name in _UNLOGGED else math.log1p(max(features[name], 0.0))
        for name in MODEL_FEATURES
    }
    x["prior_logit"] = _logit(sharing_evidence_score(features))
    return x


def make_sharing_model(
    *, lr: float = 0.01, l2: float = 1e-3, intercept_lr: float = 0.01
) -> compose.Pipeline:
    """River pipeline: fixed transforms + prior logit -> StandardScaler -> LogReg (Adam, L2).

    Feed it the raw ``household_features`` dict.

    >>> m = make_sharing_model()
    >>> f = dict.fromkeys(FEATURE_NAMES, 0.0)
    >>> m.predict_proba_one(f)[True]
    0.5
    >>> m.learn_one(f, False)
    >>> m.predict_proba_one(f)[True] < 0.5
    True
    """
    return compose.Pipeline(
        func_step(sharing_model_input),
        preprocessing.StandardScaler(),
        linear_model.LogisticRegression(optimizer=optim.Adam(lr), l2=l2, intercept_lr=intercept_lr),
    )


def combine(
    prior: float,
    model_proba: float | None,
    n_labels_seen: int,
    *,
    half_labels: int = 100,
    max_model_weight: float = 0.5,
) -> float:
    """Blend prior and model in logit space; the model's weight is n / (n + half_labels),
    at most ``max_model_weight``.

    The labels the model learns from are biased (only suspicious accounts are
    challenged) and noisy (owners fail or let codes expire too), so the model
    adjusts the evidence prior and never replaces it.

    >>> combine(0.2, None, 0)
    0.2
    >>> round(combine(0.2, 0.8, 100), 3)
    0.5
    >>> round(combine(0.2, 0.8, 10_000), 2), round(combine(0.2, 0.8, 10_000, max_model_weight=1), 2)
    (0.5, 0.8)
    """
    if model_proba is None or n_labels_seen <= 0:
        return prior
    w = min(max_model_weight, n_labels_seen / (n_labels_seen + half_labels))
    return _sigmoid((1 - w) * _logit(prior) + w * _logit(model_proba))


# The published sharing score: the blend above through a fixed monotone map, knots
# (blend, share of accounts still shared at the end among those the blend scored so),
# linear between them. The blend ranks well but is no probability: on the tuning cells
# of benchmarks/bench_sharing_matrix.py accounts it scored 0.3-0.4 were sharers 70% of
# the time, 0.1-0.2 only 7% (expected calibration error 0.04-0.09 per cell). Fitted by
# isotonic regression (models.evaluation.fit_calibration) on the last blend of every
# account of the eight tuning cells whose truth at the end is known, 2,526 accounts, 22%
# of them still shared (``python benchmarks/bench_sharing_matrix.py --only tune --fit-calibration``,
# docs/sharing.md, "Calibration"). Strictly increasing, so it changes no ranking and,
# with the alert levels mapped through it (0.7 -> 0.932, 0.5 -> 0.842: the defaults of
# CHURNWATCH_SHARING_THRESHOLD and _RESET), no alert. How many of the quiet accounts
# are sharers not yet seen (the bottom of the map) depends on how many sharers a
# population has: fit your own on verified labels (CHURNWATCH_SHARING_CALIBRATION).
CALIBRATION: tuple[tuple[float, float], ...] = (
    (0.0, 0.002), (0.0001, 0.003), (0.0003, 0.016), (0.0004, 0.022), (0.0008, 0.025),
    (0.0027, 0.031), (0.0045, 0.034), (0.0105, 0.056), (0.0262, 0.064), (0.0718, 0.073),
    (0.1396, 0.078), (0.2129, 0.083), (0.2513, 0.541), (0.3549, 0.66), (0.493, 0.841),
    (0.5, 0.842), (0.56, 0.846), (0.6227, 0.889), (0.7, 0.932), (0.7752, 0.974),
    (0.9622, 0.998), (1.0, 0.999),
)  # fmt: skip
# the blend's alert levels (reset, threshold) before the score was calibrated: knots of
# every map fitted, so that the alerts can stay where they were ...
BLEND_LEVELS = (0.5, 0.7)
# ... and those levels as this map gives them: the calibrated score's defaults
THRESHOLD, RESET = 0.932, 0.842


def calibrate(p: float, table: Sequence[tuple[float, float]] = CALIBRATION) -> float:
    """``p`` through the piecewise-linear map ``table`` (knots from score 0 to 1, both
    increasing; :func:`check_calibration`); an empty table leaves ``p`` as it is.

    >>> calibrate(0.7), calibrate(0.5), calibrate(0.35, ((0.0, 0.1), (0.5, 0.5), (1.0, 0.9)))
    (0.932, 0.842, 0.38)
    >>> calibrate(0.35, ())
    0.35
    """
    if not table:
        return p
    i = bisect_left(table, (p,))
    if i == 0:
        return table[0][1]
    if i == len(table):
        return table[-1][1]
    (x0, y0), (x1, y1) = table[i - 1], table[i]
    return y0 + (y1 - y0) * (p - x0) / (x1 - x0)


def check_calibration(table: Sequence[Sequence[float]]) -> tuple[tuple[float, float], ...]:
    """``table`` as knots for :func:`calibrate`, or ValueError: pairs of numbers, scores
    from 0 to 1 and probabilities in [0, 1], both strictly increasing (a flat piece would
    make different scores one, and an alert level could not tell them apart).

    >>> check_calibration([[0, 0.01], [1, 0.99]])
    ((0.0, 0.01), (1.0, 0.99))
    >>> check_calibration([[0, 0.01], [0.5, 0.01], [1, 0.99]])
    Traceback (most recent call last):
    ...
    ValueError: a calibration's scores and probabilities must both increase strictly
    """
    try:
        knots = tuple((float(x), float(y)) for x, y in table)
    except (TypeError, ValueError):
        raise ValueError("a calibration is a list of [score, probability] pairs") from None
    if len(knots) < 2 or knots[0][0] != 0.0 or knots[-1][0] != 1.0:
        raise ValueError("a calibration's scores must run from 0 to 1")
    if not all(0.0 <= y <= 1.0 for _, y in knots):
        raise ValueError("a calibration's probabilities must be within [0, 1]")
    if any(x1 <= x0 or y1 <= y0 for (x0, y0), (x1, y1) in zip(knots, knots[1:], strict=False)):
        raise ValueError("a calibration's scores and probabilities must both increase strictly")
    return knots


# --------------------------------------------------------------------------- enforcement


@dataclass(frozen=True, slots=True)
class SharingPolicy:
    """Thresholds of the enforcement policy (see docs/sharing.md).

    A second household is *established* when the devices living there were
    active together with home on at least ``established_coactive_days`` days,
    there are at least ``established_own_devices`` such devices and
    ``established_overlap_hours`` hours of concurrent viewing; then the action is
    ``extra_member_offer``. Otherwise (moderate evidence) it is
    ``household_verification`` -- unless the account's churn score is at least
    ``soften_above_churn``, where a hard verification would push a likely
    leaver out: then ``extra_member_offer`` (with the soft wording, see
    :func:`sharing_tone`).
    """

    established_coactive_days: int = 7
    established_own_devices: int = 1
    established_overlap_hours: float = 6.0
    soften_above_churn: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.soften_above_churn <= 1.0:
            raise ValueError("soften_above_churn must be in [0, 1]")
        if min(self.established_coactive_days, self.established_own_devices) < 0:
            raise ValueError("established_* thresholds must be >= 0")
        if self.established_overlap_hours < 0:
            raise ValueError("established_overlap_hours must be >= 0")


def is_established(features: Mapping[str, float], policy: SharingPolicy) -> bool:
    """Whether the evidence shows a stable second household.

    >>> f = {**dict.fromkeys(FEATURE_NAMES, 0.0), "second_place_own_coactive_days_28d": 9.0,
    ...      "second_place_own_devices_28d": 2.0, "cross_place_overlap_hours_28d": 10.0}
    >>> is_established(f, SharingPolicy())
    True
    >>> is_established(f, SharingPolicy(established_coactive_days=10))
    False
    """
    return (
        features["second_place_own_coactive_days_28d"] >= policy.established_coactive_days
        and features["second_place_own_devices_28d"] >= policy.established_own_devices
        and features["cross_place_overlap_hours_28d"] >= policy.established_overlap_hours
    )


def sharing_action(features: Mapping[str, float], churn_score: float, policy: SharingPolicy) -> str:
    """Recommended action of a sharing alert: ``household_verification`` or ``extra_member_offer``.

    >>> f = dict.fromkeys(FEATURE_NAMES, 0.0)
    >>> sharing_action(f, 0.1, SharingPolicy()), sharing_action(f, 0.9, SharingPolicy())
    ('household_verification', 'extra_member_offer')
    """
    if is_established(features, policy) or churn_score >= policy.soften_above_churn:
        return "extra_member_offer"
    return "household_verification"


def sharing_tone(churn_score: float, policy: SharingPolicy) -> str:
    """Wording of the action: ``soft`` for accounts at churn risk, else ``standard``.

    >>> sharing_tone(0.8, SharingPolicy()), sharing_tone(0.1, SharingPolicy())
    ('soft', 'standard')
    """
    return "soft" if churn_score >= policy.soften_above_churn else "standard"
