"""The event-time merge of input partitions (``models.ordering``) and the backlog check."""

from __future__ import annotations

from models.contract import Event
from models.ordering import (
    Reorderer,
    WatermarkMerge,
    behind,
    chunks,
    decode_report,
    encode_marks,
    report,
)


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


def _merged(m: WatermarkMerge, now_ms: int, everything: bool = False) -> list[str]:
    return [e.event_id for e in m.release(now_ms, everything)[0]]


def test_two_ingests_interleaving_are_applied_in_event_time_order():
    # worker A reads p0 and is days ahead; worker B reads p1 and is behind: before the
    # merge, B's events reached the account state after A's and were dropped as late
    m = WatermarkMerge(stall_ms=60_000)
    m.expect(["p0", "p1"], now_ms=0)
    m.push([_ev("a1", 100), _ev("a2", 900)], token="A1", marks={"p0": 900}, now_ms=0)
    m.push([_ev("b1", 50), _ev("b2", 200)], token="B1", marks={"p1": 200}, now_ms=0)
    assert _merged(m, 0) == ["b1", "a1", "b2"]
    m.push([_ev("b3", 850)], token="B2", marks={"p1": 870}, now_ms=1)
    assert _merged(m, 1) == ["b3"]
    m.push([_ev("b4", 950)], token="B3", marks={"p1": 1_000}, now_ms=2)
    events, done = m.release(2)
    assert [e.event_id for e in events] == ["a2"] and done == ["A1"]
    assert m.held == 1 and m.forced == 0  # b4 waits for p0 to pass 950


def test_a_message_is_released_only_with_all_its_events():
    m = WatermarkMerge()
    m.expect(["p0", "p1"], now_ms=0)
    m.push([_ev("a1", 10), _ev("a2", 30)], token="A", marks={"p0": 30}, now_ms=0)
    m.push([], token="marker", marks={"p1": 20}, now_ms=0)
    events, done = m.release(0)
    assert [e.event_id for e in events] == ["a1"] and done == ["marker"]
    m.push([], token="marker2", marks={"p1": None}, now_ms=0)  # p1 idle: nothing to wait for
    events, done = m.release(0)
    assert [e.event_id for e in events] == ["a2"] and done == ["marker2", "A"]


def test_a_source_not_heard_of_holds_back_until_it_reports_or_stalls():
    m = WatermarkMerge(stall_ms=10_000)
    m.expect(["p0", "p1"], now_ms=0)  # rebuilt from the log: p1's owner has not spoken yet
    m.push([_ev("a1", 500)], token="A", marks={"p0": 500}, now_ms=0)
    assert _merged(m, 9_999) == []
    assert _merged(m, 10_000) == ["a1"]  # p1's owner is gone (killed): it stops holding
    m.push([_ev("b1", 600)], token="B", marks={"p1": 700}, now_ms=11_000)  # it is back
    m.push([_ev("a2", 800)], token="A2", marks={"p0": 800}, now_ms=11_000)
    assert _merged(m, 11_000) == ["b1"]


def test_watermarks_never_go_back_and_everything_goes_before_a_rebalance():
    m = WatermarkMerge()
    m.expect(["p0", "p1"], now_ms=0)
    m.push([], token="x", marks={"p0": 500, "p1": 500}, now_ms=0)
    # p1's new owner re-reads from its commit and reports less: what it re-reads up to
    # 500 was sent already (duplicates), and p1's mark stays at 500
    m.push([_ev("d", 450)], token="y", marks={"p1": 300}, now_ms=1)
    assert m.frontier(1) == 500 and _merged(m, 1) == ["d"]
    m.push([_ev("z", 900)], token="z", marks={"p0": 900}, now_ms=2)
    assert _merged(m, 2) == []
    assert _merged(m, 2, everything=True) == ["z"] and m.forced == 1


def test_the_merge_is_bounded_oldest_first():
    m = WatermarkMerge(max_held=2)
    m.expect(["p0", "p1"], now_ms=0)
    m.push([_ev("a", 10), _ev("b", 20), _ev("c", 30)], token="A", marks={"p0": 30}, now_ms=0)
    assert _merged(m, 0) == ["a"] and m.held == 2 and m.forced == 1


