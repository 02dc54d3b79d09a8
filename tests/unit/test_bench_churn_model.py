"""benchmarks/bench_churn_model.py: chunked example collection equals one replay of everyone."""

from __future__ import annotations

import pickle

import pytest

from models.account import DAY_MS, HOUR_MS
from models.simulator import SimConfig, simulate
from tests.unit.bench_loader import load_benchmark

bench = load_benchmark("bench_churn_model")

CFG = SimConfig(accounts=30, days=45, seed=3)


def test_a_slice_of_the_population_gets_exactly_its_accounts_events_in_the_same_order():
    cfg = SimConfig(accounts=12, days=20, seed=5)
    events = list(simulate(cfg))
    slices = [list(bench.simulate_accounts(cfg, lo, hi)) for lo, hi in ((0, 5), (5, 12))]
    for (lo, hi), got in zip(((0, 5), (5, 12)), slices, strict=True):
        ids = {f"a{i:07d}" for i in range(lo, hi)}
        assert got == [e for e in events if e["account_id"] in ids]
        assert {e["account_id"] for e in got} == ids
    assert sum(map(len, slices)) == len(events)


@pytest.fixture(scope="module")
def whole() -> list:
    rows, stats = bench.collect_chunk(CFG, 0, CFG.accounts)
    assert stats["events"] > 5000 and stats["dead_letters"] == 0 and stats["failed"] == 0
    return rows


def test_chunks_replayed_by_two_processes_give_the_examples_of_one_replay(whole, tmp_path):
    rows, stats, paths = bench.collect(CFG, tmp_path, chunk_accounts=15, jobs=2)
    assert [s["accounts"] for s in stats] == [15, 15] and all(p.exists() for p in paths)
    one = {r[2]: r[:4] for r in bench.settled(whole, CFG)}
    two = {r[2]: r[:4] for r in bench.settled(rows, CFG)}
    assert len(one) > 40 and any(r[1] for r in one.values()) and not all(r[1] for r in one.values())
    assert two == one  # features, label, snapshot time of every example
    # release times may differ (partition clocks), but never precede the horizon
    assert all(r[4] >= r[3] + bench.HORIZON_MS for r in rows)
    # a second run reads the cached chunks instead of replaying them
    marker = ({"x": 1.0}, True, "cached:0", 0, 0)
    paths[0].write_bytes(pickle.dumps(([marker], stats[0])))
    again, _, _ = bench.collect(CFG, tmp_path, chunk_accounts=15, jobs=2)
    assert again[0] == marker and again[1:] == rows[stats[0]["examples"] :]


def test_settled_keeps_the_examples_whose_horizon_ended_two_days_before_the_end():
    end = CFG.start_ms + CFG.days * DAY_MS
    last = end - bench.HORIZON_MS - bench.SETTLE_MS
    rows = [({}, False, f"a:{ts}", ts, ts + bench.HORIZON_MS) for ts in (last - 1, last, last + 1)]
    assert [r[3] for r in bench.settled(rows, CFG)] == [last - 1, last]


def test_the_learner_gets_examples_in_release_order_in_hourly_bursts():
    t0 = 1000 * HOUR_MS
    rows = [
        ({"x": 1.0}, True, "b:1", 5, t0 + 10),
        ({"x": 2.0}, False, "a:1", 6, t0 + 10),  # same release time: by example id
        ({"x": 3.0}, False, "c:1", 1, t0 + 3 * HOUR_MS),
        ({"x": 4.0}, True, "d:1", 2, t0),
    ]
    bursts = bench.release_bursts(rows, lambda r: r[4])
    assert [[r[2] for r in b] for b in bursts] == [["d:1", "a:1", "b:1"], ["c:1"]]
    at_horizon = bench.release_bursts(rows, lambda r: r[3] + bench.HORIZON_MS)
    assert [[(r[2], r[4]) for r in b] for b in at_horizon] == [
        [("c:1", 1 + bench.HORIZON_MS), ("d:1", 2 + bench.HORIZON_MS),
         ("b:1", 5 + bench.HORIZON_MS), ("a:1", 6 + bench.HORIZON_MS)]
    ]  # fmt: skip


def test_a_busy_worker_releases_every_label_at_its_horizon():
    snap = 10 * DAY_MS + 5 * HOUR_MS
    own_event = ({}, False, "a:1", snap, snap + bench.HORIZON_MS + 2 * HOUR_MS)
    late_flush = ({}, True, "b:1", snap, snap + bench.HORIZON_MS + 26 * HOUR_MS)  # small replay
    assert bench.busy_release(own_event) == bench.busy_release(late_flush)
    assert bench.busy_release(late_flush) == snap + bench.HORIZON_MS
