"""Churn model choice by measurement: honest online quality on replayed simulator events.

The simulator's events go through ``models.replay.replay`` (parse, account
state, weekly snapshots, delayed labels, scoring, learning: the production
path) and every churn example it emits is kept as a row (features, label,
example id, snapshot time, the event time its label was released). Examples do
not depend on any model, so they are collected in ``--jobs`` worker processes,
each replaying its own chunks of ``--chunk-accounts`` accounts: an account's
events do not depend on which other accounts are simulated
(``simulate_accounts``), and its examples depend only on its own events, except
for when its labels are released (when the partition's watermark passes the
horizon, see ``busy_release``) and whether the last ones are
released before the run ends (``settled``). ``--check-chunking`` compares a
chunked collection with one replay of everyone.

The learners get the merged examples in order of label release (ties by example
id) in hourly bursts, whatever the chunking. Each candidate is measured two
ways, over examples whose snapshot is after the warm-up (default day 60):

- **prequential**: the bursts go through ``OnlineLearner.learn_many`` and the
  score of every example is recorded as ``learn_many`` records it (before
  learning it), 30 days after its snapshot: the model then has learned
  the labels of the 30 days of snapshots before it;
- **at snapshot**: each snapshot is scored by the model as it was at the
  snapshot's event time (what a worker publishes then, long before the label);
  the honest figure against "cancels within the horizon".

Every label waits for its horizon in the engine. Released as it is labelled
(a positive at the cancellation, a quiet account's negative at the daily
sweep), the learner got a day's labels out of time order, and that alone cost
the prequential AUC 0.05 at 20k accounts (0.774 instead of 0.821).

The online figures are also given on the offline test window (snapshots after
``--split`` of the run), the same examples the batch baselines are tested on.

Printed: ROC AUC, log loss, expected calibration error, calibration tables,
CPU µs per predict and per learn, model snapshot size, the replay's CPU µs per
event (the whole pipeline, simulator excluded) and peak memory. Same-run baselines on
the same snapshots with a time split (train before, test after ``--split`` of
the run): scikit-learn HistGradientBoosting and LogisticRegression (log1p +
standardised, the batch version of the linear model), and the constant
training rate. Progress goes to stderr.

The examples of each chunk are cached in ``--cache`` (pickle, keyed by the
simulator settings, the chunk and the code under ``models/`` that examples
depend on); a rerun with the same settings only evaluates.

    .venv/bin/python benchmarks/bench_churn_model.py --accounts 2000 --days 150 --seed 11
    .venv/bin/python benchmarks/bench_churn_model.py --accounts 20000 --days 180 --skip-arf
    .venv/bin/python benchmarks/bench_churn_model.py --seed 5 --churn-scale 0.6 \
        --mix household=0.3,sharer=0.3
    .venv/bin/python benchmarks/bench_churn_model.py --check-chunking --accounts 1000 --days 150
"""

from __future__ import annotations

import argparse
import hashlib
import math
import multiprocessing as mp
import os
import pickle
import resource
import sys
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
from river import compose
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

import models
from models.account import DAY_MS, HOUR_MS
from models.churn import log1p_counts, make_churn_model
from models.contract import parse_ts
from models.engine import Outputs
from models.features import HALF_LIVES, HASH_BUCKETS
from models.learner import OnlineLearner
from models.replay import replay
from models.simulator import SimConfig, parse_mix
from models.simulator.account import Account
from models.simulator.world import World

# features, label, example_id, snapshot_ts, labelled_ts (event time the label was released)
Row = tuple[dict[str, float], bool, str, int, int]


def short_view(x: dict[str, float]) -> dict[str, float]:
    """The features the churn model had before issue #15 (no long view, no actions)."""
    return {k: v for k, v in x.items() if k not in LONG_VIEW and not k.startswith("action_")}


