"""What the actions achieved: follow each alert's account for a window of event time.

Every alert opens a follow-up ``(kind, action, alert ts)`` in the account's risk
state (``RiskState.follow_ups``). The account's later events resolve it; the
first decisive one (in the order the account's events are applied) wins:

- ``subscription_cancelled``: ``cancelled`` (backlash, or a churn action that failed)
- ``extra_member_added``: ``extra_member_added``
- ``household_verification`` verified / failed: ``verified`` / ``verification_failed``
  (``expired`` is no answer: the follow-up stays open)
- ``plan_changed`` to a higher price or more streams: ``plan_upgraded``; to a lower
  price or fewer streams: ``plan_downgraded``
- ``subscription_reactivated``: ``reactivated`` (a win-back that worked)

An event before the alert resolves nothing. A follow-up with no decisive event
within the window is closed ``no_change`` (for a churn action: the account stayed)
once the account's event time passes ``alert ts + window``: an event after that
or the daily sweep's watermark. Past ``max_open`` open follow-ups the oldest is
closed ``superseded``, so the state stays bounded and nothing goes uncounted.
"""

from __future__ import annotations

from collections.abc import Mapping

from models.contract import Event

# (kind, action, alert event time)
FollowUp = tuple[str, str, int]

DECISIVE = (
    "cancelled", "extra_member_added", "verified", "verification_failed",
    "plan_upgraded", "plan_downgraded", "reactivated",
)  # fmt: skip
OUTCOMES = (*DECISIVE, "no_change", "superseded")
# how the report and the dashboard group them: conversions against backlash
CONVERSIONS = ("extra_member_added", "verified", "plan_upgraded", "reactivated")
BACKLASH = ("cancelled",)
GROUPS = ("conversions", "backlash", "no_change", "other")


def decisive(event: Event, price: float, max_streams: int) -> str | None:
    """The outcome ``event`` decides, if any; ``price`` and ``max_streams`` are the
    account's plan before it.

    >>> decisive(Event("e", "plan_changed", "a", 0, {"price": 9.0, "max_streams": 2}), 9.0, 1)
    'plan_upgraded'
    >>> decisive(Event("e", "household_verification", "a", 0, {"outcome": "expired"}), 9.0, 1)
    """
    f = event.fields
    if event.type == "subscription_cancelled":
        return "cancelled"
    if event.type == "subscription_reactivated":
        return "reactivated"
    if event.type == "extra_member_added":
        return "extra_member_added"
    if event.type == "household_verification":
        return {"verified": "verified", "failed": "verification_failed"}.get(str(f.get("outcome")))
    if event.type == "plan_changed":
        new_price, new_streams = float(f["price"]), int(f["max_streams"])
        if new_price > price or new_streams > max_streams:
            return "plan_upgraded"
        if new_price < price or new_streams < max_streams:
            return "plan_downgraded"
    return None


def expire_follow_ups(
    follow_ups: list[FollowUp], now_ms: int, window_ms: int
) -> list[tuple[str, str, str]]:
    """Close as ``no_change`` the follow-ups whose window ended before ``now_ms``;
    returns ``(kind, action, outcome)`` for each.

    >>> f = [("churn", "retention_offer", 0), ("sharing", "extra_member_offer", 5)]
    >>> expire_follow_ups(f, 11, 10), f
    ([('churn', 'retention_offer', 'no_change')], [('sharing', 'extra_member_offer', 5)])
    """
    done = [(k, a, "no_change") for k, a, ts in follow_ups if now_ms > ts + window_ms]
    follow_ups[:] = [f for f in follow_ups if now_ms <= f[2] + window_ms]
    return done


def resolve(follow_ups: list[FollowUp], outcome: str, ts: int) -> list[tuple[str, str, str]]:
    """Close with ``outcome`` the follow-ups opened at or before ``ts`` (an event's time).

    >>> f = [("churn", "retention_offer", 0), ("sharing", "extra_member_offer", 5)]
    >>> resolve(f, "cancelled", 3), f
    ([('churn', 'retention_offer', 'cancelled')], [('sharing', 'extra_member_offer', 5)])
    """
    done = [(k, a, outcome) for k, a, t in follow_ups if t <= ts]
    follow_ups[:] = [f for f in follow_ups if f[2] > ts]
    return done


def open_follow_up(
    follow_ups: list[FollowUp], follow_up: FollowUp, max_open: int
) -> list[tuple[str, str, str]]:
    """Add ``follow_up``; past ``max_open`` the oldest are closed ``superseded``.

    >>> f = [("churn", "retention_offer", 0)]
    >>> open_follow_up(f, ("churn", "win_back", 9), 1), f
    ([('churn', 'retention_offer', 'superseded')], [('churn', 'win_back', 9)])
    """
    follow_ups.append(follow_up)
    extra = max(0, len(follow_ups) - max_open)
    done = [(k, a, "superseded") for k, a, _ in follow_ups[:extra]]
    del follow_ups[:extra]
    return done


def by_action(counts: Mapping[tuple[str, str, str], int]) -> dict[tuple[str, str], dict[str, int]]:
    """Conversions against backlash per (kind, action), from ``(kind, action, outcome)``
    counts; ``other`` is every other outcome.

    >>> by_action({("sharing", "extra_member_offer", "extra_member_added"): 3,
    ...            ("sharing", "extra_member_offer", "cancelled"): 1,
    ...            ("sharing", "extra_member_offer", "no_change"): 5})[
    ...     ("sharing", "extra_member_offer")]
    {'conversions': 3, 'backlash': 1, 'no_change': 5, 'other': 0}
    """
    out: dict[tuple[str, str], dict[str, int]] = {}
    for (kind, action, outcome), n in sorted(counts.items()):
        row = out.setdefault((kind, action), dict.fromkeys(GROUPS, 0))
        group = (
            "conversions" if outcome in CONVERSIONS
            else "backlash" if outcome in BACKLASH
            else "no_change" if outcome == "no_change"
            else "other"
        )  # fmt: skip
        row[group] += n
    return out
