"""Incident read model: the incident stream folded into what agents and shift leads read.

Pure and in memory. Every API process keeps one, fed from the incidents topic; the offline
replay builds one for its summary. Applying an event twice changes nothing.
"""

from collections.abc import Iterable, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from events.derived import (
    AcknowledgementRecorded,
    AlertRaised,
    CallAttached,
    CallPending,
    CauseRecorded,
    DeadlinePassed,
    DerivedBase,
    EtrRecorded,
    IncidentConfirmed,
    IncidentEscalated,
    IncidentOpened,
    IncidentRestored,
    IncidentsMerged,
    IncidentStale,
    IncidentUnacknowledged,
    IndividualFault,
)

ACTIVE = frozenset({"suspected", "confirmed", "stale"})


class TimelineEntry(BaseModel):
    at: datetime
    type: str
    summary: str
    event_id: str


class IncidentView(BaseModel):
    incident_id: str
    domain: str
    device_id: str
    device_kind: str
    utility: str
    path: tuple[str, ...]
    state: str
    cause: str
    planned: bool = False
    work_id: str | None = None
    etr: datetime | None = None
    opened_at: datetime
    confirmed_at: datetime | None = None
    restored_at: datetime | None = None
    updated_at: datetime
    customers_affected: int
    call_ids: list[str] = []
    reporters: int = 0
    repeat_calls: int = 0
    merged_into: str | None = None
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    resolved_by: str | None = None
    timeline: list[TimelineEntry] = []

    @property
    def active(self) -> bool:
        return self.state in ACTIVE


