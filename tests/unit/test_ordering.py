"""The event-time merge of input partitions (``models.ordering``) and the backlog check."""

from __future__ import annotations

from models.contract import Event
from models.ordering import Reorderer
from streams.agents.ingest import behind


def _ev(event_id: str, ts: int) -> Event:
    return Event(event_id, "login", "a", ts, {"device_id": "d"})


def test_a_silent_partition_with_a_backlog_holds_the_others_back():
    # a busy consumer: the subscription partition's messages wait behind usage ones
    r = Reorderer(idle_ms=3_000, stall_ms=60_000)
    r.add("sub", [_ev("s1", 100)], token="m1", now_ms=0)
    r.add("use", [_ev("u1", 150), _ev("u2", 900)], token="m2", now_ms=5_000)
    r.mark_behind("sub", behind(highwater=40, next_offset=12))
    events, done = r.release(now_ms=5_000)
    assert [e.event_id for e in events] == ["s1"] and done == ["m1"]
    # its next message arrives late in wall-clock time, but still in event-time order
    r.add("sub", [_ev("s2", 400)], token="m3", now_ms=9_000)
    r.mark_behind("sub", behind(highwater=40, next_offset=40))
    events, _ = r.release(now_ms=9_000)
    assert [e.event_id for e in events] == ["u1", "s2"]


def test_a_caught_up_silent_partition_is_idle():
    r = Reorderer(idle_ms=3_000, stall_ms=60_000)
    r.add("sub", [_ev("s1", 100)], token="m1", now_ms=0)
    r.add("use", [_ev("u1", 900)], token="m2", now_ms=5_000)
    r.mark_behind("sub", behind(highwater=13, next_offset=13))
    assert [e.event_id for e in r.release(now_ms=5_000)[0]] == ["s1", "u1"]


def test_a_stalled_partition_stops_holding_back_and_a_revoked_one_is_forgotten():
    r = Reorderer(idle_ms=3_000, stall_ms=60_000)
    r.add("sub", [_ev("s1", 100)], token="m1", now_ms=0)
    r.mark_behind("sub", True)
    r.add("use", [_ev("u1", 900)], token="m2", now_ms=59_000)
    assert [e.event_id for e in r.release(now_ms=59_000)[0]] == ["s1"]
    r.add("use", [_ev("u2", 950)], token="m3", now_ms=60_000)
    assert [e.event_id for e in r.release(now_ms=60_000)[0]] == ["u1", "u2"]  # stalled
    r.forget("sub")
    assert r.frontier(60_000) == 950 and r.silent(60_000) == []


def test_behind_compares_the_end_of_the_log_with_what_the_agent_has_seen():
    assert not behind(120, 120)
    assert behind(120, 80)
    assert behind(None, 80)  # no fetch yet: unknown, so wait
    assert not behind(0, None)  # a new group on an empty partition
    assert behind(5, None)  # a new group starts at the beginning of the log


def test_keep_leaves_an_event_out_and_still_releases_its_message() -> None:
    r = Reorderer(idle_ms=1_000)
    e = lambda i, ts: Event(i, "login", "a", ts, {"device_id": "d"})  # noqa: E731
    r.add("p", [e("ok", 1), e("ahead", 99)], token="m1", now_ms=0)
    seen = []
    events, done = r.release(
        now_ms=5_000, keep=lambda ev, tok: seen.append((ev.event_id, tok)) or ev.ts < 50
    )
    assert [x.event_id for x in events] == ["ok"] and done == ["m1"]
    assert seen == [("ok", "m1"), ("ahead", "m1")] and r.held == 0
