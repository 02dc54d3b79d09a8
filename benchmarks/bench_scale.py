"""Scale benchmark (issue #12): churnwatch against its ceiling, its floor and a peer.

    python benchmarks/bench_scale.py                      # every row, ~13 minutes here
    python benchmarks/bench_scale.py --only churnwatch,ceiling --runs 5
    python benchmarks/bench_scale.py --json figures.json
    python benchmarks/bench_scale.py --only churnwatch --versus CHURNWATCH_INPUT_QUIET_S=0.3

One simulated history (``models.simulator``, ~220-byte events) is sent, in each
run, to fresh uuid-named input topics of 8 partitions in two shapes: one event
per message keyed by account_id, and unkeyed JSON arrays of 100 events
(as ``churnwatch simulate --kafka`` sends them, gzip). The default input (500
accounts x 60 days, ~215k events) is sized so that a throughput row measures
throughput: on 200 x 30 (45k events: 449 messages of 100) a worker was busy 30-37%
of its measured time on arrays, which then measured its start and its fixed
delays (flush timers, buffers), and on 500 x 60 it is busy 97-99%. Over
that same input, in each run:

  ceiling     a bare aiokafka ``getmany`` consumer + ``orjson.loads``
  floor       a Faust agent that only counts messages (the worker's Faust app
              settings, ``streams.app.create_app``), with Faust's own delivery
  fast-floor  the same agent with ``streams.faust_compat.deliver_without_tasks``
              (the worker's default since session 29): what that patch buys the floor
  peer        a Quix Streams application keeping a dict per account in its
              RocksDB state (arrays are exploded and grouped by account_id);
              needs ``pip install -e '.[bench]'``, skipped otherwise
  churnwatch  one worker process (``python -m streams worker``), events/s from
              its first message read until every input event is applied,
              duplicate- or late-dropped (its ``/metrics``)
  two-workers one worker, then two in one group, on 8 partitions, started on
              empty topics: the input is produced once every worker is ready, and
              the time runs from the start of that send to the last event done

With ``--versus CHURNWATCH_X=VALUE`` (repeatable) each churnwatch measurement is
made twice on the same topics, with the settings as given and with the ``--versus``
ones on top (the first of the two alternating between runs), and the table ends
with each run's ratio: a before/after of one setting in the same run.

and once, without a broker or after the runs:

  stages      CPU µs/event (``time.process_time``) of contract parse, privacy (the
              ingest's coarsening and pseudonymisation), internal codec, engine
              (``models.engine.process`` per partition, buffers of 1000) and state
              encode (``dump_state`` of each changed state per buffer), under the
              worker's garbage collector; and, on the states they left, an event
              on a *cold* account: each account gets one more playback an hour
              after the history's newest event, applied alone to its state read
              back from its encoded bytes (decode, engine, encode: what a worker
              pays per event when its accounts outnumber its cache of decoded
              states)
  state       bytes per account, of the states the stages left (identifiers
              pseudonymised, as a worker stores them): serialized (``dump_state``) and resident
              (tracemalloc: what decoding one state allocates and keeps)
  latency     producer timestamp of an input event to the Kafka timestamp of the
              ``risk-scores`` record that reports it (same account_id and ts),
              input sent at half of churnwatch's median events/s: once with the
              simulated event times (days pass in seconds: a backlog's pace), once
              with each event's ``ts`` set to its send time (a live service); and the
              worker's CPU per event and cores busy at that rate (from the first
              event sent to the last one done): smaller buffers cost more per event

Throughput figures are min/median/max over ``--runs``; ratios are per run
against the ceiling and the floor of the same run and shape. Progress goes to
stderr, the table to stdout. Uses ``KAFKA_BOOTSTRAP_SERVERS`` when set, else
starts a local broker (``streams.devbroker``). Every topic a run creates holds
the run's id in its name and is deleted when the run ends.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from models.account import AccountState, dump_state, load_state
from models.contract import Event, decode_batch, encode_batch, parse_message, parse_ts, topic_kind
from models.engine import EngineConfig, Models, Outputs, Shard, process
from models.household import PrefixCensus
from models.privacy import Pseudonymiser, coarsen
from models.simulator import SimConfig, simulate
from streams.devbroker import LocalBroker, free_port
from streams.devworker import (
    TEST_PSEUDONYM_KEY,
    WorkerError,
    WorkerProc,
    isolated_env,
    read_all,
)
from streams.settings import Settings
from streams.simio import KafkaSink, Progress, RateLimiter, encode_events, pump

PARTITIONS = 8
ARRAY = 100  # events per message in the batched shape
SHAPES = {"1/msg": 1, f"{ARRAY}/msg": ARRAY}
ROWS = (
    "ceiling",
    "floor",
    "fast-floor",
    "peer",
    "churnwatch",
    "two-workers",
    "stages",
    "state",
    "latency",
)
POLL_S = 0.2  # /metrics polling: start and end are known within this
WORKER_SETTINGS: dict[str, str] = {}  # --set CHURNWATCH_X=VALUE, for every worker
VERSUS: dict[str, str] = {}  # --versus CHURNWATCH_X=VALUE: churnwatch again with these


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def spread(values: list[float]) -> dict[str, float]:
    """min/median/max of some figures.

    >>> spread([3.0, 1.0, 2.0])
    {'min': 1.0, 'median': 2.0, 'max': 3.0}
    """
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list.

    >>> percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50), percentile(list(range(100)), 99)
    (3.0, 98)
    """
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


# --- the input ---------------------------------------------------------------


@dataclass
class Input:
    events: list[dict[str, Any]]

    @property
    def bytes_mean(self) -> float:
        return sum(len(orjson.dumps(e)) for e in self.events) / len(self.events)


@dataclass
class Topics:
    """A pair of input topics (subscription, usage) holding the input in one shape."""

    subscription: str
    usage: str
    events: int = 0
    messages: int = 0

    @property
    def names(self) -> list[str]:
        return [self.subscription, self.usage]


