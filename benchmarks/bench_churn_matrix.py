"""Churn robustness matrix: the churn model on simulated products it was not tuned on.

Each cell is one simulator run whose churn-relevant knobs are drawn from the
cell's seed over wide ranges: the product's own action vocabulary (names,
size, the share of actions that follow satisfaction), how much of the usage is
viewing and how much is activity outside it, churn hazards and satisfaction
declines, payment failures. **Tuning** cells (seeds 1, 2, ...) were the only
ones looked at while choosing features, models and the alert threshold;
**held-out** cells (seeds 1001, ...) draw from wider ranges and were run once,
for the report.

Per cell, reusing ``bench_churn_model`` (collection, cache, evaluation):

- ROC AUC of every online candidate, prequential and at snapshot, on the
  offline test window, next to a batch HistGradientBoosting trained on the
  same examples before the split (``gap``: online at snapshot minus GBM);
- expected calibration error and the reliability diagram (mean predicted /
  observed rate / n per tenth) of the default candidate at snapshot;
- early-warning alerts of the default candidate: its at-snapshot scores (after
  the warm-up) go through the engine's hysteresis (``update_track``) and action
  rule (``churn_action``) per account and snapshot, and ``churn_alert_quality``
  judges the alerts that are not ``win_back``: share of cancellations caught
  within the 30-day horizon, precision, median lead in days. Only snapshots
  with a settled label are scored, so cancellations are judged from warm-up +
  30 days to a week after the last of them. Snapshots are weekly (the engine
  decides daily) and each account's track stays up between them, so this
  understates recall: use it to compare candidates, not to judge the engine;
- with ``--engine-alerts T/R``: the alerts the engine itself raises at churn
  alert level T, reset R. Each cell's whole population is replayed once more in
  one process, as one worker sees it (one model learning from every account's
  labels, the engine's daily decisions, its wait for labels before the first
  alert, its hysteresis and action rule), and ``churn_alert_quality`` judges its
  alerts that are not ``win_back`` from the warm-up to the end of the run. With
  ``--rearm-after-horizon`` too, an alert whose horizon passed without a
  cancellation ends its episode (a proposal to the contract, not its rule).

Then the worst held-out cell of each figure.

    .venv/bin/python benchmarks/bench_churn_matrix.py --jobs 2                # tuning cells
    .venv/bin/python benchmarks/bench_churn_matrix.py --held-out --jobs 2     # the report
    .venv/bin/python benchmarks/bench_churn_matrix.py --held-out --jobs 2 --engine-alerts 0.4/0.3
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import random
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_churn_model import (  # noqa: E402 - the benchmark next to this one
    CANDIDATES,
    DEFAULT,
    collect,
    evaluate,
    log,
    settled,
    simulate_accounts,
)

from models.account import DAY_MS  # noqa: E402
from models.alerting import AlertConfig, AlertTrack, churn_action, update_track  # noqa: E402
from models.contract import parse_ts  # noqa: E402
from models.engine import EngineConfig, Outputs  # noqa: E402
from models.evaluation import churn_alert_quality  # noqa: E402
from models.replay import replay  # noqa: E402
from models.simulator import SimConfig  # noqa: E402

# (low, high) of each knob; held-out cells draw from wider ranges
TUNING_RANGES: dict[str, tuple[float, float]] = {
    "action_vocab": (6, 30),
    "signal_action_share": (0.2, 0.5),
    "daily_activity": (1.0, 6.0),
    "session_rate": (0.2, 1.0),  # *_rate knobs are within [0, 1]
    "activity_rate": (0.3, 1.0),
    "churn_scale": (0.8, 2.5),
    "decline_rate": (1 / 240, 1 / 90),
    "payment_failure_rate": (0.01, 0.05),
    "bad_card_share": (0.03, 0.10),
}
HELD_OUT_RANGES: dict[str, tuple[float, float]] = {
    "action_vocab": (3, 60),
    "signal_action_share": (0.1, 0.7),
    "daily_activity": (0.5, 10.0),
    "session_rate": (0.1, 1.0),
    "activity_rate": (0.1, 1.0),
    "churn_scale": (0.5, 3.0),
    "decline_rate": (1 / 365, 1 / 60),
    "payment_failure_rate": (0.005, 0.08),
    "bad_card_share": (0.0, 0.15),
}
TUNING_SEEDS = (1, 2, 3)
HELD_OUT_SEEDS = (1001, 1002, 1003, 1004)
# the engine's default churn alert levels (streams.settings) and two lower ones; 0.3 / 0.2
# was chosen on the tuning cells for early warning (recall and lead up, precision kept)
ALERT_LEVELS = (AlertConfig(0.4, 0.3), AlertConfig(0.3, 0.2), AlertConfig(0.2, 0.15))
HORIZON_MS = 30 * DAY_MS


def cell_config(
    seed: int, ranges: dict[str, tuple[float, float]], accounts: int, days: int
) -> SimConfig:
    """The simulator settings of one cell, drawn from ``seed``.

    >>> cell_config(1, TUNING_RANGES, 100, 90).action_vocab
    27
    """
    rng = random.Random(f"churn-cell:{seed}")
    knobs: dict[str, Any] = {}
    for name, (lo, hi) in ranges.items():
        if name == "decline_rate":  # log-uniform: a rate over a wide range
            knobs[name] = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        elif name == "action_vocab":
            knobs[name] = rng.randint(int(lo), int(hi))
        else:
            knobs[name] = rng.uniform(lo, hi)
    return SimConfig(accounts=accounts, days=days, seed=seed, **knobs)


def alerts_of(
    rows: list[Any], scores: dict[str, float], level: AlertConfig
) -> list[dict[str, Any]]:
    """The churn alerts the at-snapshot ``scores`` raise, account by account, in time."""
    tracks: dict[str, AlertTrack] = defaultdict(AlertTrack)
    out = []
    for r in sorted((r for r in rows if r[2] in scores), key=lambda r: (r[3], r[2])):
        account = r[2].rsplit(":", 1)[0]
        if update_track(tracks[account], scores[r[2]], level):
            out.append({"kind": "churn", "account_id": account, "ts": r[3],
                        "action": churn_action(r[0])})  # fmt: skip
    return out


def engine_alerts(
    cfg: SimConfig, level: AlertConfig, *, rearm: bool = False
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The churn alerts the engine raises over the whole of ``cfg``'s population in one
    replay (one worker: one model, daily decisions), and the cancellations (truth rows).
    ``rearm``: ``EngineConfig.churn_rearm_after_horizon`` (not the contract's rule).

    >>> alerts, truth = engine_alerts(SimConfig(accounts=3, days=5, seed=1), AlertConfig(0.4, 0.3))
    >>> sorted(t["account_id"] for t in truth)
    ['a0000000', 'a0000001', 'a0000002']
    """
    cancels: dict[str, list[dict[str, int]]] = {}  # every account, with or without
    alerts: list[dict[str, Any]] = []

    def events() -> Iterator[dict[str, Any]]:
        for e in simulate_accounts(cfg, 0, cfg.accounts):
            account_cancels = cancels.setdefault(e["account_id"], [])
            if e["type"] == "subscription_cancelled":
                account_cancels.append({"ts": parse_ts(e["ts"])})
            yield e

    def on_outputs(out: Outputs) -> None:
        alerts.extend(a for a in out.alerts if a["kind"] == "churn")

    engine_cfg = EngineConfig(churn_alert=level, churn_rearm_after_horizon=rearm)
    replay(events(), cfg=engine_cfg, on_outputs=on_outputs)
    return alerts, [{"account_id": a, "cancels": c} for a, c in cancels.items()]


