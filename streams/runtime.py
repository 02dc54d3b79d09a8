"""The typed runtime the agents register on: the app, its topics, tables and services.

``streams.app.create_runtime`` builds it; each agent module's ``register(rt)`` reads
what it needs from it and fills in what it offers (``drain``, ``checkpoint``,
``lookup``, ``accounts_table``). Agents import this module, never ``streams.app`` and
never each other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import mode

from models.quality import Window
from streams.metrics import Metrics
from streams.settings import Settings
from streams.skips import Skips
from streams.snapshots import ModelCache

# An agent that raises takes the worker down (exit code != 0) instead of being
# restarted in a loop or silently stalling: the orchestrator restarts the
# process and ops see it. Bad input never gets here (it is dead-lettered).
CRASH = mode.CrashingSupervisor


async def _nothing() -> None:
    return None


def _unknown(account_id: str) -> dict[str, Any] | None:
    return None


@dataclass(frozen=True)
class Topics:
    """Every topic the agents read or write (raw bytes keys and values)."""

    input: Any  # both input topics: subscription-events, usage-events
    account_events: Any
    dead_letter: Any
    scores: Any
    alerts: Any
    training: Any


@dataclass
class Runtime:
    settings: Settings
    metrics: Metrics
    app: Any  # faust.App
    topics: Topics
    skips: Skips  # internal records that could not be read, one counter for every agent
    models: ModelCache  # the newest model snapshots (the ``models`` global table)
    # the learner's recent prequential scores (streams.agents.learner; /quality draws them)
    quality: Window = field(default_factory=Window)
    accounts_table: Any = None  # the ``accounts`` table (streams.agents.accounts)
    # the account lookup document, or None when this worker does not hold the account
    lookup: Callable[[str], dict[str, Any] | None] = _unknown
    # before a graceful stop: send what ingest holds, snapshot what the learner learned
    drain: Callable[[], Awaitable[None]] = _nothing
    checkpoint: Callable[[], Awaitable[None]] = _nothing
    # set on SIGTERM/SIGINT: agents then hold nothing back (Faust's stop waits for every
    # message read to be acked, and a message held after the drain would stall it)
    stopping: bool = False
