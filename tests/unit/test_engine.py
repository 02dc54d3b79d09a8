"""models.engine: scoring, publishing on material change, alert episodes, outcomes."""

from __future__ import annotations

import pickle

import pytest

from models.account import DAY_MS, new_account
from models.contract import Event
from models.engine import (
    EngineConfig,
    Models,
    Outputs,
    Shard,
    decide,
    ingest,
    process,
    risk,
    score,
    sweep,
)
from models.features import churn_features

T0 = 1_767_225_600_000
START = {
    "plan": "std",
    "price": 9.99,
    "currency": "EUR",
    "billing_period": "month",
    "max_streams": 2,
}


def ev(i: str, type_: str, ts: int, acc: str = "a", **fields) -> Event:
    return Event(i, type_, acc, ts, fields)


def trained_models(n: int = 600) -> Models:
    """A churn model that learned: failed payments and no viewing mean churn."""
    models = Models.fresh()
    healthy = new_account("h")
    ingest(healthy, ev("h0", "subscription_started", T0, "h", **START), clock_ms=T0,
           cfg=EngineConfig(), out=Outputs())  # fmt: skip
    for d in range(10):
        ingest(healthy, ev(f"h{d}p", "playback_started", T0 + d * DAY_MS, "h", session_id=f"s{d}",
                           device_id="tv"), clock_ms=T0 + d * DAY_MS, cfg=EngineConfig(), out=Outputs())  # fmt: skip
    risky = new_account("r")
    ingest(risky, ev("r0", "subscription_started", T0, "r", **START), clock_ms=T0,
           cfg=EngineConfig(), out=Outputs())  # fmt: skip
    for d in range(3):
        ingest(risky, ev(f"r{d}f", "payment_failed", T0 + (7 + d) * DAY_MS, "r", amount=9.99),
               clock_ms=T0 + (7 + d) * DAY_MS, cfg=EngineConfig(), out=Outputs())  # fmt: skip
    now = T0 + 10 * DAY_MS
    good, bad = churn_features(healthy, now), churn_features(risky, now)
    for i in range(n):
        models.churn.learn(good, False, example_id=f"g{i}")
        models.churn.learn(bad, True, example_id=f"b{i}")
    return models


def risky_account(models: Models, cfg: EngineConfig, out: Outputs):
    s = new_account("a")
    ingest(s, ev("s", "subscription_started", T0, **START), clock_ms=T0, cfg=cfg, out=out)
    for d in range(3):
        ts = T0 + (7 + d) * DAY_MS
        ingest(s, ev(f"f{d}", "payment_failed", ts, amount=9.99), clock_ms=ts, cfg=cfg, out=out)
    return s


def test_churn_alert_fires_once_per_episode_with_deterministic_id():
    models, cfg, out = trained_models(), EngineConfig(), Outputs()
    s = risky_account(models, cfg, out)
    churn = decide(s, now_ms=s.max_ts, models=models, cfg=cfg, out=out)
    assert churn > 0.4
    [alert] = out.alerts
    assert alert["alert_id"] == "a:churn:1" and alert["kind"] == "churn"
    assert alert["action"] == "payment_reminder"
    assert alert["threshold"] == 0.4 and alert["model"] == models.churn.model_id
    assert alert["reasons"] and {"feature", "value", "weight"} <= set(alert["reasons"][0])
    assert set(alert["scores"]) == {"churn", "sharing"}
    decide(s, now_ms=s.max_ts, models=models, cfg=cfg, out=out)
    assert len(out.alerts) == 1  # still above: no second alert (hysteresis)
    # recovery: the payment succeeds and the account watches again -> falls below reset
    ts = s.max_ts + DAY_MS
    ingest(s, ev("ok", "payment_succeeded", ts, amount=9.99), clock_ms=ts, cfg=cfg, out=out)
    risk(s).tracks["churn"].active = False  # as if the score had fallen below the reset level
    ingest(s, ev("f9", "payment_failed", ts + 1, amount=9.99), clock_ms=ts + 1, cfg=cfg, out=out)
    decide(s, now_ms=s.max_ts, models=models, cfg=cfg, out=out)
    assert [a["alert_id"] for a in out.alerts] == ["a:churn:1", "a:churn:2"]


