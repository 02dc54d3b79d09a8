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
- :func:`sweep` advances a quiet account in event time (snapshots, labels,
  lost sessions) and re-scores it, so disengaged accounts are scored too.

Scoring never changes a model; learning happens in the learner only, from the
examples returned here, each scored before it is learned (``OnlineLearner``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from models.account import DAY_MS, AccountState, StateConfig, expire, new_account
from models.alerting import (
    AlertConfig,
    AlertTrack,
    ChurnActionConfig,
    churn_action,
    make_alert,
    rfc3339,
    update_track,
)
from models.churn import explain, make_churn_model
from models.contract import Event
from models.features import churn_features
from models.household import PrefixCensus, household_features
from models.labels import observe, process_event
from models.learner import OnlineLearner
from models.sharing import (
    SharingPolicy,
    combine,
    make_sharing_model,
    sharing_action,
    sharing_evidence_score,
    sharing_label,
    sharing_reasons,
)

KINDS = ("churn", "sharing")


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Everything the per-account logic needs (built from ``streams.settings``)."""

    state: StateConfig = field(default_factory=StateConfig)
    churn_alert: AlertConfig = field(default_factory=lambda: AlertConfig(0.4, 0.3))
    sharing_alert: AlertConfig = field(default_factory=AlertConfig)
    churn_actions: ChurnActionConfig = field(default_factory=ChurnActionConfig)
    sharing_policy: SharingPolicy = field(default_factory=SharingPolicy)
    score_delta: float = 0.02
    # a churn model that has learned fewer examples than this raises no alerts
    min_churn_examples: int = 1000
    # quiet accounts are re-scored by the sweep at most this often (event time)
    rescore_interval_ms: int = DAY_MS
    recent_alerts: int = 5


@dataclass
class Models:
    """The model snapshots a worker scores with."""

    churn: OnlineLearner
    sharing: OnlineLearner

    @classmethod
    def fresh(cls, churn_kind: str = "logreg") -> Models:
        return cls(
            churn=OnlineLearner(make_churn_model(churn_kind), name="churn", max_ids=20_000),
            sharing=OnlineLearner(make_sharing_model(), name="sharing", max_ids=20_000),
        )

    def get(self, kind: str) -> OnlineLearner:
        return self.churn if kind == "churn" else self.sharing


@dataclass(slots=True)
class RiskState:
    """Scoring memory of one account (kept in ``AccountState.alerts['risk']``)."""

    tracks: dict[str, AlertTrack] = field(default_factory=lambda: {k: AlertTrack() for k in KINDS})
    published: tuple[float, float] | None = None
    scores: tuple[float, float] = (0.0, 0.0)
    models: tuple[str, str] = ("", "")
    scored_ts: int | None = None
    open_alerts: dict[str, int] = field(default_factory=dict)  # kind -> alert event time
    recent: list[dict[str, Any]] = field(default_factory=list)


def risk(state: AccountState) -> RiskState:
    r = state.alerts.get("risk")
    if r is None:
        r = state.alerts["risk"] = RiskState()
    return r  # type: ignore[no-any-return]


@dataclass
class Outputs:
    """What processing produced: messages to publish and alert outcomes to count."""

    scores: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[tuple[str, str]] = field(default_factory=list)  # (kind, right|wrong)
    failed: list[tuple[Event, str]] = field(default_factory=list)  # events our code failed on

    def extend(self, other: Outputs) -> None:
        self.scores += other.scores
        self.alerts += other.alerts
        self.examples += other.examples
        self.outcomes += other.outcomes
        self.failed += other.failed


def ingest(
    state: AccountState,
    event: Event,
    *,
    clock_ms: int,
    cfg: EngineConfig,
    out: Outputs,
    census: PrefixCensus | None = None,
) -> bool:
    """Apply ``event`` (False: duplicate or too late); collect examples and outcomes.

    >>> from models.account import new_account
    >>> s, out = new_account("a"), Outputs()
    >>> ev = Event("v1", "household_verification", "a", 0, {"device_id": "d", "outcome": "failed"})
    >>> ingest(s, ev, clock_ms=0, cfg=EngineConfig(), out=out)
    True
    >>> [(x["model"], x["example_id"], x["label"]) for x in out.examples]
    [('sharing', 'a:v1', True)]
    """
    label = sharing_label(event)
    if label is not None and event.event_id not in state.seen_ids:
        before = household_features(
            state.household, event.ts, max_streams=state.max_streams, census=census
        )
    applied, examples = process_event(state, event, clock_ms=clock_ms, cfg=cfg.state)
    out.examples += [{"model": "churn", **x.to_dict(), "labelled_ts": event.ts} for x in examples]
    if not applied:
        return False
    r = risk(state)
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
    return True


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
    out.examples += [
        {"model": "churn", **x.to_dict(), "labelled_ts": watermark}
        for x in observe(state, watermark, watermark_ms=watermark, cfg=cfg.state)
    ]
    r = risk(state)
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
    """Both scores at event time ``now_ms``; publishes and alerts as configured.

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
    if census is not None:  # networks many accounts use away from home: VPN exits, carrier NAT
        census.observe(state.account_id, state.household)
    sharing_x = household_features(
        state.household, now_ms, max_streams=state.max_streams, census=census
    )
    churn_p = 1.0 if churn_x.get("cancelled", 0.0) >= 1.0 else models.churn.predict_proba(churn_x)
    prior = sharing_evidence_score(sharing_x)
    learned = models.sharing.examples
    sharing_p = combine(
        prior, models.sharing.predict_proba(sharing_x) if learned else None, learned
    )
    r.scores, r.scored_ts = (churn_p, sharing_p), now_ms
    r.models = (models.churn.model_id, models.sharing.model_id)
    churn_open = r.open_alerts.get("churn")
    if churn_open is not None and now_ms - churn_open > cfg.state.horizon_ms:
        _close_alert(r, "churn", "wrong", out)

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
    both = {"churn": round(churn_p, 4), "sharing": round(sharing_p, 4)}
    for kind, p, alert_cfg in (
        ("churn", churn_p, cfg.churn_alert),
        ("sharing", sharing_p, cfg.sharing_alert),
    ):
        if kind == "churn" and models.churn.examples < cfg.min_churn_examples and p < 1.0:
            continue  # an untrained churn model raises no alerts (a cancelled account does)
        track = r.tracks[kind]
        if not update_track(track, p, alert_cfg):
            continue
        action = (
            churn_action(churn_x, cfg.churn_actions)
            if kind == "churn"
            else sharing_action(sharing_x, churn_p, cfg.sharing_policy)
        )
        alert = make_alert(
            kind=kind, account_id=state.account_id, episode=track.episode, ts_ms=state.max_ts,
            score=p, threshold=alert_cfg.threshold, reasons=why(kind), action=action,
            model=r.models[0] if kind == "churn" else r.models[1], scores=both,
        )  # fmt: skip
        out.alerts.append(alert)
        r.open_alerts[kind] = now_ms
        r.recent = (r.recent + [alert])[-cfg.recent_alerts :]
    return churn_p, sharing_p


def _marker(state: AccountState) -> Event:
    """Stands for "scoring this account" in ``Outputs.failed``."""
    return Event(f"score:{state.account_id}", "score", state.account_id, state.max_ts, {})


@dataclass
class Shard:
    """The accounts of one partition, with the partition's event-time clock."""

    accounts: dict[str, AccountState] = field(default_factory=dict)
    clock: int = 0  # highest event time seen in the partition
    next_sweep: int | None = None
    dirty: set[str] = field(default_factory=set)  # changed since the caller last persisted

    def get(self, account_id: str) -> AccountState:
        state = self.accounts.get(account_id)
        if state is None:
            state = self.accounts[account_id] = new_account(account_id)
        return state


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
    touched: dict[str, AccountState] = {}
    applied = duplicates = late = 0
    for event in events:
        shard.clock = max(shard.clock, event.ts)
        state = shard.get(event.account_id)
        if event.event_id in state.seen_ids:
            duplicates += 1
            continue
        try:
            ok = ingest(state, event, clock_ms=shard.clock, cfg=cfg, out=out, census=census)
        except Exception as exc:  # a bug must not stop the stream: report the event, go on
            out.failed.append((event, f"{type(exc).__name__}: {exc}"))
            continue
        if ok:
            state.events_applied += 1
            applied += 1
            touched[event.account_id] = state
        else:
            late += 1
    for state in touched.values():
        try:
            score(state, now_ms=state.max_ts, models=models, cfg=cfg, out=out, census=census)
        except Exception as exc:
            out.failed.append((_marker(state), f"{type(exc).__name__}: {exc}"))
    shard.dirty.update(touched)
    day_end = shard.clock - shard.clock % DAY_MS + DAY_MS
    if shard.next_sweep is None:
        shard.next_sweep = day_end
    elif shard.clock - cfg.state.lateness_ms >= shard.next_sweep:
        for account_id, state in shard.accounts.items():
            if account_id not in touched:
                n = len(out.examples) + len(out.scores) + len(out.alerts)
                scored = risk(state).scored_ts
                sweep(state, clock_ms=shard.clock, models=models, cfg=cfg, out=out, census=census)
                if n != len(out.examples) + len(out.scores) + len(out.alerts) or (
                    scored != risk(state).scored_ts
                ):
                    shard.dirty.add(account_id)
        shard.next_sweep = day_end
    return applied, duplicates, late
