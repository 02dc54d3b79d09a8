"""Churn features: a pure function of an ``AccountState`` at an event time.

``churn_features(state, now_ms)`` returns a flat ``dict[str, float]`` (River's
input). Names are stable; windows are in event time, ending at ``now_ms``:
"7d"/"28d" are the last 7/28 UTC days including today for usage (day buckets)
and the last 7/28/90 days to the millisecond for subscription facts.
Features that only grow get fixed transforms (log1p, per-day rates, clipping),
so a running scaler does not lag behind them. Events after ``now_ms`` are left
out where the state still holds their time (lists, day buckets).

=============================  ================================================
``tenure_days_log``            log1p(days since subscription start, else first event)
``cancelled``                  1 if the subscription is cancelled at ``now_ms``
``reactivations``              reactivations in the kept history (the last year, at most 16)
``price_monthly_log``          log1p(price per month; yearly price / 12)
``billing_yearly``             1 for a yearly billing period
``days_to_renewal``            days until the next billing anniversary of the start
``max_streams``                concurrent streams the plan allows
``price_increase_pct_90d``     summed relative increases of ``price_changed`` (90 d)
``plan_upgrades_90d``          ``plan_changed`` to a higher price (90 d)
``plan_downgrades_90d``        ``plan_changed`` to a lower price (90 d)
``payment_failed_7d/28d``      failed payments
``payment_unresolved``         1 if the latest failure has no later success
``support_contacts_28d``       support contacts
``watch_hours_7d/28d``         hours watched (credited on the stop's day)
``sessions_7d/28d``            playback sessions started
``active_days_7d/28d``         days with any usage event
``activity_7d/28d``            summed ``activity`` quantities
``action_<name>_28d``          per-action quantity (capped names + ``other``)
``engagement_trend``           (r7 - r28) / (r7 + r28) of watch hours per day, [-1, 1]
``active_days_trend``          the same for active days
``days_since_last_playback``   days, clipped to 90 (never played: days of tenure)
``days_since_last_activity``   days since any usage event, clipped to 90
``devices_28d``                devices seen in the last 28 days
``profiles_28d``               profiles seen in the last 28 days
``*_56d``                      watch hours, active days, activity over 56 days
``usage_hl3d/14d/56d``         usage events per day, decayed with a half-life of
                               3/14/56 days (over the last 56 days)
``usage_trend_3v56``           ``_trend`` of the 3-day against the 56-day rate
``usage_trend_14v56``          the same, 14 against 56 days
``watch_trend_long``           ``_trend`` of the last 14 days' rate against the
                               account's baseline (the 42 days before them)
``active_days_trend_long``     the same for active days
``activity_trend_long``        the same for activity quantities
``usual_actions_count``        the account's usual actions: >= 2 in its baseline
``usual_actions_dropped``      share of them whose recent rate fell below half
                               of its baseline rate
``usual_actions_gone``         share of them not seen in the last 14 days
``top_actions_trend``          ``_trend`` of the account's 3 top baseline actions
``actrate_h<i>``               per-day rate of the last 14 days of the actions
                               hashed (crc32 of the name) into bucket i of 8
``acttrend_h<i>``              its ``_trend`` against its baseline
=============================  ================================================

The per-day rates r7/r28 divide by the days the account has existed within
the window, so a new account is not "declining" just for being new. The long
view needs a baseline of at least 7 lived days (else its trends are 0); it
reads the day buckets the state keeps (56 by default: ``StateConfig.ring_days``).
Per-action features are bounded whatever the product's vocabulary: the state
keeps at most ``max_actions`` names (the rest are ``other``), the aggregates are
shares and trends, and hashing maps any name to one of 8 buckets.
"""

from __future__ import annotations

import bisect
import itertools
import math
import zlib
from collections.abc import Iterable

from models.account import DAY_MS, AccountState, DayBucket, UsageSums

RECENCY_CAP_DAYS = 90.0
RECENT_DAYS = 14  # the recent part of the long view (today included)
LONG_DAYS = 56  # the long view: recent days plus the account's baseline before them
HALF_LIVES = (3, 14, 56)  # days, of the decayed usage rates
HASH_BUCKETS = 8
MIN_USUAL = 2.0  # baseline quantity that makes an action one of the account's usual ones
TOP_ACTIONS = 3
_DECAY = tuple(tuple(0.5 ** (k / h) for k in range(LONG_DAYS)) for h in HALF_LIVES)
_DECAY_BY_AGE = tuple(zip(*_DECAY, strict=True))  # days ago -> the weight of each half-life
# the weights' sums over the first n days (index n - 1): what a decayed rate divides by
_DECAY_SUMS = tuple(tuple(itertools.accumulate(w)) for w in _DECAY)
_MONTH_MS = 30.4375 * DAY_MS
_YEAR_MS = 365.25 * DAY_MS


