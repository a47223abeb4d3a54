"""Inbound facts, the contract integrators write: calls, SCADA signals, planned works.

Extra fields are allowed (integrators add their own); unknown types and versions are refused
by the codec. Never edit a published version: add v2 beside it and an upcaster in the codec.
"""

from typing import Annotated, Literal, Self

from pydantic import ConfigDict, Field, model_validator

from events.base import Event, UtcDatetime, Utility

Scope = Literal["whole_building", "only_me", "unknown"]
Signal = Literal[
    "breaker_open", "breaker_closed", "pressure_low", "supply_temp_low", "alarm", "normal"
]
Quality = Literal["good", "suspect", "invalid"]

# Signals that mean "the device has stopped supplying" and those that mean "supply is back".
FAULT_SIGNALS: frozenset[str] = frozenset(
    {"breaker_open", "pressure_low", "supply_temp_low", "alarm"}
)
RESTORE_SIGNALS: frozenset[str] = frozenset({"breaker_closed", "normal"})

ShortText = Annotated[str, Field(min_length=1, max_length=200)]


class InboundBase(Event):
    model_config = ConfigDict(frozen=True, extra="allow")

    schema_version: Literal[1] = 1
    recorded_at: UtcDatetime | None = Field(
        default=None, description="When the service accepted the event (set on ingest)."
    )
    recorded_by: str | None = Field(
        default=None, description="Who sent it: a login or 'key:<name>' (set on ingest)."
    )


class CallReported(InboundBase):
    """A customer called the hotline about a problem at a place."""

    type: Literal["call_reported"] = "call_reported"
    utility: Utility
    premise_id: ShortText | None = None
    building_id: ShortText | None = None
    address: Annotated[str, Field(min_length=1, max_length=500)] | None = None
    caller: Annotated[str, Field(max_length=40)] | None = Field(
        default=None, description="Caller phone number; personal data, masked in logs."
    )
    symptom: Annotated[str, Field(max_length=60)] = "unknown"
    scope: Scope = "unknown"
    tags: tuple[ShortText, ...] = Field(
        default=(), description="Individual causes (arrears, prepaid_empty, own_appliance...)."
    )
    notes: Annotated[str, Field(max_length=2000)] | None = None

    @model_validator(mode="after")
    def _has_a_place(self) -> Self:
        if not (self.premise_id or self.building_id or self.address):
            raise ValueError("a call needs at least one of premise_id, building_id or address")
        return self


class ScadaSignal(InboundBase):
    """A state change reported by a control system for one network device."""

    type: Literal["scada_signal"] = "scada_signal"
    device_id: ShortText
    signal: Signal
    quality: Quality = "good"


class PlannedWorkScheduled(InboundBase):
    """Maintenance that takes devices out of service for a window."""

    type: Literal["planned_work_scheduled"] = "planned_work_scheduled"
    work_id: ShortText
    device_ids: tuple[ShortText, ...] = Field(min_length=1)
    starts_at: UtcDatetime
    ends_at: UtcDatetime
    reason: Annotated[str, Field(max_length=500)] = "planned maintenance"

    @model_validator(mode="after")
    def _window_is_ordered(self) -> Self:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class PlannedWorkCancelled(InboundBase):
    """A planned work withdrawn before or during its window."""

    type: Literal["planned_work_cancelled"] = "planned_work_cancelled"
    work_id: ShortText
    device_ids: tuple[ShortText, ...] = ()
    starts_at: UtcDatetime | None = None
    ends_at: UtcDatetime | None = None
    reason: Annotated[str, Field(max_length=500)] = "cancelled"


class OperatorAction(InboundBase):
    """Something a shift lead did to an incident; `by` is who (the login, once there is one)."""

    incident_id: ShortText
    by: ShortText
    note: Annotated[str, Field(max_length=2000)] | None = None


class IncidentAcknowledged(OperatorAction):
    """A shift lead took ownership: unacknowledged reminders stop."""

    type: Literal["incident_acknowledged"] = "incident_acknowledged"


class CauseSet(OperatorAction):
    """The cause as the crew or the lead knows it, read out to callers from now on."""

    type: Literal["cause_set"] = "cause_set"
    cause: Annotated[str, Field(min_length=1, max_length=200)]


class EtrSet(OperatorAction):
    """The expected time of restoration, read out to callers from now on."""

    type: Literal["etr_set"] = "etr_set"
    etr: UtcDatetime


class IncidentResolved(OperatorAction):
    """A lead closed the incident by hand (supply is back, or it was no outage)."""

    type: Literal["incident_resolved"] = "incident_resolved"


ACTION_TYPES = ("incident_acknowledged", "cause_set", "etr_set", "incident_resolved")
OperatorActions = IncidentAcknowledged | CauseSet | EtrSet | IncidentResolved

InboundEvent = Annotated[
    CallReported
    | ScadaSignal
    | PlannedWorkScheduled
    | PlannedWorkCancelled
    | IncidentAcknowledged
    | CauseSet
    | EtrSet
    | IncidentResolved,
    Field(discriminator="type"),
]
