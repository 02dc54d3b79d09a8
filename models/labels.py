"""Delayed churn labels in event time.

An account is observed at sign-up and then every ``observation_interval_ms``
(default 7 days) of its life: the features at that point are kept as a pending
snapshot inside the ``AccountState``. A snapshot becomes

- a **positive** example as soon as a ``subscription_cancelled`` with
  ``snapshot_ts < cancel_ts <= snapshot_ts + horizon`` has been applied;
- a **negative** example once the watermark passes ``snapshot_ts + horizon``
  without one;
- nothing, if the account turns out to have been cancelled already at the
  snapshot (a late cancellation).

A snapshot's values are rounded to float32 when it is taken (``taken``): a training
example needs no more than float32's seven digits, and a pending snapshot is the largest
part of an account's state (``models.state_codec`` stores a float32 in 4 bytes, a float64
in 8). A pending snapshot is kept packed as the changelog stores it
(``models.account.Snapshot``) and read as a dict once, when it matures. No snapshot
is taken while the account is cancelled. ``observe`` interleaves
snapshots and maturation, so pending snapshots stay within
``horizon / interval + 1`` (plus the few inside the allowed lateness), also
when an account comes back after a long silence: the missed observation points
are taken with the (unchanged) state of that silence, each with its own event
time. A periodic sweep (``observe(state, watermark, watermark_ms=watermark)``
for every account) labels accounts that stopped sending events.

The caller's loop per event is ``process_event``.
"""

from __future__ import annotations

import bisect
from array import array
from dataclasses import dataclass
from typing import Any

