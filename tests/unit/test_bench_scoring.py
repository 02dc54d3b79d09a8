"""benchmarks/bench_scoring.py: its table, and a small run that compares both paths."""

from __future__ import annotations

import doctest

import pytest

from tests.unit.bench_loader import load_benchmark

bench = load_benchmark("bench_scoring")


def test_the_table_doctest():
    assert doctest.testmod(bench).failed == 0


def test_a_small_run_scores_both_models_both_ways_and_they_agree(
    capsys: pytest.CaptureFixture[str],
):
    assert bench.main(["--accounts", "40", "--days", "45", "--runs", "1"]) == 0
    out = capsys.readouterr().out
    for kind in bench.KINDS:
        assert f"  {kind:8s}river / one-pass" in out
    # the largest difference is printed and far below the tolerance (not a timing)
    diffs = [float(line.rsplit(" ", 1)[1]) for line in out.splitlines() if "largest" in line]
    assert len(diffs) == 2 and max(diffs) < 1e-12
