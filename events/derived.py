"""Derived facts on the incident stream, the event store every read model is rebuilt from.

Correlators decide these; their ids are derived from their content (incident id, cause event),
so a replay and the live stream publish the same ids and every consumer can de-duplicate.
"""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from events.base import Event, UtcDatetime, Utility

Phase = Literal["suspected", "confirmed", "stale", "restored", "merged"]
Severity = Literal["info", "warning", "critical"]
AlertKind = Literal[
    "incident_opened",
    "incident_escalated",
    "incident_confirmed",
    "incident_restored",
    "incident_stale",
    "incident_unacknowledged",
    "deadline_reminder",
    "deadline_escalated",
    "repeat_caller",
    "scada_source_lost",  # a SCADA connector lost a control system (scada/runner.py)
    "scada_source_restored",
]


class DerivedBase(Event):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    domain: str = Field(description="Correlation domain (network root) that decided the event.")


class IncidentEvent(DerivedBase):
    incident_id: str


class CallPending(DerivedBase):
    """A call was kept, waiting for neighbours, before it is judged area fault or individual."""

    type: Literal["call_pending"] = "call_pending"
    call_id: str
    node_id: str
    reporter: str
    utility: Utility
    whole_building: bool = False


class IndividualFault(DerivedBase):
    """A call explained by the caller's own situation: log an individual repair."""

    type: Literal["individual_fault"] = "individual_fault"
    call_id: str
    node_id: str
    utility: Utility
    reason: str = Field(
        description="'alone' (no neighbour reported in the window) or 'tagged: ...'"
    )


class IncidentOpened(IncidentEvent):
    """An outage was recognised at a device of the network."""

    type: Literal["incident_opened"] = "incident_opened"
    device_id: str
    device_kind: str
    utility: Utility
    path: tuple[str, ...] = Field(description="Network path from the root down to the device.")
    phase: Phase
    cause: str
    planned: bool = False
    work_id: str | None = None
    etr: UtcDatetime | None = Field(default=None, description="Expected time of restoration.")
    customers_affected: int


class CallAttached(IncidentEvent):
    """A call was explained by an incident (including the calls that opened it)."""

    type: Literal["call_attached"] = "call_attached"
    call_id: str
    node_id: str
    reporter: str
    repeat: bool = Field(description="The same reporter called about this incident before.")
    call_occurred_at: UtcDatetime


class IncidentEscalated(IncidentEvent):
    """The incident moved up the network (rolled up) or grew past a level of reports."""

    type: Literal["incident_escalated"] = "incident_escalated"
    reason: Literal["rolled_up", "grew"]
    from_device: str
    device_id: str
    device_kind: str
    path: tuple[str, ...]
    customers_affected: int
    reporters: int


class IncidentConfirmed(IncidentEvent):
    """A control system confirmed the outage (breaker trip, pressure or temperature alarm)."""

    type: Literal["incident_confirmed"] = "incident_confirmed"
    device_id: str
    signal: str
    quality: str


class IncidentsMerged(IncidentEvent):
    """Incidents found to share one cause were folded into `incident_id`."""

    type: Literal["incidents_merged"] = "incidents_merged"
    merged_ids: tuple[str, ...]


class IncidentRestored(IncidentEvent):
    """Supply is back; later calls for this area open a new incident."""

    type: Literal["incident_restored"] = "incident_restored"
    device_id: str
    reason: str
    by: str | None = Field(default=None, description="Who resolved it, when a person did.")


class AcknowledgementRecorded(IncidentEvent):
    """A shift lead owns the incident now; unacknowledged reminders stop."""

    type: Literal["acknowledgement_recorded"] = "acknowledgement_recorded"
    by: str
    note: str | None = None


class CauseRecorded(IncidentEvent):
    """The cause was set by a person."""

    type: Literal["cause_recorded"] = "cause_recorded"
    by: str
    cause: str


class EtrRecorded(IncidentEvent):
    """The expected time of restoration was set by a person."""

    type: Literal["etr_recorded"] = "etr_recorded"
    by: str
    etr: UtcDatetime


class IncidentUnacknowledged(IncidentEvent):
    """Nobody acknowledged the incident in time: the `count`-th reminder is due."""

    type: Literal["incident_unacknowledged"] = "incident_unacknowledged"
    count: int


class DeadlinePassed(IncidentEvent):
    """The incident is open past its handling deadline: stage 1 reminds, stage 2 escalates."""

    type: Literal["deadline_passed"] = "deadline_passed"
    stage: int
    deadline: UtcDatetime


class IncidentStale(IncidentEvent):
    """A predicted incident had no new report and no confirmation for too long."""

    type: Literal["incident_stale"] = "incident_stale"
    last_report_at: datetime


class PlannedWorkRegistered(DerivedBase):
    """A planned work is known; it opens a planned incident when its window starts."""

    type: Literal["planned_work_registered"] = "planned_work_registered"
    work_id: str
    device_ids: tuple[str, ...]
    starts_at: UtcDatetime
    ends_at: UtcDatetime
    reason: str


class PlannedWorkWithdrawn(DerivedBase):
    """A planned work was cancelled."""

    type: Literal["planned_work_withdrawn"] = "planned_work_withdrawn"
    work_id: str


class AlertRaised(IncidentEvent):
    """Something a shift lead must hear about (delivery to people is the alerting issue's)."""

    type: Literal["alert_raised"] = "alert_raised"
    kind: AlertKind
    severity: Severity
    utility: Utility
    device_id: str
    customers_affected: int
    summary: str
    area: str = Field(default="", description="The child of the root the device is under.")
    escalation: int = Field(
        default=0, description="0 first notice, 1 reminder to the lead, 2 to the supervisor."
    )


DerivedEvent = Annotated[
    CallPending
    | IndividualFault
    | IncidentOpened
    | CallAttached
    | IncidentEscalated
    | IncidentConfirmed
    | IncidentsMerged
    | IncidentRestored
    | IncidentStale
    | PlannedWorkRegistered
    | PlannedWorkWithdrawn
    | AcknowledgementRecorded
    | CauseRecorded
    | EtrRecorded
    | IncidentUnacknowledged
    | DeadlinePassed
    | AlertRaised,
    Field(discriminator="type"),
]
