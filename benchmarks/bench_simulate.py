"""Simulator generation speed, and (with --signal) how learnable its churn is.

Run: python benchmarks/bench_simulate.py [--accounts 1200] [--days 150] [--signal]

Prints events/s of ``simulate`` alone and with JSON encoding (what
``churnwatch simulate --out`` does per event), against a same-run baseline of
encoding already generated events, and the peak RSS. ``--signal`` takes weekly
snapshots of simple per-account features (sessions and watch time in 7/28
days, days since the last playback, payment failures, price changes, support
contacts, plan changes, failed verifications) and prints the ROC AUC of
churn-within-30-days on the later 40% of time (scikit-learn), overall and by
ground-truth churn driver: a check that the signals are noisy but learnable.
"""

from __future__ import annotations

import argparse
import resource
import time
from bisect import bisect_left
from collections import defaultdict
from typing import Any

import orjson

from models.contract import parse_ts
from models.simulator import SimConfig, simulate

DAY = 86_400_000


def speed(cfg: SimConfig) -> list[dict[str, Any]]:
    t0 = time.perf_counter()
    n = sum(1 for _ in simulate(cfg))
    gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    size = sum(len(orjson.dumps(e)) for e in simulate(cfg))
    enc = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # streaming passes only
    events = list(simulate(cfg)) if n <= 3_000_000 else []
    t0 = time.perf_counter()
    for e in events:
        orjson.dumps(e)
    base = time.perf_counter() - t0
    print(f"events: {n:,} ({cfg.accounts:,} accounts x {cfg.days} days), {size / n:.0f} B/event")
    print(f"simulate only:            {n / gen:>10,.0f} events/s")
    print(f"simulate + JSON encode:   {n / enc:>10,.0f} events/s")
    if events:
        print(f"baseline JSON encode only:{n / base:>10,.0f} events/s")
    print(f"peak RSS while streaming: {rss:,.0f} MiB")
    return events


def signal(cfg: SimConfig, events: list[dict[str, Any]]) -> None:
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    truth: list[dict[str, Any]] = []
    for _ in simulate(cfg, truth.append):
        pass
    times: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    watched: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for e in events:
        ts, kind = parse_ts(e["ts"]), e["type"]
        if kind == "household_verification" and e["outcome"] == "verified":
            continue
        times[e["account_id"]][kind].append(ts)
        if kind == "playback_stopped":
            watched[e["account_id"]].append((ts, e.get("watched_s", 0) / 3600))
    rows, labels, drivers, when = [], [], [], []
    end = cfg.start_ms + cfg.days * DAY
    for t in truth:
        ev = {k: sorted(v) for k, v in times[t["account_id"]].items()}
        w = sorted(watched[t["account_id"]])
        w_ts, w_cum = [x[0] for x in w], np.cumsum([0.0] + [x[1] for x in w])

        def count(kind: str, snap: int, days: int, ev: Any = ev) -> int:
            xs = ev.get(kind, [])
            return bisect_left(xs, snap) - bisect_left(xs, snap - days * DAY)

        def hours(snap: int, days: int, w_ts: Any = w_ts, w_cum: Any = w_cum) -> float:
            return float(
                w_cum[bisect_left(w_ts, snap)] - w_cum[bisect_left(w_ts, snap - days * DAY)]
            )

        subs = sorted([(x, 1) for x in ev.get("subscription_started", [])]
                      + [(x, 1) for x in ev.get("subscription_reactivated", [])]
                      + [(x, 0) for x in ev.get("subscription_cancelled", [])])  # fmt: skip
        plays = ev.get("playback_started", [])
        for snap in range(t["signup_ts"] + 7 * DAY, end - 30 * DAY, 7 * DAY):
            i = bisect_left(subs, (snap, 2))
            if i == 0 or subs[i - 1][1] == 0:
                continue  # not subscribed at the snapshot
            p7, p28 = count("playback_started", snap, 7), count("playback_started", snap, 28)
            j = bisect_left(plays, snap)
            idle = (snap - (plays[j - 1] if j else t["signup_ts"])) / DAY
            h7, h28 = hours(snap, 7), hours(snap, 28)
            rows.append([p7, p28 / 4, (p7 + 1) / (p28 / 4 + 1), idle, h7, h28 / 4,
                         (h7 + 0.2) / (h28 / 4 + 0.2), count("payment_failed", snap, 30),
                         count("price_changed", snap, 45), count("support_contacted", snap, 21),
                         count("plan_changed", snap, 60), count("household_verification", snap, 30),
                         (snap - t["signup_ts"]) / DAY])  # fmt: skip
            hit = [c for c in t["cancels"] if snap < c["ts"] <= snap + 30 * DAY]
            labels.append(int(bool(hit)))
            drivers.append(hit[0]["driver"] if hit else "")
            when.append(snap)
    x, y, d, ts = np.array(rows), np.array(labels), np.array(drivers), np.array(when)
    train, test = ts < np.quantile(ts, 0.6), ts >= np.quantile(ts, 0.6)
    print(f"snapshots: {len(y):,}, churn within 30 days: {y.mean():.1%}")
    for model in (LogisticRegression(max_iter=3000), HistGradientBoostingClassifier()):
        p = model.fit(x[train], y[train]).predict_proba(x)[:, 1]
        print(f"{type(model).__name__}: ROC AUC {roc_auc_score(y[test], p[test]):.3f}")
    for driver in sorted(set(d[test]) - {""}):
        sel = test & ((d == driver) | (y == 0))
        print(f"  {driver:<11} {int((d[sel] == driver).sum()):>5} positives, "
              f"AUC {roc_auc_score(y[sel], p[sel]):.3f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=1200)
    parser.add_argument("--days", type=int, default=150)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--signal", action="store_true", help="also print the churn ROC AUC")
    args = parser.parse_args()
    cfg = SimConfig(accounts=args.accounts, days=args.days, seed=args.seed)
    events = speed(cfg)
    if args.signal:
        signal(cfg, events or list(simulate(cfg)))


if __name__ == "__main__":
    main()
