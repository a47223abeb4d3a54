"""The DNP3 source against real outstations on loopback TCP.

Two outstation implementations: dnp3py's own (the library the source uses as master) and
py1815, an independent one, which sends events with their time (g2v2, g32v3), serves a
double-bit input and reports unsolicited. Each holds a feeder breaker (binary input 0:
true = closed) and a supply temperature (analog input 0). Each test runs the source and the
outstation in one event loop and reads what the source emits; the Mapper turns those into the
signals the connector would publish.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from scada.config import ConfigError, load
from scada.points import Mapper, PointConfig
from scada.sources.base import PointUpdate, SourceLost
from scada.sources.dnp3 import Dnp3Source
from streams.broker import EmbeddedBroker, free_port
from tests.integration.conftest import ROOT, Worker, wait_for
from tests.integration.scada_harness import (
    Ignore,
    RunningSource,
    confirmed_incident,
    run,
    scada_signals,
    signals,
    source_alerts,
    start_connector,
)

pytestmark = pytest.mark.integration

OUTSTATION = 10
MASTER = 1
POINTS = (
    PointConfig(point="binary:0", device="FDR-3", kind="breaker"),
    PointConfig(point="binary:1", device="FDR-2", kind="breaker"),
    PointConfig(point="binary:2", device="FDR-1", kind="breaker"),
    PointConfig(point="analog:0", device="HSUB-1", kind="supply_temp", low=60.0, hysteresis=2.0),
)


class Outstation:
    """A dnp3py outstation serving a breaker, two bad-quality inputs and a temperature."""

    def __init__(self, port: int, *, closed: bool = True, temperature: float = 72.0) -> None:
        from dnp3.core.flags import AnalogQuality, BinaryQuality
        from dnp3.database import Database
        from dnp3.outstation import Outstation as Dnp3Outstation
        from dnp3.outstation import OutstationConfig, OutstationTcpRunner

        self.db = Database()
        self.db.add_binary_input(0, value=closed, quality=BinaryQuality.ONLINE)
        forced = BinaryQuality.ONLINE | BinaryQuality.LOCAL_FORCED
        self.db.add_binary_input(1, value=True, quality=forced)
        self.db.add_binary_input(2, value=True, quality=BinaryQuality.RESTART)  # not online
        self.db.add_analog_input(0, value=temperature, quality=AnalogQuality.ONLINE)
        station = Dnp3Outstation(config=OutstationConfig(address=OUTSTATION), database=self.db)
        self.runner = OutstationTcpRunner(outstation=station, host="127.0.0.1", port=port)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.runner.run())
        await until(lambda: self.runner.is_running, "the outstation listening")

    async def stop(self) -> None:
        await self.runner.stop()
        if self.task is not None:
            await asyncio.wait_for(self.task, 5)

    def set_breaker(self, closed: bool) -> None:
        from dnp3.core.flags import BinaryQuality

        self.db.update_binary_input(0, closed, BinaryQuality.ONLINE)

    def set_temperature(self, value: float) -> None:
        from dnp3.core.flags import AnalogQuality

        self.db.update_analog_input(0, value, AnalogQuality.ONLINE)


class Running(RunningSource):
    """The DNP3 source's `run` as a task, with everything it emitted."""

    def last(self, point: str) -> PointUpdate | None:
        found = [u for u in self.updates if u.point == point]
        return found[-1] if found else None


async def until(check: Callable[[], object], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.02)


def source(port: int, **extra: Any) -> Dnp3Source:
    settings: dict[str, Any] = {
        "type": "dnp3",
        "name": "rtu-dnp3",
        "host": "127.0.0.1",
        "port": port,
        "master_address": MASTER,
        "outstation_address": OUTSTATION,
        "points": POINTS,
        "event_interval": 0.2,
        "response_timeout": 2.0,
        "connect_timeout": 2.0,
    }
    return Dnp3Source.model_validate({**settings, **extra})


async def running_with(port: int, points: int = len(POINTS)) -> Running:
    running = Running(source(port))
    await until(lambda: len({u.point for u in running.updates}) == points, "the integrity poll")
    return running