def test_the_state_keeps_a_summary_of_its_last_alerts_not_the_whole_alerts():
    """The whole alert (reasons, model, scores) is on risk-alerts; a state that kept it
    grew ~300 bytes with each of its last five alerts (the soak, issue #13)."""
    models, cfg, out = trained_models(), EngineConfig(recent_alerts=2), Outputs()
    s = risky_account(models, cfg, out)
    for n in range(3):  # three episodes: the state keeps the last two
        risk(s).tracks["churn"].active = False
        decide(s, now_ms=s.max_ts + n, models=models, cfg=cfg, out=out)
    assert len(out.alerts) == 3 and out.alerts[-1]["reasons"]
    assert risk(s).recent == [
        {k: a[k] for k in ("alert_id", "kind", "ts", "score", "action")} for a in out.alerts[1:]
    ]


def test_reprocessing_the_same_input_gives_the_same_outputs():
    models = trained_models()
    runs = []
    for _ in range(2):
        cfg, out = EngineConfig(), Outputs()
        s = risky_account(models, cfg, out)
        decide(s, now_ms=s.max_ts, models=models, cfg=cfg, out=out)
        score(s, now_ms=s.max_ts, models=models, cfg=cfg, out=out)
        runs.append((out.alerts, out.scores, out.examples))
    assert runs[0] == runs[1]


def test_scores_are_published_only_on_material_change():
    models, cfg, out = Models.fresh(), EngineConfig(score_delta=0.02), Outputs()
    s = new_account("a")
    ingest(s, ev("s", "subscription_started", T0, **START), clock_ms=T0, cfg=cfg, out=out)
    for _ in range(3):
        score(s, now_ms=T0, models=models, cfg=cfg, out=out)
    assert len(out.scores) == 1
    msg = out.scores[0]
    assert set(msg) == {"account_id", "ts", "churn_score", "sharing_score", "churn_model",
                        "sharing_model", "top_factors"}  # fmt: skip
    assert msg["ts"] == "2026-01-01T00:00:00Z"


def test_untrained_churn_model_raises_no_alert_but_a_cancellation_does():
    models, cfg, out = Models.fresh(), EngineConfig(), Outputs()
    s = new_account("a")
    ingest(s, ev("s", "subscription_started", T0, **START), clock_ms=T0, cfg=cfg, out=out)
    decide(s, now_ms=T0, models=models, cfg=cfg, out=out)
    assert out.alerts == []
    ingest(
        s, ev("c", "subscription_cancelled", T0 + DAY_MS), clock_ms=T0 + DAY_MS, cfg=cfg, out=out
    )
    churn = decide(s, now_ms=s.max_ts, models=models, cfg=cfg, out=out)
    assert churn == 1.0
    assert [(a["kind"], a["action"]) for a in out.alerts] == [("churn", "win_back")]


def test_scoring_never_changes_a_model():
    models = trained_models(50)
    before = pickle.dumps(models)
    cfg, out = EngineConfig(), Outputs()
    s = risky_account(models, cfg, out)
    for _ in range(5):
        score(s, now_ms=s.max_ts, models=models, cfg=cfg, out=out)
        decide(s, now_ms=s.max_ts, models=models, cfg=cfg, out=out)
    assert pickle.dumps(models) == before


def test_churn_alert_outcome_right_when_the_account_cancels_within_the_horizon():
    models, cfg, out = trained_models(), EngineConfig(), Outputs()
    s = risky_account(models, cfg, out)
    decide(s, now_ms=s.max_ts, models=models, cfg=cfg, out=out)
    ts = s.max_ts + 5 * DAY_MS
    ingest(s, ev("c", "subscription_cancelled", ts), clock_ms=ts, cfg=cfg, out=out)
    assert out.outcomes == [("churn", "right")]


def test_churn_alert_outcome_wrong_when_the_horizon_passes():
    models, cfg, out = trained_models(), EngineConfig(), Outputs()
    s = risky_account(models, cfg, out)
    decide(s, now_ms=s.max_ts, models=models, cfg=cfg, out=out)
    sweep(s, clock_ms=s.max_ts + 40 * DAY_MS, models=models, cfg=cfg, out=out)
    assert ("churn", "wrong") in out.outcomes


def test_an_account_still_at_risk_after_the_horizon_gets_no_second_alert_by_the_contract():
    """The contract: no new alert until the score falls below the reset. The proposal
    measured in docs/churn.md (off by default, no setting) ends the episode when the
    alert's horizon passes without a cancellation."""
    for rearm, alert_ids in ((False, ["a:churn:1"]), (True, ["a:churn:1", "a:churn:2"])):
        models, out = trained_models(), Outputs()
        cfg = EngineConfig(churn_rearm_after_horizon=rearm)
        s = risky_account(models, cfg, out)
        for days in range(0, 45, 4):  # a decision every 4 days, all above the reset
            assert decide(s, now_ms=s.max_ts + days * DAY_MS, models=models, cfg=cfg, out=out) > 0.9
        assert [a["alert_id"] for a in out.alerts] == alert_ids
        assert out.outcomes == [("churn", "wrong")]


