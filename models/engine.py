"""Per-account processing, pure: apply an event, label, score, alert.

The account agent (``streams.agents.accounts``) is a thin loop around these
functions; replays, benchmarks and tests call them directly, so the live stream
and a replay of history give the same outputs.

- :func:`ingest` applies one event (idempotent, event time), takes the churn
  observation snapshots that are due and returns the training examples that
  matured (churn: delayed labels; sharing: a verification outcome or a paid
  extra member labels the household evidence *before* that event).
- :func:`score` computes both scores with the current models, returns a
  ``risk-scores`` message when either moved more than ``score_delta`` since the
  last one published, and the alerts that fire (hysteresis, deterministic ids).
- :func:`decide_churn` decides churn alerts at points the data defines (every
  multiple of ``churn_decision_interval_ms`` of event time, before the first
  event past it; ``ingest`` also decides after each subscription event), so a
  replay of the same input gives the same churn alerts whatever its batches.
- :func:`sweep` advances a quiet account in event time (snapshots, labels,
  lost sessions, churn decisions) and re-scores it, so disengaged accounts are
  scored too.
- :func:`process` runs a partition's batch: events, scores of the accounts
  touched, labels whose horizon passed (event-time timers), the daily sweep.

Scoring never changes a model; learning happens in the learner only, from the
examples returned here, each scored before it is learned (``OnlineLearner``).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from models.account import DAY_MS, AccountState, StateConfig, expire, new_account
from models.alerting import (
    AlertConfig,
    ChurnActionConfig,
    alert_summary,
    churn_action,
    make_alert,
    rfc3339,
    update_track,
)
from models.churn import explain, make_churn_model
from models.contract import SUBSCRIPTION_TYPES, Event
from models.features import churn_features
from models.household import PrefixCensus, household_features
from models.household.places import Window, window
from models.labels import Example, observe, process_event
from models.learner import OnlineLearner
from models.outcomes import decisive, expire_follow_ups, open_follow_up, resolve
from models.privacy import GEO_GRID_KM
from models.risk import KINDS as KINDS  # re-exported: the model kinds
from models.risk import RiskState
from models.sharing import (
    CALIBRATION,
    RESET,
    THRESHOLD,
    SharingPolicy,
    calibrate,
    combine,
    make_sharing_model,
    sharing_action,
    sharing_evidence_score,
    sharing_label,
    sharing_reasons,
)
from models.timepolicy import TimePolicy


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Everything the per-account logic needs (built from ``streams.settings``)."""

    state: StateConfig = field(default_factory=StateConfig)
    churn_alert: AlertConfig = field(default_factory=lambda: AlertConfig(0.4, 0.3))
    # the alert levels apply to the calibrated score (models.sharing.CALIBRATION)
    sharing_alert: AlertConfig = field(default_factory=lambda: AlertConfig(THRESHOLD, RESET))
    # the published sharing score is the blend through this map (empty: the blend itself)
    sharing_calibration: tuple[tuple[float, float], ...] = CALIBRATION
    churn_actions: ChurnActionConfig = field(default_factory=ChurnActionConfig)
    sharing_policy: SharingPolicy = field(default_factory=SharingPolicy)
    score_delta: float = 0.02
    # not the contract's rule, so no setting: a churn alert closed as wrong when its
    # horizon passes also ends its episode, and a score still above the threshold
    # raises the next one (benchmarks/bench_churn_matrix.py --rearm-after-horizon
    # measures this proposal to the contract, docs/churn.md)
    churn_rearm_after_horizon: bool = False
    # a churn model that has learned fewer examples than this raises no alerts
    min_churn_examples: int = 1000
    # quiet accounts are re-scored by the sweep at most this often (event time)
    rescore_interval_ms: int = DAY_MS
    # churn alerts are decided at points the data defines, so a replay of the same input
    # gives the same alerts whatever its batches: after each subscription event and at
    # each multiple of this interval of event time (UTC midnights by default)
    churn_decision_interval_ms: int = DAY_MS
    recent_alerts: int = 5
    # each alert's account is followed this long (event time) to see what the action
    # achieved (models.outcomes), with at most this many open follow-ups per account
    action_window_ms: int = 30 * DAY_MS
    max_follow_ups: int = 8
    # the accepted range of event times (checked at ingest: dead letters past_ts, future_ts)
    time: TimePolicy = field(default_factory=TimePolicy)
    # coordinates are coarsened at ingest to cells of this side (models.privacy; 0: as sent)
    geo_grid_km: float = GEO_GRID_KM


