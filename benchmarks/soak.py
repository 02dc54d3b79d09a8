"""Soak (issue #13, item 5): a steady load for a long time; memory must stay flat.

    python benchmarks/soak.py                    # full scale: 1 hour at half the measured maximum
    python benchmarks/soak.py --quick            # the CI scale (~80 s)
    python benchmarks/soak.py --minutes 20 --rate 3000 --json soak.json

One worker (``python -m streams worker``, default settings, its own consumer group and
topics) on the broker of ``KAFKA_BOOTSTRAP_SERVERS``, or on a local broker of its own:

1. **calibration** (``--rate auto``, the default): the first ``--calibrate`` events (by
   default a whole lap) go to the input topics at once, and the worker's applied rate
   over the end of that backlog (from 60% to 95% of it applied) is its measured
   maximum (the states have a lap of history by then);
2. **soak**: the stream goes on at half that maximum (or ``--rate``) for ``--minutes``.
   The input is simulated households (``--accounts``) living lap after lap of
   ``--days`` days (the same accounts, a new seed each lap, event time running on), as
   unkeyed JSON arrays of ``--batch`` events;
3. every ``--every`` s the worker's ``/metrics`` is sampled: resident memory, decoded
   states in memory, the mean encoded state written in the interval, the census of
   shared networks, the learner's snapshot size, events held by the merges, consumer
   lag.

The first ``--warmup`` share of the soak is warm-up (the account states fill their
day rings, the census its window). After it each figure is checked for growth: its
least-squares trend over the samples, as a share of its mean, at most
``--tolerance`` (5%) beyond twice its standard error (the noise: the population is
redrawn every lap, so a small population swings from lap to lap); the learners'
snapshots and the events held are bounded, not flat; the input sent and not yet
applied must stay below ``--max-lag`` seconds of input (the worker keeps up). Prints
the samples and a table of the checks (exit 1 if one fails); progress lines go to
stderr.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from models.simulator import SimConfig, simulate
from models.timepolicy import DAY_MS
from streams.demo import scrape
from streams.devbroker import on_a_broker
from streams.devworker import WorkerProc, isolated_env
from streams.settings import Settings
from streams.simio import KafkaSink, RateLimiter, encode_events
from streams.topics import ensure_topics

START_MS = 1_262_304_000_000  # 2010-01-01: laps of event time that end long before now
# (figure, how it is read from a sample, unit): the figures that must stay flat
FLAT = (
    ("resident memory", "rss", "MB"),
    ("decoded states in memory", "cached", "states"),
    ("mean state written", "state_bytes", "B"),
    ("census prefixes", "census_prefixes", ""),
    ("census (prefix, account) pairs", "census_entries", ""),
    ("learner snapshots", "snapshot_bytes", "KB"),
    ("events held (ingest + merge)", "held", ""),
)
# the learners' snapshots fill up to a bound by design (each remembers the hashes of
# its last models.learner.MAX_IDS example ids, 16 KB when full, the sharing learner's
# slowly: it sees few examples): checked against the bound, not for a trend
SNAPSHOTS_KB = 64.0  # churn and sharing, 32 KB each (issue #12)
# what the worker does with an input event (its counters, without _total)
HANDLED = ("events_applied", "duplicates_dropped", "late_events_dropped", "dead_letters")
# the calibration's rate is measured between these shares of its backlog applied
CALIBRATE_SHARES = (0.6, 0.95)
QUICK = {
    "accounts": 60,
    "days": 60,
    "minutes": 1.0,
    "calibrate": 40_000,
    "every": 2.0,
    "warmup": 0.4,
}


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def laps(accounts: int, days: int, seed: int) -> Iterator[dict[str, Any]]:
    """The same households living lap after lap of ``days`` days, without end."""
    lap = 0
    while True:
        cfg = SimConfig(accounts=accounts, days=days, seed=seed + lap,
                        start_ms=START_MS + lap * days * DAY_MS)  # fmt: skip
        yield from simulate(cfg)
        lap += 1


@dataclass
class Sample:
    t: float  # seconds since the soak began (negative: calibration)
    applied: float
    rss: float  # MB
    cached: float
    state_bytes: float  # mean bytes per state written since the last sample
    census_prefixes: float
    census_entries: float
    snapshot_bytes: float  # KB, every model
    held: float
    lag: float  # input events sent and not handled yet (:func:`handled`)
    event_day: float  # days of event time since START_MS, as sent

    @staticmethod
    def row_header() -> str:
        return (f"{'t s':>7} {'applied':>10} {'RSS MB':>7} {'states':>7} {'state B':>8} "
                f"{'prefixes':>8} {'pairs':>7} {'snap KB':>7} {'held':>6} {'behind':>7} {'day':>6}")  # fmt: skip

    def row(self) -> str:
        return (f"{self.t:7.0f} {self.applied:10,.0f} {self.rss:7.1f} {self.cached:7.0f} "
                f"{self.state_bytes:8.0f} {self.census_prefixes:8.0f} {self.census_entries:7.0f} "
                f"{self.snapshot_bytes:7.1f} {self.held:6.0f} {self.lag:7.0f} {self.event_day:6.0f}")  # fmt: skip


@dataclass
class Feed:
    """Sends the endless input from a thread: a backlog first, then at a steady rate."""

    sink: KafkaSink
    events: Iterator[dict[str, Any]]
    sent: int = 0
    last_ts: int = START_MS
    rate: float | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    backlog_done: threading.Event = field(default_factory=threading.Event)

    def run(self, backlog: int) -> None:
        items = encode_events(self.events)
        for value, account, kind, ts in items:
            self.sink.send(value, account, kind, ts)
            self.sent += 1
            if self.sent >= backlog:
                break
        self.sink.flush()
        self.backlog_done.set()
        while self.rate is None and not self.stop.is_set():
            time.sleep(0.05)  # the rate comes from the calibration
        limiter = RateLimiter(self.rate)
        for value, account, kind, ts in items:
            if self.stop.is_set():
                break
            limiter.wait()
            self.sink.send(value, account, kind, ts)
            self.sent += 1
            self.last_ts = int(ts) if isinstance(ts, int) else self.last_ts
            if self.sent % 2000 == 0:
                self.sink.flush()  # a live producer's linger: batches do not wait for more
        self.sink.close()


def sample(
    w: WorkerProc, t: float, feed: Feed, prev: dict[str, float] | None
) -> tuple[Sample, dict[str, float]]:
    m = scrape(w.url + "/metrics")
    writes = m.get("churnwatch_state_writes_total", 0.0)
    written = m.get("churnwatch_state_written_bytes_total", 0.0)
    dw = writes - (prev or {}).get("churnwatch_state_writes_total", 0.0)
    db = written - (prev or {}).get("churnwatch_state_written_bytes_total", 0.0)
    return Sample(
        t=t,
        applied=m.get("churnwatch_events_applied_total", 0.0),
        rss=m.get("process_resident_memory_bytes", 0.0) / 2**20,
        cached=m.get("churnwatch_accounts_in_state", 0.0),
        state_bytes=db / dw if dw else math.nan,  # nothing written: no figure
        census_prefixes=m.get("churnwatch_census_prefixes", 0.0),
        census_entries=m.get("churnwatch_census_entries", 0.0),
        snapshot_bytes=m.get("churnwatch_model_snapshot_bytes", 0.0) / 1024,
        held=m.get("churnwatch_input_events_held", 0.0)
        + m.get("churnwatch_account_events_held", 0.0),
        lag=max(0.0, feed.sent - handled(m)),
        event_day=(feed.last_ts - START_MS) / DAY_MS,
    ), m


def handled(m: dict[str, float]) -> float:
    """Input events the worker is done with: applied, or dropped as duplicates or late
    (the simulated input repeats ~0.2% of its events, as producers' retries do: counted
    as behind, they made the lag grow by 30,000 events over an hour), or dead-lettered."""
    return sum(m.get(f"churnwatch_{name}_total", 0.0) for name in HANDLED)


def growth(values: list[float]) -> float | None:
    """The trend over the samples as a share of their mean: the least-squares slope
    times the number of samples, divided by the mean (None: fewer than 3 samples, or
    a mean of 0). A trend, not first against last: a census or a queue goes up and
    down with each day of event time and each buffer, and a leak shows as a slope.

    >>> round(growth([10, 11, 10, 10.2, 10.4, 10.3]), 3), growth([1, 2]), growth([0.0] * 6)
    (-0.002, None, None)
    >>> round(growth([10, 10, 10, 12, 13, 14]), 2)
    0.46
    """
    fit = trend(values)
    return None if fit is None else fit[0]


def trend(values: list[float]) -> tuple[float, float] | None:
    """(growth, noise): the growth of :func:`growth` and twice its standard error
    from the scatter of the samples around the line. A population redrawn every lap
    makes the census swing by a third at the CI scale; a growth within its noise of
    the tolerance is not evidence of a leak.

    >>> [round(x, 3) for x in trend([10, 11, 12, 13, 14])]
    [0.417, 0.0]
    """
    v = [x for x in values if not math.isnan(x)]
    n = len(v)
    mean = sum(v) / n if n else 0.0
    if n < 3 or mean <= 0:
        return None
    xm = (n - 1) / 2
    sxx = sum((i - xm) ** 2 for i in range(n))
    slope = sum((i - xm) * (x - mean) for i, x in enumerate(v)) / sxx
    scatter = sum((x - mean - slope * (i - xm)) ** 2 for i, x in enumerate(v))
    se = math.sqrt(scatter / (n - 2) / sxx)
    return slope * n / mean, 2 * se * n / mean


def checks(
    samples: list[Sample], args: argparse.Namespace, rate: float
) -> list[tuple[str, str, str, bool | None]]:
    """(check, figure, limit, passed) for the samples after warm-up."""
    after = [s for s in samples if s.t >= args.warmup * args.minutes * 60]
    rows: list[tuple[str, str, str, bool | None]] = []
    # bounded, not flat: held events come and go with each buffer; the snapshots fill up
    bounds = {"held": (args.max_lag * rate, "{:,.0f}"), "snapshot_bytes": (SNAPSHOTS_KB, "{:,.1f}")}
    for name, attr, unit in FLAT:
        values = [getattr(s, attr) for s in after]
        if attr in bounds:
            limit, fmt = bounds[attr]
            top = max(values, default=0.0)
            rows.append((f"{name}, highest", f"{fmt.format(top)} {unit}".rstrip(),
                         f"<= {limit:,.0f} {unit}".rstrip(), top <= limit))  # fmt: skip
            continue
        fit = trend(values)
        if fit is None:
            rows.append((f"{name}: growth after warm-up", "-", f"<= {args.tolerance:.0%}", None))
            continue
        g, noise = fit
        figure = f"{g:+.1%} ± {noise:.1%} (last {values[-1]:,.1f} {unit})".rstrip()
        rows.append((f"{name}: growth after warm-up", figure,
                     f"<= {args.tolerance:.0%} beyond the noise", g - noise <= args.tolerance))  # fmt: skip
    top_lag = max((s.lag for s in after), default=0.0)
    limit = args.max_lag * rate
    rows.append(("events sent, not handled, after warm-up, highest", f"{top_lag:,.0f}",
                 f"<= {limit:,.0f} ({args.max_lag:g} s of input)", top_lag <= limit))  # fmt: skip
    return rows


def table(rows: list[tuple[str, str, str, bool | None]]) -> str:
    w0, w1, w2 = (max(len(r[i]) for r in rows) for i in range(3))
    mark = {True: "ok", False: "FAIL", None: "-"}
    return "\n".join(f"{r[0]:<{w0}}  {r[1]:>{w1}}  {r[2]:<{w2}}  {mark[r[3]]}" for r in rows)


def calibrate(w: WorkerProc, total: int, timeout: float) -> float:
    """The worker's handled events/s while it works through a backlog of ``total``."""
    seen: dict[float, tuple[float, float]] = {}  # share of the backlog -> (time, handled)
    deadline = time.monotonic() + timeout
    last = (time.monotonic(), 0.0)
    while time.monotonic() < deadline:
        done = handled(scrape(w.url + "/metrics"))
        now = time.monotonic()
        first, end = CALIBRATE_SHARES
        if first not in seen and done >= first * total:
            # the window opens at the poll before the first share was passed: a worker that
            # handles a buffer at once can jump past it, leaving a window of a few events
            # (once in CI: 1,055 events/s for a backlog of 40,000 handled in 6 s)
            seen[first] = last
        if end not in seen and done >= end * total:
            seen[end] = (now, done)
        if len(seen) == 2:
            (t0, a0), (t1, a1) = seen[first], seen[end]
            return (a1 - a0) / max(t1 - t0, 1e-3)
        last = (now, done)
        time.sleep(0.2)
    raise RuntimeError(
        f"the worker did not handle {CALIBRATE_SHARES[1]:.0%} of the {total:,} backlog events "
        f"in {timeout:.0f}s"
    )


