"""Churn features pinned for hand-built event sequences (with a duplicate and late events)."""

from __future__ import annotations

import math

import pytest

from models.account import DAY_MS, HOUR_MS, apply_event, new_account
from models.contract import Event
from models.features import churn_features

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MIN = 60_000


def ev(eid: str, type_: str, ts: int, **fields: object) -> Event:
    return Event(eid, type_, "a", ts, fields)


def trend(recent: float, base: float) -> float:
    return (recent - base) / (recent + base)


def decayed(half_life: int, events: dict[int, int], today: int) -> float:
    """Per-day rate of usage events decayed with ``half_life`` days (over 56 days lived)."""
    lived = min(56, today + 1)
    total = sum(n * 0.5 ** ((today - d) / half_life) for d, n in events.items())
    return total / sum(0.5 ** (k / half_life) for k in range(lived))


def history() -> list[Event]:
    d = DAY_MS
    return [
        ev(
            "start",
            "subscription_started",
            T0,
            plan="std",
            price=120.0,
            currency="EUR",
            billing_period="year",
            max_streams=2,
        ),
        # week 1: busy, two profiles on two devices
        ev("p1", "playback_started", T0 + 1 * d, session_id="s1", device_id="tv", profile_id="A"),
        ev("q1", "playback_stopped", T0 + 1 * d + 2 * HOUR_MS, session_id="s1"),
        ev(
            "p2", "playback_started", T0 + 2 * d, session_id="s2", device_id="phone", profile_id="B"
        ),
        ev("q2", "playback_stopped", T0 + 2 * d + HOUR_MS, session_id="s2", watched_s=1800),
        ev("x1", "activity", T0 + 2 * d, action="like", quantity=3),
        ev("x1", "activity", T0 + 2 * d, action="like", quantity=3),  # duplicate
        ev("s", "support_contacted", T0 + 20 * d, topic="billing"),
        ev("pi", "price_changed", T0 + 25 * d, price=150.0),
        ev("pd", "plan_changed", T0 + 30 * d, plan="basic", price=90.0, max_streams=1),
        ev("f1", "payment_failed", T0 + 31 * d, amount=90.0),
        # last week: one short session on the tv, then a late activity from the day before
        ev(
            "p3",
            "playback_started",
            T0 + 33 * d + 10 * MIN,
            session_id="s3",
            device_id="tv",
            profile_id="A",
        ),
        ev("q3", "playback_stopped", T0 + 33 * d + 40 * MIN, session_id="s3"),
        ev("late-ok", "activity", T0 + 33 * d - 10 * MIN, action="Rate It"),  # 50 min late
        ev("too-late", "payment_failed", T0 + 30 * d, amount=90.0),  # 3 days late: dropped
        ev("f2", "payment_failed", T0 + 34 * d, amount=90.0),
    ]


def test_features_pinned_for_a_hand_built_history() -> None:
    s = new_account("a")
    applied = [apply_event(s, e) for e in history()]
    assert applied.count(False) == 2  # the duplicate and the too-late event
    f = churn_features(s, T0 + 35 * DAY_MS)
    expected = {
        "tenure_days_log": math.log1p(35),
        "cancelled": 0.0,
        "reactivations": 0.0,
        "price_monthly_log": math.log1p(90.0 / 12),
        "billing_yearly": 1.0,
        "days_to_renewal": 365.25 - 35,
        "max_streams": 1.0,
        "price_increase_pct_90d": 0.25,
        "plan_upgrades_90d": 0.0,
        "plan_downgrades_90d": 1.0,
        "payment_failed_7d": 2.0,
        "payment_failed_28d": 2.0,
        "payment_unresolved": 1.0,
        "support_contacts_28d": 1.0,
        "days_since_last_playback": 2 - 40 / 1440,
        "days_since_last_activity": 2 - 40 / 1440,
        "devices_28d": 1.0,
        "profiles_28d": 1.0,
        "watch_hours_7d": 0.5,
        "watch_hours_28d": 0.5,
        "sessions_7d": 1.0,
        "sessions_28d": 1.0,
        "active_days_7d": 2.0,  # the late activity counts on its own day
        "active_days_28d": 2.0,
        "activity_7d": 1.0,
        "activity_28d": 1.0,
        "action_like_28d": 0.0,
        "action_rate_it_28d": 1.0,
        "engagement_trend": (1 / 7 - 1 / 28) / (1 / 7 + 1 / 28),
        "active_days_trend": (1 / 7 - 1 / 28) / (1 / 7 + 1 / 28),
        # the long view: usage events on days 1 (2), 2 (3), 32 (1) and 33 (2), today 35
        **{f"usage_hl{h}d": decayed(h, {1: 2, 2: 3, 32: 1, 33: 2}, 35) for h in (3, 14, 56)},
        "usage_trend_3v56": trend(
            decayed(3, {1: 2, 2: 3, 32: 1, 33: 2}, 35), decayed(56, {1: 2, 2: 3, 32: 1, 33: 2}, 35)
        ),
        "usage_trend_14v56": trend(
            decayed(14, {1: 2, 2: 3, 32: 1, 33: 2}, 35), decayed(56, {1: 2, 2: 3, 32: 1, 33: 2}, 35)
        ),
        "watch_hours_56d": 3.0,
        "active_days_56d": 4.0,
        "activity_56d": 4.0,
        # recent: the last 14 days (days 22..35); baseline: the 21 days lived before them
        "watch_trend_long": trend(1800 / 14, 9000 / 21),
        "active_days_trend_long": trend(2 / 14, 2 / 21),
        "activity_trend_long": trend(1 / 14, 3 / 21),
        "usual_actions_count": 1.0,  # like (3 in the baseline); rate_it only recently
        "usual_actions_dropped": 1.0,
        "usual_actions_gone": 1.0,
        "top_actions_trend": -1.0,
        **{f"actrate_h{i}": 0.0 for i in range(8)},
        **{f"acttrend_h{i}": 0.0 for i in range(8)},
        "actrate_h3": 1 / 14,  # like and rate_it share bucket 3
        "acttrend_h3": trend(1 / 14, 3 / 21),
    }
    assert f.keys() == expected.keys()
    for name, value in expected.items():
        assert f[name] == pytest.approx(value), name