def test_integrity_poll_gives_every_point_with_value_and_quality() -> None:
    """The integrity poll emits each configured point: bool / float values, quality from flags."""

    async def scenario() -> None:
        port = free_port()
        outstation = Outstation(port, closed=True, temperature=72.0)
        await outstation.start()
        running = await running_with(port)
        by_point = {u.point: u for u in running.updates}
        assert by_point["binary:0"] == PointUpdate("binary:0", True, "good", None)
        assert by_point["binary:1"].quality == "suspect"  # LOCAL_FORCED
        assert by_point["binary:2"].quality == "invalid"  # ONLINE clear
        assert by_point["analog:0"] == PointUpdate("analog:0", 72.0, "good", None)
        mapper = Mapper("north", "rtu-dnp3", POINTS)
        assert ("FDR-3", "breaker_closed", "good") in signals(mapper, running.updates)
        await running.stop()
        await outstation.stop()

    run(scenario)


def test_breaker_trip_is_polled_and_mapped_to_breaker_open() -> None:
    """A breaker opening at the outstation arrives by event poll; the Mapper says breaker_open."""

    async def scenario() -> None:
        port = free_port()
        outstation = Outstation(port, closed=True)
        await outstation.start()
        running = await running_with(port)
        mapper = Mapper("north", "rtu-dnp3", POINTS)
        signals(mapper, running.updates)
        seen = len(running.updates)
        outstation.set_breaker(False)
        await until(lambda: running.last("binary:0") == PointUpdate("binary:0", False), "trip")
        assert signals(mapper, running.updates[seen:]) == [("FDR-3", "breaker_open", "good")]
        await running.stop()
        await outstation.stop()

    run(scenario)


def test_supply_temperature_below_threshold_gives_supply_temp_low() -> None:
    """An analog input falling below `low` arrives as a float; the Mapper says supply_temp_low."""

    async def scenario() -> None:
        port = free_port()
        outstation = Outstation(port, temperature=72.0)
        await outstation.start()
        running = await running_with(port)
        mapper = Mapper("north", "rtu-dnp3", POINTS)
        signals(mapper, running.updates)
        seen = len(running.updates)
        outstation.set_temperature(55.0)
        await until(lambda: running.last("analog:0") == PointUpdate("analog:0", 55.0), "drop")
        assert signals(mapper, running.updates[seen:]) == [("HSUB-1", "supply_temp_low", "good")]
        await running.stop()
        await outstation.stop()

    run(scenario)


def test_stopped_outstation_raises_source_lost_within_seconds() -> None:
    """Stopping the outstation ends `run` with SourceLost in well under the response timeout."""

    async def scenario() -> None:
        port = free_port()
        outstation = Outstation(port)
        await outstation.start()
        running = await running_with(port)
        started = time.monotonic()
        await outstation.stop()
        with pytest.raises(SourceLost, match=f"127.0.0.1:{port}"):
            await asyncio.wait_for(running.task, 5)
        assert time.monotonic() - started < 3

    run(scenario)


def test_no_outstation_listening_raises_source_lost() -> None:
    """With nothing on the port, `run` raises SourceLost saying it cannot connect."""

    async def scenario() -> None:
        with pytest.raises(SourceLost, match="cannot connect"):
            await asyncio.wait_for(source(free_port()).run(Ignore()), 5)

    run(scenario)


def test_reconnect_reads_back_same_state_without_new_events() -> None:
    """After the outstation restarts, the integrity poll reads the same state: no new signals."""

    async def scenario() -> None:
        port = free_port()
        outstation = Outstation(port, closed=False, temperature=55.0)
        await outstation.start()
        running = await running_with(port)
        mapper = Mapper("north", "rtu-dnp3", POINTS)
        first = signals(mapper, running.updates)
        assert ("FDR-3", "breaker_open", "good") in first
        assert ("HSUB-1", "supply_temp_low", "good") in first
        await outstation.stop()
        with pytest.raises(SourceLost):
            await asyncio.wait_for(running.task, 5)

        outstation = Outstation(port, closed=False, temperature=55.0)
        await outstation.start()
        again = await running_with(port)
        assert again.last("binary:0") == PointUpdate("binary:0", False)
        assert signals(mapper, again.updates) == []
        await again.stop()
        await outstation.stop()

    run(scenario)