def churn_features(state: AccountState, now_ms: int) -> dict[str, float]:
    """Features of ``state`` at event time ``now_ms`` (pure: the state's content is not
    changed; the usage sums of the past days are kept in ``state.usage_sums``).

    >>> from models.account import new_account, apply_event
    >>> from models.contract import Event
    >>> s = new_account("a")
    >>> _ = apply_event(s, Event("e1", "subscription_started", "a", 0,
    ...     {"plan": "p", "price": 10.0, "currency": "EUR",
    ...      "billing_period": "month", "max_streams": 2}))
    >>> _ = apply_event(s, Event("e2", "payment_failed", "a", DAY_MS, {"amount": 10.0}))
    >>> f = churn_features(s, 3 * DAY_MS)
    >>> f["payment_failed_7d"], f["payment_unresolved"], round(f["tenure_days_log"], 3)
    (1.0, 1.0, 1.386)
    """
    start = state.start_ts if state.start_ts is not None else state.first_ts
    age_ms = max(now_ms - start, 0) if start is not None else 0
    age_days = age_ms / DAY_MS
    yearly = state.billing_period == "year"
    period_ms = _YEAR_MS if yearly else _MONTH_MS
    f: dict[str, float] = {
        "tenure_days_log": math.log1p(age_days),
        "cancelled": float(state.status_at(now_ms) == "cancelled"),
        "reactivations": float(state.reactivations),
        "price_monthly_log": math.log1p(state.price / 12.0 if yearly else state.price),
        "billing_yearly": float(yearly),
        "days_to_renewal": (period_ms - age_ms % period_ms) / DAY_MS,
        "max_streams": float(state.max_streams),
        "price_increase_pct_90d": sum(
            max(new / old - 1.0, 0.0)
            for ts, old, new in state.price_changes
            if old > 0 and now_ms - 90 * DAY_MS < ts <= now_ms
        ),
        "plan_upgrades_90d": _count((t for t, d in state.plan_changes if d > 0), now_ms, 90),
        "plan_downgrades_90d": _count((t for t, d in state.plan_changes if d < 0), now_ms, 90),
        "payment_failed_7d": _count(state.failed_payments, now_ms, 7),
        "payment_failed_28d": _count(state.failed_payments, now_ms, 28),
        "payment_unresolved": float(_payment_unresolved(state, now_ms)),
        "support_contacts_28d": _count(state.support_contacts, now_ms, 28),
        "days_since_last_playback": _days_since(state.last_playback_ts, now_ms, age_days),
        "days_since_last_activity": _days_since(state.last_usage_ts, now_ms, age_days),
        "devices_28d": _seen_since(state.devices, now_ms - 28 * DAY_MS, now_ms),
        "profiles_28d": _seen_since(state.profiles, now_ms - 28 * DAY_MS, now_ms),
    }
    f.update(_engagement(state, now_ms, age_days))
    return f


def _count(times: Iterable[int], now_ms: int, days: int) -> float:
    since = now_ms - days * DAY_MS
    return float(sum(1 for ts in times if since < ts <= now_ms))


def _payment_unresolved(state: AccountState, now_ms: int) -> bool:
    failed = [ts for ts in state.failed_payments if ts <= now_ms]
    if not failed:
        return False
    ok = state.last_payment_ok_ts
    return ok is None or ok < failed[-1] or ok > now_ms


def _days_since(ts: int | None, now_ms: int, age_days: float) -> float:
    days = age_days if ts is None or ts > now_ms else (now_ms - ts) / DAY_MS
    return min(days, RECENCY_CAP_DAYS)


def _seen_since(seen: dict[str, list[int]], since: int, now_ms: int) -> float:
    return float(sum(1 for first, last in seen.values() if last > since and first <= now_ms))


