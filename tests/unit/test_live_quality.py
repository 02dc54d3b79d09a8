"""The live ``/quality`` page's parts: the learner's score window, the page drawn from it,
and the answer without matplotlib (the endpoint itself: tests/integration/test_quality_page.py)."""

from __future__ import annotations

import sys

import pytest

from models.churn import make_churn_model
from models.learner import OnlineLearner
from models.quality import Scored, Window
from streams.report import as_scored, render_live
from streams.settings import Settings
from streams.web import no_matplotlib


def test_window_keeps_the_last_scores_of_each_kind_and_no_more():
    w = Window(size=3)
    for i in range(10):
        w.add(Scored("churn", i / 10, i % 2 == 0, i))
    w.add(Scored("sharing", 0.7, True, 99))
    kept = w.scored()
    assert [(s.kind, s.ts) for s in kept] == [("churn", 7), ("churn", 8), ("churn", 9),
                                              ("sharing", 99)]  # fmt: skip
    kept.clear()  # a copy: the reader cannot empty the learner's window
    assert len(w.scored()) == 4
    with pytest.raises(ValueError):
        Window(size=0)


def test_learn_many_reports_the_probability_each_example_got_before_learning():
    lrn = OnlineLearner(make_churn_model(), name="churn")
    x = {"tenure_days": 10.0, "sessions_7d": 0.0}
    for i in range(30):  # the model has learned x is a churner: it scores it high
        lrn.learn(x, True, example_id=f"warm:{i}")
    lrn.learn(x, True, example_id="dup")  # a known id: the batch's copy is a duplicate
    before = lrn.predict_proba(x)
    batch = [(x, False, "a:0"), (x, False, "dup"), (x, True, None)]
    seen: list[tuple[int, float]] = []
    assert lrn.learn_many(batch, scored=lambda i, p: seen.append((i, p))) == 2
    # the duplicate is left out; both scores are from before the batch was learned
    assert seen == [(0, before), (2, before)]
    assert before > 0.5 and lrn.predict_proba(x) != before  # and it did learn afterwards
    assert OnlineLearner(make_churn_model()).learn_many([(x, True, None)]) == 1  # optional


def test_as_scored_scores_a_cancelled_account_as_the_engine_does():
    ex = {"model": "churn", "features": {"cancelled": 0.0}, "label": False, "snapshot_ts": 5}
    assert as_scored(ex, 0.3) == Scored("churn", 0.3, False, 5)
    sharing = {**ex, "model": "sharing", "features": {"cancelled": 1.0}}
    assert as_scored(sharing, 0.3).score == 0.3


def test_live_page_has_the_model_plots_only_and_says_since_when():
    cfg = Settings.from_env({}).engine_config()
    scored = [Scored(k, (i % 10) / 10, i % 3 == 0, 1_767_225_600_000 + i)
              for k in ("churn", "sharing") for i in range(200)]  # fmt: skip
    page = render_live(scored, cfg, started_ms=1_767_225_600_000)
    plots = ["roc", "pr", "reliability", "threshold-churn", "threshold-sharing"]
    assert [p for p in plots if f'data-plot="{p}"' in page] == plots
    assert page.count("<svg") == len(plots) and "alerts-per-day" not in page
    assert "since it started\n(2026-01-01 00:00:00 UTC)" in page
    assert "<th>alerts</th>" not in page and "<td>200</td>" in page
    empty = render_live([], cfg, started_ms=None)  # a learner that learned nothing yet
    assert empty.count("<svg") == len(plots) and "no labelled churn examples" in empty


def test_without_matplotlib_quality_says_what_is_missing(monkeypatch):
    assert no_matplotlib() is None
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    assert "needs matplotlib" in no_matplotlib()


def test_the_report_scores_sharing_examples_as_the_engine_publishes_them():
    """The sharing curves and threshold plots are drawn from the published score (prior,
    model and calibration: what the alert levels apply to), not the learned model's own
    probability: the same replay with the calibration off gives every sharing example the
    blend the calibration maps."""
    from dataclasses import replace

    from models.sharing import calibrate
    from models.simulator import SimConfig, simulate
    from streams.report import collect

    cfg = Settings.from_env({}).engine_config()
    sim = SimConfig(accounts=120, days=45, seed=8)
    on = collect(iter(simulate(sim)), cfg)
    off = collect(iter(simulate(sim)), replace(cfg, sharing_calibration=()))
    pairs = [(a.score, b.score) for a, b in zip(on.scored, off.scored, strict=True)
             if a.kind == "sharing"]  # fmt: skip
    assert len(pairs) >= 10, "the crackdown should label some sharing examples"
    assert all(a == pytest.approx(calibrate(b)) for a, b in pairs)
    assert sum(abs(a - b) > 0.01 for a, b in pairs) >= len(pairs) / 4
