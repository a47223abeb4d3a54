"""The state one correlation domain keeps: held events, pending calls, open incidents, works.

Records are frozen models replaced on change; the `DomainState` container is updated in place
by `evolve` because a storm folds thousands of events into one domain and copying it for every
event would cost more than the correlation itself. It serialises to JSON for the stream table.
"""

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from events.base import UtcDatetime, Utility
from events.derived import Phase
from events.internal import Routed


class PendingCall(BaseModel):
    """A call not yet explained: waits for neighbours until its window passes."""

    model_config = ConfigDict(frozen=True)

    call_id: str
    node_id: str
    reporter: str
    utility: Utility
    occurred_at: UtcDatetime
    whole_building: bool = False


class Incident(BaseModel):
    """An open incident as the correlator needs it (the read models keep the rest)."""

    model_config = ConfigDict(frozen=True)

    incident_id: str
    device_id: str
    device_kind: str
    utility: Utility
    phase: Phase
    cause: str
    opened_at: UtcDatetime
    last_report_at: UtcDatetime
    customers_affected: int
    planned: bool = False
    work_id: str | None = None
    confirmed_by: str | None = None
    reporters: tuple[str, ...] = ()  # distinct reporters; the read model keeps the call ids
    repeats: dict[str, int] = {}  # reporter -> calls after the first (complaint risk)
    area: str = ""
    etr: UtcDatetime | None = None
    acknowledged_by: str | None = None
    reminders_sent: int = 0  # unacknowledged reminders so far
    deadline_stage: int = 0  # 1 reminder sent, 2 escalated to the supervisor
    merged_ids: tuple[str, ...] = ()  # incidents folded into this one, restored with it


class PlannedWork(BaseModel):
    """A planned work in this domain and the planned incidents its window opened."""

    model_config = ConfigDict(frozen=True)

    work_id: str
    device_ids: tuple[str, ...]
    starts_at: UtcDatetime
    ends_at: UtcDatetime
    reason: str
    incident_ids: dict[str, str] = {}  # device id -> planned incident id, once started


class DomainState(BaseModel):
    """Everything one domain's correlator remembers between events."""

    domain: str
    clock: datetime | None = None  # correlation time: how far timers have been run
    watermark: datetime | None = None  # the latest event time seen
    held: list[Routed] = []  # events waiting for the lateness bound, in event-time order
    # Accepted event ids -> event time, for de-duplication. The stream layer stores these
    # one table entry each, apart from the snapshot, so saving a domain costs what is active
    # in it now, not its whole history.
    seen: dict[str, datetime] = {}
    pending: dict[str, PendingCall] = {}
    incidents: dict[str, Incident] = {}  # open ones only: suspected, confirmed or stale
    planned: dict[str, PlannedWork] = {}

    @property
    def is_idle(self) -> bool:
        """Nothing waits on time: ticks can skip this domain."""
        return not (self.held or self.pending or self.incidents or self.planned)
