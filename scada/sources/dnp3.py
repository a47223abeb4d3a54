"""DNP3 master adapter: polls one outstation over TCP and emits its points (library `dnp3py`).

A point's address is `<kind>:<index>`, with the index as the outstation's point list numbers it:

    binary:3    binary input 3 (static g1, events g2): bool, true = on/closed
    double:0    double-bit binary input 0 (g3, g4): 0 intermediate, 1 off/open, 2 on/closed,
                3 indeterminate, the same as IEC double points
    analog:1    analog input 1 (g30, g32): float

Binary and double-bit points map to breaker or alarm points, analog points to supply_temp or
pressure points; anything else is refused at start with the point's line.

The session: connect, (unsolicited mode: disable unsolicited), integrity poll (class 1, 2, 3
and 0) giving every point's present value, (enable unsolicited), then an event poll (class 1,
2, 3) every `event_interval` and an integrity poll every `integrity_interval`. Between polls
the link is read, so an unsolicited response is reported as it arrives and a closed link is
seen at once. A response saying events are waiting is followed by an event poll at once; one
saying the event buffer overflowed, or that the outstation restarted, by an integrity poll.

Quality comes from the DNP3 flags: ONLINE clear or COMM_LOST -> invalid; RESTART, REMOTE_FORCED,
LOCAL_FORCED, CHATTER_FILTER / OVER_RANGE or REFERENCE_ERR -> suspect. `source_time` is the
event's own time (g2v2/g2v3, g4v2/g4v3, g32v3 etc.) when the outstation sends one, else None
(static values carry no time; the connector then uses its receive time).
"""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import structlog
from pydantic import AfterValidator, Field

from events.inbound import Quality
from scada.points import ANALOGUE_KINDS, PointConfig
from scada.sources.base import Emit, PointUpdate, SourceConfig, SourceLost

if TYPE_CHECKING:
    from dnp3.master import MasterTcpRunner
    from dnp3.master.handler import ResponseInfo

log = structlog.get_logger("outage.scada.dnp3")

ADDRESS = re.compile(r"^(binary|double|analog):(0|[1-9][0-9]{0,4})$")
MAX_INDEX = 65535

# Flag bits shared by binary, double-bit and analog objects (IEEE 1815-2012 A.2, A.4, A.14).
_ONLINE = 0x01
_RESTART = 0x02
_COMM_LOST = 0x04
_REMOTE_FORCED = 0x08
_LOCAL_FORCED = 0x10
_BIT5 = 0x20  # CHATTER_FILTER for binary and double-bit, OVER_RANGE for analog
_REFERENCE_ERR = 0x40  # analog only: on binary objects bit 6 is reserved or the state
_SUSPECT = _RESTART | _REMOTE_FORCED | _LOCAL_FORCED | _BIT5

# Internal indications (IIN1 low byte, IIN2 high byte).
_IIN_EVENTS = 0x0002 | 0x0004 | 0x0008  # class 1, 2, 3 events waiting
_IIN_RESTART = 0x0080
_IIN_OVERFLOW = 0x0800


def quality_of(flags: int, *, analog: bool = False) -> Quality:
    """The connector's quality for a DNP3 flag octet (state bits already removed)."""
    if not flags & _ONLINE or flags & _COMM_LOST:
        return "invalid"
    suspect = _SUSPECT | (_REFERENCE_ERR if analog else 0)
    return "suspect" if flags & suspect else "good"


def _check_address(point: PointConfig) -> PointConfig:
    match = ADDRESS.match(point.point)
    if match is None:
        raise ValueError(
            f"DNP3 point {point.point!r}: write binary:<index>, double:<index> or analog:<index>"
        )
    kind, index = match.group(1), int(match.group(2))
    if index > MAX_INDEX:
        raise ValueError(f"DNP3 point {point.point!r}: index above {MAX_INDEX}")
    if (kind == "analog") != (point.kind in ANALOGUE_KINDS):
        wanted = "supply_temp or pressure" if kind == "analog" else "breaker or alarm"
        raise ValueError(f"DNP3 point {point.point!r} is a {kind} input: its kind must be {wanted}")
    return point


Dnp3Point = Annotated[PointConfig, AfterValidator(_check_address)]


@dataclass(frozen=True)
class _Reading:
    point: str
    value: bool | int | float
    flags: int
    analog: bool
    at: datetime | None


class _Collector:
    """The master's SOE handler: keeps the values of configured points, in arrival order.

    The library calls it synchronously while it parses a response; `Dnp3Source` drains it
    after each exchange and awaits `emit` for each value.
    """

    def __init__(self, points: frozenset[str]) -> None:
        self.points = points
        self.pending: list[_Reading] = []
        self.seen: set[str] = set()

    def _keep(self, kind: str, values: list[Any], *, analog: bool = False) -> None:
        for v in values:
            point = f"{kind}:{v.index}"
            if point not in self.points:
                continue
            if kind == "double":
                value: bool | int | float = int(v.state)
            elif analog:
                value = float(v.value)
                if not math.isfinite(value):
                    continue
            else:
                value = bool(v.value)
            self.seen.add(point)
            self.pending.append(_Reading(point, value, int(v.quality), analog, v.timestamp))

    def on_binary_input(self, values: list[Any], info: Any) -> None:
        self._keep("binary", values)

    def on_double_bit_input(self, values: list[Any], info: Any) -> None:
        self._keep("double", values)

    def on_analog_input(self, values: list[Any], info: Any) -> None:
        self._keep("analog", values, analog=True)

    # Outputs and counters are not mapped to signals; the library calls these all the same.
    def on_binary_output(self, values: list[Any], info: Any) -> None:
        return None

    def on_analog_output(self, values: list[Any], info: Any) -> None:
        return None

    def on_counter(self, values: list[Any], info: Any) -> None:
        return None

    def on_frozen_counter(self, values: list[Any], info: Any) -> None:
        return None