LONG_VIEW = frozenset(
    ["usage_trend_3v56", "usage_trend_14v56", "watch_hours_56d", "active_days_56d",
     "activity_56d", "watch_trend_long", "active_days_trend_long", "activity_trend_long",
     "usual_actions_count", "usual_actions_dropped", "usual_actions_gone", "top_actions_trend"]
    + [f"usage_hl{h}d" for h in HALF_LIVES]
    + [f"act{kind}_h{i}" for kind in ("rate", "trend") for i in range(HASH_BUCKETS)]
)  # fmt: skip
CANDIDATES: dict[str, Callable[[], Any]] = {
    "logreg adam 1e-3 (default) *": lambda: make_churn_model("logreg"),
    "logreg, short view (before #15)": lambda: (
        compose.FuncTransformer(short_view) | make_churn_model("logreg")
    ),
    "logreg + action_* input": lambda: make_churn_model("logreg", actions=True),
    "logreg no scaler (log1p only)": lambda: make_churn_model("logreg", scaler="none"),
    "logreg sgd 0.05 (old default)": lambda: make_churn_model("logreg", optimizer="sgd", lr=0.05),
    "arf n_models=10": lambda: make_churn_model("arf"),
}
DEFAULT = next(name for name in CANDIDATES if "(default)" in name)
HORIZON_MS = 30 * DAY_MS
SETTLE_MS = 2 * DAY_MS  # see ``settled``
# Modules under models/ that churn examples do not depend on: the models only score and
# learn, household state and the sharing label feed the sharing model, alerts come after.
# They could only change an example by raising on an event: processing failures are
# counted. A change anywhere else under models/ invalidates the cached examples.
NOT_IN_EXAMPLES = frozenset(
    {"churn.py", "learner.py", "household", "sharing.py", "alerting.py", "evaluation.py"}
)
_KEY = itemgetter(0)
ROW_FORMAT = b"rows+cancels"  # what a cached chunk holds (part of the cache key)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------- collection


def simulate_accounts(cfg: SimConfig, lo: int, hi: int) -> Iterator[dict[str, Any]]:
    """The events ``simulate(cfg)`` yields for accounts ``lo`` .. ``hi - 1``, in its order.

    The same loop as ``models.simulator.simulate`` over a slice of the
    population: each account draws from its own generator (seeded by the run's
    seed and the account's index) and only reads the seed-derived ``World``, and
    ``simulate`` merges the accounts' days with a stable sort by emission key, so
    dropping the other accounts changes nothing else (pinned by
    tests/unit/test_bench_churn_model.py).
    """
    world = World(cfg.seed, cfg.price_increase_share)
    accounts = [Account(cfg, world, i) for i in range(lo, min(hi, cfg.accounts))]
    pending: list[tuple[int, dict[str, Any]]] = []
    for d in range(cfg.days):
        for account in accounts:
            account.day(d, pending)
        pending.sort(key=_KEY)
        cut = bisect_left(pending, cfg.start_ms + (d + 1) * DAY_MS, key=_KEY)
        for _, event in pending[:cut]:
            yield event
        del pending[:cut]
    for _, event in pending:
        yield event


