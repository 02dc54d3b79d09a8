"""Deterministic simulator of a subscription service's event stream.

It lives through the history of a population of accounts in event time, one
day at a time, and streams contract events (``models/contract.py``) in
emission order: event-time order, except the deliberately late and duplicated
ones. Memory holds the accounts' state and about one day of events, never the
whole run. Ground truth per account comes through ``on_truth`` at the end.
The behaviour model is described in docs/simulator.md.

>>> cfg = SimConfig(accounts=3, days=2, seed=1)
>>> events = list(simulate(cfg))
>>> events[0]["type"]
'subscription_started'
>>> events == list(simulate(cfg))
True
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from operator import itemgetter
from typing import Any

from models.contract import parse_ts
from models.simulator.account import Account, rfc3339
from models.simulator.config import ARCHETYPES, DEFAULT_MIX, SimConfig, parse_mix
from models.simulator.world import DAY_MS, World

__all__ = [
    "ARCHETYPES",
    "DEFAULT_MIX",
    "is_alert",
    "SimConfig",
    "parse_mix",
    "rfc3339",
    "simulate",
    "truth",
]

_KEY = itemgetter(0)


def simulate(
    cfg: SimConfig,
    on_truth: Callable[[dict[str, Any]], None] | None = None,
    alerts: Callable[[int], Iterable[Mapping[str, Any]]] | None = None,
    on_reaction: Callable[[dict[str, Any]], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield the run's events in emission order; then call ``on_truth`` once per account.

    Each yielded dict is a fresh contract event (``ts`` is epoch ms, or an
    RFC 3339 string for a ``cfg.rfc3339_rate`` share). Nested ``geo`` dicts may
    be shared between events: treat events as read-only.

    ``alerts(d)``, if given, is called before day ``d`` is lived (every event of
    the days before has been yielded by then) and returns the ``risk-alerts``
    messages read since its last call; the households of the alerted accounts answer
    them at the start of day ``d`` (``models/simulator/reactions.py``), and each
    answer is passed to ``on_reaction``. Alerts of unknown accounts, malformed ones
    and repeated ``alert_id`` are ignored.

    >>> seen = []
    >>> n = sum(1 for _ in simulate(SimConfig(accounts=2, days=3), seen.append))
    >>> [t["account_id"] for t in seen]
    ['a0000000', 'a0000001']
    """
    world = World(cfg.seed, cfg.price_increase_share, cfg.vpn_exit_count)
    accounts = [Account(cfg, world, i) for i in range(cfg.accounts)]
    by_id = {account.id: account for account in accounts} if alerts is not None else {}
    seen: set[str] = set()
    pending: list[tuple[int, dict[str, Any]]] = []  # events due after the current day
    for d in range(cfg.days):
        if alerts is not None:
            for alert in alerts(d):
                if not is_alert(alert) or alert["alert_id"] in seen:
                    continue
                account = by_id.get(alert["account_id"])
                if account is None:
                    continue
                seen.add(alert["alert_id"])
                account.inbox.append(dict(alert))
        for account in accounts:
            account.day(d, pending)
            if account.answered:
                for record in account.answered:
                    if on_reaction is not None:
                        on_reaction(record)
                account.answered.clear()
        pending.sort(key=_KEY)  # stable: ties keep account and generation order
        day_end = cfg.start_ms + (d + 1) * DAY_MS
        cut = bisect_left(pending, day_end, key=_KEY)
        for _, event in pending[:cut]:
            yield event
        del pending[:cut]
    for _, event in pending:
        yield event
    if on_truth is not None:
        for account in accounts:
            account.finish()
            on_truth(account.truth)


def is_alert(message: Mapping[str, Any]) -> bool:
    """Whether ``message`` has what a household needs to answer it (contract fields).

    >>> is_alert({"alert_id": "a:churn:1", "kind": "churn", "account_id": "a",
    ...           "action": "win_back", "ts": "2026-01-01T00:00:00Z"})
    True
    >>> is_alert({"alert_id": "a:churn:1", "kind": "churn", "ts": "yesterday"})
    False
    """
    fields = ("alert_id", "kind", "account_id", "action")
    if not all(isinstance(message.get(k), str) for k in fields):
        return False
    try:
        parse_ts(message.get("ts"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def truth(cfg: SimConfig) -> list[dict[str, Any]]:
    """Run the simulation (discarding events) and return the ground truth per account.

    >>> t = truth(SimConfig(accounts=2, days=3, seed=4))
    >>> sorted(t[0])[:4]
    ['account_id', 'archetype', 'borrowed_days', 'borrowers_blocked']
    """
    records: list[dict[str, Any]] = []
    for _ in simulate(cfg, records.append):
        pass
    return records