def test_an_ingest_reports_its_watermark_and_its_idle_partitions():
    r = Reorderer(idle_ms=1_000)
    r.add("use", [_ev("u", 80)], token="m1", now_ms=0)
    r.add("sub", [_ev("s", 50)], token="m2", now_ms=900)
    assert report(r, 1_500) == (50, ["sub"], ["use"])
    marks = (decode_report(encode_marks(*report(r, 1_500))) or ({}, {}, False))[0]
    assert marks == {"use": None, "sub": 50}


def test_an_event_another_partition_passed_is_vouched_for():
    r = Reorderer(idle_ms=1_000)
    r.add("a", [_ev("x", 5)], token="m1", now_ms=0)
    assert r.vouched(0) is None  # a single source cannot vouch for its own events
    r.add("b", [_ev("y", 3 * 86_400_000)], token="m2", now_ms=0)
    assert r.vouched(0) == 5


def test_a_caught_up_partition_stops_holding_back_after_a_short_silence():
    # issue #12: the end of a burst waited CHURNWATCH_INPUT_IDLE_S for every partition
    r = Reorderer(idle_ms=3_000, stall_ms=60_000, quiet_ms=300)
    r.add("sub", [_ev("s1", 100)], token="m1", now_ms=0)
    r.add("use", [_ev("u1", 900)], token="m2", now_ms=0)
    assert r.silent(299) == [] and sorted(r.silent(300)) == ["sub", "use"]
    assert [e.event_id for e in r.release(now_ms=400)[0]] == ["s1"]  # nothing known yet
    r.mark_behind("use", behind(highwater=13, next_offset=13))  # caught up
    r.mark_behind("sub", behind(highwater=40, next_offset=12))  # Kafka has more of it
    assert r.release(now_ms=400) == ([], [])  # "sub" is behind: it holds u1 back still
    r.mark_behind("sub", behind(highwater=40, next_offset=40))  # ... now caught up too
    assert [e.event_id for e in r.release(now_ms=400)[0]] == ["u1"]


def test_a_report_of_nothing_read_yet_does_not_wake_an_idle_source():
    # a new owner reports a partition it has not read from yet (-1): it sends nothing
    # from it, so the old owner's "idle" stands (else a topic without data holds all)
    m = WatermarkMerge()
    m.expect(["sub", "use"], now_ms=0)
    m.push([], token="old", marks={"sub": None, "use": 100}, now_ms=0)
    m.push([_ev("u", 90)], token="new", marks={"sub": -1, "use": 100}, now_ms=1)
    assert _merged(m, 1) == ["u"]


def test_events_of_equal_event_time_come_out_in_one_order_whatever_arrived_first():
    # a subscription event and a usage event of one account at the same millisecond, on
    # two topics: which partition a busy consumer reads first must not change the order
    # the account state sees them in (a score at the subscription event, say)
    def reordered(first: str) -> list[str]:
        r = Reorderer(idle_ms=3_000)
        sub, use = ("sub", [_ev("x-sub", 100)], "m1"), ("use", [_ev("a-use", 100)], "m2")
        for src, events, token in (sub, use) if first == "sub" else (use, sub):
            r.add(src, events, token=token, now_ms=0)
        return [e.event_id for e in r.release(now_ms=0)[0]]

    def merged(first: str) -> list[str]:
        m = WatermarkMerge()
        m.expect(["p0", "p1"], now_ms=0)
        a = ([_ev("x-a", 100)], "A", {"p0": 100})
        b = ([_ev("a-b", 100)], "B", {"p1": 100})
        for events, token, marks in (a, b) if first == "a" else (b, a):
            m.push(events, token=token, marks=marks, now_ms=0)
        return _merged(m, 0)

    assert reordered("sub") == reordered("use") == ["a-use", "x-sub"]
    assert merged("a") == merged("b") == ["a-b", "x-a"]


HOUR = 3_600_000


