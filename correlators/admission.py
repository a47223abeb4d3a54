"""What the service takes in beyond the schema: times it can place, callers that are numbers.

Pure: the moment of acceptance is passed in (the edge's clock for HTTP, the broker's record
time for events written straight to a topic), so the worker applies the same checks to the
same event with the same answer on a replay.

- An event time more than `clock_skew` ahead of its acceptance is refused: one call dated
  next year would otherwise move its domain's clock and fire every timer of every incident.
- A live event older than the de-duplication horizon is refused: its id may already be
  forgotten, so a resend would count twice. Calls recorded offline go in as history (their
  own topic: analytics and reports, never correlation, timers or pages).
- Planned works and ETRs reach at most `plan_ahead` into the future.
- `caller` is a phone number: it is read out, called back and lands in spreadsheets.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from correlators.rules import CorrelationRules
from events.inbound import CallReported, EtrSet, PlannedWorkCancelled, PlannedWorkScheduled

# ClickHouse's DateTime starts at 1970; nothing a hotline recorded is older.
OLDEST_HISTORY = datetime(1970, 1, 2, tzinfo=UTC)
PHONE = re.compile(r"\+?[0-9 ()./-]+")
PHONE_DIGITS = (3, 20)  # short service numbers to the longest international numbers


class Refused(ValueError):
    """An event the service will not take; `field` is where, `reason` says why and what to do."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field, self.reason = field, reason


@dataclass(frozen=True)
class TimeBounds:
    """How far from its moment of acceptance an event's times may be."""

    skew: timedelta
    horizon: timedelta
    plan_ahead: timedelta

    @classmethod
    def of(cls, rules: CorrelationRules) -> TimeBounds:
        return cls(rules.clock_skew, rules.dedupe_horizon, rules.plan_ahead)


def _span(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds >= 2 * 86400 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 120 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def admit(event: Any, accepted_at: datetime, bounds: TimeBounds, *, history: bool = False) -> None:
    """Raise `Refused` when the event cannot be placed or carries what it must not."""
    at = event.occurred_at
    if at > accepted_at + bounds.skew:
        raise Refused(
            "occurred_at",
            f"occurred_at {at.isoformat()} is more than {_span(bounds.skew)} ahead of the "
            f"service's clock ({accepted_at.isoformat(timespec='seconds')}): "
            "check the sender's clock and time zone",
        )
    if history:
        if not isinstance(event, CallReported):
            raise Refused("type", f"history takes call_reported events, not {event.type}")
        if at < OLDEST_HISTORY:
            raise Refused("occurred_at", f"occurred_at {at.isoformat()} is before 1970-01-02")
    elif at < accepted_at - bounds.horizon:
        raise Refused(
            "occurred_at",
            f"occurred_at {at.isoformat()} is more than {_span(bounds.horizon)} before the "
            "service's clock, past the de-duplication horizon: send calls recorded offline "
            "to POST /v1/history",
        )
    latest = accepted_at + bounds.plan_ahead
    if isinstance(event, PlannedWorkScheduled | PlannedWorkCancelled):
        for name in ("starts_at", "ends_at"):
            value = getattr(event, name)
            if value is not None and value > latest:
                raise Refused(
                    name,
                    f"{name} {value.isoformat()} is more than {_span(bounds.plan_ahead)} ahead",
                )
    if isinstance(event, EtrSet) and event.etr > latest:
        raise Refused(
            "etr", f"etr {event.etr.isoformat()} is more than {_span(bounds.plan_ahead)} ahead"
        )
    if isinstance(event, CallReported) and event.caller is not None:
        check_phone(event.caller)


def admit_new(
    event: Any,
    accepted_at: datetime,
    bounds: TimeBounds,
    recent: RecentIds,
    *,
    history: bool = False,
) -> str:
    """`admit`, then refuse an id `recent` took with other content; the event's content digest,
    to `recent.remember` once the event is taken (the edge and the worker alike)."""
    admit(event, accepted_at, bounds, history=history)
    digest = content_digest(event)
    if recent.conflicts(event.event_id, digest):
        raise Refused(
            "event_id",
            f"event_id {event.event_id!r} was accepted before with other content: "
            "give each event its own id (a resend must repeat the event unchanged)",
        )
    return digest


def check_phone(caller: str) -> None:
    """A phone number as people write it: digits, spaces, + ( ) . / -, and 3 to 20 digits."""
    count = sum(ch.isdigit() for ch in caller)
    low, high = PHONE_DIGITS
    if not PHONE.fullmatch(caller) or "+" in caller[1:] or not low <= count <= high:
        raise Refused(
            "caller",
            f"caller must be a phone number: {low} to {high} digits, with spaces, "
            "a leading +, ( ) . / - allowed",
        )


def content_digest(event: Any) -> str:
    """What an event says, apart from when and by whom it was accepted: a resend compares equal."""
    body = event.model_dump_json(exclude={"recorded_at", "recorded_by"})
    return hashlib.sha256(body.encode()).hexdigest()[:32]


class RecentIds:
    """The content of the last `capacity` event ids taken, to tell a resend (same content,
    harmless) from an id used again for something else (refused: it would silently replace
    the first event in analytics)."""

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._digests: OrderedDict[str, str] = OrderedDict()

    def conflicts(self, event_id: str, digest: str) -> bool:
        """True when `event_id` was taken before with other content."""
        known = self._digests.get(event_id)
        return known is not None and known != digest

    def remember(self, event_id: str, digest: str) -> None:
        """Note an event taken (the oldest is forgotten beyond `capacity`)."""
        self._digests[event_id] = digest
        self._digests.move_to_end(event_id)
        if len(self._digests) > self.capacity:
            self._digests.popitem(last=False)
