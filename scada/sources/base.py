"""What every protocol adapter is: a config model and an async `run(emit)`.

An adapter connects, reads the present state of every configured point (general
interrogation, integrity poll, subscription initial values, retained messages), calls `emit`
for each value and for every change after, and raises `SourceLost` when the connection goes.
It never decides signals: `scada.points.Mapper` does, so all protocols behave the same.
Protocol libraries are imported inside `run`, so an optional one (c104) need not be installed
for the others to work.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from events.inbound import Quality
from scada.points import PointConfig


@dataclass(frozen=True)
class PointUpdate:
    """One value of one point as the source reported it.

    `point` is the point's address exactly as the config writes it (an IOA, a DNP3 index,
    an OPC UA node id, an MQTT topic or Sparkplug metric name). `value` is the raw value: bool
    for single points, int 0-3 for IEC double points (1 open/off, 2 closed/on), float for
    analogues, or a string such as "open"/"closed". `source_time` is the source's own
    timestamp (None when the protocol sent none: the connector then uses its receive time).
    """

    point: str
    value: bool | int | float | str | None
    quality: Quality = "good"
    source_time: datetime | None = None


class Emit(Protocol):
    """Where a source reports: every value, and (optionally) that the connection is up.

    The first value also counts as "connected"; a source whose present state may take a while
    (MQTT without retained messages, Sparkplug nodes that have not re-birthed) calls
    `connected()` once the session is established, so no false `scada_source_lost` is raised.
    """

    async def __call__(self, update: PointUpdate, /) -> None: ...

    async def connected(self) -> None: ...


class SourceLost(Exception):
    """The connection to the source is gone (or could not be made); `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SourceConfig(BaseModel):
    """Fields every source has; each protocol adds its own and narrows `type`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str
    name: str = Field(min_length=1, max_length=100, description="Unique within the site.")
    points: tuple[PointConfig, ...] = Field(min_length=1)
    reconnect_initial: float = Field(default=1.0, gt=0, description="First retry delay (s).")
    reconnect_max: float = Field(default=30.0, gt=0, description="Longest retry delay (s).")
    lost_after: float = Field(
        default=10.0,
        ge=0,
        description="Seconds without a connection before `scada_source_lost` is raised.",
    )

    async def run(self, emit: Emit) -> None:
        """Connect, emit every point's present value, then every change; raise SourceLost."""
        raise NotImplementedError
