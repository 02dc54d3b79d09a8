"""Per-account state: the pure, event-time, idempotent heart of churnwatch.

``apply_event(state, event)`` folds one contract event into an ``AccountState``.
It is the hot path, so it **mutates the state in place** (and returns whether
the event was applied); callers that need the old value copy it first
(``load_state(dump_state(s))``).

Guarantees (all in event time, never the wall clock):

- idempotent by ``event_id``: a duplicate changes nothing. Ids are remembered
  while they are within the allowed lateness of the account's own clock (its
  newest event time: not the partition's, which a worker taking the partition
  over starts again), plus a hard cap (``StateConfig.max_dedup_ids``);
- an event older than ``clock - lateness`` is dropped; a late event within the
  lateness updates the day bucket of its own event time;
- bounded memory: engagement lives in at most ``ring_days`` day buckets, action
  names, devices, profiles, open sessions and every history list are capped.

Example:

>>> from models.contract import Event
>>> s = new_account("a-1")
>>> e = Event("e1", "subscription_started", "a-1", 0,
...           {"plan": "basic", "price": 9.99, "currency": "EUR",
...            "billing_period": "month", "max_streams": 2})
>>> apply_event(s, e), apply_event(s, e)
(True, False)
>>> s.plan, s.status, s.max_streams
('basic', 'active', 2)
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from models.contract import USAGE_TYPES, Event
from models.household import HouseholdState, apply_household, new_household
from models.risk import RiskState

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
_HOUSEHOLD_TYPES = USAGE_TYPES | {"household_verification", "extra_member_added"}


@dataclass(frozen=True, slots=True)
class StateConfig:
    """Bounds and event-time settings of the account state (all times in ms)."""

    lateness_ms: int = HOUR_MS
    session_expiry_ms: int = 4 * HOUR_MS
    ring_days: int = 56
    max_dedup_ids: int = 1024
    max_actions: int = 16
    max_devices: int = 32
    max_profiles: int = 16
    max_open_sessions: int = 32
    max_history: int = 16
    history_ms: int = 365 * DAY_MS  # ... and none older than this, but the newest of each
    horizon_ms: int = 30 * DAY_MS
    observation_interval_ms: int = 7 * DAY_MS
    # observation points older than this before "now" are not caught up after a silence
    max_catchup_ms: int = 366 * DAY_MS

    def __post_init__(self) -> None:
        if self.lateness_ms < 0 or self.session_expiry_ms <= 0:
            raise ValueError("lateness must be >= 0 and session expiry > 0")
        if self.ring_days < 28 or self.ring_days * DAY_MS <= self.lateness_ms:
            raise ValueError("ring_days must be >= 28 and cover the lateness")
        if min(self.max_dedup_ids, self.max_actions, self.max_devices, self.max_profiles) < 1:
            raise ValueError("caps must be >= 1")
        if min(self.max_open_sessions, self.max_history) < 1:
            raise ValueError("caps must be >= 1")
        if min(self.horizon_ms, self.observation_interval_ms, self.max_catchup_ms) <= 0:
            raise ValueError("horizon, observation interval and catch-up must be > 0")

    @property
    def max_pending_snapshots(self) -> int:
        """Pending label snapshots never exceed horizon / interval + 1."""
        return self.horizon_ms // self.observation_interval_ms + 1


DEFAULT_CONFIG = StateConfig()


@dataclass(slots=True)
class DayBucket:
    """Usage of one UTC event-time day, as :meth:`Days.at` reads it."""

    watch_s: float = 0.0
    sessions: int = 0
    usage_events: int = 0
    activity: float = 0.0
    actions: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class Days:
    """The usage of the days with usage, as columns in day order: entry ``i`` is day
    ``day[i]``. Columns rather than an object per day, because the changelog stores
    them as they are: a state encodes and decodes without making ~50 objects, and
    holds less memory (docs/design.md, "Account state on the changelog").

    >>> d = Days()
    >>> i = d.add(20_001); d.watch_s[i] += 60.0
    >>> i = d.add(20_000); d.sessions[i] += 1
    >>> d.day, d.find(20_001), d.find(19_999), d.at(20_001).watch_s
    ([20000, 20001], 1, -1, 60.0)
    """

    day: list[int] = field(default_factory=list)
    watch_s: list[float] = field(default_factory=list)
    sessions: list[int] = field(default_factory=list)
    usage_events: list[int] = field(default_factory=list)
    activity: list[float] = field(default_factory=list)
    actions: list[dict[str, float]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.day)

    def find(self, day: int) -> int:
        """The entry of ``day``, or -1."""
        i = bisect.bisect_left(self.day, day)
        return i if i < len(self.day) and self.day[i] == day else -1

    def add(self, day: int) -> int:
        """The entry of ``day``, new and empty if it had none (usually the last)."""
        days = self.day
        i = len(days) if not days or days[-1] < day else bisect.bisect_left(days, day)
        if i < len(days) and days[i] == day:
            return i
        days.insert(i, day)
        self.watch_s.insert(i, 0.0)
        self.sessions.insert(i, 0)
        self.usage_events.insert(i, 0)
        self.activity.insert(i, 0.0)
        self.actions.insert(i, {})
        return i

    def drop_before(self, day: int) -> None:
        """Forget the days before ``day``."""
        n = bisect.bisect_left(self.day, day)
        del self.day[:n], self.watch_s[:n], self.sessions[:n]
        del self.usage_events[:n], self.activity[:n], self.actions[:n]

    def at(self, day: int) -> DayBucket | None:
        """The usage of ``day``, read: its actions are the day's own dict."""
        i = self.find(day)
        if i < 0:
            return None
        return DayBucket(
            self.watch_s[i], self.sessions[i], self.usage_events[i], self.activity[i],
            self.actions[i],
        )  # fmt: skip

    @staticmethod
    def of(buckets: dict[int, DayBucket]) -> Days:
        """Columns of the buckets of a dict (an older state's, or a test's)."""
        days = Days()
        for day in sorted(buckets):
            b = buckets[day]
            i = days.add(day)
            days.watch_s[i], days.sessions[i], days.usage_events[i] = (
                b.watch_s, b.sessions, b.usage_events
            )  # fmt: skip
            days.activity[i], days.actions[i] = b.activity, dict(b.actions)
        return days


