"""The OPC UA source against a real asyncua server on loopback, and the connector end to end.

The server holds a feeder breaker (`ns=2;s=BRK-FDR-2`, Boolean, true = closed) and a heat
substation's supply temperature (`TT-HSUB-1`, Double, addressed by namespace URI). It runs in
a thread with its own event loop, so a test drives it while the source (in the test's loop) or
the connector process reads it. The Mapper turns what the source emits into the signals the
connector would publish; the last test runs `outage scada run` against the broker and a worker.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
from asyncua import Server, ua

from scada.config import ConfigError, load
from scada.points import Mapper, PointConfig
from scada.sources.base import PointUpdate, SourceLost
from scada.sources.opcua import OpcUaSource, UnknownNodeError
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

NAMESPACE = "urn:outage-tests:heat-and-power"
BREAKER = "ns=2;s=BRK-FDR-2"
TEMPERATURE = f"nsu={NAMESPACE};s=TT-HSUB-1"
POINTS = (
    PointConfig(point=BREAKER, device="FDR-2", kind="breaker"),
    PointConfig(point=TEMPERATURE, device="HSUB-1", kind="supply_temp", low=60.0, hysteresis=3.0),
)
T = TypeVar("T")


class OpcServer:
    """A real asyncua server on 127.0.0.1 in a thread of its own; sync methods drive it."""

    def __init__(self, port: int | None = None, *, closed: bool = True, temp: float = 72.0):
        self.port = port or free_port()
        self.url = f"opc.tcp://127.0.0.1:{self.port}/"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: Server | None = None
        self.variables: dict[str, Any] = {}
        self.proxies: list[BlackholeProxy] = []
        self.call(self._start(closed, temp))

    def call(self, work: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(work, self.loop)
        return future.result(timeout)

    async def _start(self, closed: bool, temp: float) -> None:
        server = Server()
        await server.init()
        server.set_endpoint(self.url)
        index = await server.register_namespace(NAMESPACE)
        site = await server.nodes.objects.add_object(index, "Site")
        for name, value, kind in (
            ("BRK-FDR-2", closed, ua.VariantType.Boolean),
            ("TT-HSUB-1", temp, ua.VariantType.Double),
        ):
            node_id = ua.NodeId(ua.String(name), ua.Int16(index))
            self.variables[name] = await site.add_variable(node_id, name, ua.Variant(value, kind))
        await server.start()
        self.server = server

    def write(
        self,
        name: str,
        value: bool | float | None,
        at: datetime | None = None,
        status: int = ua.StatusCodes.Good,
    ) -> datetime:
        """Set a variable as a device would: value, status and source timestamp (now if None)."""
        at = at or datetime.now(UTC)
        kind = {"BRK-FDR-2": ua.VariantType.Boolean, "TT-HSUB-1": ua.VariantType.Double}[name]
        variant = ua.Variant(value, kind) if value is not None else ua.Variant()
        data = ua.DataValue(
            variant,
            StatusCode=ua.StatusCode(ua.UInt32(status)),
            # asyncua's DateTime is a datetime subclass in name only: it takes aware datetimes.
            SourceTimestamp=cast(ua.DateTime, at),
            ServerTimestamp=cast(ua.DateTime, datetime.now(UTC)),
        )
        self.call(self.variables[name].write_value(data))
        return at

    def proxy(self) -> BlackholeProxy:
        """A TCP relay to this server that can be made to swallow traffic (a pulled cable)."""
        relay = BlackholeProxy(self.port)
        self.call(relay.start())
        self.proxies.append(relay)
        return relay

    def stop(self) -> None:
        if self.server is not None:
            self.call(self.server.stop())
            self.server = None

    @staticmethod
    async def _cancel_the_rest() -> None:
        # Sessions of a swallowed connection outlive server.stop(); end them before the loop.
        rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    def close(self) -> None:
        self.stop()
        for relay in self.proxies:
            self.call(relay.close())
        self.call(self._cancel_the_rest())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class BlackholeProxy:
    """Relays TCP to the server; once frozen it keeps every socket open and forwards nothing."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.url = f"opc.tcp://127.0.0.1:{self.port}/"
        self.frozen = False
        self.writers: list[asyncio.StreamWriter] = []
        self.listener: asyncio.Server | None = None

    async def start(self) -> None:
        self.listener = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self.writers += [writer, up_writer]
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            if not self.frozen:
                writer.write(data)
                await writer.drain()

    async def close(self) -> None:
        for writer in self.writers:
            writer.close()
        if self.listener is not None:
            self.listener.close()