def test_sharing_label_uses_the_evidence_before_the_label_event():
    cfg, out = EngineConfig(), Outputs()
    s = new_account("a")
    ingest(s, ev("s", "subscription_started", T0, **START), clock_ms=T0, cfg=cfg, out=out)
    ingest(s, ev("x", "extra_member_added", T0 + 1), clock_ms=T0 + 1, cfg=cfg, out=out)
    [example] = [x for x in out.examples if x["model"] == "sharing"]
    assert example["label"] is True and example["example_id"] == "a:x"
    assert example["features"]["paid_member_places"] == 0  # before the member was added


def test_duplicate_label_event_gives_one_example():
    cfg, out = EngineConfig(), Outputs()
    s = new_account("a")
    e = ev("v", "household_verification", T0, device_id="d", outcome="verified")
    assert ingest(s, e, clock_ms=T0, cfg=cfg, out=out)
    assert not ingest(s, e, clock_ms=T0, cfg=cfg, out=out)
    assert [(x["model"], x["label"]) for x in out.examples] == [("sharing", False)]


@pytest.mark.parametrize("quiet_days", [3, 40])
def test_sweep_scores_quiet_accounts_and_matures_labels(quiet_days):
    models, cfg, out = Models.fresh(), EngineConfig(), Outputs()
    s = new_account("a")
    ingest(s, ev("s", "subscription_started", T0, **START), clock_ms=T0, cfg=cfg, out=out)
    clock = T0 + quiet_days * DAY_MS
    sweep(s, clock_ms=clock, models=models, cfg=cfg, out=out)
    watermark = clock - cfg.state.lateness_ms  # scored within the last day before it
    assert watermark - DAY_MS < risk(s).scored_ts <= watermark
    negatives = [x for x in out.examples if x["model"] == "churn"]
    assert (len(negatives) > 0) == (quiet_days > 30)
    assert all(x["label"] is False for x in negatives)


class Broken(dict):
    """Event fields our code fails on (a stand-in for a bug: it works compiled too)."""

    def get(self, *_):
        raise KeyError("no such thing")

    __getitem__ = get


def test_an_event_our_code_fails_on_is_reported_and_the_rest_go_on():
    import models.engine as engine

    shard, out = engine.Shard(), Outputs()
    boom = Event("boom", "login", "a", T0 + 1, Broken(device_id="d"))
    evs = [ev("ok1", "login", T0, device_id="d"), boom, ev("ok2", "login", T0 + 2, device_id="d")]
    assert engine.process(shard, evs, Models.fresh(), EngineConfig(), out) == (2, 0, 0)
    assert [(e.event_id, why) for e, why in out.failed] == [("boom", "KeyError: 'no such thing'")]


def test_a_cancellation_after_a_retention_alert_still_gets_a_win_back_alert():
    models, cfg, out = trained_models(), EngineConfig(), Outputs()
    s = risky_account(models, cfg, out)
    decide(s, now_ms=s.max_ts, models=models, cfg=cfg, out=out)
    ts = s.max_ts + DAY_MS
    ingest(s, ev("c", "subscription_cancelled", ts), clock_ms=ts, cfg=cfg, out=out)
    decide(s, now_ms=s.max_ts, models=models, cfg=cfg, out=out)
    assert [(a["alert_id"], a["action"]) for a in out.alerts] == [
        ("a:churn:1", "payment_reminder"),
        ("a:churn:2", "win_back"),
    ]


def test_labels_are_released_at_their_horizon_whether_the_account_is_active_or_quiet():
    # "q" cancels and goes quiet; "b" keeps watching. Both labels of the sign-up snapshot
    # come with the batch in which the partition's watermark passes snapshot + horizon,
    # not at the quiet account's next daily sweep.
    from models.engine import Shard, process

    cfg, out, shard = EngineConfig(), Outputs(), Shard()
    t0 = T0 + 6 * 3_600_000  # 06:00: the horizon does not end at a midnight sweep
    starts = [ev(f"{a}0", "subscription_started", t0 + 60_000 * i, a, **START) for i, a in
              enumerate("qb")]  # fmt: skip
    process(shard, starts + [ev("q1", "subscription_cancelled", T0 + 5 * DAY_MS, "q")],
            Models.fresh(), cfg, out)  # fmt: skip
    horizon = cfg.state.horizon_ms + cfg.state.lateness_ms
    released: list[tuple[str, bool, int]] = []
    for h in range(7, 31 * 24):  # an hourly login of "b"
        ts = T0 + h * 3_600_000 + 30 * 60_000
        batch = Outputs()
        process(shard, [ev(f"b{h}", "login", ts, "b", device_id="tv")], Models.fresh(), cfg, batch)
        released += [(x["account_id"], x["label"], ts) for x in batch.examples
                     if x["model"] == "churn"]  # fmt: skip
    first = {(a, label): ts for a, label, ts in reversed(released)}
    assert set(first) == {("q", True), ("b", False)}
    for (account, _), ts in first.items():  # within the hour after the horizon
        due = t0 + horizon + (60_000 if account == "b" else 0)
        assert due <= ts < due + 3_600_000, (account, (ts - due) / 3_600_000)


