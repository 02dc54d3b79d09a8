"""``churnwatch demo``: see churnwatch work on one machine, end to end.

Starts a local Kafka broker (unless ``KAFKA_BOOTSTRAP_SERVERS`` is set), a
worker, and the simulator feeding it; then follows the output topics and the
worker's ``/metrics`` and prints what flows: events consumed, dead letters,
scores and alerts (with a few examples), until the simulated history has been
processed. The simulator reads the alerts as it goes and its households answer
their actions (verify, pay for an extra member, cancel, take an offer...): the
summary ends with the loop closing, what the households answered and what the
worker counted the actions achieved (conversions against backlash). Everything
it started is stopped at the end (or on Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from streams.devbroker import LocalBroker, free_port


def scrape_samples(url: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of a /metrics page as (name, labels, value); waits as long as
    Prometheus does by default (10 s: a loaded worker may answer late)."""
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - our own worker
        text = resp.read().decode()
    return [(sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples]  # fmt: skip


def scrape(url: str) -> dict[str, float]:
    """Sum every sample of a /metrics page by metric name (labels folded)."""
    totals: Counter[str] = Counter()
    for name, _, value in scrape_samples(url):
        totals[name] += value
    return dict(totals)


def action_outcomes(url: str) -> Counter[tuple[str, str, str]]:
    """``churnwatch_action_outcomes_total`` of a worker: (kind, action, outcome) -> count."""
    return Counter(
        {(labels["kind"], labels["action"], labels["outcome"]): int(value)
         for name, labels, value in scrape_samples(url)
         if name == "churnwatch_action_outcomes_total" and value}
    )  # fmt: skip


def loop_summary(
    answered: Counter[tuple[str, str, str]], outcomes: Counter[tuple[str, str, str]]
) -> list[str]:
    """The loop closing: what the simulated households answered, and what the worker
    counted the alerts' actions achieved (conversions against backlash).

    >>> print("\\n".join(loop_summary(
    ...     Counter({("sharing", "extra_member_offer", "extra_member"): 2}),
    ...     Counter({("sharing", "extra_member_offer", "extra_member_added"): 2,
    ...              ("sharing", "extra_member_offer", "cancelled"): 1}))))
      households answered (simulate --kafka reads risk-alerts):
        sharing extra_member_offer       2: extra_member 2
      what the actions achieved (worker: churnwatch_action_outcomes_total):
        kind    action                  conversions  backlash  no_change  other
        sharing extra_member_offer                2         1          0      0
    """
    from models.outcomes import by_action
    from models.simulator import reactions

    lines = ["  households answered (simulate --kafka reads risk-alerts):"]
    lines += [f"    {line}" for line in reactions.summary(answered)] or ["    none"]
    lines.append("  what the actions achieved (worker: churnwatch_action_outcomes_total):")
    rows = by_action(outcomes)
    if not rows:
        return [*lines, "    none decided yet"]
    lines.append(f"    {'kind':7} {'action':22} {'conversions':>12} {'backlash':>9} "
                 f"{'no_change':>10} {'other':>6}")  # fmt: skip
    for (kind, action), row in rows.items():
        lines.append(f"    {kind:7} {action:22} {row['conversions']:>12,} {row['backlash']:>9,} "
                     f"{row['no_change']:>10,} {row['other']:>6,}")  # fmt: skip
    return lines


def read_reactions(path: Path) -> Counter[tuple[str, str, str]]:
    """(kind, action, reaction) counts of a ``reactions.jsonl`` (none if it is missing)."""
    counts: Counter[tuple[str, str, str]] = Counter()
    if path.exists():
        for line in path.read_bytes().splitlines():
            try:
                r = orjson.loads(line)
            except orjson.JSONDecodeError:  # a line being written
                continue
            counts[(r["kind"], r["action"], r["reaction"])] += 1
    return counts


def _child(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    out = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "streams", *argv], env=env, stdout=out, stderr=subprocess.STDOUT
    )


