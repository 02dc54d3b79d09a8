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
``reactivations``              number of reactivations kept in the history
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
=============================  ================================================

The per-day rates r7/r28 divide by the days the account has existed within
the window, so a new account is not "declining" just for being new.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from models.account import DAY_MS, AccountState, UsageSums

RECENCY_CAP_DAYS = 90.0
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
    b = state.days.get(today)
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
    out = {f"action_{name}_28d": qty for name, qty in actions.items()}
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
    return out


def _past_usage(state: AccountState, today: int) -> UsageSums:
    """Sums of the day buckets of the 27 days before ``today`` (7-day: the last 6)."""
    watch7 = sessions7 = active7 = activity7 = 0.0
    watch28 = sessions28 = active28 = activity28 = 0.0
    actions = dict.fromkeys(state.actions, 0.0)
    days = state.days
    for day in range(today - 27, today):
        b = days.get(day)
        if b is None:
            continue
        active = b.usage_events > 0
        watch28 += b.watch_s
        sessions28 += b.sessions
        active28 += active
        activity28 += b.activity
        if day > today - 7:
            watch7 += b.watch_s
            sessions7 += b.sessions
            active7 += active
            activity7 += b.activity
        for name, qty in b.actions.items():
            actions[name] = actions.get(name, 0.0) + qty
    week = (watch7, sessions7, active7, activity7)
    return UsageSums(today, week, (watch28, sessions28, active28, activity28), actions)


def _trend(rate_7d: float, rate_28d: float) -> float:
    total = rate_7d + rate_28d
    return 0.0 if total <= 0 else (rate_7d - rate_28d) / total
