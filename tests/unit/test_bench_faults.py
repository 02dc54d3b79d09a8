"""The pure parts of ``benchmarks/faults.py``: what it reads from the outputs, its options."""

from __future__ import annotations

import doctest

from tests.unit.bench_loader import load_benchmark

faults = load_benchmark("faults")


def test_doctests_of_the_pure_helpers():
    assert doctest.testmod(faults).failed == 0


def test_quick_sets_the_ci_scale_unless_an_option_says_otherwise():
    args = faults.parse(["--quick", "--accounts", "7"])
    assert args.accounts == 7 and args.days == faults.QUICK["days"]
    assert args.kills == faults.QUICK["kills"]
    full = faults.parse([])
    assert full.accounts * full.days >= 180_000  # 1000 x 180: 1,031,263 events (seed 13)


def test_alert_gaps_count_missing_numbers_per_account_and_kind():
    alerts = [
        {"account_id": "a", "alert_id": f"a:{kind}:{n}", "kind": kind, "ts": n}
        for kind, n in (("churn", 1), ("churn", 2), ("churn", 4), ("sharing", 2))
    ]
    f = faults.alert_figures(alerts)
    assert f["gaps"] == 1 + 1 and f["repeats"] == 0
    assert f["churn_ids"] == {"a:churn:1", "a:churn:2", "a:churn:4"}


def test_a_churn_id_with_two_event_times_is_a_double_and_a_sharing_one_is_redecided():
    alerts = [
        {"account_id": "a", "alert_id": "a:churn:1", "kind": "churn", "ts": 1},
        {"account_id": "a", "alert_id": "a:churn:1", "kind": "churn", "ts": 2},
        {"account_id": "a", "alert_id": "a:sharing:1", "kind": "sharing", "ts": 1},
        {"account_id": "a", "alert_id": "a:sharing:1", "kind": "sharing", "ts": 3},
    ]
    f = faults.alert_figures(alerts)
    assert (f["doubled_churn"], f["redecided_sharing"], f["repeats"]) == (1, 1, 2)


def test_the_table_marks_failures():
    text = faults.table([("a", "1", "0", False), ("bb", "0", "0", True), ("c", "x", "-", None)])
    lines = text.splitlines()
    assert lines[2].endswith("FAIL") and lines[3].endswith("ok") and lines[4].rstrip() == lines[4]