def _stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _print_alert(alert: dict[str, Any]) -> None:
    reasons = ", ".join(f"{r['feature']}={r['value']:.3g}" for r in alert.get("reasons", [])[:3])
    print(
        f"  ALERT {alert['kind']:7} {alert['account_id']:>12}  score {alert['score']:.2f}"
        f"  -> {alert['action']:24} ({reasons})",
        flush=True,
    )


def _demo_model_key(workdir: Path, name: str = "model.key") -> Path:
    """A random key of this demo folder (its broker's snapshots are signed with the model
    key, its state holds tokens made with the pseudonym key)."""
    path = workdir / name
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path


def run_demo(args: argparse.Namespace) -> int:
    from kafka import KafkaConsumer

    from streams.kafka_security import client_config, servers
    from streams.settings import Settings
    from streams.topics import ensure_topics

    workdir = Path(args.dir or tempfile.mkdtemp(prefix="churnwatch-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            print("demo: starting a local Kafka broker (first run fetches its jars with Maven) ...",
                  flush=True)  # fmt: skip
            broker = stack.enter_context(LocalBroker(workdir=workdir / "kafka"))
            bootstrap = broker.bootstrap
        port = args.web_port or free_port()
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "CHURNWATCH_WEB_PORT": str(port),
            "CHURNWATCH_DATA_DIR": str(workdir / "worker"),
            "CHURNWATCH_PARTITIONS": os.environ.get("CHURNWATCH_PARTITIONS", "4"),
            "CHURNWATCH_LOG_LEVEL": os.environ.get("CHURNWATCH_LOG_LEVEL", "warn"),
        }
        if not (env.get("CHURNWATCH_MODEL_KEY") or env.get("CHURNWATCH_MODEL_KEY_FILE")):
            env["CHURNWATCH_MODEL_KEY_FILE"] = str(_demo_model_key(workdir))
        if not (env.get("CHURNWATCH_PSEUDONYM_KEY") or env.get("CHURNWATCH_PSEUDONYM_KEY_FILE")):
            env["CHURNWATCH_PSEUDONYM_KEY_FILE"] = str(_demo_model_key(workdir, "pseudonym.key"))
        settings = Settings.from_env(env)
        ensure_topics(settings)
        print(f"demo: broker {bootstrap}; worker metrics at http://127.0.0.1:{port}/metrics",
              flush=True)  # fmt: skip
        worker = _child(["worker"], env, workdir / "worker.log")
        stack.callback(_stop, worker)
        sim_argv = [
            "simulate", "--kafka", "--accounts", str(args.accounts), "--days", str(args.days),
            "--seed", str(args.seed), "--out", str(workdir / "sim"),
            "--follow-worker", str(args.follow_worker),
        ]  # fmt: skip
        if args.rate:
            sim_argv += ["--rate", str(args.rate)]
        reactions_path = workdir / "sim" / "reactions.jsonl"  # the households' answers
        reactions_path.unlink(missing_ok=True)  # a --dir used before
        simulator = _child(sim_argv, env, workdir / "simulate.log")
        stack.callback(_stop, simulator)
        print(f"demo: simulating {args.accounts} accounts over {args.days} days "
              f"(logs in {workdir})", flush=True)  # fmt: skip

        consumer = KafkaConsumer(
            settings.alerts_topic, settings.scores_topic, settings.dead_letter_topic,
            bootstrap_servers=servers(settings), auto_offset_reset="earliest",
            group_id=None, consumer_timeout_ms=500, **client_config(settings),
        )  # fmt: skip
        stack.callback(consumer.close)
        counts: Counter[str] = Counter()
        shown: Counter[str] = Counter()
        deadline = time.monotonic() + args.seconds
        last_status, idle_since, last_applied = 0.0, None, -1.0
        metrics: dict[str, float] = {}
        done = False
        while not done and time.monotonic() < deadline:
            for msg in consumer:
                counts[msg.topic] += 1
                if msg.topic == settings.alerts_topic:
                    alert = orjson.loads(msg.value)
                    counts[f"alert:{alert['kind']}:{alert['action']}"] += 1
                    if shown[alert["kind"]] < args.show:
                        shown[alert["kind"]] += 1
                        _print_alert(alert)
                if time.monotonic() - last_status > 5:
                    break
            if worker.poll() is not None:
                print(f"demo: the worker exited with {worker.returncode}; see {workdir}/worker.log")
                return 1
            try:
                metrics = scrape(f"http://127.0.0.1:{port}/metrics")
            except OSError:
                metrics = {}
            applied = metrics.get("churnwatch_events_applied_total", 0.0)
            if time.monotonic() - last_status > 5:
                last_status = time.monotonic()
                print(
                    "demo: events consumed "
                    f"{metrics.get('churnwatch_events_consumed_total', 0):,.0f}"
                    f" | applied {applied:,.0f}"
                    f" | dead letters {counts[settings.dead_letter_topic]:,}"
                    f" | scores {counts[settings.scores_topic]:,}"
                    f" | alerts {counts[settings.alerts_topic]:,}"
                    f" | answered {sum(read_reactions(reactions_path).values()):,}",
                    flush=True,
                )
            # done: the simulator finished and the worker has nothing left (no input or
            # internal messages uncommitted, nothing held by the input merge) and went quiet
            drained = (
                metrics.get("churnwatch_consumer_lag_messages", 1.0) == 0
                and metrics.get("churnwatch_input_events_held", 1.0) == 0
            )
            if simulator.poll() is not None and applied > 0 and drained and applied == last_applied:
                idle_since = idle_since or time.monotonic()
                done = time.monotonic() - idle_since > 8
            else:
                idle_since = None
            last_applied = applied
        if not done:  # the summary below is then a snapshot, not the end
            left = (metrics.get("churnwatch_events_consumed_total", 0.0) - last_applied
                    - metrics.get("churnwatch_duplicates_dropped_total", 0.0))  # fmt: skip
            print(f"demo: stopped after {args.seconds:.0f} s (--seconds) before the worker was "
                  f"done ({left:,.0f} events read and not applied yet); a busy machine needs "
                  "more time, or run fewer --accounts/--days")  # fmt: skip
        if simulator.poll() not in (None, 0):
            print(f"demo: the simulator failed; see {workdir}/simulate.log")
            return 1
        print("\ndemo summary")
        for key, value in sorted(counts.items()):
            if key.startswith("alert:"):
                _, kind, action = key.split(":")
                print(f"  alerts {kind:8} {action:26} {value:,}")
        for name in ("events_consumed", "events_applied", "duplicates_dropped", "dead_letters",
                     "scores_published", "alerts"):  # fmt: skip
            print(f"  {name:22} {metrics.get(f'churnwatch_{name}_total', 0):,.0f}")
        try:
            outcomes = action_outcomes(f"http://127.0.0.1:{port}/metrics")
        except OSError:
            outcomes = Counter()
        print("\nthe loop: alerts -> the households' answers -> what the actions achieved")
        for line in loop_summary(read_reactions(reactions_path), outcomes):
            print(line)
        print(f"  worker metrics were served at http://127.0.0.1:{port}/metrics")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "demo",
        help="run broker + worker + simulator on this machine and show alerts flowing",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--accounts", type=int, default=1000, help="simulated accounts (default 1000)")
    p.add_argument("--days", type=int, default=120, help="days of simulated history (default 120)")
    p.add_argument("--seed", type=int, default=7, help="simulator seed (default 7)")
    p.add_argument(
        "--rate", type=float, default=None, help="events/s (default: as fast as possible)"
    )
    p.add_argument("--seconds", type=float, default=1800,
                   help="stop after this long even if the worker is not done (default 1800; "
                   "the demo ends by itself once every event is applied)")  # fmt: skip
    p.add_argument(
        "--follow-worker",
        type=float,
        default=2.0,
        metavar="DAYS",
        help="the simulator stays at most this many days of event time ahead of the worker, "
        "so its households answer the alerts in time (default 2; 0: the simulator runs "
        "freely; see simulate --help)",
    )
    p.add_argument(
        "--show", type=int, default=5, help="example alerts to print per kind (default 5)"
    )
    p.add_argument(
        "--web-port", type=int, default=None, help="worker web port (default: a free one)"
    )
    p.add_argument("--dir", default=None, help="folder for logs and state (default: a temp folder)")
    p.set_defaults(func=run_demo)