def _judge_engine_alerts(
    job: tuple[str, SimConfig, tuple[float, float], bool, int],
) -> dict[str, Any]:
    # the level comes as two floats: the compiled AlertConfig does not pickle
    name, cfg, level, rearm, warmup_days = job
    started = time.perf_counter()
    alerts, truth = engine_alerts(cfg, AlertConfig(*level), rearm=rearm)
    q = churn_alert_quality(
        alerts, truth, start_ms=cfg.start_ms + warmup_days * DAY_MS,
        end_ms=cfg.start_ms + cfg.days * DAY_MS, horizon_ms=HORIZON_MS,
    )  # fmt: skip
    payment = sum(a["action"] == "payment_reminder" for a in alerts)
    log(f"  engine alerts of {name}: {len(alerts)} in {time.perf_counter() - started:.0f} s")
    return {"name": name, "q": q, "payment": payment}


def print_engine_alerts(
    cells: list[tuple[str, SimConfig]], level: AlertConfig, args: argparse.Namespace
) -> None:
    """``--engine-alerts``: each cell replayed whole, the engine's own alerts judged."""
    log(
        f"engine alerts at {level.threshold}/{level.reset}: {len(cells)} cells, {args.jobs} processes"
    )
    rearm = args.rearm_after_horizon
    jobs = [
        (name, cfg, (level.threshold, level.reset), rearm, args.warmup_days) for name, cfg in cells
    ]
    with mp.get_context("fork").Pool(args.jobs) as pool:
        judged = pool.map(_judge_engine_alerts, jobs)
    print(
        f"\nthe engine's own churn alerts at {level.threshold} / reset {level.reset}"
        + (", re-armed after the horizon (not the contract's rule)" if rearm else "")
        + " (each cell replayed whole in one process: one model, daily decisions; not win_back):"
    )
    for j in judged:
        print(f"  {j['name']:20} {_alert_figures(j['q'], j['payment'])}")
    print("  worst: " + _worst_alerts([(j["name"], j["q"]) for j in judged]))