from models.account import (
    DEFAULT_CONFIG,
    AccountState,
    Snapshot,
    StateConfig,
    apply_event,
    pack_floats,
)
from models.contract import Event
from models.features import churn_features


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled feature snapshot for the learner (``example_id`` is deterministic)."""

    account_id: str
    snapshot_ts: int
    features: dict[str, float]
    label: bool
    example_id: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "example_id": self.example_id,
            "account_id": self.account_id,
            "snapshot_ts": self.snapshot_ts,
            "features": self.features,
            "label": self.label,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Example:
        """Inverse of ``to_dict``.

        >>> e = Example("a", 5, {"x": 1.0}, True, "a:5")
        >>> Example.from_dict(e.to_dict()) == e
        True
        """
        return cls(
            account_id=str(d["account_id"]),
            snapshot_ts=int(d["snapshot_ts"]),
            features={str(k): float(v) for k, v in d["features"].items()},
            label=bool(d["label"]),
            example_id=str(d["example_id"]),
        )


def maybe_snapshot(state: AccountState, now_ms: int, cfg: StateConfig = DEFAULT_CONFIG) -> None:
    """Take the snapshots of all observation points ``<= now_ms`` not taken yet.

    Observation points are ``anchor + k * interval`` (k >= 0), anchored at the
    subscription start (or the first event). The pending list is capped: the
    oldest snapshot is dropped (and counted) if a caller never matures labels.

    >>> from models.account import new_account, apply_event, DAY_MS
    >>> s = new_account("a")
    >>> _ = apply_event(s, Event("e", "login", "a", 0, {"device_id": "d"}))
    >>> maybe_snapshot(s, 15 * DAY_MS)
    >>> [ts // DAY_MS for ts, _ in s.pending]
    [0, 7, 14]
    """
    for t in _due_points(state, now_ms, cfg):
        _snapshot(state, t, cfg)


def mature_labels(
    state: AccountState, now_ms: int, cfg: StateConfig = DEFAULT_CONFIG
) -> list[Example]:
    """Turn pending snapshots into examples; ``now_ms`` is the watermark.

    >>> from models.account import new_account, apply_event, DAY_MS
    >>> s = new_account("a")
    >>> _ = apply_event(s, Event("e", "login", "a", 0, {"device_id": "d"}))
    >>> maybe_snapshot(s, 0)
    >>> mature_labels(s, 29 * DAY_MS)
    []
    >>> [(x.example_id, x.label) for x in mature_labels(s, 30 * DAY_MS)]
    [('a:0', False)]
    """
    if not state.pending or _nothing_to_mature(state, now_ms, cfg):
        return []
    out: list[Example] = []
    keep: list[tuple[int, Snapshot]] = []
    for ts, snapshot in state.pending:
        if state.status_at(ts) == "cancelled":
            continue  # cancelled before the snapshot (a late cancellation): no example
        if ts + cfg.horizon_ms > now_ms:
            # positive or negative, every label waits for the horizon: releasing
            # positives at the cancellation but negatives only 30 days later would
            # feed the learner recent positives without their negatives (biased up)
            label: bool | None = None
        else:
            label = _cancelled_within(state, ts, cfg.horizon_ms)
        if label is None:
            keep.append((ts, snapshot))
        else:
            features = snapshot.as_dict()
            out.append(Example(state.account_id, ts, features, label, f"{state.account_id}:{ts}"))
    state.pending = keep
    return out


def observe(
    state: AccountState, now_ms: int, *, watermark_ms: int, cfg: StateConfig = DEFAULT_CONFIG
) -> list[Example]:
    """Take due snapshots up to ``now_ms`` and mature labels up to ``watermark_ms``.

    >>> from models.account import new_account, apply_event, DAY_MS
    >>> s = new_account("a")
    >>> _ = apply_event(s, Event("e", "login", "a", 0, {"device_id": "d"}))
    >>> len(observe(s, 365 * DAY_MS, watermark_ms=365 * DAY_MS))  # weekly negatives
    48
    >>> len(s.pending)
    5
    """
    out: list[Example] = []
    for t in _due_points(state, now_ms, cfg):
        out += mature_labels(state, min(t, watermark_ms), cfg)
        _snapshot(state, t, cfg)
    out += mature_labels(state, watermark_ms, cfg)
    return out


def process_event(
    state: AccountState,
    event: Event,
    *,
    clock_ms: int | None = None,
    cfg: StateConfig = DEFAULT_CONFIG,
) -> tuple[bool, list[Example]]:
    """Snapshot what is due before ``event``, apply it, snapshot again (sign-up), mature.

    ``clock_ms`` is the partition clock (highest event time seen); the
    watermark is ``clock - lateness``. Returns (applied, matured examples).

    >>> from models.account import new_account, DAY_MS
    >>> s = new_account("a")
    >>> start = Event("e1", "subscription_started", "a", 0, {"plan": "p", "price": 5.0,
    ...     "currency": "EUR", "billing_period": "month", "max_streams": 1})
    >>> process_event(s, start)
    (True, [])
    >>> process_event(s, Event("e2", "subscription_cancelled", "a", DAY_MS, {}))
    (True, [])
    >>> examples = mature_labels(s, 30 * DAY_MS)  # labels wait for the horizon
    >>> [(x.example_id, x.label, x.features["tenure_days_log"]) for x in examples]
    [('a:0', True, 0.0)]
    """
    clock = max(state.max_ts, clock_ms or 0, event.ts)
    watermark = clock - cfg.lateness_ms
    out = observe(state, event.ts - 1, watermark_ms=watermark, cfg=cfg)
    applied = apply_event(state, event, clock_ms=clock, cfg=cfg)
    if applied:
        out += observe(state, event.ts, watermark_ms=watermark, cfg=cfg)
    return applied, out


def _due_points(state: AccountState, now_ms: int, cfg: StateConfig) -> list[int]:
    anchor = state.start_ts if state.start_ts is not None else state.first_ts
    if anchor is None:
        return []
    step = cfg.observation_interval_ms
    k = 0 if state.last_obs_ts is None else max((state.last_obs_ts - anchor) // step + 1, 0)
    first = anchor + k * step
    if now_ms < first:
        return []
    # after a silence of over a year only its last year is observed (older points would
    # hold the same state; they count as dropped), so the loop stays bounded
    skip = max(0, (now_ms - cfg.max_catchup_ms - first) // step + 1)
    state.dropped_snapshots += skip
    return list(range(first + skip * step, now_ms + 1, step))


def _snapshot(state: AccountState, ts: int, cfg: StateConfig) -> None:
    state.last_obs_ts = ts
    if state.status_at(ts) == "cancelled":
        return
    state.pending.append((ts, taken(churn_features(state, ts))))
    excess = len(state.pending) - (cfg.max_pending_snapshots + 1)
    if excess > 0:
        del state.pending[:excess]
        state.dropped_snapshots += excess


def taken(features: dict[str, float]) -> Snapshot:
    """A pending snapshot of ``features``: the values rounded to float32, packed.

    >>> taken({"watch_hours_7d": 0.1, "sessions_7d": 3, "trend": -0.0}).as_dict()
    {'watch_hours_7d': 0.10000000149011612, 'sessions_7d': 3.0, 'trend': -0.0}
    """
    return Snapshot(tuple(features), pack_floats(array("f", features.values()).tolist()))


def _cancelled_within(state: AccountState, ts: int, horizon_ms: int) -> bool:
    changes = state.status_changes
    i = bisect.bisect_right(changes, (ts, "\uffff"))
    return any(kind == "cancelled" for t, kind in changes[i:] if t <= ts + horizon_ms)


def _nothing_to_mature(state: AccountState, now_ms: int, cfg: StateConfig) -> bool:
    """Fast path: no snapshot reached the horizon and no cancellation can concern one.

    A cancellation that makes a snapshot positive is later than it; one that voids
    it arrived late, so it is at most ``lateness`` older than the snapshot.
    """
    first = state.pending[0][0]
    if first + cfg.horizon_ms <= now_ms:
        return False
    since = first - cfg.lateness_ms
    for ts, kind in reversed(state.status_changes):
        if ts < since:
            break
        if kind == "cancelled":
            return False
    return True
