"""How simulated households answer the actions of churnwatch's alerts.

With ``churnwatch simulate --kafka`` the simulator reads ``risk-alerts`` while it
writes the input topics, and the household of an alerted account answers the
alert's recommended action with contract events:

- a **sharing** alert on an account whose borrower is watching (a sharer):
  ``household_verification`` -> the borrower's device is ``verified`` (the owner
  forwards the code), the account pays for it (``extra_member_added``), the
  borrower fails the check and stops watching (``household_verification``
  ``failed``), the account cancels (backlash, ``subscription_cancelled``), or
  nothing; ``extra_member_offer`` -> extra member, cancellation or nothing;
- a sharing alert on an account with no borrower watching (a false alarm: a
  traveller, a big family): a verification request is verified on the
  household's own device, or annoys the account into cancelling, or is ignored;
- a **churn** alert: ``retention_offer`` -> the offer is taken and the account's
  cancel hazard is multiplied by ``react_offer_hazard_mult`` for
  ``react_offer_days`` (no event: staying is the outcome); ``payment_reminder``
  -> the card is fixed and the payment retried at once; ``win_back`` -> the
  cancelled account comes back (``subscription_reactivated``).

Which answer is drawn from the run's seed and the alert's id alone
(:func:`choose`), so a run is deterministic given its seed and the simulated day
at which each alert was read. A reaction happens at the account's next simulated
moment after the alert is read: the start of the next day the simulator lives
through (the alert's event time is always earlier; see docs/simulator.md).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Any

from models.simulator.config import SimConfig

VERIFIED, EXTRA_MEMBER, FAILED, CANCELLED = "verified", "extra_member", "failed", "cancelled"
OFFER_TAKEN, PAYMENT_FIXED, REACTIVATED = "offer_taken", "payment_fixed", "reactivated"
IGNORED = "ignored"  # the household could answer and did nothing
UNANSWERED = "unanswered"  # nobody to answer: cancelled, already back, unknown action
REACTIONS = (VERIFIED, EXTRA_MEMBER, FAILED, CANCELLED, OFFER_TAKEN, PAYMENT_FIXED,
             REACTIVATED, IGNORED, UNANSWERED)  # fmt: skip


def weights(
    cfg: SimConfig, kind: str, action: str, *, active: bool, sharing: bool
) -> list[tuple[str, float]]:
    """The possible answers to an alert with their probabilities (the rest: ``ignored``).

    ``active``: the subscription is running; ``sharing``: a borrower is watching.

    >>> cfg = SimConfig()
    >>> weights(cfg, "sharing", "household_verification", active=True, sharing=True)
    [('verified', 0.3), ('extra_member', 0.2), ('failed', 0.15), ('cancelled', 0.1)]
    >>> weights(cfg, "churn", "win_back", active=False, sharing=False)
    [('reactivated', 0.2)]
    >>> weights(cfg, "churn", "retention_offer", active=False, sharing=False)
    []
    """
    if kind == "churn" and action == "win_back":
        return [] if active else [(REACTIVATED, cfg.react_win_back_rate)]
    if not active:
        return []
    if kind == "churn" and action == "retention_offer":
        return [(OFFER_TAKEN, cfg.react_offer_taken_rate)]
    if kind == "churn" and action == "payment_reminder":
        return [(PAYMENT_FIXED, cfg.react_payment_fixed_rate)]
    if kind == "sharing" and action == "household_verification":
        if sharing:
            return [(VERIFIED, cfg.react_verified_rate),
                    (EXTRA_MEMBER, cfg.react_extra_member_rate),
                    (FAILED, cfg.react_failed_rate),
                    (CANCELLED, cfg.react_backlash_rate)]  # fmt: skip
        return [(VERIFIED, cfg.react_legit_verified_rate),
                (CANCELLED, cfg.react_legit_backlash_rate)]  # fmt: skip
    if kind == "sharing" and action == "extra_member_offer":
        if sharing:
            return [(EXTRA_MEMBER, cfg.react_offer_extra_member_rate),
                    (CANCELLED, cfg.react_backlash_rate)]  # fmt: skip
        return [(CANCELLED, cfg.react_legit_backlash_rate)]
    return []


def choose(cfg: SimConfig, alert: Mapping[str, Any], *, active: bool, sharing: bool) -> str:
    """The household's answer to ``alert``, drawn from ``(cfg.seed, alert_id)`` alone.

    >>> alert = {"alert_id": "a0000001:sharing:1", "kind": "sharing",
    ...          "action": "household_verification"}
    >>> choose(SimConfig(seed=3), alert, active=True, sharing=True)
    'verified'
    >>> choose(SimConfig(seed=3), alert, active=True, sharing=True)  # the same draw
    'verified'
    >>> choose(SimConfig(seed=3), alert, active=False, sharing=True)
    'unanswered'
    """
    options = weights(cfg, alert["kind"], alert["action"], active=active, sharing=sharing)
    if not options:
        return UNANSWERED
    r = random.Random(f"react:{cfg.seed}:{alert['alert_id']}").random()
    for reaction, p in options:
        if r < p:
            return reaction
        r -= p
    return IGNORED


def summary(counts: Mapping[tuple[str, str, str], int]) -> list[str]:
    """One line per (kind, action) of ``(kind, action, reaction) -> count``.

    >>> summary({("sharing", "extra_member_offer", "ignored"): 3,
    ...          ("sharing", "extra_member_offer", "extra_member"): 2})
    ['sharing extra_member_offer       5: extra_member 2, ignored 3']
    """
    rows: dict[tuple[str, str], dict[str, int]] = {}
    for (kind, action, reaction), n in counts.items():
        rows.setdefault((kind, action), {})[reaction] = n
    lines = []
    for (kind, action), row in sorted(rows.items()):
        parts = ", ".join(f"{r} {row[r]:,}" for r in REACTIONS if r in row)
        lines.append(f"{kind:7} {action:22} {sum(row.values()):>5,}: {parts}")
    return lines


def schedule(records: Iterable[Mapping[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """The alerts of recorded answers (``reactions.jsonl``) by the day they were read:
    fed back to ``simulate`` they repeat the recorded run without a worker.

    >>> r = {"alert_id": "a1:churn:1", "account_id": "a1", "kind": "churn",
    ...      "action": "win_back", "alert_ts": 5, "day": 3, "ts": 9, "reaction": "ignored"}
    >>> schedule([r])
    {3: [{'alert_id': 'a1:churn:1', 'kind': 'churn', 'account_id': 'a1', 'action': 'win_back', 'ts': 5}]}
    """  # noqa: E501
    days: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        alert = {k: r[k] for k in ("alert_id", "kind", "account_id", "action")}
        days.setdefault(r["day"], []).append({**alert, "ts": r["alert_ts"]})
    return days
