"""One account's life, lived one day of event time at a time.

An :class:`Account` owns its random generator (derived from seed and index),
its household, its latent satisfaction and its subscription. ``day(d, out)``
appends ``(emission_key, event_dict)`` pairs for day ``d`` to ``out``; the
engine merges all accounts by emission key. See docs/simulator.md for the
behaviour model.
"""

from __future__ import annotations

import functools
import math
import random
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from itertools import accumulate
from typing import Any

from models.contract import parse_ts
from models.simulator import reactions
from models.simulator.config import SimConfig
from models.simulator.world import (
    BROWSE_ACTIONS,
    CHANNEL_CUM,
    CHANNELS,
    CITIES,
    CITY_CUM,
    CURRENCIES,
    DAY_MS,
    ENGAGED_ACTIONS,
    HOUR_MS,
    OTHER_ACTIONS,
    PERSONAL_DEVICES,
    PLANS,
    RHYTHM_NAMES,
    RHYTHMS,
    Place,
    World,
    km_between,
    make_place,
    offset_km,
    pick_cum,
    poisson,
)

Out = list[tuple[int, dict[str, Any]]]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

H_SUDDEN = 0.0003  # per-day hazard of churning with no warning at all
# Plan weights (basic, standard, premium) per archetype.
PLAN_CUM = {
    "big_family": list(accumulate((1, 3, 6))),
    "sharer": list(accumulate((1, 3, 6))),
    "subtle_sharer": list(accumulate((2, 5, 3))),
}
DEFAULT_PLAN_CUM = list(accumulate((3, 5, 2)))
CANCEL_REASONS = {
    "sudden": ("moving", "financial", "switching_service", "other"),
    "disengaged": ("not_using", "content", "not_using", "other"),
    "price": ("too_expensive", "too_expensive", "financial"),
    "support": ("service_issue", "technical_problems", "other"),
    "downgrade": ("too_expensive", "not_using"),
    "crackdown": ("sharing_restrictions", "too_expensive", "other"),
    "payment": ("payment_failed",),
    "backlash": ("sharing_restrictions", "sharing_restrictions", "other"),
}
FAIL_REASONS = ("insufficient_funds", "card_expired", "do_not_honor", "processing_error")
SUPPORT_TOPICS = ("billing", "playback_issue", "account", "cancel_inquiry", "content_request")
NEGATIVE_TOPICS = frozenset({"billing", "playback_issue", "cancel_inquiry"})
VERIFY_FACTOR = {"borrower": 1.0, "hotel": 0.6, "vpn": 0.5, "carrier": 0.15}


_SYLLABLES = ("ka", "lo", "mi", "re", "tu", "sa", "ve", "no", "bi", "zo", "pa", "fe")
_VERBS = ("add", "open", "tap", "send", "save", "view", "edit", "share", "sync", "pin")


@functools.lru_cache(maxsize=16)
def action_vocabulary(seed: int, n: int, signal_share: float) -> tuple[Vocabulary, Vocabulary]:
    """A product's own action names (signal, noise), each with cumulative popularity.

    The names, their popularity (Zipf-like) and which ones follow satisfaction
    are drawn from ``seed``: every run has another product.

    >>> signal, noise = action_vocabulary(3, 5, 0.4)
    >>> len(signal[0]) + len(noise[0]), len(signal[0])
    (5, 2)
    """
    rng = random.Random(f"vocab:{seed}")
    names: list[str] = []
    while len(names) < n:
        word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randrange(1, 4)))
        name = f"{rng.choice(_VERBS)}_{word}" if rng.random() < 0.6 else word
        if name not in names:
            names.append(name)
    weights = [1.0 / (i + 1) ** rng.uniform(0.5, 1.2) for i in range(n)]
    order = list(range(n))
    rng.shuffle(order)
    k = max(1, round(signal_share * n)) if n > 1 else n
    parts = (order[:k], order[k:])
    return tuple(  # type: ignore[return-value]
        ([names[i] for i in part], list(accumulate(weights[i] for i in part))) for part in parts
    )


Vocabulary = tuple[list[str], list[float]]  # names, cumulative weights


def sig(x: float) -> float:
    """Logistic function.

    >>> sig(0.0)
    0.5
    """
    return 1.0 / (1.0 + math.exp(-x))


def rfc3339(ms: int, tz_hours: float) -> str:
    """Epoch ms as RFC 3339 with millisecond precision, in the given offset.

    >>> rfc3339(1767225600000, 0)
    '2026-01-01T00:00:00.000Z'
    >>> rfc3339(1767225600123, 5.5)
    '2026-01-01T05:30:00.123+05:30'
    """
    tz = timezone(timedelta(hours=tz_hours))
    text = (EPOCH + timedelta(milliseconds=ms)).astimezone(tz).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


@dataclass(slots=True)
class Viewer:
    """A profile watching from one place on its own devices and rhythm."""

    profile_id: str
    devices: list[tuple[str, str]]  # (device_id, device_type)
    rhythm: list[float]
    rate: float  # sessions per day at full engagement
    dur_mean_s: float
    place: Place
    borrower: Borrower | None = None
    last_content: int = 0
    recent: list[int] = field(default_factory=list)