def run_cell(
    name: str, cfg: SimConfig, names: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    started = time.perf_counter()
    collected, stats, _ = collect(cfg, args.cache, args.chunk_accounts, args.jobs)
    rows = settled(collected, cfg)
    split_ts = cfg.start_ms + int(args.split * cfg.days) * DAY_MS
    warm_ts = cfg.start_ms + args.warmup_days * DAY_MS
    results = evaluate(rows, names, warm_ts, split_ts, args.jobs)
    gbm = results[("offline", "")]["HistGradientBoosting"]
    cell: dict[str, Any] = {"name": name, "gbm": gbm["auc"], "n": gbm["n"], "rate": gbm["rate"]}
    for cand in names:
        cell[cand] = {
            "preq": results[("preq", cand)]["test"]["auc"],
            "snap": results[("snap", cand)]["test"]["auc"],
        }
    snap = results[("snap", DEFAULT)]
    cell["ece"], cell["calibration"] = snap["test"]["ece"], snap["test"]["calibration"]
    truth = defaultdict(list)
    for s in stats:
        for account, ts in s["cancels"]:
            truth[account].append({"ts": ts})
    truth_rows = [{"account_id": a, "cancels": c} for a, c in truth.items()]
    # only snapshots with a settled label are scored, so alerts are judged from the warm-up
    # to the last scored snapshot (cancellations up to a week later: the next snapshot)
    end = max(r[3] for r in rows) + 7 * DAY_MS
    for cand in names:
        cell[cand]["alerts"] = []
        for level in ALERT_LEVELS:
            alerts = alerts_of(rows, results[("snap", cand)]["scores"], level)
            q = churn_alert_quality(alerts, truth_rows, start_ms=warm_ts, end_ms=end)
            payment = sum(a["action"] == "payment_reminder" for a in alerts)
            cell[cand]["alerts"].append((level.threshold, q, payment))
    knobs = {k: getattr(cfg, k) for k in TUNING_RANGES}
    print(
        f"\n{name}: seed {cfg.seed}, {cfg.accounts} accounts x {cfg.days} days; "
        + ", ".join(f"{k} {v:.3g}" for k, v in knobs.items())
        + f"; {len(rows)} examples, test window {gbm['n']} ({gbm['rate']:.1%} positive);"
        f" {time.perf_counter() - started:.0f} s"
    )
    print(f"  batch HistGradientBoosting AUC {gbm['auc']:.3f}")
    for cand in names:
        c = cell[cand]
        print(
            f"  {cand:34} preq AUC {c['preq']:.3f} snap AUC {c['snap']:.3f}"
            f" (gap to GBM {c['snap'] - gbm['auc']:+.3f})"
        )
    print(
        f"  calibration of {DEFAULT.strip(' *')} at snapshot: ECE {cell['ece']:.4f}; reliability"
        " (mean predicted/observed/n): "
        + "  ".join(f"{mp:.2f}/{oy:.2f}/{n}" for mp, oy, n in cell["calibration"])
    )
    for cand in names:
        for threshold, q, payment in cell[cand]["alerts"]:
            print(f"  {cand.strip(' *'):32} alerts at {threshold}: {_alert_figures(q, payment)}")
    sys.stdout.flush()
    return cell


def worst(cells: list[dict[str, Any]], names: list[str]) -> None:
    print("\nworst cell of each figure:")
    for cand in names:
        for kind in ("preq", "snap"):
            w = min(cells, key=lambda c: c[cand][kind] - c["gbm"])
            print(
                f"  {cand:34} {kind} AUC minus GBM: {w[cand][kind] - w['gbm']:+.3f}"
                f" ({w['name']}: {w[cand][kind]:.3f} vs {w['gbm']:.3f});"
                f" lowest AUC {min(c[cand][kind] for c in cells):.3f}"
            )
    w = max(cells, key=lambda c: c["ece"])
    print(f"  ECE {w['ece']:.4f} ({w['name']})")
    for cand in names:
        for i, level in enumerate(ALERT_LEVELS):
            qs = [(c["name"], c[cand]["alerts"][i][1]) for c in cells]
            print(f"  {cand.strip(' *'):32} alerts at {level.threshold}: {_worst_alerts(qs)}")
    print(
        "  median over cells of snap AUC minus GBM: "
        + "; ".join(
            f"{cand.strip(' *')} {statistics.median(c[cand]['snap'] - c['gbm'] for c in cells):+.3f}"
            for cand in names
        )
    )


def _nan_low(x: float) -> float:
    return -math.inf if math.isnan(x) else x


def _alert_figures(q: dict[str, float], payment: int) -> str:
    """One line of ``churn_alert_quality`` figures."""
    return (
        f"{q['alerts_judged']} judged ({payment} payment reminders),"
        f" precision {q['precision']:.2f}; {q['cancellations']} cancellations,"
        f" caught {q['recall']:.2f}, median lead {q['median_lead_days']:.1f} d"
    )


def _worst_alerts(named: list[tuple[str, dict[str, float]]]) -> str:
    """The lowest recall, precision and median lead of (cell name, alert figures)."""
    worst = []
    for figure in ("recall", "precision", "median_lead_days"):
        name, q = min(named, key=lambda t: _nan_low(t[1][figure]))
        worst.append(f"{figure} {q[figure]:.2f} ({name})")
    return ", ".join(worst)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--held-out", action="store_true", help="run the held-out cells (the report)")
    ap.add_argument("--cells", type=int, default=0, help="only the first N cells")
    ap.add_argument("--accounts", type=int, default=600)
    ap.add_argument("--days", type=int, default=150)
    ap.add_argument("--warmup-days", type=int, default=60)
    ap.add_argument("--split", type=float, default=0.6, help="offline time split, share of run")
    ap.add_argument(
        "--only", default="(default),short view,action_*",
        help="candidates whose name contains one of these (comma-separated; '' for all)",
    )  # fmt: skip
    ap.add_argument("--cache", type=Path, default=Path("/tmp"))
    ap.add_argument("--jobs", type=int, default=2, help="worker processes")
    ap.add_argument("--chunk-accounts", type=int, default=150)
    ap.add_argument(
        "--engine-alerts", metavar="T/R", type=_level,
        help="also judge the engine's own churn alerts at level T, reset R (e.g. 0.4/0.3):"
        " each cell replayed whole once more",
    )  # fmt: skip
    ap.add_argument(
        "--rearm-after-horizon", action="store_true",
        help="with --engine-alerts: a churn alert whose horizon passed without a cancellation"
        " ends its episode (a proposal, not the contract's rule: docs/churn.md)",
    )  # fmt: skip
    args = ap.parse_args()
    if args.rearm_after_horizon and args.engine_alerts is None:
        ap.error("--rearm-after-horizon needs --engine-alerts")
    seeds, ranges = (
        (HELD_OUT_SEEDS, HELD_OUT_RANGES) if args.held_out else (TUNING_SEEDS, TUNING_RANGES)
    )
    seeds = seeds[: args.cells] if args.cells else seeds
    parts = args.only.split(",")
    names = [n for n in CANDIDATES if any(p in n for p in parts) and not n.startswith("arf")]
    kind = "held-out" if args.held_out else "tuning"
    configs = [
        (f"{kind} cell {s}", cell_config(s, ranges, args.accounts, args.days)) for s in seeds
    ]
    cells = [run_cell(name, cfg, names, args) for name, cfg in configs]
    worst(cells, names)
    if args.engine_alerts is not None:
        print_engine_alerts(configs, args.engine_alerts, args)


def _level(text: str) -> AlertConfig:
    """``T/R`` as an alert level (0 <= R < T <= 1)."""
    threshold, _, reset = text.partition("/")
    try:
        return AlertConfig(float(threshold), float(reset))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"want THRESHOLD/RESET, got {text!r} ({e})") from None


if __name__ == "__main__":
    main()