@dataclass(slots=True)
class UsageSums:
    """The usage of the days before ``day`` in the 7-, 28- and 56-day windows ending at ``day``.

    Derived from the day buckets by ``models.features`` and kept so that a score reads
    one day's bucket instead of 28; never persisted (rebuilt on first use after a
    load) and dropped whenever a bucket before ``day`` changes or is pruned.
    """

    day: int
    week: tuple[float, float, float, float]  # watch s, sessions, active days, activity
    month: tuple[float, float, float, float]
    actions: dict[str, float]
    # the long view (models.features.LONG_DAYS): per-action sums of the recent days
    # before ``day`` and of the baseline before them, usage (watch s, active days,
    # activity) of both, and decayed sums of usage events
    recent_actions: dict[str, float] = field(default_factory=dict)
    base_actions: dict[str, float] = field(default_factory=dict)
    recent: tuple[float, float, float] = (0.0, 0.0, 0.0)
    base: tuple[float, float, float] = (0.0, 0.0, 0.0)
    decayed: tuple[float, ...] = ()


@dataclass(slots=True)
class Snapshot:
    """A pending churn snapshot (``models.labels``): its feature names, and their values
    packed as the changelog stores them (:func:`pack_floats`). It is read as a dict
    only once, when it gets its label (:meth:`as_dict`): a state is decoded far more
    often than a snapshot matures, and a dict of its ~60-80 values held 8 times the
    memory of the packed bytes (a third of a decoded state's).

    >>> x = Snapshot.of({"sessions_7d": 3.0, "trend": 0.1})
    >>> x.names, len(x.packed), x.as_dict() == {"sessions_7d": 3.0, "trend": 0.1}
    (('sessions_7d', 'trend'), 11, True)
    """

    names: tuple[str, ...]
    packed: bytes

    @staticmethod
    def of(features: dict[str, float]) -> Snapshot:
        return Snapshot(tuple(features), pack_floats(list(features.values())))

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.names, unpack_floats(self.packed, len(self.names)), strict=True))