def collect_chunk(cfg: SimConfig, lo: int, hi: int) -> tuple[list[Row], dict[str, Any]]:
    """Replay accounts ``lo`` .. ``hi - 1`` alone; their churn examples and the cost
    (``stats["cancels"]``: the ``(account_id, ts)`` of every cancellation, for alerts)."""
    sim_s = 0.0
    cancels: list[tuple[str, int]] = []

    def timed(events: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        nonlocal sim_s
        while True:
            t = time.process_time()
            event = next(events, None)
            sim_s += time.process_time() - t
            if event is None:
                return
            if event["type"] == "subscription_cancelled":
                cancels.append((event["account_id"], parse_ts(event["ts"])))
            yield event

    rows: list[Row] = []
    failed = 0

    def on_outputs(out: Outputs) -> None:
        nonlocal failed
        failed += len(out.failed)
        rows.extend(
            (x["features"], x["label"], x["example_id"], x["snapshot_ts"], x["labelled_ts"])
            for x in out.examples
            if x["model"] == "churn"
        )

    cpu = time.process_time()
    result = replay(timed(simulate_accounts(cfg, lo, hi)), on_outputs=on_outputs)
    cpu = time.process_time() - cpu
    stats = {
        "accounts": min(hi, cfg.accounts) - lo,
        "events": result.events,
        "dead_letters": result.dead_letters,
        "failed": failed,  # events (or scorings) our own code raised on
        "examples": len(rows),
        "replay_s": cpu - sim_s,  # CPU time: other processes on the machine do not count
        "sim_s": sim_s,
        "wall_s": result.seconds,
        "worker_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "cancels": cancels,
    }
    return rows, stats


def chunks_of(cfg: SimConfig, chunk_accounts: int) -> list[tuple[int, int]]:
    return [
        (lo, min(lo + chunk_accounts, cfg.accounts))
        for lo in range(0, cfg.accounts, chunk_accounts)
    ]


def cache_key(cfg: SimConfig) -> str:
    """Simulator settings plus the code under ``models/`` that examples depend on."""
    root = Path(models.__file__).parent
    h = hashlib.sha1(repr(cfg).encode() + ROW_FORMAT)
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] not in NOT_IN_EXAMPLES:  # a module, or a package (household)
            h.update(str(rel).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def _chunk_job(job: tuple[SimConfig, int, int, Path]) -> tuple[int, int, dict[str, Any]]:
    cfg, lo, hi, path = job
    rows, stats = collect_chunk(cfg, lo, hi)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(pickle.dumps((rows, stats), protocol=5))
    tmp.replace(path)  # atomic: an interrupted run leaves no half-written chunk
    return lo, hi, stats


def collect(
    cfg: SimConfig, cache: Path, chunk_accounts: int, jobs: int
) -> tuple[list[Row], list[dict[str, Any]], list[Path]]:
    """Churn examples of the whole population, collected chunk by chunk (cached)."""
    key = cache_key(cfg)
    paths = {
        c: cache / f"churn_bench_{key}_{c[0]:07d}-{c[1]:07d}.pkl"
        for c in chunks_of(cfg, chunk_accounts)
    }
    todo = [(cfg, lo, hi, p) for (lo, hi), p in paths.items() if not p.exists()]
    if todo:
        log(
            f"collecting {len(todo)} of {len(paths)} chunks of <= {chunk_accounts} accounts"
            f" with {jobs} processes (cache {cache}/churn_bench_{key}_*.pkl)"
        )
        started = time.perf_counter()
        if jobs == 1:
            done: Iterable[tuple[int, int, dict[str, Any]]] = map(_chunk_job, todo)
            _progress(done, len(todo), started)
        else:
            with mp.get_context("fork").Pool(jobs) as pool:
                _progress(pool.imap_unordered(_chunk_job, todo), len(todo), started)
    rows: list[Row] = []
    stats: list[dict[str, Any]] = []
    for path in paths.values():
        chunk_rows, chunk_stats = pickle.loads(path.read_bytes())  # noqa: S301 - our own cache
        rows += chunk_rows
        stats.append(chunk_stats)
    return rows, stats, list(paths.values())


def _progress(done: Iterable[tuple[int, int, dict[str, Any]]], n: int, started: float) -> None:
    for i, (lo, hi, s) in enumerate(done, 1):
        elapsed = time.perf_counter() - started
        log(
            f"  [{i}/{n}] accounts {lo}-{hi - 1}: {s['events']} events, {s['examples']} examples"
            f" in {s['wall_s']:.0f} s ({s['replay_s'] / s['events'] * 1e6:.0f} CPU-µs/event replay,"
            f" {s['sim_s'] / s['events'] * 1e6:.1f} simulator); elapsed {elapsed / 60:.1f} min,"
            f" eta {elapsed / i * (n - i) / 60:.1f} min"
        )


def settled(rows: list[Row], cfg: SimConfig, margin_ms: int = SETTLE_MS) -> list[Row]:
    """The rows whose horizon ended at least ``margin_ms`` before the end of the run.

    A label is released at the account's next event or at the daily sweep after
    its horizon; near the end of the run, whether that still happened depends on
    the clock of the account's partition, hence on which other accounts were
    replayed with it. Earlier labels are all released, whatever the chunking.
    """
    end = cfg.start_ms + cfg.days * DAY_MS
    return [r for r in rows if r[3] + HORIZON_MS <= end - margin_ms]


def busy_release(r: Row) -> int:
    """When a busy worker releases the label of ``r``: at snapshot + horizon.

    The engine keeps an event-time timer per account (``Shard.labels_due``) and
    releases a label, positive or negative, in the first batch in which its
    partition's watermark has passed snapshot + horizon. In a busy partition
    (thousands of accounts, as in production) that is right then; in a small
    replay it is the next flush, hours later. So: the horizon, independent of the
    chunking and of the replay's flush size.
    """
    return r[3] + HORIZON_MS


def release_bursts(rows: Iterable[Row], release: Callable[[Row], int]) -> list[list[Row]]:
    """``rows`` as a learner gets them: by ``release`` time (ties by example id), in
    hourly bursts, each row's ``labelled_ts`` set to its release time.

    ``release=busy_release`` is the engine's release time; ``itemgetter(4)`` the
    replay's own.
    """
    out: list[list[Row]] = []
    for ts, r in sorted(((release(r), r) for r in rows), key=lambda t: (t[0], t[1][2])):
        row = (r[0], r[1], r[2], r[3], ts)
        if out and out[-1][0][4] // HOUR_MS == ts // HOUR_MS:
            out[-1].append(row)
        else:
            out.append([row])
    return out


# ----------------------------------------------------------------- evaluation


def prequential(model: Any, bursts: list[list[Row]], warm_ts: int, split_ts: int) -> dict[str, Any]:
    """Feed ``bursts`` through ``OnlineLearner.learn_many``, recording each score first."""
    learner = OnlineLearner(model, name="churn", max_ids=10**6)
    seen: set[str] = set()
    y: list[bool] = []
    p: list[float] = []
    ts: list[int] = []
    n = 0
    learn_s = predict_s = 0.0
    for burst in bursts:
        fresh = [r for r in burst if r[2] not in seen]
        seen.update(r[2] for r in fresh)
        t = time.process_time()  # CPU time: other processes on the machine do not count
        scores = [learner.predict_proba(r[0]) for r in fresh]  # what learn_many records
        predict_s += time.process_time() - t
        t = time.process_time()
        learner.learn_many([(r[0], r[1], r[2]) for r in fresh])
        learn_s += time.process_time() - t
        n += len(fresh)
        for r, s in zip(fresh, scores, strict=True):
            if r[3] >= warm_ts:
                y.append(r[1])
                p.append(s)
                ts.append(r[3])
    predict_us = predict_s / n * 1e6
    return {
        **_quality(y, p),
        "test": _window(y, p, ts, split_ts),
        "examples": n,
        "predict_us": predict_us,
        "learn_us": learn_s / n * 1e6 - predict_us,  # learn_many scores once more
        "model_kib": len(learner.model_bytes(b"bench")) / 1024,
    }


def at_snapshot(model: Any, bursts: list[list[Row]], warm_ts: int, split_ts: int) -> dict[str, Any]:
    """Score every snapshot with the model as it was at the snapshot's event time.

    That is what a worker publishes for the account then (scores never wait for
    labels); the label comes later, with its burst. ``scores``: example id -> score.
    """
    rows = sorted((r for b in bursts for r in b), key=lambda r: (r[3], r[2]))
    y: list[bool] = []
    p: list[float] = []
    ts: list[int] = []
    ids: list[str] = []
    i = 0
    for burst in bursts:
        learn_ts = max(r[4] for r in burst)
        while i < len(rows) and rows[i][3] <= learn_ts:
            if rows[i][3] >= warm_ts:
                y.append(rows[i][1])
                p.append(float(model.predict_proba_one(rows[i][0]).get(True, 0.0)))
                ts.append(rows[i][3])
                ids.append(rows[i][2])
            i += 1
        for r in burst:
            model.learn_one(r[0], r[1])
    return {
        **_quality(y, p),
        "test": _window(y, p, ts, split_ts),
        "scores": dict(zip(ids, p, strict=True)),
    }


def _window(y: list[bool], p: list[float], ts: list[int], start: int) -> dict[str, Any]:
    keep = [i for i, t in enumerate(ts) if t >= start]
    return _quality([y[i] for i in keep], [p[i] for i in keep])


def _quality(y: list[bool], p: list[float]) -> dict[str, Any]:
    if not y or len(set(y)) < 2:
        nan = math.nan
        return {"auc": nan, "logloss": nan, "ece": nan, "n": len(y), "rate": nan,
                "calibration": []}  # fmt: skip
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


def offline(rows: list[Row], split_ts: int) -> dict[str, dict[str, Any]]:
    """Batch baselines, trained on snapshots before ``split_ts`` and tested on the rest."""
    names = sorted({k for r in rows for k in r[0]})
    train = [r for r in rows if r[3] < split_ts]
    test = [r for r in rows if r[3] >= split_ts]

    def matrix(part: list[Row]) -> np.ndarray:
        out = np.zeros((len(part), len(names)))
        col = {k: j for j, k in enumerate(names)}
        for i, r in enumerate(part):
            for k, v in log1p_counts(r[0]).items():
                out[i, col[k]] = v
        return out

    x_train, y_train = matrix(train), [r[1] for r in train]
    x_test, y_test = matrix(test), [r[1] for r in test]
    out = {}
    for name, clf in (
        ("HistGradientBoosting", HistGradientBoostingClassifier(random_state=0)),
        ("LogisticRegression", make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))),
    ):
        # one thread: OpenMP threads competing with the other evaluation processes for the
        # same cores make HistGradientBoosting ~20x slower (same result)
        with threadpool_limits(1):
            clf.fit(x_train, y_train)
            out[name] = _quality(y_test, list(clf.predict_proba(x_test)[:, 1]))
    out["constant train rate"] = _quality(y_test, [sum(y_train) / len(y_train)] * len(y_test))
    return out


