"""Fault-injection harness (issue #13, item 3): nothing lost, nothing doubled.

    python benchmarks/faults.py                       # full scale: 1000 accounts x 180 days (1.03M events)
    python benchmarks/faults.py --quick               # the CI scale (~2 minutes here)
    python benchmarks/faults.py --accounts 300 --days 60 --batch 1 --json figures.json

One run, on a broker of its own (``streams.devbroker.LocalBroker`` on a free port,
its data dir kept in ``--out``: the harness stops and restarts it):

1. a simulated population (``models.simulator``, ``--accounts`` x ``--days``) goes to
   the input topics as unkeyed JSON arrays of ``--batch`` events (``churnwatch
   simulate --kafka --batch``), or one event per message keyed by account_id
   (``--batch 1``): all of it before the workers start (``--produce backlog``, the
   default: the faults hit them while they work through it), or while they run, over
   ``--duration`` s (``--produce live``: a replay at days of event time per second);
2. two workers (one consumer group, a data dir per worker identity) take these faults
   for ``--duration`` s:

   - every ``--kill-every`` s a random worker is SIGKILLed and started again at once
     on its own data dir (only when every worker is ready, never in the outage window);
   - a third worker joins at ``--join-at`` s and leaves (SIGTERM) at ``--leave-at`` s;
   - the broker is stopped at ``--outage-at`` s for ``--outage`` s and started again on
     the same port and data dir (the producer pauses meanwhile, as a producer
     that buffers would);

3. once every event is sent and applied, the checks, printed as a table (exit 1 if
   one fails):

   - every account's ``events_applied`` (``GET /accounts/{id}``, all accounts) equals
     its distinct input events;
   - the input topics' committed offsets reach their ends (consumer lag 0);
   - ``risk-alerts``: an ``(account, alert_id)`` published twice is an at-least-once
     repeat (a hard kill re-delivers what was not committed; counted); a churn alert
     id published with two different event times would be two episodes under one
     id (fails); alert ids per account and kind run 1..n without a gap;
   - ``risk-scores``: the churn and sharing model versions never go backwards, per
     partition in offset order (the records carry the model names, not the worker);
   - every restart after a kill is ready (``/readyz`` 200) within ``--ready-limit`` s
     (min/median/max printed), and so is the group after the broker comes back;
   - log lines and bytes per worker from the broker's stop to ``--log-window`` s
     after its restart (the log Throttle: at most one line per kind every 10 s);
   - no worker exits unless the harness stopped it;
   - churn alerts against a clean run: the same input through one worker of a
     deployment of its own, without faults. By default both runs score with one
     fixed model (``CHURNWATCH_LEARN=false`` and ``churnwatch models import`` of a
     bundle trained on another simulated population, or ``--bundle``) and the sets
     of churn alert ids must be equal. With ``--learn`` both runs learn and only the
     counts are compared (printed, not checked: which snapshot scored an event
     depends on timing, see docs/design.md "Known limits").

Progress lines go to stderr, the table to stdout. Worker logs, the broker's folder and
the figures stay in ``--out`` (a fresh temporary folder by default).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from models.simulator import SimConfig, simulate
from streams.devbroker import LocalBroker, cache_dir
from streams.devworker import TEST_MODEL_KEY, WorkerError, WorkerProc, isolated_env, read_all
from streams.settings import Settings
from streams.simio import KafkaSink, encode_events
from streams.topics import ensure_topics

TICK_S = 0.25
# counters summed over every worker incarnation (as last scraped, every 2 s and before a stop)
COUNTERS = ("events_applied", "duplicates_dropped", "late_events_dropped",
            "account_events_forced", "idle_partitions_woken", "recovery_stalls")  # fmt: skip


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def spread(values: list[float]) -> str:
    """min/median/max of some figures, as text.

    >>> spread([3.0, 1.0, 2.0]), spread([])
    ('1.0 / 2.0 / 3.0', '-')
    """
    if not values:
        return "-"
    return f"{min(values):.1f} / {statistics.median(values):.1f} / {max(values):.1f}"


# --- what the outputs say ------------------------------------------------------------


def episode(alert_id: str) -> tuple[str, str, int]:
    """``(account, kind, n)`` of an alert id ``ACCOUNT:KIND:N``.

    >>> episode("a-1:churn:3"), episode("x:y:sharing:12")
    (('a-1', 'churn', 3), ('x:y', 'sharing', 12))
    """
    account, kind, n = alert_id.rsplit(":", 2)
    return account, kind, int(n)


def alert_figures(alerts: list[dict[str, Any]]) -> dict[str, Any]:
    """Repeats, doubles and gaps among published alerts.

    A repeat is an ``(account, alert_id)`` published again (at-least-once); a double
    is a churn alert id published with two event times (two episodes under one id);
    a gap is a missing number in an account's ids of one kind.

    >>> a = [{"account_id": "a", "alert_id": "a:churn:1", "kind": "churn", "ts": 1},
    ...      {"account_id": "a", "alert_id": "a:churn:1", "kind": "churn", "ts": 1},
    ...      {"account_id": "a", "alert_id": "a:churn:3", "kind": "churn", "ts": 5},
    ...      {"account_id": "b", "alert_id": "b:sharing:1", "kind": "sharing", "ts": 2}]
    >>> f = alert_figures(a)
    >>> f["published"], f["distinct"], f["repeats"], f["doubled_churn"], f["gaps"]
    (4, 3, 1, 0, 1)
    """
    times: dict[tuple[str, str], set[Any]] = defaultdict(set)
    for a in alerts:
        times[(a["account_id"], a["alert_id"])].add(a["ts"])
    numbers: dict[tuple[str, str], set[int]] = defaultdict(set)
    for account, aid in times:
        _, kind, n = episode(aid)
        numbers[(account, kind)].add(n)
    gaps = sum(max(ns) - len(ns) for ns in numbers.values())
    doubled = sum(1 for (_, aid), ts in times.items() if len(ts) > 1 and episode(aid)[1] == "churn")
    redecided = sum(1 for ts in times.values() if len(ts) > 1) - doubled
    return {
        "published": len(alerts),
        "distinct": len(times),
        "repeats": len(alerts) - len(times),
        "doubled_churn": doubled,
        "redecided_sharing": redecided,
        "gaps": gaps,
        "churn_ids": {aid for (_, aid) in times if episode(aid)[1] == "churn"},
        "sharing_ids": {aid for (_, aid) in times if episode(aid)[1] == "sharing"},
    }


def model_version(name: str | None) -> int:
    """The version number of a model name such as ``churn-v17`` (-1 if there is none).

    >>> model_version("churn-v17"), model_version("sharing-v0"), model_version(None)
    (17, 0, -1)
    """
    m = re.search(r"-v(\d+)$", name or "")
    return int(m.group(1)) if m else -1


# a new model snapshot reaches every worker within seconds (the learner writes one every
# 2 s, the others read it from the models changelog): scores with the older one inside
# this window after the newer one was first used are not counted as stale
MODEL_GRACE_MS = 10_000


def stale_scores(records: list[tuple[int, dict[str, Any]]], grace_ms: int = MODEL_GRACE_MS) -> int:
    """Scores made with an older churn model more than ``grace_ms`` after a newer one was
    first published (``records``: ``(Kafka timestamp ms, score record)``). With a fixed
    model every worker should score with the imported snapshot once any worker does.

    >>> recs = [(0, {"churn_model": "churn-v0"}), (1000, {"churn_model": "churn-v1"}),
    ...         (3000, {"churn_model": "churn-v0"}), (60_000, {"churn_model": "churn-v0"})]
    >>> stale_scores(recs)
    1
    """
    first: dict[int, int] = {}
    newest, stale = -1, 0
    for ts, rec in sorted(records, key=lambda r: r[0]):
        v = model_version(rec.get("churn_model"))
        if v < newest and ts - first[newest] > grace_ms:
            stale += 1
        first.setdefault(v, ts)
        newest = max(newest, v)
    return stale


def backward_steps(records: list[tuple[int, int, dict[str, Any]]]) -> dict[str, int]:
    """How often a model version goes down, per partition in offset order, and per account.

    ``records``: ``(partition, offset, score record)``.

    >>> r = [(0, 1, {"account_id": "a", "churn_model": "churn-v2", "sharing_model": "s-v1"}),
    ...      (0, 2, {"account_id": "b", "churn_model": "churn-v1", "sharing_model": "s-v1"}),
    ...      (1, 1, {"account_id": "c", "churn_model": "churn-v1", "sharing_model": "s-v1"})]
    >>> backward_steps(r)
    {'partition': 1, 'account': 0, 'records': 3}
    """
    last_p: dict[tuple[int, str], int] = {}
    last_a: dict[tuple[str, str], int] = {}
    steps = {"partition": 0, "account": 0, "records": 0}
    for part, _, rec in sorted(records, key=lambda r: (r[0], r[1])):
        steps["records"] += 1
        for kind in ("churn_model", "sharing_model"):
            v = model_version(rec.get(kind))
            if v < 0:
                continue
            if v < last_p.get((part, kind), -1):
                steps["partition"] += 1
            if v < last_a.get((rec["account_id"], kind), -1):
                steps["account"] += 1
            last_p[(part, kind)] = max(v, last_p.get((part, kind), -1))
            last_a[(rec["account_id"], kind)] = max(v, last_a.get((rec["account_id"], kind), -1))
    return steps


# --- the run ---------------------------------------------------------------------------


@dataclass
class Identity:
    """A worker's name, environment (its data dir) and log: what a restart keeps."""

    name: str
    env: dict[str, str]
    log: Path
    proc: WorkerProc | None = None
    launched: float = 0.0
    waiting_ready: bool = False  # launched, not ready yet (a restart being timed)
    kind: str = "start"
    ready_after: float | None = None  # seconds from the launch to /readyz 200
    last: dict[str, float] = field(default_factory=dict)  # this incarnation's last /metrics
    ended: list[dict[str, float]] = field(default_factory=list)  # earlier incarnations'

    def scrape(self) -> None:
        """Keep the running incarnation's counters (a killed process takes its own along)."""
        if self.proc is not None and self.running:
            try:
                self.last = self.proc.metrics()
            except OSError:
                pass

    def counter(self, name: str) -> float:
        """``name`` summed over every incarnation, as last scraped."""
        return sum(m.get(name, 0.0) for m in [*self.ended, self.last])

    def launch(self, kind: str) -> None:
        if self.last:
            self.ended.append(self.last)
            self.last = {}
        self.proc = WorkerProc(Settings.from_env(self.env), dict(self.env), self.log).launch()
        self.launched, self.waiting_ready, self.kind = time.monotonic(), True, kind
        self.ready_after = None
        # timed by a thread of its own: the fault loop blocks at times (a broker start, a
        # SIGTERM stop), which would add to the figure
        threading.Thread(target=self._time_ready, args=(self.proc,), daemon=True).start()

    def _time_ready(self, proc: WorkerProc) -> None:
        deadline = self.launched + 600
        while time.monotonic() < deadline and proc is self.proc:
            try:
                if proc.ready():
                    self.ready_after = time.monotonic() - self.launched
                    return
            except WorkerError:  # exited
                return
            time.sleep(0.2)

    @property
    def running(self) -> bool:
        return (
            self.proc is not None and self.proc.proc is not None and self.proc.proc.poll() is None
        )


