"""``churnwatch simulate`` and ``churnwatch replay`` (registered into the main CLI)."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from models.contract import parse_ts
from models.simulator import SimConfig, parse_mix, reactions, simulate
from models.simulator.config import DEFAULT_MIX, START_2026
from streams.simio import (
    JsonlSink,
    KafkaSink,
    Progress,
    RateLimiter,
    Sink,
    encode_events,
    pump,
    read_jsonl,
)

if TYPE_CHECKING:
    from streams.simfeed import AlertFeed

_SPECIAL = {"start_ms", "mix"}  # options with their own parsing below


def _start_ms(text: str) -> int:
    """``2026-01-01`` (midnight UTC) or a full RFC 3339 time, as epoch ms."""
    return parse_ts(text + "T00:00:00Z" if len(text) == 10 else text)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "simulate",
        help="generate a population's event history (JSONL files or Kafka)",
        description="Live through the history of simulated subscriber households in event "
        "time and emit contract events, in event-time order except for the deliberately late "
        "and duplicated ones. Writes DIR/events.jsonl and DIR/truth.jsonl with --out; sends "
        "to the input topics with --kafka (truth still goes to --out if given). Deterministic "
        "for a given --seed. Behaviour model: docs/simulator.md. "
        "With --kafka the simulator also reads risk-alerts (CHURNWATCH_ALERTS_TOPIC) while "
        "it writes, and the household of an alerted account answers the alert's action with "
        "contract events at the start of the next day it lives through (a sharer verifies, "
        "pays for an extra member, loses its borrower or cancels; an account sent an offer "
        "may stay, fix its card or come back), with the --react-* probabilities below; "
        "answers are drawn from --seed and the alert id, so a run is deterministic given the "
        "day each alert was read. --follow-worker keeps the simulator close enough to the "
        "worker for the answers to come in time; --out also gets reactions.jsonl.",
    )
    for f in fields(SimConfig):
        if f.name in _SPECIAL:
            continue
        kind: Any = int if f.default is None else type(f.default)
        if isinstance(f.default, tuple):  # a list or range: comma-separated numbers
            kind = _numbers(type(f.default[0]))
        p.add_argument(
            "--" + f.name.replace("_", "-"),
            type=kind,
            default=f.default,
            help=f.metadata["help"] + ("" if f.default is None else " (default: %(default)s)"),
        )
    p.add_argument("--start", type=_start_ms, default=START_2026,
                   help="event-time start, a date (UTC midnight) or RFC 3339 time "
                   "(default: 2026-01-01)")  # fmt: skip
    p.add_argument("--mix", type=parse_mix, default=DEFAULT_MIX,
                   help="archetype weights as name=weight,... (unnamed ones keep their default "
                   "of " + ",".join(f"{n}={w}" for n, w in DEFAULT_MIX) + ")")  # fmt: skip
    p.add_argument("--out", type=Path, help="directory for events.jsonl and truth.jsonl")
    p.add_argument("--kafka", action="store_true",
                   help="send events to the input topics (KAFKA_BOOTSTRAP_SERVERS, "
                   "CHURNWATCH_SUBSCRIPTION_TOPIC, CHURNWATCH_USAGE_TOPIC)")  # fmt: skip
    p.add_argument(
        "--no-react",
        dest="react",
        action="store_false",
        help="with --kafka: do not read risk-alerts; households answer nothing",
    )
    p.add_argument(
        "--alerts-from",
        type=Path,
        metavar="FILE",
        help="answer the alerts recorded in the reactions.jsonl of an earlier run, on the "
        "days they were read then, instead of reading risk-alerts: with that run's options "
        "it repeats its events byte for byte, without a worker",
    )
    p.add_argument(
        "--follow-worker",
        type=float,
        default=None,
        metavar="DAYS",
        help="with --kafka: before each day, wait until the worker's output (risk-scores, "
        "risk-alerts) has reached DAYS days before it, so alerts are answered within about "
        "DAYS days of event time (default, or 0: do not wait)",
    )
    p.add_argument(
        "--follow-wait",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="stop waiting for a worker whose output has not moved for this long "
        "(default: %(default)s)",
    )
    _add_output_options(p)
    p.set_defaults(func=cmd_simulate)

    p = subparsers.add_parser(
        "replay",
        help="send JSONL events to the input topics",
        description="Send the events of JSONL files (one event object per line, ours or your "
        "own) to the contract's input topics, keyed by account_id. Lines that are not a valid "
        "contract event are reported with their line number and skipped.",
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="JSONL files, in order")
    _add_output_options(p)
    p.set_defaults(func=cmd_replay)


def _numbers(kind: type) -> Any:
    """Parser of comma-separated numbers of one type (``"2,11"`` -> ``(2, 11)``)."""

    def parse(text: str) -> tuple[Any, ...]:
        return tuple(kind(x) for x in text.split(",") if x.strip())

    return parse


def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rate", type=float, default=None,
                   help="events per second (default: as fast as possible)")  # fmt: skip
    p.add_argument("--batch", type=int, default=1,
                   help="Kafka only: send JSON arrays of up to N events per message, "
                   "none holding an event past 10 minutes of event time "
                   "(default: 1, one event per message keyed by account_id)")  # fmt: skip
    p.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="Kafka only: seconds to wait for the broker (default: %(default)s)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress line on stderr")


def kafka_sink(batch: int = 1, wait_s: float = 30.0, **producer_config: Any) -> KafkaSink:
    """A sink to the input topics of the deployment the environment configures."""
    from streams.kafka_security import check_login, client_config, servers
    from streams.settings import Settings

    s = Settings.from_env()
    check_login(s)  # a refused login or certificate: one line (kafka-python: "no brokers")
    topics = {"subscription": s.subscription_topic, "usage": s.usage_topic}
    wait_ms = max(1, int(wait_s * 1000))
    return KafkaSink(servers(s), topics, batch=batch, bootstrap_timeout_ms=wait_ms,
                     **client_config(s), **producer_config)  # fmt: skip


def _progress(label: str, args: argparse.Namespace, **total: Any) -> Progress:
    return Progress(label, None if args.quiet else sys.stderr, **total)


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """The SimConfig described by parsed ``simulate`` options."""
    values: dict[str, Any] = {f.name: getattr(args, f.name) for f in fields(SimConfig)
                              if f.name not in _SPECIAL}  # fmt: skip
    return SimConfig(start_ms=args.start, mix=args.mix, **values)


def alert_feed(cfg: SimConfig, sink: KafkaSink, args: argparse.Namespace) -> AlertFeed:
    """The risk-alerts reader of ``simulate --kafka`` (streams/simfeed.py)."""
    from streams.kafka_security import client_config, servers
    from streams.settings import Settings
    from streams.simfeed import AlertFeed, KafkaSource

    s = Settings.from_env()
    source = KafkaSource(servers(s), [s.alerts_topic, s.scores_topic], **client_config(s))
    lag = args.follow_worker if args.follow_worker and args.follow_worker > 0 else None
    return AlertFeed(source, s.alerts_topic, cfg.start_ms, lag_days=lag,
                     wait_s=args.follow_wait, flush=sink.flush)  # fmt: skip


def cmd_simulate(args: argparse.Namespace) -> int:
    if args.out is None and not args.kafka:
        sys.stderr.write("simulate: give --out DIR, --kafka, or both\n")
        return 2
    try:
        cfg = config_from_args(args)
    except ValueError as exc:
        sys.stderr.write(f"simulate: {exc}\n")
        return 2
    recorded = None
    if args.alerts_from is not None:  # before connecting to anything
        try:
            lines = args.alerts_from.read_bytes().splitlines()
            recorded = reactions.schedule(orjson.loads(line) for line in lines)
        except (OSError, ValueError, KeyError) as exc:
            sys.stderr.write(f"simulate: cannot read --alerts-from {args.alerts_from}: {exc}\n")
            return 2
    truth_file = None
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        truth_file = open(args.out / "truth.jsonl", "wb")  # noqa: SIM115 - closed below
    sink: Sink = (
        kafka_sink(args.batch, args.wait) if args.kafka else JsonlSink(args.out / "events.jsonl")
    )
    feed = None
    if recorded is None and isinstance(sink, KafkaSink) and args.react:
        feed = alert_feed(cfg, sink, args)
    alerts: Any = feed if recorded is None else (lambda day: recorded.get(day, []))
    reactions_file = None
    if feed is not None and args.out is not None:
        # unbuffered: a few records, read while the run goes on (./dev demo), kept if killed
        reactions_file = open(args.out / "reactions.jsonl", "wb", buffering=0)  # noqa: SIM115
    answered: Counter[tuple[str, str, str]] = Counter()
    try:

        def on_truth(record: dict[str, Any]) -> None:
            if truth_file is not None:
                truth_file.write(orjson.dumps(record) + b"\n")

        def on_reaction(record: dict[str, Any]) -> None:
            answered[(record["kind"], record["action"], record["reaction"])] += 1
            if reactions_file is not None:
                reactions_file.write(orjson.dumps(record) + b"\n")

        events = encode_events(simulate(cfg, on_truth, alerts, on_reaction))
        span = (cfg.start_ms, cfg.start_ms + cfg.days * 86_400_000)
        pump(events, sink, RateLimiter(args.rate), _progress("simulate", args, span_ms=span))
    finally:
        sink.close()
        for file in (truth_file, reactions_file):
            if file is not None:
                file.close()
        if feed is not None:
            feed.close()
    if alerts is not None and not args.quiet:
        if feed is not None:
            waited = f", waited {feed.waited_s:.0f}s for the worker" if feed.waited_s else ""
            read = f"read {feed.alerts_read:,} alerts{waited}"
        else:
            read = f"{sum(map(len, recorded.values())):,} recorded alerts"  # type: ignore[union-attr]
        sys.stderr.write(f"simulate: {read}; households answered {sum(answered.values()):,}\n")
        sys.stderr.write("".join(f"  {line}\n" for line in reactions.summary(answered)))
    return 0


def _unreadable(path: Path) -> str | None:
    """Why ``path`` cannot be replayed, or None."""
    if not path.exists():
        return "no such file"
    if not path.is_file():
        return "not a file"
    try:
        with path.open("rb"):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def cmd_replay(args: argparse.Namespace) -> int:
    skipped: list[str] = []

    def on_skip(message: str) -> None:
        skipped.append(message)
        sys.stderr.write(message + "\n")

    unreadable = [f"{path}: {_unreadable(path)}" for path in args.files if _unreadable(path)]
    if unreadable:  # before connecting to anything
        sys.stderr.write("".join(f"replay: cannot read {why}\n" for why in unreadable))
        return 2
    sink = kafka_sink(args.batch, args.wait)
    progress = _progress("replay", args, total_bytes=sum(p.stat().st_size for p in args.files))
    try:
        pump(read_jsonl(args.files, on_skip), sink, RateLimiter(args.rate), progress)
    finally:
        sink.close()
    sys.stderr.write(
        f"replay: sent {progress.count:,} events in {sink.messages:,} messages, "
        f"skipped {len(skipped):,} lines\n"
    )
    return 1 if skipped and not progress.count else 0