@dataclass
class Models:
    """The model snapshots a worker scores with."""

    churn: OnlineLearner
    sharing: OnlineLearner

    @classmethod
    def fresh(cls, churn_kind: str = "logreg") -> Models:
        return cls(
            churn=OnlineLearner(make_churn_model(churn_kind), name="churn"),
            sharing=OnlineLearner(make_sharing_model(), name="sharing"),
        )

    def get(self, kind: str) -> OnlineLearner:
        return self.churn if kind == "churn" else self.sharing


def risk(state: AccountState) -> RiskState:
    """The account's scoring memory (``AccountState.risk``)."""
    return state.risk


@dataclass
class Outputs:
    """What processing produced: messages to publish and alert outcomes to count."""

    scores: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[tuple[str, str]] = field(default_factory=list)  # (kind, right|wrong)
    # what followed each alert within the action window: (kind, action, outcome)
    action_outcomes: list[tuple[str, str, str]] = field(default_factory=list)
    failed: list[tuple[Event, str]] = field(default_factory=list)  # events our code failed on
    # accounts erased (``account_erased``): their tombstones go out before any score above
    erased: list[str] = field(default_factory=list)

    def churn_examples(self, examples: list[Example], labelled_ts: int) -> None:
        """Matured churn examples, as training-topic records labelled at ``labelled_ts``."""
        self.examples += [
            {"model": "churn", **x.to_dict(), "labelled_ts": labelled_ts} for x in examples
        ]

    def erase(self, account_id: str) -> None:
        """An erased account: its scores not yet published are dropped, a tombstone is due."""
        self.scores = [msg for msg in self.scores if msg["account_id"] != account_id]
        self.erased.append(account_id)

    def extend(self, other: Outputs) -> None:
        self.scores += other.scores
        self.alerts += other.alerts
        self.examples += other.examples
        self.outcomes += other.outcomes
        self.action_outcomes += other.action_outcomes
        self.failed += other.failed
        self.erased += other.erased


def ingest(
    state: AccountState,
    event: Event,
    *,
    clock_ms: int,
    cfg: EngineConfig,
    out: Outputs,
    census: PrefixCensus | None = None,
    models: Models | None = None,
) -> bool:
    """Apply ``event`` (False: duplicate or too late); collect examples and outcomes.

    With ``models``, also the churn alert decisions: at the decision points the
    event passes (before applying it) and after a subscription event.

    >>> from models.account import new_account
    >>> s, out = new_account("a"), Outputs()
    >>> ev = Event("v1", "household_verification", "a", 0, {"device_id": "d", "outcome": "failed"})
    >>> ingest(s, ev, clock_ms=0, cfg=EngineConfig(), out=out)
    True
    >>> [(x["model"], x["example_id"], x["label"]) for x in out.examples]
    [('sharing', 'a:v1', True)]
    """
    label = sharing_label(event)
    fresh = event.event_id not in state.seen_ids
    if models is not None and fresh:
        decide_churn(state, until_ms=event.ts, models=models, cfg=cfg, out=out)
    if label is not None and fresh:
        before = household_features(
            state.household, event.ts, max_streams=state.max_streams, census=census
        )
    plan_before = state.price, state.max_streams
    applied, examples = process_event(state, event, clock_ms=clock_ms, cfg=cfg.state)
    out.churn_examples(examples, event.ts)
    if not applied:
        return False
    r = risk(state)
    if r.follow_ups:  # what the alerts before this event achieved (models.outcomes)
        out.action_outcomes += expire_follow_ups(r.follow_ups, event.ts, cfg.action_window_ms)
        outcome = decisive(event, *plan_before)
        if outcome is not None:
            out.action_outcomes += resolve(r.follow_ups, outcome, event.ts)
    if label is not None:
        out.examples.append(
            {"model": "sharing", "example_id": f"{state.account_id}:{event.event_id}",
             "account_id": state.account_id, "snapshot_ts": event.ts, "features": before,
             "label": label, "labelled_ts": event.ts}
        )  # fmt: skip
        _close_alert(r, "sharing", "right" if label else "wrong", out)
    if event.type == "subscription_cancelled":
        r.tracks["churn"].active = False  # re-arm: a cancellation always gets its win_back alert
        fired = r.open_alerts.get("churn")
        if fired is not None and event.ts - fired <= cfg.state.horizon_ms:
            _close_alert(r, "churn", "right", out)
    if models is not None and event.type in SUBSCRIPTION_TYPES:
        decide(state, now_ms=event.ts, models=models, cfg=cfg, out=out)
    return True


