"""The IEC 60870-5-104 adapter against a real c104 server on loopback.

The server is station 47 with a feeder breaker (double point, IOA 1001) and a supply
temperature (short float, IOA 2001), both time-tagged. Tests run the adapter's `run(emit)`
and feed what it emits to the pure `Mapper`, as the connector does.
"""

import asyncio
import contextlib
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

c104 = pytest.importorskip("c104", reason="the optional extra iec104 (c104) is not installed")

from events.inbound import ScadaSignal  # noqa: E402
from scada.config import ConfigError, load  # noqa: E402
from scada.points import Mapper  # noqa: E402
from scada.sources.base import PointUpdate, SourceLost  # noqa: E402
from scada.sources.iec104 import INSTALL_HINT, Iec104Source  # noqa: E402
from streams.broker import EmbeddedBroker, free_port  # noqa: E402
from tests.integration.conftest import Worker, wait_for  # noqa: E402
from tests.integration.scada_harness import (  # noqa: E402
    confirmed_incident,
    scada_signals,
    source_alerts,
    start_connector,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CA = 47
T0 = datetime(2026, 3, 1, 6, 30, 15, 250000, tzinfo=UTC)


def ms_now() -> datetime:
    """Now, to the millisecond a CP56Time2a carries."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def local(at: datetime) -> datetime:
    """What to hand c104 for an instant: it reads a datetime's fields as local time."""
    return at.astimezone().replace(tzinfo=None)


class Rtu:
    """A c104 server on 127.0.0.1 (a free port): station 47, one breaker, one temperature."""

    def __init__(self, breaker_type: Any = None, at: datetime = T0) -> None:
        self.port = free_port()
        self.server = c104.Server(ip="127.0.0.1", port=self.port)
        station = self.server.add_station(common_address=CA)
        self.station = station
        self.breaker = station.add_point(io_address=1001, type=breaker_type or c104.Type.M_DP_TB_1)
        self.breaker.info = c104.DoubleInfo(state=c104.Double.ON, recorded_at=local(at))
        self.temp = station.add_point(io_address=2001, type=c104.Type.M_ME_TF_1)
        self.temp.info = c104.ShortInfo(actual=72.0, recorded_at=local(at))
        self.server.start()

    def send(self, point: Any, info: Any) -> None:
        """Change a point and report it spontaneously, as an RTU does on a change."""
        point.info = info
        assert point.transmit(cause=c104.Cot.SPONTANEOUS)


@pytest.fixture
def rtu() -> Iterator[Rtu]:
    """A running Rtu, stopped after the test."""
    station = Rtu()
    yield station
    station.server.stop()


def source(port: int, **extra: Any) -> Iec104Source:
    return Iec104Source.model_validate(
        {
            "type": "iec104",
            "name": "rtu-7",
            "host": "127.0.0.1",
            "port": port,
            "common_address": CA,
            "connect_timeout": 2,
            "points": [
                {"point": "1001", "device": "FDR-2"},
                {
                    "point": "2001",
                    "device": "HSUB-1",
                    "kind": "supply_temp",
                    "low": 60,
                    "hysteresis": 5,
                },
            ],
            **extra,
        }
    )


class Session:
    """One `run(emit)` of the adapter in a task; what it emits lands in a queue."""

    def __init__(self, adapter: Iec104Source) -> None:
        self.updates: asyncio.Queue[PointUpdate] = asyncio.Queue()
        self.up = 0  # times the adapter said its session is up
        self.task = asyncio.create_task(adapter.run(self))
        self.mapper = Mapper("north-grid", adapter.name, adapter.points)

    async def __call__(self, update: PointUpdate) -> None:
        await self.updates.put(update)

    async def connected(self) -> None:
        self.up += 1

    async def next(self, timeout: float = 5.0) -> PointUpdate:
        """The next update; raises what ended the session if it ended first."""
        getter = asyncio.create_task(self.updates.get())
        done, _ = await asyncio.wait(
            {getter, self.task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if getter in done:
            return getter.result()
        getter.cancel()
        if self.task in done:
            self.task.result()
        raise AssertionError(f"no update within {timeout} s")

    async def present(self) -> dict[str, PointUpdate]:
        """The interrogation's values, by point."""
        seen: dict[str, PointUpdate] = {}
        while len(seen) < 2:
            update = await self.next()
            seen[update.point] = update
        return seen

    def signal(self, update: PointUpdate) -> ScadaSignal | None:
        return self.mapper.update(update, received_at=datetime.now(UTC))

    async def lost(self, timeout: float) -> SourceLost:
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout)
        except SourceLost as error:
            return error
        raise AssertionError("run ended without SourceLost")

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, SourceLost):
            await self.task


def scenario(body: Any) -> None:
    """Run an async test body with its session closed at the end."""

    async def main() -> None:
        sessions: list[Session] = []
        try:
            await body(sessions.append)
        finally:
            for session in sessions:
                await session.close()

    asyncio.run(main())


def test_present_state_is_read_by_general_interrogation(rtu: Rtu) -> None:
    """On connect every point's present value, quality and time tag arrive (interrogation)."""

    async def body(keep: Any) -> None:
        keep(session := Session(source(rtu.port)))
        present = await session.present()
        assert present["1001"] == PointUpdate("1001", 2, "good", T0)
        assert present["2001"] == PointUpdate("2001", 72.0, "good", T0)
        assert session.up == 1
        signals = [session.signal(update) for update in present.values()]
        assert sorted((s.device_id, s.signal) for s in signals if s) == [
            ("FDR-2", "breaker_closed"),
            ("HSUB-1", "normal"),
        ]

    scenario(body)


def test_spontaneous_trip_carries_its_time_tag_and_maps_to_breaker_open(rtu: Rtu) -> None:
    """A spontaneous double point OFF arrives with its CP56Time2a time: breaker_open at FDR-2."""

    async def body(keep: Any) -> None:
        keep(session := Session(source(rtu.port)))
        for update in (await session.present()).values():
            session.signal(update)
        tripped = T0 + timedelta(minutes=5, milliseconds=125)
        rtu.send(rtu.breaker, c104.DoubleInfo(state=c104.Double.OFF, recorded_at=local(tripped)))
        update = await session.next()
        assert update == PointUpdate("1001", 1, "good", tripped)
        signal = session.signal(update)
        assert signal is not None
        assert (signal.device_id, signal.signal, signal.occurred_at) == (
            "FDR-2",
            "breaker_open",
            tripped,
        )

    scenario(body)


def test_supply_temperature_below_low_gives_supply_temp_low_then_normal(rtu: Rtu) -> None:
    """An analogue under `low` gives supply_temp_low; normal only above low + hysteresis."""

    async def body(keep: Any) -> None:
        keep(session := Session(source(rtu.port)))
        for update in (await session.present()).values():
            session.signal(update)
        signals = []
        for minutes, value in ((1, 55.5), (2, 62.0), (3, 66.0)):
            at = T0 + timedelta(minutes=minutes)
            rtu.send(rtu.temp, c104.ShortInfo(actual=value, recorded_at=local(at)))
            update = await session.next()
            assert (update.value, update.source_time) == (value, at)
            signal = session.signal(update)
            signals.append(signal.signal if signal else None)
        assert signals == ["supply_temp_low", None, "normal"]

    scenario(body)


def test_quality_bits_give_invalid_and_suspect(rtu: Rtu) -> None:
    """IV -> invalid; NT, SB, BL or OV -> suspect; no bits -> good."""

    async def body(keep: Any) -> None:
        keep(session := Session(source(rtu.port)))
        await session.present()
        cases = [
            (c104.Quality.Invalid | c104.Quality.NonTopical, "invalid"),
            (c104.Quality.NonTopical, "suspect"),
            (c104.Quality.Substituted, "suspect"),
            (c104.Quality.Blocked, "suspect"),
            (c104.Quality.Overflow, "suspect"),
            (c104.Quality(), "good"),
        ]
        for minutes, (bits, quality) in enumerate(cases, start=1):
            at = local(T0 + timedelta(minutes=minutes))
            rtu.send(rtu.temp, c104.ShortInfo(actual=70.0, quality=bits, recorded_at=at))
            assert (await session.next()).quality == quality, bits

    scenario(body)


def test_point_type_may_change_between_interrogation_and_changes() -> None:
    """M_DP_NA_1 (no time) in the interrogation, then M_DP_TB_1 on a change: both arrive."""
    station = Rtu(breaker_type=c104.Type.M_DP_NA_1)

    async def body(keep: Any) -> None:
        keep(session := Session(source(station.port)))
        present = await session.present()
        assert (present["1001"].value, present["1001"].source_time) == (2, None)
        # The RTU reports the change with a time tag: the same IOA, another ASDU type.
        assert station.station.remove_point(io_address=1001)
        tagged = station.station.add_point(io_address=1001, type=c104.Type.M_DP_TB_1)
        tripped = T0 + timedelta(hours=1)
        station.send(tagged, c104.DoubleInfo(state=c104.Double.OFF, recorded_at=local(tripped)))
        assert await session.next() == PointUpdate("1001", 1, "good", tripped)

    try:
        scenario(body)
    finally:
        station.server.stop()


def test_periodic_interrogation_picks_up_a_change_that_was_not_reported(rtu: Rtu) -> None:
    """With interrogation_interval, a value changed without a spontaneous report still arrives."""

    async def body(keep: Any) -> None:
        keep(session := Session(source(rtu.port, interrogation_interval=0.5)))
        await session.present()
        rtu.breaker.info = c104.DoubleInfo(state=c104.Double.OFF, recorded_at=local(T0))
        values = [(await session.next(timeout=3)).value for _ in range(6)]  # three rounds
        assert 1 in values  # the breaker's OFF, read by a later interrogation

    scenario(body)


def test_stopping_the_server_raises_source_lost_within_seconds(rtu: Rtu) -> None:
    """A closed connection ends `run` with SourceLost naming the station, within 3 s."""

    async def body(keep: Any) -> None:
        keep(session := Session(source(rtu.port)))
        await session.present()
        started = time.monotonic()
        await asyncio.to_thread(rtu.server.stop)
        error = await session.lost(timeout=3)
        assert time.monotonic() - started < 3
        assert f"station {CA} at 127.0.0.1:{rtu.port}" in error.reason
        assert "connection closed" in error.reason

    scenario(body)


def test_nothing_listening_raises_source_lost() -> None:
    """A station that cannot be reached ends `run` with SourceLost (cannot connect)."""

    async def body(keep: Any) -> None:
        keep(session := Session(source(free_port())))
        error = await session.lost(timeout=6)
        assert "cannot connect" in error.reason or "no connection within" in error.reason

    scenario(body)


def test_wrong_common_address_raises_source_lost(rtu: Rtu) -> None:
    """A refused general interrogation (unknown common address) ends `run` with SourceLost."""

    async def body(keep: Any) -> None:
        keep(session := Session(source(rtu.port, common_address=48)))
        error = await session.lost(timeout=5)
        assert "general interrogation refused" in error.reason
        assert session.up == 0  # never counted as connected, so the lost alert is not hidden

    scenario(body)


def test_restart_reads_back_the_same_state_without_a_new_event(rtu: Rtu) -> None:
    """After a trip, a server restart and a reconnect, the Mapper publishes nothing new."""

    async def body(keep: Any) -> None:
        adapter = source(rtu.port)
        keep(first := Session(adapter))
        for update in (await first.present()).values():
            first.signal(update)
        tripped = T0 + timedelta(minutes=7)
        rtu.send(rtu.breaker, c104.DoubleInfo(state=c104.Double.OFF, recorded_at=local(tripped)))
        signal = first.signal(await first.next())
        assert signal is not None and signal.signal == "breaker_open"

        await asyncio.to_thread(rtu.server.stop)
        await first.lost(timeout=3)
        await asyncio.to_thread(rtu.server.start)
        keep(second := Session(adapter))
        second.mapper = first.mapper  # the connector keeps one Mapper per source
        again = await second.present()
        assert again["1001"] == PointUpdate("1001", 1, "good", tripped)
        assert [second.signal(u) for u in again.values()] == [None, None]

    scenario(body)


def test_points_are_decimal_ioas_mapped_once(tmp_path: Path) -> None:
    """A point that is not an IOA, or an IOA mapped twice, is refused at start with its line."""
    config = tmp_path / "scada.yaml"
    head = """\
        site: north-grid
        sources:
          - name: rtu-7
            type: iec104
            host: 127.0.0.1
            common_address: 47
            points:
              - {point: "1001", device: FDR-1}
    """
    config.write_text(textwrap.dedent(head) + '      - {point: "IOA-2", device: FDR-2}\n')
    with pytest.raises(ConfigError, match=r"scada.yaml:9: .*'IOA-2'.*decimal"):
        load(config)
    config.write_text(textwrap.dedent(head) + '      - {point: "1001", device: FDR-2}\n')
    with pytest.raises(ConfigError, match=r"scada.yaml:3: .*IOA 1001 mapped more than once"):
        load(config)


def test_example_config_loads_against_the_sample_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """deploy/scada/iec104.yaml is valid and its devices are in topology/samples/power.csv."""
    monkeypatch.chdir(ROOT)  # the example names the topology relative to the checkout
    site = load(ROOT / "deploy" / "scada" / "iec104.yaml")
    assert [s.type for s in site.sources] == ["iec104"]
    assert {p.device for p in site.sources[0].points} >= {"FDR-1", "FDR-2", "FDR-3"}


def test_missing_c104_is_refused_with_the_install_hint(tmp_path: Path) -> None:
    """Without c104 an iec104 source is refused at start, saying how to install the extra."""
    config = tmp_path / "scada.yaml"
    config.write_text(
        "site: s\nsources:\n  - {name: r, type: iec104, host: 127.0.0.1, common_address: 1,\n"
        "     points: [{point: '1', device: FDR-1}]}\n"
    )
    # A fresh interpreter where `import c104` fails, as on an install without the extra.
    check = (
        "import sys; sys.modules['c104'] = None\n"
        "from pathlib import Path\nfrom scada.config import load, ConfigError\n"
        f"try:\n    load(Path({str(config)!r}))\nexcept ConfigError as e:\n    print(e)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", check],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert INSTALL_HINT in result.stdout, result.stdout + result.stderr
    assert "scada.yaml:3:" in result.stdout


def test_end_to_end_trip_confirms_incident_and_loss_alerts(
    broker: EmbeddedBroker, worker: Worker, tmp_path: Path
) -> None:
    """`outage scada run`: a trip confirms FDR-2, a stop alerts, a restart repeats nothing."""
    station = Rtu(at=ms_now() - timedelta(minutes=1))
    config = f"""
site: e2e-iec104
utility: power
topology: [{ROOT / "topology" / "samples" / "power.csv"}]
sources:
  - name: sub1-rtu
    type: iec104
    host: 127.0.0.1
    port: {station.port}
    common_address: {CA}
    connect_timeout: 2
    reconnect_initial: 0.5
    reconnect_max: 1.0
    lost_after: 2.0
    points:
      - {{point: "1001", device: FDR-2, kind: breaker}}
"""
    connector = start_connector(config, broker, tmp_path)
    try:
        connector.wait_connected("sub1-rtu")
        tripped = ms_now()
        station.send(
            station.breaker, c104.DoubleInfo(state=c104.Double.OFF, recorded_at=local(tripped))
        )
        incident = wait_for(lambda: confirmed_incident(worker, "FDR-2"), timeout=60)
        assert incident["device_id"] == "FDR-2"
        present, trip = scada_signals(broker, "FDR-2")  # no state file: the present state first
        assert (present["signal"], trip["signal"]) == ("breaker_closed", "breaker_open")
        assert datetime.fromisoformat(trip["occurred_at"]) == tripped
        assert source_alerts(broker, "scada_source_lost") == []

        station.server.stop()
        wait_for(lambda: source_alerts(broker, "scada_source_lost"), timeout=30)

        station.server.start()  # the same points: the breaker still open, same time tag
        connector.wait_connected("sub1-rtu", times=2)
        # A later change as a marker: once it is on the topic, the read-back is too.
        closed = ms_now()
        station.send(
            station.breaker, c104.DoubleInfo(state=c104.Double.ON, recorded_at=local(closed))
        )
        wait_for(lambda: len(scada_signals(broker, "FDR-2")) >= 3, timeout=30)
        assert [s["signal"] for s in scada_signals(broker, "FDR-2")] == [
            "breaker_closed",
            "breaker_open",
            "breaker_closed",
        ]
        assert source_alerts(broker, "scada_source_restored")
    finally:
        connector.stop()
        station.server.stop()
