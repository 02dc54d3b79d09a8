"""Robustness of sharing alerts over a matrix of simulated behaviours (issue 15).

Run: python benchmarks/bench_sharing_matrix.py [--tune 4] [--held-out 4] [--accounts 400]
     [--days 35] [--only held-out|tune] [--prior] [--json FILE] [--geo-grid-km 1]
     [--fit-calibration]

Each *cell* is one simulated population whose behaviour parameters are drawn
from a seed (:func:`draw_cell`): trip frequency, length and repeated
destinations, household size and devices, IP allocation (static or leased
/24s, /16 pools, carrier NAT homes, IPv6 share), missing, coarse (city
centre), noisy or absent geo, the number of VPN exits and how much of a VPN
user's viewing goes through them, and sharing intensity from heavy households
to one device a few days a week. *Tuning* cells draw from the middle 60% of
every range, with seeds 1, 2, ...; *held-out* cells draw from the whole range
(the extremes are never seen in tuning) with seeds 1001, 1002, ... Tune on
the first, report the second.

Every cell is replayed through the whole pipeline (``models.replay``, the
worker's code, as in ``bench_sharing.py``) and judged against the simulator's
ground truth with ``models.evaluation``: precision and recall of sharing
alerts (a sharer counts for recall once shared for 3 days, before the end or
before its sharing ended), the false-positive rate per look-alike kind, the
recall of subtle sharers (also by the days their borrower watched in the run, the
simulator's ``borrowed_days``: one or two days is one or two days of evidence), the
ROC AUC of each account's last ``sharing_score``,
the median delay from the first borrowed playback to the first alert, and a
reliability diagram (bins of predicted score vs observed share of sharers) with
its expected calibration error (``--fit-calibration`` replays the cells without the
score's calibration and fits ``models.sharing.CALIBRATION`` on them). The last
score is judged against what was true at the end: an account whose every borrower
was blocked or paid for as an extra member (or that cancelled) is no longer shared, and is left out of AUC and
calibration (``models.evaluation.shared_at_end``); "ever shared" gives the same
two figures counting it as shared, as this benchmark did before. The worst
cell of each group is printed last.
Progress goes to stderr.

Targets (worst held-out cell): precision >= 0.92, recall >= 0.88, every
look-alike FP rate <= 2%, subtle-sharer recall >= 0.70, AUC >= 0.95, median
delay <= 2 days, ECE <= 0.03.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sharing import Censuses, PriorOnly, prior_events  # noqa: E402

from models.alerting import AlertConfig  # noqa: E402
from models.engine import EngineConfig  # noqa: E402
from models.evaluation import (  # noqa: E402
    DAY_MS,
    LOOK_ALIKES,
    calibration_errors,
    expected_calibration_error,
    fit_calibration,
    reliability,
    shared_at_end,
    sharing_alert_quality,
)
from models.household.state import POPULAR_ACCOUNTS  # noqa: E402
from models.privacy import GEO_GRID_KM  # noqa: E402
from models.replay import replay  # noqa: E402
from models.sharing import BLEND_LEVELS  # noqa: E402
from models.simulator import SimConfig, simulate  # noqa: E402

# Full (held-out) range of each drawn parameter; tuning cells use the middle 60%.
RANGES: dict[str, tuple[float, float]] = {
    "trip_gap_lo": (2, 25),  # days between trips: [lo, lo + span)
    "trip_gap_span": (3, 40),
    "trip_days_lo": (1, 6),  # trip length: [lo, lo + span)
    "trip_days_span": (2, 20),
    "trip_repeat_rate": (0.0, 0.9),
    "profiles_max": (1, 7),  # plain household: 1..max profiles
    "devices_max": (1, 4),  # personal devices per profile: 1..max
    "big_family_profiles": (4, 9),
    "big_family_tvs": (1, 4),
    "ipv6_rate": (0.0, 0.8),
    "ipv6_use_rate": (0.1, 0.9),
    "home_lease_days": (0, 14),  # below 2: static
    "home_pool_16_rate": (0.0, 1.0),
    "home_cgnat_rate": (0.0, 0.3),
    "missing_geo_rate": (0.0, 0.2),
    "geo_noise_km": (0.0, 2.0),
    "geo_coarse_rate": (0.0, 0.5),
    "geo_absent_rate": (0.0, 0.6),
    "vpn_exit_count": (4, 40),
    "vpn_share_lo": (0.05, 0.5),
    "vpn_share_span": (0.1, 0.5),
    "sharer_sessions": (0.3, 1.5),
    "subtle_sessions": (0.15, 0.6),
    "subtle_days_per_week": (1, 7),
    "subtle_km_lo": (1.0, 10.0),
    "subtle_km_span": (2.0, 30.0),
}
_INTS = frozenset(
    {"trip_gap_lo", "trip_gap_span", "trip_days_lo", "trip_days_span", "profiles_max",
     "devices_max", "big_family_profiles", "big_family_tvs", "home_lease_days",
     "vpn_exit_count", "subtle_days_per_week"}
)  # fmt: skip
# Look-alike-heavy, sharer-heavy: enough of every kind per cell to see a few percent.
MIX: tuple[tuple[str, float], ...] = (
    ("household", 0.12),
    ("big_family", 0.12),
    ("traveller", 0.14),
    ("commuter", 0.08),
    ("vpn_user", 0.12),
    ("sharer", 0.2),
    ("subtle_sharer", 0.22),
)
TUNE_SEEDS = range(1, 1000)
HELD_OUT_SEEDS = range(1001, 2000)
# strata of subtle sharers by the days their borrower watched in the run
BORROWED_DAYS = {"1-2 d": (1, 2), "3-5 d": (3, 5), "6+ d": (6, 10**6)}


def draw_params(seed: int, held_out: bool) -> dict[str, float]:
    """The cell's drawn parameters (before mapping to ``SimConfig`` fields).

    >>> p = draw_params(1, held_out=False)
    >>> p == draw_params(1, held_out=False), p == draw_params(1001, held_out=True)
    (True, False)
    """
    rng = random.Random(f"sharing-matrix:{seed}")
    out: dict[str, float] = {}
    for name, (lo, hi) in RANGES.items():
        if not held_out:
            lo, hi = lo + 0.2 * (hi - lo), hi - 0.2 * (hi - lo)
        x = rng.uniform(lo, hi)
        out[name] = float(round(x)) if name in _INTS else round(x, 3)
    return out


def draw_cell(seed: int, *, held_out: bool, accounts: int = 400, days: int = 35) -> SimConfig:
    """The simulation of one matrix cell, drawn from ``seed``.

    >>> a = draw_cell(1001, held_out=True, accounts=50, days=10)
    >>> a == draw_cell(1001, held_out=True, accounts=50, days=10), a.seed
    (True, 1001)
    """
    if (seed in HELD_OUT_SEEDS) != held_out:
        raise ValueError(f"seed {seed} is not a {'held-out' if held_out else 'tuning'} seed")
    p = draw_params(seed, held_out)
    i = {k: int(v) for k, v in p.items() if k in _INTS}
    lease = i["home_lease_days"] if i["home_lease_days"] >= 2 else 0
    return SimConfig(
        accounts=accounts,
        days=days,
        seed=seed,
        mix=MIX,
        trip_gap_days=(i["trip_gap_lo"], i["trip_gap_lo"] + i["trip_gap_span"]),
        trip_days=(i["trip_days_lo"], i["trip_days_lo"] + i["trip_days_span"]),
        trip_repeat_rate=p["trip_repeat_rate"],
        profile_choices=tuple(range(1, i["profiles_max"] + 1)),
        device_choices=tuple(range(1, i["devices_max"] + 1)),
        big_family_profiles=i["big_family_profiles"],
        big_family_tvs=i["big_family_tvs"],
        ipv6_rate=p["ipv6_rate"],
        ipv6_use_rate=p["ipv6_use_rate"],
        home_lease_days=lease,
        home_pool_16_rate=p["home_pool_16_rate"],
        home_cgnat_rate=p["home_cgnat_rate"],
        missing_geo_rate=p["missing_geo_rate"],
        geo_noise_km=p["geo_noise_km"],
        geo_coarse_rate=p["geo_coarse_rate"],
        geo_absent_rate=p["geo_absent_rate"],
        vpn_exit_count=i["vpn_exit_count"],
        vpn_share_range=(p["vpn_share_lo"], min(1.0, p["vpn_share_lo"] + p["vpn_share_span"])),
        sharer_sessions=p["sharer_sessions"],
        subtle_sessions=p["subtle_sessions"],
        subtle_days_per_week=i["subtle_days_per_week"],
        subtle_km=(p["subtle_km_lo"], p["subtle_km_lo"] + p["subtle_km_span"]),
    )


def cell_quality(
    alerts: list[dict[str, Any]],
    final: Mapping[str, float],
    truths: list[dict[str, Any]],
    end_ms: int,
) -> dict[str, Any]:
    """The figures of one cell: ``sharing_alert_quality`` plus subtle recall and calibration."""
    q = sharing_alert_quality(alerts, final, truths, end_ms=end_ms)
    subtle = [t for t in truths if t["archetype"] == "subtle_sharer"]
    q["subtle_recall"] = sharing_alert_quality(alerts, final, subtle, end_ms=end_ms)["recall"]
    # how much a subtle sharer's borrower watched (days with a playback, simulator truth):
    # a borrower seen on one or two days leaves one or two days of evidence
    q["subtle_by_borrowed_days"] = {}
    for label, (lo, hi) in BORROWED_DAYS.items():
        band = [t for t in subtle if lo <= t.get("borrowed_days", 0) <= hi]
        sq = sharing_alert_quality(alerts, final, band, end_ms=end_ms)
        q["subtle_by_borrowed_days"][label] = {"sharers": sq["sharers"], "recall": sq["recall"]}
    # the last score against what was still true at the end (a borrower blocked or paid
    # for is no sharing any more: those accounts are left out); ``_ever_shared`` is
    # the same against "ever shared", as this benchmark measured before
    for suffix, truth_of in (("", shared_at_end), ("_ever_shared", lambda t: t["shared"])):
        known = [(final[t["account_id"]], bool(y)) for t in truths
                 if t["account_id"] in final and (y := truth_of(t)) is not None]  # fmt: skip
        diagram = reliability([x for x, _ in known], [y for _, y in known])
        q["reliability" + suffix] = diagram
        q["ece" + suffix] = expected_calibration_error(diagram)
        if not suffix:  # each account's last score and whether still shared (--fit-calibration)
            q["last_scores"] = known
    return q


def run_cell(
    cfg: SimConfig, *, with_prior: bool, geo_grid_km: float = GEO_GRID_KM, calibrated: bool = True
) -> dict[str, dict[str, Any]]:
    """The figures of one cell: the pipeline's (and the prior's alone). Not ``calibrated``:
    the score is the blend of prior and model as it is, alerting at 0.7 / 0.5 (where the
    calibrated score alerts: the same alerts)."""
    truths: list[dict[str, Any]] = []
    events = list(simulate(cfg, truths.append))
    end = cfg.start_ms + cfg.days * DAY_MS
    t0 = time.perf_counter()
    blend: dict[str, Any] = {}
    if not calibrated:
        blend = {"sharing_alert": AlertConfig(*BLEND_LEVELS[::-1]), "sharing_calibration": ()}
    r = replay(events, cfg=EngineConfig(geo_grid_km=geo_grid_km, **blend))
    final = {t["account_id"]: 0.0 for t in truths}
    final.update({a: s["sharing_score"] for a, s in r.scores.items()})
    out = {"pipeline": cell_quality(r.alerts, final, truths, end)}
    if with_prior:
        prior = PriorOnly()
        prior_events(events, prior, Censuses(1, POPULAR_ACCOUNTS), geo_grid_km)  # one worker
        scores = {t["account_id"]: prior.final.get(t["account_id"], 0.0) for t in truths}
        out["prior"] = cell_quality(prior.alerts, scores, truths, end)
    print(
        f"  seed {cfg.seed}: {len(events):,} events, {time.perf_counter() - t0:.0f} s",
        file=sys.stderr,
    )
    return out


def _fmt(q: Mapping[str, Any]) -> str:
    fp = q["fp_rate"]
    looks = " ".join(f"{k[:6]}={fp.get(k, float('nan')):.1%}" for k in LOOK_ALIKES)
    return (
        f"P={q['precision']:.3f} R={q['recall']:.3f} subtle={q['subtle_recall']:.2f} "
        f"AUC={q['auc']:.3f} delay={q['median_delay_days']:.2f}d ECE={q['ece']:.3f} "
        f"(ever shared: AUC={q['auc_ever_shared']:.3f} ECE={q['ece_ever_shared']:.3f}) | FP {looks}"
    )


def worst(cells: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The worst value of each figure over cells (low for P/R/AUC, high for FP/delay/ECE)."""
    return {
        "precision": min(c["precision"] for c in cells),
        "recall": min(c["recall"] for c in cells),
        "subtle_recall": min(c["subtle_recall"] for c in cells),
        "auc": min(c["auc"] for c in cells),
        "auc_ever_shared": min(c["auc_ever_shared"] for c in cells),
        "median_delay_days": max(c["median_delay_days"] for c in cells),
        "ece": max(c["ece"] for c in cells),
        "ece_ever_shared": max(c["ece_ever_shared"] for c in cells),
        "fp_rate": {k: max(c["fp_rate"].get(k, 0.0) for c in cells) for k in LOOK_ALIKES},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tune", type=int, default=4, help="tuning cells (seeds 1..N)")
    ap.add_argument("--held-out", type=int, default=4, help="held-out cells (seeds 1001..)")
    ap.add_argument("--only", choices=("tune", "held-out"), help="run one group only")
    ap.add_argument("--accounts", type=int, default=400)
    ap.add_argument("--days", type=int, default=35)
    ap.add_argument("--prior", action="store_true", help="also score the evidence prior alone")
    ap.add_argument("--json", type=Path, help="write every figure (and the diagrams) here")
    ap.add_argument("--fit-calibration", action="store_true",
                    help="replay without the sharing score's calibration and print the one "
                    "fitted on each group's cells (models.sharing.CALIBRATION: the tuning "
                    "cells'), with each cell's ECE under the map fitted on the others")  # fmt: skip
    ap.add_argument("--geo-grid-km", type=float, default=GEO_GRID_KM,
                    help="coarsen coordinates to this grid, as the worker's ingest does "
                    "(CHURNWATCH_GEO_GRID_KM; 0: as the simulator sends them)")  # fmt: skip
    args = ap.parse_args()
    groups = []
    if args.only != "held-out" and args.tune:
        groups.append(("tune", [TUNE_SEEDS[i] for i in range(args.tune)], False))
    if args.only != "tune" and args.held_out:
        groups.append(("held-out", [HELD_OUT_SEEDS[i] for i in range(args.held_out)], True))
    report: dict[str, Any] = {}
    for name, seeds, held_out in groups:
        print(f"{name} cells ({args.accounts} accounts x {args.days} days each):")
        cells: dict[str, list[dict[str, Any]]] = {}
        for seed in seeds:
            print(f"{name}: cell {seed}: {draw_params(seed, held_out)}", file=sys.stderr)
            res = run_cell(
                draw_cell(seed, held_out=held_out, accounts=args.accounts, days=args.days),
                with_prior=args.prior,
                geo_grid_km=args.geo_grid_km,
                calibrated=not args.fit_calibration,
            )
            for label, q in res.items():
                cells.setdefault(label, []).append(q)
                print(f"  cell {seed:>4} {label:<8} {_fmt(q)}", flush=True)
        for label, qs in cells.items():
            w = worst(qs)
            print(f"  WORST     {label:<8} {_fmt({**w, 'fp_rate': w['fp_rate']})}")
            print(f"  subtle recall by days the borrower watched ({label}, cells pooled): "
                  + ", ".join(f"{band} {r:.2f} (n={n})"
                              for band, (r, n) in _pool_strata(qs).items()))  # fmt: skip
            pooled = [b for q in qs for b in q["reliability"]]
            print(f"  reliability ({label}, cells pooled): " + " ".join(
                f"[{b['lo']:.1f},{b['hi']:.1f}) n={b['n']} p={b['predicted']:.2f} "
                f"o={b['observed']:.2f}" for b in _pool(pooled)))  # fmt: skip
            if args.fit_calibration and label == "pipeline":
                _print_fit([q["last_scores"] for q in qs])
            for q in qs:
                del q["last_scores"]
            report[f"{name}/{label}"] = {"cells": dict(zip(seeds, qs, strict=True)), "worst": w}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))


