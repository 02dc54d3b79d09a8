"""benchmarks/bench_sharing_matrix.py: cells are drawn deterministically, within their ranges."""

from __future__ import annotations

import pytest

from models.simulator import SimConfig, simulate
from tests.unit.bench_loader import load_benchmark

bench = load_benchmark("bench_sharing_matrix")


def test_cells_are_deterministic_per_seed_and_differ_between_seeds():
    assert bench.draw_cell(3, held_out=False) == bench.draw_cell(3, held_out=False)
    assert bench.draw_cell(1003, held_out=True) == bench.draw_cell(1003, held_out=True)
    assert bench.draw_params(3, False) != bench.draw_params(4, False)


def test_tuning_cells_stay_in_the_middle_and_held_out_cells_in_the_full_range():
    wider = False
    for seed in range(1, 40):
        tune, held = bench.draw_params(seed, False), bench.draw_params(1000 + seed, True)
        for name, (lo, hi) in bench.RANGES.items():
            pad = 0.2 * (hi - lo)
            slack = 0.5 if name in bench._INTS else 1e-3  # ints are rounded
            assert lo + pad - slack <= tune[name] <= hi - pad + slack, (name, tune[name])
            assert lo - slack <= held[name] <= hi + slack, (name, held[name])
            wider |= not lo + pad - slack <= held[name] <= hi - pad + slack
    assert wider  # held-out cells do reach beyond the tuning ranges


def test_seeds_of_the_two_groups_do_not_mix_and_cells_simulate():
    with pytest.raises(ValueError, match="not a held-out seed"):
        bench.draw_cell(5, held_out=True)
    with pytest.raises(ValueError, match="not a tuning seed"):
        bench.draw_cell(1005, held_out=False)
    cfg = bench.draw_cell(1001, held_out=True, accounts=6, days=3)
    assert isinstance(cfg, SimConfig) and cfg.mix == bench.MIX
    lo, hi = cfg.trip_days
    assert 1 <= lo < hi and cfg.subtle_days_per_week in range(1, 8)
    assert sum(1 for _ in simulate(cfg)) > 0


def test_worst_cell_takes_the_worst_of_each_figure():
    a = {
        "precision": 0.9,
        "recall": 0.8,
        "subtle_recall": 0.5,
        "auc": 0.9,
        "auc_ever_shared": 0.7,
        "median_delay_days": 1.0,
        "ece": 0.02,
        "ece_ever_shared": 0.1,
        "fp_rate": {"traveller": 0.05},
    }
    b = {
        "precision": 0.95,
        "recall": 0.7,
        "subtle_recall": 0.6,
        "auc": 0.8,
        "auc_ever_shared": 0.75,
        "median_delay_days": 2.0,
        "ece": 0.01,
        "ece_ever_shared": 0.05,
        "fp_rate": {"traveller": 0.01, "vpn_user": 0.1},
    }
    w = bench.worst([a, b])
    assert (w["precision"], w["recall"], w["subtle_recall"], w["auc"]) == (0.9, 0.7, 0.5, 0.8)
    assert (w["median_delay_days"], w["ece"]) == (2.0, 0.02)
    assert (w["auc_ever_shared"], w["ece_ever_shared"]) == (0.7, 0.1)
    assert w["fp_rate"]["traveller"] == 0.05 and w["fp_rate"]["vpn_user"] == 0.1


def test_subtle_recall_is_also_given_by_the_days_the_borrower_watched():
    day = 86_400_000
    truths = [
        {"account_id": a, "archetype": "subtle_sharer", "shared": True, "share_start_ts": 0,
         "sharing_at_end": True, "borrowed_days": n}
        for a, n in (("few", 2), ("some", 4), ("many", 9), ("more", 12))
    ] + [{"account_id": "h", "archetype": "household", "shared": False}]  # fmt: skip
    alerts = [{"kind": "sharing", "account_id": a, "ts": 5 * day} for a in ("few", "many")]
    final = {t["account_id"]: 0.5 for t in truths}
    q = bench.cell_quality(alerts, final, truths, 30 * day)
    assert q["subtle_recall"] == 0.5
    assert q["subtle_by_borrowed_days"] == {
        "1-2 d": {"sharers": 1, "recall": 1.0},
        "3-5 d": {"sharers": 1, "recall": 0.0},
        "6+ d": {"sharers": 2, "recall": 0.5},
    }
    assert bench._pool_strata([q, q]) == {"1-2 d": (1.0, 2), "3-5 d": (0.0, 2), "6+ d": (0.5, 4)}


def test_fit_calibration_prints_the_map_and_each_cells_error_under_the_others(capsys):
    import random

    rng = random.Random(2)
    cells = [[(s, rng.random() < s) for s in (rng.random() ** 2 for _ in range(400))]
             for _ in range(3)]  # fmt: skip
    bench._print_fit(cells)
    out = capsys.readouterr().out
    assert "calibration fitted on 3 cells: CALIBRATION = ((0.0, 0.002)" in out
    assert "(0.5, " in out and "(0.7, " in out  # the blend's alert levels are knots
    errors = out.split("under the map fitted on the other cells: ")[1].split(", ")
    assert len(errors) == 3 and all(" -> " in e for e in errors)
    bench._print_fit(cells[:1])  # one cell: the map, and no cell to judge it on
    assert "other cells" not in capsys.readouterr().out