@dataclass
class Figures:
    kills: int = 0
    kills_postponed: int = 0
    ready_after_kill: list[float] = field(default_factory=list)
    ready_after_join: list[float] = field(default_factory=list)
    ready_after_outage: float | None = None
    leave_exit: int | None = None
    leave_s: float | None = None
    unexpected_exits: list[str] = field(default_factory=list)
    outage_logs: dict[str, tuple[int, int]] = field(default_factory=dict)  # lines, bytes
    log_window_s: float = 0.0
    produced_messages: int = 0
    broker_down_s: float = 0.0  # from the stop to a broker that answers again


class Harness:
    def __init__(self, args: argparse.Namespace, out: Path) -> None:
        self.args, self.out = args, out
        self.rng = random.Random(args.seed)
        self.run_id = uuid.uuid4().hex[:8]
        self.broker = LocalBroker(workdir=out / "broker")
        self.fig = Figures()
        self.sim = SimConfig(accounts=args.accounts, days=args.days, seed=args.seed)
        self.everyone: list[Identity] = []  # every worker identity made, for the cleanup
        self.lag_by_partition: dict[str, tuple[int, int]] = {}  # the last lag() seen
        # the worker's allowed lateness (event time), unless --lateness says otherwise
        self.lateness_s = args.lateness if args.lateness >= 0 else Settings().allowed_lateness_s

    def cleanup(self) -> None:
        for i in self.everyone:
            if i.proc is not None and i.running:
                i.proc.stop(signal.SIGKILL)

    # -- input --------------------------------------------------------------------

    def expected(self) -> tuple[Counter[str], int]:
        """Distinct events per account, and the events sent (duplicates included)."""
        seen: set[str] = set()
        per_account: Counter[str] = Counter()
        sent = 0
        for ev in simulate(self.sim):
            sent += 1
            if ev["event_id"] not in seen:
                seen.add(ev["event_id"])
                per_account[ev["account_id"]] += 1
        return per_account, sent

    def sink(self, s: Settings) -> KafkaSink:
        txn = {"transactional_id": f"faults-{s.app_id}"} if self.args.transactional else {}
        return KafkaSink(self.broker.bootstrap,
                         {"subscription": s.subscription_topic, "usage": s.usage_topic},
                         batch=self.args.batch, **txn)  # fmt: skip

    # -- deployments --------------------------------------------------------------

    def identity(self, name: str, deployment: str) -> Identity:
        """A worker of ``deployment``: the workers of one deployment share its group and
        topics (``isolated_env`` of one run name, input topics included), each has a data
        dir of its own."""
        run = f"{self.run_id}-{deployment}"
        env = isolated_env(self.broker.bootstrap, self.out / f"{deployment}-{name}", run)
        env.update({
            "CHURNWATCH_PARTITIONS": str(self.args.partitions),
            "CHURNWATCH_LEARN": "true" if self.args.learn else "false",
            # the same input, sent to each deployment's topics once it scores with the model
            "CHURNWATCH_SUBSCRIPTION_TOPIC": f"faults-{run}-subscription",
            "CHURNWATCH_USAGE_TOPIC": f"faults-{run}-usage",
            "CHURNWATCH_ALLOWED_LATENESS_S": f"{self.lateness_s:g}",
        })  # fmt: skip
        for item in self.args.set:
            k, _, v = item.partition("=")
            env[k] = v
        Path(env["CHURNWATCH_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
        ident = Identity(name, env, self.out / f"{deployment}-{name}.log")
        self.everyone.append(ident)
        return ident

    def bundle(self) -> Path | None:
        """The fixed model (None with ``--learn``): ``--bundle``, or trained here once."""
        if self.args.learn:
            return None
        if self.args.bundle:
            return Path(self.args.bundle)
        a, d = self.args.train_accounts, self.args.train_days
        # training is deterministic: a bundle trained once is kept with the broker's jars
        cached = cache_dir() / f"faults-bundle-{a}x{d}-seed{self.args.seed + 1000}.json"
        if cached.exists():
            say(f"fixed model: {cached} (trained before; delete it to train again)")
            return cached
        path = self.out / "train" / "models.json"
        say(f"training the fixed model on another population ({a} accounts x {d} days)")
        t = time.monotonic()
        cli("simulate", "--accounts", str(a), "--days", str(d), "--seed", str(self.args.seed + 1000),
            "--out", str(path.parent), "--quiet")  # fmt: skip
        cli("models", "train", str(path.parent / "events.jsonl"), "--out", str(path),
            env={**os.environ, "CHURNWATCH_MODEL_KEY": TEST_MODEL_KEY})  # fmt: skip
        say(f"  trained in {time.monotonic() - t:.0f}s: {path}")
        cached.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, cached)
        return path

    def prepare(self, ident: Identity, bundle: Path | None) -> Settings:
        s = Settings.from_env(ident.env)
        ensure_topics(s)
        if bundle is not None:
            cli("models", "import", str(bundle), env=ident.env)
        return s

    def wait_model(self, workers: list[Identity], bundle: Path | None) -> None:
        """Until the deployment scores with the fixed model: its learner adopted the
        import (a worker's ``churnwatch_model_examples_learned``), plus 2 s for the
        models table to reach the other workers. A worker that read its input before
        would score the first days with an untrained model and decide no churn alert
        there, so the churn alert ids of two deployments would differ by timing alone
        (docs/design.md, "Known limits")."""
        if bundle is None:
            return
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for i in workers:
                i.scrape()
            if any(i.last.get("churnwatch_model_examples_learned", 0) > 0 for i in workers):
                time.sleep(2)
                return
            time.sleep(0.5)
        raise WorkerError("no worker adopted the imported model within 120 s")

    def send_backlog(self, s: Settings) -> int:
        """The whole input at once, to the deployment's input topics; events sent."""
        sink, sent = self.sink(s), 0
        for value, account, etype, ts in encode_events(simulate(self.sim)):
            sink.send(value, account, etype, ts)
            sent += 1
        sink.close()
        self.fig.produced_messages += sink.messages
        say(f"backlog of {sent:,} events sent in {sink.messages:,} messages")
        return sent

    # -- checks helpers -----------------------------------------------------------

    def applied(self, w: WorkerProc, accounts: list[str]) -> dict[str, int]:
        got = {}
        for a in accounts:
            try:
                status, doc = w.get_json(f"/accounts/{a}")
            except OSError:
                status, doc = 0, {}
            got[a] = doc.get("events_applied", 0) if status == 200 else -1
        return got

    def wait_applied(
        self, workers: list[Identity], expect: Counter[str], timeout: float
    ) -> dict[str, int]:
        """Until every account has its events, or nothing moved for ``--stable`` s."""
        accounts = sorted(expect)
        deadline = time.monotonic() + timeout
        got: dict[str, int] = {}
        last, since = -1, time.monotonic()
        while True:
            ready = [i.proc for i in workers if i.proc is not None and _ready(i)]
            if ready:
                got = self.applied(ready[0], accounts)
                short = sum(1 for a in accounts if got[a] != expect[a])
                total = sum(max(v, 0) for v in got.values())
                say(
                    f"  drain: {total:,} of {sum(expect.values()):,} applied, {short} accounts short"
                )
                if total != last:
                    last, since = total, time.monotonic()
                if short == 0 or time.monotonic() - since > self.args.stable:
                    return got
            if time.monotonic() > deadline:
                return got
            time.sleep(3)

    def lag(self, s: Settings) -> int:
        """Messages of the input topics past the group's committed offsets."""
        from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

        admin = KafkaAdminClient(bootstrap_servers=self.broker.bootstrap)
        consumer = KafkaConsumer(bootstrap_servers=self.broker.bootstrap)
        try:
            committed = admin.list_group_offsets(s.app_id)[s.app_id]
            tps = [TopicPartition(t, p) for t in (s.subscription_topic, s.usage_topic)
                   for p in consumer.partitions_for_topic(t) or ()]  # fmt: skip
            ends = consumer.end_offsets(tps)
            behind = {tp: ends[tp] - (committed[tp].offset if tp in committed else 0) for tp in tps}
            self.lag_by_partition = {f"{tp.topic}:{tp.partition}": (n, ends[tp])
                                     for tp, n in behind.items() if n}  # fmt: skip
            return sum(behind.values())
        finally:
            consumer.close()
            admin.close()

    def wait_lag(self, s: Settings, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while True:
            n = self.lag(s)
            if n == 0 or time.monotonic() > deadline:
                if n:
                    say(f"  input lag by partition (lag, end): {self.lag_by_partition}")
                return n
            time.sleep(2)

    # -- the fault run --------------------------------------------------------------

    def fault_run(
        self, expect: Counter[str], sent_total: int, bundle: Path | None
    ) -> dict[str, Any]:
        a, fig = self.args, self.fig
        core = [self.identity(f"w{i}", "faults") for i in range(a.workers)]
        joiner = self.identity(f"w{a.workers}", "faults")
        s = self.prepare(core[0], bundle)
        source: Iterator[tuple[bytes, str, str, object]] = encode_events(simulate(self.sim))
        sent = 0
        for ident in core:
            ident.launch("start")
        for ident in core:
            assert ident.proc is not None
            ident.proc.wait_ready(120)
            ident.waiting_ready = False
        self.wait_model(core, bundle)
        if a.produce == "backlog":
            sent = self.send_backlog(s)
        shape = "keyed, 1/msg" if a.batch == 1 else f"unkeyed arrays of {a.batch}"
        if a.produce == "live":
            say(
                f"{len(core)} workers ready; sending {sent_total:,} events ({shape}) over {a.duration:.0f}s"
            )
        else:
            say(f"{len(core)} workers ready; faults for {a.duration:.0f}s while they work")

        sink: KafkaSink | None = self.sink(s)
        t0 = time.monotonic()
        next_kill = a.kill_every
        outage_end = a.outage_at + a.outage
        window_end = outage_end + a.log_window
        log_marks: dict[str, int] = {}
        broker_down = False
        joined = left = False
        restarted_at: float | None = None
        stopped_at = 0.0
        last_say = last_scrape = 0.0
        everyone = [*core, joiner]

        def running() -> list[Identity]:
            return [i for i in everyone if i.proc is not None and i.running]

        while True:
            t = time.monotonic() - t0
            # the input, paced over the duration; paused while the broker is away
            if sink is not None and not broker_down and sent < sent_total:
                due = min(sent_total, int(sent_total * min(1.0, t / a.duration)) + 1)
                for value, account, etype, ts in source:
                    sink.send(value, account, etype, ts)
                    sent += 1
                    if sent >= due:
                        break
            # the broker outage
            if a.outage > 0 and not broker_down and restarted_at is None and t >= a.outage_at:
                if sink is not None:
                    fig.produced_messages += sink.messages
                    sink.close()
                    sink = None
                log_marks = {i.name: _size(i.log) for i in everyone}
                say(f"[{t:5.0f}s] broker stopped for {a.outage:.0f}s")
                stopped_at = time.monotonic()
                self.broker.stop()
                broker_down = True
            if broker_down and t >= outage_end:
                say(
                    f"[{t:5.0f}s] broker starting again (same port {self.broker.port}, same data dir)"
                )
                self.broker.start()
                broker_down = False
                restarted_at = time.monotonic()
                fig.broker_down_s = restarted_at - stopped_at
                sink = self.sink(s)
            if restarted_at is not None and fig.ready_after_outage is None:
                procs = running()
                if procs and all(_ready(i) for i in procs):
                    fig.ready_after_outage = time.monotonic() - restarted_at
                    say(
                        f"[{t:5.0f}s] all workers ready {fig.ready_after_outage:.1f}s after the broker restart"
                    )
            if log_marks and t >= window_end and not fig.outage_logs:
                fig.log_window_s = a.outage + a.log_window
                for i in everyone:
                    size = _size(i.log)
                    start = log_marks.get(i.name, 0)
                    lines = _count_lines(i.log, start, size)
                    fig.outage_logs[i.name] = (lines, size - start)
                say(f"[{t:5.0f}s] log lines in the outage window: "
                    + ", ".join(f"{k} {v[0]} ({v[1]:,} B)" for k, v in fig.outage_logs.items()))  # fmt: skip
            in_outage_window = a.outage > 0 and a.outage_at - 2 <= t < window_end
            # a worker joins, later leaves
            if a.join_at >= 0 and not joined and t >= a.join_at and not broker_down:
                joiner.launch("join")
                joined = True
                say(f"[{t:5.0f}s] {joiner.name} joins")
            if joined and not left and t >= a.leave_at and not broker_down:
                if joiner.waiting_ready:
                    pass  # leave once it has taken part
                else:
                    assert joiner.proc is not None
                    say(f"[{t:5.0f}s] {joiner.name} leaves (SIGTERM)")
                    joiner.scrape()
                    started = time.monotonic()
                    fig.leave_exit = joiner.proc.stop(signal.SIGTERM, timeout=60)
                    fig.leave_s = time.monotonic() - started
                    left = True
            # readiness of launched workers; exits nobody asked for
            for i in running():
                if i.waiting_ready and i.ready_after is not None:
                    took = i.ready_after
                    i.waiting_ready = False
                    (fig.ready_after_kill if i.kind == "kill" else fig.ready_after_join).append(
                        took
                    )
                    say(f"[{t:5.0f}s] {i.name} ready {took:.1f}s after its {i.kind}")
            for i in everyone:
                if i.proc is not None and i.proc.proc is not None and not i.running:
                    if i is joiner and left:
                        continue
                    code = i.proc.proc.returncode
                    fig.unexpected_exits.append(f"{i.name} exited {code} at {t:.0f}s")
                    ended = i.proc.log_path.read_text(errors="replace").splitlines()[-20:]
                    say(f"[{t:5.0f}s] {i.name} EXITED {code} unasked: started again; its log "
                        "ended:\n      " + "\n      ".join(line[:300] for line in ended))  # fmt: skip
                    i.launch("crash")
            # the kills
            if a.kill_every > 0 and t >= next_kill and (a.kills < 0 or fig.kills < a.kills):
                procs = running()
                if (
                    in_outage_window
                    or broker_down
                    or (restarted_at is not None and fig.ready_after_outage is None)
                    or not procs
                    or any(i.waiting_ready for i in procs)
                ):
                    fig.kills_postponed += 1
                    next_kill = t + 1
                else:
                    victim = self.rng.choice(procs)
                    assert victim.proc is not None
                    victim.scrape()
                    victim.proc.stop(signal.SIGKILL)
                    fig.kills += 1
                    say(
                        f"[{t:5.0f}s] {victim.name} SIGKILLed (kill {fig.kills}), started again at once"
                    )
                    victim.launch("kill")
                    next_kill = t + a.kill_every
            if t - last_scrape >= 2:
                last_scrape = t
                for i in running():
                    i.scrape()
            if t - last_say >= 10:
                last_say = t
                applied = sum(i.counter("churnwatch_events_applied_total") for i in everyone)
                say(f"[{t:5.0f}s] sent {sent:,} of {sent_total:,}, applied {applied:,.0f}; workers: "
                    + ", ".join(f"{i.name}{'*' if i.waiting_ready else ''}" for i in running()))  # fmt: skip
            faults_done = (
                (a.outage <= 0 or fig.outage_logs)
                and (a.join_at < 0 or left)
                and (a.kills < 0 or fig.kills >= a.kills or a.kill_every <= 0)
                # a rebalance after the outage may outlast the log window: the check of
                # the group's readiness after the restart waits up to its own limit
                and (
                    restarted_at is None
                    or fig.ready_after_outage is not None
                    or time.monotonic() - restarted_at > a.ready_limit
                )
            )
            if (
                sent >= sent_total
                and t >= a.duration
                and faults_done
                and not any(i.waiting_ready for i in running())
            ):
                break
            if t > a.duration + a.timeout:
                raise WorkerError(
                    f"the fault phase did not end within {a.duration + a.timeout:.0f}s"
                )
            time.sleep(TICK_S)

        assert sink is not None
        fig.produced_messages += sink.messages
        sink.close()
        say(f"input sent ({sent:,} events, {fig.produced_messages:,} messages); draining")
        live = running()
        got = self.wait_applied(live, expect, a.timeout)
        lag = self.wait_lag(s, 60)
        time.sleep(3)  # the last buffers' outputs
        for i in live:
            i.scrape()
        counters = {
            name: sum(i.counter(f"churnwatch_{name}_total") for i in everyone) for name in COUNTERS
        }
        outputs = self.outputs(s)
        for i in live:
            assert i.proc is not None
            i.proc.stop(signal.SIGTERM)
        return {"applied": got, "lag": lag, "counters": counters, **outputs}

    def outputs(self, s: Settings) -> dict[str, Any]:
        alerts = [
            orjson.loads(m.value)
            for m in read_all(self.broker.bootstrap, s.alerts_topic, timeout=120)
        ]
        records = [m for m in read_all(self.broker.bootstrap, s.scores_topic, timeout=300)
                   if m.value is not None]  # fmt: skip
        scores = [(m.partition, m.offset, orjson.loads(m.value)) for m in records]
        dead = read_all(self.broker.bootstrap, s.dead_letter_topic, timeout=60)
        return {
            "alerts": alert_figures(alerts),
            "versions": backward_steps(scores),
            "stale": stale_scores(
                [(m.timestamp, rec) for m, (_, _, rec) in zip(records, scores, strict=True)]
            ),
            "dead_letters": len(dead),
            "dead_kinds": dict(Counter(_kind(m.value) for m in dead)),
        }

    # -- the clean run ----------------------------------------------------------------

    def clean_run(self, expect: Counter[str], bundle: Path | None) -> dict[str, Any]:
        ident = self.identity("w0", "clean")
        s = self.prepare(ident, bundle)
        say("clean run: one worker of its own deployment over the same input, no faults")
        t = time.monotonic()
        ident.launch("start")
        assert ident.proc is not None
        try:
            ident.proc.wait_ready(120)
            self.wait_model([ident], bundle)
            self.send_backlog(s)
            got = self.wait_applied([ident], expect, self.args.timeout)
            time.sleep(3)
            outputs = self.outputs(s)
        finally:
            ident.proc.stop(signal.SIGTERM)
        say(f"  clean run done in {time.monotonic() - t:.0f}s")
        return {"applied": got, **outputs}


def _kind(value: bytes | None) -> str:
    try:
        return str(orjson.loads(value or b"{}").get("kind", "?"))
    except orjson.JSONDecodeError:
        return "?"


def _ready(i: Identity) -> bool:
    try:
        return i.proc is not None and i.proc.ready()
    except WorkerError:
        return False


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _count_lines(path: Path, start: int, end: int) -> int:
    if end <= start:
        return 0
    with open(path, "rb") as f:
        f.seek(start)
        return f.read(end - start).count(b"\n")


def cli(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([sys.executable, "-m", "streams", *args], env=env, capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(
            f"churnwatch {' '.join(args[:2])} failed:\n{done.stderr.decode()[-3000:]}"
        )
    return done.stdout.decode()


# --- the table ------------------------------------------------------------------------


def checks(args: argparse.Namespace, lateness_s: float, expect: Counter[str], sent: int, fig: Figures,
           run: dict[str, Any], clean: dict[str, Any] | None) -> list[tuple[str, str, str, bool | None]]:  # fmt: skip
    """(what, figure, limit, passed: None for a figure without a check)."""
    got = run["applied"]
    short = [acc for acc in expect if got.get(acc) != expect[acc]]
    al = run["alerts"]
    rows: list[tuple[str, str, str, bool | None]] = [
        (
            "input events sent (distinct)",
            f"{sent:,} ({sum(expect.values()):,})",
            f"{args.accounts} accounts x {args.days} days",
            None,
        ),
        (
            "input; event time x real time; allowed lateness",
            f"{args.produce}; {args.days * 86_400 / args.duration:,.0f} x; {lateness_s / 3600:g} h"
            if args.produce == "live"
            else f"backlog; -; {lateness_s / 3600:g} h",
            "--produce, --lateness",
            None,
        ),
        (
            "input messages",
            f"{fig.produced_messages:,}",
            "keyed, 1/msg" if args.batch == 1 else f"unkeyed arrays of {args.batch}",
            None,
        ),
        (
            "accounts whose events_applied != distinct input",
            f"{len(short)} of {len(expect):,}",
            "0",
            not short,
        ),
        (
            "events applied, all accounts",
            f"{sum(max(v, 0) for v in got.values()):,}",
            f"{sum(expect.values()):,}",
            sum(max(v, 0) for v in got.values()) == sum(expect.values()),
        ),
        ("input consumer lag after drain", f"{run['lag']:,}", "0", run["lag"] == 0),
        (
            "dead letters (by kind)",
            f"{run['dead_letters']:,} {run['dead_kinds'] or ''}".strip(),
            "-",
            None,
        ),
        (
            "all incarnations: applied / duplicates / late / forced / woken / recovery stalls",
            " / ".join(f"{run['counters'][c]:,.0f}" for c in COUNTERS),
            "as last scraped",
            None,
        ),
        ("SIGKILLs (postponed ticks)", f"{fig.kills} ({fig.kills_postponed})", "-", None),
        (
            "ready after kill, s (min/median/max)",
            spread(fig.ready_after_kill),
            f"<= {args.ready_limit:.0f}",
            all(x <= args.ready_limit for x in fig.ready_after_kill),
        ),
        ("join: ready, s", spread(fig.ready_after_join), "-", None),
        (
            "leave: SIGTERM exit code, seconds",
            "-" if fig.leave_exit is None else f"{fig.leave_exit}, {fig.leave_s:.1f}",
            "0",
            None if fig.leave_exit is None else fig.leave_exit == 0,
        ),
        ("broker down, s (stop to answering again)", f"{fig.broker_down_s:.1f}", "-", None),
        (
            "all ready after the broker restart, s",
            "-" if fig.ready_after_outage is None else f"{fig.ready_after_outage:.1f}",
            f"<= {args.ready_limit:.0f}",
            None if args.outage <= 0 else (fig.ready_after_outage or 1e9) <= args.ready_limit,
        ),
    ]
    for name, (lines, nbytes) in sorted(fig.outage_logs.items()):
        rows.append((f"log lines {name}, outage {args.outage:.0f}s + {args.log_window:.0f}s",
                     f"{lines} ({nbytes:,} B)", f"<= {args.max_log_lines}",
                     lines <= args.max_log_lines))  # fmt: skip
    rows += [
        ("unexpected worker exits", str(len(fig.unexpected_exits)), "0", not fig.unexpected_exits),
        ("alerts published (distinct)", f"{al['published']:,} ({al['distinct']:,})", "-", None),
        ("at-least-once repeats (same account, alert_id)", f"{al['repeats']:,}", "counted", None),
        (
            "churn alert ids with two event times",
            str(al["doubled_churn"]),
            "0",
            al["doubled_churn"] == 0,
        ),
        ("sharing alert ids re-decided (other ts)", str(al["redecided_sharing"]), "counted", None),
        ("gaps in alert ids per account and kind", str(al["gaps"]), "0", al["gaps"] == 0),
        (
            "model version steps back, per partition (per account)",
            f"{run['versions']['partition']} ({run['versions']['account']}) "
            f"of {run['versions']['records']:,} scores",
            "0",
            run["versions"]["partition"] == 0,
        ),
        (
            "scores with an older churn model, 10 s after a newer one",
            f"{run['stale']:,}",
            "0" if not args.learn else "learning: counted",
            run["stale"] == 0 if not args.learn else None,
        ),
    ]
    if clean is not None:
        ca, fa = clean["alerts"], al
        clean_short = sum(1 for acc in expect if clean["applied"].get(acc) != expect[acc])
        rows.append(("clean run: accounts short", str(clean_short), "0", clean_short == 0))
        churn_same = ca["churn_ids"] == fa["churn_ids"]
        sharing = len(ca["sharing_ids"] & fa["sharing_ids"]) / max(
            1, len(ca["sharing_ids"] | fa["sharing_ids"])
        )
        rows.append(("churn alerts: fault run / clean run / both",
                     f"{len(fa['churn_ids'])} / {len(ca['churn_ids'])} / "
                     f"{len(fa['churn_ids'] & ca['churn_ids'])}",
                     "same ids" if not args.learn else "learning: counted",
                     churn_same if not args.learn else None))  # fmt: skip
        rows.append(("sharing alerts: fault run / clean run, ids shared",
                     f"{len(fa['sharing_ids'])} / {len(ca['sharing_ids'])}, {sharing:.1%}", "-", None))  # fmt: skip
    return rows


def table(rows: list[tuple[str, str, str, bool | None]]) -> str:
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    w2 = max(len(r[2]) for r in rows)
    mark = {True: "ok", False: "FAIL", None: ""}
    head = f"{'check':<{w0}}  {'figure':>{w1}}  {'limit':<{w2}}  result"
    lines = [head, "-" * len(head)]
    lines += [f"{r[0]:<{w0}}  {r[1]:>{w1}}  {r[2]:<{w2}}  {mark[r[3]]}".rstrip() for r in rows]
    return "\n".join(lines)


QUICK = {
    "accounts": 60, "days": 40, "duration": 36.0, "kill_every": 3.0, "kills": 1,
    "join_at": 12.0, "leave_at": 20.0, "outage_at": 24.0, "outage": 6.0, "log_window": 6.0,
    "stable": 30.0, "train_accounts": 150, "train_days": 90,
}  # fmt: skip


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--accounts", type=int, default=1000, help="simulated accounts (default 1000)")
    ap.add_argument(
        "--days", type=int, default=180, help="simulated days (default 180: 1.03M events)"
    )
    ap.add_argument("--seed", type=int, default=13, help="simulation and fault seed (default 13)")
    ap.add_argument("--batch", type=int, default=100,
                    help="events per message: unkeyed JSON arrays; 1 = one event per message "
                         "keyed by account_id (default 100)")  # fmt: skip
    ap.add_argument("--partitions", type=int, default=8, help="partitions per topic (default 8)")
    ap.add_argument(
        "--workers", type=int, default=2, help="workers that run throughout (default 2)"
    )
    ap.add_argument(
        "--duration",
        type=float,
        default=240.0,
        help="seconds over which the input is sent (default 240)",
    )
    ap.add_argument(
        "--kill-every",
        type=float,
        default=20.0,
        help="seconds between SIGKILLs of a random worker; 0: none (default 20)",
    )
    ap.add_argument(
        "--kills",
        type=int,
        default=-1,
        help="at most this many kills; -1: until the input is sent (default -1)",
    )
    ap.add_argument(
        "--join-at",
        type=float,
        default=50.0,
        help="second at which a third worker joins; -1: none (default 50)",
    )
    ap.add_argument(
        "--leave-at",
        type=float,
        default=150.0,
        help="second at which it leaves with SIGTERM (default 150)",
    )
    ap.add_argument(
        "--outage-at",
        type=float,
        default=90.0,
        help="second at which the broker is stopped (default 90)",
    )
    ap.add_argument(
        "--outage",
        type=float,
        default=24.0,
        help="seconds the broker stays down; 0: no outage (default 24)",
    )
    ap.add_argument("--log-window", type=float, default=16.0,
                    help="log lines are counted from the broker stop to this many seconds after "
                         "its restart; no kills in that window (default 16)")  # fmt: skip
    ap.add_argument(
        "--max-log-lines",
        type=int,
        default=100,
        help="log lines a worker may write in that window (default 100)",
    )
    ap.add_argument(
        "--ready-limit",
        type=float,
        default=15.0,
        help="seconds a restarted worker may take to be ready (default 15)",
    )
    ap.add_argument(
        "--lateness",
        type=float,
        default=-1,
        help="CHURNWATCH_ALLOWED_LATENESS_S of every worker (default: the worker's, 3600)",
    )
    ap.add_argument(
        "--produce",
        choices=("backlog", "live"),
        default="backlog",
        help="backlog: the whole input is in Kafka before the workers start, and the faults "
        "hit them while they work through it; live: the input is sent while they run, "
        "over --duration s (a replay at days of event time per second: see the docs on "
        "what a pause then costs) (default backlog)",
    )
    ap.add_argument("--transactional", action="store_true",
                    help="the input is written in transactions (of 500 messages, each "
                         "committed: a commit marker after each), as an exactly-once "
                         "producer writes it")  # fmt: skip
    ap.add_argument("--learn", action="store_true",
                    help="workers learn (default: a fixed model, CHURNWATCH_LEARN=false); the "
                         "churn alerts are then compared by count only")  # fmt: skip
    ap.add_argument(
        "--bundle", type=Path, help="fixed model bundle to import (default: trained here)"
    )
    ap.add_argument(
        "--train-accounts",
        type=int,
        default=600,
        help="accounts of the population the fixed model is trained on (default 600)",
    )
    ap.add_argument("--train-days", type=int, default=150, help="... and its days (default 150)")
    ap.add_argument("--no-clean", action="store_true", help="skip the clean run")
    ap.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        help="seconds the drain (and the fault phase past --duration) may take (default 900)",
    )
    ap.add_argument(
        "--stable",
        type=float,
        default=60.0,
        help="the drain ends early when nothing was applied for this many seconds (default 60)",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="CHURNWATCH_X=VALUE",
        help="a worker setting for every worker (repeatable)",
    )
    ap.add_argument(
        "--out",
        type=Path,
        help="folder for the broker, worker data and logs (default: a new temporary one)",
    )
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="the CI scale: " + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in QUICK.items()),
    )
    return ap


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = parser()
    args = ap.parse_args(argv)
    if args.quick:  # the quick scale, unless an option was given explicitly
        given = {a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:])}
        for k, v in QUICK.items():
            if f"--{k.replace('_', '-')}" not in given:
                setattr(args, k, v)
    if not 1 <= args.batch <= 1000:
        ap.error("--batch must be within 1..1000")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="churnwatch-faults-"))
    out.mkdir(parents=True, exist_ok=True)
    say(f"faults harness: {args.accounts} accounts x {args.days} days, folder {out}")
    h = Harness(args, out)
    started = time.monotonic()
    expect, sent = h.expected()
    bundle = h.bundle()
    h.broker.start()
    say(f"broker at {h.broker.bootstrap}, data in {h.broker.workdir}")
    try:
        run = h.fault_run(expect, sent, bundle)
        clean = None if args.no_clean else h.clean_run(expect, bundle)
    finally:
        h.cleanup()
        h.broker.stop()
    rows = checks(args, h.lateness_s, expect, sent, h.fig, run, clean)
    print(table(rows))
    failed = [r[0] for r in rows if r[3] is False]
    print(f"\n{'FAILED: ' + '; '.join(failed) if failed else 'all checks passed'} "
          f"({time.monotonic() - started:.0f}s; logs in {out})")  # fmt: skip
    if args.json:
        figures = {"rows": [list(r) for r in rows], "unexpected_exits": h.fig.unexpected_exits,
                   "ready_after_kill": h.fig.ready_after_kill, "outage_logs": h.fig.outage_logs,
                   "failed": failed}  # fmt: skip
        args.json.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