@dataclass(slots=True)
class Borrower:
    """Another household using the account from ``start_day`` on."""

    member_id: str
    start_day: int
    viewers: list[Viewer] = field(default_factory=list)
    status: str = "active"  # active | blocked | extra (paid extra member)
    first_ts: int | None = None
    weekdays: frozenset[int] | None = None  # the days of the week it may watch (None: all)


@dataclass(slots=True)
class Trip:
    dest: Place
    depart: int
    arrive: int
    back_depart: int
    back_arrive: int


class Account:
    """A subscriber household and everything that happens to it."""

    def __init__(self, cfg: SimConfig, world: World, idx: int) -> None:
        self.cfg, self.world = cfg, world
        self.rng = rng = random.Random(f"{cfg.seed}:{idx}")
        self.archetype = archetype = cfg.mix[
            pick_cum(rng, list(accumulate(w for _, w in cfg.mix)))
        ][0]
        self.id = f"{cfg.id_prefix}{idx:07d}"
        self.seq = self.sessions = self.n_devices = self.lo = 0
        self.city_idx = city = pick_cum(rng, CITY_CUM)
        self.home = make_place(rng, city, 0.5, 12, cfg.ipv6_rate)
        name, country, lat, lon, _, _ = CITIES[city]
        self.city_geo = {"lat": lat, "lon": lon, "country": country, "city": name}
        self.currency, fx, self.decimals = CURRENCIES[country]
        self.fx = fx
        self.signup_day = rng.randrange(cfg.days) if rng.random() < cfg.new_signup_share else 0
        self.plan = pick_cum(rng, PLAN_CUM.get(archetype, DEFAULT_PLAN_CUM))
        self.price_mult = 1.0
        self.yearly = rng.random() < 0.1
        self.carrier = rng.randrange(2)
        # Latent satisfaction: drives engagement, support contacts, downgrades and churn.
        self.mu = rng.gauss(0.3, 0.45)
        self.s = self.s_slow = self.mu
        self.decline_left, self.drift, self.fatigue = 0, 0.0, False
        self.price_sensitivity = rng.random() ** 2
        self.bad_card = rng.random() < cfg.bad_card_share
        self.until: dict[str, int] = {}  # hazard bumps: name -> last day in force
        self.active, self.reactivate_day = False, -1
        self.bill_due = self.next_bill = self.fails = 0
        self.price_notice_day = -1
        if country in world.price_countries:
            self.price_notice_day = cfg.price_increase_start_day + rng.randrange(14)
        self.trust: dict[str, int] = {}  # device_id -> last day it counts as verified
        self.last_place: dict[str, str] = {}  # device_id -> where it was last used
        self.viewers = self._household()
        self.borrowers = self._borrowers()
        self.trip: Trip | None = None
        self.last_dest: Place | None = None
        self.next_trip_day = self.signup_day + rng.randrange(3, 30)
        self.vpn_share = rng.uniform(*cfg.vpn_share_range) if archetype == "vpn_user" else 0.0
        # knobs of the robustness matrix: no random draw at their defaults (same bytes)
        self.pool16 = cfg.home_pool_16_rate > 0 and rng.random() < cfg.home_pool_16_rate
        self.cgnat = cfg.home_cgnat_rate > 0 and rng.random() < cfg.home_cgnat_rate
        self.vpn_exits = rng.sample(world.vpn_exits, 2)
        self.work = make_place(rng, city, 8, 40, 0.0) if archetype == "commuter" else None
        self.inbox: list[dict[str, Any]] = []  # alerts read, answered on the next day lived
        self.answered: list[dict[str, Any]] = []  # what they were answered with
        self.settled_ts: int | None = None  # the latest borrower blocked or paid for
        self.borrowed_days: set[int] = set()  # (truth) days a borrower not paid for watched
        self.truth: dict[str, Any] = {
            "account_id": self.id,
            "archetype": archetype,
            "country": country,
            "city": name,
            "plan": PLANS[self.plan][0],
            "signup_ts": None,
            "churned": False,
            "churn_ts": None,
            "churn_driver": None,
            "cancels": [],
            "reactivated": False,
            "reactivate_ts": [],
            "shared": False,
            "share_start_ts": None,
            "share_households": 0,
            "borrowers_blocked": 0,
            "extra_member_added": False,
            "extra_member_ts": None,
            "sharing_at_end": False,  # set by ``finish``: a borrower still unpaid, unblocked
            "share_end_ts": None,  # ... else when the last one was blocked or paid for
            "borrowed_days": 0,  # days on which a borrower not paid for started a playback
            "decline_start_ts": [],
            "price_changed_ts": None,
            "payment_failures": 0,
        }

    # ---------------------------------------------------------------- household

    def _device(self, kind: str) -> tuple[str, str]:
        self.n_devices += 1
        return (f"{self.id}-d{self.n_devices}", kind)

    def _viewer(
        self, pid: str, place: Place, devices: list[tuple[str, str]], rate: float
    ) -> Viewer:
        rng = self.rng
        rhythm = RHYTHMS[RHYTHM_NAMES[pick_cum(rng, [6.0, 8.0, 9.0])]]
        dur = rng.choice((1500.0, 2700.0, 3300.0, 5400.0))
        return Viewer(pid, devices, rhythm, rate * rng.lognormvariate(0, 0.4), dur, place)

    def _household(self) -> list[Viewer]:
        rng, arch = self.rng, self.archetype
        cfg = self.cfg
        if arch == "big_family":
            n = cfg.big_family_profiles
            tvs = [self._device("tv") for _ in range(cfg.big_family_tvs)]
        elif arch == "traveller":
            n, tvs = rng.choice((1, 1, 2)), [self._device("tv")]
        else:
            n, tvs = rng.choice(cfg.profile_choices), [self._device("tv")]
        viewers = []
        for p in range(n):
            k = rng.choice(cfg.device_choices)
            own = [self._device(rng.choice(PERSONAL_DEVICES)) for _ in range(k)]
            if arch == "traveller":
                own.append(self._device("mobile"))
            rate = 1.1 if arch == "big_family" else 0.8
            viewers.append(self._viewer(f"p{p + 1}", self.home, own + tvs, rate))
        return viewers

    def _borrowers(self) -> list[Borrower]:
        rng, cfg, arch = self.rng, self.cfg, self.archetype
        if arch not in ("sharer", "subtle_sharer"):
            return []
        first = self.signup_day if rng.random() < 0.3 else rng.randrange(self.signup_day, cfg.days)
        count = 1 if arch == "subtle_sharer" else rng.choice((1, 1, 1, 2, 2, 3))
        out = []
        for b in range(count):
            if arch == "subtle_sharer":
                lo_km, hi_km = cfg.subtle_km
                place = make_place(rng, self.city_idx, lo_km, hi_km, cfg.ipv6_rate)
                rate = cfg.subtle_sessions
            else:
                place = make_place(rng, self._other_city(), 0.5, 12, cfg.ipv6_rate)
                rate = cfg.sharer_sessions
            start = first if b == 0 else rng.randrange(first, cfg.days)
            borrower = Borrower(f"{self.id}-m{b + 1}", start)
            if arch == "subtle_sharer" and cfg.subtle_days_per_week < 7:
                borrower.weekdays = frozenset(rng.sample(range(7), cfg.subtle_days_per_week))
                rate *= 7 / cfg.subtle_days_per_week  # the same viewing, on fewer days
            for k in range(1 if arch == "subtle_sharer" else rng.choice((1, 2))):
                devices = [self._device(rng.choice(("tv", "mobile", "web", "tablet")))]
                reuse = rng.random() < (0.7 if arch == "subtle_sharer" else 0.4)
                pid = rng.choice(self.viewers).profile_id if reuse else f"p{6 + 3 * b + k}"
                viewer = self._viewer(pid, place, devices, rate)
                viewer.borrower = borrower
                borrower.viewers.append(viewer)
            out.append(borrower)
        return out

    def _other_city(self) -> int:
        rng = self.rng
        same = [
            i for i, c in enumerate(CITIES) if c[1] == self.home.country and c[0] != self.home.city
        ]
        if same and rng.random() < 0.5:
            return rng.choice(same)
        while True:
            i = pick_cum(rng, CITY_CUM)
            if CITIES[i][0] != self.home.city:
                return i

    # ------------------------------------------------------------------ emitting

    def _emit(self, out: Out, ts: int, type_: str, fields: dict[str, Any]) -> None:
        rng, cfg = self.rng, self.cfg
        self.seq += 1
        ev = {"event_id": f"{self.id}-{self.seq}", "type": type_, "account_id": self.id, "ts": ts}
        ev.update(fields)
        if rng.random() < cfg.rfc3339_rate:
            ev["ts"] = rfc3339(ts, 0 if rng.random() < 0.5 else self.home.tz_hours)
        key = ts
        if rng.random() < cfg.late_rate:
            key += rng.randrange(cfg.max_late_s * 1000 + 1)
        out.append((key, ev))
        if rng.random() < cfg.duplicate_rate:
            out.append((key + rng.randrange(300_000), dict(ev)))

    def _between(self, lo: int, hi: int) -> int:
        return lo + self.rng.randrange(hi - lo) if hi > lo else lo

    def _price(self) -> float:
        """Price per billing period (a year costs ten months)."""
        months = 10 if self.yearly else 1
        return round(PLANS[self.plan][1] * months * self.fx * self.price_mult, self.decimals)

    def _plan_fields(self) -> dict[str, Any]:
        name, _, streams = PLANS[self.plan]
        return {"plan": name, "price": self._price(), "max_streams": streams}

    # ---------------------------------------------------------------------- life

    def day(self, d: int, out: Out) -> None:
        """Append day ``d``'s events of this account to ``out``."""
        if d < self.signup_day:
            return
        rng = self.rng
        day_start = self.cfg.start_ms + d * DAY_MS
        lo = day_start
        if self.inbox:  # the alerts' actions come first: the day goes on after them
            lo = self._answer(out, d, day_start)
        if d == self.signup_day and not self.truth["signup_ts"]:
            lo = day_start + rng.randrange(DAY_MS)
            self._signup(out, lo)
        elif not self.active:
            if d != self.reactivate_day:
                return
            lo = day_start + rng.randrange(DAY_MS)
            self._reactivate(out, lo)
        self.lo = lo  # nothing of today may be earlier (sign-up, reactivation)
        hi = self._life(out, d, lo, day_start + DAY_MS)
        self._usage(out, d, day_start, lo, hi)

    def _start_billing(self, out: Out, ts: int) -> None:
        self.active, self.fails = True, 0
        self.bill_due = ts + (365 if self.yearly else 30) * DAY_MS
        self.next_bill = self.bill_due
        self._emit(out, ts + 1000, "payment_succeeded", {"amount": self._price()})

    def _signup(self, out: Out, ts: int) -> None:
        rng = self.rng
        fields: dict[str, Any] = {
            "plan": PLANS[self.plan][0],
            "price": self._price(),
            "currency": self.currency,
            "billing_period": "year" if self.yearly else "month",
            "max_streams": PLANS[self.plan][2],
            "country": self.home.country,
            "channel": CHANNELS[pick_cum(rng, CHANNEL_CUM)],
        }
        self.truth["signup_ts"] = ts
        self._emit(out, ts, "subscription_started", fields)
        self._start_billing(out, ts)

    def _reactivate(self, out: Out, ts: int) -> None:
        rng = self.rng
        self.s = self.s_slow = self.mu = rng.gauss(0.3, 0.4)
        self.decline_left, self.fatigue, self.until = 0, False, {}
        self.truth["reactivated"] = True
        self.truth["reactivate_ts"].append(ts)
        self._emit(out, ts, "subscription_reactivated", self._plan_fields())
        self._start_billing(out, ts)

    def _life(self, out: Out, d: int, lo: int, day_end: int) -> int:
        """Latent state, subscription events and churn of day ``d``; returns the usage end."""
        rng, cfg = self.rng, self.cfg
        if self.decline_left == 0 and rng.random() < cfg.decline_rate:
            self.decline_left = rng.randrange(15, 50)
            self.drift, self.fatigue = -rng.uniform(0.03, 0.08), rng.random() < 0.4
            self.truth["decline_start_ts"].append(lo)
        drift = 0.0
        if self.decline_left:
            self.decline_left -= 1
            drift = self.drift
        self.s += 0.01 * (self.mu - self.s) + drift + rng.gauss(0, 0.05)
        s = self.s
        self.s_slow += (s - self.s_slow) / 21  # people decide on the last weeks, not today
        bumps = {
            "sudden": H_SUDDEN,
            "disengaged": 0.05 * sig(-6 * (self.s_slow + 1.0)),
            "price": 0.008 * self.price_sensitivity if self.until.get("price", -1) >= d else 0,
            "support": 0.004 if self.until.get("support", -1) >= d else 0,
            "downgrade": 0.003 if self.until.get("downgrade", -1) >= d else 0,
            "crackdown": 0.004 if self.until.get("crackdown", -1) >= d else 0,
        }
        hazard = cfg.churn_scale * sum(bumps.values())
        if self.until.get("offer", -1) >= d:  # a retention offer taken (reactions.py)
            hazard *= cfg.react_offer_hazard_mult
        hi = day_end
        driver = None
        if rng.random() < hazard:
            hi = lo + rng.randrange(day_end - lo)
            driver = list(bumps)[pick_cum(rng, list(accumulate(bumps.values())))]
        if d == self.price_notice_day and self.truth["price_changed_ts"] is None:
            ts = self._between(lo, hi)
            self.price_mult = round(rng.uniform(1.08, 1.2), 2)
            self.truth["price_changed_ts"] = ts
            self.until["price"] = d + 30
            self._emit(out, ts, "price_changed", {"price": self._price()})
        if rng.random() < 0.002 + 0.03 * sig(-3 * (s + 0.7)):
            topic = rng.choice(SUPPORT_TOPICS)
            if topic in NEGATIVE_TOPICS and s < 0:
                self.until["support"] = d + 21
            fields = {"topic": topic} if rng.random() < 0.9 else {}
            self._emit(out, self._between(lo, hi), "support_contacted", fields)
        if self.plan > 0 and rng.random() < 0.0003 + 0.006 * sig(-3 * (s + 0.6)):
            self.plan -= 1
            self.until["downgrade"] = d + 60
            self._emit(out, self._between(lo, hi), "plan_changed", self._plan_fields())
        elif self.plan < len(PLANS) - 1 and s > 0.3 and rng.random() < 0.0006:
            self.plan += 1
            self._emit(out, self._between(lo, hi), "plan_changed", self._plan_fields())
        while self.next_bill < hi:
            ts = self.next_bill
            if not self._bill(out, ts):
                self._cancel(out, d, ts, "payment")
                return ts
        if driver is not None:
            self._cancel(out, d, hi, driver)
        return hi

    def _bill(self, out: Out, ts: int) -> bool:
        """One payment attempt at ``ts``; False when the account lapses."""
        rng = self.rng
        p_fail = 0.35 if self.bad_card else self.cfg.payment_failure_rate
        if self.fails:
            p_fail = 0.5
        amount = self._price()
        if rng.random() >= p_fail:
            self._emit(out, ts, "payment_succeeded", {"amount": amount})
            self.fails = 0
            self.bill_due += (365 if self.yearly else 30) * DAY_MS
            self.next_bill = self.bill_due
            return True
        self.fails += 1
        self.truth["payment_failures"] += 1
        self._emit(
            out, ts, "payment_failed", {"amount": amount, "reason": rng.choice(FAIL_REASONS)}
        )
        if self.fails >= 4:
            return False
        if rng.random() < 0.3:
            self._emit(out, ts + rng.randrange(DAY_MS), "support_contacted", {"topic": "billing"})
        self.next_bill = ts + 3 * DAY_MS
        return True

    def _cancel(self, out: Out, d: int, ts: int, driver: str) -> None:
        rng = self.rng
        reason = rng.choice(CANCEL_REASONS[driver])
        fields = {"reason": reason} if driver == "payment" or rng.random() < 0.75 else {}
        self._emit(out, ts, "subscription_cancelled", fields)
        self.active = False
        t = self.truth
        if not t["churned"]:
            t["churned"], t["churn_ts"], t["churn_driver"] = True, ts, driver
        t["cancels"].append({"ts": ts, "driver": driver, "reason": reason})
        if rng.random() < self.cfg.reactivation_rate:
            self.reactivate_day = d + rng.randrange(7, 61)

    # ----------------------------------------------------------------- reactions

    def _answer(self, out: Out, d: int, day_start: int) -> int:
        """Answer the alerts read since the last day lived (models/simulator/reactions.py),
        each early in day ``d`` and after its alert; returns the time the day goes on from."""
        lo = day_start
        for alert in self.inbox:
            at = max(lo, day_start + self.rng.randrange(60_000, 3_600_000),
                     parse_ts(alert["ts"]) + 1000)  # fmt: skip
            borrower = self._watching_borrower(d)
            reaction = reactions.choose(
                self.cfg, alert, active=self.active, sharing=borrower is not None
            )
            self._react(out, d, at, reaction, borrower)
            self.answered.append(
                {"alert_id": alert["alert_id"], "account_id": self.id, "kind": alert["kind"],
                 "action": alert["action"], "alert_ts": parse_ts(alert["ts"]), "day": d,
                 "ts": at, "reaction": reaction}
            )  # fmt: skip
            if reaction not in (reactions.IGNORED, reactions.UNANSWERED):
                lo = at
        self.inbox.clear()
        return lo

    def _watching_borrower(self, d: int) -> Borrower | None:
        """A borrower who watches on this account now and does not pay (sharing)."""
        return next((b for b in self.borrowers if b.status == "active" and d >= b.start_day),
                    None)  # fmt: skip

    def _react(self, out: Out, d: int, at: int, reaction: str, b: Borrower | None) -> None:
        if reaction in (reactions.VERIFIED, reactions.FAILED):
            viewers = b.viewers if b is not None else self.viewers
            devices = [device_id for v in viewers for device_id, _ in v.devices]
            device_id = devices[0] if b is not None else self.rng.choice(devices)
            outcome = "verified" if reaction == reactions.VERIFIED else "failed"
            self._emit(out, at, "household_verification",
                       {"device_id": device_id, "outcome": outcome})  # fmt: skip
            if reaction == reactions.VERIFIED:
                for device in devices if b is not None else [device_id]:
                    self.trust[device] = max(self.trust.get(device, -1), d + 30)
            elif b is not None:
                self._block(b, d, at)
        elif reaction == reactions.EXTRA_MEMBER and b is not None:
            self._extra_member(out, b, at)
        elif reaction == reactions.CANCELLED:
            self._cancel(out, d, at, "backlash")
        elif reaction == reactions.OFFER_TAKEN:
            self.until["offer"] = d + self.cfg.react_offer_days
        elif reaction == reactions.PAYMENT_FIXED:
            self.bad_card = False
            if self.fails:  # retried now, on the fixed card
                self.fails, self.next_bill = 0, at
        elif reaction == reactions.REACTIVATED:
            self.reactivate_day = -1
            self._reactivate(out, at)

    # --------------------------------------------------------------------- usage

    def _usage(self, out: Out, d: int, day_start: int, lo: int, hi: int) -> None:
        rng, cfg = self.rng, self.cfg
        if rng.random() < 1 / 150:  # a new phone or TV now and then
            viewer = rng.choice(self.viewers)
            viewer.devices.insert(0, self._device(rng.choice(PERSONAL_DEVICES)))
        if cfg.home_lease_days and rng.random() < 1 / cfg.home_lease_days:
            self._new_lease()
        if self.archetype == "traveller":
            self._plan_trip(d, day_start)
        eng = min(2.0, math.exp(1.5 * (self.s - 0.3)))
        local_day = (day_start + int(self.home.tz_hours * HOUR_MS)) // DAY_MS
        weekend = (local_day + 3) % 7 >= 5
        mult = eng * cfg.session_rate * (1.3 if weekend else 1.0)
        for v in self.viewers:
            for _ in range(poisson(rng, v.rate * mult)):
                start = self._start(v, day_start)
                if lo <= start < hi:
                    self._home_session(out, d, v, start, eng)
        if self.work is not None and not weekend:
            self._commute(out, d, day_start, lo, hi, eng)
        for b in self.borrowers:
            if d < b.start_day or b.status == "blocked":
                continue
            if b.weekdays is not None and local_day % 7 not in b.weekdays:
                continue
            for v in b.viewers:
                for _ in range(poisson(rng, v.rate * cfg.session_rate)):
                    start = self._start(v, day_start)
                    if lo <= start < hi:
                        if b.status == "active":
                            self.borrowed_days.add(d)
                        self._session(out, d, v, start, eng, "borrower", v.place, None)
        if cfg.daily_activity:
            self._daily_activity(out, lo, hi, eng)
        for _ in range(poisson(rng, 0.1 + 0.6 * self.fatigue)):  # browsing, no playback
            v, ts = rng.choice(self.viewers), self._between(lo, hi)
            if self.trip is None or not self.trip.depart <= ts < self.trip.back_arrive:
                ip, geo = self._network("home", self.home)
                action = self._browse_action()
                device = rng.choice(v.devices)
                self._activity(out, ts, v, device, ip, self._geo(geo, device[0]), action)

    def _daily_activity(self, out: Out, lo: int, hi: int, eng: float) -> None:
        """An activity-led product: each viewer's actions outside viewing; the signal
        actions follow satisfaction (and content fatigue), the others do not."""
        rng, cfg = self.rng, self.cfg
        (signal, signal_cum), (noise, noise_cum) = self._vocabulary
        follow = min(1.5, eng) * (0.4 if self.fatigue else 1.0)
        for v in self.viewers:
            scale = cfg.daily_activity * v.rate / 0.8
            for names, cum, mult in ((signal, signal_cum, follow), (noise, noise_cum, 1.0)):
                if not names:
                    continue
                share = cfg.signal_action_share if names is signal else 1 - cfg.signal_action_share
                for _ in range(poisson(rng, scale * share * mult)):
                    ts = self._between(lo, hi)
                    if self.trip is not None and self.trip.depart <= ts < self.trip.back_arrive:
                        continue
                    action = names[pick_cum(rng, cum)]
                    ip, geo = self._network("home", self.home)
                    device = rng.choice(v.devices)
                    self._activity(out, ts, v, device, ip, self._geo(geo, device[0]), action)

    def _browse_action(self) -> str:
        if not self.cfg.action_vocab:
            return self.rng.choice(BROWSE_ACTIONS)
        (signal, signal_cum), (noise, noise_cum) = self._vocabulary
        names, cum = (noise, noise_cum) if noise else (signal, signal_cum)
        return names[pick_cum(self.rng, cum)]

    @functools.cached_property
    def _vocabulary(self) -> tuple[Vocabulary, Vocabulary]:
        cfg = self.cfg
        return action_vocabulary(cfg.seed, cfg.action_vocab, cfg.signal_action_share)

    def _start(self, v: Viewer, day_start: int) -> int:
        hour = (pick_cum(self.rng, v.rhythm) - v.place.tz_hours) % 24
        return day_start + int((hour + self.rng.random()) * HOUR_MS)

    def _plan_trip(self, d: int, day_start: int) -> None:
        rng = self.rng
        if self.trip is not None and self.trip.back_arrive < day_start:
            self.trip = None
            self.next_trip_day = d + rng.randrange(*self.cfg.trip_gap_days)
        if self.trip is None and d >= self.next_trip_day:
            again = self.cfg.trip_repeat_rate > 0 and rng.random() < self.cfg.trip_repeat_rate
            if again and self.last_dest is not None:
                dest = self.last_dest
            else:
                dest = make_place(rng, self._other_city(), 0, 8, 0.0)
            self.last_dest = dest
            travel = int((km_between(self.home.lat, self.home.lon, dest.lat, dest.lon) / 800 + 2)
                         * HOUR_MS)  # fmt: skip
            depart = day_start + int(rng.uniform(6, 16) * HOUR_MS)
            back = depart + rng.randrange(*self.cfg.trip_days) * DAY_MS
            self.trip = Trip(dest, depart, depart + travel, back, back + travel)

    def _home_session(self, out: Out, d: int, v: Viewer, start: int, eng: float) -> None:
        rng, trip = self.rng, self.trip
        dur_s = self._duration(v, eng)
        end = start + dur_s * 1000
        if trip is not None and end > trip.depart and start < trip.back_arrive:
            if start >= trip.arrive and end <= trip.back_depart:
                portable = [dv for dv in v.devices if dv[1] != "tv"]
                self._session(out, d, v, start, eng, "hotel", trip.dest, rng.choice(portable))
            return  # in transit, or across a departure: no viewing
        if self.vpn_share and rng.random() < self.vpn_share:
            place = rng.choice(self.vpn_exits)
            self._session(out, d, v, start, eng, "vpn", place, None, dur_s)
        elif rng.random() < 0.03:  # on mobile data, anywhere in town
            device = next((dv for dv in v.devices if dv[1] == "mobile"), None)
            self._session(out, d, v, start, eng, "carrier", self.home, device, dur_s)
        else:
            self._session(out, d, v, start, eng, "home", self.home, None, dur_s)

    def _commute(self, out: Out, d: int, day_start: int, lo: int, hi: int, eng: float) -> None:
        rng, v = self.rng, self.viewers[0]
        device = next((dv for dv in v.devices if dv[1] == "mobile"), None) or self._add_mobile(v)
        for hour in (7.0, 17.5):
            if rng.random() < 0.7 * min(1.0, eng):
                local = hour + rng.random() * 1.5
                start = day_start + int(((local - self.home.tz_hours) % 24) * HOUR_MS)
                if lo <= start < hi:
                    dur_s = rng.randrange(600, 2700)
                    self._session(out, d, v, start, eng, "carrier", self.home, device, dur_s)

    def _add_mobile(self, v: Viewer) -> tuple[str, str]:
        device = self._device("mobile")
        v.devices.append(device)
        return device

    def _duration(self, v: Viewer, eng: float) -> int:
        mean = v.dur_mean_s * (0.5 if self.fatigue else 1.0) * (0.6 + 0.4 * min(1.0, eng))
        return int(min(14_000.0, max(60.0, self.rng.lognormvariate(math.log(mean), 0.6))))

    def _network(self, kind: str, place: Place) -> tuple[str, dict[str, Any]]:
        rng = self.rng
        if kind == "carrier":
            work = self.work or place
            f = rng.random()
            lat, lon = (
                place.lat + f * (work.lat - place.lat),
                place.lon + f * (work.lon - place.lon),
            )
            geo = {"lat": round(lat, 3), "lon": round(lon, 3), "country": place.country,
                   "city": place.city}  # fmt: skip
            return self.world.carrier_ip(rng, place.country, self.carrier), geo
        if kind == "vpn":
            return f"{place.v4}.{rng.randrange(1, 255)}", place.geo
        if kind == "home" and self.cgnat:
            return self.world.carrier_ip(rng, place.country, self.carrier), place.geo
        return place.ip(rng, self.cfg.ipv6_use_rate), place.geo

    def _new_lease(self) -> None:
        """The ISP gives the home (and each borrower's home) a new public IPv4 address."""
        rng = self.rng
        for place in [self.home] + [v.place for b in self.borrowers for v in b.viewers]:
            place.host = rng.randrange(2, 255)
            if self.pool16:  # another /24 of the same /16
                place.v4 = place.v4.rsplit(".", 1)[0] + f".{rng.randrange(256)}"

    def _geo(self, geo: dict[str, Any], device_id: str) -> dict[str, Any] | None:
        """The geo an event reports: coarse (city centre), noisy or absent, per the knobs."""
        cfg = self.cfg
        if cfg.geo_absent_rate and self.rng.random() < cfg.geo_absent_rate:
            return None
        if cfg.geo_coarse_rate and zlib.crc32(device_id.encode()) % 1000 < (
            1000 * cfg.geo_coarse_rate
        ):
            geo = self.world.city_geo(geo["city"])
        if cfg.geo_noise_km:
            lat, lon = offset_km(self.rng, geo["lat"], geo["lon"], 0, cfg.geo_noise_km)
            geo = {**geo, "lat": round(lat, 3), "lon": round(lon, 3)}
        return geo

    def _session(
        self,
        out: Out,
        d: int,
        v: Viewer,
        start: int,
        eng: float,
        kind: str,
        place: Place,
        device: tuple[str, str] | None,
        dur_s: int = 0,
    ) -> None:
        """One viewing session (with login, verification and activity around it)."""
        rng, cfg = self.rng, self.cfg
        device_id, device_type = device or rng.choice(v.devices)
        if kind != "home" and not self._verify(out, d, v, start, kind, device_id):
            return
        dur_s = dur_s or self._duration(v, eng)
        ip, geo = self._network(kind, place)
        net: dict[str, Any] = {"ip": ip, "geo": geo}
        shown: dict[str, Any] | None = geo
        if rng.random() < cfg.missing_geo_rate:
            net = {}
        elif cfg.geo_absent_rate or cfg.geo_coarse_rate or cfg.geo_noise_km:
            shown = self._geo(geo, device_id)
            net = {"ip": ip, "geo": shown} if shown is not None else {"ip": ip}
        where = f"{kind}:{place.v4}"
        if self.last_place.get(device_id) != where or rng.random() < 0.1:
            self.last_place[device_id] = where
            fields = {"device_id": device_id, **net, "device_type": device_type}
            ts = max(self.lo, start - rng.randrange(1000, 60_000))
            self._emit(out, ts, "login", fields)
            self._borrowed(v, ts)
        self.sessions += 1
        sid = f"{self.id}-s{self.sessions}"
        started = {
            "session_id": sid,
            "device_id": device_id,
            "profile_id": v.profile_id,
            "content_id": f"c{self._content(v)}",
            **net,
            "device_type": device_type,
        }
        self._emit(out, start, "playback_started", started)
        self._borrowed(v, start)
        for _ in range(poisson(rng, cfg.activity_rate * (0.4 + 0.6 * min(1.0, eng)))):
            ts = start + rng.randrange(dur_s * 1000 + 60_000)
            self._activity(out, ts, v, (device_id, device_type), ip, shown, self._action(eng))
        if rng.random() >= cfg.lost_stop_rate:
            watched = dur_s if rng.random() < 0.8 else rng.randrange(dur_s)
            stopped = {"session_id": sid, "watched_s": watched}
            self._emit(out, start + dur_s * 1000, "playback_stopped", stopped)

    def _settled(self, b: Borrower, ts: int) -> None:
        """Truth: a borrower that had started was blocked or paid for at ``ts``."""
        if b.first_ts is not None:  # not before its first event (a reaction may be earlier)
            self.settled_ts = max(ts, b.first_ts, self.settled_ts or 0)

    def finish(self) -> None:
        """Truth at the end of the run: is the account still shared (a borrower that
        started, neither blocked nor paid for, on a subscription not cancelled)? If it
        was shared and is not any more, when that ended."""
        t = self.truth
        t["borrowed_days"] = len(self.borrowed_days)
        if not t["shared"]:
            return
        unpaid = any(b.first_ts is not None and b.status == "active" for b in self.borrowers)
        t["sharing_at_end"] = unpaid and self.active
        if not t["sharing_at_end"]:
            ends = [] if unpaid else [self.settled_ts]
            if not self.active and t["cancels"]:
                ends.append(t["cancels"][-1]["ts"])
            t["share_end_ts"] = min((e for e in ends if e is not None), default=None)

    def _borrowed(self, v: Viewer, ts: int) -> None:
        """Truth: a borrower's first event (a challenge, a login or a playback) is the
        start of sharing -- even if the challenge then blocks it."""
        if v.borrower is not None and v.borrower.first_ts is None:
            v.borrower.first_ts = ts
            self.truth["share_households"] += 1
            if self.truth["share_start_ts"] is None:
                self.truth["shared"], self.truth["share_start_ts"] = True, ts

    def _verify(self, out: Out, d: int, v: Viewer, ts: int, kind: str, device_id: str) -> bool:
        """The crackdown: may challenge a device outside the home network; False blocks it."""
        rng, cfg = self.rng, self.cfg
        if d < cfg.crackdown_start_day or self.trust.get(device_id, -1) >= d:
            return True
        if rng.random() >= cfg.verification_rate * VERIFY_FACTOR[kind]:
            return True
        legit = v.borrower is None
        r = rng.random()
        if legit:
            outcome = "verified" if r < 0.85 else "expired" if r < 0.95 else "failed"
        else:
            outcome = "verified" if r < 0.3 else "expired" if r < 0.65 else "failed"
        fields = {"device_id": device_id, "outcome": outcome}
        at = max(self.lo, ts - rng.randrange(5_000, 120_000))
        self._emit(out, at, "household_verification", fields)
        self._borrowed(v, at)
        if outcome == "verified":
            self.trust[device_id] = d + 30
            return True
        if v.borrower is None:
            return False
        return self._blocked(out, d, v.borrower, ts)

    def _extra_member(self, out: Out, b: Borrower, ts: int) -> None:
        """The account pays for the borrower: its devices are trusted from now on."""
        b.status = "extra"
        self._settled(b, ts)
        for viewer in b.viewers:
            for device_id, _ in viewer.devices:
                self.trust[device_id] = 1 << 40
        self._emit(out, ts, "extra_member_added", {"member_id": b.member_id})
        self.truth["extra_member_added"] = True
        self.truth["extra_member_ts"] = self.truth["extra_member_ts"] or ts

    def _blocked(self, out: Out, d: int, b: Borrower, ts: int) -> bool:
        """A borrower failed verification: the account pays for it, or it goes."""
        rng = self.rng
        if rng.random() < self.cfg.extra_member_rate:
            self._extra_member(out, b, ts)
            return True
        self._block(b, d, ts)
        return False

    def _block(self, b: Borrower, d: int, ts: int) -> None:
        """The borrower is gone from day ``d`` (at ``ts``); the account is wary for 30 days."""
        b.status = "blocked"
        self.until["crackdown"] = d + 30
        self.truth["borrowers_blocked"] += 1
        self._settled(b, ts)

    def _content(self, v: Viewer) -> int:
        rng = self.rng
        if v.last_content and rng.random() < 0.5:
            return v.last_content  # next episode of the same series
        if v.recent and rng.random() < (0.6 if self.fatigue else 0.1):
            c = rng.choice(v.recent)  # rewatching: content fatigue
        else:
            c = 1 + int(5000 * rng.random() ** 3)
        v.last_content = c
        v.recent.append(c)
        if len(v.recent) > 8:
            del v.recent[0]
        return c

    def _action(self, eng: float) -> str:
        rng = self.rng
        if self.cfg.action_vocab:  # the product's own: engaged viewers use the signal ones
            (signal, signal_cum), (noise, noise_cum) = self._vocabulary
            engaged = 0.5 * min(1.0, eng) * (0.4 if self.fatigue else 1.0)
            if signal and (not noise or rng.random() < engaged):
                return signal[pick_cum(rng, signal_cum)]
            return noise[pick_cum(rng, noise_cum)]
        r = rng.random()
        if r < 0.02:
            return f"promo_banner_{rng.randrange(500)}"  # an open-ended long tail
        if r < 0.5 * min(1.0, eng) * (0.4 if self.fatigue else 1.0):
            return rng.choice(ENGAGED_ACTIONS)
        if r < 0.8:
            return rng.choice(BROWSE_ACTIONS)
        return rng.choice(OTHER_ACTIONS)

    def _activity(
        self,
        out: Out,
        ts: int,
        v: Viewer,
        device: tuple[str, str],
        ip: str,
        geo: dict[str, Any] | None,
        action: str,
    ) -> None:
        fields: dict[str, Any] = {"action": action, "device_id": device[0], "ip": ip}
        if geo is not None:
            fields["geo"] = geo
        if action == "download":
            fields["quantity"] = self.rng.randrange(1, 6)
        self._emit(out, ts, "activity", fields)