def pack_floats(values: list[float]) -> bytes:
    """Values as a kind byte each (0: +0.0, 1: float32 holds it exactly, 2: float64,
    3: a whole number from 1 to 255), then the kind-3 values a byte each, then the
    float32 values, then the float64 ones. (Kind 3, state version 10: about half of a
    churn snapshot's non-zero values are counts; a packing without it reads the same.)

    >>> raw = pack_floats([0.0, 3.0, 0.1, -0.0, 0, 256.0])
    >>> raw[:6], len(raw), unpack_floats(raw, 6)
    (b'\\x00\\x03\\x02\\x01\\x00\\x01', 23, [0.0, 3.0, 0.1, -0.0, 0.0, 256.0])
    """
    exact = array("f", values).tolist()
    kinds = bytes(
        [
            (0 if math.copysign(1.0, v) > 0 else 1)
            if v == 0.0
            else ((3 if 1.0 <= v <= 255.0 and v == int(v) else 1) if v == f else 2)
            for v, f in zip(values, exact, strict=True)
        ]
    )
    small = bytes([int(v) for v, k in zip(values, kinds, strict=True) if k == 3])
    f32 = array("f", [v for v, k in zip(values, kinds, strict=True) if k == 1])
    f64 = array("d", [v for v, k in zip(values, kinds, strict=True) if k == 2])
    return kinds + small + f32.tobytes() + f64.tobytes()


def check_packed(raw: bytes, n: int) -> None:
    """ValueError unless ``raw`` is ``n`` values packed by :func:`pack_floats`."""
    kinds = raw[:n]
    n8, n32, n64 = kinds.count(3), kinds.count(1), kinds.count(2)
    if (
        len(kinds) != n
        or len(raw) != n + n8 + 4 * n32 + 8 * n64
        or n8 + n32 + n64 + kinds.count(0) != n
    ):
        raise ValueError("corrupt pending snapshot")


def unpack_floats(raw: bytes, n: int) -> list[float]:
    """Inverse of :func:`pack_floats` for ``n`` values (ValueError if the sizes disagree)."""
    check_packed(raw, n)
    kinds = raw[:n]
    n8, n32 = kinds.count(3), kinds.count(1)
    small = iter(raw[n : n + n8])
    f32 = iter(array("f", raw[n + n8 : n + n8 + 4 * n32]).tolist())
    f64 = iter(array("d", raw[n + n8 + 4 * n32 :]).tolist())
    return [
        0.0 if k == 0 else float(next(small)) if k == 3 else next(f32) if k == 1 else next(f64)
        for k in kinds
    ]


@dataclass(slots=True)
class AccountState:
    """Everything churnwatch remembers about one account (bounded).

    Lists of ``(ts, ...)`` are kept sorted by event time and cut to the newest
    ``max_history`` entries.
    """

    account_id: str
    events_applied: int = 0  # counted by the caller (streams), for lookups and tests
    first_ts: int | None = None
    max_ts: int = 0
    seen_ids: dict[str, int] = field(default_factory=dict)
    # subscription facts (latest by event time)
    plan: str | None = None
    price: float = 0.0
    currency: str | None = None
    billing_period: str = "month"
    max_streams: int = 1
    plan_ts: int = -1
    start_ts: int | None = None
    status: str = "unknown"  # unknown | active | cancelled
    status_changes: list[tuple[int, str]] = field(default_factory=list)
    price_changes: list[tuple[int, float, float]] = field(default_factory=list)
    plan_changes: list[tuple[int, int]] = field(default_factory=list)  # (ts, +1 up / -1 down)
    failed_payments: list[int] = field(default_factory=list)
    last_payment_ok_ts: int | None = None
    support_contacts: list[int] = field(default_factory=list)
    # usage
    days: Days = field(default_factory=Days)
    actions: list[str] = field(default_factory=list)
    devices: dict[str, list[int]] = field(default_factory=dict)  # id -> [first, last]
    profiles: dict[str, list[int]] = field(default_factory=dict)
    open_sessions: dict[str, int] = field(default_factory=dict)  # session -> start ts
    orphan_stops: dict[str, tuple[int, float | None]] = field(default_factory=dict)
    expired_sessions: int = 0
    last_playback_ts: int | None = None
    last_usage_ts: int | None = None
    # delayed labels (models.labels) and scoring memory (models.engine)
    last_obs_ts: int | None = None
    pending: list[tuple[int, Snapshot]] = field(default_factory=list)
    dropped_snapshots: int = 0
    risk: RiskState = field(default_factory=RiskState)
    household: HouseholdState = field(default_factory=new_household)
    # derived, not persisted (models.features)
    usage_sums: UsageSums | None = field(default=None, compare=False, repr=False)

    @property
    def reactivations(self) -> int:
        return sum(1 for _, kind in self.status_changes if kind == "reactivated")

    def status_at(self, ts: int) -> str:
        """Subscription status in effect at event time ``ts`` (from the bounded history)."""
        i = bisect.bisect_right(self.status_changes, (ts, "\uffff"))
        if i == 0:
            return "unknown" if self.start_ts is None or self.start_ts > ts else "active"
        return "cancelled" if self.status_changes[i - 1][1] == "cancelled" else "active"


