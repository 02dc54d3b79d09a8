"""Account state: idempotency, lateness, sessions, bounds, changelog round trip."""

from __future__ import annotations

import pytest

from models.account import (
    DAY_MS,
    HOUR_MS,
    StateConfig,
    action_name,
    apply_event,
    dump_state,
    expire,
    load_state,
    new_account,
)
from models.contract import Event
from models.household import new_household

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a day boundary


def ev(eid: str, type_: str, ts: int, **fields: object) -> Event:
    return Event(eid, type_, "a", ts, fields)


def started(ts: int = T0, price: float = 10.0) -> Event:
    return ev(
        "start",
        "subscription_started",
        ts,
        plan="std",
        price=price,
        currency="EUR",
        billing_period="month",
        max_streams=2,
    )


def test_subscription_facts_follow_event_time() -> None:
    s = new_account("a")
    assert apply_event(s, started())
    assert apply_event(
        s, ev("p1", "plan_changed", T0 + DAY_MS, plan="basic", price=6.0, max_streams=1)
    )
    assert apply_event(
        s, ev("p2", "plan_changed", T0 + 2 * DAY_MS, plan="premium", price=15.0, max_streams=4)
    )
    assert apply_event(s, ev("pc", "price_changed", T0 + 3 * DAY_MS, price=18.0))
    assert (s.plan, s.price, s.max_streams, s.currency) == ("premium", 18.0, 4, "EUR")
    assert [d for _, d in s.plan_changes] == [-1, 1]
    assert s.price_changes == [(T0 + 3 * DAY_MS, 15.0, 18.0)]
    # an older plan fact arriving late (within lateness) is history, not the current plan
    assert apply_event(
        s,
        ev(
            "old",
            "plan_changed",
            T0 + 3 * DAY_MS - HOUR_MS // 2,
            plan="x",
            price=1.0,
            max_streams=1,
        ),
    )
    assert (s.plan, s.price) == ("premium", 18.0)
    assert apply_event(s, ev("c", "subscription_cancelled", T0 + 4 * DAY_MS))
    assert s.status == "cancelled" and s.status_at(T0 + 4 * DAY_MS - 1) == "active"
    assert apply_event(
        s,
        ev(
            "r", "subscription_reactivated", T0 + 5 * DAY_MS, plan="basic", price=6.0, max_streams=1
        ),
    )
    assert s.status == "active" and s.reactivations == 1 and s.plan == "basic"


