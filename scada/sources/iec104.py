"""IEC 60870-5-104 client adapter: one station (common address) of one RTU or gateway.

The library is `c104` (Fraunhofer FIT), which is GPL-3.0: it is the optional extra `iec104`
(`pip install 'outage-correlator[iec104]'`), imported only inside `run`, and a config with an
iec104 source is refused at start when it is missing.

A point's address is its information object address (IOA) in decimal, `"1001"`. No ASDU type
is configured: the station's own type is taken, whatever it is, because RTUs differ (many
answer the general interrogation with M_DP_NA_1 and report changes as M_DP_TB_1):

    single point   M_SP_NA_1 / TA_1 / TB_1    -> bool (true = on/closed)   breaker, alarm
    double point   M_DP_NA_1 / TA_1 / TB_1    -> int 0-3 (1 off/open, 2 on/closed)
    measured value M_ME_NA/NB/NC/ND/TA/TB/TC/TD/TE/TF -> float   supply_temp, pressure

so an analogue's `low` is in the units the station sends (normalized values are -1..+1,
scaled values integers). A value of another type, or of a type that does not fit the point's
kind, is dropped with one warning per point.

The session: connect (t0 `connect_timeout`), STARTDT, a station general interrogation of
`common_address` (every point's present value; its positive confirmation is when the source
counts as connected: `emit.connected()`), then spontaneous changes; with
`interrogation_interval` the interrogation is repeated, which heals a change the station lost.
A refused interrogation (wrong common address), one not confirmed within t1 `ack_timeout`,
or a closed connection raises `SourceLost`; a silent link is closed by the library after
t3 `test_interval` + t1.

Quality from the quality descriptor: IV -> invalid; NT, SB, BL, OV (and EI of protection
events) -> suspect. `source_time` is the CP56Time2a time tag (read as UTC, as lib60870 writes
it) when the type has one, else None.

c104 calls back on its own threads; the callbacks only copy values out and hand them to the
event loop with `call_soon_threadsafe`. c104 checks callback signatures by their evaluated
annotations, so this module does not use `from __future__ import annotations`.
"""

import asyncio
import contextlib
import importlib.util
import math
import re
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Literal, Self

import structlog
from pydantic import AfterValidator, Field, model_validator

from events.inbound import Quality
from scada.points import ANALOGUE_KINDS, PointConfig
from scada.sources.base import Emit, PointUpdate, SourceConfig, SourceLost

if TYPE_CHECKING:
    import c104

log = structlog.get_logger("outage.scada.iec104")

INSTALL_HINT = (
    "IEC 60870-5-104 sources need the optional package c104 (GPL-3.0): "
    "pip install 'outage-correlator[iec104]'"
)
IOA = re.compile(r"^[1-9][0-9]{0,7}$")
MAX_IOA = 16_777_215  # three octets

# Quality descriptor bits (IEC 60870-5-101, 7.2.6.3/4); c104.Quality uses the same values.
_IV, _NT, _SB, _BL, _EI, _OV = 0x80, 0x40, 0x20, 0x10, 0x08, 0x01
_SUSPECT = _NT | _SB | _BL | _EI | _OV

_C_IC_NA_1 = 100  # the interrogation command's type id
_REFUSALS = frozenset({"UNKNOWN_TYPE_ID", "UNKNOWN_COT", "UNKNOWN_CA", "UNKNOWN_IOA"})
_NUDGE_AFTER = 0.5  # seconds in OPEN_MUTED before STARTDT is repeated (see `_Link.nudge`)


def quality_of(bits: int) -> Quality:
    """The connector's quality for an IEC quality descriptor."""
    if bits & _IV:
        return "invalid"
    return "suspect" if bits & _SUSPECT else "good"


def source_time(recorded_at: datetime | None) -> datetime | None:
    """The time tag as an aware UTC datetime.

    c104 2.x turns the CP56Time2a (UTC on the wire) into a naive datetime in the process's
    local time zone; `astimezone` reads a naive datetime as local time, so this undoes it.
    """
    return None if recorded_at is None else recorded_at.astimezone(UTC)


def c104_installed() -> bool:
    try:
        return importlib.util.find_spec("c104") is not None
    except (ImportError, ValueError):  # ValueError: sys.modules holds None for it
        return False


