"""Events the service makes for itself: clock ticks and inbound events routed to a domain."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from events.base import UtcDatetime
from events.inbound import (
    CallReported,
    CauseSet,
    EtrSet,
    IncidentAcknowledged,
    IncidentResolved,
    PlannedWorkCancelled,
    PlannedWorkScheduled,
    ScadaSignal,
)


class Tick(BaseModel):
    """Time passing, from the stream layer's timer: the only way a clock reaches a correlator."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["tick"] = "tick"
    domain: str
    occurred_at: UtcDatetime


class Routed(BaseModel):
    """An inbound event placed on the network: the node it concerns and its correlation domain."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["routed"] = "routed"
    domain: str = Field(description="The tree root the node hangs from; the partition key.")
    node_id: str | None = Field(default=None, description="Resolved node (None for work orders).")
    resolved_by: str | None = None
    event: (
        CallReported
        | ScadaSignal
        | PlannedWorkScheduled
        | PlannedWorkCancelled
        | IncidentAcknowledged
        | CauseSet
        | EtrSet
        | IncidentResolved
    ) = Field(discriminator="type")

    @property
    def occurred_at(self) -> UtcDatetime:
        return self.event.occurred_at

    @property
    def event_id(self) -> str:
        return self.event.event_id