class IncidentBook:
    """All incidents seen on the stream, with an index of the active ones by device."""

    def __init__(self) -> None:
        self.incidents: dict[str, IncidentView] = {}
        self.call_outcomes: dict[str, str] = {}  # call id -> "pending" | "individual" | incident id
        self._active_by_device: dict[str, set[str]] = {}
        self._reporters: dict[str, set[str]] = {}  # incident id -> distinct reporters
        self.domains: dict[str, str] = {}  # incident id -> its domain, to route actions
        self._seen: set[str] = set()
        self.events_applied = 0
        self.last_event_at: datetime | None = None

    # -- queries ----------------------------------------------------------------------------

    def active(self) -> list[IncidentView]:
        """Active incidents, most customers first."""
        views = [v for v in self.incidents.values() if v.active]
        return sorted(views, key=lambda v: (-v.customers_affected, v.opened_at, v.incident_id))

    def covering(self, path: Sequence[str]) -> IncidentView | None:
        """The lowest active incident on a network path (root first), planned or not."""
        for node in reversed(path):
            ids = self._active_by_device.get(node)
            if ids:
                views = sorted(
                    (self.incidents[i] for i in ids), key=lambda v: (v.planned, v.opened_at)
                )
                return views[0]
        return None

    # -- folding ----------------------------------------------------------------------------

    def apply_all(self, events: Iterable[DerivedBase]) -> None:
        for event in events:
            self.apply(event)

    def apply(self, event: DerivedBase) -> None:
        if event.event_id in self._seen:
            return
        self._seen.add(event.event_id)
        self.events_applied += 1
        if self.last_event_at is None or event.occurred_at > self.last_event_at:
            self.last_event_at = event.occurred_at
        match event:
            case CallPending():
                self.call_outcomes.setdefault(event.call_id, "pending")
                return
            case IndividualFault():
                self.call_outcomes[event.call_id] = "individual"
                return
            case IncidentOpened():
                self.incidents[event.incident_id] = IncidentView(
                    incident_id=event.incident_id,
                    domain=event.domain,
                    device_id=event.device_id,
                    device_kind=event.device_kind,
                    utility=event.utility,
                    path=event.path,
                    state=event.phase,
                    cause=event.cause,
                    planned=event.planned,
                    work_id=event.work_id,
                    etr=event.etr,
                    opened_at=event.occurred_at,
                    confirmed_at=event.occurred_at if event.phase == "confirmed" else None,
                    updated_at=event.occurred_at,
                    customers_affected=event.customers_affected,
                )
                self._index(event.incident_id)
                self.domains[event.incident_id] = event.domain
                self._note(
                    self.incidents[event.incident_id],
                    event,
                    f"opened at {event.device_kind} {event.device_id}: {event.cause}",
                )
                return
        view = self.incidents.get(getattr(event, "incident_id", ""))
        if view is None:
            return  # not an incident's event, or of an incident this book never saw opened
        match event:
            case CallAttached():
                self.call_outcomes[event.call_id] = event.incident_id
                view.call_ids.append(event.call_id)
                if event.repeat:
                    view.repeat_calls += 1
                reporters = self._reporters.setdefault(event.incident_id, set())
                reporters.add(event.reporter)
                view.reporters = len(reporters)
                if view.state == "stale":
                    view.state = "suspected"
                self._note(
                    view,
                    event,
                    f"call {event.call_id} at {event.node_id}"
                    + (" (repeat)" if event.repeat else ""),
                )
            case IncidentEscalated():
                self._unindex(view.incident_id)
                view.device_id, view.device_kind = event.device_id, event.device_kind
                view.path, view.customers_affected = event.path, event.customers_affected
                self._index(view.incident_id)
                text = (
                    f"rolled up from {event.from_device} to {event.device_kind} {event.device_id}"
                    if event.reason == "rolled_up"
                    else f"grew to {event.reporters} reporters"
                )
                self._note(view, event, text)
            case IncidentConfirmed():
                view.state, view.confirmed_at = "confirmed", event.occurred_at
                if view.cause == "unknown":
                    view.cause = f"scada: {event.signal}"
                self._note(view, event, f"confirmed by SCADA {event.signal} at {event.device_id}")
            case IncidentsMerged():
                survivor = view
                for merged_id in event.merged_ids:
                    merged = self.incidents.get(merged_id)
                    if merged is None:
                        continue
                    self._unindex(merged_id)
                    merged.state, merged.merged_into = "merged", event.incident_id
                    merged.updated_at = event.occurred_at
                    for call_id in merged.call_ids:
                        if call_id not in survivor.call_ids:
                            survivor.call_ids.append(call_id)
                            self.call_outcomes[call_id] = event.incident_id
                    reporters = self._reporters.setdefault(event.incident_id, set())
                    reporters |= self._reporters.get(merged_id, set())
                    survivor.reporters = len(reporters)
                    survivor.repeat_calls += merged.repeat_calls
                    if merged.state == "confirmed" or merged.confirmed_at:
                        survivor.state = "confirmed"
                self._note(view, event, "merged " + ", ".join(event.merged_ids))
            case IncidentRestored():
                self._unindex(view.incident_id)
                view.state, view.restored_at = "restored", event.occurred_at
                view.resolved_by = event.by
                who = f" by {event.by}" if event.by else ""
                self._note(view, event, f"restored{who}: {event.reason}")
            case AcknowledgementRecorded() if view.acknowledged_by is None:
                # The first owner stays: one "acknowledged by" line even if a second slipped in.
                view.acknowledged_by, view.acknowledged_at = event.by, event.occurred_at
                self._note(
                    view,
                    event,
                    f"acknowledged by {event.by}" + (f": {event.note}" if event.note else ""),
                )
            case CauseRecorded():
                view.cause = event.cause
                self._note(view, event, f"cause set by {event.by}: {event.cause}")
            case EtrRecorded():
                view.etr = event.etr
                self._note(view, event, f"ETR set by {event.by}: {event.etr:%Y-%m-%d %H:%M} UTC")
            case IncidentUnacknowledged():
                self._note(view, event, f"not acknowledged: reminder {event.count}")
            case DeadlinePassed():
                stage = "reminder" if event.stage == 1 else "escalated to the supervisor"
                self._note(view, event, f"past its handling deadline: {stage}")
            case IncidentStale():
                view.state = "stale"
                self._note(view, event, "stale: no new report")
            case AlertRaised():
                self._note(view, event, f"alert ({event.severity}): {event.summary}")

    def _note(self, view: IncidentView, event: DerivedBase, summary: str) -> None:
        view.timeline.append(
            TimelineEntry(
                at=event.occurred_at, type=event.type, summary=summary, event_id=event.event_id
            )
        )
        view.updated_at = max(view.updated_at, event.occurred_at)

    def _index(self, incident_id: str) -> None:
        view = self.incidents[incident_id]
        if view.active:
            self._active_by_device.setdefault(view.device_id, set()).add(incident_id)

    def _unindex(self, incident_id: str) -> None:
        view = self.incidents[incident_id]
        ids = self._active_by_device.get(view.device_id)
        if ids is not None:
            ids.discard(incident_id)
            if not ids:
                del self._active_by_device[view.device_id]


def agent_sentence(view: IncidentView | None, timezone: str = "UTC") -> str:
    """The words an agent reads to the caller."""
    if view is None:
        return "No known fault here: log an individual repair."
    zone = ZoneInfo(timezone)
    since = view.opened_at.astimezone(zone).strftime("%H:%M")
    etr = view.etr.astimezone(zone).strftime("%H:%M on %d %b") if view.etr else None
    if view.planned:
        reason = view.cause.removeprefix("planned: ")
        return (
            f"There is planned work in your area ({reason}) since {since}; "
            f"supply should be back by {etr}. You do not need to report it."
        )
    neighbours = max(view.reporters - 1, 0)
    cause = view.cause if view.cause != "unknown" else "a fault on the network"
    confirmed = "confirmed" if view.state == "confirmed" else "reported"
    restoration = (
        f"We expect supply back by {etr}."
        if etr
        else ("We do not have a restoration time yet; crews are on it.")
    )
    return (
        f"There is a known {confirmed} outage in your area since {since} ({cause}), "
        f"affecting about {view.customers_affected} customers; {neighbours} neighbours "
        f"have called. {restoration} Your call has been added to it."
    )
