"""Alert rules: hysteresis per (account, kind), deterministic ids, churn actions.

An alert fires when the score rises above ``threshold`` and not again until it
has fallen below ``reset``. Each firing opens a new episode, counted in the
``AlertTrack`` (which lives in the account state), so reprocessing the same
input from the same state gives the same ``alert_id``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class AlertConfig:
    """Hysteresis levels of one alert kind."""

    threshold: float = 0.7
    reset: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.reset < self.threshold <= 1.0:
            raise ValueError("need 0 <= reset < threshold <= 1")


@dataclass(frozen=True, slots=True)
class ChurnActionConfig:
    """When to recommend which churn action (first matching rule wins).

    ``win_back`` if the account is cancelled; ``payment_reminder`` after at
    least ``min_payment_failures`` failures in 28 days that are not yet
    resolved; otherwise ``retention_offer`` (price pressure, disengagement or
    anything else the model flags).
    """

    min_payment_failures: int = 1
    win_back: str = "win_back"
    payment_reminder: str = "payment_reminder"
    retention_offer: str = "retention_offer"


CHURN_ALERTS = AlertConfig()
CHURN_ACTIONS = ChurnActionConfig()


@dataclass(slots=True)
class AlertTrack:
    """Hysteresis state of one (account, kind)."""

    active: bool = False
    episode: int = 0


def update_track(track: AlertTrack, score: float, cfg: AlertConfig = CHURN_ALERTS) -> bool:
    """Feed a score; True when an alert fires (mutates ``track``).

    >>> t = AlertTrack()
    >>> [update_track(t, s) for s in (0.6, 0.75, 0.9, 0.6, 0.8, 0.4, 0.71)]
    [False, True, False, False, False, False, True]
    >>> t.episode
    2
    """
    if track.active:
        if score < cfg.reset:
            track.active = False
        return False
    if score > cfg.threshold:
        track.active = True
        track.episode += 1
        return True
    return False


def alert_id(account_id: str, kind: str, episode: int) -> str:
    """Deterministic id of one alert episode.

    >>> alert_id("a-1", "churn", 3)
    'a-1:churn:3'
    """
    return f"{account_id}:{kind}:{episode}"


def churn_action(features: dict[str, float], cfg: ChurnActionConfig = CHURN_ACTIONS) -> str:
    """Recommended next step for a churn alert.

    >>> churn_action({"payment_failed_28d": 2.0, "payment_unresolved": 1.0})
    'payment_reminder'
    >>> churn_action({"cancelled": 1.0, "payment_failed_28d": 2.0})
    'win_back'
    >>> churn_action({"price_increase_pct_90d": 0.2})
    'retention_offer'
    """
    if features.get("cancelled", 0.0) >= 1.0:
        return cfg.win_back
    if (
        features.get("payment_failed_28d", 0.0) >= cfg.min_payment_failures
        and features.get("payment_unresolved", 0.0) >= 1.0
    ):
        return cfg.payment_reminder
    return cfg.retention_offer


SUMMARY_KEYS = ("alert_id", "kind", "ts", "score", "action")


def alert_summary(alert: dict[str, Any]) -> dict[str, Any]:
    """What an account's state keeps of one of its alerts (``RiskState.recent``): the
    whole alert, with its reasons, is on ``risk-alerts``. A state that kept whole
    alerts grew by ~300 bytes with each of its last five (issue #13, the soak).

    >>> sorted(alert_summary({"alert_id": "a-1:churn:1", "kind": "churn", "account_id": "a-1",
    ...     "ts": "2026-01-09T00:00:00Z", "score": 0.81, "reasons": [], "action": "win_back",
    ...     "model": "churn-v1"}))
    ['action', 'alert_id', 'kind', 'score', 'ts']
    """
    return {k: alert[k] for k in SUMMARY_KEYS if k in alert}


def make_alert(
    *,
    kind: str,
    account_id: str,
    episode: int,
    ts_ms: int,
    score: float,
    threshold: float,
    reasons: list[dict[str, Any]],
    action: str,
    model: str,
    scores: dict[str, float] | None = None,
) -> dict[str, Any]:
    """A ``risk-alerts`` message as in the contract.

    >>> make_alert(kind="churn", account_id="a-1", episode=3, ts_ms=0, score=0.81,
    ...            threshold=0.7, reasons=[], action="win_back", model="churn-v1")["ts"]
    '1970-01-01T00:00:00Z'
    """
    alert: dict[str, Any] = {
        "alert_id": alert_id(account_id, kind, episode),
        "kind": kind,
        "account_id": account_id,
        "ts": rfc3339(ts_ms),
        "score": round(score, 4),
        "threshold": threshold,
        "reasons": reasons,
        "action": action,
        "model": model,
    }
    if scores is not None:
        alert["scores"] = {k: round(v, 4) for k, v in scores.items()}
    return alert


def rfc3339(ts_ms: int) -> str:
    """Epoch milliseconds as RFC 3339 UTC (milliseconds shown only when non-zero).

    >>> rfc3339(1_772_366_400_123)
    '2026-03-01T12:00:00.123Z'
    """
    t = dt.datetime.fromtimestamp(ts_ms // 1000, tz=dt.UTC)
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{ts_ms % 1000:03d}Z" if ts_ms % 1000 else f"{text}Z"
