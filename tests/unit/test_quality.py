"""models.quality against scikit-learn's reference implementations."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from models.quality import Scored, auc, by_threshold, pr_points, reliability, roc_points

scores = st.lists(
    st.tuples(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.7, 0.9, 1.0]), st.booleans()),
    min_size=2, max_size=60,
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(scores)
def test_roc_auc_matches_sklearn(pairs: list[tuple[float, bool]]) -> None:
    scored = [Scored("churn", p, y, 0) for p, y in pairs]
    labels = [y for _, y in pairs]
    if all(labels) or not any(labels):
        assert roc_points(scored) == [] and math.isnan(auc(roc_points(scored)))
        return
    expected = roc_auc_score(labels, [p for p, _ in pairs])
    assert math.isclose(auc(roc_points(scored)), expected, abs_tol=1e-9)


@settings(max_examples=200, deadline=None)
@given(scores)
def test_precision_recall_and_thresholds_agree(pairs: list[tuple[float, bool]]) -> None:
    scored = [Scored("churn", p, y, 0) for p, y in pairs]
    labels = [y for _, y in pairs]
    if not any(labels):
        return
    points = pr_points(scored)
    # average precision = sum over thresholds of (recall step) x precision
    ap = sum((r - r0) * p for (r0, _), (r, p) in zip([(0.0, 1.0), *points], points, strict=False))
    assert math.isclose(ap, average_precision_score(labels, [p for p, _ in pairs]), abs_tol=1e-9)
    for row in by_threshold(scored, [0.1, 0.5, 0.9]):
        flagged = [y for p, y in pairs if p >= row.threshold]
        assert row.flagged == len(flagged)
        assert row.recall == sum(flagged) / sum(labels)
        if flagged:
            assert row.precision == sum(flagged) / len(flagged)
    assert sum(n for _, _, n in reliability(scored)) == len(pairs)
