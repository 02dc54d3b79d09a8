"""Churn model choice by measurement, on simulator events replayed like production.

Pipeline: simulator -> JSON batches -> ``parse_message`` -> ``process_event``
(account state, weekly snapshots, delayed labels) with a daily sweep for silent
accounts -> labelled examples in maturation order. Each candidate learner sees
that stream prequentially (score, then learn). Printed per candidate:
prequential ROC AUC, log loss and expected calibration error on the whole
stream and on the later part (snapshots after the time split), and µs per
predict / learn. Same-run baselines: an offline scikit-learn
HistGradientBoosting fit on the earlier snapshots and tested on the later
ones, and a constant predictor (the training positive rate).

    /tmp/venv/bin/python benchmarks/bench_churn_model.py --accounts 2000 --days 180
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from typing import Any

import orjson
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import log_loss, roc_auc_score

from models.account import DAY_MS, AccountState, new_account
from models.churn import make_churn_model
from models.contract import parse_message
from models.features import churn_features
from models.labels import Example, observe, process_event
from models.learner import OnlineLearner
from models.simulator import SimConfig, simulate

CANDIDATES: dict[str, Callable[[], Any]] = {
    "river default (scaler+LR sgd0.01)": lambda: _river_default_logreg(),
    "logreg adam0.005": lambda: make_churn_model("logreg", optimizer="adam", lr=0.005),
    "logreg sgd0.02": lambda: make_churn_model("logreg", lr=0.02),
    "logreg sgd0.05 (default) *": lambda: make_churn_model("logreg"),
    "logreg sgd0.1": lambda: make_churn_model("logreg", lr=0.1),
    "arf n_models=10": lambda: make_churn_model("arf"),
}


def _river_default_logreg() -> Any:
    from river import compose, linear_model, preprocessing

    return compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression())


def replay(cfg: SimConfig, batch: int = 1000) -> tuple[list[Example], dict[str, float]]:
    """Run the production path over the simulator; return examples and cost figures."""
    states: dict[str, AccountState] = {}
    examples: list[Example] = []
    clock = 0
    swept_day = None
    events = 0
    t0 = time.perf_counter()
    buf: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal clock, swept_day, events
        parsed, dead = parse_message(orjson.dumps(buf), topic="bench", partition=0, offset=0)
        assert not dead, dead[:1]
        for e in parsed:
            clock = max(clock, e.ts)
            state = states.get(e.account_id)
            if state is None:
                state = states[e.account_id] = new_account(e.account_id)
            examples.extend(process_event(state, e, clock_ms=clock)[1])
            events += 1
            day = clock // DAY_MS
            if day != swept_day:  # daily sweep: label silent accounts
                swept_day = day
                watermark = clock - 3_600_000
                for s in states.values():
                    examples.extend(observe(s, watermark, watermark_ms=watermark))
        buf.clear()

    for raw in simulate(cfg):
        buf.append(raw)
        if len(buf) >= batch:
            flush()
    flush()
    elapsed = time.perf_counter() - t0
    # cost of computing features for scoring (the per-event scoring path)
    sample = list(states.values())[:500]
    t1 = time.perf_counter()
    for s in sample:
        churn_features(s, clock)
    feat_us = (time.perf_counter() - t1) / len(sample) * 1e6
    return examples, {
        "events": events,
        "replay_us_per_event": elapsed / events * 1e6,
        "features_us": feat_us,
    }


def evaluate(name: str, model: Any, examples: list[Example], split_ts: int) -> dict[str, Any]:
    learner = OnlineLearner(model, name="churn")
    late_y: list[bool] = []
    late_p: list[float] = []
    learn_s = 0.0
    for ex in examples:
        t = time.perf_counter()
        p = learner.learn(ex.features, ex.label, example_id=ex.example_id)
        learn_s += time.perf_counter() - t
        if p is not None and ex.snapshot_ts >= split_ts:
            late_y.append(ex.label)
            late_p.append(p)
    xs = [ex.features for ex in examples[:2000]]
    t = time.perf_counter()
    for x in xs:
        learner.predict_proba(x)
    predict_us = (time.perf_counter() - t) / len(xs) * 1e6
    m = learner.metrics()
    return {
        "name": name,
        "auc": m["roc_auc"],
        "logloss": m["log_loss"],
        "ece": m["ece"],
        "late_auc": roc_auc_score(late_y, late_p),
        "late_logloss": log_loss(late_y, late_p, labels=[False, True]),
        "late_ece": _ece(late_y, late_p),
        "predict_us": predict_us,
        "learn_us": learn_s / len(examples) * 1e6 - predict_us,
        "snapshot_kib": len(learner.snapshot()) / 1024,
        "calibration": learner.calibration(),
    }


def _ece(y: list[bool], p: list[float], bins: int = 10) -> float:
    n = [0] * bins
    sp = [0.0] * bins
    sy = [0] * bins
    for yi, pi in zip(y, p, strict=True):
        b = min(int(pi * bins), bins - 1)
        n[b] += 1
        sp[b] += pi
        sy[b] += yi
    return sum(abs(a - b) for a, b in zip(sp, sy, strict=True)) / max(len(y), 1)


def offline_baseline(examples: list[Example], split_ts: int) -> dict[str, float]:
    names = sorted({k for ex in examples for k in ex.features})
    train = [ex for ex in examples if ex.snapshot_ts < split_ts]
    test = [ex for ex in examples if ex.snapshot_ts >= split_ts]

    def matrix(rows: list[Example]) -> list[list[float]]:
        return [[ex.features.get(k, 0.0) for k in names] for ex in rows]

    hgb = HistGradientBoostingClassifier(random_state=0).fit(
        matrix(train), [ex.label for ex in train]
    )
    p = list(hgb.predict_proba(matrix(test))[:, 1])
    y = [ex.label for ex in test]
    rate = sum(ex.label for ex in train) / len(train)
    return {
        "auc": roc_auc_score(y, p),
        "logloss": log_loss(y, p, labels=[False, True]),
        "ece": _ece(y, p),
        "const_logloss": log_loss(y, [rate] * len(y), labels=[False, True]),
        "train": len(train),
        "test": len(test),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=2000)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", type=float, default=0.6, help="time split, share of the run")
    ap.add_argument("--skip-arf", action="store_true")
    args = ap.parse_args()
    cfg = SimConfig(accounts=args.accounts, days=args.days, seed=args.seed)
    examples, cost = replay(cfg)
    split_ts = cfg.start_ms + int(args.split * args.days) * DAY_MS
    pos = sum(ex.label for ex in examples)
    print(
        f"simulator: {args.accounts} accounts x {args.days} days, seed {args.seed}: "
        f"{cost['events']:.0f} events, {len(examples)} examples ({pos} positive, "
        f"{pos / len(examples):.1%})"
    )
    print(
        f"replay parse+state+snapshots+labels: {cost['replay_us_per_event']:.1f} µs/event; "
        f"churn_features: {cost['features_us']:.1f} µs"
    )
    base = offline_baseline(examples, split_ts)
    print(
        f"offline HistGradientBoosting (train {base['train']} < split <= test {base['test']}):"
        f" AUC {base['auc']:.3f} logloss {base['logloss']:.4f} ECE {base['ece']:.4f};"
        f" constant-rate logloss {base['const_logloss']:.4f}"
    )
    header = (
        f"{'candidate':34} {'AUC':>6} {'logloss':>8} {'ECE':>6} | {'late AUC':>8} "
        f"{'logloss':>8} {'ECE':>6} | {'pred µs':>8} {'learn µs':>8} {'snap KiB':>9}"
    )
    print(header)
    results = []
    for name, factory in CANDIDATES.items():
        if args.skip_arf and name.startswith("arf"):
            continue
        r = evaluate(name, factory(), examples, split_ts)
        results.append(r)
        print(
            f"{name:34} {r['auc']:6.3f} {r['logloss']:8.4f} {r['ece']:6.4f} | "
            f"{r['late_auc']:8.3f} {r['late_logloss']:8.4f} {r['late_ece']:6.4f} | "
            f"{r['predict_us']:8.1f} {r['learn_us']:8.1f} {r['snapshot_kib']:9.1f}"
        )
    default = next(r for r in results if r["name"].endswith("*"))
    print("calibration of the default (mean predicted, observed rate, n):")
    for p, y, n in default["calibration"]:
        print(f"  {p:.3f} {y:.3f} {n}")
    if any(math.isnan(r["auc"]) for r in results):
        raise SystemExit("a metric is undefined: too few examples")


if __name__ == "__main__":
    main()
