"""The simulator: determinism, contract validity, archetype behaviour, CLI and replay I/O."""

from __future__ import annotations

import io
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from models.contract import EVENT_TYPES, parse_message, parse_ts
from models.simulator import SimConfig, parse_mix, simulate
from models.simulator.world import DAY_MS, km_between
from streams import cli
from streams.simio import JsonlSink, Progress, RateLimiter, encode_events, pump, read_jsonl

CFG = SimConfig(accounts=400, days=75, seed=11)


@pytest.fixture(scope="module")
def run() -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    truth: list[dict[str, Any]] = []
    events = list(simulate(CFG, truth.append))
    return events, {t["account_id"]: t for t in truth}


@pytest.fixture(scope="module")
def sessions(run: Any) -> dict[str, list[tuple[int, int, str | None]]]:
    """Per account: (start, stop, city) of every playback with a stop event."""
    events, _ = run
    starts: dict[str, dict[str, Any]] = {}
    out: dict[str, list[tuple[int, int, str | None]]] = defaultdict(list)
    for ev in events:
        if ev["type"] == "playback_started":
            starts[ev["session_id"]] = ev
    for ev in events:
        if ev["type"] == "playback_stopped" and ev["session_id"] in starts:
            st = starts.pop(ev["session_id"])
            city = st["geo"]["city"] if "geo" in st else None
            out[st["account_id"]].append((parse_ts(st["ts"]), parse_ts(ev["ts"]), city))
    return out


def _by_archetype(truth: dict[str, dict[str, Any]], archetype: str) -> list[str]:
    return [a for a, t in truth.items() if t["archetype"] == archetype]


def _network(ip: str) -> str:
    """The /64 of an IPv6 address, the /24 of an IPv4 one."""
    return ":".join(ip.split(":")[:4]) if ":" in ip else ip.rsplit(".", 1)[0]


