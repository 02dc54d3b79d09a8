"""Alert hysteresis, deterministic ids and churn actions."""

from __future__ import annotations

import copy

import pytest

from models.alerting import (
    CHURN_ALERTS,
    AlertConfig,
    AlertTrack,
    ChurnActionConfig,
    alert_id,
    churn_action,
    make_alert,
    update_track,
)


def fire(track: AlertTrack, scores: list[float], cfg: AlertConfig = CHURN_ALERTS) -> list[int]:
    return [track.episode for s in scores if update_track(track, s, cfg)]


def test_hysteresis_fires_once_per_episode() -> None:
    t = AlertTrack()
    scores = [0.1, 0.71, 0.95, 0.69, 0.72, 0.5, 0.8, 0.49, 0.7, 0.700001]
    # 0.5 is not below the reset (strict); 0.7 is not above the threshold (strict)
    assert fire(t, scores) == [1, 2]
    assert t.active and t.episode == 2


def test_reprocessing_from_the_same_state_gives_the_same_ids() -> None:
    t = AlertTrack()
    fire(t, [0.9, 0.1])
    saved = copy.deepcopy(t)
    scores = [0.2, 0.8, 0.3, 0.75]
    first = [alert_id("a-1", "churn", e) for e in fire(t, scores)]
    again = [alert_id("a-1", "churn", e) for e in fire(saved, scores)]
    assert first == again == ["a-1:churn:2", "a-1:churn:3"]


def test_custom_levels() -> None:
    cfg = AlertConfig(threshold=0.4, reset=0.1)
    assert fire(AlertTrack(), [0.5, 0.2, 0.45, 0.05, 0.41], cfg) == [1, 2]
    with pytest.raises(ValueError):
        AlertConfig(threshold=0.5, reset=0.5)
    with pytest.raises(ValueError):
        AlertConfig(threshold=1.5)


def test_churn_actions_follow_the_rules() -> None:
    failed = {"payment_failed_28d": 1.0, "payment_unresolved": 1.0}
    assert churn_action(failed) == "payment_reminder"
    assert churn_action({**failed, "payment_unresolved": 0.0}) == "retention_offer"
    assert churn_action({**failed, "cancelled": 1.0}) == "win_back"
    assert churn_action({"engagement_trend": -0.8}) == "retention_offer"
    cfg = ChurnActionConfig(min_payment_failures=2, retention_offer="discount_20")
    assert churn_action(failed, cfg) == "discount_20"
    assert churn_action({**failed, "payment_failed_28d": 2.0}, cfg) == "payment_reminder"


def test_alert_message_follows_the_contract() -> None:
    reasons = [{"feature": "payment_failed_7d", "value": 2.0, "weight": 0.4}]
    msg = make_alert(
        kind="churn",
        account_id="a-1",
        episode=3,
        ts_ms=1_772_366_400_000,
        score=0.812345,
        threshold=0.7,
        reasons=reasons,
        action="retention_offer",
        model="churn-v17",
        scores={"churn": 0.812345, "sharing": 0.12},
    )
    assert msg == {
        "alert_id": "a-1:churn:3",
        "kind": "churn",
        "account_id": "a-1",
        "ts": "2026-03-01T12:00:00Z",
        "score": 0.8123,
        "threshold": 0.7,
        "reasons": reasons,
        "action": "retention_offer",
        "model": "churn-v17",
        "scores": {"churn": 0.8123, "sharing": 0.12},
    }