class Dnp3Source(SourceConfig):
    """A DNP3 outstation polled over TCP (the connector is the master)."""

    type: Literal["dnp3"]
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(default=20000, ge=1, le=65535)
    master_address: int = Field(
        default=1, ge=0, le=65519, description="This master's link address."
    )
    outstation_address: int = Field(
        default=10, ge=0, le=65519, description="The outstation's link address."
    )
    points: tuple[Dnp3Point, ...] = Field(min_length=1)
    integrity_interval: float = Field(
        default=300.0, gt=0, description="Seconds between integrity polls (class 1, 2, 3, 0)."
    )
    event_interval: float = Field(
        default=2.0, gt=0, description="Seconds between event polls (class 1, 2, 3)."
    )
    unsolicited: bool = Field(
        default=False, description="Ask the outstation to report events unsolicited too."
    )
    event_time: bool = Field(
        default=True,
        description="Use the outstation's event times; false when its clock is not set.",
    )
    response_timeout: float = Field(default=5.0, gt=0, description="Seconds to wait for a reply.")
    connect_timeout: float = Field(default=5.0, gt=0, description="Seconds to wait for TCP.")

    async def run(self, emit: Emit) -> None:
        """Connect, integrity poll, then event polls until the link goes (SourceLost)."""
        from dnp3.master import Master, MasterConfig, MasterRunnerError, MasterTcpRunner
        from dnp3.transport_io.channel import ChannelError

        where = f"DNP3 outstation {self.outstation_address} at {self.host}:{self.port}"
        collector = _Collector(frozenset(p.point for p in self.points))
        master = Master(
            config=MasterConfig(
                address=self.master_address,
                outstation_address=self.outstation_address,
                response_timeout=self.response_timeout,
            ),
            handler=collector,
        )
        runner = MasterTcpRunner(
            master=master, host=self.host, port=self.port, response_timeout=self.response_timeout
        )
        try:
            await asyncio.wait_for(runner.open(), self.connect_timeout)
        except TimeoutError:
            raise SourceLost(f"{where}: no connection within {self.connect_timeout:g} s") from None
        except (MasterRunnerError, ChannelError, OSError) as error:
            raise SourceLost(f"{where}: cannot connect: {error}") from None
        try:
            await self._session(runner, collector, emit)
        except (MasterRunnerError, ChannelError, OSError) as error:
            # ResponseTimeoutError and LinkError are MasterRunnerErrors: a silent outstation
            # is as lost as a closed socket.
            raise SourceLost(f"{where}: {error}") from None
        finally:
            await runner.close()

    async def _session(self, runner: MasterTcpRunner, collector: _Collector, emit: Emit) -> None:
        loop = asyncio.get_running_loop()
        if self.unsolicited:
            # Quiet first, so the integrity poll is the one snapshot (IEEE 1815 startup order).
            await runner.disable_unsolicited()
        first = await runner.integrity_poll()
        await self._drain(collector, emit)
        missing = sorted(p.point for p in self.points if p.point not in collector.seen)
        if missing:
            log.warning("scada.dnp3_points_not_reported", source=self.name, points=missing)
        # DEVICE_RESTART stays set until a master clears it: only its appearance means a restart.
        restarted = any(int(info.iin) & _IIN_RESTART for info in first)
        if self.unsolicited:
            await runner.enable_unsolicited()
            await self._drain(collector, emit)
        now = loop.time()
        next_integrity, next_events = now + self.integrity_interval, now + self.event_interval
        while True:
            wait = max(0.0, min(next_integrity, next_events) - loop.time())
            # Reading between polls reports unsolicited responses at once and sees a closed
            # link at once instead of at the next poll.
            infos: list[ResponseInfo] = []
            heard = await runner.listen_unsolicited(timeout=wait)
            integrity = False
            if heard is not None:
                infos = [heard]
            else:
                now = loop.time()
                if now >= next_integrity:
                    infos, integrity = await runner.integrity_poll(), True
                    next_integrity = now + self.integrity_interval
                    next_events = now + self.event_interval
                elif now >= next_events:
                    infos = await runner.class_poll()
                    next_events = now + self.event_interval
            await self._drain(collector, emit)
            if not infos:
                continue
            iin = 0
            for info in infos:
                iin |= int(info.iin)
            now = loop.time()
            if not integrity and (iin & _IIN_OVERFLOW or (iin & _IIN_RESTART and not restarted)):
                # Events were lost, or the outstation restarted under us: re-read everything.
                next_integrity = now
            elif iin & _IIN_EVENTS:
                next_events = now
            restarted = bool(iin & _IIN_RESTART)

    async def _drain(self, collector: _Collector, emit: Emit) -> None:
        readings, collector.pending = collector.pending, []
        for r in readings:
            await emit(
                PointUpdate(
                    point=r.point,
                    value=r.value,
                    quality=quality_of(r.flags, analog=r.analog),
                    source_time=r.at if self.event_time else None,
                )
            )
