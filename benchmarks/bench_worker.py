"""Worker throughput on a real broker, against a bare aiokafka consumer in the same run.

    python benchmarks/bench_worker.py --accounts 300 --days 60

1. simulates a history and produces it to fresh input topics (one event per
   message, keyed by account, as most producers do; ``--batch N`` sends arrays);
2. the ceiling: a bare aiokafka consumer reads the same messages with
   ``getmany`` + ``orjson.loads``;
3. the worker (``churnwatch worker`` in a subprocess, fresh consumer group)
   processes them; its events/s is measured from readiness until every valid
   event is applied (polling ``/metrics``).

Prints events/s of both and their ratio. Uses ``KAFKA_BOOTSTRAP_SERVERS`` when
set, else starts a local broker.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from contextlib import ExitStack
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer
from kafka import KafkaProducer

from models.contract import topic_kind
from models.simulator import SimConfig, simulate
from streams.demo import scrape
from streams.devbroker import LocalBroker, free_port
from streams.settings import Settings
from streams.topics import ensure_topics


def produce(bootstrap: str, s: Settings, cfg: SimConfig, batch: int) -> int:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=256_000)
    topics = {"subscription": s.subscription_topic, "usage": s.usage_topic}
    n, buf = 0, {"subscription": [], "usage": []}
    for ev in simulate(cfg):
        kind = topic_kind(ev["type"])
        n += 1
        if batch > 1:
            buf[kind].append(ev)
            if len(buf[kind]) >= batch:
                producer.send(topics[kind], value=orjson.dumps(buf[kind]))
                buf[kind] = []
        else:
            producer.send(topics[kind], key=ev["account_id"].encode(), value=orjson.dumps(ev))
    for kind, rest in buf.items():
        if rest:
            producer.send(topics[kind], value=orjson.dumps(rest))
    producer.flush()
    producer.close()
    return n


async def bare_consumer(bootstrap: str, topics: list[str], expect_messages: int) -> float:
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, group_id=f"bench-{uuid.uuid4().hex}",
        auto_offset_reset="earliest", enable_auto_commit=False,
    )  # fmt: skip
    await consumer.start()
    seen, started = 0, None
    try:
        while seen < expect_messages:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if started is None and batches:
                started = time.perf_counter()
            for records in batches.values():
                for r in records:
                    doc = orjson.loads(r.value)
                    seen += len(doc) if isinstance(doc, list) else 1
        return time.perf_counter() - (started or time.perf_counter())
    finally:
        await consumer.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accounts", type=int, default=300)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--batch", type=int, default=1, help="events per input message (default 1)")
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    with ExitStack() as stack:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            bootstrap = stack.enter_context(LocalBroker()).bootstrap
        run = uuid.uuid4().hex[:8]
        env = {
            **os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "CHURNWATCH_APP_ID": f"bench-{run}",
            "CHURNWATCH_DATA_DIR": tempfile.mkdtemp(), "CHURNWATCH_PARTITIONS": "4",
            "CHURNWATCH_LOG_LEVEL": "warn", "CHURNWATCH_WEB_PORT": str(free_port()),
            "CHURNWATCH_SESSION_TIMEOUT_S": "6", "CHURNWATCH_HEARTBEAT_INTERVAL_S": "1.5",
        }  # fmt: skip
        for name in ("subscription_topic", "usage_topic", "dead_letter_topic", "scores_topic",
                     "alerts_topic", "training_topic", "account_events_topic"):  # fmt: skip
            env[Settings.env_name(name)] = f"{getattr(Settings(), name)}-{run}"
        s = Settings.from_env(env)
        ensure_topics(s)
        cfg = SimConfig(accounts=args.accounts, days=args.days, seed=args.seed)
        t = time.perf_counter()
        n = produce(bootstrap, s, cfg, args.batch)
        print(f"produced {n:,} events in {time.perf_counter() - t:.1f}s (batch {args.batch})")
        messages = n if args.batch == 1 else n  # the consumer counts events either way
        bare_s = asyncio.run(bare_consumer(bootstrap, list(s.input_topics), messages))
        print(f"bare aiokafka getmany + orjson: {n / bare_s:,.0f} events/s ({bare_s:.2f}s)")

        log = Path(env["CHURNWATCH_DATA_DIR"]) / "worker.log"
        proc = subprocess.Popen([sys.executable, "-m", "streams", "worker"], env=env,
                                stdout=open(log, "wb"), stderr=subprocess.STDOUT)  # fmt: skip
        stack.callback(proc.kill)
        url = f"http://127.0.0.1:{env['CHURNWATCH_WEB_PORT']}"
        while True:
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        started = time.perf_counter()
        applied = dups = 0.0
        while applied + dups < n * 0.999:
            time.sleep(1)
            m = scrape(url + "/metrics")
            applied = m.get("churnwatch_events_applied_total", 0)
            dups = m.get("churnwatch_duplicates_dropped_total", 0) + m.get(
                "churnwatch_late_events_dropped_total", 0
            )
            elapsed = time.perf_counter() - started
            print(f"  worker: {applied:,.0f} applied after {elapsed:.0f}s", file=sys.stderr)
        worker_s = time.perf_counter() - started
        rate = (applied + dups) / worker_s
        print(f"churnwatch worker (parse, state, scores, alerts, learner): {rate:,.0f} events/s "
              f"({worker_s:.1f}s, within 1s polling)")  # fmt: skip
        print(f"ratio worker / bare consumer: {rate / (n / bare_s):.3f}")
        print(f"late drops {m.get('churnwatch_late_events_dropped_total', 0):,.0f}, "
              f"duplicates {m.get('churnwatch_duplicates_dropped_total', 0):,.0f}, "
              f"state writes {m.get('churnwatch_state_writes_total', 0):,.0f}, "
              f"scores {m.get('churnwatch_scores_published_total', 0):,.0f}, "
              f"alerts {m.get('churnwatch_alerts_total', 0):,.0f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