def decide_churn(
    state: AccountState, *, until_ms: int, models: Models, cfg: EngineConfig, out: Outputs
) -> None:
    """Churn alert decisions at the decision points (multiples of
    ``churn_decision_interval_ms``) after the last one, up to ``until_ms``.

    Called before an event at ``until_ms`` is applied, and by the sweep with the
    watermark: either way the state holds the account's events before each point
    and none after it, so the decision is the same in every replay.
    """
    if state.first_ts is None:
        return
    r = risk(state)
    step = cfg.churn_decision_interval_ms
    last = r.decided_ts
    point = (state.first_ts if last is None else last) // step * step + step
    # after a silence longer than the horizon only its last horizon is decided: an alert
    # at an older point would be closed as wrong at once (and the loop stays bounded)
    oldest = (until_ms - cfg.state.horizon_ms) // step * step
    for t in range(max(point, oldest), until_ms + 1, step):
        decide(state, now_ms=t, models=models, cfg=cfg, out=out)
        r.decided_ts = t


def decide(
    state: AccountState, *, now_ms: int, models: Models, cfg: EngineConfig, out: Outputs
) -> float:
    """One churn alert decision at event time ``now_ms``; returns the churn score.

    Publishes no score (``score`` does). The sharing score an alert carries is
    computed without the cross-account census, whose content depends on timing.

    >>> from models.account import new_account, apply_event
    >>> s, out = new_account("a"), Outputs()
    >>> _ = apply_event(s, Event("c", "subscription_cancelled", "a", 0, {}))
    >>> decide(s, now_ms=0, models=Models.fresh(), cfg=EngineConfig(), out=out)
    1.0
    >>> [(a["alert_id"], a["action"]) for a in out.alerts]
    [('a:churn:1', 'win_back')]
    """
    r = risk(state)
    churn_x = churn_features(state, now_ms)
    churn_p = _churn_p(churn_x, models)
    fired = r.open_alerts.get("churn")
    if fired is not None and now_ms - fired > cfg.state.horizon_ms:
        _close_alert(r, "churn", "wrong", out)
        if cfg.churn_rearm_after_horizon and churn_p < 1.0:
            r.tracks["churn"].active = False
    if models.churn.examples < cfg.min_churn_examples and churn_p < 1.0:
        return churn_p  # an untrained churn model raises no alerts (a cancelled account does)
    track = r.tracks["churn"]
    if update_track(track, churn_p, cfg.churn_alert):
        sharing_p, _ = _sharing(state, now_ms, models, None, cfg)
        _alert(
            state, "churn", churn_p, now_ms,
            reasons=explain(models.churn.model, churn_x),
            action=churn_action(churn_x, cfg.churn_actions), both=(churn_p, sharing_p),
            models=models, cfg=cfg, out=out,
        )  # fmt: skip
    return churn_p


def _churn_p(churn_x: dict[str, float], models: Models) -> float:
    """The churn score: 1 once the account is cancelled, else the model's probability."""
    if churn_x.get("cancelled", 0.0) >= 1.0:
        return 1.0
    return models.churn.predict_proba(churn_x)


def _sharing(
    state: AccountState,
    now_ms: int,
    models: Models,
    census: PrefixCensus | None,
    cfg: EngineConfig,
    places_seen: Window | None = None,
) -> tuple[float, dict[str, float]]:
    """The sharing score (evidence prior combined with the learned model, calibrated) and
    its features."""
    x = household_features(
        state.household,
        now_ms,
        max_streams=state.max_streams,
        census=census,
        places_seen=places_seen,
    )
    learned = models.sharing.examples
    model_p = models.sharing.predict_proba(x) if learned else None
    return published_sharing(x, model_p, learned, cfg), x


def published_sharing(
    x: dict[str, float], model_p: float | None, learned: int, cfg: EngineConfig
) -> float:
    """The sharing score published for features ``x`` whose learned model, after
    ``learned`` labels, gave ``model_p``: the evidence prior combined with it as far as its
    labels allow, calibrated (what the alert levels apply to)."""
    return calibrate(combine(sharing_evidence_score(x), model_p, learned), cfg.sharing_calibration)