def _check_ioa(point: PointConfig) -> PointConfig:
    if not IOA.match(point.point) or int(point.point) > MAX_IOA:
        raise ValueError(
            f"IEC 104 point {point.point!r}: write the information object address in decimal, "
            f"1 to {MAX_IOA}, without leading zeros"
        )
    return point


Iec104Point = Annotated[PointConfig, AfterValidator(_check_ioa)]


class Iec104Source(SourceConfig):
    """One station of an IEC 60870-5-104 server (RTU, gateway); the connector is the client."""

    type: Literal["iec104"]
    host: str = Field(min_length=1, max_length=253, description="IPv4 address or host name.")
    port: int = Field(default=2404, ge=1, le=65535)
    common_address: int = Field(ge=1, le=65534, description="The station's ASDU address.")
    originator_address: int = Field(default=0, ge=0, le=255, description="This client's.")
    points: tuple[Iec104Point, ...] = Field(min_length=1)
    connect_timeout: int = Field(default=10, ge=1, le=255, description="t0: TCP connect (s).")
    ack_timeout: int = Field(
        default=15, ge=2, le=255, description="t1: wait for an acknowledgement (s)."
    )
    test_interval: int = Field(
        default=20, ge=1, le=255, description="t3: idle time before a TESTFR (s)."
    )
    interrogation_interval: float = Field(
        default=0.0, ge=0, description="Repeat the general interrogation (s); 0: on connect only."
    )

    @model_validator(mode="after")
    def _usable(self) -> Self:
        ioas = [p.point for p in self.points]
        twice = sorted({ioa for ioa in ioas if ioas.count(ioa) > 1}, key=int)
        if twice:
            raise ValueError(f"IOA {', '.join(twice)} mapped more than once")
        if not c104_installed():
            raise ValueError(INSTALL_HINT)
        return self

    @property
    def where(self) -> str:
        return f"IEC 104 station {self.common_address} at {self.host}:{self.port}"

    async def run(self, emit: Emit) -> None:
        """Connect, interrogate, emit every point and every change after; raise SourceLost."""
        try:
            import c104
        except ImportError:
            raise RuntimeError(INSTALL_HINT) from None

        loop = asyncio.get_running_loop()
        try:
            found = await loop.getaddrinfo(
                self.host, self.port, family=socket.AF_INET, type=socket.SOCK_STREAM
            )
        except OSError as error:
            raise SourceLost(f"{self.where}: cannot resolve {self.host}: {error}") from None
        address = str(found[0][4][0])  # c104 takes an IPv4 address only

        client = c104.Client()
        client.originator_address = self.originator_address
        connection = client.add_connection(ip=address, port=self.port, init=c104.Init.NONE)
        if connection is None:
            raise SourceLost(f"{self.where}: c104 refused the connection settings")
        parameters = connection.protocol_parameters
        parameters.connection_timeout = self.connect_timeout
        parameters.message_timeout = self.ack_timeout
        # t2 (acknowledge received frames) must stay below the peer's t1.
        parameters.confirm_interval = min(parameters.confirm_interval, self.ack_timeout - 1)
        parameters.keep_alive_interval = self.test_interval

        link = _Link(self, loop, connection)
        link.wire(client)
        try:
            await asyncio.to_thread(client.start)
            await link.serve(emit)
        finally:
            link.live = False
            await asyncio.to_thread(client.stop)


@dataclass(frozen=True)
class _Reading:
    """One information object as it came off the wire, copied out on c104's thread."""

    ioa: int
    asdu: str
    value: bool | int | float | None
    bits: int
    recorded_at: datetime | None


@dataclass(frozen=True)
class _Phase:
    """The connection opened (STARTDT confirmed) or closed."""

    open: bool
    name: str


@dataclass(frozen=True)
class _Asking:
    """A general interrogation is about to be sent: its confirmation is due within t1."""


@dataclass(frozen=True)
class _Answer:
    """A reply to the general interrogation (ACT_CON, ACT_TERM, or a refusal)."""

    cot: str
    negative: bool


_Event = _Reading | _Phase | _Asking | _Answer


