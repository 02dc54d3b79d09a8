"""``churnwatch models``: train, show, export and import model snapshots; calibrate.

A bundle is one JSON file (``models.learner.dump_bundle``) holding learner
snapshots by kind (``churn``, ``sharing``) with their prequential metrics.
``export`` reads the newest snapshots from the models topic; ``import`` sends
a bundle to the learner through the training topic (the learner replaces its
models with it and learns on from them; every worker then scores with it).
``train`` learns a bundle offline from recorded events with the worker's own
pipeline (``models.replay``).

``calibrate-sharing`` fits the sharing score's calibration on your own verified
accounts (``CHURNWATCH_SHARING_CALIBRATION``).

Snapshots are signed with ``CHURNWATCH_MODEL_KEY`` (``models.learner``): every
command here that reads or writes one needs it, and refuses a bundle or snapshot not
signed with it before unpickling anything. ``--trust-unsigned`` lets ``show``,
``export`` and ``import`` read snapshots of formats 1 and 2 (from before signing): only
for your own.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from models.risk import KINDS
from streams.simio import Progress

if TYPE_CHECKING:  # river is imported by the commands that need it: --help stays fast
    from models.learner import OnlineLearner


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    models = subparsers.add_parser(
        "models",
        help="train, show, export and import model snapshots; calibrate the sharing score",
        description="Move trained models between files and a deployment's models topic "
        "(CHURNWATCH_APP_ID-models-changelog): start a new deployment from a trained model, "
        "roll back, or reprocess history with a fixed model (with CHURNWATCH_LEARN=false).",
    )
    sub = models.add_subparsers(dest="models_command", required=True, metavar="MODELS_COMMAND")

    p = sub.add_parser(
        "train",
        help="learn models offline from recorded events (JSONL)",
        description="Run JSONL event files (contract events, one per line, in arrival order; "
        "e.g. 'churnwatch simulate --out DIR' writes DIR/events.jsonl) through the worker's "
        "pipeline in this process: account state, snapshots, delayed labels, and the learners "
        "(each example scored before it is learned). The rules come from the same CHURNWATCH_* "
        "settings as the worker's. Writes a bundle for 'churnwatch models import'.",
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="JSONL files, in order")
    p.add_argument("--out", type=Path, required=True, help="bundle file to write")
    p.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("show", help="print the models of a bundle and their prequential metrics")
    p.add_argument("bundle", type=Path, help="bundle file")
    _trust_flag(p)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser(
        "export",
        help="write a deployment's current models to a bundle",
        description="Read the newest snapshot of every model from the models topic "
        "(CHURNWATCH_APP_ID-models-changelog on KAFKA_BOOTSTRAP_SERVERS) and write them to "
        "a bundle file.",
    )
    p.add_argument("--out", type=Path, required=True, help="bundle file to write")
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the broker")
    _trust_flag(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "import",
        help="install a bundle's models into a deployment",
        description="Send a bundle's models to the deployment's learner through the training "
        "topic (CHURNWATCH_TRAINING_TOPIC, created if missing). The learner replaces its "
        "models with them (also with CHURNWATCH_LEARN=false) and learns on from them, and "
        "every worker scores with them within seconds. Imported before the first start, they "
        "replace the untrained models within the first seconds.",
    )
    p.add_argument("bundle", type=Path, help="bundle file")
    p.add_argument("--only", choices=KINDS, action="append",
                   help="import only this kind (repeatable; default: all)")  # fmt: skip
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the broker")
    p.add_argument("--bundle-key-file", type=Path, default=None,
                   help="file holding the key the bundle is signed with, if not "
                   "CHURNWATCH_MODEL_KEY (a rotated key, another deployment's); the import "
                   "is signed with CHURNWATCH_MODEL_KEY")  # fmt: skip
    _trust_flag(p)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser(
        "calibrate-sharing",
        help="fit a sharing calibration on your own verified accounts",
        description="Fit the map that makes the sharing score a probability "
        "(CHURNWATCH_SHARING_CALIBRATION) on your own accounts: a JSONL file, one account a "
        "line, with its uncalibrated sharing score (published with "
        "CHURNWATCH_SHARING_CALIBRATION=off: 'score' or 'sharing_score') and whether it was "
        "found shared ('shared': true or false). Take the accounts from a sample that "
        "represents them all (households verified at random, not only the alerted ones), at "
        "least 200 with both outcomes. Writes the knots (isotonic regression, "
        "models.evaluation.fit_calibration) and prints the alert levels that keep the "
        "alerts where the uncalibrated 0.7 / 0.5 put them.",
    )
    p.add_argument("file", type=Path, help="JSONL of {score, shared}, one account a line")
    p.add_argument("--out", type=Path, required=True, help="JSON file of knots to write")
    p.set_defaults(func=cmd_calibrate_sharing)


def _trust_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-unsigned", action="store_true",
                   help="also read unsigned snapshots (formats 1 and 2, written before "
                   "churnwatch signed them; loading one runs whatever code it holds): only "
                   "your own, once, to re-sign them with CHURNWATCH_MODEL_KEY")  # fmt: skip


def _key() -> bytes:
    from streams.settings import Settings

    return Settings.from_env().require_model_key()


def describe(kind: str, learner: OnlineLearner) -> str:
    """One line about a model: id, examples, prequential quality.

    >>> from models.engine import Models
    >>> describe("churn", Models.fresh().churn)
    'churn: churn-v0, 0 examples (0 positive), ROC AUC -, log loss -, ECE -'
    """
    st = learner.metrics()

    def fmt(v: float) -> str:
        return "-" if math.isnan(v) else f"{v:.3f}"

    return (
        f"{kind}: {learner.model_id}, {st['examples']:,} examples ({st['positives']:,} positive), "
        f"ROC AUC {fmt(st['roc_auc'])}, log loss {fmt(st['log_loss'])}, ECE {fmt(st['ece'])}"
    )


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """The lines of a JSONL file that are not blank, numbered from 1."""
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                yield lineno, line


def read_events(paths: list[Path], on_bad: Any) -> Iterator[tuple[dict[str, Any], int]]:
    """JSON objects of JSONL files with their size in bytes; other lines go to
    ``on_bad(path, lineno)``."""
    for path in paths:
        for lineno, line in _lines(path):
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                on_bad(path, lineno)
                continue
            if isinstance(doc, dict):
                yield doc, len(line)
            else:
                on_bad(path, lineno)


def cmd_train(args: argparse.Namespace) -> int:
    from models.learner import dump_bundle
    from models.replay import replay
    from streams.settings import Settings

    cfg = Settings.from_env().engine_config()
    key = _key()
    total = sum(p.stat().st_size for p in args.files if p.is_file())
    progress = Progress("train", None if args.quiet else sys.stderr, total_bytes=total)
    bad: list[str] = []

    def events() -> Iterator[dict[str, Any]]:
        for doc, size in read_events(args.files, lambda p, n: bad.append(f"{p}:{n}")):
            progress.tick(doc.get("ts"), size)
            yield doc

    try:
        result = replay(events(), cfg=cfg)
    except FileNotFoundError as exc:
        print(f"models train: {exc}", file=sys.stderr)
        return 2
    progress.done()
    if result.applied == 0:
        print("models train: no valid event in the input; nothing written", file=sys.stderr)
        return 1
    learners = {kind: result.models.get(kind) for kind in KINDS}
    meta = {"trained_from": [str(p) for p in args.files], "events": result.events}
    args.out.write_bytes(dump_bundle(learners, key, **meta))
    print(f"trained on {result.applied:,} events ({result.dead_letters:,} invalid, "
          f"{len(bad):,} lines not JSON objects, {result.failed:,} failed), "
          f"{result.examples:,} labelled examples; "
          f"wrote {args.out}")  # fmt: skip
    for kind, learner in learners.items():
        print("  " + describe(kind, learner))
    return 0


def read_bundle(
    path: Path, trust_unsigned: bool = False, key_file: Path | None = None
) -> dict[str, OnlineLearner] | None:
    """The bundle's learners (signed with the model key, or ``key_file``'s); None, with
    the reason on stderr, if it cannot be read."""
    from models.learner import load_bundle

    try:
        key = _key() if key_file is None else key_file.read_bytes().strip()
    except OSError as exc:
        print(f"models: cannot read the key file {key_file}: {exc.strerror}", file=sys.stderr)
        return None
    try:
        return load_bundle(path.read_bytes(), key, trust_unsigned=trust_unsigned)
    except (OSError, ValueError) as exc:
        print(f"models: cannot read {path}: {exc}", file=sys.stderr)
        return None


def cmd_show(args: argparse.Namespace) -> int:
    learners = read_bundle(args.bundle, args.trust_unsigned)
    if learners is None:
        return 2
    for kind, learner in learners.items():
        print(describe(kind, learner))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from kafka import KafkaConsumer, TopicPartition

    from models.learner import OnlineLearner, dump_bundle
    from streams.kafka_security import client_config, servers
    from streams.settings import Settings
    from streams.topics import connect_admin

    s = Settings.from_env()
    key = s.require_model_key()
    connect_admin(s, wait_s=args.wait).close()
    consumer = KafkaConsumer(
        bootstrap_servers=servers(s),
        enable_auto_commit=False,
        consumer_timeout_ms=10_000,
        **client_config(s),
    )
    try:
        parts = consumer.partitions_for_topic(s.models_topic)
        if not parts:
            print(f"models export: topic {s.models_topic} does not exist", file=sys.stderr)
            return 1
        tps = [TopicPartition(s.models_topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        newest: dict[str, bytes | None] = {}
        while any(consumer.position(tp) < end[tp] for tp in tps):
            records = consumer.poll(timeout_ms=2000)
            if not records:
                break
            for batch in records.values():
                for msg in batch:
                    try:  # keys are JSON strings (streams.agents.learner.model_key)
                        kind = orjson.loads(msg.key or b"")
                    except orjson.JSONDecodeError:
                        continue  # a foreign record: not a model of ours
                    if isinstance(kind, str):
                        newest[kind] = msg.value  # None: deleted
    finally:
        consumer.close()
    learners = {}
    for kind, raw in sorted(newest.items()):
        if raw is None:
            continue
        try:
            learners[kind] = OnlineLearner.from_bytes(raw, key, trust_unsigned=args.trust_unsigned)
        except ValueError as exc:
            print(f"models export: skipping {kind}: {exc}", file=sys.stderr)
    if not learners:
        print(f"models export: no model snapshot in {s.models_topic}", file=sys.stderr)
        return 1
    args.out.write_bytes(dump_bundle(learners, key, exported_from=s.models_topic))
    for kind, learner in learners.items():
        print(describe(kind, learner))
    print(f"wrote {args.out}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from kafka import KafkaProducer

    from models.learner import import_record
    from streams.kafka_security import client_config, servers
    from streams.settings import Settings
    from streams.topics import ensure_topics

    learners = read_bundle(args.bundle, args.trust_unsigned, args.bundle_key_file)
    if learners is None:
        return 2
    chosen = {k: v for k, v in learners.items() if not args.only or k in args.only}
    unknown = sorted(set(chosen) - set(KINDS))
    if unknown or not chosen:
        print(f"models import: nothing to import (unknown kinds: {unknown})", file=sys.stderr)
        return 2
    s = Settings.from_env()
    ensure_topics(s, wait_s=args.wait)
    key = s.require_model_key()
    records = {kind: import_record(kind, learner, key) for kind, learner in chosen.items()}
    producer = KafkaProducer(
        bootstrap_servers=servers(s),
        acks="all",
        **client_config(s),
        max_request_size=max(1_048_576, max(map(len, records.values())) + 4096),
    )
    try:  # through the training topic: the learner applies it, in order with the examples
        for kind, value in records.items():
            producer.send(s.training_topic, value=value, partition=0).get(timeout=30)
            print(f"imported {describe(kind, chosen[kind])}")
    finally:
        producer.close()
    return 0


MIN_CALIBRATION_ACCOUNTS = 200


def read_verified(path: Path) -> tuple[list[float], list[bool]]:
    """(scores, shared) of a ``calibrate-sharing`` file; ValueError naming the first bad
    line."""
    scores: list[float] = []
    shared: list[bool] = []
    for lineno, line in _lines(path):
        try:
            doc = orjson.loads(line)
            score = doc["score"] if "score" in doc else doc["sharing_score"]
            label = doc["shared"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise ValueError(
                f"{path}:{lineno}: not an object with 'score' (or 'sharing_score') and 'shared'"
            ) from None
        if type(label) is not bool or type(score) not in (int, float) or not 0 <= score <= 1:
            raise ValueError(f"{path}:{lineno}: 'score' must be in [0, 1], 'shared' a boolean")
        scores.append(float(score))
        shared.append(label)
    if len(scores) < MIN_CALIBRATION_ACCOUNTS or all(shared) or not any(shared):
        raise ValueError(
            f"{path}: {len(scores)} accounts, {sum(shared)} shared: a calibration needs at "
            f"least {MIN_CALIBRATION_ACCOUNTS} accounts, shared and not"
        )
    return scores, shared


def cmd_calibrate_sharing(args: argparse.Namespace) -> int:
    from models.evaluation import calibration_errors, fit_calibration
    from models.sharing import BLEND_LEVELS, calibrate

    try:
        scores, shared = read_verified(args.file)
    except (OSError, ValueError) as exc:
        print(f"churnwatch: {exc}", file=sys.stderr)
        return 2
    table = fit_calibration(scores, shared, anchors=BLEND_LEVELS)
    reset, threshold = (calibrate(level, table) for level in BLEND_LEVELS)
    args.out.write_bytes(orjson.dumps([list(k) for k in table]) + b"\n")
    before, after = calibration_errors(scores, shared, table)
    print(f"{len(scores):,} accounts, {sum(shared):,} shared: {len(table)} knots written to "
          f"{args.out}")  # fmt: skip
    print(f"expected calibration error on these accounts: {before:.3f} -> {after:.3f} "
          "(fitted on them: judge it on others)")  # fmt: skip
    print(f"to use it: CHURNWATCH_SHARING_CALIBRATION={args.out} "
          f"CHURNWATCH_SHARING_THRESHOLD={threshold} CHURNWATCH_SHARING_RESET={reset} "
          "(the alerts of the uncalibrated 0.7 / 0.5)")  # fmt: skip
    return 0
