"""The accepted range of event times (CONTRACT.md "Bad input") and the engine's bounded
work per event: one far-future or far-past event must never take a worker down."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.account import DAY_MS, dump_state
from models.contract import Event, parse_message
from models.engine import EngineConfig, Models, Outputs, Shard, process
from models.replay import replay
from models.state_codec import payload
from models.timepolicy import FLOOR_2000, MergedClock, TimePolicy
from streams.settings import Settings, SettingsError
from tests.unit.test_contract_properties import FIELDS

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
WALL = T0 + 400 * DAY_MS  # a fixed wall clock for the tests
POLICY = TimePolicy(max_ahead_ms=DAY_MS, floor_ms=FLOOR_2000)


def kind(why: tuple[str, str] | None) -> str | None:
    return None if why is None else why[0]


# --- the policy's edges ---------------------------------------------------------------


def test_floor_edge() -> None:
    check = POLICY.checker(wall=WALL)
    assert kind(check(FLOOR_2000)) is None
    assert kind(check(FLOOR_2000 - 1)) == "past_ts"
    assert kind(check(0)) == "past_ts"
    assert kind(TimePolicy(floor_ms=0).checker(wall=WALL)(0)) is None


def test_wall_clock_edge() -> None:
    check = POLICY.checker(wall=WALL)
    assert kind(check(WALL + DAY_MS)) is None
    assert kind(check(WALL + DAY_MS + 1)) == "future_ts"
    assert kind(check(253_402_300_799_999)) == "future_ts"  # 9999-12-31
    assert kind(TimePolicy(max_ahead_ms=60_000).checker(wall=WALL)(WALL + 60_001)) == "future_ts"


def test_history_with_gaps_is_accepted() -> None:
    """A backlog of history, read in any order and with any gaps, is judged by the floor
    and the wall clock only (the partition-clock rule threw away valid events)."""
    check = POLICY.checker(wall=WALL)
    assert all(check(T0 + d * DAY_MS) is None for d in (0, 40, 3, 200, 1))


def test_the_merged_clock_judges_what_is_ahead_of_everything_else() -> None:
    c = MergedClock(POLICY)
    assert c.admit(T0 + 5 * DAY_MS, wall_ms=0) is None  # the first event: no clock yet
    assert c.admit(T0, wall_ms=0) is None  # behind is not this rule's business
    assert c.admit(T0 + 6 * DAY_MS, wall_ms=0) is None  # the edge
    assert kind(c.admit(T0 + 7 * DAY_MS + 1, wall_ms=0)) == "future_ts"
    assert c.clock == (T0 + 6 * DAY_MS, 0)  # a rejected time does not move it
    assert c.admit(T0 + 7 * DAY_MS + 1, wall_ms=2) is None  # the clock moves with wall time


def test_replay_dead_letters_a_jump_ahead_of_the_history() -> None:
    events = [login(i, T0 + i * 60_000, account=f"a{i % 3}") for i in range(30)]
    events.insert(10, login(97, T0 + 40 * DAY_MS))  # a bad producer clock, within the wall
    r = replay(events)
    assert (r.dead_letters, r.applied) == (1, 30)
    # a sparse history with a real hole longer than the skew loses what follows the hole:
    # backfill such a history with a larger CHURNWATCH_MAX_FUTURE_SKEW_S
    sparse = [login(1, T0), login(2, T0 + 3 * DAY_MS)]
    assert replay(sparse).dead_letters == 1
    wide = EngineConfig(time=TimePolicy(max_ahead_ms=30 * DAY_MS))
    assert replay(sparse, cfg=wide).dead_letters == 0


def test_policy_settings() -> None:
    with pytest.raises(ValueError):
        TimePolicy(max_ahead_ms=0)
    s = Settings.from_env(
        {"CHURNWATCH_MAX_FUTURE_SKEW_S": "3600", "CHURNWATCH_MIN_EVENT_TS": "2020-01-01T00:00:00Z"}
    )
    assert s.engine_config().time == TimePolicy(3_600_000, 1_577_836_800_000)
    assert Settings.from_env({"CHURNWATCH_MIN_EVENT_TS": "0"}).engine_config().time.floor_ms == 0
    assert Settings().engine_config().time == TimePolicy()
    with pytest.raises(SettingsError, match="CHURNWATCH_MIN_EVENT_TS"):
        Settings.from_env({"CHURNWATCH_MIN_EVENT_TS": "yesterday"})
    with pytest.raises(SettingsError, match="CHURNWATCH_MAX_FUTURE_SKEW_S"):
        Settings.from_env({"CHURNWATCH_MAX_FUTURE_SKEW_S": "-1"})


# --- dead letters ------------------------------------------------------------------------


def login(i: int, ts: Any, account: str = "a") -> dict[str, Any]:
    return {"event_id": f"e{i}", "type": "login", "account_id": account, "ts": ts, "device_id": "d"}


def test_parse_message_dead_letters_out_of_range_times_with_their_index() -> None:
    batch = [login(1, T0), login(2, "9999-12-31T00:00:00Z"), login(3, "1990-05-01T00:00:00Z"),
             login(4, T0 + 60_000)]  # fmt: skip
    events, dead = parse_message(
        orjson.dumps(batch), topic="usage-events", partition=3, offset=9,
        check_ts=POLICY.checker(wall=WALL),
    )  # fmt: skip
    assert [e.event_id for e in events] == ["e1", "e4"]
    assert [(d.kind, d.index, d.partition, d.offset) for d in dead] == [
        ("future_ts", 1, 3, 9), ("past_ts", 2, 3, 9),
    ]  # fmt: skip
    assert (
        dead[0].error
        == "future_ts: 'ts' 9999-12-31T00:00:00Z is more than 1 d ahead of the wall clock"
    )
    assert orjson.loads(dead[1].raw)["event_id"] == "e3"


def test_replay_dead_letters_a_far_future_event_and_applies_the_rest() -> None:
    events = [login(i, T0 + i * 60_000, account=f"a{i % 3}") for i in range(30)]
    events.insert(15, login(99, "9999-12-31T00:00:00Z"))
    events.insert(20, login(98, 0))
    r = replay(events)
    assert (r.events, r.dead_letters, r.applied, r.failed) == (32, 2, 30, 0)


# --- bounded work per event, with or without the policy ---------------------------------


@pytest.mark.timeout(60)  # a guard against hanging for minutes, not a speed target
def test_engine_alone_is_bounded_on_a_far_future_event() -> None:
    """Even an event the policy would refuse (it comes from a changelog or a bug)
    costs a bounded amount of work: this one used to loop over 2.9 million days."""
    shard, out, models, cfg = Shard(), Outputs(), Models.fresh(), EngineConfig()
    start = {"plan": "p", "price": 9.0, "currency": "EUR", "billing_period": "month",
             "max_streams": 2}  # fmt: skip
    events = [
        Event("s", "subscription_started", "a", T0, start),
        Event("p", "playback_started", "a", T0 + 1000, {"session_id": "x", "device_id": "tv"}),
        Event("q", "playback_stopped", "a", 253_402_300_799_000, {"session_id": "x"}),
        Event("l", "login", "a", 253_402_300_799_500, {"device_id": "tv"}),
    ]
    assert process(shard, events, models, cfg, out)[0] == 4
    state = shard.accounts["a"]
    assert len(payload(dump_state(state))) < 64_000
    assert len(out.examples) <= 366 // 7 + 2
    assert len(state.household.day_max_streams) <= 60


def _event(draw: st.DrawFn, i: int, ts: int) -> dict[str, Any]:
    etype = draw(st.sampled_from(sorted(FIELDS)))
    required, optional = FIELDS[etype]
    fields = draw(st.fixed_dictionaries(required, optional=optional))
    account = draw(st.sampled_from(["a", "b", "c"]))
    return {"event_id": f"e{i}", "type": etype, "account_id": account, "ts": ts, **fields}


# offsets from the last event: small steps, jumps of days, years back or ahead; and any
# time at all the policy accepts
STEPS = st.one_of(
    st.integers(-2 * 3_600_000, 3_600_000),
    st.integers(-DAY_MS, DAY_MS),
    st.sampled_from([DAY_MS, 40 * DAY_MS, -400 * DAY_MS, -30 * 365 * DAY_MS]),
)
ACCEPTED = st.integers(FLOOR_2000, WALL + DAY_MS)


@st.composite
def sequences(draw: st.DrawFn) -> list[dict[str, Any]]:
    clock, out = draw(ACCEPTED), []
    for i in range(draw(st.integers(1, 40))):
        ts = draw(ACCEPTED) if draw(st.booleans()) else clock + draw(STEPS)
        ts = min(max(ts, FLOOR_2000), WALL + DAY_MS)
        out.append(_event(draw, i, ts))
        clock = ts
    return out


@settings(max_examples=40, deadline=None)
@given(sequences())
def test_any_accepted_sequence_costs_bounded_work_per_event(raw: list[dict[str, Any]]) -> None:
    """Any contract-valid events with any times the policy accepts: each event's
    processing ends quickly, adds a bounded number of outputs, and the state stays small."""
    check, shard, models, cfg = POLICY.checker(wall=WALL), Shard(), Models.fresh(), EngineConfig()
    for i, doc in enumerate(raw):
        events, _ = parse_message(
            orjson.dumps(doc), topic="t", partition=0, offset=i, check_ts=check
        )
        out = Outputs()
        started = time.process_time()
        process(shard, events, models, cfg, out)
        # generous: a regression to looping over days or sessions costs minutes
        assert time.process_time() - started < 2.0
        # at most a year of weekly snapshots per account (a silence's catch-up) per event
        assert len(out.examples) <= (366 // 7 + 4) * len(shard.accounts)
        assert len(out.alerts) <= 40
        for state in shard.accounts.values():
            assert len(payload(dump_state(state))) < 128_000
