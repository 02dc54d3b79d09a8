"""Scoring memory of one account: alert hysteresis, last scores, open and recent alerts.

A typed field of ``models.account.AccountState`` (``state.risk``), updated by
``models.engine`` (which reads it through ``engine.risk(state)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from models.alerting import AlertTrack

KINDS = ("churn", "sharing")


@dataclass(slots=True)
class RiskState:
    """What scoring remembers about one account.

    >>> RiskState().tracks
    {'churn': AlertTrack(active=False, episode=0), 'sharing': AlertTrack(active=False, episode=0)}
    """

    tracks: dict[str, AlertTrack] = field(default_factory=lambda: {k: AlertTrack() for k in KINDS})
    published: tuple[float, float] | None = None
    scores: tuple[float, float] = (0.0, 0.0)
    models: tuple[str, str] = ("", "")
    scored_ts: int | None = None
    open_alerts: dict[str, int] = field(default_factory=dict)  # kind -> alert event time
    recent: list[dict[str, Any]] = field(default_factory=list)  # models.alerting.alert_summary
    decided_ts: int | None = None  # the last churn decision point (event time)
    # alerts whose outcome is still open: (kind, action, alert ts), oldest first (models.outcomes)
    follow_ups: list[tuple[str, str, int]] = field(default_factory=list)
