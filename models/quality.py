"""Quality figures of scored, labelled examples and of alerts, pure (``churnwatch report``).

Every function takes plain lists and returns plain data, so the report, the
tests and a notebook compute the same numbers:

- :func:`roc_points` / :func:`auc`, :func:`pr_points`: ranking quality;
- :func:`reliability`: mean predicted probability against the observed rate per bin;
- :func:`by_threshold`: how many examples a threshold flags, with precision and recall;
- :func:`lead_times_days`: how long before a cancellation its churn alert came;
- :class:`Window`: the learner's last prequential scores, for the worker's ``/quality``.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Scored:
    """One labelled example with the score it got before the model learned it."""

    kind: str  # churn | sharing
    score: float
    label: bool
    ts: int  # snapshot event time (ms)


WINDOW = 20_000  # scores kept per model kind: ~2 MB of Scored, a few seconds to draw


class Window:
    """The last ``size`` scored examples of each model kind, oldest first (in memory only).

    >>> w = Window(size=2, started_ms=5)
    >>> for p in (0.1, 0.2, 0.3):
    ...     w.add(Scored("churn", p, True, 0))
    >>> w.add(Scored("sharing", 0.9, False, 0))
    >>> [s.score for s in w.scored()], w.started_ms
    ([0.2, 0.3, 0.9], 5)
    """

    def __init__(self, size: int = WINDOW, started_ms: int | None = None) -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        self.size = size
        self.started_ms = started_ms  # wall clock when the window began (the learner started)
        self._by_kind: dict[str, deque[Scored]] = {}

    def add(self, s: Scored) -> None:
        self._by_kind.setdefault(s.kind, deque(maxlen=self.size)).append(s)

    def scored(self) -> list[Scored]:
        """A copy of every score kept (a reader may draw it while the learner adds more)."""
        return [s for kept in self._by_kind.values() for s in kept]


def roc_points(scored: Sequence[Scored]) -> list[tuple[float, float]]:
    """(false-positive rate, true-positive rate) for every distinct threshold, from (0, 0).

    >>> roc_points([Scored("c", 0.9, True, 0), Scored("c", 0.1, False, 0)])
    [(0.0, 0.0), (0.0, 1.0), (1.0, 1.0)]
    """
    pos = sum(s.label for s in scored)
    neg = len(scored) - pos
    if not pos or not neg:
        return []
    points, tp, fp = [(0.0, 0.0)], 0, 0
    ordered = sorted(scored, key=lambda s: -s.score)
    for i, s in enumerate(ordered):
        tp, fp = tp + s.label, fp + (not s.label)
        if i + 1 == len(ordered) or ordered[i + 1].score != s.score:  # ties move together
            points.append((fp / neg, tp / pos))
    return points


def auc(points: Sequence[tuple[float, float]]) -> float:
    """Area under a curve of (x, y) points by the trapezoid rule (NaN without points).

    >>> auc([(0.0, 0.0), (0.0, 1.0), (1.0, 1.0)]), auc([(0.0, 0.0), (1.0, 1.0)])
    (1.0, 0.5)
    """
    if len(points) < 2:
        return float("nan")
    steps = zip(points, points[1:], strict=False)
    return sum((x2 - x1) * (y1 + y2) / 2 for (x1, y1), (x2, y2) in steps)


def pr_points(scored: Sequence[Scored]) -> list[tuple[float, float]]:
    """(recall, precision) for every distinct threshold, highest threshold first.

    >>> pr_points([Scored("c", 0.9, True, 0), Scored("c", 0.5, False, 0),
    ...            Scored("c", 0.2, True, 0)])
    [(0.5, 1.0), (0.5, 0.5), (1.0, 0.6666666666666666)]
    """
    pos = sum(s.label for s in scored)
    if not pos:
        return []
    points, tp = [], 0
    ordered = sorted(scored, key=lambda s: -s.score)
    for i, s in enumerate(ordered):
        tp += s.label
        if i + 1 == len(ordered) or ordered[i + 1].score != s.score:
            points.append((tp / pos, tp / (i + 1)))
    return points


def reliability(scored: Sequence[Scored], bins: int = 10) -> list[tuple[float, float, int]]:
    """Per non-empty equal-width bin: (mean predicted, observed positive rate, count).

    >>> reliability([Scored("c", 0.15, True, 0), Scored("c", 0.05, False, 0)], bins=5)
    [(0.1, 0.5, 2)]
    """
    sums = [[0.0, 0, 0] for _ in range(bins)]
    for s in scored:
        b = sums[min(int(s.score * bins), bins - 1)]
        b[0] += s.score
        b[1] += s.label
        b[2] += 1
    return [(p / n, y / n, int(n)) for p, y, n in sums if n]


def calibration_error(table: Iterable[tuple[float, float, int]]) -> float:
    """Expected calibration error of a :func:`reliability` table (count-weighted).

    >>> calibration_error([(0.1, 0.5, 2), (0.9, 0.9, 2)])
    0.2
    """
    rows = list(table)
    n = sum(c for _, _, c in rows)
    return sum(abs(p - y) * c for p, y, c in rows) / n if n else float("nan")


@dataclass(frozen=True, slots=True)
class ThresholdRow:
    threshold: float
    flagged: int  # examples scored at or above the threshold
    precision: float  # NaN when nothing is flagged
    recall: float


def by_threshold(scored: Sequence[Scored], thresholds: Iterable[float]) -> list[ThresholdRow]:
    """Examples flagged, precision and recall at each threshold (score >= threshold).

    >>> rows = by_threshold([Scored("c", 0.9, True, 0), Scored("c", 0.5, False, 0),
    ...                      Scored("c", 0.2, True, 0)], [0.4, 0.95])
    >>> [(r.threshold, r.flagged, r.precision, r.recall) for r in rows]
    [(0.4, 2, 0.5, 0.5), (0.95, 0, nan, 0.0)]
    """
    ordered = sorted(s.score for s in scored)
    pos_scores = sorted(s.score for s in scored if s.label)
    rows = []
    for t in thresholds:
        flagged = len(ordered) - bisect_left(ordered, t)
        tp = len(pos_scores) - bisect_left(pos_scores, t)
        precision = tp / flagged if flagged else float("nan")
        recall = tp / len(pos_scores) if pos_scores else float("nan")
        rows.append(ThresholdRow(t, flagged, precision, recall))
    return rows


def lead_times_days(
    alerts: Iterable[tuple[str, int]], cancellations: dict[str, list[int]], horizon_ms: int
) -> tuple[list[float], int]:
    """Days from each churn alert ``(account_id, ts)`` to the account's next cancellation
    within ``horizon_ms``, and how many alerts had none (false alarms, or not yet known).

    >>> lead_times_days([("a", 0), ("b", 0)], {"a": [3 * DAY_MS]}, 30 * DAY_MS)
    ([3.0], 1)
    """
    leads, missed = [], 0
    for account_id, ts in alerts:
        times = cancellations.get(account_id, [])
        i = bisect_right(times, ts)
        if i < len(times) and times[i] - ts <= horizon_ms:
            leads.append((times[i] - ts) / DAY_MS)
        else:
            missed += 1
    return leads, missed
