"""Where account state lives (issue #12): bytes per account, worker memory, restart time.

    python benchmarks/bench_store.py --accounts 100000,1000000 --runs 3

Simulates ``--sim-accounts`` accounts through the engine (``bench_state``), then
prints, once:

  bytes per account  serialized (``dump_state``) and resident (tracemalloc: what
                     decoding one state allocates and keeps), median / p95 / max:
                     the resident median is ``RESIDENT_BYTES_PER_ACCOUNT``

and for each count in ``--accounts``, with that many states in the accounts
table's changelog (the simulated states cloned under new ids, produced straight
to the changelog topic, 8 partitions):

  rocksdb, first start   a worker on an empty data dir: recovers the whole changelog
                         into its RocksDB store
  rocksdb, restart       the same worker restarted on its data dir (``--runs`` times):
                         replays only the changelog tail
  memory://, start       ``CHURNWATCH_STORE=memory``: every start replays the whole
                         changelog (what every restart cost before), ``--memory-runs`` times

Each row gives the time from process start to ``/readyz`` answering 200
(min / median / max), the changelog records Faust replayed, and the worker's
resident memory (``VmRSS``) when ready and after one event to each of
``--touch`` accounts (they are read, decoded, scored and written back: the cache
of decoded states fills and evicts), with the peak (``VmHWM``), and the worker's
CPU time per touched account: with more accounts than the cache holds, nearly each
is a store read, a decode, the event, a score and an encode, which is what an event
costs at that scale. The baseline of the same run is an empty worker (no state),
touched with as many new accounts (a new account decodes nothing). Progress goes to
stderr, the table to stdout. Uses ``KAFKA_BOOTSTRAP_SERVERS`` when set, else starts a local broker.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from bench_scale import Broker, bootstrap_servers, say, spread, state_bytes
from bench_state import simulated_states
from kafka import KafkaProducer

from models.account import dump_state, load_state
from models.engine import RESIDENT_BYTES_PER_ACCOUNT, Shard
from models.simulator import SimConfig
from streams.app import partition_for
from streams.devworker import WorkerError, WorkerProc, isolated_env
from streams.settings import Settings

PARTITIONS = 8
TOUCH_ROUND = 2000


def clone_id(i: int, ids: list[str]) -> str:
    """The id of the ``i``-th clone: as long as the simulated ids."""
    return f"z{i:0{len(ids[0]) - 1}d}"


def clones(templates: list[bytes], ids: list[str], n: int) -> Iterator[tuple[str, bytes]]:
    """(account id, state) for ``n`` new accounts, each a template under a new id
    (decoded once, renamed and encoded again: since version 9 the id is inside a frame)."""
    decoded = [load_state(raw) for raw in templates]
    for i in range(n):
        state = decoded[i % len(decoded)]
        state.account_id = clone_id(i, ids)
        yield state.account_id, dump_state(state)


def fill_changelog(
    bootstrap: str, topic: str, templates: list[bytes], ids: list[str], n: int
) -> int:
    """Produce ``n`` cloned states to the changelog topic; their highest ``max_ts``."""
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    compact = {"cleanup.policy": "compact"}
    admin.create_topics([NewTopic(topic, PARTITIONS, 1, topic_configs=compact)])
    admin.close()
    t = time.monotonic()
    asyncio.run(_produce(bootstrap, topic, clones(templates, ids, n), n))
    say(f"    {n:,} states produced in {time.monotonic() - t:.0f}s")
    sample = list(clones(templates, ids, min(n, 50)))
    assert all(load_state(raw).account_id == a for a, raw in sample), "a clone kept its old id"
    return max(load_state(raw).max_ts for raw in templates)


async def _produce(
    bootstrap: str, topic: str, records: Iterator[tuple[str, bytes]], n: int
) -> None:
    """aiokafka batches per partition: kafka-python computes CRCs in Python (~1k states/s)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_batch_size=1 << 20,
                                max_request_size=4 << 20)  # fmt: skip
    await producer.start()
    builders: dict[int, Any] = {}
    pending: list[Any] = []
    try:
        for i, (account_id, raw) in enumerate(records):
            part, key = partition_for(account_id, PARTITIONS), account_id.encode()
            builder = builders.get(part) or producer.create_batch()
            if builder.append(key=key, value=raw, timestamp=None) is None:  # full
                pending.append(await producer.send_batch(builder, topic, partition=part))
                builder = producer.create_batch()
                builder.append(key=key, value=raw, timestamp=None)
            builders[part] = builder
            if i % 100_000 == 0 and i:
                say(f"    {i:,} of {n:,} states produced")
                await asyncio.gather(*pending)
                pending.clear()
        for part, builder in builders.items():
            pending.append(await producer.send_batch(builder, topic, partition=part))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def memory_kib(w: WorkerProc) -> dict[str, float]:
    assert w.proc is not None
    with open(f"/proc/{w.proc.pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return {k: float(fields[k].split()[0]) for k in ("VmRSS", "VmHWM")}


def cpu_s(w: WorkerProc) -> float:
    """CPU seconds the worker process has used (user + system)."""
    assert w.proc is not None
    with open(f"/proc/{w.proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(env: dict[str, str], log: Path, timeout: float) -> tuple[WorkerProc, float]:
    w = WorkerProc(Settings.from_env(env), dict(env), log)
    t = time.monotonic()
    w.launch().wait_ready(timeout)
    return w, time.monotonic() - t


def touch(w: WorkerProc, bootstrap: str, ids: list[str], ts: int, timeout: float) -> None:
    """One login per account, in rounds of ``TOUCH_ROUND`` accounts, each applied before
    the next is sent (a buffer of 50k distinct accounts encodes for seconds at its flush)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    deadline = time.monotonic() + timeout
    for start in range(0, len(ids), TOUCH_ROUND):
        for a in ids[start : start + TOUCH_ROUND]:
            ev = {"event_id": f"touch-{ts}-{a}", "type": "login", "account_id": a, "ts": ts,
                  "device_id": "tv"}  # fmt: skip
            producer.send(w.settings.usage_topic, key=a.encode(), value=orjson.dumps(ev))
        producer.flush()
        want = min(len(ids), start + TOUCH_ROUND)
        while applied(w) < want:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{want:,} accounts not touched in {timeout:.0f}s")
            time.sleep(0.5)
        say(f"      {want:,} accounts touched, RSS {memory_kib(w)['VmRSS'] / 1024:,.0f} MiB")
    producer.close()


def applied(w: WorkerProc) -> float:
    """Events the worker applied (0 while it does not answer); raises if it exited."""
    assert w.proc is not None
    if w.proc.poll() is not None:
        raise WorkerError(f"worker exited {w.proc.returncode}:\n{w.log()}")
    try:
        return w.metrics().get("churnwatch_events_applied_total", 0.0)
    except OSError:  # busy: a scrape timed out
        return 0.0


def measure(label: str, env: dict[str, str], workdir: Path, runs: int, args: argparse.Namespace,
            touch_ids: list[str], ts: int, fresh_dir: bool) -> dict[str, Any]:  # fmt: skip
    """``runs`` starts to ready; memory when ready, and after ``touch_ids`` on the last start."""
    times, recovered, ready_kib = [], [], []
    touch_us: float | None = None
    for r in range(runs):
        if fresh_dir:
            env = {**env, "CHURNWATCH_DATA_DIR": str(workdir / f"{label}-{r}")}
        w, took = start(env, workdir / f"{label}-{r}.log", args.timeout)
        times.append(took)
        recovered.append(w.metrics().get("churnwatch_state_recovered_records_total", 0.0))
        ready_kib.append(memory_kib(w)["VmRSS"])
        say(f"    {label} run {r + 1}: ready in {took:.1f}s, {recovered[-1]:,.0f} changelog "
            f"records replayed, RSS {ready_kib[-1] / 1024:,.0f} MiB")  # fmt: skip
        last = r == runs - 1
        if last and touch_ids:
            t, cpu = time.monotonic(), cpu_s(w)
            touch(w, args.bootstrap, touch_ids, ts, args.timeout)
            touch_us = (cpu_s(w) - cpu) / len(touch_ids) * 1e6
            say(f"    {label}: {len(touch_ids):,} accounts touched in {time.monotonic() - t:.0f}s, "
                f"{touch_us:,.0f} CPU µs each")  # fmt: skip
        after = memory_kib(w)
        assert w.stop(signal.SIGTERM, timeout=120) == 0, w.log()
    return {"ready_s": times, "recovered": recovered, "rss_ready_kib": ready_kib,
            "rss_touched_kib": after["VmRSS"] if touch_ids else None, "peak_kib": after["VmHWM"],
            "touch_us": touch_us}  # fmt: skip


def fmt3(xs: list[float], f: str = "{:.1f}") -> str:
    s = spread(xs)
    return " / ".join(f.format(s[k]) for k in ("min", "median", "max"))


def us(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def mib(kib: float | None) -> str:
    return "-" if kib is None else f"{kib / 1024:,.0f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument(
        "--accounts", default="100000", help="comma-separated counts of accounts in state"
    )
    ap.add_argument("--sim-accounts", type=int, default=2000)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--runs", type=int, default=3, help="restarts per count (>= 3)")
    ap.add_argument("--memory-runs", type=int, default=1, help="memory:// starts per count")
    ap.add_argument("--touch", type=int, default=100_000, help="accounts sent one event each")
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--set", action="append", default=[], metavar="CHURNWATCH_X=VALUE",
                    help="a setting for every worker (e.g. CHURNWATCH_STATE_CACHE_MB=256)")  # fmt: skip
    args = ap.parse_args()
    if args.runs < 3:
        ap.error("--runs must be >= 3")
    counts = [int(x) for x in args.accounts.split(",")]

    say(f"simulating {args.sim_accounts} accounts x {args.days} days ...")
    states = simulated_states(SimConfig(accounts=args.sim_accounts, days=args.days, seed=args.seed),
                              PARTITIONS, 1000)  # fmt: skip
    templates, ids = [dump_state(s) for s in states], [s.account_id for s in states]
    per_account = state_bytes([Shard(accounts={s.account_id: s for s in states})])
    print(f"{len(states)} simulated account states ({args.sim_accounts} accounts x {args.days} "
          f"days, seed {args.seed}), cloned under new ids; {PARTITIONS} partitions; "
          f"cache {RESIDENT_BYTES_PER_ACCOUNT:,} B/account assumed")  # fmt: skip
    print()
    print("| bytes per account | median | p95 | max |")
    print("|---|---|---|---|")
    for name, kind in (
        ("serialized (dump_state)", "serialized"),
        ("resident (decoded)", "resident"),
    ):
        x = per_account[kind]
        print(f"| {name} | {x['median']:,.0f} | {x['p95']:,.0f} | {x['max']:,.0f} |")
    print()

    rows: list[tuple[str, int, dict[str, Any]]] = []
    with (
        bootstrap_servers() as bootstrap,
        tempfile.TemporaryDirectory(prefix="bench-store-") as tmp,
    ):
        args.bootstrap = bootstrap
        workdir, broker = Path(tmp), Broker(bootstrap)
        extra = dict(kv.split("=", 1) for kv in args.set)

        def env_for(run: str) -> dict[str, str]:
            env = isolated_env(bootstrap, workdir / run, run)
            # the production group timings (isolated_env's 6 s session is for quick tests)
            env.update({"CHURNWATCH_PARTITIONS": str(PARTITIONS), "CHURNWATCH_LOG_LEVEL": "warn",
                        "CHURNWATCH_SESSION_TIMEOUT_S": "10", "CHURNWATCH_HEARTBEAT_INTERVAL_S": "3",
                        **extra})  # fmt: skip
            return env

        try:
            run = f"e{uuid.uuid4().hex[:8]}"
            say("empty worker (baseline) ...")
            new_ids = [f"new-{i}" for i in range(args.touch)]  # accounts it creates
            rows.append(("empty worker (baseline)", 0,
                         measure("empty", env_for(run), workdir, args.runs, args, new_ids,
                                 SimConfig().start_ms, True)))  # fmt: skip
            broker.drop(run)
            for n in counts:
                run = f"s{uuid.uuid4().hex[:8]}"
                env = env_for(run)
                changelog = f"{env['CHURNWATCH_APP_ID']}-accounts-changelog"
                say(f"{n:,} accounts: filling {changelog} ...")
                ts = fill_changelog(bootstrap, changelog, templates, ids, n) + 3_600_000
                touch_ids = [clone_id(i, ids) for i in range(min(n, args.touch))]
                say("  rocksdb, first start ...")
                first = measure(f"{run}-rocks-first", env, workdir, 1, args, [], ts, False)
                rows.append(("rocksdb, first start", n, first))
                say("  rocksdb, restarts ...")
                rows.append(("rocksdb, restart", n,
                             measure(f"{run}-rocks", env, workdir, args.runs, args, touch_ids, ts, False)))  # fmt: skip
                say("  memory://, starts ...")
                mem_env = {**env, "CHURNWATCH_STORE": "memory"}
                rows.append(("memory://, start", n,
                             measure(f"{run}-mem", mem_env, workdir, args.memory_runs, args, touch_ids,
                                     ts + 60_000, True)))  # fmt: skip
                broker.drop(run)
        finally:
            broker.close()

    print(f"Restart to ready (process start to /readyz 200), seconds min / median / max; memory "
          f"in MiB; touched = after one event to each of min(count, {args.touch:,}) accounts")  # fmt: skip
    print()
    print("| worker | accounts in state | ready s | changelog records replayed | RSS ready | "
          "RSS touched | peak RSS | ready / empty worker | CPU µs per touch |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    empty = statistics.median(rows[0][2]["ready_s"])
    for label, n, r in rows:
        ratio = statistics.median(r["ready_s"]) / empty
        print(f"| {label} | {n:,} | {fmt3(r['ready_s'])} | {fmt3(r['recovered'], '{:,.0f}')} "
              f"| {mib(statistics.median(r['rss_ready_kib']))} | {mib(r['rss_touched_kib'])} "
              f"| {mib(r['peak_kib'])} | {ratio:.2f} | {us(r['touch_us'])} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