@pytest.fixture
def server() -> Iterator[OpcServer]:
    """An OPC UA server with the breaker closed and the supply at 72 degrees."""
    running = OpcServer()
    yield running
    running.close()


def source(url: str, points: tuple[PointConfig, ...] = POINTS, **extra: Any) -> OpcUaSource:
    settings: dict[str, Any] = {
        "publishing_interval_ms": 50,
        "watchdog_interval": 0.5,
        "request_timeout": 2.0,
        **extra,
    }
    return OpcUaSource(type="opcua", name="plant-opcua", url=url, points=points, **settings)


class Running(RunningSource):
    """The OPC UA source's `run` as a task, with what it emitted and when it was up."""

    def of(self, point: str) -> list[PointUpdate]:
        return [u for u in self.updates if u.point == point]

    async def until(self, check: Callable[[], object], what: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if self.task.done():
                self.task.result()  # the source's own error says more than a timeout
                raise AssertionError(f"the source stopped before {what}")
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout} s: {what}; got {self.updates}")
            await asyncio.sleep(0.02)

    async def present_state(self) -> Running:
        await self.until(lambda: {u.point for u in self.updates} >= {BREAKER, TEMPERATURE}, "state")
        return self


def test_present_state_then_breaker_trip_with_source_timestamp(server: OpcServer) -> None:
    """Connect emits the present state; a trip arrives with the server's SourceTimestamp."""

    async def scenario() -> None:
        running = await Running(source(server.url)).present_state()
        [breaker] = running.of(BREAKER)
        assert running.sessions == 1
        assert (breaker.value, breaker.quality) == (True, "good")
        assert breaker.source_time is not None and breaker.source_time.tzinfo == UTC
        assert running.of(TEMPERATURE)[0].value == 72.0
        mapper = Mapper("north", "plant-opcua", POINTS)
        assert signals(mapper, running.updates) == [
            ("FDR-2", "breaker_closed", "good"),
            ("HSUB-1", "normal", "good"),
        ]
        seen = len(running.updates)
        tripped_at = datetime.now(UTC)
        await asyncio.to_thread(server.write, "BRK-FDR-2", False, tripped_at)
        await running.until(lambda: len(running.of(BREAKER)) == 2, "the trip")
        assert running.of(BREAKER)[1] == PointUpdate(BREAKER, False, "good", tripped_at)
        assert signals(mapper, running.updates[seen:]) == [("FDR-2", "breaker_open", "good")]
        await running.stop()

    run(scenario)


def test_trip_and_reclose_inside_one_publishing_interval_both_arrive(server: OpcServer) -> None:
    """With queue_size > 1 a trip and its reclose within one publish are both emitted, in order."""

    async def scenario() -> None:
        running = await Running(source(server.url, publishing_interval_ms=1000)).present_state()
        mapper = Mapper("north", "plant-opcua", POINTS)
        signals(mapper, running.updates)
        seen = len(running.updates)
        now = datetime.now(UTC)
        await asyncio.to_thread(server.write, "BRK-FDR-2", False, now)
        await asyncio.to_thread(server.write, "BRK-FDR-2", True, now + timedelta(milliseconds=300))
        await running.until(lambda: len(running.of(BREAKER)) == 3, "trip and reclose")
        assert signals(mapper, running.updates[seen:]) == [
            ("FDR-2", "breaker_open", "good"),
            ("FDR-2", "breaker_closed", "good"),
        ]
        await running.stop()

    run(scenario)


def test_supply_temperature_low_with_hysteresis(server: OpcServer) -> None:
    """Below `low` gives supply_temp_low; it holds inside the band and clears at low+hysteresis."""

    async def scenario() -> None:
        running = await Running(source(server.url)).present_state()
        mapper = Mapper("north", "plant-opcua", POINTS)
        signals(mapper, running.updates)
        steps = [(59.0, [("HSUB-1", "supply_temp_low", "good")]), (61.5, []), (62.9, [])]
        steps.append((63.0, [("HSUB-1", "normal", "good")]))
        for value, expected in steps:
            seen = len(running.updates)
            await asyncio.to_thread(server.write, "TT-HSUB-1", value)

            def grew(before: int = seen) -> bool:
                return len(running.updates) > before

            await running.until(grew, f"{value} degrees")
            assert running.updates[-1].value == value
            assert signals(mapper, running.updates[seen:]) == expected, value
        await running.stop()

    run(scenario)