class Broker:
    """The broker and the topics this benchmark made on it (deleted by ``drop``)."""

    def __init__(self, bootstrap: str) -> None:
        from kafka import KafkaAdminClient

        self.bootstrap = bootstrap
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap)

    def input_topics(self, run: str, label: str) -> Topics:
        from kafka.admin import NewTopic

        t = Topics(f"bench-{run}-{label}-subscription", f"bench-{run}-{label}-usage")
        self.admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in t.names])
        return t

    def produce(self, topics: Topics, inp: Input, batch: int) -> Topics:
        """Send the input in messages of ``batch`` events, as fast as possible."""
        t = time.perf_counter()
        topics.messages = asyncio.run(_send_batches(self.bootstrap, topics, inp, batch))
        topics.events = len(inp.events)
        say(f"  produced {topics.events:,} events in {topics.messages:,} messages "
            f"in {time.perf_counter() - t:.1f}s")  # fmt: skip
        return topics

    def produce_paced(self, topics: Topics, inp: Input, rate: float,
                      sent: dict[tuple[str, int], float], live: bool = False) -> Topics:  # fmt: skip
        """Send one event per message at ``rate`` events/s, as ``churnwatch simulate --kafka
        --rate`` does; ``sent`` gets each event's send time (epoch ms) by (account_id, ts).
        ``live``: each event's ``ts`` is its send time, as a live service stamps them."""
        sink = KafkaSink(self.bootstrap, {"subscription": topics.subscription, "usage": topics.usage},
                         linger_ms=5)  # fmt: skip
        items = _live(inp.events) if live else encode_events(inp.events)
        try:
            pump(_stamped(items, sent), sink, RateLimiter(rate),
                 Progress(f"  produce at {rate:,.0f} ev/s", sys.stderr, every_s=5.0))  # fmt: skip
        finally:
            sink.close()
        topics.events, topics.messages = len(inp.events), sink.messages
        return topics

    def drop(self, run: str) -> None:
        """Delete every topic whose name holds ``run`` (ours, Faust's and Quix's)."""
        names = [t for t in self.admin.list_topics() if run in t]
        if names:
            try:
                self.admin.delete_topics(names)
            except Exception as exc:  # noqa: BLE001 - a leftover topic is no reason to stop
                say(f"  could not delete {len(names)} topics of run {run}: {exc!r}")

    def close(self) -> None:
        self.admin.close()


def messages(inp: Input, batch: int) -> Iterator[tuple[str, bytes | None, bytes]]:
    """(topic kind, key, value) as ``KafkaSink`` sends them: one event keyed by account_id,
    or unkeyed arrays of ``batch`` events per topic.

    >>> evs = [{"type": "login", "account_id": "a"}, {"type": "login", "account_id": "b"}]
    >>> [m[:2] for m in messages(Input(evs), 1)], len(list(messages(Input(evs), 100)))
    ([('usage', b'a'), ('usage', b'b')], 1)
    """
    buffers: dict[str, list[bytes]] = {"subscription": [], "usage": []}
    for ev in inp.events:
        kind, value = topic_kind(ev["type"]), orjson.dumps(ev)
        if batch == 1:
            yield kind, ev["account_id"].encode(), value
            continue
        buffers[kind].append(value)
        if len(buffers[kind]) == batch:
            yield kind, None, b"[" + b",".join(buffers[kind]) + b"]"
            buffers[kind] = []
    for kind, rest in buffers.items():
        if rest:
            yield kind, None, b"[" + b",".join(rest) + b"]"


async def _send_batches(bootstrap: str, topics: Topics, inp: Input, batch: int) -> int:
    """aiokafka batches per partition (~10x cheaper than a send per message, so that the
    producer takes little CPU from workers reading at the same time); gzip, as KafkaSink."""
    from aiokafka import AIOKafkaProducer

    from streams.app import partition_for

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type="gzip",
                                max_batch_size=512 * 1024)  # fmt: skip
    await producer.start()
    names = {"subscription": topics.subscription, "usage": topics.usage}
    open_batches: dict[tuple[str, int], Any] = {}
    pending, n = [], 0
    try:
        for n, (kind, key, value) in enumerate(messages(inp, batch), 1):
            part = partition_for(key.decode(), PARTITIONS) if key else n % PARTITIONS
            where = (names[kind], part)
            builder = open_batches.get(where) or producer.create_batch()
            if builder.append(key=key, value=value, timestamp=None) is None:  # full
                pending.append(await producer.send_batch(builder, where[0], partition=part))
                builder = producer.create_batch()
                builder.append(key=key, value=value, timestamp=None)
            open_batches[where] = builder
        for (topic, part), builder in open_batches.items():
            pending.append(await producer.send_batch(builder, topic, partition=part))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return n


def _live(events: list[dict[str, Any]]) -> Iterator[tuple[bytes, str, str, object]]:
    """``encode_events`` with each event's ``ts`` the wall clock when it is sent (never
    going back, and one millisecond apart within an account, so (account, ts) stays a key)."""
    last: dict[str, int] = {}
    for ev in events:
        ts = max(int(time.time() * 1000), last.get(ev["account_id"], 0) + 1)
        last[ev["account_id"]] = ts
        yield from encode_events([{**ev, "ts": ts}])


def _stamped(items: Iterator[tuple[bytes, str, str, object]], sent: dict[tuple[str, int], float]
             ) -> Iterator[tuple[bytes, str, str, object]]:  # fmt: skip
    for item in items:
        sent[(item[1], parse_ts(item[3]))] = time.time() * 1000  # == the record's CreateTime
        yield item


# --- ceiling: bare aiokafka ------------------------------------------------------


