"""Churn model choice by measurement: honest prequential quality on replayed simulator events.

The simulator's events go through ``models.replay.replay`` (parse, account
state, weekly snapshots, delayed labels: the production path); ``on_outputs``
collects the churn examples of every flush as one *burst*, in the order the
learner gets them. Each candidate then sees those bursts as
``OnlineLearner.learn_many`` does — score the whole burst, then learn it — and
the score of every example is recorded before it is learned. Printed per
candidate, over examples whose snapshot is after the warm-up (default day 60):
ROC AUC, log loss, expected calibration error and a calibration table, plus
µs per predict and per learn. Same-run baselines on the same snapshots with a
time split (train before, test after ``--split`` of the run): scikit-learn
HistGradientBoosting and LogisticRegression (log1p + standardised, the batch
version of the linear model), and the constant training rate.

Simulated events and collected examples are cached in ``--cache`` (pickle,
keyed by the simulator settings and the feature and label code).

    /tmp/venv/bin/python benchmarks/bench_churn_model.py --accounts 2000 --days 150 --seed 11
    /tmp/venv/bin/python benchmarks/bench_churn_model.py --seed 5 --churn-scale 0.6 \
        --mix household=0.3,sharer=0.3
"""

from __future__ import annotations

import argparse
import hashlib
import math
import pickle
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import models.features
import models.labels
from models.account import DAY_MS
from models.churn import log1p_counts, make_churn_model
from models.engine import Outputs
from models.learner import OnlineLearner
from models.replay import replay
from models.simulator import SimConfig, parse_mix, simulate

Row = tuple[dict[str, float], bool, str, int]  # features, label, example_id, snapshot_ts
CANDIDATES: dict[str, Callable[[], Any]] = {
    "logreg (default) *": lambda: make_churn_model("logreg"),
    "logreg with action_* input": lambda: make_churn_model("logreg", actions=True),
    "logreg running scaler, sgd 0.05": lambda: make_churn_model(
        "logreg", scaler="running", optimizer="sgd", lr=0.05, intercept_lr=0.01
    ),
    "arf n_models=10": lambda: make_churn_model("arf"),
}


def _cached(path: Path, build: Callable[[], Any]) -> Any:
    if path.exists():
        return pickle.loads(path.read_bytes())  # noqa: S301 - our own cache
    value = build()
    path.write_bytes(pickle.dumps(value, protocol=5))
    return value


def collect(cfg: SimConfig, cache: Path) -> list[list[Row]]:
    """Churn example bursts of a replay of ``cfg``'s events (cached)."""
    sim_key = hashlib.sha1(repr(cfg).encode()).hexdigest()[:12]
    code = Path(models.features.__file__).read_bytes() + Path(models.labels.__file__).read_bytes()
    ex_key = hashlib.sha1(sim_key.encode() + code).hexdigest()[:12]
    events_path = cache / f"churn_bench_events_{sim_key}.pkl"

    def run() -> list[list[Row]]:
        events = _cached(events_path, lambda: list(simulate(cfg)))
        bursts: list[list[Row]] = []

        def on_outputs(out: Outputs) -> None:
            burst = [
                (x["features"], x["label"], x["example_id"], x["snapshot_ts"])
                for x in out.examples
                if x["model"] == "churn"
            ]
            if burst:
                bursts.append(burst)

        replay(events, on_outputs=on_outputs)
        return bursts

    return _cached(cache / f"churn_bench_bursts_{ex_key}.pkl", run)


def prequential(model: Any, bursts: list[list[Row]], warm_ts: int) -> dict[str, Any]:
    """Feed ``bursts`` through ``OnlineLearner.learn_many``, recording each score first."""
    learner = OnlineLearner(model, name="churn", max_ids=10**6)
    seen: set[str] = set()
    y: list[bool] = []
    p: list[float] = []
    n = 0
    learn_s = predict_s = 0.0
    for burst in bursts:
        fresh = [r for r in burst if r[2] not in seen]
        seen.update(r[2] for r in fresh)
        t = time.perf_counter()
        scores = [learner.predict_proba(r[0]) for r in fresh]  # what learn_many records
        predict_s += time.perf_counter() - t
        t = time.perf_counter()
        learner.learn_many([(r[0], r[1], r[2]) for r in fresh])
        learn_s += time.perf_counter() - t
        n += len(fresh)
        for r, s in zip(fresh, scores, strict=True):
            if r[3] >= warm_ts:
                y.append(r[1])
                p.append(s)
    predict_us = predict_s / n * 1e6
    return {
        **_quality(y, p),
        "examples": n,
        "predict_us": predict_us,
        "learn_us": learn_s / n * 1e6 - predict_us,  # learn_many scores once more
        "model_kib": len(learner.model_bytes()) / 1024,
        "calibration": calibration(y, p),
    }


