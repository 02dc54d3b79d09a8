"""The wire contract (../shared/CONTRACT.md), input side.

STUB: the Event type below is the agreed interface; the parser is being written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SUBSCRIPTION_TYPES = frozenset(
    {
        "subscription_started",
        "plan_changed",
        "price_changed",
        "payment_succeeded",
        "payment_failed",
        "subscription_cancelled",
        "subscription_reactivated",
        "support_contacted",
        "household_verification",
        "extra_member_added",
    }
)
USAGE_TYPES = frozenset({"login", "playback_started", "playback_stopped", "activity"})
EVENT_TYPES = SUBSCRIPTION_TYPES | USAGE_TYPES


@dataclass(frozen=True, slots=True)
class Event:
    """One valid input event.

    ``ts`` is event time in epoch milliseconds (UTC); ``fields`` holds the
    type's own validated fields (required ones, and optional ones that were
    present); unknown extra fields of the input are dropped.
    """

    event_id: str
    type: str
    account_id: str
    ts: int
    fields: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "type": self.type,
            "account_id": self.account_id,
            "ts": self.ts,
            **self.fields,
        }