async def _bare(bootstrap: str, topics: Topics, timeout: float) -> float:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        *topics.names, bootstrap_servers=bootstrap, group_id=f"bench-{uuid.uuid4().hex}",
        auto_offset_reset="earliest", enable_auto_commit=False,
    )  # fmt: skip
    await consumer.start()
    seen, started = 0, None
    deadline = time.monotonic() + timeout
    try:
        while seen < topics.events:
            if time.monotonic() > deadline:
                raise TimeoutError(f"bare consumer read {seen:,} of {topics.events:,} events")
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if started is None and batches:
                started = time.perf_counter()
            for records in batches.values():
                for r in records:
                    doc = orjson.loads(r.value)
                    seen += len(doc) if type(doc) is list else 1
        return topics.events / (time.perf_counter() - (started or time.perf_counter()))
    finally:
        await consumer.stop()


def ceiling(broker: Broker, topics: Topics, timeout: float) -> dict[str, float]:
    return {"events_s": asyncio.run(_bare(broker.bootstrap, topics, timeout))}


# --- floor and peer: child processes -------------------------------------------------


def child(role: str, spec_path: str) -> int:
    """Run the floor (Faust) or peer (Quix) consumer of ``spec``; it writes its figures to
    ``spec["result"]`` once it has seen every message, and waits to be killed."""
    spec = orjson.loads(Path(spec_path).read_bytes())
    clock: dict[str, float] = {}

    def seen(n: int) -> None:
        if "first" not in clock:
            clock["first"] = time.perf_counter()
        if n >= spec["expect"] and "last" not in clock:
            clock["last"] = time.perf_counter()
            Path(spec["result"]).write_bytes(
                orjson.dumps({"seconds": clock["last"] - clock["first"]})
            )

    (_quix_peer if role == "peer" else _faust_floor)(spec, seen)
    return 0


def _faust_floor(spec: dict[str, Any], seen: Callable[[int], None]) -> None:
    import faust

    from streams.app import create_app

    s = Settings(kafka_bootstrap_servers=spec["bootstrap"], app_id=spec["group"],
                 data_dir=spec["data_dir"], web_port=free_port(), partitions=PARTITIONS,
                 session_timeout_s=6, heartbeat_interval_s=1.5, rebalance_timeout_s=10,
                 log_level="warning",
                 # the floor is Faust's own delivery; the fast floor the worker's default
                 deliver_without_tasks=spec["role"] == "fast-floor")  # fmt: skip
    app = create_app(s)
    topic = app.topic(*spec["topics"], key_type=bytes, value_type=bytes,
                      key_serializer="raw", value_serializer="raw")  # fmt: skip
    count = [0]

    @app.agent(topic)
    async def noop(stream: Any) -> None:
        async for _ in stream:
            count[0] += 1
            seen(count[0])

    worker = faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False)
    worker.spinner = None
    worker.execute_from_commandline()


def _quix_peer(spec: dict[str, Any], seen: Callable[[int], None]) -> None:
    from quixstreams import Application

    app = Application(broker_address=spec["bootstrap"], consumer_group=spec["group"],
                      auto_offset_reset="earliest", state_dir=spec["data_dir"],
                      loglevel="WARNING")  # fmt: skip
    subscription, usage = (
        app.dataframe(app.topic(t, value_deserializer="json")) for t in spec["topics"]
    )
    sdf = subscription.concat(usage)
    if spec["batch"] > 1:  # arrays: one row per event, then by account (a repartition topic)
        sdf = sdf.apply(lambda events: events, expand=True).group_by("account_id")
    count = [0]

    def update(event: dict[str, Any], state: Any) -> None:
        account = state.get("account") or {"events": 0, "types": {}}
        account["events"] += 1
        account["last_ts"] = event["ts"]
        account["types"][event["type"]] = account["types"].get(event["type"], 0) + 1
        state.set("account", account)
        count[0] += 1
        seen(count[0])

    sdf.update(update, stateful=True)
    app.run()


def run_child(role: str, broker: Broker, topics: Topics, run: str, batch: int, timeout: float,
              workdir: Path) -> dict[str, float]:  # fmt: skip
    """Start ``role`` as a child process over ``topics`` and wait for its figures."""
    name = f"{role}-{batch}-{run}-{uuid.uuid4().hex[:6]}"
    result = workdir / f"{name}.json"
    expect = topics.events if role == "peer" else topics.messages
    spec = {"bootstrap": broker.bootstrap, "topics": topics.names, "group": name, "role": role,
            "expect": expect, "batch": batch, "result": str(result),
            "data_dir": str(workdir / name)}  # fmt: skip
    spec_path = workdir / f"{name}.spec.json"
    spec_path.write_bytes(orjson.dumps(spec))
    log = workdir / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, __file__, "--child", role, str(spec_path)],
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while not result.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                why = (
                    f"exited {proc.returncode}"
                    if proc.poll() is not None
                    else f"timed out ({timeout:.0f}s)"
                )
                raise TimeoutError(
                    f"{role} {why}; log {log}:\n" + log.read_text(errors="replace")[-1500:]
                )
            time.sleep(0.1)
        seconds = orjson.loads(result.read_bytes())["seconds"]
    finally:
        proc.kill()
        proc.wait()
    return {"events_s": topics.events / seconds, "messages_s": topics.messages / seconds}


# --- churnwatch workers ------------------------------------------------------------