def _released_after_first_message(first_marks: bytes) -> tuple[int, int]:
    """Ingest A releases six hours of one source in two messages (the first carrying
    ``first_marks``); ingest B has reported its source ten hours on. Returns the latest
    event the merge releases after A's first message and the first of A's second."""
    merge = WatermarkMerge(stall_ms=60_000)
    merge.expect(["a", "b"], now_ms=0)
    b_events = [_ev(f"b{h}", h * HOUR + 1) for h in range(10)]
    merge.push(b_events, token="B", marks={"b": 10 * HOUR}, now_ms=0)
    merge.push(
        A_RELEASE[:3],
        token="A1",
        marks=(decode_report(first_marks) or ({}, {}, False))[0],
        now_ms=0,
    )
    released, _ = merge.release(0)
    return max(e.ts for e in released), A_RELEASE[3].ts


A_RELEASE = [_ev(f"a{h}", h * HOUR) for h in range(6)]


def test_a_release_split_over_messages_is_not_overtaken_between_them():
    """Issue #13: two workers on unkeyed input lost events whenever the account agent
    read the first message of an ingest's release, with its report, without the next:
    the merge released the other ingest's events up to that report, and the next
    message's events came behind the account's clock (hours to days late)."""
    [(first, first_marks), (second, last_marks)] = chunks(A_RELEASE, 3, 6 * HOUR, ["a"], [])
    assert (len(first), len(second)) == (3, 3)
    assert (decode_report(last_marks) or ({}, {}, False))[0] == {
        "a": 6 * HOUR
    }  # the whole release's report, last
    released, next_ts = _released_after_first_message(first_marks)
    assert released < next_ts  # nothing went ahead of A's second message
    # the whole release's report on every message (before) released B's events up to
    # six hours, three hours ahead of A's second message
    released, next_ts = _released_after_first_message(encode_marks(6 * HOUR, ["a"], []))
    assert released - next_ts > 2 * HOUR


DAY = 24 * HOUR