def _alert(
    state: AccountState,
    kind: str,
    p: float,
    ts_ms: int,
    *,
    reasons: list[dict[str, Any]],
    action: str,
    both: tuple[float, float],
    models: Models,
    cfg: EngineConfig,
    out: Outputs,
) -> None:
    r = risk(state)
    alert_cfg = cfg.churn_alert if kind == "churn" else cfg.sharing_alert
    alert = make_alert(
        kind=kind, account_id=state.account_id, episode=r.tracks[kind].episode, ts_ms=ts_ms,
        score=p, threshold=alert_cfg.threshold, reasons=reasons, action=action,
        model=models.get(kind).model_id,
        scores={"churn": round(both[0], 4), "sharing": round(both[1], 4)},
    )  # fmt: skip
    out.alerts.append(alert)
    r.open_alerts[kind] = ts_ms
    out.action_outcomes += open_follow_up(r.follow_ups, (kind, action, ts_ms), cfg.max_follow_ups)
    r.recent = (r.recent + [alert_summary(alert)])[-cfg.recent_alerts :]


def _close_alert(r: RiskState, kind: str, outcome: str, out: Outputs) -> None:
    if r.open_alerts.pop(kind, None) is not None:
        out.outcomes.append((kind, outcome))


def sweep(
    state: AccountState,
    *,
    clock_ms: int,
    models: Models,
    cfg: EngineConfig,
    out: Outputs,
    census: PrefixCensus | None = None,
) -> None:
    """Advance a quiet account to the partition clock and re-score it when due."""
    watermark = clock_ms - cfg.state.lateness_ms
    if watermark <= state.max_ts:
        return
    expire(state, clock_ms, cfg.state)
    r = risk(state)
    out.action_outcomes += expire_follow_ups(r.follow_ups, watermark, cfg.action_window_ms)
    out.churn_examples(observe(state, watermark, watermark_ms=watermark, cfg=cfg.state), watermark)
    decide_churn(state, until_ms=watermark, models=models, cfg=cfg, out=out)
    if r.scored_ts is None or watermark - r.scored_ts >= cfg.rescore_interval_ms:
        score(state, now_ms=watermark, models=models, cfg=cfg, out=out, census=census)


def score(
    state: AccountState,
    *,
    now_ms: int,
    models: Models,
    cfg: EngineConfig,
    out: Outputs,
    census: PrefixCensus | None = None,
) -> tuple[float, float]:
    """Both scores at event time ``now_ms``: publishes them on material change and
    decides sharing alerts (churn alerts are decided at fixed points: ``decide``).

    >>> from models.account import new_account, apply_event
    >>> s, out = new_account("a"), Outputs()
    >>> _ = apply_event(s, Event("e", "login", "a", 0, {"device_id": "d"}))
    >>> score(s, now_ms=0, models=Models.fresh(), cfg=EngineConfig(), out=out)
    (0.5, 0.0...)
    >>> out.scores[0]["churn_model"], len(out.alerts)
    ('churn-v0', 0)
    """
    r = risk(state)
    churn_x = churn_features(state, now_ms)
    hs = state.household
    places_seen = window(hs, now_ms)  # the census's and the features' start, once
    if census is not None:  # networks many accounts use away from home: VPN exits, carrier NAT
        census.observe(state.account_id, hs, places_seen, now_ms)
    sharing_p, sharing_x = _sharing(state, now_ms, models, census, cfg, places_seen)
    churn_p = _churn_p(churn_x, models)
    r.scores, r.scored_ts = (churn_p, sharing_p), now_ms
    r.models = (models.churn.model_id, models.sharing.model_id)

    reasons: dict[str, list[dict[str, Any]]] = {}

    def why(kind: str) -> list[dict[str, Any]]:
        if kind not in reasons:
            reasons[kind] = (
                explain(models.churn.model, churn_x)
                if kind == "churn"
                else sharing_reasons(sharing_x)
            )
        return reasons[kind]

    last = r.published
    if last is None or max(abs(churn_p - last[0]), abs(sharing_p - last[1])) > cfg.score_delta:
        r.published = (churn_p, sharing_p)
        out.scores.append(
            {
                "account_id": state.account_id,
                "ts": rfc3339(state.max_ts),
                "churn_score": round(churn_p, 4),
                "sharing_score": round(sharing_p, 4),
                "churn_model": r.models[0],
                "sharing_model": r.models[1],
                "top_factors": {"churn": why("churn"), "sharing": why("sharing")},
            }
        )
    if update_track(r.tracks["sharing"], sharing_p, cfg.sharing_alert):
        _alert(
            state, "sharing", sharing_p, state.max_ts, reasons=why("sharing"),
            action=sharing_action(sharing_x, churn_p, cfg.sharing_policy),
            both=(churn_p, sharing_p), models=models, cfg=cfg, out=out,
        )  # fmt: skip
    return churn_p, sharing_p