def new_account(account_id: str) -> AccountState:
    """A fresh, empty state.

    >>> new_account("a-1").status
    'unknown'
    """
    return AccountState(account_id=account_id)


def apply_event(
    state: AccountState,
    event: Event,
    *,
    clock_ms: int | None = None,
    cfg: StateConfig = DEFAULT_CONFIG,
) -> bool:
    """Fold ``event`` into ``state`` in place; return False if it was not applied.

    ``clock_ms`` is the highest event time the caller has seen (for example the
    partition clock); the account's own highest event time is used too. An
    event older than ``clock - cfg.lateness_ms`` or whose ``event_id`` was seen
    already changes nothing.

    >>> from models.contract import Event
    >>> s = new_account("a")
    >>> apply_event(s, Event("x", "support_contacted", "a", 10 * 3_600_000, {}))
    True
    >>> apply_event(s, Event("y", "support_contacted", "a", 0, {}))  # 10 h late
    False
    >>> len(s.support_contacts)
    1
    """
    clock = max(state.max_ts, clock_ms or 0, event.ts)
    cutoff = clock - cfg.lateness_ms
    if event.ts < cutoff or event.event_id in state.seen_ids:
        return False
    # ids are forgotten by the account's own clock, which its state keeps, not by the
    # caller's (a partition clock starts again on the worker that takes the partition
    # over): an id forgotten is then always of an event the check above drops as late
    _remember(state, event, max(state.max_ts, event.ts) - cfg.lateness_ms, cfg)
    if state.first_ts is None or event.ts < state.first_ts:
        state.first_ts = event.ts
    state.max_ts = max(state.max_ts, event.ts)
    handler = _HANDLERS.get(event.type)
    if handler is not None:
        handler(state, event, cfg)
    if event.type in _HOUSEHOLD_TYPES:
        state.household = apply_household(
            state.household,
            event,
            max_streams=state.max_streams,
            lateness_ms=cfg.lateness_ms,
            session_timeout_ms=cfg.session_expiry_ms,
        )
    _expire_sessions(state, cutoff, cfg)
    _prune_days(state, cfg)
    return True


def expire(state: AccountState, clock_ms: int, cfg: StateConfig = DEFAULT_CONFIG) -> None:
    """Advance event time without an event (periodic sweep): close lost sessions.

    >>> s = new_account("a")
    >>> s.open_sessions["s1"] = 0
    >>> expire(s, 6 * 3_600_000)
    >>> s.open_sessions, s.expired_sessions
    ({}, 1)
    """
    _expire_sessions(state, clock_ms - cfg.lateness_ms, cfg)


def dump_state(state: AccountState) -> bytes:
    """Serialise for the changelog (``models.state_codec``: compact, versioned, no pickle).

    >>> load_state(dump_state(new_account("a"))).account_id
    'a'
    """
    from models.state_codec import encode  # imports this module

    return encode(state)


def load_state(raw: bytes) -> AccountState:
    """Inverse of ``dump_state`` (reads older versions too); ValueError on anything else."""
    from models.state_codec import decode  # imports this module

    return decode(raw)


# --- internals ---------------------------------------------------------------


def _remember(state: AccountState, event: Event, cutoff: int, cfg: StateConfig) -> None:
    ids = state.seen_ids
    ids[event.event_id] = event.ts
    # insertion order is roughly event-time order: drop from the front
    while ids:
        oldest_id = next(iter(ids))
        if ids[oldest_id] >= cutoff and len(ids) <= cfg.max_dedup_ids:
            break
        del ids[oldest_id]


def _bucket(state: AccountState, ts: int) -> int:
    """The entry in ``state.days`` of the day of ``ts``."""
    day = ts // DAY_MS
    if state.usage_sums is not None and day < state.usage_sums.day:
        state.usage_sums = None  # a late event changed a day the sums hold
    return state.days.add(day)


def _prune_days(state: AccountState, cfg: StateConfig) -> None:
    if len(state.days) > cfg.ring_days:
        oldest_kept = state.max_ts // DAY_MS - cfg.ring_days + 1
        state.days.drop_before(oldest_kept)
        state.usage_sums = None
        # devices and profiles not seen within the ring: no feature looks back that far
        for seen in (state.devices, state.profiles):
            for key in [k for k, (_, last) in seen.items() if last < oldest_kept * DAY_MS]:
                del seen[key]
        # the subscription history of the last year (and always its newest entry), so a
        # state stops growing after a year rather than when each list reaches its cap
        since = state.max_ts - cfg.history_ms
        for times in (state.failed_payments, state.support_contacts):
            _drop_before(times, since, lambda t: t)
        for history in (state.status_changes, state.price_changes, state.plan_changes):
            _drop_before(history, since, lambda entry: entry[0])