def test_features_early_in_life_and_no_lookahead() -> None:
    s = new_account("a")
    for e in history():
        apply_event(s, e)
    # at day 3 the account is young: rates use the days it has lived, so no "decline"
    f = churn_features(s, T0 + 3 * DAY_MS)
    assert f["watch_hours_7d"] == pytest.approx(2.5)
    assert f["sessions_7d"] == 2 and f["active_days_7d"] == 2
    assert f["action_like_28d"] == 3.0
    assert f["engagement_trend"] == pytest.approx(0.0)
    # later facts are not visible at day 3 (the state still holds their time)
    assert f["payment_failed_28d"] == 0 and f["support_contacts_28d"] == 0
    assert f["price_increase_pct_90d"] == 0 and f["plan_downgrades_90d"] == 0
    assert f["payment_unresolved"] == 0


def test_recency_of_an_account_that_never_played_is_its_tenure_clipped() -> None:
    s = new_account("a")
    apply_event(s, history()[0])
    assert churn_features(s, T0 + 10 * DAY_MS)["days_since_last_playback"] == 10
    assert churn_features(s, T0 + 400 * DAY_MS)["days_since_last_activity"] == 90
    f = churn_features(s, T0)
    assert f["tenure_days_log"] == 0 and f["engagement_trend"] == 0


def test_cancel_and_recovered_payment() -> None:
    s = new_account("a")
    for e in history()[:1] + [
        ev("f", "payment_failed", T0 + DAY_MS, amount=1.0),
        ev("ok", "payment_succeeded", T0 + 2 * DAY_MS, amount=1.0),
        ev("c", "subscription_cancelled", T0 + 3 * DAY_MS),
    ]:
        apply_event(s, e)
    assert churn_features(s, T0 + 2 * DAY_MS)["payment_unresolved"] == 0
    assert churn_features(s, T0 + DAY_MS)["payment_unresolved"] == 1
    assert churn_features(s, T0 + 3 * DAY_MS)["cancelled"] == 1
    assert churn_features(s, T0 + 3 * DAY_MS - 1)["cancelled"] == 0


def test_features_do_not_change_the_state() -> None:
    from models.account import dump_state

    s = new_account("a")
    for e in history():
        apply_event(s, e)
    before = dump_state(s)
    churn_features(s, T0 + 35 * DAY_MS)
    assert dump_state(s) == before


def test_kept_usage_sums_give_the_features_of_a_fresh_computation_to_the_bit():
    """``state.usage_sums`` (the past days' sums) never changes a feature: late events
    that cross midnight, the pruning of old days and features at older times included."""
    import dataclasses
    import random

    from models.account import StateConfig

    rng, cfg = random.Random(7), StateConfig(ring_days=28)
    s, ts = new_account("a"), T0
    kinds = ["login", "activity", "playback_stopped", "activity"]
    for i in range(1500):
        ts += rng.choice([MIN, 20 * MIN, 3 * HOUR_MS, 11 * HOUR_MS])
        late = ts - rng.choice([0, 0, 0, 50 * MIN])  # within the lateness: maybe yesterday
        kind = rng.choice(kinds)
        fields = {"device_id": "tv", "session_id": f"s{i}", "watched_s": rng.random() * 999,
                  "action": rng.choice(["like", "rate", "share"]), "quantity": rng.random()}  # fmt: skip
        apply_event(s, ev(f"e{i}", kind, late, **fields), cfg=cfg)
        for at in (s.max_ts, late, s.max_ts - rng.choice([0, 0, 1, 10]) * DAY_MS):
            fresh = churn_features(dataclasses.replace(s, usage_sums=None), at)
            assert repr(churn_features(s, at)) == repr(fresh)


def test_kept_usage_sums_are_dropped_with_the_days_they_hold():
    import dataclasses

    from models.account import StateConfig

    cfg, s = StateConfig(ring_days=28), new_account("a")
    for d in range(45):
        if d == 40:  # kept: days 12..39; the sums of days 12..29, then days 12..16 pruned
            at = T0 + 30 * DAY_MS
            before = churn_features(s, at)
        apply_event(s, ev(f"e{d}", "login", T0 + d * DAY_MS, device_id="tv"), cfg=cfg)
    fresh = churn_features(dataclasses.replace(s, usage_sums=None), at)
    assert churn_features(s, at) == fresh
    assert (before["active_days_28d"], fresh["active_days_28d"]) == (19.0, 14.0)
