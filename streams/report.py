"""``churnwatch report``: one self-contained HTML page on model and alert quality.

Recorded events (JSONL, ours or your own) go through the worker's own pipeline
(``models.replay``), starting from a model bundle if one is given. Every
labelled example is scored *before* the model learns it (prequential, as the
worker's learner does), so the curves say how the scores would have done live; a
sharing example's score is the one the engine publishes and alerts on (evidence prior,
learned model and calibration: ``models.engine.published_sharing``), not the learned
model's own probability.
The page shows, for both models: ROC and precision-recall curves, the
reliability diagram, and precision, recall and volume by threshold with the
configured threshold marked; for the alerts: volume per day, the lead time of
churn alerts before the cancellation they foresaw, and sharing alerts by action.
Plots are inline SVG (matplotlib): the file can be mailed or attached to a ticket.
"""

from __future__ import annotations

import argparse
import html
import io
import math
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.quality import (
    DAY_MS,
    WINDOW,
    Scored,
    auc,
    by_threshold,
    calibration_error,
    lead_times_days,
    pr_points,
    reliability,
    roc_points,
)
from models.risk import KINDS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from models.engine import EngineConfig, Models

THRESHOLDS = [round(i / 100, 2) for i in range(1, 100)]
COLORS = {"churn": "#c0392b", "sharing": "#2471a3"}


@dataclass
class ReportData:
    """What the page is drawn from."""

    scored: list[Scored] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    cancellations: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    events: int = 0
    applied: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    sources: list[str] = field(default_factory=list)


def as_scored(example: dict[str, Any], p: float) -> Scored:
    """A training example and the probability its model gave it before learning it, as
    the engine alerts on it (a cancelled account's churn score is 1).

    >>> as_scored({"model": "churn", "features": {"cancelled": 1.0}, "label": True,
    ...            "snapshot_ts": 7}, 0.2)
    Scored(kind='churn', score=1.0, label=True, ts=7)
    """
    kind = example["model"]
    if kind == "churn" and example["features"].get("cancelled", 0.0) >= 1.0:
        p = 1.0
    return Scored(kind, p, bool(example["label"]), int(example["snapshot_ts"]))


def collect(
    docs: Iterator[dict[str, Any]], cfg: EngineConfig, models: Models | None = None
) -> ReportData:
    """Replay ``docs`` (contract event dicts) and keep what the report needs."""
    from models.contract import parse_ts
    from models.engine import published_sharing
    from models.replay import replay

    data = ReportData()

    def watched() -> Iterator[dict[str, Any]]:
        for doc in docs:
            if doc.get("type") == "subscription_cancelled":
                try:
                    data.cancellations[str(doc.get("account_id"))].append(parse_ts(doc["ts"]))
                except (KeyError, TypeError, ValueError):
                    pass  # the replay dead-letters it
            yield doc

    def on_examples(examples: list[dict[str, Any]], now: Models) -> None:
        for x in examples:
            lrn = now.get(x["model"])
            p = lrn.predict_proba(x["features"])
            if x["model"] == "sharing":  # what the engine publishes and alerts on
                p = published_sharing(x["features"], p, lrn.examples, cfg)
            data.scored.append(as_scored(x, p))

    result = replay(watched(), cfg=cfg, models=models, on_examples=on_examples)
    for times in data.cancellations.values():
        times.sort()
    data.alerts, data.events, data.applied = result.alerts, result.events, result.applied
    stamps = [parse_ts(a["ts"]) for a in data.alerts] + [s.ts for s in data.scored]
    data.first_ts, data.last_ts = (min(stamps), max(stamps)) if stamps else (None, None)
    return data


# --- figures --------------------------------------------------------------------------


def _figure(title: str) -> tuple[Figure, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _by_kind(data: ReportData) -> dict[str, list[Scored]]:
    return {k: [s for s in data.scored if s.kind == k] for k in KINDS}


def _no_data(ax: Any, why: str) -> None:
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, color="#666")


def _curves(ax: Any, data: ReportData, points: Any, label: Any) -> None:
    """One curve per model kind: ``points(scored)``, labelled ``label(kind, scored, pts)``."""
    for kind, scored in _by_kind(data).items():
        pts = points(scored)
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, color=COLORS[kind], label=label(kind, scored, pts))


def _base_rate(scored: list[Scored]) -> float:
    return sum(s.label for s in scored) / len(scored)