def _print_fit(cells: list[list[tuple[float, bool]]]) -> None:
    """The calibration fitted on every cell's last scores (alert levels 0.5 and 0.7 as
    knots), and each cell's ECE under the map fitted on the other cells."""
    table = fit_calibration(*zip(*[p for c in cells for p in c], strict=True), anchors=BLEND_LEVELS)
    print(f"  calibration fitted on {len(cells)} cells: CALIBRATION = {table}")
    if len(cells) < 2:
        return  # no other cell to fit on
    loo = []
    for i, cell in enumerate(cells):
        others = [p for j, c in enumerate(cells) if j != i for p in c]
        t = fit_calibration(*zip(*others, strict=True), anchors=BLEND_LEVELS)
        loo.append(calibration_errors(*zip(*cell, strict=True), t))
    print("  ECE of each cell, as it is -> under the map fitted on the other cells: "
          + ", ".join(f"{a:.3f} -> {b:.3f}" for a, b in loo))  # fmt: skip


def _pool_strata(cells: list[Mapping[str, Any]]) -> dict[str, tuple[float, int]]:
    """Subtle-sharer recall by days the borrower watched, cells pooled: band -> (recall, n).

    >>> c = {"subtle_by_borrowed_days": {"1-2 d": {"sharers": 2, "recall": 0.5},
    ...                                  "3-5 d": {"sharers": 0, "recall": float("nan")},
    ...                                  "6+ d": {"sharers": 1, "recall": 1.0}}}
    >>> _pool_strata([c, c])["1-2 d"], _pool_strata([c])["6+ d"]
    ((0.5, 4), (1.0, 1))
    """
    out = {}
    for band in BORROWED_DAYS:
        strata = [c["subtle_by_borrowed_days"][band] for c in cells]
        n = sum(s["sharers"] for s in strata)
        hits = sum(s["sharers"] * s["recall"] for s in strata if s["sharers"])
        out[band] = (hits / n if n else float("nan"), n)
    return out


def _pool(bins: list[Mapping[str, float]]) -> list[dict[str, float]]:
    """Merge reliability bins of several cells (same edges) into one diagram."""
    merged: dict[float, list[float]] = {}
    for b in bins:
        m = merged.setdefault(b["lo"], [b["hi"], 0, 0.0, 0.0])
        m[1] += b["n"]
        m[2] += b["n"] * b["predicted"]
        m[3] += b["n"] * b["observed"]
    return [
        {"lo": lo, "hi": hi, "n": int(n), "predicted": p / n, "observed": o / n}
        for lo, (hi, n, p, o) in sorted(merged.items())
    ]


if __name__ == "__main__":
    main()