def _marker(state: AccountState) -> Event:
    """Stands for "scoring this account" in ``Outputs.failed``."""
    return Event(f"score:{state.account_id}", "score", state.account_id, state.max_ts, {})


# Memory one decoded account state takes (live Python objects: 55 KB median, 90 KB p95
# after 60 days of history, rounded up to leave room for the heavier ones), measured by
# benchmarks/bench_store.py: turns ``CHURNWATCH_STATE_CACHE_MB`` into a number of accounts
RESIDENT_BYTES_PER_ACCOUNT = 64 * 1024


def _nothing(account_id: str) -> AccountState | None:
    return None


@dataclass
class Shard:
    """The accounts of one partition, with the partition's event-time clock.

    ``accounts`` holds the decoded states in memory, least recently used first. With a
    backing store (``streams.agents.accounts.AccountStore``) it is a cache: ``load``
    reads a state that is not in memory and ``ids`` lists every account of the
    partition, persisted or not; the caller evicts clean states. Without one
    (replays, tests) every state stays in ``accounts``.
    """

    accounts: dict[str, AccountState] = field(default_factory=dict)
    clock: int = 0  # highest event time of the events this shard read (not loaded states)
    next_sweep: int | None = None
    dirty: set[str] = field(default_factory=set)  # changed since the caller last persisted
    # event-time timers: when each account's oldest pending snapshot gets its label, as
    # a min-heap of (due, account) whose stale entries are skipped. Timers outlive
    # eviction (a few dozen bytes each); after a restart they are armed as accounts are
    # loaded, and the daily sweep (which loads every account) arms the rest
    labels_due: list[tuple[int, str]] | None = None
    _due: dict[str, int] = field(default_factory=dict)
    load: Callable[[str], AccountState | None] = _nothing
    ids: Callable[[], Iterable[str]] | None = None
    # the day's sweep, in chunks of at most ``sweep_chunk`` accounts per ``process`` call
    # (None: all at once), so the states it loads can be persisted and evicted in between
    sweep_chunk: int | None = None
    sweeping: deque[str] = field(default_factory=deque)
    # erased since the caller last persisted: their tombstones are due, and a copy the
    # store still holds must not be read back
    erased: set[str] = field(default_factory=set)

    def arm(self, state: AccountState, horizon_ms: int) -> None:
        """(Re)set the account's label timer after its pending snapshots changed."""
        due = state.pending[0][0] + horizon_ms if state.pending else None
        if due is None:
            self._due.pop(state.account_id, None)
        elif self._due.get(state.account_id) != due and self.labels_due is not None:
            self._due[state.account_id] = due
            heapq.heappush(self.labels_due, (due, state.account_id))

    def due_accounts(self, watermark: int) -> list[AccountState]:
        """Accounts whose oldest pending snapshot reached its horizon by ``watermark``."""
        heap, out = self.labels_due or [], []
        while heap and heap[0][0] <= watermark:
            due, account_id = heapq.heappop(heap)
            if self._due.get(account_id) == due:
                del self._due[account_id]
                state = self.find(account_id)
                if state is not None:
                    out.append(state)
        return out

    def find(self, account_id: str) -> AccountState | None:
        """The account's state (loaded if it is not in memory), most recently used now.

        Loading a state does not move the clock: the states a killed worker persisted
        need not be of one moment, and the events re-read after it are judged against
        the clock they make themselves (and each against its account's own latest
        event, ``apply_event``). docs/design.md, "Known limits", the partition clock.
        """
        state = self.accounts.pop(account_id, None)
        if state is None:
            state = None if account_id in self.erased else self.load(account_id)
            if state is None:
                return None
        self.accounts[account_id] = state
        return state

    def get(self, account_id: str) -> AccountState:
        state = self.find(account_id)
        if state is None:
            state = self.accounts[account_id] = new_account(account_id)
        return state

    def erase(self, account_id: str) -> None:
        """Forget the account (``account_erased``): nothing of it stays in memory, and the
        caller writes a tombstone for it (``erased``). A later event starts it afresh."""
        self.accounts.pop(account_id, None)
        self.dirty.discard(account_id)
        self._due.pop(account_id, None)
        self.erased.add(account_id)

    def all_ids(self) -> list[str]:
        """Every account of the partition: in memory, and persisted if there is a store."""
        known = dict.fromkeys(self.accounts)
        if self.ids is not None:
            known.update(dict.fromkeys(self.ids()))
        return list(known)