def fig_roc(data: ReportData) -> str:
    fig, ax = _figure("ROC (prequential: scored before learned)")
    ax.plot([0, 1], [0, 1], ls="--", color="#999", lw=1, label="chance")
    _curves(ax, data, roc_points, lambda kind, scored, pts: f"{kind}: AUC {auc(pts):.3f}")
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="lower right")
    return _svg(fig)


def fig_pr(data: ReportData) -> str:
    fig, ax = _figure("Precision and recall")
    _curves(ax, data, pr_points,
            lambda kind, scored, pts: f"{kind} (base rate {_base_rate(scored):.1%})")  # fmt: skip
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    if ax.get_lines():  # none before the first positive example (a live page)
        ax.legend(loc="upper right")
    return _svg(fig)


def fig_reliability(data: ReportData) -> str:
    fig, ax = _figure("Reliability: predicted vs observed")
    ax.plot([0, 1], [0, 1], ls="--", color="#999", lw=1, label="calibrated")
    for kind, scored in _by_kind(data).items():
        table = reliability(scored)
        if table:
            xs, ys, ns = zip(*table, strict=True)
            ece = calibration_error(table)
            ax.plot(xs, ys, marker="o", color=COLORS[kind], label=f"{kind}: ECE {ece:.3f}")
            for x, y, n in table:
                ax.annotate(f"{n}", (x, y), fontsize=7, xytext=(3, -9), textcoords="offset points")
    ax.set(xlabel="mean predicted probability", ylabel="observed positive rate",
           xlim=(0, 1), ylim=(0, 1))  # fmt: skip
    ax.legend(loc="upper left")
    return _svg(fig)


def fig_threshold(data: ReportData, kind: str, current: float) -> str:
    scored = _by_kind(data)[kind]
    fig, ax = _figure(f"{kind}: precision, recall and volume by threshold")
    if not scored:
        _no_data(ax, f"no labelled {kind} examples")
        return _svg(fig)
    rows = by_threshold(scored, THRESHOLDS)
    ts = [r.threshold for r in rows]
    ax.plot(ts, [r.precision for r in rows], color=COLORS[kind], label="precision")
    ax.plot(ts, [r.recall for r in rows], color=COLORS[kind], ls=":", label="recall")
    share = ax.twinx()
    share.plot(ts, [r.flagged / len(scored) for r in rows], color="#7f8c8d", lw=1,
               label="share flagged")  # fmt: skip
    share.set_ylabel("share of examples flagged")
    share.set_ylim(0, 1)
    ax.axvline(current, color="black", lw=1)
    at = by_threshold(scored, [current])[0]
    ax.annotate(f"threshold {current:g}\nP {at.precision:.2f} R {at.recall:.2f}",
                (current, 0.98), xytext=(4, -4), textcoords="offset points", va="top",
                fontsize=8)  # fmt: skip
    ax.set(xlabel="threshold", ylabel="precision / recall", xlim=(0, 1), ylim=(0, 1.02))
    lines = ax.get_lines()[:2] + share.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="lower left")
    return _svg(fig)


