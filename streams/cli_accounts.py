"""``churnwatch accounts erase|show ACCOUNT_ID...``: forget accounts (right to erasure), or
look them up on a worker. ``churnwatch erase`` is the same command as ``accounts erase``.

``erase`` sends one ``account_erased`` event per account (contract v1.1) to the subscription
topic, keyed by the account id; the worker that owns the account deletes its state, writes a
tombstone to the state changelog and to ``risk-scores``, and keeps nothing of it in
memory (docs/security.md, "Erasure"). The command returns once Kafka holds the requests.

``show`` asks a worker's ``/accounts/{id}`` (any worker: it forwards to the owner) with
``CHURNWATCH_API_TOKEN`` as bearer token, and prints the answers, one JSON line each.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
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


def _check_ids(account_ids: list[str]) -> None:
    bad = [a for a in account_ids if not 1 <= len(a) <= 128]
    if bad:
        raise SystemExit(f"churnwatch accounts: account ids must be 1..128 characters: {bad[0]!r}")


def cmd_erase(args: argparse.Namespace) -> int:
    from streams.cli_sim import kafka_sink
    from streams.settings import Settings

    _check_ids(args.account_ids)
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


def account_url(base: str, account_id: str) -> str:
    """The lookup URL of an account (its id quoted as one path segment).

    >>> account_url("http://127.0.0.1:6066/", "a 1/x")
    'http://127.0.0.1:6066/accounts/a%201%2Fx'
    """
    return f"{base.rstrip('/')}/accounts/{urllib.parse.quote(account_id, safe='')}"


def cmd_show(args: argparse.Namespace) -> int:
    from streams.settings import Settings

    _check_ids(args.account_ids)
    s = Settings.from_env()
    base = args.url or f"http://127.0.0.1:{s.web_port}"
    headers = {"Authorization": f"Bearer {s.api_token}"} if s.api_token else {}
    missing = 0
    for account_id in dict.fromkeys(args.account_ids):
        request = urllib.request.Request(account_url(base, account_id), headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=args.timeout) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")
            if exc.code != 404:  # refused (401/403) or broken: say why, stop
                raise SystemExit(
                    f"churnwatch accounts show: {base} answered {exc.code}: {text}"
                ) from None
            print(f"{account_id}: unknown account", file=sys.stderr)
            missing += 1
            continue
        except OSError as exc:
            raise SystemExit(f"churnwatch accounts show: cannot reach {base}: {exc}") from None
        print(orjson.dumps(orjson.loads(body)).decode())  # one line
    return 1 if missing else 0


def _add_erase(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        name,
        help=help_text,
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


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    accounts = sub.add_parser(
        "accounts",
        help="erase accounts (GDPR right to erasure) or look them up on a worker",
        description="Operator commands on single accounts. 'erase' goes through Kafka; "
        "'show' asks a worker's HTTP endpoint.",
    )
    acc = accounts.add_subparsers(dest="accounts_command", required=True, metavar="COMMAND")
    _add_erase(acc, "erase", "erase accounts: their state, scores and memory")
    p = acc.add_parser(
        "show",
        help="print an account's state, features and scores (a worker's /accounts/ID)",
        description="GET /accounts/ID from a worker (it forwards to the worker that owns "
        "the account), with CHURNWATCH_API_TOKEN as bearer token; one JSON line per "
        "account. Exit status 1 if an account is unknown.",
    )
    p.add_argument("account_ids", nargs="+", metavar="ACCOUNT_ID")
    p.add_argument(
        "--url",
        default=None,
        help="a worker's base URL (default: http://127.0.0.1:$CHURNWATCH_WEB_PORT)",
    )
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    p.set_defaults(func=cmd_show)
    _add_erase(sub, "erase", "the same as 'accounts erase' (GDPR right to erasure)")