def test_config_refuses_a_bad_address_with_its_line(tmp_path: Path) -> None:
    """A DNP3 point that is not kind:index, or an analog mapped to a breaker, names its line."""
    config = tmp_path / "scada.yaml"
    head = "site: north\nsources:\n  - name: rtu\n    type: dnp3\n    host: 127.0.0.1\n"
    config.write_text(head + "    points:\n      - {point: 'bi:3', device: FDR-3}\n")
    with pytest.raises(ConfigError, match=r"scada\.yaml:7: .*binary:<index>"):
        load(config)
    config.write_text(head + "    points:\n      - {point: 'analog:3', device: FDR-3}\n")
    with pytest.raises(ConfigError, match=r"scada\.yaml:7: .*supply_temp or pressure"):
        load(config)
    config.write_text(head + "    points:\n      - {point: 'double:3', device: FDR-3}\n")
    assert load(config).sources[0].points[0].point == "double:3"


def test_deploy_example_loads_against_the_sample_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    """deploy/scada/dnp3.yaml is a valid site config whose devices are in the samples."""
    monkeypatch.chdir(ROOT)
    site = load(ROOT / "deploy" / "scada" / "dnp3.yaml")
    assert all(isinstance(s, Dnp3Source) for s in site.sources)
    kinds = {p.point.split(":")[0] for s in site.sources for p in s.points}
    assert kinds == {"binary", "double", "analog"}