def fig_alerts_per_day(data: ReportData) -> str:
    fig, ax = _figure("Alerts per day (event time)")
    if not data.alerts:
        _no_data(ax, "no alerts")
        return _svg(fig)
    from models.contract import parse_ts

    first_day = min(parse_ts(a["ts"]) for a in data.alerts) // DAY_MS
    last_day = max(parse_ts(a["ts"]) for a in data.alerts) // DAY_MS
    days = list(range(first_day, last_day + 1))
    for kind in KINDS:
        per_day = Counter(parse_ts(a["ts"]) // DAY_MS for a in data.alerts if a["kind"] == kind)
        ax.plot([d - first_day for d in days], [per_day.get(d, 0) for d in days],
                color=COLORS[kind], label=kind, drawstyle="steps-mid")  # fmt: skip
    ax.set(xlabel=f"day since {_day(first_day * DAY_MS)}", ylabel="alerts")
    ax.legend(loc="upper left")
    return _svg(fig)


def fig_lead_times(data: ReportData, horizon_ms: int) -> str:
    from models.contract import parse_ts

    fig, ax = _figure("Churn alerts: lead time before cancellation")
    early = [(a["account_id"], parse_ts(a["ts"])) for a in data.alerts
             if a["kind"] == "churn" and a["action"] != "win_back"]  # fmt: skip
    leads, missed = lead_times_days(early, data.cancellations, horizon_ms)
    if not early:
        _no_data(ax, "no early-warning churn alerts (win_back alerts come after the fact)")
        return _svg(fig)
    ax.hist(leads, bins=range(0, int(horizon_ms / DAY_MS) + 2), color=COLORS["churn"])
    median = sorted(leads)[len(leads) // 2] if leads else math.nan
    ax.set(xlabel="days from alert to cancellation", ylabel="alerts")
    ax.text(0.98, 0.97, f"median {median:.1f} days\n{len(leads)} of {len(early)} early-warning "
            f"alerts\nfollowed by a cancellation\nwithin {horizon_ms / DAY_MS:g} days",
            transform=ax.transAxes, ha="right", va="top", fontsize=8)  # fmt: skip
    return _svg(fig)


def fig_sharing_actions(data: ReportData) -> str:
    fig, ax = _figure("Sharing alerts by recommended action")
    counts = Counter(a["action"] for a in data.alerts if a["kind"] == "sharing")
    if not counts:
        _no_data(ax, "no sharing alerts")
        return _svg(fig)
    names = sorted(counts)
    ax.bar(names, [counts[n] for n in names], color=COLORS["sharing"])
    ax.set(ylabel="alerts")
    return _svg(fig)


# --- page -------------------------------------------------------------------------------

# Runs in the browser: marks each figure with what it drew, so a test (and a reader's
# console) can tell a drawn plot from a blank one.
_SELF_CHECK = """
document.querySelectorAll("figure[data-plot]").forEach(function (f) {
  var svg = f.querySelector("svg"), box = svg ? svg.getBoundingClientRect() : null;
  var marks = svg ? svg.querySelectorAll("path, line, rect, text, use").length : 0;
  f.dataset.drawn = (box && box.width > 50 && box.height > 50 && marks > 10) ? "yes" : "no";
  f.dataset.marks = marks;
});
document.body.dataset.checked = "yes";
"""


def _day(ts_ms: int | None) -> str:
    if ts_ms is None:
        return "—"
    return datetime.fromtimestamp(ts_ms / 1000, UTC).date().isoformat()


def _thresholds(cfg: EngineConfig) -> dict[str, float]:
    return {"churn": cfg.churn_alert.threshold, "sharing": cfg.sharing_alert.threshold}


def model_figures(data: ReportData, thresholds: dict[str, float]) -> list[tuple[str, str]]:
    """``(name, svg)`` of the model-quality plots: what the CLI page and ``/quality`` share."""
    import matplotlib

    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: small, searchable
    return [
        ("roc", fig_roc(data)),
        ("pr", fig_pr(data)),
        ("reliability", fig_reliability(data)),
        ("threshold-churn", fig_threshold(data, "churn", thresholds["churn"])),
        ("threshold-sharing", fig_threshold(data, "sharing", thresholds["sharing"])),
    ]


def _summary(data: ReportData, thresholds: dict[str, float], *, alerts: bool) -> str:
    """The table of figures per model (with the alert count when ``alerts``)."""
    rows = []
    for kind, scored in _by_kind(data).items():
        at = by_threshold(scored, [thresholds[kind]])[0]
        count = f"<td>{sum(a['kind'] == kind for a in data.alerts):,}</td>" if alerts else ""
        rows.append(
            f"<tr><td>{kind}</td><td>{len(scored):,}</td><td>{sum(s.label for s in scored):,}"
            f"</td><td>{auc(roc_points(scored)):.3f}</td>"
            f"<td>{calibration_error(reliability(scored)):.3f}</td><td>{thresholds[kind]:g}</td>"
            f"<td>{at.precision:.2f}</td><td>{at.recall:.2f}</td>{count}</tr>"
        )
    head = "<th>alerts</th>" if alerts else ""
    return f"""<table><tr><th>model</th><th>examples</th><th>positives</th><th>ROC AUC</th>
<th>calibration error</th><th>threshold</th><th>precision</th><th>recall</th>{head}</tr>
{"".join(rows)}</table>"""


def _page(title: str, intro: str, table: str, figures: list[tuple[str, str]]) -> str:
    body = "\n".join(f'<figure data-plot="{name}">{svg}</figure>' for name, svg in figures)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
td, th {{ border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: right; }}
th {{ background: #f4f4f4; }}
.plots {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(640px, 1fr)); }}
figure {{ margin: 0.5rem; }} figure svg {{ width: 100%; height: auto; }}
</style></head>
<body>
<h1>{title}</h1>
<p>{intro}</p>
{table}
<div class="plots">
{body}
</div>
<script>{_SELF_CHECK}</script>
</body></html>
"""


def render(data: ReportData, cfg: EngineConfig) -> str:
    """The HTML page of ``churnwatch report``."""
    thresholds = _thresholds(cfg)
    figures = model_figures(data, thresholds) + [
        ("alerts-per-day", fig_alerts_per_day(data)),
        ("lead-times", fig_lead_times(data, cfg.state.horizon_ms)),
        ("sharing-actions", fig_sharing_actions(data)),
    ]
    sources = ", ".join(html.escape(s) for s in data.sources) or "—"
    intro = f"""{data.events:,} events ({data.applied:,} applied) from {sources}; event time
{_day(data.first_ts)} to {_day(data.last_ts)}. Every example was scored before the model
learned it (prequential), as the worker's learner does. Precision and recall are of the
labelled examples (weekly churn snapshots, sharing verification outcomes) at the
configured thresholds."""
    table = _summary(data, thresholds, alerts=True)
    return _page("churnwatch quality report", intro, table, figures)


def render_live(scored: list[Scored], cfg: EngineConfig, started_ms: int | None) -> str:
    """The worker's ``/quality`` page: the model-quality part of the report, drawn from
    the learner's recent scores (``models.quality.Window``); no alert plots (the learner
    does not see alerts)."""
    data = ReportData(scored=scored)
    if scored:
        data.first_ts, data.last_ts = min(s.ts for s in scored), max(s.ts for s in scored)
    thresholds = _thresholds(cfg)
    started = "—" if started_ms is None else _time(started_ms)
    intro = f"""The labelled examples this worker's learner learned since it started
({started}), the last {WINDOW:,} per model at most: snapshot event time {_day(data.first_ts)}
to {_day(data.last_ts)}. Every example was scored before the model learned it
(prequential). Precision and recall at the configured thresholds. The page restarts
empty with the learner; <code>churnwatch report</code> draws the same from recorded
events, with the alerts."""
    table = _summary(data, thresholds, alerts=False)
    return _page("churnwatch live model quality", intro, table, model_figures(data, thresholds))


def _time(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "report",
        help="write an HTML quality report from recorded events",
        description="Replay recorded events (JSONL) through the worker's pipeline, scoring "
        "every labelled example before learning it, and write one self-contained HTML page: "
        "ROC and precision-recall curves, reliability diagram, precision, recall and volume "
        "by threshold (the configured thresholds marked), alerts per day, lead time of churn "
        "alerts, sharing alerts by action. Thresholds come from CHURNWATCH_* settings.",
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="JSONL event files")
    p.add_argument("--bundle", type=Path, help="start from this model bundle (models export)")
    p.add_argument("--out", type=Path, default=Path("churnwatch-report.html"),
                   help="the HTML file to write (default: %(default)s)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("report: needs matplotlib: pip install 'churnwatch[report]'", file=sys.stderr)
        return 2
    from models.engine import Models
    from streams.cli_models import read_bundle, read_events
    from streams.settings import Settings
    from streams.simio import Progress

    missing = [f"report: cannot read {p}" for p in args.files if not p.is_file()]
    if missing:
        print("\n".join(missing), file=sys.stderr)
        return 2
    models = None
    if args.bundle is not None:
        learners = read_bundle(args.bundle)
        if learners is None:
            return 2
        models = Models.fresh()
        for kind, learner in learners.items():
            setattr(models, kind, learner)
    cfg = Settings.from_env().engine_config()
    total = sum(p.stat().st_size for p in args.files)
    progress = Progress("report", None if args.quiet else sys.stderr, total_bytes=total)
    bad: list[str] = []

    def docs() -> Iterator[dict[str, Any]]:
        for doc, size in read_events(args.files, lambda p, n: bad.append(f"{p}:{n}")):
            progress.tick(doc.get("ts"), size)
            yield doc

    data = collect(docs(), cfg, models)
    progress.done()
    data.sources = [str(p) for p in args.files]
    args.out.write_text(render(data, cfg), encoding="utf-8")
    print(f"report: {len(data.scored):,} labelled examples, {len(data.alerts):,} alerts, "
          f"{len(bad):,} lines not JSON objects; wrote {args.out}")  # fmt: skip
    return 0
