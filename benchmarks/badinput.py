"""Bad input at volume (issue #13, item 4): fuzzed messages among valid traffic.

    python benchmarks/badinput.py                # 10,000 fuzzed messages (~2 minutes here)
    python benchmarks/badinput.py --bad 1000     # the CI scale (tests/integration/test_poison.py)

One worker (``python -m streams worker``, a deployment of its own, a message size limit
of ``--max-bytes``, the store of ``--store``) on the broker of ``KAFKA_BOOTSTRAP_SERVERS``
or a local broker of its own. Valid traffic: simulated households (``--accounts`` x
``--days``) as unkeyed JSON arrays of up to ``--batch`` events, a replay of a month in a
minute or two (so the worker's allowed lateness is ``--lateness``, 10 days: a worker
starved for a second is hours of event time behind here, and dropping events as late is
not what this measures; docs/operations.md, "Replays under faults"). The first
``--warmup`` share of it goes alone; then ``--bad`` fuzzed messages (seeded by
``--seed``) go interleaved with the rest, in two halves. Each fuzzed message knows which
dead letters ``CONTRACT.md`` ("Bad input") asks for:

- whole messages: truncated JSON, empty and null (tombstone) values, invalid UTF-8,
  NaN and Infinity, nesting deeper than the parser's limit, trailing garbage (all
  ``not_json``); ``null``, a string, a number (``not_object``); over the size limit
  (``too_large``);
- one event per message, or an element of an array that mixes them with valid events
  (each bad element dead-lettered with its index, its neighbours applied): a required
  field missing or null (``missing_field``), a field of a wrong JSON type
  (``wrong_type``), an out-of-range value (``invalid_value``), an unknown ``type``,
  ``ts`` years ahead or before the floor (``future_ts``, ``past_ts``), a duplicate key
  whose last value is bad (JSON objects keep the last), a non-object element;
- valid events made odd (no dead letter, applied): a duplicate key whose last value is
  good, deep nesting or a long string in an unknown field, an array padded to exactly
  the size limit.

Checked: every bad message or element has exactly one dead letter, of its kind, topic,
partition, offset and index, and there is no other; every account's ``events_applied``
equals its distinct valid events; the worker never exited or restarted; its resident
memory at the end is back to a clean run's: the same valid traffic, in the same
phases, through a worker of its own without the fuzz, run first (``--control``), within
``--rss-tolerance``; and it grew by at most ``--rss-tolerance`` of its warm-up's over
the fuzz's second half (bad input must not make it grow with its volume); it wrote at
most ``--max-log-lines`` log lines meanwhile. Prints a table (exit 1 if a check fails).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from models.contract import parse_ts, topic_kind
from models.simulator import SimConfig, simulate
from streams.devbroker import on_a_broker
from streams.devworker import WorkerProc, isolated_env, read_all
from streams.settings import Settings
from streams.simio import HOLD_MS  # an array spans at most this much event time
from streams.topics import ensure_topics

DAY_MS = 86_400_000
KEY = b"fuzz"  # a key for the fuzzed messages (a null value needs one)

# Values of a wrong JSON type for the fields the simulated events carry (CONTRACT.md)
STRINGS = ("event_id", "account_id", "device_id", "session_id", "action", "plan", "profile_id")
WRONG: dict[str, list[Any]] = {
    **{f: [17, 1.5, True, [], {"a": 1}] for f in STRINGS},
    "ts": [True, 1.5, [], {"ms": 1}],
    "amount": ["9", True, [], {}],
    "price": ["9", True, [1]],
    "watched_s": ["60", False, {}],
    "max_streams": [2.5, "2", True],
    "geo": ["Paris", 5, [48.8, 2.3], {"lat": "north", "lon": 2.3}],
}
INVALID: dict[str, list[Any]] = {
    "event_id": ["", "e" * 129],
    "account_id": [""],
    "ts": ["yesterday", "2026-13-01T00:00:00Z", "2026-03-01 12:00", -5, "10000-01-01T00:00:00Z"],
    "device_type": ["phone"],
    "currency": ["usd", "EURO"],
    "billing_period": ["week"],
    "price": [-1],
    "max_streams": [0],
    "watched_s": [-3],
    "geo": [{"lat": 91, "lon": 0}, {"lat": 0, "lon": -181}],
}
OTHER_KIND = {"missing_field", "wrong_type"}  # a required field that is JSON null
PLAN = ("plan", "price", "max_streams")
REQUIRED: dict[str, tuple[str, ...]] = {  # besides the common fields (CONTRACT.md)
    "subscription_started": (*PLAN, "currency", "billing_period"),
    "plan_changed": PLAN,
    "subscription_reactivated": PLAN,
    "price_changed": ("price",),
    "payment_succeeded": ("amount",),
    "payment_failed": ("amount",),
    "household_verification": ("device_id", "outcome"),
    "login": ("device_id",),
    "playback_started": ("session_id", "device_id"),
    "playback_stopped": ("session_id",),
    "activity": ("action",),
}


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class Fuzz:
    """Seeded fuzzed messages and elements from valid event templates."""

    rng: random.Random
    max_bytes: int
    now_ms: int
    n: int = 0

    def fresh(self, template: dict[str, Any]) -> dict[str, Any]:
        """A copy of a valid event under an id of its own."""
        self.n += 1
        return {**template, "event_id": f"fz-{self.n}"}

    def bad_event(self, template: dict[str, Any]) -> tuple[bytes, set[str], str]:
        """One invalid event: (its JSON, the dead-letter kinds allowed, what was done)."""
        ev, r = self.fresh(template), self.rng
        how = r.choice(["missing", "null", "wrong", "invalid", "type", "future", "past", "dup"])
        if how in ("missing", "null"):
            name = r.choice(["event_id", "type", "account_id", "ts", *REQUIRED.get(ev["type"], ())])
            if how == "missing":
                del ev[name]
                return orjson.dumps(ev), {"missing_field"}, f"no {name}"
            ev[name] = None
            return orjson.dumps(ev), {"missing_field"} if name != "type" else OTHER_KIND, "null"
        if how == "wrong":
            name = r.choice([k for k in ev if k in WRONG])
            ev[name] = r.choice(WRONG[name])
            return orjson.dumps(ev), {"wrong_type"}, f"wrong type of {name}"
        if how == "invalid":
            name = r.choice([k for k in ev if k in INVALID])
            ev[name] = r.choice(INVALID[name])
            return orjson.dumps(ev), {"invalid_value"}, f"invalid {name}"
        if how == "type":
            ev["type"] = r.choice(["teleport", "", "LOGIN", "login "])
            return orjson.dumps(ev), {"unknown_type"}, "unknown type"
        if how == "future":
            ev["ts"] = r.choice([self.now_ms + r.randint(2, 3000) * DAY_MS, "9999-12-31T23:59:59Z"])
            return orjson.dumps(ev), {"future_ts"}, "far future"
        if how == "past":
            ev["ts"] = r.choice([0, "1995-06-01T00:00:00Z", "1999-12-31T23:59:59.999Z"])
            return orjson.dumps(ev), {"past_ts"}, "far past"
        # a duplicate key whose last value is bad: JSON objects keep the last
        good = orjson.dumps(ev)
        return good[:-1] + b',"ts":"not a time"}', {"invalid_value"}, "duplicate key, bad last"

    def bad_message(self, template: dict[str, Any]) -> tuple[bytes | None, set[str], str]:
        """A whole message that is not an event or array: (value, kinds, what was done)."""
        r = self.rng
        raw = orjson.dumps(self.fresh(template))
        how = r.choice(["truncated", "empty", "tombstone", "utf8", "nan", "deep", "trailing",
                        "scalar", "large", "event", "event", "event"])  # fmt: skip
        if how == "truncated":
            return raw[: r.randint(1, len(raw) - 1)], {"not_json"}, how
        if how == "empty":
            return b"", {"not_json"}, how
        if how == "tombstone":
            return None, {"not_json"}, how
        if how == "utf8":
            cut = raw.index(b'"event_id"')
            return raw[:cut] + b'"x\xff\xfe":1,' + raw[cut:], {"not_json"}, how
        if how == "nan":
            return (
                raw[:-1] + b',"quantity":' + r.choice([b"NaN", b"Infinity", b"-Infinity"]) + b"}",
                {"not_json"},
                how,
            )
        if how == "deep":
            depth = r.randint(1100, 5000)
            return b"[" * depth + b"]" * depth, {"not_json"}, how
        if how == "trailing":
            return raw + r.choice([b"x", b"}", b",{}", b" 7"]), {"not_json"}, how
        if how == "scalar":
            return r.choice([b"null", b'"a string"', b"42", b"true", b"-0.5"]), {"not_object"}, how
        if how == "large":
            pad = "p" * (self.max_bytes + r.randint(1, 3 * self.max_bytes))
            return raw[:-1] + b',"pad":"' + pad.encode() + b'"}', {"too_large"}, how
        body, kinds, what = self.bad_event(template)
        return body, kinds, what

    def bad_element(self, template: dict[str, Any]) -> tuple[bytes, set[str], str]:
        if self.rng.random() < 0.2:
            return (
                self.rng.choice([b"17", b'"x"', b"null", b"[]", b"[{}]"]),
                {"not_object"},
                "not an object",
            )
        return self.bad_event(template)

    def odd_but_valid(self, ev: dict[str, Any]) -> tuple[bytes, str]:
        """A valid event written oddly: it must be applied, with no dead letter."""
        raw, how = orjson.dumps(ev), self.rng.choice(["dup", "deep", "long"])
        if how == "dup":  # the first value bad, the last good
            return b'{"ts":"not a time",' + raw[1:], "duplicate key, good last"
        if how == "deep":
            depth = self.rng.randint(50, 400)
            return raw[:-1] + b',"x_nested":' + b"[" * depth + b"]" * depth + b"}", "deep unknown"
        n = self.rng.randint(1_000, self.max_bytes // 4)
        return raw[:-1] + b',"x_note":"' + ("\u00e9" * n).encode() + b'"}', "long unknown"


@dataclass
class Sent:
    """What went out, and what the contract expects of it."""

    expected: dict[tuple[str, int, int, int | None], set[str]] = field(default_factory=dict)
    kinds: Counter[str] = field(default_factory=Counter)  # what was done, per fuzzed item
    pending: list[tuple[Any, list[tuple[int | None, set[str]]]]] = field(default_factory=list)
    fuzzed: int = 0

    def resolve(self) -> None:
        """Record where each fuzzed message landed (after the producer's flush)."""
        for future, items in self.pending:
            md = future.get(timeout=60)
            for index, kinds in items:
                self.expected[(md.topic, md.partition, md.offset, index)] = kinds
        self.pending.clear()


def arrays(events: list[dict[str, Any]], batch: int) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Events (in event-time order) as arrays per topic kind: full, or spanning HOLD_MS."""
    buffers: dict[str, list[dict[str, Any]]] = {}
    since: dict[str, int] = {}  # kind -> event time of its buffer's first event
    for ev in events:
        kind, ts = topic_kind(ev["type"]), parse_ts(ev["ts"])
        for held in [k for k, first in since.items() if ts - first >= HOLD_MS]:
            del since[held]
            yield held, buffers.pop(held)
        since.setdefault(kind, ts)
        buffers.setdefault(kind, []).append(ev)
        if len(buffers[kind]) >= batch:
            del since[kind]
            yield kind, buffers.pop(kind)
    yield from buffers.items()


def send_traffic(
    producer: Any, topics: dict[str, str], part: list[tuple[str, list[dict[str, Any]]]],
    fuzz: Fuzz | None, until: int, sent: Sent,
) -> None:  # fmt: skip
    """Valid arrays; with ``fuzz``, fuzzed messages spread among them until ``until`` in all
    (the rest after the last array)."""
    r = fuzz.rng if fuzz else random.Random(0)
    share = (until - sent.fuzzed) / max(1, len(part))
    owed = 0.0
    for kind, evs in part:
        pieces = [orjson.dumps(ev) for ev in evs]
        items: list[tuple[int | None, set[str]]] = []
        # a fuzzed array: mixed (30%), with an odd but valid event (15%), padded (5%)
        pick = r.random() if fuzz is not None and sent.fuzzed < until else 1.0
        if fuzz is not None and pick < 0.3:
            for _ in range(r.randint(1, 3)):
                raw, kinds, what = fuzz.bad_element(r.choice(evs))
                at = r.randint(0, len(pieces))
                pieces.insert(at, raw)
                items = [(i + (i >= at), k) for i, k in items] + [(at, kinds)]
                sent.kinds[f"element: {what}"] += 1
        elif fuzz is not None and pick < 0.45:
            i = r.randrange(len(pieces))
            pieces[i], what = fuzz.odd_but_valid(evs[i])
            sent.kinds[f"valid: {what}"] += 1
        value = b"[" + b",".join(pieces) + b"]"
        if fuzz is not None and 0.45 <= pick < 0.5:
            room = fuzz.max_bytes - len(value) - len(b',"x_pad":""')
            if room >= 0:  # exactly at the size limit: valid, applied
                value = value[:-2] + b',"x_pad":"' + b"p" * room + b'"}]'
                sent.kinds["valid: array of exactly the size limit"] += 1
            else:
                pick = 1.0
        if pick < 0.5:
            sent.fuzzed += 1
            owed -= 1
        future = producer.send(topics[kind], value=value)
        if items:
            sent.pending.append((future, items))
        owed += share
        while fuzz is not None and owed >= 1 and sent.fuzzed < until:
            send_bad(producer, topics[r.choice(list(topics))], fuzz, r.choice(evs), sent)
            owed -= 1
    while fuzz is not None and sent.fuzzed < until and part:
        send_bad(producer, topics[r.choice(list(topics))], fuzz, part[-1][1][-1], sent)


def send_bad(producer: Any, topic: str, fuzz: Fuzz, template: dict[str, Any], sent: Sent) -> None:
    body, kinds, what = fuzz.bad_message(template)
    sent.pending.append((producer.send(topic, value=body, key=KEY), [(None, kinds)]))
    sent.kinds[f"message: {what}"] += 1
    sent.fuzzed += 1


def rss(w: WorkerProc) -> float:
    return w.metrics().get("process_resident_memory_bytes", 0.0)


def distinct(part: list[tuple[str, list[dict[str, Any]]]]) -> Counter[str]:
    """Distinct events per account in these arrays."""
    return Counter(
        e["account_id"] for e in {e["event_id"]: e for _, evs in part for e in evs}.values()
    )


def wait_applied(w: WorkerProc, expect: Counter[str], timeout: float) -> dict[str, int]:
    deadline, got = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        got = {a: w.get_json(f"/accounts/{a}")[1].get("events_applied", 0) for a in expect}
        if got == expect:
            break
        time.sleep(2)
    return got


def dead_letters(bootstrap: str, topic: str, n: int) -> Counter[tuple[Any, ...]]:
    """(topic, partition, offset, index, kind) of every dead letter, counted."""
    found: Counter[tuple[Any, ...]] = Counter()
    for m in read_all(bootstrap, topic, expect=n, timeout=120):
        d = orjson.loads(m.value)
        found[(d["topic"], d["partition"], d["offset"], d["index"], d["kind"])] += 1
    return found


@dataclass
class Pass:
    """One worker of its own through the phases: the warm-up alone, then two halves."""

    settings: Settings
    memory: list[float]  # resident bytes after the warm-up and after each half
    got: dict[str, int]  # events_applied per account at the end
    sent: Sent
    seconds: float  # the two halves, sent to applied
    alive: bool
    restarted: bool
    lines: int  # log lines after the warm-up
    written: float  # bytes of account state the worker wrote to its store


def one_pass(
    args: argparse.Namespace, bootstrap: str, out: Path,
    traffic: list[tuple[str, list[dict[str, Any]]]], fuzzed: bool,
) -> Pass:  # fmt: skip
    """The valid ``traffic`` through a new worker; with ``fuzzed``, ``--bad`` fuzzed
    messages among its last two halves."""
    from kafka import KafkaProducer

    out.mkdir(parents=True, exist_ok=True)
    env = isolated_env(bootstrap, out / "data", f"badinput-{uuid.uuid4().hex[:8]}")
    env["CHURNWATCH_MAX_MESSAGE_BYTES"] = str(args.max_bytes)
    env["CHURNWATCH_ALLOWED_LATENESS_S"] = f"{args.lateness * 3600:g}"
    env["CHURNWATCH_STORE"] = args.store
    s = Settings.from_env(env)
    ensure_topics(s)
    topics = {"subscription": s.subscription_topic, "usage": s.usage_topic}
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, batch_size=512 * 1024, acks=1,
        compression_type="gzip", max_request_size=8 * args.max_bytes,
    )  # fmt: skip
    cut = int(len(traffic) * args.warmup)
    mid = (cut + len(traffic)) // 2
    if not cut < mid < len(traffic):
        raise SystemExit("badinput: too little valid traffic for a warm-up and two halves")
    worker = WorkerProc(s, dict(env), out / "worker.log").start(timeout=180)
    sent = Sent()
    name = "fuzzed" if fuzzed else "clean"
    say(f"{name} run: worker log {worker.log_path}")
    send_traffic(producer, topics, traffic[:cut], None, 0, sent)
    producer.flush()
    wait_applied(worker, distinct(traffic[:cut]), args.timeout)
    started = worker.metrics().get("process_start_time_seconds")
    memory = [rss(worker)]
    lines_before = len(worker.log_path.read_bytes().splitlines())
    say(f"{name} run: warm-up applied; resident memory {memory[0] / 2**20:.0f} MB")
    now_ms = int(time.time() * 1000)
    fuzz = Fuzz(random.Random(args.seed), args.max_bytes, now_ms) if fuzzed else None
    t0 = time.monotonic()
    got: dict[str, int] = {}
    for until, start, end in ((args.bad // 2, cut, mid), (args.bad, mid, len(traffic))):
        send_traffic(producer, topics, traffic[start:end], fuzz, until, sent)
        producer.flush()
        got = wait_applied(worker, distinct(traffic[:end]), args.timeout)
        memory.append(rss(worker))
        say(f"{name} run: {sent.fuzzed:,} fuzzed messages sent; resident memory "
            f"{memory[-1] / 2**20:.0f} MB")  # fmt: skip
    sent.resolve()
    producer.close()
    seconds = time.monotonic() - t0
    alive = worker.proc is not None and worker.proc.poll() is None
    m = worker.metrics()
    restarted = m.get("process_start_time_seconds") != started
    lines = len(worker.log_path.read_bytes().splitlines()) - lines_before
    worker.stop()
    written = m.get("churnwatch_state_written_bytes_total", 0.0)
    return Pass(s, memory, got, sent, seconds, alive, restarted, lines, written)


def run(args: argparse.Namespace, bootstrap: str, out: Path) -> int:
    events = list(simulate(SimConfig(accounts=args.accounts, days=args.days, seed=args.seed)))
    traffic = list(arrays(events, args.batch))
    expect = distinct(traffic)
    say(f"badinput: {len(events):,} valid events in {len(traffic)} arrays, {args.bad:,} fuzzed "
        f"messages{', after a clean run of the same traffic' if args.control else ''}")  # fmt: skip
    clean = None
    if args.control:
        clean = one_pass(args, bootstrap, out / "clean", traffic, fuzzed=False)
    fuzzed = one_pass(args, bootstrap, out / "fuzzed", traffic, fuzzed=True)
    sent, got, memory = fuzzed.sent, fuzzed.got, fuzzed.memory
    found = dead_letters(bootstrap, fuzzed.settings.dead_letter_topic, len(sent.expected))

    by_place: dict[tuple[Any, ...], list[str]] = {}
    for (topic, p, o, i, kind), n in found.items():
        by_place.setdefault((topic, p, o, i), []).extend([kind] * n)
    missing = [k for k in sent.expected if k not in by_place]
    wrong = [k for k, kinds in sent.expected.items()
             if k in by_place and not set(by_place[k]) <= kinds]  # fmt: skip
    twice = [k for k, kinds in by_place.items() if len(kinds) > 1]
    stray = [k for k in by_place if k not in sent.expected]
    short = {a: n - got.get(a, 0) for a, n in expect.items() if got.get(a, 0) != n}
    base, half, after = memory
    growth = (after - half) / base  # over the second half: bounded, not growing with input
    memory_rows = [("resident memory MB: warm-up, half, all fuzzed",
                    " / ".join(f"{x / 2**20:.0f}" for x in memory), "-", True)]  # fmt: skip
    if clean is not None:  # the baseline: the same valid traffic without the fuzz
        over = (after - clean.memory[-1]) / clean.memory[-1]
        memory_rows += [
            ("  the same phases, clean run (MB)",
             " / ".join(f"{x / 2**20:.0f}" for x in clean.memory), "-", True),
            ("resident memory at the end over the clean run's", f"{over:+.1%}",
             f"<= {args.rss_tolerance:+.0%}", over <= args.rss_tolerance),
            ("  account state written MB, clean / fuzzed",
             f"{clean.written / 2**20:.1f} / {fuzzed.written / 2**20:.1f}", "-", True),
        ]  # fmt: skip
    memory_rows.append(("resident memory growth over the second half", f"{growth:+.1%}",
                        f"<= {args.rss_tolerance:+.0%}", growth <= args.rss_tolerance))  # fmt: skip
    checks = [
        ("fuzzed messages (bad items expected)", f"{sent.fuzzed:,} ({len(sent.expected):,})",
         f"{args.bad:,}", sent.fuzzed == args.bad),
        ("bad items without their dead letter", f"{len(missing):,}", "0", not missing),
        ("dead letters of another kind", f"{len(wrong):,}", "0", not wrong),
        ("bad items dead-lettered twice", f"{len(twice):,}", "0", not twice),
        ("dead letters of nothing sent bad", f"{len(stray):,}", "0", not stray),
        ("accounts whose events_applied != distinct valid",
         f"{len(short)} of {len(expect)}", "0", not short),
        ("events applied", f"{sum(got.values()):,}", f"{sum(expect.values()):,}", not short),
        ("worker exited or restarted", str(not fuzzed.alive or fuzzed.restarted), "False",
         fuzzed.alive and not fuzzed.restarted),
        *memory_rows,
        ("log lines while fuzzed", f"{fuzzed.lines:,}", f"<= {args.max_log_lines}",
         fuzzed.lines <= args.max_log_lines),
        ("fuzz phase, s (sent to applied)", f"{fuzzed.seconds:.1f}", "-", True),
    ]  # fmt: skip
    print("what the fuzzed messages were (count)")
    for what, n in sorted(sent.kinds.items()):
        print(f"  {what:<44} {n:>6,}")
    print(f"\ndead letters by kind: {dict(Counter(k[4] for k in found.elements()))}\n")
    print(f"{'check':<52} {'figure':>26}  {'limit':<10} result")
    for name, figure, limit, ok in checks:
        print(f"{name:<52} {figure:>26}  {limit:<10} {'ok' if ok else 'FAIL'}")
    for label, keys in (("missing", missing), ("wrong kind", wrong), ("stray", stray)):
        for k in keys[:5]:
            print(f"  {label}: {k} expected {sent.expected.get(k)} got {by_place.get(k)}")
    failed = [name for name, _, _, ok in checks if not ok]
    print("\nall checks passed" if not failed else f"\nFAILED: {', '.join(failed)}")
    return 1 if failed else 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--bad", type=int, default=10_000, help="fuzzed messages (default 10000)")
    ap.add_argument("--accounts", type=int, default=60, help="simulated accounts (default 60)")
    ap.add_argument("--days", type=int, default=30, help="simulated days (default 30)")
    ap.add_argument("--seed", type=int, default=1, help="simulation and fuzz seed (default 1)")
    ap.add_argument("--batch", type=int, default=50, help="valid events per array (default 50)")
    ap.add_argument(
        "--warmup",
        type=float,
        default=0.3,
        help="share of the valid traffic sent first, alone (default 0.3)",
    )
    ap.add_argument(
        "--max-bytes",
        type=int,
        default=131_072,
        help="the worker's message size limit (default 128 KiB)",
    )
    ap.add_argument(
        "--rss-tolerance",
        type=float,
        default=0.10,
        help="resident memory allowed over the clean run's at the end, and growth allowed "
        "over the fuzz's second half as a share of the warm-up's (default 0.10)",
    )
    ap.add_argument(
        "--max-log-lines",
        type=int,
        default=50,
        help="worker log lines allowed while fuzzed (default 50)",
    )
    ap.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds to wait for the events to be applied (default 300)",
    )
    ap.add_argument(
        "--lateness",
        type=float,
        default=240.0,
        help="the worker's allowed lateness in hours (default 240: the traffic is a replay "
        "at thousands of times real time, where a stall of a second is hours of event time)",
    )
    ap.add_argument(
        "--store",
        choices=("memory", "rocksdb"),
        default="memory",
        help="the worker's CHURNWATCH_STORE (default memory: RocksDB's memtables fill with "
        "the bytes of state written, up to their limits, whatever the input; the soak "
        "measures them)",
    )
    ap.add_argument(
        "--control",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="first run the same valid traffic through a worker of its own without the fuzz: "
        "its memory at the end is the baseline the fuzzed worker's must come back to "
        "(default on; --no-control: the second-half growth only)",
    )
    ap.add_argument("--out", type=Path, help="folder for data and logs (default: a new one)")
    return ap.parse_args(argv)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="churnwatch-badinput-"))
    out.mkdir(parents=True, exist_ok=True)
    return on_a_broker(out, lambda bootstrap: run(args, bootstrap, out), say)


if __name__ == "__main__":
    sys.exit(main())