def _drop_before(items: list[Any], since: int, ts: Callable[[Any], int]) -> None:
    """Drop the entries of a time-sorted list older than ``since``, but the newest.

    >>> h = [1, 5, 9]; _drop_before(h, 6, lambda t: t); h
    [9]
    >>> h = [1, 5]; _drop_before(h, 6, lambda t: t); h
    [5]
    """
    n = 0
    while n < len(items) - 1 and ts(items[n]) < since:
        n += 1
    del items[:n]


def _insort_capped(items: list[Any], item: Any, cap: int) -> None:
    bisect.insort(items, item)
    if len(items) > cap:
        del items[: len(items) - cap]


def _touch(seen: dict[str, list[int]], key: str, ts: int, cap: int) -> None:
    span = seen.get(key)
    if span is not None:
        span[0], span[1] = min(span[0], ts), max(span[1], ts)
        return
    if len(seen) >= cap:  # evict the least recently seen
        del seen[min(seen, key=lambda k: seen[k][1])]
    seen[key] = [ts, ts]


def _set_plan(state: AccountState, event: Event) -> None:
    """Plan facts: the newest by event time wins (a late older one is history only)."""
    f = event.fields
    if event.ts < state.plan_ts:
        return
    state.plan_ts = event.ts
    state.plan = str(f.get("plan", state.plan))
    state.price = float(f.get("price", state.price))
    state.max_streams = int(f.get("max_streams", state.max_streams))
    state.currency = f.get("currency", state.currency)
    state.billing_period = f.get("billing_period", state.billing_period)


def _on_started(state: AccountState, event: Event, cfg: StateConfig) -> None:
    if state.start_ts is None or event.ts < state.start_ts:
        state.start_ts = event.ts
    _set_plan(state, event)
    _set_status(state, event.ts, "started", cfg)


def _on_plan_changed(state: AccountState, event: Event, cfg: StateConfig) -> None:
    new_price = float(event.fields["price"])
    old_price = _price_before(state, event.ts)
    if new_price != old_price:
        _insort_capped(
            state.plan_changes, (event.ts, 1 if new_price > old_price else -1), cfg.max_history
        )
    _set_plan(state, event)


def _price_before(state: AccountState, ts: int) -> float:
    """Best known price just before ``ts`` (latest price change before it, else current)."""
    i = bisect.bisect_left(state.price_changes, (ts,))
    if i < len(state.price_changes):
        return state.price_changes[i][1]  # the old price of the next change
    return state.price


def _on_price_changed(state: AccountState, event: Event, cfg: StateConfig) -> None:
    new_price = float(event.fields["price"])
    old_price = _price_before(state, event.ts)
    _insort_capped(state.price_changes, (event.ts, old_price, new_price), cfg.max_history)
    if event.ts >= state.plan_ts:
        state.plan_ts, state.price = event.ts, new_price


def _on_payment_failed(state: AccountState, event: Event, cfg: StateConfig) -> None:
    _insort_capped(state.failed_payments, event.ts, cfg.max_history)


def _on_payment_succeeded(state: AccountState, event: Event, cfg: StateConfig) -> None:
    state.last_payment_ok_ts = max(state.last_payment_ok_ts or event.ts, event.ts)


def _on_cancelled(state: AccountState, event: Event, cfg: StateConfig) -> None:
    _set_status(state, event.ts, "cancelled", cfg)


def _on_reactivated(state: AccountState, event: Event, cfg: StateConfig) -> None:
    _set_plan(state, event)
    _set_status(state, event.ts, "reactivated", cfg)


def _set_status(state: AccountState, ts: int, kind: str, cfg: StateConfig) -> None:
    _insort_capped(state.status_changes, (ts, kind), cfg.max_history)
    state.status = "cancelled" if state.status_changes[-1][1] == "cancelled" else "active"


def _on_support(state: AccountState, event: Event, cfg: StateConfig) -> None:
    _insort_capped(state.support_contacts, event.ts, cfg.max_history)