def test_status_codes_give_quality_and_a_bad_value_keeps_the_last(server: OpcServer) -> None:
    """Uncertain -> suspect; Bad without a value repeats the last value as invalid."""

    async def scenario() -> None:
        running = await Running(source(server.url)).present_state()
        mapper = Mapper("north", "plant-opcua", POINTS)
        signals(mapper, running.updates)
        seen = len(running.updates)
        bad = ua.StatusCodes.BadCommunicationError
        await asyncio.to_thread(server.write, "BRK-FDR-2", None, None, bad)
        await running.until(lambda: len(running.of(BREAKER)) == 2, "the bad status")
        assert running.of(BREAKER)[1].value is True
        assert running.of(BREAKER)[1].quality == "invalid"
        uncertain = ua.StatusCodes.UncertainLastUsableValue
        await asyncio.to_thread(server.write, "BRK-FDR-2", True, None, uncertain)
        await running.until(lambda: len(running.of(BREAKER)) == 3, "the uncertain status")
        assert running.of(BREAKER)[2].quality == "suspect"
        assert signals(mapper, running.updates[seen:]) == [
            ("FDR-2", "breaker_closed", "invalid"),
            ("FDR-2", "breaker_closed", "suspect"),
        ]
        await running.stop()

    run(scenario)


def test_stopped_server_raises_source_lost_within_seconds(server: OpcServer) -> None:
    """Stopping the server ends `run` with SourceLost naming the URL, in a couple of seconds."""

    async def scenario() -> None:
        running = await Running(source(server.url)).present_state()
        started = time.monotonic()
        await asyncio.to_thread(server.stop)
        with pytest.raises(SourceLost, match=f"127.0.0.1:{server.port}"):
            await asyncio.wait_for(running.task, 10)
        assert time.monotonic() - started < 3

    run(scenario)


def test_silent_network_loss_is_seen_by_the_watchdog(server: OpcServer) -> None:
    """Traffic swallowed with the socket open (a pulled cable) raises SourceLost within ~2 s."""
    relay = server.proxy()

    async def scenario() -> None:
        running = await Running(source(relay.url)).present_state()
        relay.frozen = True
        started = time.monotonic()
        with pytest.raises(SourceLost, match="lost"):
            await asyncio.wait_for(running.task, 10)
        assert time.monotonic() - started < 3

    run(scenario)


def test_no_server_listening_raises_source_lost() -> None:
    """With nothing on the port, `run` raises SourceLost saying it cannot connect."""

    async def scenario() -> None:
        url = f"opc.tcp://127.0.0.1:{free_port()}/"
        with pytest.raises(SourceLost, match="cannot connect"):
            await asyncio.wait_for(source(url).run(Ignore()), 10)

    run(scenario)


def test_reconnect_after_server_restart_gives_no_new_signal(server: OpcServer) -> None:
    """A restarted server (new timestamps) reads back the same state: the Mapper adds nothing."""

    async def scenario() -> None:
        await asyncio.to_thread(server.write, "BRK-FDR-2", False)
        await asyncio.to_thread(server.write, "TT-HSUB-1", 55.0)
        running = await Running(source(server.url)).present_state()
        mapper = Mapper("north", "plant-opcua", POINTS)
        assert signals(mapper, running.updates) == [
            ("FDR-2", "breaker_open", "good"),
            ("HSUB-1", "supply_temp_low", "good"),
        ]
        await asyncio.to_thread(server.stop)
        with pytest.raises(SourceLost):
            await asyncio.wait_for(running.task, 10)

        restarted = await asyncio.to_thread(OpcServer, server.port, closed=False, temp=55.0)
        try:
            again = await Running(source(server.url)).present_state()
            assert [u.value for u in again.updates] in ([False, 55.0], [55.0, False])
            assert again.of(BREAKER)[0].source_time > running.of(BREAKER)[0].source_time  # type: ignore[operator]  # both set by the server
            assert signals(mapper, again.updates) == []
            await again.stop()
        finally:
            await asyncio.to_thread(restarted.close)

    run(scenario)


