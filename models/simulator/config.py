"""The simulator's knobs, one frozen dataclass; ``metadata["help"]`` feeds the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

ARCHETYPES = (
    "household",
    "big_family",
    "traveller",
    "commuter",
    "vpn_user",
    "sharer",
    "subtle_sharer",
)
DEFAULT_MIX: tuple[tuple[str, float], ...] = (
    ("household", 0.50),
    ("big_family", 0.08),
    ("traveller", 0.08),
    ("commuter", 0.08),
    ("vpn_user", 0.06),
    ("sharer", 0.12),
    ("subtle_sharer", 0.08),
)
START_2026 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def _knob(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True, slots=True)
class SimConfig:
    """All knobs of one simulation run. Rates are probabilities unless noted.

    >>> SimConfig(accounts=10, days=5).crackdown_start_day
    2
    >>> SimConfig(late_rate=2.0)
    Traceback (most recent call last):
    ...
    ValueError: late_rate must be within [0, 1], got 2.0
    """

    accounts: int = _knob(1000, "number of accounts (households that subscribe)")
    days: int = _knob(90, "days of event time to live through")
    seed: int = _knob(0, "random seed; the same seed gives the same bytes")
    start_ms: int = _knob(START_2026, "event-time start, epoch ms")
    id_prefix: str = _knob("a", "prefix of account ids (a0000042)")
    mix: tuple[tuple[str, float], ...] = _knob(DEFAULT_MIX, "archetype weights")
    new_signup_share: float = _knob(
        0.3, "share of accounts that sign up during the run (the rest on day 0)"
    )
    session_rate: float = _knob(1.0, "multiplier on viewing sessions per viewer and day")
    activity_rate: float = _knob(0.8, "mean activity events per viewing session")
    churn_scale: float = _knob(1.0, "multiplier on every voluntary churn hazard")
    decline_rate: float = _knob(
        1 / 180, "chance a satisfaction decline episode starts on a day (they precede churn)"
    )
    # An activity-led product: its own action names, some of which follow satisfaction.
    action_vocab: int = _knob(
        0, "number of product-specific action names (0: the built-in likes, ratings, ...)"
    )
    signal_action_share: float = _knob(
        0.3, "with --action-vocab: share of the actions whose rate follows satisfaction"
    )
    daily_activity: float = _knob(
        0.0, "activity events per viewer and day outside viewing (with --action-vocab)"
    )
    reactivation_rate: float = _knob(0.25, "share of cancelled accounts that come back")
    payment_failure_rate: float = _knob(0.03, "chance a renewal payment fails (good cards)")
    bad_card_share: float = _knob(0.08, "share of accounts whose payments fail often")
    price_increase_day: int | None = _knob(
        None, "day of the price increase notices (default: 35%% of --days)"
    )
    price_increase_share: float = _knob(0.5, "share of countries that get the price increase")
    crackdown_day: int | None = _knob(
        None, "day household verification starts (default: half of --days)"
    )
    verification_rate: float = _knob(
        0.3, "chance a session on an unverified device outside the home network is challenged"
    )
    extra_member_rate: float = _knob(
        0.35, "chance an account pays for an extra member when a borrower is blocked"
    )
    duplicate_rate: float = _knob(0.002, "share of events delivered twice")
    late_rate: float = _knob(0.005, "share of events delivered late")
    max_late_s: int = _knob(3600, "maximum delay of a late event, seconds of event time")
    lost_stop_rate: float = _knob(0.02, "share of playback_stopped events lost")
    rfc3339_rate: float = _knob(0.1, "share of events whose ts is an RFC 3339 string")
    ipv6_rate: float = _knob(0.25, "share of home networks with IPv6")
    missing_geo_rate: float = _knob(0.03, "share of usage events without ip and geo")

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith(("_rate", "_share")) and not 0.0 <= value <= 1.0:
                raise ValueError(f"{f.name} must be within [0, 1], got {value}")
        if self.accounts < 1 or self.days < 1:
            raise ValueError("accounts and days must be >= 1")
        if not 0 <= self.max_late_s < 86_400:
            raise ValueError("max_late_s must be within [0, 86400)")
        if self.churn_scale < 0 or self.session_rate <= 0 or self.activity_rate < 0:
            raise ValueError("churn_scale, session_rate and activity_rate must be positive")
        if self.action_vocab < 0 or self.daily_activity < 0:
            raise ValueError("action_vocab and daily_activity must be >= 0")
        if self.daily_activity and not self.action_vocab:
            raise ValueError("daily_activity needs an action_vocab")
        unknown = {name for name, _ in self.mix} - set(ARCHETYPES)
        if unknown or sum(w for _, w in self.mix) <= 0 or any(w < 0 for _, w in self.mix):
            raise ValueError(f"bad archetype mix {self.mix!r} (known: {', '.join(ARCHETYPES)})")

    @property
    def crackdown_start_day(self) -> int:
        return self.days // 2 if self.crackdown_day is None else self.crackdown_day

    @property
    def price_increase_start_day(self) -> int:
        return int(self.days * 0.35) if self.price_increase_day is None else self.price_increase_day


def parse_mix(text: str) -> tuple[tuple[str, float], ...]:
    """Archetype weights from ``name=weight,...``; unnamed archetypes keep their default.

    >>> dict(parse_mix("sharer=0.3,vpn_user=0"))["sharer"]
    0.3
    >>> parse_mix("alien=1")
    Traceback (most recent call last):
    ...
    ValueError: unknown archetype 'alien' (known: household, big_family, traveller, commuter, vpn_user, sharer, subtle_sharer)
    """  # noqa: E501
    mix = dict(DEFAULT_MIX)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition("=")
        if name not in mix:
            raise ValueError(f"unknown archetype {name!r} (known: {', '.join(ARCHETYPES)})")
        mix[name] = float(weight)
    return tuple(mix.items())