def _quality(y: list[bool], p: list[float]) -> dict[str, float]:
    return {
        "auc": roc_auc_score(y, p),
        "logloss": log_loss(y, p, labels=[False, True]),
        "ece": sum(abs(mp - oy) * c for mp, oy, c in calibration(y, p)) / len(y),
        "n": len(y),
        "rate": sum(y) / len(y),
    }


def calibration(y: list[bool], p: list[float], bins: int = 10) -> list[tuple[float, float, int]]:
    """(mean predicted, observed rate, count) per non-empty equal-width bin."""
    n = [0] * bins
    sp = [0.0] * bins
    sy = [0] * bins
    for yi, pi in zip(y, p, strict=True):
        b = min(int(pi * bins), bins - 1)
        n[b] += 1
        sp[b] += pi
        sy[b] += yi
    return [(sp[i] / n[i], sy[i] / n[i], n[i]) for i in range(bins) if n[i]]


def offline(rows: list[Row], split_ts: int) -> dict[str, dict[str, float]]:
    """Batch baselines, trained on snapshots before ``split_ts`` and tested on the rest."""
    names = sorted({k for r in rows for k in r[0]})
    train = [r for r in rows if r[3] < split_ts]
    test = [r for r in rows if r[3] >= split_ts]

    def matrix(part: list[Row]) -> np.ndarray:
        return np.array([[log1p_counts(r[0]).get(k, 0.0) for k in names] for r in part])

    x_train, y_train = matrix(train), [r[1] for r in train]
    x_test, y_test = matrix(test), [r[1] for r in test]
    out = {}
    for name, clf in (
        ("HistGradientBoosting", HistGradientBoostingClassifier(random_state=0)),
        ("LogisticRegression", make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))),
    ):
        clf.fit(x_train, y_train)
        out[name] = _quality(y_test, list(clf.predict_proba(x_test)[:, 1]))
    out["constant train rate"] = _quality(y_test, [sum(y_train) / len(y_train)] * len(y_test))
    out["constant train rate"]["auc"] = 0.5
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--days", type=int, default=120)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--churn-scale", type=float, default=1.0)
    ap.add_argument("--mix", default="", help="archetype weights, name=weight,...")
    ap.add_argument("--warmup-days", type=int, default=60)
    ap.add_argument("--split", type=float, default=0.6, help="offline time split, share of run")
    ap.add_argument("--skip-arf", action="store_true")
    ap.add_argument("--only", default="", help="run only candidates whose name contains this")
    ap.add_argument("--cache", type=Path, default=Path("/tmp"))
    args = ap.parse_args()
    cfg = SimConfig(
        accounts=args.accounts,
        days=args.days,
        seed=args.seed,
        churn_scale=args.churn_scale,
        mix=parse_mix(args.mix),
    )
    t = time.perf_counter()
    bursts = collect(cfg, args.cache)
    rows = [r for b in bursts for r in b]
    pos = sum(r[1] for r in rows)
    print(
        f"simulator {args.accounts} accounts x {args.days} days, seed {args.seed}, churn_scale "
        f"{args.churn_scale}, mix {args.mix or 'default'}: {len(rows)} examples in "
        f"{len(bursts)} bursts ({pos} positive, {pos / len(rows):.1%}); "
        f"collected in {time.perf_counter() - t:.0f} s"
    )
    split_ts = cfg.start_ms + int(args.split * args.days) * DAY_MS
    print(f"offline, train before day {int(args.split * args.days)}, test after:")
    for name, q in offline(rows, split_ts).items():
        print(f"  {name:24} AUC {q['auc']:.3f} logloss {q['logloss']:.4f} ECE {q['ece']:.4f}")
    warm_ts = cfg.start_ms + args.warmup_days * DAY_MS
    print(f"prequential (learn_many bursts), examples with snapshot after day {args.warmup_days}:")
    print(
        f"  {'candidate':34} {'AUC':>6} {'logloss':>8} {'ECE':>6} {'n':>6} "
        f"{'pred µs':>8} {'learn µs':>9} {'model KiB':>9}"
    )
    for name, factory in CANDIDATES.items():
        if (args.skip_arf and name.startswith("arf")) or args.only not in name:
            continue
        r = prequential(factory(), bursts, warm_ts)
        print(
            f"  {name:34} {r['auc']:6.3f} {r['logloss']:8.4f} {r['ece']:6.4f} {r['n']:6d} "
            f"{r['predict_us']:8.1f} {r['learn_us']:9.1f} {r['model_kib']:9.1f}"
        )
        print("    calibration (mean predicted, observed rate, n): " + "  ".join(
            f"{mp:.3f}/{oy:.3f}/{c}" for mp, oy, c in r["calibration"]
        ))  # fmt: skip
        if math.isnan(r["auc"]):
            raise SystemExit("a metric is undefined: too few examples")


if __name__ == "__main__":
    main()