def trouble_then_cancel(days: int, extra=lambda d, ts: []) -> list[Event]:
    """Account a fails payments, recovers, fails again and cancels on day 35, next to a
    healthy account h; ``extra(day, ts)`` adds events of the day. Sorted by event time."""
    events = [ev("s", "subscription_started", T0, **START),
              ev("h0", "subscription_started", T0 + 1, "h", **START)]  # fmt: skip
    for d in range(days):
        ts = T0 + d * DAY_MS + 20 * 3_600_000
        events.append(ev(f"h{d}", "playback_started", ts, "h", session_id=f"s{d}", device_id="tv"))
        if d in (7, 8, 9, 25, 26):
            events.append(ev(f"f{d}", "payment_failed", ts + 60_000, amount=9.99))
        if d in (12, 13):
            events.append(ev(f"p{d}", "payment_succeeded", ts + 60_000, amount=9.99))
        events += extra(d, ts)
    events.append(ev("c", "subscription_cancelled", T0 + 35 * DAY_MS))
    return sorted(events, key=lambda e: e.ts)


def outputs_in_batches(events: list[Event], models: Models, cfg: EngineConfig) -> list[Outputs]:
    """The outputs of ``events`` processed in batches of 1, of 7, 2, 30... and all at once."""
    from models.engine import Shard, process

    runs = []
    for cuts in ([1], [7, 2, 30], [len(events)]):
        shard, out, i, k = Shard(), Outputs(), 0, 0
        while i < len(events):
            n = cuts[k % len(cuts)]
            process(shard, events[i : i + n], models, cfg, out)
            i, k = i + n, k + 1
        runs.append(out)
    return runs


def test_churn_alerts_do_not_depend_on_where_batches_end():
    # the same churn alerts (ids, times, scores, actions) whatever the batches
    def logins(d: int, ts: int) -> list[Event]:
        return [ev(f"l{d}", "login", ts + 120_000, device_id="phone")] if d % 3 == 0 else []

    events = trouble_then_cancel(40, logins)
    runs = [
        [(a["alert_id"], a["ts"], a["score"], a["action"]) for a in out.alerts
         if a["kind"] == "churn"]
        for out in outputs_in_batches(events, trained_models(), EngineConfig())
    ]  # fmt: skip
    assert len(runs[0]) >= 2 and runs[0][-1][3] == "win_back", runs[0]
    assert runs[1] == runs[0] and runs[2] == runs[0]


@pytest.mark.parametrize("cuts", [(0, 1, 2, 3), (0, 2, 3), (0, 1, 3)])
def test_each_midnight_gets_its_sweep_wherever_the_buffers_are_cut(cuts):
    # a quiet account "q" and a busy one "b" in one partition: the quiet one's churn
    # points are decided by the daily sweep, and by the end every midnight the watermark
    # passed is decided, whichever events each process() call got (a call whose clock
    # ended just past a midnight used to push the next sweep a day too far)
    cfg, models, shard = EngineConfig(), Models.fresh(), Shard()
    hour = 3_600_000
    events = [
        ev("q0", "subscription_started", T0 + 10 * hour, "q", **START),
        ev("b1", "login", T0 + DAY_MS + 50 * 60_000, "b", device_id="d"),  # day 1, 00:50
        ev("b2", "login", T0 + 2 * DAY_MS + 30 * 60_000, "b", device_id="d"),  # day 2, 00:30
        ev("b3", "login", T0 + 2 * DAY_MS + 90 * 60_000, "b", device_id="d"),  # day 2, 01:30
    ]
    for start, end in zip(cuts, [*cuts[1:], len(events)], strict=True):
        process(shard, events[start:end], models, cfg, Outputs())
    # the watermark (day 2, 00:30) passed the midnight of day 2: decided there
    assert risk(shard.get("q")).decided_ts == T0 + 2 * DAY_MS