# Evaluation tasks run in forked workers that inherit these (read-only) inputs.
_SHARED: dict[str, Any] = {}


def _eval_job(task: tuple[str, str]) -> tuple[tuple[str, str], Any, float]:
    kind, name = task
    s = _SHARED
    t = time.perf_counter()
    if kind == "offline":
        result: Any = offline(s["rows"], s["split_ts"])
    elif kind == "preq":
        result = prequential(CANDIDATES[name](), s["released"], s["warm_ts"], s["split_ts"])
    else:
        result = at_snapshot(CANDIDATES[name](), s["released"], s["warm_ts"], s["split_ts"])
    return task, result, time.perf_counter() - t


def evaluate(
    rows: list[Row], names: list[str], warm_ts: int, split_ts: int, jobs: int
) -> dict[tuple[str, str], Any]:
    """Offline baselines and the three online figures of every candidate in ``names``."""
    _SHARED.update(
        rows=rows,
        released=release_bursts(rows, busy_release),
        warm_ts=warm_ts,
        split_ts=split_ts,
    )
    # the slowest first (ARF learns ~10x slower than the linear models)
    tasks = [(k, n) for n in names if n.startswith("arf") for k in ("preq", "snap")]
    tasks += [("offline", "")]
    tasks += [(k, n) for n in names if not n.startswith("arf") for k in ("preq", "snap")]
    log(f"evaluating: {len(tasks)} tasks over {len(rows)} examples with {jobs} processes")
    started = time.perf_counter()
    results: dict[tuple[str, str], Any] = {}
    try:
        if jobs == 1:
            done: Iterable[tuple[tuple[str, str], Any, float]] = map(_eval_job, tasks)
            for task, result, seconds in done:
                results[task] = result
                _eval_progress(task, seconds, len(results), len(tasks), started)
        else:
            with mp.get_context("fork").Pool(jobs) as pool:
                for task, result, seconds in pool.imap_unordered(_eval_job, tasks):
                    results[task] = result
                    _eval_progress(task, seconds, len(results), len(tasks), started)
    finally:
        _SHARED.clear()
    return results


