"""The event contract: every fact the service takes in or derives, as frozen, versioned models.

Pure domain code: imports the standard library and pydantic only.
"""

from events.base import Event, Utility
from events.codec import (
    EventRejected,
    decode_derived,
    decode_inbound,
    encode,
    json_schemas,
)
from events.derived import (
    AlertRaised,
    CallAttached,
    CallPending,
    DerivedEvent,
    IncidentConfirmed,
    IncidentEscalated,
    IncidentOpened,
    IncidentRestored,
    IncidentsMerged,
    IncidentStale,
    IndividualFault,
)
from events.inbound import (
    CallReported,
    InboundEvent,
    PlannedWorkCancelled,
    PlannedWorkScheduled,
    ScadaSignal,
)
from events.internal import Routed, Tick

__all__ = [
    "AlertRaised",
    "CallAttached",
    "CallPending",
    "CallReported",
    "DerivedEvent",
    "Event",
    "EventRejected",
    "InboundEvent",
    "IncidentConfirmed",
    "IncidentEscalated",
    "IncidentOpened",
    "IncidentRestored",
    "IncidentStale",
    "IncidentsMerged",
    "IndividualFault",
    "PlannedWorkCancelled",
    "PlannedWorkScheduled",
    "Routed",
    "ScadaSignal",
    "Tick",
    "Utility",
    "decode_derived",
    "decode_inbound",
    "encode",
    "json_schemas",
]
