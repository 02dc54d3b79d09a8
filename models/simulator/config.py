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
    # Behaviour ranges of the robustness matrix (benchmarks/bench_sharing_matrix.py). The
    # defaults are the historical behaviour: with them the output is byte-identical.
    profile_choices: tuple[int, ...] = _knob(
        (1, 2, 2, 3, 3, 4), "profiles of a plain household (drawn uniformly from the list)"
    )
    device_choices: tuple[int, ...] = _knob(
        (1, 1, 2), "personal devices per profile (drawn uniformly from the list)"
    )
    big_family_profiles: int = _knob(5, "profiles of a big family")
    big_family_tvs: int = _knob(2, "TVs of a big family")
    trip_gap_days: tuple[int, int] = _knob((10, 45), "days between a traveller's trips [lo, hi)")
    trip_days: tuple[int, int] = _knob((2, 11), "length of a trip in days [lo, hi)")
    trip_repeat_rate: float = _knob(
        0.0, "chance a trip goes back to the previous destination (a holiday home, a relative)"
    )
    ipv6_use_rate: float = _knob(0.5, "share of a dual-stack home's sessions over IPv6")
    home_lease_days: int = _knob(0, "days between a home's public IPv4 changes (0: static)")
    home_pool_16_rate: float = _knob(
        0.0, "share of homes whose ISP moves them to another /24 of its /16 at each lease"
    )
    home_cgnat_rate: float = _knob(
        0.0, "share of homes behind carrier NAT (a carrier pool address per session)"
    )
    geo_noise_km: float = _knob(0.0, "uniform noise (km) added to each event's geo")
    geo_coarse_rate: float = _knob(
        0.0, "share of devices whose geo is the city centre (IP geolocation), not the address"
    )
    geo_absent_rate: float = _knob(0.0, "share of usage events with an ip but no geo")
    vpn_exit_count: int = _knob(8, "VPN exits of the run, shared by every VPN user (<= 40)")
    vpn_share_range: tuple[float, float] = _knob(
        (0.2, 0.8), "share of a VPN user's sessions through the VPN [lo, hi]"
    )
    sharer_sessions: float = _knob(0.7, "sessions a day of each borrower viewer (sharer)")
    subtle_sessions: float = _knob(0.35, "sessions a day of the subtle sharer's borrower")
    subtle_days_per_week: int = _knob(
        7, "days a week the subtle sharer's borrower may watch (fixed weekdays)"
    )
    subtle_km: tuple[float, float] = _knob(
        (3.0, 25.0), "distance of the subtle sharer's borrower from home, km [lo, hi]"
    )

    # How households answer the alerts' actions (simulate --kafka reads risk-alerts;
    # models/simulator/reactions.py). Without alerts they change nothing.
    react_verified_rate: float = _knob(
        0.3, "a sharer asked to verify (household_verification alert): the borrower verifies"
    )
    react_extra_member_rate: float = _knob(
        0.2, "... the account pays for the borrower as an extra member"
    )
    react_failed_rate: float = _knob(0.15, "... the borrower fails the check and stops watching")
    react_backlash_rate: float = _knob(
        0.1, "a sharer asked to verify or offered an extra member cancels (backlash)"
    )
    react_offer_extra_member_rate: float = _knob(
        0.35, "a sharer offered an extra member (extra_member_offer alert) pays for one"
    )
    react_legit_verified_rate: float = _knob(
        0.85, "an account with no borrower watching, asked to verify, verifies its own device"
    )
    react_legit_backlash_rate: float = _knob(
        0.02, "an account with no borrower watching, asked to verify or offered a member, cancels"
    )
    react_offer_taken_rate: float = _knob(
        0.4, "an account sent a retention_offer takes it (its cancel hazard drops for a while)"
    )
    react_offer_hazard_mult: float = _knob(
        0.3, "multiplier on the cancel hazard of an account that took a retention offer"
    )
    react_offer_days: int = _knob(60, "days a taken retention offer lowers the cancel hazard")
    react_payment_fixed_rate: float = _knob(
        0.5, "an account sent a payment_reminder fixes its card (the payment is retried at once)"
    )
    react_win_back_rate: float = _knob(0.2, "a cancelled account sent a win_back offer comes back")

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
        if not 1 <= self.subtle_days_per_week <= 7 or self.vpn_exit_count < 2:
            raise ValueError("subtle_days_per_week must be in 1..7 and vpn_exit_count >= 2")
        if self.home_lease_days < 0 or self.geo_noise_km < 0 or self.big_family_tvs < 1:
            raise ValueError("home_lease_days, geo_noise_km >= 0 and big_family_tvs >= 1")
        lo_hi = (self.trip_gap_days, self.trip_days)
        if any(not 1 <= lo < hi for lo, hi in lo_hi) or not self.profile_choices:
            raise ValueError("trip ranges must be 1 <= lo < hi; profile_choices non-empty")
        if self.action_vocab < 0 or self.daily_activity < 0:
            raise ValueError("action_vocab and daily_activity must be >= 0")
        if self.daily_activity and not self.action_vocab:
            raise ValueError("daily_activity needs an action_vocab")
        sums = {
            "react_verified/extra_member/failed/backlash_rate": self.react_verified_rate
            + self.react_extra_member_rate
            + self.react_failed_rate
            + self.react_backlash_rate,
            "react_offer_extra_member/backlash_rate": self.react_offer_extra_member_rate
            + self.react_backlash_rate,
            "react_legit_verified/backlash_rate": self.react_legit_verified_rate
            + self.react_legit_backlash_rate,
        }
        for name, total in sums.items():
            if total > 1.0 + 1e-9:
                raise ValueError(f"{name} must add up to at most 1, got {total:g}")
        if self.react_offer_hazard_mult < 0 or self.react_offer_days < 0:
            raise ValueError("react_offer_hazard_mult and react_offer_days must be >= 0")
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
