"""benchmarks/bench_scale.py: its in-process rows and its table still work (not a timing)."""

from __future__ import annotations

import doctest
import gc

from models.simulator import SimConfig, simulate
from tests.unit.bench_loader import load_benchmark

bench = load_benchmark("bench_scale")


def test_the_cold_row_runs_under_the_workers_collector_and_gives_it_back():
    before = gc.get_threshold()
    with bench.worker_gc():
        assert gc.get_threshold()[0] == bench.Settings().gc_young_threshold != before[0]
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_stages_state_and_table_on_a_tiny_history():
    inp = bench.Input(list(simulate(SimConfig(accounts=4, days=3, seed=1))))
    per_event, shards = bench.stages(inp, buffer=50)
    assert set(per_event) == {*bench.STAGES, "total (1/msg)"}
    assert all(v >= 0 for v in per_event.values()) and per_event["total (1/msg)"] > 0
    # the engine got the events as the ingest forwards them: device ids are tokens
    devices = [d for shard in shards for a in shard.accounts.values() for d in a.devices]
    assert devices and all(len(d) == 16 and int(d, 16) >= 0 for d in devices)
    cold = bench.cold(inp, shards)
    assert set(cold) == {*bench.COLD_STAGES, "total", "events"} and cold["decode"] > 0
    playing = {e["account_id"] for e in inp.events if e.get("type") == "playback_started"}
    assert cold["events"] == len(playing) > 0  # one event for each account that played
    assert cold["total"] == sum(cold[k] for k in bench.COLD_STAGES)
    state = bench.state_bytes(shards)
    assert state["accounts"] == 4 and state["serialized"]["min"] > 0
    assert state["resident"]["median"] > state["serialized"]["median"] / 10
    run = {"events_s": 10.0, "messages_s": 1.0, "cpu_us_event": 90.0, "cores_busy": 0.9}
    fig = {
        "input": {"events": len(inp.events), "accounts": 4, "days": 3, "bytes_mean": 200.0},
        "throughput": {row: {"1/msg": [run]} for row in ("ceiling", "floor", "churnwatch")},
        "stages": [per_event],
        "cold": [cold],
        "state": state,
        "two-workers": [
            {
                "1_worker_events_s": 5.0,
                "2_worker_events_s": 9.0,
                "ratio": 1.8,
                "1_worker_cpu": run,
                "2_worker_cpu": run,
            }
        ],  # fmt: skip
        "latency": {
            "rate": 5.0,
            "events": 9,
            "scores": 3,
            "matched": 3,
            "p50_ms": 4.0,
            "p99_ms": 8.0,
            "max_ms": 9.0,
        },  # fmt: skip
        "latency-live": {
            "rate": 5.0,
            "events": 9,
            "scores": 3,
            "matched": 3,
            "p50_ms": 4.0,
            "p99_ms": 7.0,
            "max_ms": 9.0,
            "cpu_us_event": 310.0,
            "cores_busy": 0.45,
        },  # fmt: skip
        "skipped": {"peer": "quixstreams is not installed"},
        "failed": ["floor 1/msg: floor timed out (180s)"],
    }
    text = bench.table(fig, runs=1)
    for needle in ("ceiling", "floor", "churnwatch", "100.00%", "ratio two/one", "cores busy 0.90", "engine",
                   "serialized", "p99 8 ms", "peer: skipped", "FAILED floor", "privacy",
                   "p99 7 ms", "310 CPU µs/event, cores busy 0.45", "cold account"):  # fmt: skip
        assert needle in text, needle


def test_doctests_of_the_pure_helpers():
    assert doctest.testmod(bench).failed == 0
