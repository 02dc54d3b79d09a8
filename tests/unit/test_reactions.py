"""Simulated households answering alerts: the draw, its effects, the closed loop in
process, and the simulator's alert feed (with a fake source and clock)."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from models.alerting import AlertConfig
from models.contract import parse_ts
from models.engine import EngineConfig
from models.replay import replay
from models.simulator import SimConfig, parse_mix, reactions, simulate
from models.simulator.account import Account
from models.simulator.world import DAY_MS, World
from streams import cli
from streams.simfeed import AlertFeed

SHARERS = parse_mix("household=0.3,big_family=0,traveller=0,commuter=0,vpn_user=0,sharer=1,"
                    "subtle_sharer=0")  # fmt: skip


def _alert(account_id: str, kind: str, action: str, ts: int, episode: int = 1) -> dict[str, Any]:
    return {"alert_id": f"{account_id}:{kind}:{episode}", "kind": kind, "account_id": account_id,
            "action": action, "ts": ts, "score": 0.9, "threshold": 0.5}  # fmt: skip


def _run(cfg: SimConfig, schedule: dict[int, list[dict[str, Any]]]) -> tuple[list, list, list]:
    """Events, reactions and truth of a run whose alerts are read on scheduled days."""
    answered: list[dict[str, Any]] = []
    truth: list[dict[str, Any]] = []
    events = list(simulate(cfg, truth.append, lambda d: schedule.get(d, []), answered.append))
    return events, answered, truth


# ----------------------------------------------------------------------- the draw


def test_the_draw_follows_the_configured_shares_and_depends_on_seed_and_alert_only() -> None:
    cfg = SimConfig(seed=4)
    alerts = [_alert(f"a{i:07d}", "sharing", "household_verification", 0) for i in range(4000)]
    drawn = Counter(reactions.choose(cfg, a, active=True, sharing=True) for a in alerts)
    expected = {"verified": 0.3, "extra_member": 0.2, "failed": 0.15, "cancelled": 0.1,
                "ignored": 0.25}  # fmt: skip
    for reaction, share in expected.items():
        assert abs(drawn[reaction] / len(alerts) - share) < 0.03, (reaction, drawn)
    again = [reactions.choose(cfg, a, active=True, sharing=True) for a in alerts[:50]]
    assert again == [reactions.choose(cfg, a, active=True, sharing=True) for a in alerts[:50]]
    other_seed = [reactions.choose(SimConfig(seed=5), a, active=True, sharing=True)
                  for a in alerts[:50]]  # fmt: skip
    assert other_seed != again


@pytest.mark.parametrize(
    ("kind", "action", "active", "sharing", "possible"),
    [
        ("sharing", "household_verification", True, False, {"verified", "cancelled", "ignored"}),
        ("sharing", "extra_member_offer", True, True, {"extra_member", "cancelled", "ignored"}),
        ("sharing", "extra_member_offer", True, False, {"cancelled", "ignored"}),
        ("churn", "retention_offer", True, False, {"offer_taken", "ignored"}),
        ("churn", "payment_reminder", True, False, {"payment_fixed", "ignored"}),
        ("churn", "win_back", False, False, {"reactivated", "ignored"}),
        ("churn", "win_back", True, False, {"unanswered"}),
        ("churn", "retention_offer", False, False, {"unanswered"}),
        ("sharing", "some_new_action", True, True, {"unanswered"}),
    ],
)
def test_who_can_answer_what(kind, action, active, sharing, possible) -> None:
    cfg = SimConfig(seed=1)
    drawn = {reactions.choose(cfg, _alert(f"a{i}", kind, action, 0), active=active,
                              sharing=sharing) for i in range(400)}  # fmt: skip
    assert drawn == possible


def test_shares_that_add_up_to_more_than_one_are_refused() -> None:
    with pytest.raises(ValueError, match="at most 1"):
        SimConfig(react_verified_rate=0.6, react_extra_member_rate=0.5)
    with pytest.raises(ValueError, match="within"):
        SimConfig(react_win_back_rate=1.5)


# -------------------------------------------------------------------- the effects


def test_no_alerts_change_nothing() -> None:
    cfg = SimConfig(accounts=30, days=12, seed=2)
    events, answered, _ = _run(cfg, {})
    assert events == list(simulate(cfg)) and answered == []


def test_unknown_malformed_and_repeated_alerts_are_ignored() -> None:
    cfg = SimConfig(accounts=10, days=5, seed=1, new_signup_share=0.0)
    alert = _alert("a0000003", "churn", "retention_offer", cfg.start_ms)
    junk = [dict(alert), _alert("b0000003", "churn", "retention_offer", cfg.start_ms),
            {"alert_id": 5}, {**alert, "alert_id": "x", "account_id": ["a0000003"]},
            {**alert, "alert_id": "y", "ts": "yesterday"}]  # fmt: skip
    _, answered, _ = _run(cfg, {2: [alert, *junk], 3: [dict(alert)]})
    assert [(r["alert_id"], r["day"]) for r in answered] == [(alert["alert_id"], 2)]


def test_each_answer_is_a_contract_event_early_on_the_day_after_the_alert_was_read() -> None:
    cfg = SimConfig(
        accounts=60, days=20, seed=3, mix=SHARERS, crackdown_day=100, new_signup_share=0.0
    )
    world = World(cfg.seed, cfg.price_increase_share, cfg.vpn_exit_count)
    sharers = [a.id for a in (Account(cfg, world, i) for i in range(cfg.accounts))
               if a.archetype == "sharer"]  # fmt: skip
    read_day = 12
    alert_ts = cfg.start_ms + 10 * DAY_MS  # the worker is two days behind
    schedule = {read_day: [_alert(a, "sharing", "household_verification", alert_ts)
                           for a in sharers]}  # fmt: skip
    events, answered, truth = _run(cfg, schedule)
    assert len(answered) == len(sharers)
    by_reaction = Counter(r["reaction"] for r in answered)
    assert {"verified", "extra_member", "failed", "cancelled"} <= set(by_reaction)
    start = cfg.start_ms + read_day * DAY_MS
    expected_type = {"verified": ("household_verification", "verified"),
                     "failed": ("household_verification", "failed"),
                     "extra_member": ("extra_member_added", None),
                     "cancelled": ("subscription_cancelled", None)}  # fmt: skip
    for r in answered:
        assert r["day"] == read_day and start <= r["ts"] < start + 3_600_000
        if r["reaction"] not in expected_type:
            continue
        kind, outcome = expected_type[r["reaction"]]
        mine = [e for e in events if e["account_id"] == r["account_id"] and e["type"] == kind
                and parse_ts(e["ts"]) == r["ts"]]  # fmt: skip
        assert mine, r
        if outcome is not None:
            assert mine[0]["outcome"] == outcome
        if r["reaction"] == "cancelled":  # backlash: no playback afterwards
            later = [e for e in events if e["account_id"] == r["account_id"]
                     and e["type"] == "playback_started" and parse_ts(e["ts"]) > r["ts"]]  # fmt: skip
            truths = {t["account_id"]: t for t in truth}
            assert truths[r["account_id"]]["cancels"][-1]["driver"] == "backlash"
            if not any(e["type"] == "subscription_reactivated" and
                       e["account_id"] == r["account_id"] for e in events):  # fmt: skip
                assert later == []
    # deterministic given the seed and the day each alert was read
    assert _run(cfg, schedule)[0] == events


def test_recorded_answers_repeat_the_run_through_the_cli(tmp_path: Path) -> None:
    """``simulate --alerts-from reactions.jsonl`` repeats a run whose alerts came from a
    worker, byte for byte: the answers depend on the seed and the day each was read."""
    cfg = SimConfig(accounts=40, days=12, seed=9, mix=SHARERS)
    schedule = {d: [_alert(f"a{i:07d}", "sharing", "household_verification",
                           cfg.start_ms + (d - 2) * DAY_MS, d) for i in range(d, 40, 6)]
                for d in (3, 5, 8)}  # fmt: skip
    events, answered, _ = _run(cfg, schedule)
    assert any(r["reaction"] not in ("ignored", "unanswered") for r in answered)
    rebuilt = reactions.schedule(answered)
    assert sorted(a["alert_id"] for alerts in rebuilt.values() for a in alerts) == sorted(
        a["alert_id"] for alerts in schedule.values() for a in alerts
    )
    recorded = tmp_path / "reactions.jsonl"
    recorded.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in answered))
    out = tmp_path / "again"
    argv = ["simulate", "--accounts", "40", "--days", "12", "--seed", "9", "--mix",
            "household=0.3,big_family=0,traveller=0,commuter=0,vpn_user=0,sharer=1,"
            "subtle_sharer=0", "--alerts-from", str(recorded), "--out", str(out), "--quiet"]  # fmt: skip
    assert cli.main(argv) == 0
    assert (out / "events.jsonl").read_bytes() == b"".join(orjson.dumps(e) + b"\n" for e in events)
    assert cli.main([*argv[:-3], "--alerts-from", str(tmp_path / "missing"), "--out",
                     str(out)]) == 2  # fmt: skip


def test_a_taken_retention_offer_lowers_the_cancel_hazard() -> None:
    base = SimConfig(accounts=300, days=40, seed=6, churn_scale=3.0, new_signup_share=0.0)
    offers = {1: [_alert(f"a{i:07d}", "churn", "retention_offer", base.start_ms)
                  for i in range(base.accounts)]}  # fmt: skip

    def voluntary_cancels(cfg: SimConfig, schedule: dict[int, list[dict[str, Any]]]) -> int:
        _, _, truth = _run(cfg, schedule)
        return sum(c["driver"] != "payment" for t in truth for c in t["cancels"])

    without = voluntary_cancels(base, {})
    taken = SimConfig(**{**_fields(base), "react_offer_taken_rate": 1.0,
                         "react_offer_hazard_mult": 0.0})  # fmt: skip
    assert without > 20
    assert voluntary_cancels(taken, offers) <= 2  # only those cancelled on day 0


def test_win_back_brings_a_cancelled_account_back_at_the_answer() -> None:
    cfg = SimConfig(accounts=200, days=30, seed=8, churn_scale=4.0, react_win_back_rate=1.0,
                    reactivation_rate=0.0)  # fmt: skip
    events, _, truth = _run(cfg, {})
    cancelled = [(t["account_id"], t["churn_ts"]) for t in truth if t["churned"]]
    assert cancelled
    account, ts = min(cancelled, key=lambda c: c[1])
    read_day = (ts - cfg.start_ms) // DAY_MS + 2
    events, answered, truth = _run(cfg, {read_day: [_alert(account, "churn", "win_back", ts)]})
    assert [r["reaction"] for r in answered] == ["reactivated"]
    back = [e for e in events if e["account_id"] == account
            and e["type"] == "subscription_reactivated"]  # fmt: skip
    assert [parse_ts(e["ts"]) for e in back] == [answered[0]["ts"]]


def _fields(cfg: SimConfig) -> dict[str, Any]:
    from dataclasses import fields

    return {f.name: getattr(cfg, f.name) for f in fields(cfg)}


# ------------------------------------------------------- the loop, in one process


def test_the_loop_closes_in_process() -> None:
    """The worker's own pipeline (models.replay) raises the alerts, the households answer
    them, and the engine counts the answers as outcomes of the alerts' actions; without
    answers (no crackdown in this run) nothing converts."""
    cfg = SimConfig(accounts=60, days=30, seed=5, mix=SHARERS, crackdown_day=100)
    engine = EngineConfig(sharing_alert=AlertConfig(0.5, 0.3))
    inbox: list[dict[str, Any]] = []
    answered: list[dict[str, Any]] = []

    def alerts(day: int) -> list[dict[str, Any]]:
        out = list(inbox)
        inbox.clear()
        return out

    def sharing_outcomes(result: Any) -> Counter[str]:
        return Counter({o: n for (k, _, o), n in result.action_outcomes.items() if k == "sharing"})

    result = replay(simulate(cfg, None, alerts, answered.append), cfg=engine,
                    on_outputs=lambda out: inbox.extend(out.alerts), batch=200)  # fmt: skip
    reacted = Counter(r["reaction"] for r in answered if r["kind"] == "sharing")
    sharing = sharing_outcomes(result)
    # one answer closes every follow-up open on its account
    assert sharing["extra_member_added"] >= reacted["extra_member"] > 0
    assert sharing["cancelled"] >= reacted["cancelled"]
    baseline = sharing_outcomes(replay(simulate(cfg), cfg=engine, batch=200))
    assert baseline["extra_member_added"] == baseline["verified"] == 0


# ------------------------------------------------------------------ the alert feed


class FakeSource:
    def __init__(self) -> None:
        self.queue: list[tuple[str, bytes | None]] = []
        self.on_poll = lambda: None
        self.closed = False

    def poll(self, timeout_s: float) -> list[tuple[str, bytes | None]]:
        self.on_poll()
        out, self.queue = self.queue, []
        return out

    def close(self) -> None:
        self.closed = True


def _msg(topic: str, **fields: Any) -> tuple[str, bytes]:
    import orjson

    return topic, orjson.dumps(fields)


def test_the_feed_returns_alerts_once_and_skips_what_is_not_one() -> None:
    src = FakeSource()
    feed = AlertFeed(src, "alerts", 0, log=None)
    alert = _alert("a1", "sharing", "household_verification", 5_000)
    src.queue = [_msg("alerts", **alert), ("alerts", b"not json"), ("scores", None),
                 _msg("alerts", alert_id="x", ts="yesterday"), _msg("scores", ts=9_000)]  # fmt: skip
    assert feed(0) == [alert]
    assert feed(1) == [] and feed.progress_ms == 9_000 and feed.alerts_read == 1
    feed.close()
    assert src.closed


def test_the_feed_waits_for_the_worker_then_stops_waiting_for_a_silent_one() -> None:
    src, now, flushed = FakeSource(), [0.0], []
    day = DAY_MS
    out = io.StringIO()
    feed = AlertFeed(src, "alerts", 0, lag_days=2, wait_s=10, flush=lambda: flushed.append(1),
                     log=out, clock=lambda: now[0])  # fmt: skip
    assert feed(0) == feed(2) == [] and flushed == []  # nothing to wait for before day 3
    src.queue = [_msg("scores", ts=3 * day)]
    assert feed(5) == [] and flushed == []  # the worker is far enough: no wait

    progress = iter([4 * day, 5 * day])

    def worker_moves() -> None:  # each poll takes 1 s; the worker gets to day 4, then 5
        now[0] += 1
        src.queue.append(_msg("scores", ts=next(progress, 5 * day)))

    src.on_poll = worker_moves
    feed(7)
    assert flushed == [1] and feed.progress_ms == 5 * day and feed.waited_s == 1

    src.on_poll = lambda: now.__setitem__(0, now[0] + 1)  # the worker goes quiet
    feed(9)
    assert "has not moved for 10s" in out.getvalue() and feed.waited_s == 11
    feed(30)  # and is not waited for any more
    assert feed.waited_s == 11