def soak(args: argparse.Namespace, bootstrap: str, out: Path) -> int:
    run = uuid.uuid4().hex[:8]
    env = isolated_env(bootstrap, out / "worker", f"soak-{run}")
    env["CHURNWATCH_PARTITIONS"] = str(args.partitions)
    env.update(item.partition("=")[::2] for item in args.set)
    s = Settings.from_env(env)
    ensure_topics(s)
    w = WorkerProc(s, dict(env), out / "worker.log")
    sink = KafkaSink(bootstrap, {"subscription": s.subscription_topic, "usage": s.usage_topic},
                     batch=args.batch)  # fmt: skip
    feed = Feed(sink, laps(args.accounts, args.days, args.seed))
    thread = threading.Thread(target=feed.run, args=(args.calibrate,), daemon=True)
    say(f"soak: {args.accounts} accounts, laps of {args.days} days, worker log {w.log_path}")
    w.start()
    try:
        thread.start()
        if args.rate == "auto":
            t0 = time.monotonic()
            top = calibrate(w, args.calibrate, timeout=1800)
            rate = top / 2
            say(f"calibration: {top:,.0f} events/s handled through a backlog of {args.calibrate:,} "
                f"({time.monotonic() - t0:.0f}s); the soak runs at half: {rate:,.0f} events/s")  # fmt: skip
        else:
            rate = float(args.rate)
            feed.backlog_done.wait()
        feed.rate = rate
        samples: list[Sample] = []
        prev = None
        began = time.monotonic()
        end = began + args.minutes * 60
        say(Sample.row_header())
        while time.monotonic() < end:
            time.sleep(args.every)
            snap, prev = sample(w, time.monotonic() - began, feed, prev)
            samples.append(snap)
            say(snap.row())
        sent_rate = (feed.sent - args.calibrate) / (time.monotonic() - began)
        feed.stop.set()
        thread.join(60)
    finally:
        w.stop()
    rows = checks(samples, args, rate)
    rows.insert(
        0, ("input rate asked / sent, events/s", f"{rate:,.0f} / {sent_rate:,.0f}", "-", None)
    )
    days = samples[-1].event_day if samples else 0.0
    rows.insert(1, ("event time lived, days", f"{days:,.0f}", "-", None))
    print(table(rows))
    failed = [r[0] for r in rows if r[3] is False]
    print(f"\n{'FAILED: ' + '; '.join(failed) if failed else 'all checks passed'} "
          f"(worker log {w.log_path})")  # fmt: skip
    if args.json:
        doc = {"rate": rate, "sent_rate": sent_rate, "rows": [list(r) for r in rows],
               "samples": [vars(x) for x in samples], "failed": failed}  # fmt: skip
        args.json.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    return 1 if failed else 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--accounts", type=int, default=2000, help="simulated accounts (default 2000)")
    ap.add_argument("--days", type=int, default=120, help="days of one lap (default 120)")
    ap.add_argument(
        "--seed", type=int, default=7, help="simulation seed of the first lap (default 7)"
    )
    ap.add_argument("--minutes", type=float, default=60.0, help="length of the soak (default 60)")
    ap.add_argument(
        "--rate",
        default="auto",
        help="input events/s, or 'auto': half the maximum measured first (default)",
    )
    ap.add_argument(
        "--calibrate",
        type=int,
        default=1_500_000,
        help="events of the backlog that measures the maximum "
        "(default 1500000: a lap of 120 days of 2000 accounts)",
    )
    ap.add_argument("--batch", type=int, default=100, help="events per input message (default 100)")
    ap.add_argument("--partitions", type=int, default=8, help="partitions per topic (default 8)")
    ap.add_argument(
        "--every", type=float, default=30.0, help="seconds between samples (default 30)"
    )
    ap.add_argument(
        "--warmup", type=float, default=0.3, help="share of the soak that is warm-up (default 0.3)"
    )
    ap.add_argument(
        "--tolerance", type=float, default=0.05, help="growth allowed after warm-up (default 0.05)"
    )
    ap.add_argument(
        "--max-lag",
        type=float,
        default=10.0,
        help="input sent and not applied yet, in seconds of input (default 10)",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="the CI scale: " + ", ".join(f"--{k} {v}" for k, v in QUICK.items()),
    )
    ap.add_argument(
        "--out",
        type=Path,
        help="folder for the worker's data and log (default: a new temporary one)",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a worker setting, e.g. --set CHURNWATCH_STORE=memory (repeatable)",
    )
    ap.add_argument("--json", type=Path, help="also write the samples and checks here")
    args = ap.parse_args(argv)
    if args.quick:  # the quick scale, unless an option was given explicitly
        given = {a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:])}
        for k, v in QUICK.items():
            if f"--{k}" not in given:
                setattr(args, k, v)
    if args.rate != "auto":
        try:
            args.rate = float(args.rate)
        except ValueError:
            ap.error("--rate takes events/s or 'auto'")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="churnwatch-soak-"))
    out.mkdir(parents=True, exist_ok=True)
    return on_a_broker(out, lambda bootstrap: soak(args, bootstrap, out), say)


if __name__ == "__main__":
    sys.exit(main())
