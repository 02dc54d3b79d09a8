"""Delayed labels: snapshots at sign-up and weekly, positives, negatives, ignored, bounds."""

from __future__ import annotations

from models.account import DAY_MS, DEFAULT_CONFIG, HOUR_MS, StateConfig, new_account
from models.contract import Event
from models.labels import Example, mature_labels, maybe_snapshot, observe, process_event

T0 = 1_767_225_600_000
D = DAY_MS


def ev(eid: str, type_: str, ts: int, **fields: object) -> Event:
    return Event(eid, type_, "a", ts, fields)


def start(ts: int = T0) -> Event:
    return ev(
        "start",
        "subscription_started",
        ts,
        plan="p",
        price=5.0,
        currency="EUR",
        billing_period="month",
        max_streams=1,
    )


def run(events: list[Event], cfg: StateConfig = DEFAULT_CONFIG) -> list[Example]:
    """Process ``events``, then let event time run on until every label has matured."""
    s = new_account("a")
    out: list[Example] = []
    for e in events:
        out += process_event(s, e, cfg=cfg)[1]
    return out + mature_labels(s, events[-1].ts + cfg.horizon_ms + cfg.lateness_ms, cfg)


def labels(examples: list[Example]) -> list[tuple[int, bool]]:
    return [((x.snapshot_ts - T0) // D, x.label) for x in examples]


def test_cancellation_labels_snapshots_within_the_horizon_positive() -> None:
    out = run(
        [
            start(),
            ev("l", "login", T0 + 20 * D, device_id="d"),
            ev("c", "subscription_cancelled", T0 + 36 * D),
        ]
    )
    # snapshots at days 0, 7, 14 (before the login), 21, 28, 35; day 0 matured negative at 30
    assert labels(out) == [(0, False), (7, True), (14, True), (21, True), (28, True), (35, True)]
    assert out[1].example_id == f"a:{T0 + 7 * D}"
    # the sign-up snapshot shows a new account; day 21's shows the login the day before
    assert out[0].features["tenure_days_log"] == 0
    assert out[3].features["active_days_7d"] == 1 and out[2].features["active_days_7d"] == 0


def test_cancellation_exactly_at_the_horizon_is_positive_just_after_is_not() -> None:
    out = run([start(), ev("c", "subscription_cancelled", T0 + 30 * D)])
    assert labels(out) == [(0, True), (7, True), (14, True), (21, True), (28, True)]
    s = new_account("a")
    process_event(s, start())
    _, out = process_event(s, ev("c", "subscription_cancelled", T0 + 30 * D + 1))
    assert out == []  # every label waits for its horizon, positives too
    assert labels(mature_labels(s, T0 + 30 * D)) == [(0, False)]
    assert labels(mature_labels(s, T0 + 58 * D)) == [(7, True), (14, True), (21, True), (28, True)]


def test_no_snapshots_while_cancelled_and_again_after_reactivation() -> None:
    out = run(
        [
            start(),
            ev("c", "subscription_cancelled", T0 + 3 * D),
            ev("r", "subscription_reactivated", T0 + 20 * D, plan="p", price=5.0, max_streams=1),
            ev("l", "login", T0 + 60 * D, device_id="d"),
        ]
    )
    # day 0 positive; days 7 and 14 skipped (cancelled); weekly negatives from day 21 on
    assert labels(out) == [(0, True)] + [(k, False) for k in range(21, 57, 7)]


def test_snapshot_taken_before_a_late_cancellation_is_not_an_example() -> None:
    s = new_account("a")
    process_event(s, start())
    process_event(s, ev("l", "login", T0 + 7 * D + 10 * 60_000, device_id="d"))
    assert [ts for ts, _ in s.pending] == [T0, T0 + 7 * D]
    # the cancellation happened 20 minutes before the day-7 snapshot, arrives late
    _, out = process_event(s, ev("c", "subscription_cancelled", T0 + 7 * D - 20 * 60_000))
    assert out == []
    assert labels(mature_labels(s, T0 + 30 * D)) == [(0, True)]
    assert s.pending == []


def test_duplicate_cancellation_does_not_label_twice() -> None:
    s = new_account("a")
    process_event(s, start())
    cancel = ev("c", "subscription_cancelled", T0 + 5 * D)
    assert process_event(s, cancel) == (True, [])
    assert process_event(s, cancel) == (False, [])
    assert labels(mature_labels(s, T0 + 60 * D)) == [(0, True)]


def test_negatives_wait_for_the_watermark_not_the_event() -> None:
    s = new_account("a")
    process_event(s, start())
    # an event at day 30 + 30 min: the watermark (clock - 1 h) is still before day 30
    _, out = process_event(s, ev("l", "login", T0 + 30 * D + HOUR_MS // 2, device_id="d"))
    assert out == []
    assert mature_labels(s, T0 + 30 * D)[0].label is False


def test_silent_account_is_labelled_by_the_sweep_and_pending_stays_bounded() -> None:
    s = new_account("a")
    process_event(s, start())
    cfg = StateConfig()
    out = observe(s, T0 + 100 * D, watermark_ms=T0 + 100 * D, cfg=cfg)
    assert labels(out) == [(k * 7, False) for k in range(11)]  # snapshot + 30 <= day 100
    assert len(s.pending) <= cfg.max_pending_snapshots
    # the weekly snapshots of a silent account differ only in time-based features
    assert out[0].features["days_since_last_activity"] == 0
    assert out[2].features["days_since_last_activity"] == 14


def test_maybe_snapshot_alone_keeps_pending_capped() -> None:
    s = new_account("a")
    process_event(s, start())
    cfg = StateConfig()
    maybe_snapshot(s, T0 + 365 * D, cfg)
    assert len(s.pending) == cfg.max_pending_snapshots + 1
    assert s.dropped_snapshots == 53 - len(s.pending)


def test_custom_horizon_and_interval() -> None:
    cfg = StateConfig(horizon_ms=10 * D, observation_interval_ms=D)
    out = run([start(), ev("c", "subscription_cancelled", T0 + 12 * D + 1)], cfg)
    assert labels(out) == [(0, False), (1, False), (2, False)] + [(k, True) for k in range(3, 13)]


def test_examples_are_deterministic() -> None:
    events = [
        start(),
        ev("l", "login", T0 + 9 * D, device_id="d"),
        ev("c", "subscription_cancelled", T0 + 40 * D),
    ]
    a, b = run(events), run(events)
    assert [x.to_dict() for x in a] == [x.to_dict() for x in b]
    assert all(Example.from_dict(x.to_dict()) == x for x in a)


def test_catch_up_after_years_of_silence_is_bounded() -> None:
    s = new_account("a")
    process_event(s, start())
    cfg = StateConfig()
    out = observe(s, T0 + 3650 * D, watermark_ms=T0 + 3650 * D, cfg=cfg)
    # only the last year of weekly points is observed; the rest count as dropped
    assert len(out) + len(s.pending) <= 366 // 7 + 2
    assert s.dropped_snapshots >= 3650 // 7 - 366 // 7 - 1
    assert s.last_obs_ts is not None and T0 + 3650 * D - s.last_obs_ts < 7 * D