def _engagement(state: AccountState, now_ms: int, age_days: float) -> dict[str, float]:
    today = now_ms // DAY_MS
    sums = state.usage_sums
    if sums is None or sums.day != today:
        sums = state.usage_sums = _past_usage(state, today)
    actions = dict.fromkeys(state.actions, 0.0)
    actions.update(sums.actions)
    watch7, sessions7, active7, activity7 = sums.week
    watch28, sessions28, active28, activity28 = sums.month
    b = state.days.at(today)
    if b is not None:  # added last, as the days before it were: the same sums to the bit
        active = b.usage_events > 0
        watch7, sessions7, active7, activity7 = (
            watch7 + b.watch_s, sessions7 + b.sessions, active7 + active, activity7 + b.activity
        )  # fmt: skip
        watch28, sessions28, active28, activity28 = (
            watch28 + b.watch_s, sessions28 + b.sessions, active28 + active,
            activity28 + b.activity,
        )  # fmt: skip
        for name, qty in b.actions.items():
            actions[name] = actions.get(name, 0.0) + qty
    out = {_action_feature(name): qty for name, qty in actions.items()}
    out["watch_hours_7d"] = watch7 / 3600.0
    out["sessions_7d"] = sessions7
    out["active_days_7d"] = active7
    out["activity_7d"] = activity7
    out["watch_hours_28d"] = watch28 / 3600.0
    out["sessions_28d"] = sessions28
    out["active_days_28d"] = active28
    out["activity_28d"] = activity28
    lived7, lived28 = max(min(7.0, age_days), 1.0), max(min(28.0, age_days), 1.0)
    out["engagement_trend"] = _trend(watch7 / lived7, watch28 / lived28)
    out["active_days_trend"] = _trend(active7 / lived7, active28 / lived28)
    out.update(_long_view(sums, b, age_days))
    return out


def _long_view(sums: UsageSums, today: DayBucket | None, age_days: float) -> dict[str, float]:
    """The long-horizon and per-action features (see the module docstring)."""
    recent = dict(sums.recent_actions)
    watch_r, active_r, activity_r = sums.recent
    decayed = list(sums.decayed)
    if today is not None:
        watch_r += today.watch_s
        active_r += today.usage_events > 0
        activity_r += today.activity
        decayed = [d + today.usage_events for d in decayed]
        for name, qty in today.actions.items():
            recent[name] = recent.get(name, 0.0) + qty
    watch_b, active_b, activity_b = sums.base
    lived = min(LONG_DAYS, int(age_days) + 1)
    rates = [d / w[lived - 1] for d, w in zip(decayed, _DECAY_SUMS, strict=True)]
    out = dict(zip(_USAGE_HL_NAMES, rates, strict=True))
    out["usage_trend_3v56"] = _trend(rates[0], rates[2])
    out["usage_trend_14v56"] = _trend(rates[1], rates[2])
    out["watch_hours_56d"] = (watch_r + watch_b) / 3600.0
    out["active_days_56d"] = active_r + active_b
    out["activity_56d"] = activity_r + activity_b
    lived_r = max(min(float(RECENT_DAYS), age_days), 1.0)
    lived_b = min(max(age_days - RECENT_DAYS, 0.0), float(LONG_DAYS - RECENT_DAYS))
    rec_h = [0.0] * HASH_BUCKETS
    base_h = [0.0] * HASH_BUCKETS
    for name, qty in recent.items():
        rec_h[_bucket(name)] += qty
    for name, qty in sums.base_actions.items():
        base_h[_bucket(name)] += qty
    for i, name in enumerate(_ACTRATE_NAMES):
        out[name] = rec_h[i] / lived_r
    if lived_b < 7.0:  # no baseline yet: nothing is declining
        for name in ("watch_trend_long", "active_days_trend_long", "activity_trend_long",
                     "usual_actions_count", "usual_actions_dropped", "usual_actions_gone",
                     "top_actions_trend"):  # fmt: skip
            out[name] = 0.0
        for name in _ACTTREND_NAMES:
            out[name] = 0.0
        return out
    out["watch_trend_long"] = _trend(watch_r / lived_r, watch_b / lived_b)
    out["active_days_trend_long"] = _trend(active_r / lived_r, active_b / lived_b)
    out["activity_trend_long"] = _trend(activity_r / lived_r, activity_b / lived_b)
    usual = sorted(
        ((qty, name) for name, qty in sums.base_actions.items() if qty >= MIN_USUAL), reverse=True
    )
    dropped = gone = 0
    for qty, name in usual:
        r = recent.get(name, 0.0)
        dropped += r / lived_r < 0.5 * qty / lived_b
        gone += r == 0.0
    n = len(usual)
    out["usual_actions_count"] = float(n)
    out["usual_actions_dropped"] = dropped / n if n else 0.0
    out["usual_actions_gone"] = gone / n if n else 0.0
    top = usual[:TOP_ACTIONS]
    out["top_actions_trend"] = _trend(
        sum(recent.get(name, 0.0) for _, name in top) / lived_r,
        sum(qty for qty, _ in top) / lived_b,
    )
    for i, name in enumerate(_ACTTREND_NAMES):
        out[name] = _trend(rec_h[i] / lived_r, base_h[i] / lived_b)
    return out


