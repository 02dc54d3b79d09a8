"""Churn model choice by measurement: honest online quality on replayed simulator events.

The simulator's events go through ``models.replay.replay`` (parse, account
state, weekly snapshots, delayed labels: the production path); ``on_outputs``
collects the churn examples of every flush as one *burst*, in the order the
learner gets them. Each candidate is measured three ways, over examples whose
snapshot is after the warm-up (default day 60):

- **prequential**: the bursts go through ``OnlineLearner.learn_many`` and the
  score of every example is recorded as ``learn_many`` records it (before
  learning it). This figure is flattered: labels arrive in an order that
  carries information (a cancellation labels a burst of positives at once,
  negatives mature 30 days after their snapshot in weekly waves), and a fast
  learner scores each wave with a model that just moved the same way;
- **at snapshot**: each snapshot is scored by the model as it was at the
  snapshot's event time (what a worker publishes then, long before the label);
  the honest figure against "cancels within the horizon";
- **at horizon**: the same, with every label released at snapshot + 30 days
  (positive or negative, see ``time_consistent``): what churnwatch would give
  if positives waited for the horizon like negatives do.

Printed: ROC AUC, log loss, expected calibration error, calibration tables,
µs per predict and per learn, model snapshot size. Same-run baselines on the
same snapshots with a time split (train before, test after ``--split`` of the
run): scikit-learn HistGradientBoosting and LogisticRegression (log1p +
standardised, the batch version of the linear model), and the constant
training rate.

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
from models.account import DAY_MS, HOUR_MS
from models.churn import log1p_counts, make_churn_model
from models.engine import Outputs
from models.learner import OnlineLearner
from models.replay import replay
from models.simulator import SimConfig, parse_mix, simulate

# features, label, example_id, snapshot_ts, labelled_ts (event time the label matured)
Row = tuple[dict[str, float], bool, str, int, int]
CANDIDATES: dict[str, Callable[[], Any]] = {
    "logreg adam 1e-3 (default) *": lambda: make_churn_model("logreg"),
    "logreg + action_* input": lambda: make_churn_model("logreg", actions=True),
    "logreg no scaler (log1p only)": lambda: make_churn_model("logreg", scaler="none"),
    "logreg sgd 0.05 (old default)": lambda: make_churn_model("logreg", optimizer="sgd", lr=0.05),
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
                (x["features"], x["label"], x["example_id"], x["snapshot_ts"], x["labelled_ts"])
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
    }


def at_snapshot(model: Any, bursts: list[list[Row]], warm_ts: int) -> dict[str, float]:
    """Score every snapshot with the model as it was at the snapshot's event time.

    That is what a worker publishes for the account then (scores never wait for
    labels); the label comes later. Unlike the prequential score it cannot
    profit from the order in which labels arrive (a wave of negatives maturing
    together, a cancellation labelling a whole burst of positives).
    """
    rows = sorted((r for b in bursts for r in b), key=lambda r: r[3])
    y: list[bool] = []
    p: list[float] = []
    i = 0
    for burst in bursts:
        learn_ts = max(r[4] for r in burst)
        while i < len(rows) and rows[i][3] <= learn_ts:
            if rows[i][3] >= warm_ts:
                y.append(rows[i][1])
                p.append(float(model.predict_proba_one(rows[i][0]).get(True, 0.0)))
            i += 1
        for r in burst:
            model.learn_one(r[0], r[1])
    return _quality(y, p)


def time_consistent(bursts: list[list[Row]], horizon_ms: int = 30 * DAY_MS) -> list[list[Row]]:
    """The same examples, each released at ``snapshot_ts + horizon`` (hourly bursts).

    Emulates labels that mature at the horizon whether positive or negative, so
    the label stream never runs ahead with positives (a cancellation labels at
    once) while the negatives of the same weeks are still pending.
    """
    rows = sorted((r for b in bursts for r in b), key=lambda r: r[3])
    out: list[list[Row]] = []
    for r in rows:
        due = r[3] + horizon_ms
        if out and out[-1][0][4] // HOUR_MS == due // HOUR_MS:
            out[-1].append((*r[:4], due))
        else:
            out.append([(*r[:4], due)])
    return out


def _quality(y: list[bool], p: list[float]) -> dict[str, float]:
    return {
        "auc": roc_auc_score(y, p),
        "logloss": log_loss(y, p, labels=[False, True]),
        "ece": sum(abs(mp - oy) * c for mp, oy, c in calibration(y, p)) / len(y),
        "n": len(y),
        "rate": sum(y) / len(y),
        "calibration": calibration(y, p),
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
    print(
        f"online, examples with snapshot after day {args.warmup_days}: prequential = scored by"
        " learn_many before learning; at snapshot = scored by the model of the snapshot's"
        " event time; replay = labels as churnwatch emits them, at horizon = every label"
        " released at snapshot + 30 d"
    )
    print(
        f"  {'candidate':31} {'preq AUC':>8} {'logloss':>7} {'ECE':>6} | {'snap AUC':>8}"
        f" {'logloss':>7} {'ECE':>6} | {'@hzn AUC':>8} {'logloss':>7} {'ECE':>6} |"
        f" {'pred µs':>7} {'learn µs':>8} {'KiB':>6}"
    )
    consistent = time_consistent(bursts)
    for name, factory in CANDIDATES.items():
        if (args.skip_arf and name.startswith("arf")) or args.only not in name:
            continue
        r = prequential(factory(), bursts, warm_ts)
        snap = at_snapshot(factory(), bursts, warm_ts)
        hzn = at_snapshot(factory(), consistent, warm_ts)
        print(
            f"  {name:31} {r['auc']:8.3f} {r['logloss']:7.4f} {r['ece']:6.4f} |"
            f" {snap['auc']:8.3f} {snap['logloss']:7.4f} {snap['ece']:6.4f} |"
            f" {hzn['auc']:8.3f} {hzn['logloss']:7.4f} {hzn['ece']:6.4f} |"
            f" {r['predict_us']:7.1f} {r['learn_us']:8.1f} {r['model_kib']:6.1f}"
        )
        for label, cal in (("prequential", r["calibration"]), ("at horizon", hzn["calibration"])):
            print(f"    calibration {label} (mean predicted/observed rate/n): " + "  ".join(
                f"{mp:.2f}/{oy:.2f}/{c}" for mp, oy, c in cal
            ))  # fmt: skip
        if math.isnan(r["auc"]):
            raise SystemExit("a metric is undefined: too few examples")


if __name__ == "__main__":
    main()