def test_duplicate_event_id_changes_nothing() -> None:
    s = new_account("a")
    apply_event(s, started())
    login = ev("l1", "activity", T0 + 10, action="like", quantity=2)
    assert apply_event(s, login)
    before = dump_state(s)
    assert not apply_event(s, login)
    assert dump_state(s) == before
    assert s.days.at(T0 // DAY_MS).actions == {"like": 2.0}


def test_late_event_within_lateness_lands_in_its_own_day() -> None:
    s = new_account("a")
    apply_event(s, started())
    apply_event(s, ev("now", "login", T0 + DAY_MS + 10 * 60_000, device_id="d1"))
    # 40 minutes late, belongs to the previous day
    assert apply_event(s, ev("late", "activity", T0 + DAY_MS - 30 * 60_000, action="rate"))
    assert s.days.at(T0 // DAY_MS).actions == {"rate": 1.0}
    assert s.days.at(T0 // DAY_MS + 1).usage_events == 1
    assert s.max_ts == T0 + DAY_MS + 10 * 60_000


def test_event_beyond_lateness_is_dropped() -> None:
    s = new_account("a")
    apply_event(s, started())
    apply_event(s, ev("now", "login", T0 + 5 * HOUR_MS, device_id="d1"))
    before = dump_state(s)
    assert not apply_event(s, ev("too-late", "payment_failed", T0 + 3 * HOUR_MS, amount=1.0))
    assert dump_state(s) == before
    # the partition clock counts too, even if this account saw nothing newer
    fresh = new_account("a")
    assert not apply_event(fresh, started(T0), clock_ms=T0 + 2 * HOUR_MS)
    assert apply_event(fresh, started(T0 + HOUR_MS), clock_ms=T0 + 2 * HOUR_MS)


def test_session_pairing_watch_time_and_expiry() -> None:
    s = new_account("a")
    day = T0 // DAY_MS
    apply_event(
        s, ev("s1", "playback_started", T0, session_id="x", device_id="tv", profile_id="p1")
    )
    apply_event(s, ev("e1", "playback_stopped", T0 + 1800_000, session_id="x"))  # 30 min
    apply_event(s, ev("s2", "playback_started", T0 + HOUR_MS, session_id="y", device_id="tv"))
    apply_event(s, ev("e2", "playback_stopped", T0 + 2 * HOUR_MS, session_id="y", watched_s=600))
    # stop before start (out of order, within lateness)
    apply_event(s, ev("e3", "playback_stopped", T0 + 3 * HOUR_MS, session_id="z"))
    apply_event(
        s,
        ev("s3", "playback_started", T0 + 3 * HOUR_MS - 900_000, session_id="z", device_id="phone"),
    )
    assert s.days.at(day).watch_s == 1800 + 600 + 900
    assert s.days.at(day).sessions == 3
    # a session whose stop is lost is over after 4 h (+ lateness) of event time
    apply_event(
        s, ev("s4", "playback_started", T0 + 4 * HOUR_MS, session_id="lost", device_id="tv")
    )
    assert "lost" in s.open_sessions
    expire(s, T0 + 9 * HOUR_MS + 1)
    assert "lost" not in s.open_sessions and s.expired_sessions == 1
    assert s.days.at(day).watch_s == 3300  # no watch time for a lost stop
    assert set(s.devices) == {"tv", "phone"} and set(s.profiles) == {"p1"}
    assert s.devices["tv"] == [T0, T0 + 4 * HOUR_MS]


def test_open_ended_actions_are_capped() -> None:
    s = new_account("a")
    cfg = StateConfig(max_actions=2)
    for i, action in enumerate(["Like", "share", "download", "like", "comment"]):
        apply_event(s, ev(f"a{i}", "activity", T0 + i, action=action), cfg=cfg)
    assert s.actions == ["like", "share"]
    assert s.days.at(T0 // DAY_MS).actions == {"like": 2.0, "share": 1.0, "other": 2.0}
    assert action_name("  ") == "unnamed"


def test_devices_cap_evicts_least_recently_seen() -> None:
    s = new_account("a")
    cfg = StateConfig(max_devices=2)
    for i, device in enumerate(["d1", "d2", "d1", "d3"]):
        apply_event(s, ev(f"l{i}", "login", T0 + i * 1000, device_id=device), cfg=cfg)
    assert set(s.devices) == {"d1", "d3"}


def test_memory_stays_bounded_over_a_long_history() -> None:
    s = new_account("a")
    cfg = StateConfig(max_dedup_ids=50)
    apply_event(s, started(), cfg=cfg)
    for i in range(2000):  # 200 days, 10 events a day
        ts = T0 + i * DAY_MS // 10
        apply_event(s, ev(f"x{i}", "activity", ts, action=f"act{i}"), cfg=cfg)
        apply_event(s, ev(f"f{i}", "payment_failed", ts, amount=1.0), cfg=cfg)
        apply_event(
            s, ev(f"p{i}", "playback_started", ts, session_id=f"s{i}", device_id=f"d{i}"), cfg=cfg
        )
    assert len(s.days) <= cfg.ring_days + 1
    assert len(s.seen_ids) <= 50
    assert len(s.actions) == cfg.max_actions
    assert len(s.failed_payments) == cfg.max_history
    assert len(s.devices) == cfg.max_devices
    assert len(s.open_sessions) <= cfg.max_open_sessions
    assert all(len(a) <= cfg.max_actions + 1 for a in s.days.actions)


def test_dedup_memory_forgets_ids_outside_the_lateness() -> None:
    s = new_account("a")
    apply_event(s, ev("x", "login", T0, device_id="d"))
    apply_event(s, ev("y", "login", T0 + 2 * HOUR_MS, device_id="d"))
    assert list(s.seen_ids) == ["y"]


def test_a_duplicate_redelivered_after_a_rebalance_is_not_applied_again() -> None:
    """The partition clock is not stored: a worker taking the partition over starts it
    again from the events it reads. An id the account kept until its own clock passed it
    by the lateness must still be known then (the late drop judges by that clock)."""
    s = new_account("a")
    first = ev("x", "login", T0 + 108 * 60_000, device_id="d")  # 1:48
    assert apply_event(s, first, clock_ms=T0 + 108 * 60_000)
    # other accounts of the partition moved its clock to 3:00; this one is at 2:30
    second = ev("y", "login", T0 + 150 * 60_000, device_id="d")
    assert apply_event(s, second, clock_ms=T0 + 3 * HOUR_MS)
    back = load_state(dump_state(s))  # another worker, its partition clock not there yet
    assert not apply_event(back, first, clock_ms=None)
    assert back == s  # nothing changed


def test_changelog_round_trip_and_versioning() -> None:
    s = new_account("a")
    apply_event(s, started())
    apply_event(s, ev("l", "activity", T0 + 5, action="like", device_id="d"))
    raw = dump_state(s)
    back = load_state(raw)
    assert back == s and back is not s
    # the restored state keeps deduplicating
    assert not apply_event(back, ev("l", "activity", T0 + 5, action="like"))
    with pytest.raises(ValueError, match="version"):
        load_state(raw[:4] + bytes([99]) + raw[5:])
    with pytest.raises(ValueError):
        load_state(b"junk")


def test_household_state_is_fed_usage_and_household_events() -> None:
    s = new_account("a")
    apply_event(s, started())
    assert s.household == new_household()
    apply_event(
        s, ev("l", "playback_started", T0 + 1, session_id="s", device_id="d", ip="10.0.0.1")
    )
    apply_event(s, ev("v", "household_verification", T0 + 2, device_id="d2", outcome="failed"))
    assert s.household != new_household()


@pytest.mark.parametrize(
    "kwargs",
    [{"lateness_ms": -1}, {"ring_days": 7}, {"max_actions": 0}, {"horizon_ms": 0}],
)
def test_state_config_fails_fast(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        StateConfig(**kwargs)