def test_node_the_server_lacks_is_an_error_naming_the_point(server: OpcServer) -> None:
    """Missing nodes, non-variables and unknown namespaces: UnknownNodeError names each point."""
    points = (
        *POINTS,
        PointConfig(point="ns=2;s=BRK-FDR-9", device="FDR-3", line=12),
        PointConfig(point="i=85", device="FDR-1", line=13),  # the Objects folder: no Value
    )

    async def scenario() -> None:
        with pytest.raises(UnknownNodeError) as error:
            await asyncio.wait_for(source(server.url, points).run(Ignore()), 10)
        message = str(error.value)
        assert "'ns=2;s=BRK-FDR-9' (line 12): BadNodeIdUnknown" in message
        assert "'i=85' (line 13): BadAttributeIdInvalid" in message
        assert BREAKER not in message
        elsewhere = (PointConfig(point="nsu=urn:nowhere;s=X", device="FDR-1", line=4),)
        with pytest.raises(UnknownNodeError, match=r"no such namespace.*urn:nowhere.*line 4"):
            await asyncio.wait_for(source(server.url, elsewhere).run(Ignore()), 10)

    run(scenario)


def test_config_refuses_bad_node_ids_and_bad_security_with_the_line(tmp_path: Path) -> None:
    """A malformed node id names its line; a bad security_string or lone password is refused."""
    config = tmp_path / "scada.yaml"
    head = "site: north\nsources:\n  - name: plant\n    type: opcua\n    url: opc.tcp://h:4840/\n"
    config.write_text(head + "    points:\n      - {point: 'BRK-FDR-2', device: FDR-2}\n")
    with pytest.raises(ConfigError, match=r"scada\.yaml:7: .*not an OPC UA node id"):
        load(config)
    bad = "    security_string: Basic128Rsa15,SignAndEncrypt,c.der,k.pem\n"
    config.write_text(head + bad + "    points:\n      - {point: 'i=2258', device: FDR-2}\n")
    with pytest.raises(ConfigError, match="security policy 'Basic128Rsa15'"):
        load(config)
    lone = "    password_env: OPCUA_PASSWORD\n"
    config.write_text(head + lone + "    points:\n      - {point: 'i=2258', device: FDR-2}\n")
    with pytest.raises(ConfigError, match="needs `user`"):
        load(config)


def test_deploy_example_loads_against_the_sample_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """deploy/scada/opcua.yaml is a valid site config whose devices are in the heat sample."""
    monkeypatch.chdir(ROOT)
    site = load(ROOT / "deploy" / "scada" / "opcua.yaml")
    [plant] = site.sources
    assert isinstance(plant, OpcUaSource)
    assert {p.kind for p in plant.points} == {"breaker", "alarm", "supply_temp", "pressure"}


def test_end_to_end_trip_confirms_incident_and_loss_alerts(
    broker: EmbeddedBroker, worker: Worker, server: OpcServer, tmp_path: Path
) -> None:
    """`outage scada run`: a trip confirms FDR-2, a stop alerts, a restart repeats nothing."""
    config = f"""
site: e2e-opcua
utility: power
topology: [{ROOT / "topology" / "samples" / "power.csv"}]
sources:
  - name: plant-opcua
    type: opcua
    url: {server.url}
    publishing_interval_ms: 100
    watchdog_interval: 0.5
    reconnect_initial: 0.5
    reconnect_max: 1.0
    lost_after: 2.0
    points:
      - {{point: "{BREAKER}", device: FDR-2, kind: breaker}}
"""
    connector = start_connector(config, broker, tmp_path)
    try:
        connector.wait_connected("plant-opcua")
        tripped_at = server.write("BRK-FDR-2", False)
        incident = wait_for(lambda: confirmed_incident(worker, "FDR-2"), timeout=60)
        assert incident["device_id"] == "FDR-2"
        present, trip = scada_signals(broker, "FDR-2")  # no state file: the present state first
        assert (present["signal"], trip["signal"]) == ("breaker_closed", "breaker_open")
        assert datetime.fromisoformat(trip["occurred_at"]) == tripped_at
        assert source_alerts(broker, "scada_source_lost") == []

        server.stop()
        wait_for(lambda: source_alerts(broker, "scada_source_lost"), timeout=30)

        restarted = OpcServer(server.port, closed=False)  # still open, new timestamps
        try:
            connector.wait_connected("plant-opcua", times=2)
            # A later change as a marker: once it is on the topic, the read-back is too.
            restarted.write("BRK-FDR-2", True)
            wait_for(lambda: len(scada_signals(broker, "FDR-2")) >= 3, timeout=30)
            assert [s["signal"] for s in scada_signals(broker, "FDR-2")] == [
                "breaker_closed",
                "breaker_open",
                "breaker_closed",
            ]
            assert source_alerts(broker, "scada_source_restored")
        finally:
            restarted.close()
    finally:
        connector.stop()