# names built once, not per score (a score builds ~60 features)
_USAGE_HL_NAMES = tuple(f"usage_hl{h}d" for h in HALF_LIVES)
_ACTRATE_NAMES = tuple(f"actrate_h{i}" for i in range(HASH_BUCKETS))
_ACTTREND_NAMES = tuple(f"acttrend_h{i}" for i in range(HASH_BUCKETS))
# per action name (the product's: bounded by clearing): its feature name and its bucket
_ACTION_FEATURE: dict[str, str] = {}
_BUCKET: dict[str, int] = {}
_MAX_NAMES = 4096


def _action_feature(name: str) -> str:
    feature = _ACTION_FEATURE.get(name)
    if feature is None:
        if len(_ACTION_FEATURE) >= _MAX_NAMES:
            _ACTION_FEATURE.clear()
        feature = _ACTION_FEATURE[name] = f"action_{name}_28d"
    return feature


def _bucket(name: str) -> int:
    b = _BUCKET.get(name)
    if b is None:
        if len(_BUCKET) >= _MAX_NAMES:
            _BUCKET.clear()
        b = _BUCKET[name] = _hash_bucket(name)
    return b


def _hash_bucket(name: str) -> int:
    """A stable bucket of an action name (crc32: the same in every process).

    >>> _hash_bucket("like"), _hash_bucket("like") == _hash_bucket("like")
    (3, True)
    """
    return zlib.crc32(name.encode()) % HASH_BUCKETS


def _past_usage(state: AccountState, today: int) -> UsageSums:
    """Sums of the day buckets of the days before ``today``: 27 (7-day: the last 6) and
    the long view's (``LONG_DAYS`` - 1, recent: the last ``RECENT_DAYS`` - 1), in one
    pass in day order."""
    watch7 = sessions7 = active7 = activity7 = 0.0
    watch28 = sessions28 = active28 = activity28 = 0.0
    watch_r = active_r = activity_r = 0.0
    watch_b = active_b = activity_b = 0.0
    d0 = d1 = d2 = 0.0
    actions = dict.fromkeys(state.actions, 0.0)
    recent: dict[str, float] = {}
    base: dict[str, float] = {}
    days = state.days
    first = bisect.bisect_left(days.day, today - LONG_DAYS + 1)
    for i in range(first, bisect.bisect_left(days.day, today)):  # in day order
        day, events = days.day[i], days.usage_events[i]
        watch, sessions, activity, day_actions = (
            days.watch_s[i], days.sessions[i], days.activity[i], days.actions[i]
        )  # fmt: skip
        active = events > 0
        w0, w1, w2 = _DECAY_BY_AGE[today - day]
        d0 += events * w0
        d1 += events * w1
        d2 += events * w2
        if day > today - RECENT_DAYS:
            watch_r += watch
            active_r += active
            activity_r += activity
            into = recent
        else:
            watch_b += watch
            active_b += active
            activity_b += activity
            into = base
        for name, qty in day_actions.items():
            into[name] = into.get(name, 0.0) + qty
        if day <= today - 28:
            continue
        watch28 += watch
        sessions28 += sessions
        active28 += active
        activity28 += activity
        if day > today - 7:
            watch7 += watch
            sessions7 += sessions
            active7 += active
            activity7 += activity
        for name, qty in day_actions.items():
            actions[name] = actions.get(name, 0.0) + qty
    week = (watch7, sessions7, active7, activity7)
    return UsageSums(
        today,
        week,
        (watch28, sessions28, active28, activity28),
        actions,
        recent_actions=recent,
        base_actions=base,
        recent=(watch_r, active_r, activity_r),
        base=(watch_b, active_b, activity_b),
        decayed=(d0, d1, d2),
    )


def _trend(rate_7d: float, rate_28d: float) -> float:
    total = rate_7d + rate_28d
    return 0.0 if total <= 0 else (rate_7d - rate_28d) / total