def _eval_progress(task: tuple[str, str], s: float, i: int, n: int, started: float) -> None:
    elapsed = time.perf_counter() - started
    log(f"  [{i}/{n}] {task[0]} {task[1]}: {s:.0f} s; elapsed {elapsed / 60:.1f} min")


# ----------------------------------------------------------------- check


def check_chunking(cfg: SimConfig, chunk_accounts: int) -> None:
    """Compare a chunked collection with one replay of the whole population."""
    t = time.perf_counter()
    emitted, _ = collect_chunk(cfg, 0, cfg.accounts)
    whole = settled(emitted, cfg)
    whole_s = time.perf_counter() - t
    chunked: list[Row] = []
    for lo, hi in chunks_of(cfg, chunk_accounts):
        chunked += collect_chunk(cfg, lo, hi)[0]
    print(
        f"emitted: {len(emitted)} examples by one replay, {len(chunked)} by the chunks;"
        f" kept (settled): {len(whole)} and {len(settled(chunked, cfg))}"
    )
    chunked = settled(chunked, cfg)
    a = {r[2]: r for r in whole}
    b = {r[2]: r for r in chunked}
    same = sum(a[k][:4] == b[k][:4] for k in a.keys() & b.keys())
    shifts = sorted(abs(a[k][4] - b[k][4]) / HOUR_MS for k in a.keys() & b.keys())
    moved = [s for s in shifts if s]
    print(
        f"one replay of {cfg.accounts} accounts x {cfg.days} days: {len(whole)} examples"
        f" ({len(a)} ids) in {whole_s:.0f} s; {len(chunks_of(cfg, chunk_accounts))} replays of"
        f" <= {chunk_accounts}: {len(chunked)} examples ({len(b)} ids); ids only in one:"
        f" {len(a.keys() ^ b.keys())}; identical (features, label, id, snapshot time): {same};"
        f" release time differs for {len(moved)}"
        + (f" (median {moved[len(moved) // 2]:.1f} h, max {moved[-1]:.1f} h)" if moved else "")
    )
    warm_ts = cfg.start_ms + min(60, cfg.days // 3) * DAY_MS
    releases: dict[str, Callable[[Row], int]] = {
        "busy": busy_release,
        "as replayed": itemgetter(4),
    }
    for label, rows in (("one replay", whole), ("chunked", chunked)):
        figures = []
        for name, release in releases.items():
            bursts = release_bursts(rows, release)
            preq = prequential(CANDIDATES[DEFAULT](), bursts, warm_ts, 0)["auc"]
            snap = at_snapshot(CANDIDATES[DEFAULT](), bursts, warm_ts, 0)["auc"]
            figures.append(f"{name}: preq {preq:.4f} snap {snap:.4f}")
        print(
            f"  {label:10} default model AUC, snapshots after day"
            f" {(warm_ts - cfg.start_ms) // DAY_MS}, labels released " + "; ".join(figures)
        )


# ----------------------------------------------------------------- main


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
    ap.add_argument("--jobs", type=int, default=2, help="worker processes")
    ap.add_argument(
        "--chunk-accounts", type=int, default=250,
        help="accounts per replay (fewer: fewer accounts per flush, cheaper scoring)",
    )  # fmt: skip
    ap.add_argument(
        "--check-chunking", action="store_true",
        help="compare chunked collection with one replay of everyone (no cache), then exit",
    )  # fmt: skip
    args = ap.parse_args()
    cfg = SimConfig(
        accounts=args.accounts,
        days=args.days,
        seed=args.seed,
        churn_scale=args.churn_scale,
        mix=parse_mix(args.mix),
    )
    if args.check_chunking:
        check_chunking(cfg, args.chunk_accounts)
        return
    started = time.perf_counter()
    args.cache.mkdir(parents=True, exist_ok=True)
    collected, stats, paths = collect(cfg, args.cache, args.chunk_accounts, args.jobs)
    collected_s = time.perf_counter() - started
    rows = settled(collected, cfg)
    del collected
    pos = sum(r[1] for r in rows)
    print(
        f"simulator {args.accounts} accounts x {args.days} days, seed {args.seed}, churn_scale "
        f"{args.churn_scale}, mix {args.mix or 'default'}: {len(rows)} examples"
        f" ({pos} positive, {pos / len(rows):.1%}) with a horizon ending at least"
        f" {SETTLE_MS // DAY_MS} days before the end of the run (of {sum(s['examples'] for s in stats)}"
        f" emitted); collected in {collected_s:.0f} s"
    )
    events = sum(s["events"] for s in stats)
    failed = sum(s.get("failed", 0) for s in stats)
    replay_s = sum(s["replay_s"] for s in stats)
    sim_s = sum(s["sim_s"] for s in stats)
    print(
        f"replay: {events} events ({sum(s['dead_letters'] for s in stats)} dead letters,"
        f" {failed} processing failures) in"
        f" {len(stats)} replays of <= {args.chunk_accounts} accounts:"
        f" {replay_s / events * 1e6:.0f} CPU-µs/event for the whole pipeline (parse, state, snapshots,"
        f" labels, both scores per touched account and flush, learning), simulator excluded"
        f" ({sim_s / events * 1e6:.1f} µs/event); {(replay_s + sim_s) / 60:.0f} CPU-min"
        + ("" if collected_s > 1 else " (from the cache)")
    )
    split_ts = cfg.start_ms + int(args.split * args.days) * DAY_MS
    warm_ts = cfg.start_ms + args.warmup_days * DAY_MS
    names = [
        n for n in CANDIDATES
        if args.only in n and not (args.skip_arf and n.startswith("arf"))
    ]  # fmt: skip
    results = evaluate(rows, names, warm_ts, split_ts, args.jobs)
    print(f"offline, train before day {int(args.split * args.days)}, test after:")
    for name, q in results[("offline", "")].items():
        print(
            f"  {name:24} AUC {q['auc']:.3f} logloss {q['logloss']:.4f} ECE {q['ece']:.4f}"
            f" (n {q['n']}, {q['rate']:.1%} positive)"
        )
    print(
        f"online, examples with snapshot after day {args.warmup_days}: prequential = scored by"
        " learn_many before learning; at snapshot = scored by the model of the snapshot's"
        " event time; labels released as a busy churnwatch partition releases them (at"
        " snapshot + 30 d), learners get them in release order, hourly bursts; µs are CPU time"
    )
    print(
        f"  {'candidate':31} {'preq AUC':>8} {'logloss':>7} {'ECE':>6} | {'snap AUC':>8}"
        f" {'logloss':>7} {'ECE':>6} |"
        f" {'pred µs':>7} {'learn µs':>8} {'KiB':>6}"
    )
    for name in names:
        r, snap = (results[(k, name)] for k in ("preq", "snap"))
        print(
            f"  {name:31} {r['auc']:8.3f} {r['logloss']:7.4f} {r['ece']:6.4f} |"
            f" {snap['auc']:8.3f} {snap['logloss']:7.4f} {snap['ece']:6.4f} |"
            f" {r['predict_us']:7.1f} {r['learn_us']:8.1f} {r['model_kib']:6.1f}"
        )
        for label, cal in (("prequential", r["calibration"]), ("at snapshot", snap["calibration"])):
            print(f"    calibration {label} (mean predicted/observed rate/n): " + "  ".join(
                f"{mp:.2f}/{oy:.2f}/{c}" for mp, oy, c in cal
            ))  # fmt: skip
        if math.isnan(r["auc"]):
            raise SystemExit("a metric is undefined: too few examples")
    print(
        f"online on the offline test window (the same {results[('offline', '')]['HistGradientBoosting']['n']}"
        f" examples, snapshots after day {int(args.split * args.days)}):"
    )
    for name in names:
        r, snap = (results[(k, name)]["test"] for k in ("preq", "snap"))
        print(
            f"  {name:31} preq AUC {r['auc']:.3f} | snap AUC {snap['auc']:.3f}"
            f" logloss {snap['logloss']:.4f}"
        )
    main_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        f"peak RSS: main process {main_rss:.0f} MiB, largest worker {child_rss:.0f} MiB;"
        f" cache {sum(p.stat().st_size for p in paths) / 2**20:.0f} MiB in {len(paths)} files;"
        f" wall {(time.perf_counter() - started) / 60:.1f} min"
    )


if __name__ == "__main__":
    main()
