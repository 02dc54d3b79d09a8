"""benchmarks/bench_churn_matrix.py: cells drawn within their ranges, alerts from scores and
from the engine."""

from __future__ import annotations

from tests.unit.bench_loader import load_benchmark

matrix = load_benchmark("bench_churn_matrix")

DAY = 86_400_000


def test_cells_draw_every_knob_within_its_range_and_held_out_cells_differ() -> None:
    for seeds, ranges in ((matrix.TUNING_SEEDS, matrix.TUNING_RANGES),
                          (matrix.HELD_OUT_SEEDS, matrix.HELD_OUT_RANGES)):  # fmt: skip
        for seed in seeds:
            cfg = matrix.cell_config(seed, ranges, 50, 30)
            for name, (lo, hi) in ranges.items():
                assert lo <= getattr(cfg, name) <= hi, (seed, name)
    assert not set(matrix.TUNING_SEEDS) & set(matrix.HELD_OUT_SEEDS)
    assert matrix.cell_config(1, matrix.TUNING_RANGES, 50, 30) == matrix.cell_config(
        1, matrix.TUNING_RANGES, 50, 30
    )


def test_alerts_follow_the_engine_hysteresis_and_action_rule() -> None:
    rows = [
        ({"payment_failed_28d": 0.0}, False, f"a:{d * DAY}", d * DAY, 0) for d in (0, 7, 14, 21)
    ] + [({"payment_failed_28d": 1.0, "payment_unresolved": 1.0}, True, "b:0", 0, 0)]
    scores = {"a:0": 0.1, f"a:{7 * DAY}": 0.5, f"a:{14 * DAY}": 0.45, f"a:{21 * DAY}": 0.9,
              "b:0": 0.6}  # fmt: skip
    alerts = matrix.alerts_of(rows, scores, matrix.AlertConfig(0.4, 0.3))
    assert [(a["account_id"], a["ts"], a["action"]) for a in alerts] == [
        ("b", 0, "payment_reminder"),
        ("a", 7 * DAY, "retention_offer"),  # 0.45 and 0.9 stay above the reset: one episode
    ]


def test_engine_alerts_are_the_engines_own_a_win_back_at_each_cancellation() -> None:
    from models.contract import parse_ts
    from models.simulator import SimConfig

    cfg = SimConfig(accounts=20, days=40, seed=3, churn_scale=3.0)
    alerts, truth = matrix.engine_alerts(cfg, matrix.AlertConfig(0.4, 0.3))
    assert sorted(t["account_id"] for t in truth) == [f"a{i:07d}" for i in range(20)]
    cancels = sorted((t["account_id"], c["ts"]) for t in truth for c in t["cancels"])
    win_backs = sorted(
        (a["account_id"], parse_ts(a["ts"])) for a in alerts if a["action"] == "win_back"
    )
    assert cancels and win_backs == cancels  # the engine re-arms at a cancellation
