"""The envelope every event shares: identity, event time, schema version, causation."""

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

Utility = Literal["heat", "power", "water", "cable", "telecom"]


def _as_utc(value: datetime) -> datetime:
    # Event time must compare across sources: a timestamp without zone is taken as UTC.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
EventId = Annotated[str, Field(min_length=1, max_length=200)]


class Event(BaseModel):
    """Base of every event. Subclasses add a `type` Literal and `schema_version`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str  # each concrete event narrows this to its Literal name
    event_id: EventId
    occurred_at: UtcDatetime = Field(description="Event time: when it happened in the world.")
    correlation_id: str | None = Field(
        default=None, description="The incident or conversation this event belongs to."
    )
    causation_id: str | None = Field(default=None, description="The event that caused this one.")