class _Link:
    """One connection's session: c104's callbacks in, `PointUpdate`s out to `emit`."""

    def __init__(
        self, source: Iec104Source, loop: asyncio.AbstractEventLoop, connection: "c104.Connection"
    ) -> None:
        self.source = source
        self.loop = loop
        self.connection = connection
        self.events: asyncio.Queue[_Event] = asyncio.Queue()
        self.points = {int(p.point): p for p in source.points}
        self.warned: set[int] = set()
        self.live = True

    def put(self, event: _Event) -> None:
        """Queue an event from any thread (c104 calls back on its own)."""
        if self.live:
            # After `run` has ended the loop may be closed; late callbacks are dropped.
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.events.put_nowait, event)

    def wire(self, client: "c104.Client") -> None:
        """Hang the callbacks on c104; each copies what it needs and returns at once."""
        import c104

        ca = self.source.common_address
        connection = self.connection
        station = connection.add_station(common_address=ca)
        if station is None:
            raise SourceLost(f"{self.source.where}: c104 refused the common address")
        closed = (c104.ConnectionState.CLOSED, c104.ConnectionState.CLOSED_AWAIT_RECONNECT)

        def copy(message: c104.IncomingMessage) -> None:
            try:
                info = message.info
                raw = info.value
                value: bool | int | float | None = None
                if isinstance(raw, bool):
                    value = raw
                elif isinstance(raw, c104.Double):
                    value = int(raw.value)
                elif isinstance(info, c104.ShortInfo | c104.NormalizedInfo | c104.ScaledInfo):
                    value = float(raw)  # type: ignore[arg-type]  # float, NormalizedFloat, Int16
                quality = info.quality
                bits = int(quality.value) if quality is not None else 0
                at = info.recorded_at
                self.put(_Reading(message.io_address, message.type.name, value, bits, at))
            except Exception:  # never into c104's thread: log it and keep the link
                log.exception("iec104 message not read", source=self.source.name)

        def on_state_change(connection: c104.Connection, state: c104.ConnectionState) -> None:
            if state == c104.ConnectionState.OPEN:
                self.put(_Phase(open=True, name=state.name))
            elif state in closed:
                self.put(_Phase(open=False, name=state.name))

        def on_new_station(
            client: c104.Client, connection: c104.Connection, common_address: int
        ) -> None:
            return None  # other stations behind the same gateway are not ours: ignore them

        def on_new_point(
            client: c104.Client, station: c104.Station, io_address: int, point_type: c104.Type
        ) -> None:
            # A configured IOA is registered with the type the station first sends for it.
            if station.common_address == ca and io_address in self.points:
                point = station.add_point(io_address=io_address, type=point_type)
                if point is not None:
                    point.on_receive(callable=on_receive)

        def on_receive(
            point: c104.Point, previous_info: c104.Information, message: c104.IncomingMessage
        ) -> c104.ResponseState:
            copy(message)
            return c104.ResponseState.NONE

        def on_unexpected_message(
            connection: c104.Connection, message: c104.IncomingMessage, cause: c104.Umc
        ) -> None:
            # The same IOA in another type than first registered (M_DP_NA_1 in the
            # interrogation, M_DP_TB_1 on a change): c104 does not deliver it to the point.
            if (
                cause == c104.Umc.MISMATCHED_TYPE_ID
                and message.common_address == ca
                and message.io_address in self.points
            ):
                copy(message)

        def on_receive_raw(connection: c104.Connection, data: bytes) -> None:
            # The interrogation's replies are read off the wire: c104 2.2.1's own result can
            # say True for a refused one (a later reply overwrites the failure).
            if len(data) > 6 and data[6] == _C_IC_NA_1:
                try:
                    frame = c104.explain_bytes_dict(apdu=data)
                    if frame.get("commonAddress") == ca:
                        self.put(_Answer(frame["cot"].name, bool(frame["negative"])))
                except Exception:  # an unreadable reply: its t1 deadline still applies
                    log.exception("iec104 interrogation reply not read", source=self.source.name)

        client.on_new_station(callable=on_new_station)
        client.on_new_point(callable=on_new_point)
        connection.on_state_change(callable=on_state_change)
        connection.on_unexpected_message(callable=on_unexpected_message)
        connection.on_receive_raw(callable=on_receive_raw)

    async def serve(self, emit: Emit) -> None:
        """Wait for the link, interrogate, and emit every reading until it closes."""
        source, where, loop = self.source, self.source.where, self.loop
        connect_by = loop.time() + source.connect_timeout + 2  # t0, then STARTDT
        confirm_by: float | None = None  # the pending interrogation's ACT_CON
        interrogations: asyncio.Task[None] | None = None
        seen: set[int] = set()
        confirmed = checked = False
        try:
            while True:
                due = [] if interrogations else [min(connect_by, loop.time() + _NUDGE_AFTER)]
                due += [confirm_by] if confirm_by is not None else []
                wait = max(0.0, min(due) - loop.time()) if due else None
                try:
                    # Not wait_for: in 3.11 it can swallow a cancel that meets a ready result.
                    async with asyncio.timeout(wait):
                        event = await self.events.get()
                except TimeoutError:
                    if interrogations is None and loop.time() >= connect_by:
                        raise SourceLost(
                            f"{where}: no connection within {source.connect_timeout} s"
                        ) from None
                    if confirm_by is not None and loop.time() >= confirm_by:
                        raise SourceLost(
                            f"{where}: general interrogation not confirmed within "
                            f"{source.ack_timeout} s"
                        ) from None
                    if interrogations is None:
                        await self.nudge()
                    continue
                if isinstance(event, _Reading):
                    update = self.update(event)
                    if update is not None:
                        seen.add(event.ioa)
                        await emit(update)
                elif isinstance(event, _Phase):
                    if not event.open:
                        happened = "connection closed" if interrogations else "cannot connect"
                        raise SourceLost(f"{where}: {happened} ({event.name})")
                    if interrogations is None:
                        log.info("iec104 connected", source=source.name, station=where)
                        interrogations = asyncio.create_task(self.interrogate())
                elif isinstance(event, _Asking):
                    confirm_by = loop.time() + source.ack_timeout
                elif event.negative or event.cot in _REFUSALS:
                    raise SourceLost(
                        f"{where}: general interrogation refused ({event.cot}"
                        f"{', negative' if event.negative else ''}); is the common address right?"
                    )
                elif event.cot == "ACTIVATION_CON":
                    confirm_by = None
                    if not confirmed:
                        # Up once the station accepts the interrogation, not at STARTDT: a
                        # station that refuses it (wrong common address) stays "lost".
                        confirmed = True
                        await emit.connected()
                elif event.cot == "ACTIVATION_TERMINATION":
                    confirm_by = None
                    missing = sorted(set(self.points) - seen)
                    if missing and not checked:
                        log.warning(
                            "iec104 points not in the interrogation",
                            source=source.name,
                            ioas=[self.points[ioa].point for ioa in missing],
                        )
                    checked = True
        finally:
            if interrogations is not None:
                interrogations.cancel()

    async def nudge(self) -> None:
        """Repeat STARTDT when c104 stays muted on a link the station has started.

        c104 2.2.1 sometimes takes the STARTDT confirmation before it marks the link open,
        and then waits in OPEN_MUTED for good (about 1 connect in 10 on loopback). A second
        STARTDT act is confirmed again and moves it to OPEN.
        """
        import c104

        if self.connection.state == c104.ConnectionState.OPEN_MUTED:
            await asyncio.to_thread(self.connection.unmute)

    async def interrogate(self) -> None:
        """Station interrogation now and every `interrogation_interval`."""
        import c104

        while True:
            # Queued before sending, so it is handled before any reply.
            self.events.put_nowait(_Asking())
            await asyncio.to_thread(
                self.connection.interrogation,
                common_address=self.source.common_address,
                cause=c104.Cot.ACTIVATION,
                qualifier=c104.Qoi.STATION,
                wait_for_response=False,
            )
            if not self.source.interrogation_interval:
                return
            await asyncio.sleep(self.source.interrogation_interval)

    def update(self, reading: _Reading) -> PointUpdate | None:
        """The PointUpdate for a reading, or None (unknown IOA, unusable type or value)."""
        point = self.points.get(reading.ioa)
        if point is None:
            return None
        value = reading.value
        analogue = point.kind in ANALOGUE_KINDS
        if value is None or isinstance(value, float) != analogue:
            if reading.ioa not in self.warned:
                self.warned.add(reading.ioa)
                log.warning(
                    "iec104 point type does not fit its kind; values dropped",
                    source=self.source.name,
                    ioa=point.point,
                    kind=point.kind,
                    asdu=reading.asdu,
                )
            return None
        if isinstance(value, float) and not math.isfinite(value):
            return None  # NaN or infinity says nothing about a threshold
        return PointUpdate(
            point=point.point,
            value=value,
            quality=quality_of(reading.bits),
            source_time=source_time(reading.recorded_at),
        )