def new_worker(broker: Broker, topics: Topics, run: str, workdir: Path, env: dict[str, str] | None = None,
               extra: dict[str, str] | None = None) -> WorkerProc:  # fmt: skip
    """A worker (not started) reading ``topics``; ``env`` shares one app (group) between workers."""
    if env is None:
        wid = f"{run}-{uuid.uuid4().hex[:6]}"
        env = isolated_env(broker.bootstrap, workdir / wid, wid)
        env.update({"CHURNWATCH_APP_ID": f"bench-{wid}", "CHURNWATCH_PARTITIONS": str(PARTITIONS),
                    "CHURNWATCH_LOG_LEVEL": "warning",
                    "CHURNWATCH_SUBSCRIPTION_TOPIC": topics.subscription,
                    "CHURNWATCH_USAGE_TOPIC": topics.usage, **WORKER_SETTINGS, **(extra or {})})  # fmt: skip
    env = dict(env)
    log = Path(env["CHURNWATCH_DATA_DIR"]).with_suffix(f".{uuid.uuid4().hex[:4]}.log")
    Path(env["CHURNWATCH_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    return WorkerProc(Settings.from_env(env), env, log)


def wait_all_ready(workers: list[WorkerProc], timeout: float) -> None:
    """Until every worker says ready at the same time (the group has settled)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all([w.ready() for w in workers]):
            return
        time.sleep(0.3)
    raise WorkerError(f"workers not all ready within {timeout:.0f}s:\n{workers[-1].log()}")


def _sum(workers: list[WorkerProc], *names: str) -> float:
    total = 0.0
    for w in workers:
        try:
            m = w.metrics(*names)  # only these: the whole page is ~3 ms of the worker's CPU
        except OSError:
            continue
        total += sum(m.get(n, 0.0) for n in names)
    return total


DONE = ("churnwatch_events_applied_total", "churnwatch_duplicates_dropped_total",
        "churnwatch_late_events_dropped_total")  # fmt: skip


def cpu_seconds(workers: list[WorkerProc]) -> float:
    """User + system CPU the worker processes have used (Linux ``/proc``)."""
    total = 0.0
    for w in workers:
        assert w.proc is not None
        with open(f"/proc/{w.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def measure_workers(workers: list[WorkerProc], events: int, timeout: float,
                    started: tuple[float, float] | None = None) -> dict[str, float]:  # fmt: skip
    """events/s from the first input message read (or ``started``) to the last event done
    (applied or dropped), and the workers' CPU over that time: µs per event, and cores busy.

    ``started``: (monotonic time, the workers' CPU seconds) when ready workers were sent
    their input, which they read from its first message on: the time starts there (looking
    for the first message read once the input is sent would miss what they did meanwhile)."""
    deadline = time.monotonic() + timeout
    before = start = None
    if started is not None:
        start, cpu = started
        before = start
    done = 0.0
    last_report = time.monotonic()
    while True:
        now = time.monotonic()
        if start is None:
            if _sum(workers, "churnwatch_messages_consumed_total") > 0:
                start = (now + before) / 2 if before is not None else now
                cpu = cpu_seconds(workers)
            else:
                before = now
        if start is not None:
            done = _sum(workers, *DONE)
            if done >= events:
                end = (now + before) / 2
                cpu = cpu_seconds(workers) - cpu
                break
            before = now
        if now > deadline:
            raise TimeoutError(f"after {timeout:.0f}s {done:,.0f} of {events:,} events done "
                               f"(read started: {start is not None}); log:\n{workers[0].log()}")  # fmt: skip
        if now - last_report > 5:
            last_report = now
            say(f"    {done:,.0f} of {events:,} events done")
        time.sleep(POLL_S)
    applied = _sum(workers, "churnwatch_events_applied_total")
    return {"events_s": events / (end - start), "applied": applied, "dropped": done - applied,
            "cpu_us_event": cpu / events * 1e6, "cores_busy": cpu / (end - start)}  # fmt: skip


def churnwatch(broker: Broker, topics: Topics, run: str, workdir: Path, timeout: float,
               extra: dict[str, str] | None = None) -> dict[str, float]:  # fmt: skip
    w = new_worker(broker, topics, run, workdir, extra=extra).launch()
    try:
        return measure_workers([w], topics.events, timeout)
    finally:
        w.stop(signal.SIGKILL)


def live_workers(broker: Broker, inp: Input, n: int, run: str, workdir: Path, timeout: float,
                 *, rate: float | None = None, sent: dict[tuple[str, int], float] | None = None,
                 live: bool = False) -> tuple[dict[str, float], list[WorkerProc], Topics]:  # fmt: skip
    """``n`` workers in one group on empty topics; once all are ready, the input is sent."""
    topics = broker.input_topics(run, f"live{n}-{uuid.uuid4().hex[:4]}")
    first = new_worker(broker, topics, run, workdir)
    workers = [first] + [new_worker(broker, topics, run, workdir, first.env) for _ in range(n - 1)]
    for w in workers:
        w.launch()
    try:
        wait_all_ready(workers, timeout=120)
        if rate is None:
            sent_at = (time.monotonic(), cpu_seconds(workers))
            broker.produce(topics, inp, 1)
            return measure_workers(workers, topics.events, timeout, sent_at), workers, topics
        cpu, started = cpu_seconds(workers), time.monotonic()
        broker.produce_paced(topics, inp, rate, sent if sent is not None else {}, live)
        result = measure_workers(workers, topics.events, timeout)
        # at a paced rate: the workers' CPU from the first event sent to the last one done
        cpu, took = cpu_seconds(workers) - cpu, time.monotonic() - started
        result.update(paced_cpu_us_event=cpu / topics.events * 1e6, paced_cores_busy=cpu / took)
        return result, workers, topics
    except BaseException:
        for w in workers:
            w.stop(signal.SIGKILL)
        raise


def two_workers(
    broker: Broker, inp: Input, run: str, workdir: Path, timeout: float
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for n in (1, 2):
        result, workers, _ = live_workers(broker, inp, n, run, workdir, timeout)
        for w in workers:
            w.stop(signal.SIGKILL)
        figures[f"{n}_worker_events_s"] = result["events_s"]
        figures[f"{n}_worker_cpu"] = result
        say(f"    {n} worker(s): {result['events_s']:,.0f} ev/s")
    figures["ratio"] = figures["2_worker_events_s"] / figures["1_worker_events_s"]
    return figures


WARM_UP_S = 2.0  # the latency row also reports records of events sent after this


def latency(broker: Broker, inp: Input, run: str, workdir: Path, rate: float, timeout: float,
            live: bool = False) -> dict[str, Any]:  # fmt: skip
    sent: dict[tuple[str, int], float] = {}
    result, workers, topics = live_workers(broker, inp, 1, run, workdir, timeout, rate=rate,
                                           sent=sent, live=live)  # fmt: skip
    try:
        scores = read_all(broker.bootstrap, workers[0].settings.scores_topic, timeout=60)
    finally:
        workers[0].stop(signal.SIGKILL)
    lat, later = [], []  # later: sent after the first WARM_UP_S (every account's first score)
    first = min(sent.values(), default=0.0)
    for r in scores:
        doc = orjson.loads(r.value)
        t0 = sent.get((doc["account_id"], parse_ts(doc["ts"])))
        if t0 is not None:
            lat.append(r.timestamp - t0)
            if t0 >= first + WARM_UP_S * 1000:
                later.append(r.timestamp - t0)
    if not lat:
        raise RuntimeError(f"no risk-scores record matched an input event ({len(scores)} read)")
    return {"rate": rate, "events": topics.events, "scores": len(scores), "matched": len(lat),
            "cpu_us_event": result["paced_cpu_us_event"], "cores_busy": result["paced_cores_busy"],
            "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99), "max_ms": max(lat),
            "later": len(later), "later_p99_ms": percentile(later, 99) if later else None}  # fmt: skip


# --- in process: CPU by stage, state size ---------------------------------------------


STAGES = (
    "parse 1/msg",
    f"parse {ARRAY}/msg",
    "privacy",
    "internal codec",
    "engine",
    "state encode",
)


def _as_a_worker() -> tuple[Callable[[Event], Event], EngineConfig, Models, PrefixCensus]:
    """What the in-process rows run as a worker would: the test workers' pseudonyms
    (tokens of 16 hex digits whatever the key, so states have the size and the cost they
    have in a worker), the engine's settings, untrained models and an empty census."""
    pseudonymise = Pseudonymiser(TEST_PSEUDONYM_KEY.encode()).event
    return pseudonymise, Settings().engine_config(), Models.fresh(), PrefixCensus()


def stages(inp: Input, buffer: int = 1000) -> tuple[dict[str, float], list[Shard]]:
    """CPU µs/event of each stage of the worker's path, in one process (no Kafka), under
    the worker's garbage collector (``worker_gc``): under Python's default one, the
    full collections over this process's history (every event as a dict, a message and
    a parsed event) landed in the stages that allocate most, and parse, privacy and the
    internal codec measured 1.4-3x what a worker pays (docs/design.md)."""
    with worker_gc():
        return _stages(inp, buffer)


def _stages(inp: Input, buffer: int) -> tuple[dict[str, float], list[Shard]]:
    from streams.agents.ingest import INTERNAL_BATCH, route

    singles = [orjson.dumps(e) for e in inp.events]
    arrays = [orjson.dumps(inp.events[i : i + ARRAY]) for i in range(0, len(inp.events), ARRAY)]
    cost = dict.fromkeys(STAGES, 0.0)

    def timed(stage: str, fn: Callable[[], Any]) -> Any:
        t = time.process_time()
        out = fn()
        cost[stage] += time.process_time() - t
        return out

    parsed = timed("parse 1/msg", lambda: [e for raw in singles for e in parse_message(
        raw, topic="usage", partition=0, offset=0)[0]])  # fmt: skip
    timed(f"parse {ARRAY}/msg", lambda: [parse_message(raw, topic="usage", partition=0, offset=0)
                                         for raw in arrays])  # fmt: skip
    pseudonymise, cfg, models, census = _as_a_worker()
    parsed = timed("privacy", lambda: [pseudonymise(coarsen(e)) for e in parsed])
    shards = [Shard() for _ in range(PARTITIONS)]
    for i in range(0, len(parsed), buffer):
        routed = route(parsed[i : i + buffer], PARTITIONS)
        messages = timed("internal codec", lambda r=routed: [
            (p, decode_batch(encode_batch(part[j : j + INTERNAL_BATCH])))
            for p, part in r.items() for j in range(0, len(part), INTERNAL_BATCH)])  # fmt: skip
        out = Outputs()
        timed("engine", lambda m=messages, o=out: [process(shards[p], evs, models, cfg, o, census)
                                                   for p, evs in m])  # fmt: skip

        def encode() -> None:
            for shard in shards:
                for account_id in shard.dirty:
                    dump_state(shard.accounts[account_id])
                shard.dirty.clear()

        timed("state encode", encode)
    per_event = {k: v / len(parsed) * 1e6 for k, v in cost.items()}
    per_event["total (1/msg)"] = sum(v for k, v in per_event.items() if k != f"parse {ARRAY}/msg")
    return per_event, shards


COLD_STAGES = ("decode", "engine", "encode")


@contextmanager
def worker_gc() -> Iterator[None]:
    """Python's cyclic garbage collector as the worker tunes it (``streams.cli.tune_gc``:
    what is alive now frozen, the young generation collected every
    ``CHURNWATCH_GC_YOUNG_THRESHOLD`` objects), then as it was. Under the default one, a
    full collection over the earlier runs' states landed in the cold row's decode in
    some runs and not others (compiled: 137 then 626 and 628 µs per event)."""
    from streams.cli import tune_gc

    before = gc.get_threshold()
    tune_gc(Settings().gc_young_threshold)
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def cold(inp: Input, shards: list[Shard]) -> dict[str, float]:
    """CPU µs/event of an event on an account whose state is not in memory, by stage.

    Each account of ``shards`` that played something gets its last playback again, an
    hour after the newest event of the history (back after a quiet spell: the engine
    crosses the midnights since the account's last event and scores it afresh). The
    account's state is read back from its encoded bytes when the event needs it, the
    event applied alone, and the state encoded again, as a worker whose cache of decoded
    states is smaller than its accounts does for each such event, under the worker's
    garbage collector (``worker_gc``).
    """
    last: dict[str, dict[str, Any]] = {}
    newest = 0
    for e in inp.events:
        if isinstance(e.get("ts"), int):
            newest = max(newest, e["ts"])
            if e.get("type") == "playback_started":
                last[e["account_id"]] = e
    pseudonymise, cfg, models, census = _as_a_worker()
    raws = {a: dump_state(s) for shard in shards for a, s in shard.accounts.items()}
    events = []
    for i, e in enumerate(last.values()):
        again = {**e, "event_id": f"{e['event_id']}-cold", "ts": newest + 3_600_000}
        parsed = parse_message(orjson.dumps(again), topic="usage", partition=0, offset=i)[0]
        events += [x for x in map(pseudonymise, map(coarsen, parsed)) if x.account_id in raws]
    if not events:
        return dict.fromkeys((*COLD_STAGES, "total", "events"), 0.0)
    decoding = 0.0

    def load(account_id: str) -> AccountState:
        nonlocal decoding
        t = time.process_time()
        state = load_state(raws[account_id])
        decoding += time.process_time() - t
        return state

    shard, out = Shard(load=load), Outputs()
    with worker_gc():
        t = time.process_time()
        for e in events:
            process(shard, [e], models, cfg, out, census)
        applying = time.process_time() - t
        t = time.process_time()
        for account_id in shard.dirty:
            dump_state(shard.accounts[account_id])
        encoding = time.process_time() - t
    cost = {"decode": decoding, "engine": applying - decoding, "encode": encoding}
    per_event = {k: v / len(events) * 1e6 for k, v in cost.items()}
    per_event["total"] = sum(per_event.values())
    per_event["events"] = float(len(events))
    return per_event


def state_bytes(shards: list[Shard]) -> dict[str, Any]:
    """Serialized and resident bytes per account of the states the engine left."""
    raws = [dump_state(s) for shard in shards for s in shard.accounts.values()]
    serialized = [float(len(r)) for r in raws]
    tracemalloc.start()
    resident, keep = [], []
    for r in raws:
        before = tracemalloc.get_traced_memory()[0]
        keep.append(load_state(r))
        resident.append(float(tracemalloc.get_traced_memory()[0] - before))
    tracemalloc.stop()
    return {
        "accounts": len(raws),
        "serialized": {**spread(serialized), "p95": percentile(serialized, 95)},
        "resident": {**spread(resident), "p95": percentile(resident, 95)},
    }


# --- the table ---------------------------------------------------------------------


def fmt_spread(s: dict[str, float], unit: str = "") -> str:
    return f"{s['min']:>9,.0f} {s['median']:>9,.0f} {s['max']:>9,.0f}{unit}"


def cpu_cells(per_run: list[dict[str, float]]) -> str:
    us, busy = (
        spread([r["cpu_us_event"] for r in per_run]),
        spread([r["cores_busy"] for r in per_run]),
    )
    return (
        f"{fmt_spread(us)}   cores busy {busy['median']:.2f} ({busy['min']:.2f}–{busy['max']:.2f})"
    )


def fmt_ratio(values: list[float]) -> str:
    if not values:
        return "—"
    s = spread(values)
    return f"{s['median']:.2%} ({s['min']:.2%}–{s['max']:.2%})"


THROUGHPUT_NOTES = (
    "floor: counts messages, parses nothing (on arrays, events/s = messages/s x 100)",
    "peer on arrays: one row per event, re-keyed by account_id (group_by: a repartition topic)",
    "churnwatch: from its first message read to the last event applied or dropped",
)


def table(fig: dict[str, Any], runs: int) -> str:
    lines = [f"input: {fig['input']['events']:,} events ({fig['input']['accounts']} accounts x "
             f"{fig['input']['days']} days), {fig['input']['bytes_mean']:.0f} bytes mean, "
             f"{PARTITIONS} partitions; {runs} runs"]  # fmt: skip
    if fig["input"].get("worker_settings"):
        lines.append(
            "worker settings: "
            + " ".join(f"{k}={v}" for k, v in fig["input"]["worker_settings"].items())
        )
    through = fig.get("throughput", {})
    if through:
        lines += ["", f"{'events/s':<38}{'shape':<9}{'min':>9} {'median':>9} {'max':>9}   "
                  f"{'vs ceiling: median (min–max)':<31}vs floor"]  # fmt: skip
    names = {"ceiling": "ceiling: aiokafka getmany + orjson", "floor": "floor: no-op Faust agent",
             "fast-floor": "  floor with deliver_without_tasks",
             "peer": "peer: Quix Streams, dict per account", "churnwatch": "churnwatch: one worker"}  # fmt: skip
    for row, label in names.items():
        for shape in SHAPES:
            per_run = through.get(row, {}).get(shape)
            if not per_run:
                continue
            rates = [r["events_s"] for r in per_run]
            ratios = {b: [r["events_s"] / base["events_s"] for r, base in
                          zip(per_run, through.get(b, {}).get(shape, []), strict=False)]
                      for b in ("ceiling", "floor")}  # fmt: skip
            rc = fmt_ratio(ratios["ceiling"]) if row != "ceiling" else ""
            rf = fmt_ratio(ratios["floor"]) if row not in ("ceiling", "floor") else ""
            lines.append(f"{label:<38}{shape:<9}{fmt_spread(spread(rates))}   {rc:<31}{rf}")
            if row in ("floor", "fast-floor"):
                msgs = spread([r["messages_s"] for r in per_run])
                lines.append(f"{'  (floor, messages/s)':<38}{shape:<9}{fmt_spread(msgs)}")
            if row == "churnwatch":
                lines.append(
                    f"{'  (worker CPU µs/event; cores busy)':<38}{shape:<9}{cpu_cells(per_run)}"
                )
    if through:
        lines += [f"  {note}" for note in THROUGHPUT_NOTES]
    for note in fig.get("notes", []):
        lines.append(f"  note: {note}")
    if "two-workers" in fig:
        per_run = fig["two-workers"]
        lines += ["", "two workers vs one, 1/msg keyed input produced once all are ready:"]
        for key in ("1_worker_events_s", "2_worker_events_s"):
            lines.append(
                f"  {key.split('_')[0]} worker(s) events/s     {fmt_spread(spread([r[key] for r in per_run]))}"
            )
            lines.append(
                f"    (CPU µs/event; cores, all) {cpu_cells([r[key.replace('events_s', 'cpu')] for r in per_run])}"
            )
        ratio = spread([r["ratio"] for r in per_run])
        lines.append(
            f"  ratio two/one              {ratio['min']:>9.2f} {ratio['median']:>9.2f} {ratio['max']:>9.2f}"
        )
    if "versus" in through:
        lines += ["", "churnwatch (A) vs churnwatch with " + " ".join(f"{k}={v}" for k, v in VERSUS.items())
                  + " (B), same topics, same run:"]  # fmt: skip
        for shape in SHAPES:
            a, b = through.get("churnwatch", {}).get(shape, []), through["versus"].get(shape, [])
            if not a or not b:
                continue
            per_run = [f"{x['events_s'] / y['events_s']:.2f}" for x, y in zip(a, b, strict=False)]
            lines.append(f"  {shape:<7} A ev/s {fmt_spread(spread([r['events_s'] for r in a]))}   "
                         f"B ev/s {fmt_spread(spread([r['events_s'] for r in b]))}")  # fmt: skip
            lines.append(f"  {'':<7} A CPU µs/event {cpu_cells(a)}")
            lines.append(f"  {'':<7} B CPU µs/event {cpu_cells(b)}")
            lines.append(f"  {'':<7} A/B events/s per run: {', '.join(per_run)}")
    if "stages" in fig:
        lines += [
            "",
            f"CPU µs/event by stage (in process, no broker){'min':>10} {'median':>9} {'max':>9}",
        ]
        for stage in (*STAGES, "total (1/msg)"):
            s = spread([r[stage] for r in fig["stages"]])
            lines.append(f"  {stage:<43}{s['min']:>9.1f} {s['median']:>9.1f} {s['max']:>9.1f}")
    if fig.get("cold"):
        n = fig["cold"][0]["events"]
        lines += ["", f"CPU µs/event on a cold account ({n:,.0f} events){'min':>17} {'median':>9} "
                      f"{'max':>9}"]  # fmt: skip
        for stage in (*COLD_STAGES, "total"):
            s = spread([r[stage] for r in fig["cold"]])
            lines.append(f"  {stage:<43}{s['min']:>9.1f} {s['median']:>9.1f} {s['max']:>9.1f}")
    if "state" in fig:
        st = fig["state"]
        lines += [
            "",
            f"state bytes per account ({st['accounts']} accounts){'median':>14} {'p95':>9} {'max':>9}",
        ]
        for kind, label in (
            ("serialized", "serialized (dump_state)"),
            ("resident", "resident (tracemalloc, decoded)"),
        ):
            s = st[kind]
            lines.append(f"  {label:<43}{s['median']:>9,.0f} {s['p95']:>9,.0f} {s['max']:>9,.0f}")
    for key, times in (
        ("latency", "simulated event times"),
        ("latency-live", "event times = send times"),
    ):
        if key in fig:
            lat = fig[key]
            lines += ["", f"end-to-end latency, {times}, input at {lat['rate']:,.0f} "
                      f"ev/s ({lat['events']:,} events, {lat['matched']:,} of {lat['scores']:,} risk-scores "
                      f"records matched): p50 {lat['p50_ms']:,.0f} ms, p99 {lat['p99_ms']:,.0f} ms, "
                      f"max {lat['max_ms']:,.0f} ms"]  # fmt: skip
            if lat.get("later_p99_ms") is not None:
                lines.append(f"  after the first {WARM_UP_S:.0f} s ({lat['later']:,} records): "
                             f"p99 {lat['later_p99_ms']:,.0f} ms")  # fmt: skip
            if lat.get("cores_busy") is not None:
                lines.append(f"  worker at that rate: {lat['cpu_us_event']:,.0f} CPU µs/event, "
                             f"cores busy {lat['cores_busy']:.2f}")  # fmt: skip
    for row, why in fig.get("skipped", {}).items():
        lines.append(f"{row}: skipped: {why}")
    for what in fig.get("failed", []):
        lines.append(f"FAILED {what}")
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------


@contextmanager
def bootstrap_servers() -> Iterator[str]:
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing:
        yield existing
        return
    say("KAFKA_BOOTSTRAP_SERVERS not set: starting a local broker")
    with LocalBroker() as broker:
        yield broker.bootstrap


@dataclass
class Bench:
    args: argparse.Namespace
    inp: Input
    workdir: Path
    fig: dict[str, Any] = field(default_factory=dict)

    def want(self, row: str) -> bool:
        return row in self.args.only

    def record(self, row: str, shape: str, figures: dict[str, float]) -> None:
        self.fig.setdefault("throughput", {}).setdefault(row, {}).setdefault(shape, []).append(
            figures
        )
        say(f"  {row} {shape}: {figures['events_s']:,.0f} ev/s")

    def skip(self, row: str, why: str) -> None:
        if row not in self.fig.setdefault("skipped", {}):
            self.fig["skipped"][row] = why
            say(f"  {row}: skipped: {why}")

    def throughput_run(self, broker: Broker, run: str) -> None:
        t = self.args.timeout
        for shape, batch in SHAPES.items():
            topics = broker.produce(broker.input_topics(run, f"b{batch}"), self.inp, batch)
            if self.want("ceiling"):
                self.record("ceiling", shape, ceiling(broker, topics, t))
            for row in ("floor", "fast-floor", "peer"):
                if not self.want(row):
                    continue
                if row == "peer" and not quix_installed():
                    self.skip("peer", "quixstreams is not installed (pip install -e '.[bench]')")
                    continue
                try:
                    self.record(
                        row, shape, run_child(row, broker, topics, run, batch, t, self.workdir)
                    )
                except TimeoutError as exc:
                    bench_fail(self.fig, f"{row} {shape}", exc)
            if self.want("churnwatch"):
                order = [("churnwatch", None)] + ([("versus", VERSUS)] if VERSUS else [])
                if len(self.fig.get("throughput", {}).get("churnwatch", {}).get(shape, [])) % 2:
                    order.reverse()  # neither goes first in every run
                for row, extra in order:
                    try:
                        self.record(
                            row, shape, churnwatch(broker, topics, run, self.workdir, t, extra)
                        )
                    except (TimeoutError, WorkerError) as exc:
                        bench_fail(self.fig, f"{row} {shape}", exc)
        if self.want("two-workers"):
            try:
                self.fig.setdefault("two-workers", []).append(
                    two_workers(broker, self.inp, run, self.workdir, t)
                )
            except (TimeoutError, WorkerError) as exc:
                bench_fail(self.fig, "two-workers", exc)

    def latency_rate(self) -> float:
        if self.args.latency_rate:
            return self.args.latency_rate
        runs = self.fig.get("throughput", {}).get("churnwatch", {}).get("1/msg")
        if runs:
            return statistics.median(r["events_s"] for r in runs) / 2
        self.fig.setdefault("notes", []).append(
            "latency rate: churnwatch not measured, 2,000 ev/s used"
        )
        return 2000.0


def bench_fail(fig: dict[str, Any], what: str, exc: BaseException) -> None:
    """A measurement that failed or timed out: said now (with its log), listed under the table."""
    say(f"  {what}: {exc}")
    fig.setdefault("failed", []).append(f"{what}: {str(exc).splitlines()[0]}")


def quix_installed() -> bool:
    return importlib.util.find_spec("quixstreams") is not None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(argv[1], argv[2])
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--accounts", type=int, default=500, help="simulated accounts (default 500)")
    ap.add_argument("--days", type=int, default=60, help="simulated days (default 60)")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--runs", type=int, default=3, help="runs per throughput figure (default 3)")
    ap.add_argument("--only", default=",".join(ROWS), help=f"rows to measure, of {','.join(ROWS)}")
    ap.add_argument("--latency-s", type=float, default=40.0,
                    help="seconds of input for the latency row (default 40: long enough for "
                    "a queue to build; 10 s showed little more than the first scores)")  # fmt: skip
    ap.add_argument("--latency-rate", type=float, help="events/s for the latency row (default: "
                    "half of churnwatch's median 1/msg events/s, measured in this run)")  # fmt: skip
    ap.add_argument(
        "--timeout", type=float, default=180.0, help="seconds any one measurement may take"
    )
    ap.add_argument("--set", action="append", default=[], metavar="CHURNWATCH_X=VALUE",
                    help="a setting for every churnwatch worker (repeatable)")  # fmt: skip
    ap.add_argument("--versus", action="append", default=[], metavar="CHURNWATCH_X=VALUE",
                    help="measure churnwatch again with this setting too, same run (repeatable)")  # fmt: skip
    ap.add_argument("--json", type=Path, help="also write the raw figures here")
    args = ap.parse_args(argv)
    for option, into in (("set", WORKER_SETTINGS), ("versus", VERSUS)):
        for item in getattr(args, option):
            name, eq, value = item.partition("=")
            if not eq or not name.startswith("CHURNWATCH_"):
                ap.error(f"--{option} wants CHURNWATCH_X=VALUE, got {item!r}")
            into[name] = value
    args.only = [r.strip() for r in args.only.split(",") if r.strip()]
    if unknown := set(args.only) - set(ROWS):
        ap.error(f"unknown rows {sorted(unknown)}; choose from {','.join(ROWS)}")
    started = time.monotonic()
    cfg = SimConfig(accounts=args.accounts, days=args.days, seed=args.seed)
    inp = Input(list(simulate(cfg)))
    workdir = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    bench = Bench(args, inp, workdir)
    bench.fig["input"] = {"events": len(inp.events), "accounts": args.accounts, "days": args.days,
                          "bytes_mean": inp.bytes_mean, "worker_settings": WORKER_SETTINGS}  # fmt: skip
    say(f"{len(inp.events):,} events simulated; work files in {workdir}")

    if bench.want("stages") or bench.want("state"):
        for i in range(args.runs if bench.want("stages") else 1):
            say(f"stages, run {i + 1}/{args.runs}")
            per_event, shards = stages(inp)
            bench.fig.setdefault("stages", []).append(per_event)
            if bench.want("stages"):
                bench.fig.setdefault("cold", []).append(cold(inp, shards))
        if bench.want("state"):
            say("state bytes")
            bench.fig["state"] = state_bytes(shards)
        if not bench.want("stages"):
            del bench.fig["stages"]

    broker_rows = {"ceiling", "floor", "fast-floor", "peer", "churnwatch", "two-workers", "latency"}
    if broker_rows & set(args.only):
        with ExitStack() as stack:
            broker = Broker(stack.enter_context(bootstrap_servers()))
            stack.callback(broker.close)
            for i in range(args.runs if broker_rows - {"latency"} & set(args.only) else 0):
                run = f"scale{uuid.uuid4().hex[:8]}"
                say(f"run {i + 1}/{args.runs} ({run})")
                try:
                    bench.throughput_run(broker, run)
                finally:
                    broker.drop(run)
            if bench.want("latency"):
                run = f"scale{uuid.uuid4().hex[:8]}"
                rate = bench.latency_rate()
                n = max(1000, int(rate * args.latency_s))
                try:
                    for key, live in (("latency", False), ("latency-live", True)):
                        say(f"{key} ({run}): {n:,} events at {rate:,.0f} ev/s")
                        try:
                            bench.fig[key] = latency(broker, Input(inp.events[:n]), run, workdir,
                                                     rate, args.timeout, live)  # fmt: skip
                        except (TimeoutError, WorkerError, RuntimeError) as exc:
                            bench_fail(bench.fig, key, exc)
                finally:
                    broker.drop(run)
    bench.fig["seconds"] = time.monotonic() - started
    if args.json:
        args.json.write_bytes(orjson.dumps(bench.fig, option=orjson.OPT_INDENT_2))
    print(table(bench.fig, args.runs))
    if bench.fig.get("failed"):
        say(f"done in {bench.fig['seconds']:.0f}s; logs of what failed are in {workdir}")
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    say(f"done in {bench.fig['seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
