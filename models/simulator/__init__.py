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
from collections.abc import Callable, Iterator
from operator import itemgetter
from typing import Any

from models.simulator.account import Account, rfc3339
from models.simulator.config import ARCHETYPES, DEFAULT_MIX, SimConfig, parse_mix
from models.simulator.world import DAY_MS, World

__all__ = [
    "ARCHETYPES",
    "DEFAULT_MIX",
    "SimConfig",
    "parse_mix",
    "rfc3339",
    "simulate",
    "truth",
]

_KEY = itemgetter(0)


def simulate(
    cfg: SimConfig, on_truth: Callable[[dict[str, Any]], None] | None = None
) -> Iterator[dict[str, Any]]:
    """Yield the run's events in emission order; then call ``on_truth`` once per account.

    Each yielded dict is a fresh contract event (``ts`` is epoch ms, or an
    RFC 3339 string for a ``cfg.rfc3339_rate`` share). Nested ``geo`` dicts may
    be shared between events: treat events as read-only.

    >>> seen = []
    >>> n = sum(1 for _ in simulate(SimConfig(accounts=2, days=3), seen.append))
    >>> [t["account_id"] for t in seen]
    ['a0000000', 'a0000001']
    """
    world = World(cfg.seed, cfg.price_increase_share, cfg.vpn_exit_count)
    accounts = [Account(cfg, world, i) for i in range(cfg.accounts)]
    pending: list[tuple[int, dict[str, Any]]] = []  # events due after the current day
    for d in range(cfg.days):
        for account in accounts:
            account.day(d, pending)
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
            on_truth(account.truth)


def truth(cfg: SimConfig) -> list[dict[str, Any]]:
    """Run the simulation (discarding events) and return the ground truth per account.

    >>> t = truth(SimConfig(accounts=2, days=3, seed=4))
    >>> sorted(t[0])[:4]
    ['account_id', 'archetype', 'borrowers_blocked', 'cancels']
    """
    records: list[dict[str, Any]] = []
    for _ in simulate(cfg, records.append):
        pass
    return records