def _overlaps(a: tuple[int, int, Any], b: tuple[int, int, Any]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


# ------------------------------------------------------------------ determinism


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    def dump(seed: int) -> bytes:
        truth: list[dict[str, Any]] = []
        cfg = SimConfig(accounts=40, days=20, seed=seed)
        body = b"\n".join(orjson.dumps(e) for e in simulate(cfg, truth.append))
        return body + orjson.dumps(truth)

    first = dump(5)
    assert first == dump(5)
    assert first != dump(6)


def test_streams_lazily_without_generating_the_whole_run() -> None:
    t0 = time.perf_counter()
    first = next(simulate(SimConfig(accounts=5, days=200_000)))
    assert first["type"] == "subscription_started"
    assert time.perf_counter() - t0 < 2.0  # the whole run would take minutes


# --------------------------------------------------------------------- contract


def test_every_event_passes_the_contract_parser_and_every_type_occurs(run: Any) -> None:
    events, _ = run
    for i in range(0, len(events), 1000):  # batches of 1000, as the contract allows
        raw = orjson.dumps(events[i : i + 1000])
        parsed, dead = parse_message(raw, topic="t", partition=0, offset=i)
        assert dead == [], dead[:3]
        assert len(parsed) == len(events[i : i + 1000])
    assert {e["type"] for e in events} == EVENT_TYPES - {"account_erased"}  # a request, not life


def test_emission_order_is_event_time_except_late_and_duplicates(run: Any) -> None:
    events, _ = run
    high, lagging = 0, 0
    for ev in events:
        ts = parse_ts(ev["ts"])
        assert high - ts <= CFG.max_late_s * 1000 + 300_000
        lagging += ts < high
        high = max(high, ts)
    assert 0 < lagging < 3 * (CFG.late_rate + CFG.duplicate_rate) * len(events)
    clean = SimConfig(accounts=30, days=15, late_rate=0, duplicate_rate=0)
    stamps = [parse_ts(e["ts"]) for e in simulate(clean)]
    assert stamps == sorted(stamps)


def test_duplicates_are_exact_copies_at_about_the_configured_rate(run: Any) -> None:
    events, _ = run
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ev in events:
        by_id[ev["event_id"]].append(ev)
    dups = [evs for evs in by_id.values() if len(evs) > 1]
    assert all(evs[0] == evs[1] for evs in dups)
    assert 0.3 * CFG.duplicate_rate < len(dups) / len(by_id) < 3 * CFG.duplicate_rate


def test_noise_knobs_show_up(run: Any) -> None:
    events, _ = run
    n = len(events)
    strings = sum(isinstance(e["ts"], str) for e in events)
    assert 0.7 * CFG.rfc3339_rate < strings / n < 1.3 * CFG.rfc3339_rate
    ips = [e["ip"] for e in events if "ip" in e]
    assert 0.05 < sum(":" in ip for ip in ips) / len(ips) < 0.5  # some IPv6
    started = {e["session_id"] for e in events if e["type"] == "playback_started"}
    stopped = {e["session_id"] for e in events if e["type"] == "playback_stopped"}
    lost = len(started - stopped) / len(started)
    assert 0.5 * CFG.lost_stop_rate < lost < 2 * CFG.lost_stop_rate
    actions = Counter(e["action"] for e in events if e["type"] == "activity")
    assert len(actions) > 30 and actions.most_common(1)[0][1] < 0.3 * sum(actions.values())


# ------------------------------------------------------------------ ground truth


def test_truth_agrees_with_the_events(run: Any) -> None:
    events, truth = run
    assert len(truth) == CFG.accounts
    cancels = {(e["account_id"], parse_ts(e["ts"])) for e in events
               if e["type"] == "subscription_cancelled"}  # fmt: skip
    churned = [t for t in truth.values() if t["churned"]]
    assert 0.05 * len(truth) < len(churned) < 0.5 * len(truth)
    for t in churned:
        assert (t["account_id"], t["churn_ts"]) in cancels
    # sharing starts with the borrower's first event: a challenge, a login or a playback
    starts = {(e["account_id"], parse_ts(e["ts"])) for e in events
              if e["type"] in ("playback_started", "login", "household_verification")}  # fmt: skip
    shared = [t for t in truth.values() if t["shared"]]
    assert shared and all((t["account_id"], t["share_start_ts"]) in starts for t in shared)
    assert {t["archetype"] for t in shared} <= {"sharer", "subtle_sharer"}
    added = {e["account_id"] for e in events if e["type"] == "extra_member_added"}
    assert added == {a for a, t in truth.items() if t["extra_member_added"]}
    assert added <= {t["account_id"] for t in shared}


def test_truth_says_whether_sharing_still_goes_on_at_the_end(run: Any) -> None:
    """A borrower blocked or paid for (or the account cancelled) ends the sharing: the
    truth says so and when, for judging the last score against what was true then."""
    events, truth = run
    shared = [t for t in truth.values() if t["shared"]]
    assert not any(t["sharing_at_end"] or t["share_end_ts"] for t in truth.values()
                   if not t["shared"])  # fmt: skip
    ongoing = [t for t in shared if t["sharing_at_end"]]
    ended = [t for t in shared if not t["sharing_at_end"]]
    assert ongoing and ended
    assert all(t["share_end_ts"] is None for t in ongoing)
    assert all(t["share_end_ts"] >= t["share_start_ts"] for t in ended)
    assert any(t["borrowers_blocked"] for t in ended)  # blocked borrowers end it
    # still going on: the account is subscribed at the end
    last: dict[str, str] = {}
    for ev in sorted(events, key=lambda e: parse_ts(e["ts"])):
        if ev["type"] in ("subscription_started", "subscription_reactivated",
                          "subscription_cancelled"):  # fmt: skip
            last[ev["account_id"]] = ev["type"]
    assert all(last[t["account_id"]] != "subscription_cancelled" for t in ongoing)
    # an extra member paid for: its time is when a single borrower's sharing ended
    paid_one = [t for t in ended if t["share_households"] == 1 and t["extra_member_added"]]
    assert paid_one and all(t["share_end_ts"] <= t["extra_member_ts"] or t["churned"]
                            for t in paid_one)  # fmt: skip


def test_truth_counts_the_days_a_borrower_watched(run: Any) -> None:
    """``borrowed_days``: days on which a borrower not paid for started a playback; none
    for an account never shared, at most one a day, and a first borrowed playback is one."""
    events, truth = run
    assert all(t["borrowed_days"] == 0 for t in truth.values() if not t["shared"])
    days = [t["borrowed_days"] for t in truth.values() if t["shared"]]
    assert all(0 <= n <= CFG.days for n in days) and max(days) > 3
    first_watched = {(e["account_id"], parse_ts(e["ts"])) for e in events
                     if e["type"] == "playback_started"}  # fmt: skip
    assert all(t["borrowed_days"] >= 1 for t in truth.values()
               if t["shared"] and (t["account_id"], t["share_start_ts"]) in first_watched)  # fmt: skip


def test_no_new_playback_while_cancelled(run: Any) -> None:
    events, truth = run
    state: dict[str, bool] = {}
    for ev in sorted(events, key=lambda e: parse_ts(e["ts"])):
        if ev["type"] in ("subscription_started", "subscription_reactivated"):
            state[ev["account_id"]] = True
        elif ev["type"] == "subscription_cancelled":
            state[ev["account_id"]] = False
        elif ev["type"] == "playback_started":
            assert state.get(ev["account_id"]), ev
    assert any(t["reactivated"] for t in truth.values())


def test_archetype_mix_follows_the_config() -> None:
    mix = parse_mix("household=1,big_family=0,traveller=0,commuter=0,vpn_user=0,sharer=1,"
                    "subtle_sharer=0")  # fmt: skip
    shares = Counter(a.archetype for a in _accounts(SimConfig(accounts=300, days=1, mix=mix)))
    assert set(shares) == {"household", "sharer"}
    assert 100 < shares["sharer"] < 200


def _accounts(cfg: SimConfig) -> list[Any]:
    from models.simulator.account import Account
    from models.simulator.world import World

    world = World(cfg.seed, cfg.price_increase_share)
    return [Account(cfg, world, i) for i in range(cfg.accounts)]


# -------------------------------------------------------------------- archetypes


def test_travellers_go_elsewhere_but_never_while_home_is_watching(run: Any, sessions: Any) -> None:
    _, truth = run
    travellers = _by_archetype(truth, "traveller")
    away_accounts = 0
    for acct in travellers:
        home_city = truth[acct]["city"]
        ss = [s for s in sessions[acct] if s[2] is not None]
        home = [s for s in ss if s[2] == home_city]
        away = [s for s in ss if s[2] != home_city]
        away_accounts += bool(away)
        assert not any(_overlaps(a, h) for a in away for h in home)
    assert away_accounts >= 0.6 * len(travellers)


def test_travellers_move_at_plausible_speed(run: Any) -> None:
    events, truth = run
    last: dict[str, tuple[int, float, float]] = {}
    for ev in sorted(events, key=lambda e: parse_ts(e["ts"])):
        acct = ev["account_id"]
        if truth[acct]["archetype"] != "traveller" or "geo" not in ev:
            continue
        ts, geo = parse_ts(ev["ts"]), ev["geo"]
        if acct in last:
            t0, lat, lon = last[acct]
            km = km_between(lat, lon, geo["lat"], geo["lon"])
            if km > 100:
                assert km / max((ts - t0) / 3_600_000, 1e-9) < 1000, (acct, km, ts - t0)
        last[acct] = (ts, geo["lat"], geo["lon"])


def test_sharers_stream_concurrently_from_other_cities(run: Any, sessions: Any) -> None:
    _, truth = run

    def cross_city_overlap(acct: str) -> bool:
        ss = sorted(s for s in sessions[acct] if s[2] is not None)
        return any(
            _overlaps(a, b) and a[2] != b[2] for i, a in enumerate(ss) for b in ss[i + 1 : i + 20]
        )

    sharers = [a for a in _by_archetype(truth, "sharer") if truth[a]["shared"]]
    assert sum(map(cross_city_overlap, sharers)) >= 0.5 * len(sharers)
    households = _by_archetype(truth, "household") + _by_archetype(truth, "big_family")
    assert not any(map(cross_city_overlap, households))


def test_subtle_sharers_stay_nearby(run: Any) -> None:
    events, truth = run
    subtle = set(_by_archetype(truth, "subtle_sharer"))
    far = [e for e in events if e["account_id"] in subtle and "geo" in e
           and e["geo"]["city"] != truth[e["account_id"]]["city"]]  # fmt: skip
    assert not far


def test_vpn_users_appear_far_away_on_shared_exit_networks(run: Any) -> None:
    events, truth = run
    vpn = set(_by_archetype(truth, "vpn_user"))
    far: dict[str, set[str]] = defaultdict(set)  # /24 -> accounts seen far from home
    for ev in events:
        acct = ev["account_id"]
        if acct in vpn and "geo" in ev and ev["geo"]["city"] != truth[acct]["city"]:
            far[_network(ev["ip"])].add(acct)
    assert len(set().union(*far.values())) >= 0.7 * len(vpn)
    assert max(len(accts) for accts in far.values()) >= 3  # exits are shared


def test_commuters_use_changing_carrier_ips_near_home(run: Any) -> None:
    events, truth = run
    ips: dict[str, set[str]] = defaultdict(set)
    for ev in events:
        t = truth[ev["account_id"]]
        if ev["type"] == "playback_started" and "geo" in ev and t["archetype"] == "commuter":
            ips[ev["account_id"]].add(_network(ev["ip"]))
            assert ev["geo"]["city"] == t["city"]
    household_ips: dict[str, set[str]] = defaultdict(set)
    for ev in events:
        if ev["type"] == "playback_started" and "ip" in ev:
            if truth[ev["account_id"]]["archetype"] == "household":
                household_ips[ev["account_id"]].add(_network(ev["ip"]))
    commuter_median = sorted(len(v) for v in ips.values())[len(ips) // 2]
    household_median = sorted(len(v) for v in household_ips.values())[len(household_ips) // 2]
    assert commuter_median > 20 and household_median <= 6


def test_big_families_have_many_profiles_and_devices_at_one_address(run: Any) -> None:
    events, truth = run
    profiles: dict[str, set[str]] = defaultdict(set)
    devices: dict[str, set[str]] = defaultdict(set)
    networks: dict[str, Counter[str]] = defaultdict(Counter)
    seen: Counter[str] = Counter()
    for ev in events:
        if (
            ev["type"] == "playback_started"
            and truth[ev["account_id"]]["archetype"] == "big_family"
        ):
            profiles[ev["account_id"]].add(ev["profile_id"])
            devices[ev["account_id"]].add(ev["device_id"])
            if "ip" in ev:
                networks[ev["account_id"]][_network(ev["ip"])] += 1
            seen[ev["account_id"]] += 1
    busy = [a for a, n in seen.items() if n >= 100]
    assert len(busy) >= 10
    assert all(len(profiles[a]) >= 5 and len(devices[a]) >= 6 for a in busy)
    for a in busy:  # one address: the home /24 (and /64) carry nearly every stream
        home = sum(n for _, n in networks[a].most_common(2))
        assert home >= 0.9 * sum(networks[a].values())


def test_crackdown_starts_on_its_day_and_challenges_sharers_most(run: Any) -> None:
    events, truth = run
    crackdown = CFG.start_ms + CFG.crackdown_start_day * DAY_MS
    checks = [e for e in events if e["type"] == "household_verification"]
    assert checks and min(parse_ts(e["ts"]) for e in checks) >= crackdown
    failed = Counter(truth[e["account_id"]]["shared"] for e in checks if e["outcome"] != "verified")
    assert failed[True] > failed[False]


def test_disengaged_churners_watch_less_before_they_cancel(run: Any, sessions: Any) -> None:
    _, truth = run
    before = earlier = 0
    for acct, t in truth.items():
        if t["churn_driver"] == "disengaged" and t["churn_ts"] - t["signup_ts"] > 45 * DAY_MS:
            c = t["churn_ts"]
            before += sum(c - 14 * DAY_MS <= s[0] < c for s in sessions[acct])
            earlier += sum(c - 45 * DAY_MS <= s[0] < c - 31 * DAY_MS for s in sessions[acct])
    assert earlier > 50 and before < 0.6 * earlier


# ----------------------------------------------------------------- CLI and I/O


def test_cli_simulate_writes_events_and_truth(tmp_path: Path) -> None:
    argv = ["simulate", "--accounts", "20", "--days", "10", "--seed", "3", "--start",
            "2026-02-01", "--out", str(tmp_path), "--quiet"]  # fmt: skip
    assert cli.main(argv) == 0
    cfg = SimConfig(accounts=20, days=10, seed=3, start_ms=parse_ts("2026-02-01T00:00:00Z"))
    expected = b"".join(orjson.dumps(e) + b"\n" for e in simulate(cfg))
    assert (tmp_path / "events.jsonl").read_bytes() == expected
    truth = (tmp_path / "truth.jsonl").read_bytes().splitlines()
    assert [orjson.loads(t)["account_id"] for t in truth] == [f"a{i:07d}" for i in range(20)]


def test_cli_rejects_bad_knobs_and_missing_output(tmp_path: Path) -> None:
    assert cli.main(["simulate", "--accounts", "5"]) == 2
    assert cli.main(["simulate", "--late-rate", "1.5", "--out", str(tmp_path)]) == 2
    with pytest.raises(SystemExit):
        cli.main(["simulate", "--mix", "alien=1", "--out", str(tmp_path)])


class ListSink:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, str, str]] = []

    def send(self, value: bytes, account_id: str, event_type: str, ts: object = None) -> None:
        self.sent.append((value, account_id, event_type))

    def close(self) -> None:
        pass


def test_replay_sends_valid_lines_as_they_are_and_reports_bad_ones(tmp_path: Path) -> None:
    good = b'{"event_id":"e1","type":"login","account_id":"x","ts":5,"device_id":"d"}'
    lines = [good, b"", b"not json", b"[1]", b'{"type":"login","account_id":"x"}', good]
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    skipped: list[str] = []
    sink = ListSink()
    pump(read_jsonl([path], skipped.append), sink, RateLimiter(None), Progress("r", None))
    assert sink.sent == [(good, "x", "login")] * 2
    assert [s.split(": skipped")[0] for s in skipped] == [f"{path}:{n}" for n in (3, 4, 5)]
    assert "missing_field" in skipped[2]


def test_jsonl_sink_round_trips_through_the_replay_reader(tmp_path: Path) -> None:
    events = list(simulate(SimConfig(accounts=5, days=3)))
    sink = JsonlSink(tmp_path / "e.jsonl")
    pump(encode_events(events), sink, RateLimiter(None), Progress("s", None))
    sink.close()
    back = ListSink()
    pump(read_jsonl([tmp_path / "e.jsonl"], pytest.fail), back, RateLimiter(None),
         Progress("r", None))  # fmt: skip
    assert [orjson.loads(v) for v, _, _ in back.sent] == events


def test_rate_limiter_paces_and_progress_reports() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    limiter = RateLimiter(100.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(300):
        limiter.wait()
    assert now[0] == pytest.approx(3.0, abs=0.01)
    out = io.StringIO()
    progress = Progress("simulate", out, every_s=1.0, clock=lambda: now[0])
    for _ in range(2048):
        progress.tick()
    now[0] += 2.0
    progress.done("2026-03-04T10:00:00Z")
    assert out.getvalue() == "simulate: 2,048 events, 1,024/s, event time 2026-03-04, done\n"


def test_progress_shows_share_done_and_eta():
    now = [0.0]
    out = io.StringIO()
    day = 86_400_000
    progress = Progress("simulate", out, every_s=1.0, clock=lambda: now[0], span_ms=(0, 10 * day))
    for i in range(1, 2049):
        if i == 2048:
            now[0] = 4.0  # the 2048th event, at event time day 2 of 10, after 4 s
        progress.tick(2 * day)
    progress.done(10 * day)
    first, last = out.getvalue().splitlines()
    assert first == "simulate: 2,048 events, 512/s, event time 1970-01-03, 20%, ETA 16s"
    assert last == "simulate: 2,048 events, 512/s, event time 1970-01-11, done"
    by_bytes = Progress("replay", None, total_bytes=1000)
    by_bytes.tick(None, 250)
    assert by_bytes.fraction(None) == 0.25


def test_an_activity_led_product_has_its_own_vocabulary_and_its_signal_actions_fade() -> None:
    """``action_vocab``: every action is one of the product's names; before a cancellation
    the actions that follow satisfaction fall, relative to the others."""
    from models.simulator.account import action_vocabulary

    cfg = SimConfig(accounts=300, days=90, seed=4, action_vocab=10, daily_activity=3.0,
                    session_rate=0.3, churn_scale=2.0)  # fmt: skip
    (signal, _), (noise, _) = action_vocabulary(cfg.seed, 10, cfg.signal_action_share)
    assert len(signal) == 3 and len(noise) == 7
    truth: list[dict[str, Any]] = []
    events = list(simulate(cfg, truth.append))
    actions = [e for e in events if e["type"] == "activity"]
    assert {e["action"] for e in actions} == set(signal) | set(noise)
    assert len(actions) > 2 * sum(e["type"] == "playback_started" for e in events)
    churn = {t["account_id"]: t["churn_ts"] for t in truth if t["churn_driver"] == "disengaged"}
    assert len(churn) >= 10
    share = {"early": [0, 0], "late": [0, 0]}  # [signal, all], 60..30 and 14..0 days before
    for e in actions:
        c, ts = churn.get(e["account_id"]), parse_ts(e["ts"])
        if c is None or not c - 60 * DAY_MS <= ts < c:
            continue
        part = share["late" if ts >= c - 14 * DAY_MS else "early"]
        if ts < c - 30 * DAY_MS or ts >= c - 14 * DAY_MS:
            part[0] += e["action"] in signal
            part[1] += 1
    assert share["late"][0] / share["late"][1] < 0.8 * share["early"][0] / share["early"][1]