def _produced(out: Outputs) -> int:
    """How many outputs that change an account's state ``out`` holds so far."""
    return len(out.examples) + len(out.scores) + len(out.alerts) + len(out.action_outcomes)


def process(
    shard: Shard,
    events: list[Event],
    models: Models,
    cfg: EngineConfig,
    out: Outputs,
    census: PrefixCensus | None = None,
) -> tuple[int, int, int]:
    """Apply a partition's events, score the accounts they touched, and sweep the quiet
    accounts once per day of event time. Returns (applied, duplicates, late drops).

    >>> shard, out = Shard(), Outputs()
    >>> login = Event("e1", "login", "a", 0, {"device_id": "d"})
    >>> process(shard, [login, login], Models.fresh(), EngineConfig(), out)
    (1, 1, 0)
    >>> len(out.scores), sorted(shard.dirty)
    (1, ['a'])
    """
    horizon = cfg.state.horizon_ms
    if shard.labels_due is None:
        shard.labels_due = []
        for state in shard.accounts.values():
            shard.arm(state, horizon)
    touched: dict[str, AccountState] = {}
    applied = duplicates = late = 0
    for event in events:
        if event.type == "account_erased":  # a request, not activity: the clock stays
            shard.erase(event.account_id)
            touched.pop(event.account_id, None)
            out.erase(event.account_id)
            if census is not None:
                census.forget(event.account_id)
            applied += 1
            continue
        shard.clock = max(shard.clock, event.ts)
        state = shard.get(event.account_id)
        if event.event_id in state.seen_ids:
            duplicates += 1
            continue
        try:
            ok = ingest(
                state, event, clock_ms=shard.clock, cfg=cfg, out=out, census=census, models=models
            )
        except Exception as exc:  # a bug must not stop the stream: report the event, go on
            out.failed.append((event, f"{type(exc).__name__}: {exc}"))
            continue
        if ok:
            state.events_applied += 1
            applied += 1
            touched[event.account_id] = state
        else:
            late += 1
            # not applied, but its labels and churn decisions may have changed the state:
            # persist it (an evicted state must hold everything that went out)
            shard.dirty.add(event.account_id)
    for state in touched.values():
        try:
            score(state, now_ms=state.max_ts, models=models, cfg=cfg, out=out, census=census)
        except Exception as exc:
            out.failed.append((_marker(state), f"{type(exc).__name__}: {exc}"))
        shard.arm(state, horizon)
    shard.dirty.update(touched)
    # labels at their horizon, for quiet accounts too: every label waits for the same
    # delay, so the learner never gets one day's cancellations in a burst at a sweep
    watermark = shard.clock - cfg.state.lateness_ms
    for state in shard.due_accounts(watermark):
        out.churn_examples(
            observe(state, watermark, watermark_ms=watermark, cfg=cfg.state), watermark
        )
        shard.arm(state, horizon)
        shard.dirty.add(state.account_id)
    # the next sweep is due at the first midnight after the watermark (not after the
    # clock: a call whose clock ended within the lateness past a midnight skipped that
    # day's sweep, so where the buffers were cut decided which quiet accounts got their
    # last decision points decided; measured: one churn alert of 629 in a CI run)
    day_end = watermark - watermark % DAY_MS + DAY_MS
    if shard.next_sweep is None:
        shard.next_sweep = day_end
    elif watermark >= shard.next_sweep and not shard.sweeping:
        shard.sweeping.extend(shard.all_ids())
        shard.next_sweep = day_end
    chunk = len(shard.sweeping) if shard.sweep_chunk is None else shard.sweep_chunk
    for _ in range(min(chunk, len(shard.sweeping))):
        # accounts this call touched too: their events decided the points up to their
        # last one, not the points after it up to the watermark (skipping them left an
        # account's last midnight undecided wherever a buffer spanned it: one churn
        # alert of 489 missing at the end of a full-scale fault run)
        found = shard.find(shard.sweeping.popleft())
        if found is not None:
            state = found
            n = _produced(out)
            scored = risk(state).scored_ts
            sweep(state, clock_ms=shard.clock, models=models, cfg=cfg, out=out, census=census)
            shard.arm(state, horizon)
            if n != _produced(out) or scored != risk(state).scored_ts:
                shard.dirty.add(state.account_id)
    return applied, duplicates, late
