"""Graceful stops under CPU starvation (issue #13, item 2): nothing lost, nothing doubled.

    python benchmarks/stops.py                   # 20 runs (~10 minutes here)
    python benchmarks/stops.py --runs 1          # one run (~30 s)
    python benchmarks/stops.py --batch 1 --burners 4

Each run, on the broker of ``KAFKA_BOOTSTRAP_SERVERS`` or a local broker of its own: a
deployment of its own (topics, group, data dir), a backlog of simulated households
(``--accounts`` x ``--days``, a seed per run) as unkeyed JSON arrays of ``--batch``
events, ``--burners`` processes that spin on the CPU for the whole run, and one worker
(``python -m streams worker``). Once it has applied a share of the backlog (drawn per
run between 20% and 80%), the worker gets SIGTERM; a new worker on the same data dir
then works through the rest. Checked per run: the stop's exit code (0) and time, and
every account's ``events_applied`` equal to its distinct input events (an event lost
or applied twice shows there). Prints a row per run and a summary (exit 1 if a run
failed); progress lines go to stderr.

Before ``never_commit_past_in_flight`` (``streams/faust_compat.py``), a graceful stop
under a CPU burner lost one event in 2 of 9 runs; before ``read_again`` gave back the
messages read after a given-back one, in 1-2 of 20 (docs/operations.md). CI runs one
run (``tests/integration/test_shutdown.py``).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from models.simulator import SimConfig, simulate
from streams.devbroker import on_a_broker
from streams.devworker import WorkerProc, isolated_env
from streams.settings import Settings
from streams.simio import KafkaSink, encode_events
from streams.topics import ensure_topics


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def burn() -> None:
    """Spin until killed: a neighbour that wants the CPU."""
    while True:
        pass


def applied(w: WorkerProc, accounts: list[str]) -> dict[str, int]:
    got = {}
    for a in accounts:
        status, doc = w.get_json(f"/accounts/{a}")
        got[a] = doc.get("events_applied", 0) if status == 200 else 0
    return got


def one_run(i: int, args: argparse.Namespace, bootstrap: str, out: Path) -> dict[str, object]:
    rng = random.Random(args.seed + i)
    share = rng.uniform(0.2, 0.8)
    events = list(simulate(SimConfig(accounts=args.accounts, days=args.days, seed=args.seed + i)))
    expect = Counter(e["account_id"] for e in {e["event_id"]: e for e in events}.values())
    total = sum(expect.values())
    env = isolated_env(bootstrap, out / f"run{i}", f"stops-{uuid.uuid4().hex[:8]}")
    s = Settings.from_env(env)
    ensure_topics(s)
    sink = KafkaSink(bootstrap, {"subscription": s.subscription_topic, "usage": s.usage_topic},
                     batch=args.batch)  # fmt: skip
    for value, account, etype, ts in encode_events(events):
        sink.send(value, account, etype, ts)
    sink.close()
    burners = [multiprocessing.Process(target=burn, daemon=True) for _ in range(args.burners)]
    for b in burners:
        b.start()
    try:
        first = WorkerProc(s, dict(env), out / f"run{i}-first.log").start(timeout=180)
        at = first.wait_metric("churnwatch_events_applied_total", share * total, timeout=600)
        t0 = time.monotonic()
        code = first.stop(signal.SIGTERM, timeout=120)
        stop_s = time.monotonic() - t0
        second = WorkerProc(s, dict(env), out / f"run{i}-second.log").start(timeout=180)
        try:
            deadline = time.monotonic() + args.timeout
            got = applied(second, sorted(expect))
            while got != expect and time.monotonic() < deadline:
                time.sleep(2)
                got = applied(second, sorted(expect))
        finally:
            second.stop(signal.SIGTERM, timeout=120)
    finally:
        for b in burners:
            b.kill()
    diff = {a: got.get(a, 0) - n for a, n in expect.items() if got.get(a, 0) != n}
    return {
        "run": i, "events": total, "stopped_at": int(at), "exit": code, "stop_s": stop_s,
        "lost": -sum(d for d in diff.values() if d < 0),
        "doubled": sum(d for d in diff.values() if d > 0),
        "accounts_off": len(diff),
        "ok": code == 0 and not diff,
    }  # fmt: skip


HEADER = "run   events  stopped at  exit  stop s   lost  doubled  accounts off  result"
ROW = (
    "{run:>3}  {events:>7,}  {stopped_at:>10,}  {exit:>4}  {stop_s:>6.1f}  {lost:>5}  "
    "{doubled:>7}  {accounts_off:>12}  {result}"
)


def stops(args: argparse.Namespace, bootstrap: str, out: Path) -> int:
    say(f"stops: {args.runs} runs, {args.accounts} accounts x {args.days} days, "
        f"{args.burners} CPU burners, folder {out}")  # fmt: skip
    print(HEADER, flush=True)
    rows = []
    for i in range(args.runs):
        row = one_run(i, args, bootstrap, out)
        rows.append(row)
        print(ROW.format(**row, result="ok" if row["ok"] else "FAIL"), flush=True)
    bad = [r for r in rows if not r["ok"]]
    slowest = max(float(r["stop_s"]) for r in rows)  # type: ignore[arg-type]
    print(f"\n{len(rows) - len(bad)} of {len(rows)} runs lost nothing and doubled nothing; "
          f"slowest stop {slowest:.1f}s")  # fmt: skip
    return 1 if bad else 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=20, help="runs (default 20)")
    ap.add_argument("--accounts", type=int, default=60, help="simulated accounts (default 60)")
    ap.add_argument("--days", type=int, default=40, help="simulated days (default 40)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the first run (default 1)")
    ap.add_argument("--batch", type=int, default=100, help="events per input message (default 100)")
    ap.add_argument(
        "--burners",
        type=int,
        default=os.cpu_count() or 2,
        help="processes spinning on the CPU (default: one per core)",
    )
    ap.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for the rest (default 300)"
    )
    ap.add_argument("--out", type=Path, help="folder for data and logs (default: a new one)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="churnwatch-stops-"))
    out.mkdir(parents=True, exist_ok=True)
    return on_a_broker(out, lambda bootstrap: stops(args, bootstrap, out), say)


if __name__ == "__main__":
    sys.exit(main())