def _usage(state: AccountState, event: Event, cfg: StateConfig) -> int:
    state.last_usage_ts = max(state.last_usage_ts or event.ts, event.ts)
    device = event.fields.get("device_id")
    if device is not None:
        _touch(state.devices, str(device), event.ts, cfg.max_devices)
    i = _bucket(state, event.ts)
    state.days.usage_events[i] += 1
    return i


def _on_login(state: AccountState, event: Event, cfg: StateConfig) -> None:
    _usage(state, event, cfg)


def _on_playback_started(state: AccountState, event: Event, cfg: StateConfig) -> None:
    state.days.sessions[_usage(state, event, cfg)] += 1
    state.last_playback_ts = max(state.last_playback_ts or event.ts, event.ts)
    profile = event.fields.get("profile_id")
    if profile is not None:
        _touch(state.profiles, str(profile), event.ts, cfg.max_profiles)
    session = str(event.fields["session_id"])
    orphan = state.orphan_stops.pop(session, None)
    if orphan is not None:  # its stop arrived first
        stop_ts, watched = orphan
        if watched is None:
            _add_watch(state, stop_ts, _duration_s(event.ts, stop_ts, cfg))
        return
    if len(state.open_sessions) >= cfg.max_open_sessions:
        oldest = min(state.open_sessions, key=state.open_sessions.__getitem__)
        del state.open_sessions[oldest]
        state.expired_sessions += 1
    state.open_sessions[session] = event.ts


def _on_playback_stopped(state: AccountState, event: Event, cfg: StateConfig) -> None:
    _usage(state, event, cfg)
    state.last_playback_ts = max(state.last_playback_ts or event.ts, event.ts)
    session = str(event.fields["session_id"])
    watched = event.fields.get("watched_s")
    watched = None if watched is None else max(0.0, float(watched))
    start = state.open_sessions.pop(session, None)
    if start is not None:
        _add_watch(
            state, event.ts, _duration_s(start, event.ts, cfg) if watched is None else watched
        )
        return
    if watched is not None:  # credit now; a late start must not credit it again
        _add_watch(state, event.ts, watched)
    if len(state.orphan_stops) >= cfg.max_open_sessions:
        del state.orphan_stops[next(iter(state.orphan_stops))]
    state.orphan_stops[session] = (event.ts, watched)


def _duration_s(start_ts: int, stop_ts: int, cfg: StateConfig) -> float:
    return min(max(stop_ts - start_ts, 0), cfg.session_expiry_ms) / 1000.0


def _add_watch(state: AccountState, ts: int, seconds: float) -> None:
    state.days.watch_s[_bucket(state, ts)] += seconds


def _on_activity(state: AccountState, event: Event, cfg: StateConfig) -> None:
    i = _usage(state, event, cfg)
    quantity = float(event.fields.get("quantity", 1))
    state.days.activity[i] += quantity
    name = action_name(str(event.fields["action"]))
    if name not in state.actions:
        if len(state.actions) >= cfg.max_actions:
            name = "other"
        else:
            state.actions.append(name)
    actions = state.days.actions[i]
    actions[name] = actions.get(name, 0.0) + quantity


def action_name(raw: str) -> str:
    """Normalise an open-ended action name into a safe feature-name part.

    >>> action_name(" Add To-List! ")
    'add_to_list'
    """
    out = "".join(c if c.isalnum() else "_" for c in raw.strip().lower())
    return "_".join(p for p in out.split("_") if p)[:32] or "unnamed"


def _expire_sessions(state: AccountState, cutoff: int, cfg: StateConfig) -> None:
    """Sessions whose stop is lost are over after ``session_expiry_ms`` (no watch time
    is credited: how long they ran is unknown); unmatched stops are forgotten once
    their start could no longer arrive."""
    limit = cutoff - cfg.session_expiry_ms
    stale = [s for s, start in state.open_sessions.items() if start < limit]
    for session in stale:
        del state.open_sessions[session]
    state.expired_sessions += len(stale)
    for session in [s for s, (ts, _) in state.orphan_stops.items() if ts < cutoff]:
        del state.orphan_stops[session]


_HANDLERS = {
    "subscription_started": _on_started,
    "plan_changed": _on_plan_changed,
    "price_changed": _on_price_changed,
    "payment_succeeded": _on_payment_succeeded,
    "payment_failed": _on_payment_failed,
    "subscription_cancelled": _on_cancelled,
    "subscription_reactivated": _on_reactivated,
    "support_contacted": _on_support,
    "login": _on_login,
    "playback_started": _on_playback_started,
    "playback_stopped": _on_playback_stopped,
    "activity": _on_activity,
}
