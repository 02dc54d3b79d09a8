"""Cost of parse_message against bare orjson.loads of the same bytes.

Run: python benchmarks/bench_parse.py [--events N] [--rounds R]

Builds a seeded mix of ~300-byte valid events (mostly usage, some
subscription; half with RFC 3339 ``ts``, half with epoch ms), as single-event
messages and as 100-event batches, and prints the best-of-R µs per event. Then the cost of
the ingest's pseudonymisation (``models.privacy``) of the parsed events: with a cold
cache (every device id and IP of this mix is new: one HMAC-SHA256 each, plus the
IP's prefix) and a warm one (identifiers seen before, as an account's repeat).
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

import orjson

from models.contract import Event, parse_message
from models.privacy import Pseudonymiser

START_MS = 1_772_366_400_000  # 2026-03-01T12:00:00Z
DEVICE_TYPES = ["tv", "mobile", "tablet", "web", "console", "other"]


def make_event(rng: random.Random, i: int) -> dict[str, object]:
    account = f"acct-{rng.randrange(100_000):06d}"
    ms = START_MS + i * 137
    ts: object = ms
    if rng.random() < 0.5:
        ts = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    device = f"dev-{rng.randrange(10**9):09d}"
    geo = {"lat": rng.uniform(-60, 70), "lon": rng.uniform(-170, 170), "country": "DE"}
    geo["city"] = rng.choice(["Berlin", "Hamburg", "München", "Köln"])
    ip = f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"
    kind = rng.random()
    common = {"event_id": f"evt-{i:012d}-{rng.randrange(10**8):08d}", "account_id": account}
    common["ts"] = ts
    if kind < 0.35:
        body = {"type": "playback_started", "session_id": f"sess-{i:010d}", "device_id": device}
        body |= {"profile_id": "p-1", "content_id": f"title-{rng.randrange(50_000)}", "ip": ip}
        body |= {"geo": geo, "device_type": rng.choice(DEVICE_TYPES)}
    elif kind < 0.6:
        body = {"type": "playback_stopped", "session_id": f"sess-{i:010d}"}
        body |= {"watched_s": round(rng.uniform(0, 7200), 1), "client": "web-player/5.12.3"}
        body |= {"app_version": "5.12.3", "user_agent": "Mozilla/5.0 (X11; Linux x86_64)"}
    elif kind < 0.8:
        body = {"type": "login", "device_id": device, "ip": ip, "geo": geo}
        body["device_type"] = rng.choice(DEVICE_TYPES)
    elif kind < 0.93:
        body = {"type": "activity", "action": rng.choice(["like", "rating", "download"])}
        body |= {"quantity": rng.randrange(1, 5), "device_id": device, "ip": ip, "geo": geo}
    else:
        body = {"type": "subscription_started", "plan": "premium-4k", "price": 17.99}
        body |= {"currency": "EUR", "billing_period": "month", "max_streams": 4}
        body |= {"country": "DE", "channel": "web", "campaign": "spring-2026-tv-spot"}
    return common | body


def best_us_per_event(
    fns: list[Callable[[bytes], object]], messages: list[bytes], n_events: int, rounds: int
) -> list[float]:
    """Best-of-``rounds`` µs per event of each fn, interleaved so that load from
    other processes hits all of them alike."""
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            for raw in messages:
                fn(raw)
            best[i] = min(best[i], time.perf_counter() - start)
    return [b / n_events * 1e6 for b in best]


def pseudonymise_us(events: list[Event], rounds: int, *, warm: bool) -> float:
    """Best-of-``rounds`` µs per event of ``Pseudonymiser.event``; ``warm``: one
    pseudonymiser across rounds (its cache holds every identifier after the first)."""
    key = b"bench-pseudonym-key-0123456789abcdef"
    p, best = Pseudonymiser(key), float("inf")
    for _ in range(rounds):
        if not warm:
            p = Pseudonymiser(key)
        event = p.event
        start = time.perf_counter()
        for e in events:
            event(e)
        best = min(best, time.perf_counter() - start)
    return best / len(events) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()

    rng = random.Random(42)
    events = [make_event(rng, i) for i in range(args.events)]
    singles = [orjson.dumps(e) for e in events]
    batches = [orjson.dumps(events[i : i + 100]) for i in range(0, len(events), 100)]
    sizes = [len(raw) for raw in singles]

    def parse(raw: bytes) -> object:
        ok, dead = parse_message(raw, topic="usage-events", partition=0, offset=0)
        assert not dead, dead
        return ok

    print(
        f"{args.events} events, mean {sum(sizes) / len(sizes):.0f} bytes "
        f"(min {min(sizes)}, max {max(sizes)}), best of {args.rounds} rounds"
    )
    print(f"{'input':<22}{'orjson.loads':>14}{'parse_message':>15}{'ratio':>8}")
    for label, messages in (("single-event messages", singles), ("100-event batches", batches)):
        bare, full = best_us_per_event([orjson.loads, parse], messages, args.events, args.rounds)
        print(f"{label:<22}{bare:>11.2f} µs{full:>12.2f} µs{full / bare:>7.1f}x")
    parsed = [e for raw in singles for e in parse(raw)]  # type: ignore[attr-defined]
    with_ids = sum(1 for e in parsed if {"device_id", "ip"} & e.fields.keys())
    cold = pseudonymise_us(parsed, args.rounds, warm=False)
    warm = pseudonymise_us(parsed, args.rounds, warm=True)
    print(
        f"pseudonymise ({with_ids / len(parsed):.0%} of events carry ids): "
        f"cold cache {cold:.2f} µs/event, warm cache {warm:.2f} µs/event"
    )


if __name__ == "__main__":
    main()
