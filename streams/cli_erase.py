"""``churnwatch erase ACCOUNT_ID...``: ask the workers to forget accounts (right to erasure).

Sends one ``account_erased`` event per account (contract v1.1) to the subscription topic,
keyed by the account id; the worker that owns the account deletes its state, writes a
tombstone to the state changelog and to ``risk-scores``, and keeps nothing of it in
memory (docs/security.md, "Erasure"). The command returns once Kafka holds the requests.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import orjson

from models.contract import parse_ts


def erase_requests(account_ids: list[str], ts_ms: int) -> list[dict[str, Any]]:
    """The ``account_erased`` events, one per distinct account.

    >>> erase_requests(["a-1", "a-1"], 1772366400000)
    [{'event_id': 'erase:a-1:1772366400000', 'type': 'account_erased', 'account_id': 'a-1', \
'ts': 1772366400000}]
    """
    return [
        {"event_id": f"erase:{a}:{ts_ms}", "type": "account_erased", "account_id": a, "ts": ts_ms}
        for a in dict.fromkeys(account_ids)
    ]


def cmd_erase(args: argparse.Namespace) -> int:
    from streams.cli_sim import kafka_sink
    from streams.settings import Settings

    bad = [a for a in args.account_ids if not 1 <= len(a) <= 128]
    if bad:
        raise SystemExit(f"churnwatch erase: account ids must be 1..128 characters: {bad[0]!r}")
    raw_ts = args.ts.strip() if args.ts else None
    ts_ms = (
        int(time.time() * 1000)
        if raw_ts is None
        else parse_ts(int(raw_ts) if raw_ts.isdigit() else raw_ts)
    )
    requests = erase_requests(args.account_ids, ts_ms)
    sink = kafka_sink(acks="all")  # keyed by account, on the contract's subscription topic
    for e in requests:
        sink.send(orjson.dumps(e), e["account_id"], e["type"], e["ts"])
    sink.close()  # Kafka holds every request, or it raises
    topic = Settings.from_env().subscription_topic
    print(f"erasure requested for {len(requests)} account(s) on {topic}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "erase",
        help="erase accounts: their state, scores and memory (GDPR right to erasure)",
        description="Send an 'account_erased' event per account to the subscription topic. "
        "The owning worker deletes the account's state, writes tombstones to its state "
        "changelog and to risk-scores, and stops alerting on it. Events of the account "
        "that arrive later start it afresh. See docs/security.md, 'Erasure'.",
    )
    p.add_argument("account_ids", nargs="+", metavar="ACCOUNT_ID")
    p.add_argument(
        "--ts",
        default=None,
        help="event time of the request, RFC 3339 or epoch ms (default: now; when the "
        "workers replay history, a time within it, so the request is not ahead of their "
        "clock by more than CHURNWATCH_MAX_FUTURE_SKEW_S)",
    )
    p.set_defaults(func=cmd_erase)