def test_a_backlog_does_not_go_past_a_starved_workers_idle_partitions():
    """Issue #13 follow-up: both ingests said "idle" on empty input; a backlog arrived;
    worker B sent days of it while worker A was starved. B's events must wait for A's
    partitions, which Kafka shows to have more than A had read."""
    m = WatermarkMerge(stall_ms=60_000)
    m.expect(["a", "b"], now_ms=0)
    m.push([], token="A0", marks={"a": None}, now_ms=0, read={"a": 0})
    m.push([], token="B0", marks={"b": None}, now_ms=0, read={"b": 0})
    backlog = [_ev(f"b{d}", d * DAY) for d in range(4)]
    m.push(backlog, token="B1", marks={"b": 4 * DAY}, now_ms=5_000)
    assert _merged(m, 5_000) == [] and m.waiting and m.claims() == ["a"]
    m.confirm({"a": 12}, asked=m.ask(), now_ms=5_100)  # 12 messages written, 0 read
    assert m.woken == 1 and not m.claims()
    assert _merged(m, 5_100) == []  # awake: it holds the others back at its watermark
    m.push(
        [_ev("a0", DAY // 2), _ev("a1", DAY + 1)], token="A1", marks={"a": 2 * DAY}, now_ms=9_000
    )
    assert _merged(m, 9_000) == ["b0", "a0", "b1", "a1", "b2"]  # b3 waits for A
    assert m.forced == 0


def test_a_quiet_partition_confirmed_idle_lets_the_others_go_on():
    # live traffic with a quiet partition: Kafka shows nothing more than its reader read
    m = WatermarkMerge(stall_ms=60_000)
    m.expect(["a", "b"], now_ms=0)
    m.push([_ev("a0", 10)], token="A0", marks={"a": None}, now_ms=0, read={"a": 40})
    m.push([_ev("b0", 50)], token="B0", marks={"b": 60}, now_ms=1)
    assert _merged(m, 1) == ["a0"] and m.claims() == ["a"]
    asked = m.ask()
    m.push([_ev("b1", 55)], token="B1", marks={"b": 60}, now_ms=2)  # after the question
    m.confirm({"a": 40}, asked=asked, now_ms=3)
    assert _merged(m, 3) == ["b0"]  # b1 came after the question: it waits for the next
    m.confirm({"a": 40}, asked=m.ask(), now_ms=4)
    assert _merged(m, 4) == ["b1"] and m.woken == 0


def test_an_idle_claim_covers_its_own_readers_events():
    # one upstream (one worker): its report covers what it sent, so nothing ever waits
    m = WatermarkMerge()
    m.expect(["a", "b"], now_ms=0)
    marks = {"a": None, "b": 900}
    m.push([_ev("x", 100), _ev("y", 800)], token="M", marks=marks, now_ms=0, read={"a": 3})
    assert _merged(m, 0) == ["x", "y"] and not m.waiting and m.held == 0


def test_an_idle_claim_without_an_offset_stands_as_made():
    # an ingest from before the offsets: its idle sources let the others go on, as before
    m = WatermarkMerge()
    m.expect(["a", "b"], now_ms=0)
    m.push([], token="A", marks={"a": None}, now_ms=0)
    m.push([_ev("b0", 500)], token="B", marks={"b": 600}, now_ms=1)
    assert _merged(m, 1) == ["b0"] and not m.claims()


def test_events_keyed_by_account_do_not_wait_on_another_readers_idle_claim():
    # keyed input: no other reader holds events of the same accounts, so they cannot be
    # made late by it (two workers on keyed input measured 1.08x one while they waited)
    m = WatermarkMerge()
    m.expect(["a", "b"], now_ms=0)
    m.push([], token="A", marks={"a": None}, now_ms=0, read={"a": 5})
    m.push([_ev("k", 100)], token="K", marks={"b": 200}, now_ms=1, keyed=True)
    m.push([_ev("u", 150)], token="U", marks={"b": 200}, now_ms=1)
    assert _merged(m, 1) == ["k"] and m.waiting
    assert (decode_report(encode_marks(5, ["b"], [], keyed=True)) or ({}, {}, False))[2]


def test_a_live_sparse_partition_does_not_hold_a_live_stream_back_but_a_backlog_does():
    """Live input: a caught-up partition whose newest event is recent (a sparse topic,
    one event now and then) has passed the wall clock and lets the busy one through at
    once, not after the idle time, and stays active in the report with the wall clock
    as its watermark (no idle claim downstream); the same shapes with old event times
    (a backlog pumped fast) wait for it, as before, and so does a live partition with
    messages still in Kafka."""
    wall = 1_767_225_600_000
    for t0, live in ((wall - 5_000, True), (wall - 86_400_000, False)):
        r = Reorderer(idle_ms=3_000, stall_ms=60_000, live_ms=60_000)
        r.add("sub", [_ev("s1", t0)], token="m1", now_ms=0)
        r.add("use", [_ev("u1", t0 + 100), _ev("u2", t0 + 2_000)], token="m2", now_ms=100)
        for src in r.silent(now_ms=200):  # what the ingest does before each release
            r.mark_behind(src, behind(highwater=7, next_offset=7), wall_ms=wall)
        events, done = r.release(now_ms=200)
        assert [e.event_id for e in events] == (["s1", "u1", "u2"] if live else ["s1"])
        frontier, active, idle = report(r, 200)
        assert (frontier, active, idle) == ((wall if live else t0), ["sub", "use"], [])
        assert report(r, 600_000)[1:] == ((["sub", "use"], []) if live else ([], ["sub", "use"]))
        # a live partition with more in Kafka holds the others back
        r.add("use", [_ev("u3", t0 + 3_000)], token="m3", now_ms=300)
        r.mark_behind("sub", behind(highwater=9, next_offset=7), wall_ms=wall)
        assert r.release(now_ms=300)[0] == []


def test_live_is_off_without_live_ms_and_judged_on_the_wall_clock_given():
    r = Reorderer(idle_ms=3_000)
    r.add("sub", [_ev("s1", 1_000)], token="m1", now_ms=0)
    r.add("use", [_ev("u1", 5_000)], token="m2", now_ms=0)
    r.mark_behind("sub", False, wall_ms=1_000)
    assert r.silent(now_ms=100) == [] and r.frontier(100) == 1_000
    r = Reorderer(idle_ms=3_000, live_ms=10_000)
    r.add("sub", [_ev("s1", 1_000)], token="m1", now_ms=0)
    r.add("use", [_ev("u1", 5_000)], token="m2", now_ms=0)
    r.mark_behind("sub", False)  # no wall clock: not live
    assert r.frontier(100) == 1_000
    r.mark_behind("sub", False, wall_ms=11_001)  # 10.001 s old: not live
    assert r.frontier(100) == 1_000
    r.mark_behind("sub", False, wall_ms=11_000)
    assert r.frontier(100) == 5_000
