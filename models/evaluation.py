"""Alert and score quality against ground truth (simulator ``truth.jsonl`` or your own).

Truth records need ``account_id`` and, for churn, ``cancels`` (a list of
``{"ts": epoch ms}``); for sharing, ``shared`` (bool), ``share_start_ts`` and
optionally ``archetype`` (to report false positives per look-alike kind) and
``sharing_at_end`` / ``share_end_ts`` (whether the sharing was still going on at
the end of the data, and if not when it stopped: see ``shared_at_end``).
Alerts and scores are the contract's ``risk-alerts`` / ``risk-scores`` messages.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from models.contract import parse_ts
from models.sharing import calibrate

DAY_MS = 86_400_000
LOOK_ALIKES = ("household", "big_family", "traveller", "commuter", "vpn_user")


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve (ties count half); NaN without both classes.

    >>> roc_auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True])
    0.75
    """
    pos = sum(labels)
    neg = len(labels) - pos
    if not pos or not neg:
        return float("nan")
    ranked = sorted(zip(scores, labels, strict=True), key=lambda p: p[0])
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        avg_rank = (i + j + 1) / 2  # ranks are 1-based
        rank_sum += avg_rank * sum(1 for k in range(i, j) if ranked[k][1])
        i = j
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def _by_account(alerts: Iterable[Mapping[str, Any]], kind: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in alerts:
        if a["kind"] == kind:
            out[a["account_id"]].append({**a, "ts_ms": parse_ts(a["ts"])})
    return out


def churn_alert_quality(
    alerts: Iterable[Mapping[str, Any]],
    truth: Iterable[Mapping[str, Any]],
    *,
    start_ms: int,
    end_ms: int,
    horizon_ms: int = 30 * DAY_MS,
) -> dict[str, float]:
    """Early-warning quality of churn alerts fired in ``[start_ms, end_ms]``.

    - precision: alerts (not ``win_back``) fired by ``end - horizon`` whose account
      cancelled within the horizon after the alert;
    - recall: cancellations in ``[start + horizon, end]`` preceded by such an alert
      within the horizon; lead time: from the first of those alerts to the cancellation.

    >>> t = [{"account_id": "a", "cancels": [{"ts": 40 * DAY_MS}]},
    ...      {"account_id": "b", "cancels": []}]
    >>> al = [{"kind": "churn", "account_id": "a", "ts": 30 * DAY_MS, "action": "retention_offer"},
    ...       {"kind": "churn", "account_id": "b", "ts": 31 * DAY_MS, "action": "retention_offer"}]
    >>> q = churn_alert_quality(al, t, start_ms=0, end_ms=90 * DAY_MS)
    >>> q["precision"], q["recall"], q["median_lead_days"]
    (0.5, 1.0, 10.0)
    """
    early = _by_account((a for a in alerts if a.get("action") != "win_back"), "churn")
    cancels = {t["account_id"]: sorted(int(c["ts"]) for c in t.get("cancels") or []) for t in truth}
    right = judged = 0
    for account, fired in early.items():
        for a in fired:
            if start_ms <= a["ts_ms"] <= end_ms - horizon_ms:
                judged += 1
                right += any(
                    a["ts_ms"] < c <= a["ts_ms"] + horizon_ms for c in cancels.get(account, [])
                )
    caught, leads, counted = 0, [], 0
    for account, times in cancels.items():
        for c in times:
            if not start_ms + horizon_ms <= c <= end_ms:
                continue
            counted += 1
            before = [
                a["ts_ms"] for a in early.get(account, []) if c - horizon_ms <= a["ts_ms"] < c
            ]
            if before:
                caught += 1
                leads.append((c - min(before)) / DAY_MS)
    return {
        "alerts_judged": judged,
        "precision": right / judged if judged else float("nan"),
        "cancellations": counted,
        "recall": caught / counted if counted else float("nan"),
        "median_lead_days": statistics.median(leads) if leads else float("nan"),
    }


def shared_at_end(truth: Mapping[str, Any]) -> bool | None:
    """What the *last* sharing score of an account should say: True if it was still
    shared at the end of the data, False if it never was, None if it was and that
    ended (every borrower blocked or paid for as an extra member, or the account
    cancelled): neither, so left out of the last-score figures. Truth without
    ``sharing_at_end`` counts ``shared`` as still shared.

    >>> shared_at_end({"shared": False}), shared_at_end({"shared": True})
    (False, True)
    >>> shared_at_end({"shared": True, "sharing_at_end": False, "share_end_ts": 5})
    """
    if not truth.get("shared"):
        return False
    return True if truth.get("sharing_at_end", True) else None


def eligible_sharer(truth: Mapping[str, Any], end_ms: int, min_shared_ms: int = 3 * DAY_MS) -> bool:
    """Whether a sharer counts for recall: shared for ``min_shared_ms`` before ``end_ms``,
    or before its sharing ended (``share_end_ts``: the borrower blocked or paid for).

    >>> eligible_sharer({"shared": True, "share_start_ts": 0}, 3 * DAY_MS)
    True
    >>> eligible_sharer({"shared": True, "share_start_ts": 0, "share_end_ts": DAY_MS}, 9 * DAY_MS)
    False
    """
    start, stop = truth.get("share_start_ts"), truth.get("share_end_ts")
    if not truth.get("shared") or start is None:
        return False
    last = end_ms if stop is None else min(end_ms, stop)  # shared until then
    return start <= last - min_shared_ms


def sharing_alert_quality(
    alerts: Iterable[Mapping[str, Any]],
    final_scores: Mapping[str, float],
    truth: Iterable[Mapping[str, Any]],
    *,
    end_ms: int,
    min_shared_ms: int = 3 * DAY_MS,
) -> dict[str, Any]:
    """Per-account quality of sharing alerts and of the final ``sharing_score``.

    A sharer counts for recall when it was shared for at least ``min_shared_ms``
    before ``end_ms`` or before its sharing ended (``share_end_ts``: the borrower
    blocked or paid for); it is detected by a sharing alert at or after its share
    start. An alert before the share start, or on an account never shared, is a
    false positive. ``auc`` ranks the final scores of accounts still shared at the
    end against those never shared (``shared_at_end``); ``auc_ever_shared`` counts
    every account ever shared as a positive, however its sharing ended.

    >>> t = [{"account_id": "s", "shared": True, "share_start_ts": 0, "archetype": "sharer"},
    ...      {"account_id": "t", "shared": False, "archetype": "traveller"}]
    >>> al = [{"kind": "sharing", "account_id": "s", "ts": DAY_MS}]
    >>> q = sharing_alert_quality(al, {"s": 0.9, "t": 0.1}, t, end_ms=30 * DAY_MS)
    >>> q["precision"], q["recall"], q["auc"], q["median_delay_days"], q["fp_rate"]["traveller"]
    (1.0, 1.0, 1.0, 1.0, 0.0)
    >>> paid = {"account_id": "p", "shared": True, "share_start_ts": 0, "sharing_at_end": False,
    ...         "share_end_ts": DAY_MS}
    >>> final = {"s": 0.9, "t": 0.1, "p": 0.0}
    >>> q = sharing_alert_quality([], final, t + [paid], end_ms=30 * DAY_MS)
    >>> q["sharers"], q["auc"], q["auc_ever_shared"]
    (1, 1.0, 0.5)
    """
    fired = _by_account(alerts, "sharing")
    truth = list(truth)
    tp = fp = 0
    per_kind: Counter[str] = Counter()
    fp_kind: Counter[str] = Counter()
    delays: list[float] = []
    eligible = detected = 0
    for t in truth:
        account, kind = t["account_id"], t.get("archetype", "unknown")
        per_kind[kind] += 1
        start = t.get("share_start_ts")
        times = [a["ts_ms"] for a in fired.get(account, [])]
        shared = bool(t.get("shared")) and start is not None
        hits = [x for x in times if shared and x >= start]
        if times:
            if hits:
                tp += 1
            else:
                fp += 1
                fp_kind[kind] += 1
        if shared and eligible_sharer(t, end_ms, min_shared_ms):
            eligible += 1
            if hits:
                detected += 1
                delays.append((min(hits) - start) / DAY_MS)
    known = [t for t in truth if t["account_id"] in final_scores]
    now = [(final_scores[t["account_id"]], shared_at_end(t)) for t in known]
    ever = [(final_scores[t["account_id"]], bool(t.get("shared"))) for t in known]
    labelled = [(x, y) for x, y in now if y is not None]
    return {
        "alerted": tp + fp,
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "sharers": eligible,
        "recall": detected / eligible if eligible else float("nan"),
        "median_delay_days": statistics.median(delays) if delays else float("nan"),
        "auc": roc_auc([s for s, _ in labelled], [bool(y) for _, y in labelled]),
        "auc_ever_shared": roc_auc([s for s, _ in ever], [y for _, y in ever]),
        "fp_rate": {k: fp_kind[k] / per_kind[k] for k in sorted(per_kind)},
    }


def reliability(
    scores: Sequence[float], labels: Sequence[bool], bins: int = 10
) -> list[dict[str, float]]:
    """Reliability diagram as data: per equal-width score bin, the count, the mean
    predicted probability and the observed positive rate (empty bins are left out).

    >>> reliability([0.05, 0.15, 0.95, 0.91], [False, False, True, False], bins=2)
    [{'lo': 0.0, 'hi': 0.5, 'n': 2, 'predicted': 0.1, 'observed': 0.0}, \
{'lo': 0.5, 'hi': 1.0, 'n': 2, 'predicted': 0.93, 'observed': 0.5}]
    """
    sums: list[list[float]] = [[0, 0.0, 0.0] for _ in range(bins)]
    for s, y in zip(scores, labels, strict=True):
        b = sums[min(bins - 1, max(0, int(s * bins)))]
        b[0] += 1
        b[1] += s
        b[2] += bool(y)
    return [
        {"lo": i / bins, "hi": (i + 1) / bins, "n": int(n),
         "predicted": round(p / n, 4), "observed": round(o / n, 4)}
        for i, (n, p, o) in enumerate(sums)
        if n
    ]  # fmt: skip


def expected_calibration_error(diagram: Sequence[Mapping[str, float]]) -> float:
    """ECE of a :func:`reliability` diagram: the count-weighted mean |predicted - observed|.

    >>> expected_calibration_error(reliability([0.05, 0.15, 0.95, 0.91],
    ...                                        [False, False, True, False], bins=2))
    0.265
    """
    total = sum(b["n"] for b in diagram)
    if not total:
        return float("nan")
    return sum(b["n"] * abs(b["predicted"] - b["observed"]) for b in diagram) / total


def calibration_errors(
    scores: Sequence[float], labels: Sequence[bool], table: Sequence[tuple[float, float]]
) -> tuple[float, float]:
    """Expected calibration error of ``scores`` against ``labels`` as they are and through
    the map ``table`` (``models.sharing.calibrate``).

    >>> errors = calibration_errors([0.2, 0.2, 0.8, 0.8], [False, True, True, True],
    ...                             ((0.0, 0.0), (0.2, 0.5), (0.8, 0.99), (1.0, 1.0)))
    >>> [round(e, 3) for e in errors]
    [0.25, 0.005]
    """
    before = expected_calibration_error(reliability(scores, labels))
    after = expected_calibration_error(reliability([calibrate(x, table) for x in scores], labels))
    return before, after


def fit_calibration(
    scores: Sequence[float],
    labels: Sequence[bool],
    *,
    anchors: Sequence[float] = (),
    floor: float = 0.002,
    ceiling: float = 0.998,
    step: float = 0.001,
) -> tuple[tuple[float, float], ...]:
    """A monotone map from a score to the share of positives among the scores like it,
    as knots ``(score, probability)`` for ``models.sharing.calibrate``.

    Isotonic regression (pool adjacent violators; equal scores pooled first): each
    block's mean score and share of positives is a knot, the knots from ``(0,
    floor)`` to ``(1, ceiling)`` or above, each probability at least ``step`` above the
    one before, so that the map is strictly increasing (it keeps the order of the
    scores: the AUC and, with the alert levels mapped through it, every alert) and never
    says 0 or 1. Each of ``anchors`` gets a knot of its own (the map's value there,
    rounded), so that the calibrated value of an alert level is exact in the table.
    Probabilities are rounded to 3 decimals and scores to 4.

    >>> fit_calibration([0.1, 0.2, 0.3, 0.4, 0.9], [False, True, False, True, True])
    ((0.0, 0.002), (0.1, 0.003), (0.25, 0.5), (0.65, 0.998), (1.0, 0.999))
    >>> fit_calibration([0.1, 0.3], [False, True], anchors=[0.2])
    ((0.0, 0.002), (0.1, 0.003), (0.2, 0.5), (0.3, 0.998), (1.0, 0.999))
    """
    blocks: list[list[float]] = []  # [positives, count, sum of scores]
    pairs = sorted(zip(scores, map(bool, labels), strict=True))
    i = 0
    while i < len(pairs):
        j, positives = i, 0
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            positives += pairs[j][1]
            j += 1
        blocks.append([positives, j - i, pairs[i][0] * (j - i)])
        i = j
        while len(blocks) > 1 and blocks[-2][0] * blocks[-1][1] >= blocks[-1][0] * blocks[-2][1]:
            y, n, sx = blocks.pop()
            blocks[-1][0] += y
            blocks[-1][1] += n
            blocks[-1][2] += sx
    fitted = [(sx / n, y / n) for y, n, sx in blocks]  # the blocks' means: x increasing

    def at(x: float) -> float:  # linear between the blocks' means, flat beyond them
        return calibrate(x, fitted) if fitted else 0.5

    xs = sorted({round(x, 4) for x, _ in fitted if 0.0 < x < 1.0} | {round(a, 4) for a in anchors})
    knots = [(0.0, floor)]
    for x in xs:
        y = round(min(ceiling, max(floor, at(x), knots[-1][1] + step)), 3)
        knots.append((x, y))
    knots.append((1.0, round(max(ceiling, knots[-1][1] + step), 3)))
    return tuple(knots)