class ThreadedOutstation:
    """The dnp3py outstation in a thread of its own loop, for tests whose connector is a process."""

    def __init__(self, port: int, *, closed: bool = True) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.outstation = Outstation(port, closed=closed)
        self.call(self.outstation.start())

    def call(self, work: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(work, self.loop).result(20)

    def set_breaker(self, closed: bool) -> None:
        async def change() -> None:
            self.outstation.set_breaker(closed)

        self.call(change())

    def close(self) -> None:
        if self.outstation.task is not None and not self.outstation.task.done():
            self.call(self.outstation.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def test_end_to_end_trip_confirms_incident_and_loss_alerts(
    broker: EmbeddedBroker, worker: Worker, tmp_path: Path
) -> None:
    """`outage scada run`: a DNP3 trip confirms FDR-3, a stop alerts, a restart repeats nothing."""
    port = free_port()
    config = f"""
site: e2e-dnp3
utility: power
topology: [{ROOT / "topology" / "samples" / "power.csv"}]
sources:
  - name: sub1-rtu
    type: dnp3
    host: 127.0.0.1
    port: {port}
    master_address: {MASTER}
    outstation_address: {OUTSTATION}
    event_interval: 0.2
    response_timeout: 2.0
    reconnect_initial: 0.5
    reconnect_max: 1.0
    lost_after: 2.0
    points:
      - {{point: "binary:0", device: FDR-3, kind: breaker}}
"""
    outstation = ThreadedOutstation(port, closed=True)
    connector = start_connector(config, broker, tmp_path)
    try:
        connector.wait_connected("sub1-rtu")
        before = datetime.now(UTC)
        outstation.set_breaker(False)
        incident = wait_for(lambda: confirmed_incident(worker, "FDR-3"), timeout=60)
        assert incident["device_id"] == "FDR-3"
        # The present state is published at connect, then the trip.
        first, trip = scada_signals(broker, "FDR-3")
        assert (first["signal"], trip["signal"]) == ("breaker_closed", "breaker_open")
        # dnp3py's outstation sends events without time: occurred_at is the receive time.
        assert before <= datetime.fromisoformat(trip["occurred_at"]) <= datetime.now(UTC)
        assert source_alerts(broker, "scada_source_lost") == []

        outstation.close()
        wait_for(lambda: source_alerts(broker, "scada_source_lost"), timeout=30)

        outstation = ThreadedOutstation(port, closed=False)  # still open after the restart
        connector.wait_connected("sub1-rtu", times=2)
        # A later change as a marker: once it is on the topic, the read-back is too.
        outstation.set_breaker(True)
        wait_for(lambda: len(scada_signals(broker, "FDR-3")) >= 3, timeout=30)
        assert [s["signal"] for s in scada_signals(broker, "FDR-3")] == [
            "breaker_closed",
            "breaker_open",
            "breaker_closed",
        ]
    finally:
        connector.stop()
        outstation.close()


PY1815_POINTS = (
    PointConfig(point="binary:0", device="FDR-3", kind="breaker"),
    PointConfig(point="double:0", device="FDR-2", kind="breaker"),
    PointConfig(point="analog:0", device="HSUB-1", kind="supply_temp", low=60.0, hysteresis=2.0),
)


class Py1815Outstation:
    """A py1815 outstation: breaker, double-bit breaker and temperature, timed events."""

    def __init__(self, port: int, *, unsolicited: bool = False) -> None:
        from py1815 import OutstationServer, Session
        from py1815.application import object_header
        from py1815.events import EventBuffers
        from py1815.objects import (
            AnalogPoint,
            AnalogVariation,
            BinaryPoint,
            analog_range,
            binary_range,
        )

        self.breaker, self.temperature = BinaryPoint(True), AnalogPoint(72.0)
        self.double = 2  # determined on = closed

        class Points:
            @staticmethod
            def read(headers: object) -> bytes:
                # py1815 forwards these objects as they are; it has no double-bit encoder, so
                # g3v2 is written here: six flag bits (ONLINE) and the state in bits 7-6.
                double = object_header(3, 2, start=0, stop=0) + bytes([0x01 | self.double << 6])
                float_flag = AnalogVariation.FLOAT32_WITH_FLAG
                return (
                    binary_range(0, [self.breaker])
                    + double
                    + analog_range(0, [self.temperature], variation=float_flag)
                )

        self.events = EventBuffers()
        session = Session(
            Points(),
            events=self.events,
            outstation_address=OUTSTATION,
            master_address=MASTER,
            unsolicited=unsolicited,
        )
        self.server = OutstationServer(session, bind=f"127.0.0.1:{port}", unsolicited_interval=0.1)

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()

    def trip(self, at: datetime) -> None:
        """Breaker opens at `at` (outstation clock), temperature falls a second later."""
        from py1815.events import EventClass
        from py1815.objects import AnalogPoint, BinaryPoint

        ms = int(at.timestamp() * 1000)
        self.breaker, self.temperature = BinaryPoint(False), AnalogPoint(50.0)
        self.events.record_binary(0, self.breaker, event_class=EventClass.CLASS_1, timestamp_ms=ms)
        self.events.record_analog(
            0, self.temperature, event_class=EventClass.CLASS_2, timestamp_ms=ms + 1000
        )
        self.server.notify()


def now_ms() -> datetime:
    at = datetime.now(UTC)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def test_event_time_from_the_outstation_becomes_source_time_and_occurred_at() -> None:
    """Timed events (g2v2, g32v3) give source_time; the Mapper's events carry it as occurred_at."""

    async def scenario() -> None:
        port = free_port()
        outstation = Py1815Outstation(port)
        await outstation.start()
        running = Running(source(port, points=PY1815_POINTS))
        await until(lambda: len(running.updates) >= 3, "the integrity poll")
        assert running.last("double:0") == PointUpdate("double:0", 2)
        assert running.last("analog:0") == PointUpdate("analog:0", 72.0)
        mapper = Mapper("north", "rtu-dnp3", PY1815_POINTS)
        assert ("FDR-2", "breaker_closed", "good") in signals(mapper, running.updates)
        seen = len(running.updates)

        await asyncio.sleep(0.05)  # the trip happens after the snapshot, as it would
        at = now_ms()
        outstation.trip(at)
        await until(lambda: len(running.updates) >= seen + 2, "the timed events")
        assert running.updates[seen:] == [
            PointUpdate("binary:0", False, "good", at),
            PointUpdate("analog:0", 50.0, "good", at + timedelta(seconds=1)),
        ]
        events = [mapper.update(u, datetime.now(UTC)) for u in running.updates[seen:]]
        assert [(e.signal, e.occurred_at) for e in events if e] == [
            ("breaker_open", at),
            ("supply_temp_low", at + timedelta(seconds=1)),
        ]
        await running.stop()
        await outstation.stop()

    run(scenario)


def test_unsolicited_report_arrives_without_waiting_for_an_event_poll() -> None:
    """With `unsolicited: true` a change arrives at once although the next poll is 30 s away."""

    async def scenario() -> None:
        port = free_port()
        outstation = Py1815Outstation(port, unsolicited=True)
        await outstation.start()
        running = Running(source(port, points=PY1815_POINTS, unsolicited=True, event_interval=30.0))
        await until(lambda: len(running.updates) >= 3, "the integrity poll")
        seen = len(running.updates)
        outstation.trip(now_ms())
        await until(lambda: len(running.updates) >= seen + 2, "the unsolicited report", 2.0)
        assert running.last("binary:0") is not None
        assert running.last("binary:0").value is False  # type: ignore[union-attr]  # checked above
        await running.stop()
        await outstation.stop()

    run(scenario)
