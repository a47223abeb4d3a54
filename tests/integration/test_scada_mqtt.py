"""The MQTT source (JSON and Sparkplug B) against a real mosquitto on loopback.

Each test starts its own mosquitto (a config file in tmp_path, a free port) and stops it. The
"devices" are real MQTT clients in the test: a JSON publisher and a small Sparkplug B edge
node built from pysparkplug's payloads (aliases in BIRTH, alias-only DATA, an NDEATH will,
answers to rebirth requests). `points.Mapper` is applied to what the source emits, so the
tests pin the signals the connector would publish. The last test runs `outage scada run`
against the module's broker and a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pysparkplug as spb
import pytest
from structlog.testing import capture_logs

from events.inbound import ScadaSignal
from scada.config import load
from scada.points import Mapper, PointConfig
from scada.sources.base import PointUpdate, SourceLost
from scada.sources.mqtt import MqttSource
from streams.broker import EmbeddedBroker, free_port
from tests.integration.conftest import ROOT, Worker, wait_for
from tests.integration.scada_harness import (
    confirmed_incident,
    scada_signals,
    source_alerts,
    start_connector,
)

MOSQUITTO = Path("/usr/sbin/mosquitto")
pytestmark = [
    pytest.mark.integration,
    # `make test` installs mosquitto; in CI a missing one fails instead of skipping.
    pytest.mark.skipif(
        not MOSQUITTO.exists() and not os.environ.get("CI"), reason="apt-get install mosquitto"
    ),
]

T0 = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)
BREAKER_TOPIC = "plant/north/BRK-FDR-1/state"
TEMP_TOPIC = "plant/north/HSUB-1/supply_temp"


class Mosquitto:
    """One mosquitto process on 127.0.0.1:port; stop and start again on the same port."""

    def __init__(self, directory: Path, listener: str = "allow_anonymous true\n") -> None:
        self.port = free_port()
        self.config = directory / "mosquitto.conf"
        # As root, mosquitto drops to user `mosquitto`, who cannot read files in tmp_path.
        user = "user root\n" if os.geteuid() == 0 else ""
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n{listener}persistence false\n{user}"
        )
        self.log = directory / "mosquitto.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(MOSQUITTO), "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen within 10 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def source(port: int, fmt: str, points: list[dict[str, Any]], **extra: Any) -> MqttSource:
    return MqttSource.model_validate(
        {"type": "mqtt", "name": "mqtt-north", "host": "127.0.0.1", "port": port,
         "format": fmt, "points": points, "keepalive": 5, **extra}
    )  # fmt: skip


def json_points() -> list[dict[str, Any]]:
    return [
        {"point": BREAKER_TOPIC, "device": "FDR-1"},
        {"point": TEMP_TOPIC, "device": "HSUB-1", "kind": "supply_temp", "low": 60,
         "hysteresis": 5},
    ]  # fmt: skip


class QueueEmit:
    """The source's `emit`: values into a queue; `connected` counts sessions."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[PointUpdate] = asyncio.Queue()
        self.sessions = 0

    async def __call__(self, update: PointUpdate) -> None:
        await self.queue.put(update)

    async def connected(self) -> None:
        self.sessions += 1


class Running:
    """A source's `run` as a task; what it emits goes to a queue, what ends it is kept."""

    def __init__(self, source: MqttSource) -> None:
        self.source = source
        self.emit = QueueEmit()
        self.updates = self.emit.queue
        self.mapper = Mapper("north", source.name, source.points)
        self.task = asyncio.create_task(source.run(self.emit))

    async def next(self, timeout: float = 5.0) -> PointUpdate:
        return await asyncio.wait_for(self.updates.get(), timeout)

    async def next_for(self, point: str, timeout: float = 5.0) -> PointUpdate:
        while True:
            update = await self.next(timeout)
            if update.point == point:
                return update

    async def quiet(self, seconds: float = 0.5) -> list[PointUpdate]:
        """Whatever arrives within `seconds` (to show that nothing does)."""
        await asyncio.sleep(seconds)
        out = []
        while not self.updates.empty():
            out.append(self.updates.get_nowait())
        return out

    def signal(self, update: PointUpdate) -> ScadaSignal | None:
        return self.mapper.update(update, datetime.now(UTC))

    async def lost(self, timeout: float) -> SourceLost:
        with pytest.raises(SourceLost) as caught:
            await asyncio.wait_for(self.task, timeout)
        return caught.value

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, SourceLost):
            await self.task


def scenario(body: Callable[[], Awaitable[None]], timeout: float = 40.0) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(body(), timeout)

    asyncio.run(bounded())


async def publish(
    port: int, topic: str, payload: bytes | str, retain: bool = True, **options: Any
) -> None:
    async with aiomqtt.Client("127.0.0.1", port, **options) as client:
        await client.publish(topic, payload, qos=1, retain=retain)


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


# --- JSON -------------------------------------------------------------------------------------


def test_json_retained_messages_are_the_present_state(mosquitto: Mosquitto) -> None:
    """Retained values published before the connector started are read on connect, with time."""

    async def body() -> None:
        state = {"value": "closed", "quality": "good", "timestamp": T0.isoformat()}
        await publish(mosquitto.port, BREAKER_TOPIC, json.dumps(state))
        await publish(mosquitto.port, TEMP_TOPIC, "71.5")
        run = Running(source(mosquitto.port, "json", json_points()))
        got = {u.point: u for u in [await run.next(), await run.next()]}
        assert run.emit.sessions == 1  # the session said it was up
        assert got[BREAKER_TOPIC] == PointUpdate(BREAKER_TOPIC, "closed", "good", T0)
        assert got[TEMP_TOPIC].value == 71.5 and got[TEMP_TOPIC].source_time is None
        events = [run.signal(u) for u in got.values()]
        assert {(e.device_id, e.signal) for e in events if e} == {
            ("FDR-1", "breaker_closed"),
            ("HSUB-1", "normal"),
        }
        await run.stop()

    scenario(body)


def test_json_breaker_trip_gives_breaker_open_at_its_source_time(mosquitto: Mosquitto) -> None:
    """A breaker change with an epoch-ms timestamp becomes breaker_open for FDR-1 at that time."""

    async def body() -> None:
        await publish(mosquitto.port, BREAKER_TOPIC, json.dumps({"value": 2, "timestamp": ms(T0)}))
        run = Running(source(mosquitto.port, "json", json_points()))
        first = run.signal(await run.next())
        assert first is not None and first.signal == "breaker_closed"
        tripped = T0 + timedelta(minutes=3)
        await publish(
            mosquitto.port, BREAKER_TOPIC, json.dumps({"value": 1, "timestamp": ms(tripped)})
        )
        update = await run.next()
        assert update == PointUpdate(BREAKER_TOPIC, 1, "good", tripped)
        event = run.signal(update)
        assert event is not None
        assert (event.device_id, event.signal, event.occurred_at) == (
            "FDR-1",
            "breaker_open",
            tripped,
        )
        await run.stop()

    scenario(body)


def test_json_analogue_threshold_with_hysteresis(mosquitto: Mosquitto) -> None:
    """Supply temp: low below 60, still low at 62 (inside the 5-degree band), normal at 66."""

    async def body() -> None:
        await publish(mosquitto.port, TEMP_TOPIC, json.dumps({"value": 70, "timestamp": ms(T0)}))
        run = Running(source(mosquitto.port, "json", json_points()))
        signals = []
        for i, value in enumerate([None, 58.5, 62, 66]):
            if value is not None:
                at = T0 + timedelta(minutes=i)
                body = {"value": value, "timestamp": at.isoformat().replace("+00:00", "Z")}
                await publish(mosquitto.port, TEMP_TOPIC, json.dumps(body))
            event = run.signal(await run.next())
            signals.append(event.signal if event else None)
        assert signals == ["normal", "supply_temp_low", None, "normal"]
        await run.stop()

    scenario(body)


def test_json_unreadable_payloads_are_logged_and_skipped(mosquitto: Mosquitto) -> None:
    """Garbage on a point's topic is logged with the topic and skipped; the next good one comes."""

    async def body() -> None:
        await publish(mosquitto.port, BREAKER_TOPIC, "closed")
        run = Running(source(mosquitto.port, "json", json_points()))
        assert (await run.next()).value == "closed"
        garbage = [
            b"\xff\xfe\x00garbage",
            b'{"value": "open", ',
            b'{"state": "open"}',
            b'{"value": [1, 2]}',
            b'{"value": "open", "quality": "excellent"}',
            b'{"value": "open", "timestamp": "yesterday"}',
            b"two words",
        ]
        with capture_logs() as logs:
            for payload in garbage:
                await publish(mosquitto.port, BREAKER_TOPIC, payload)
            await publish(mosquitto.port, BREAKER_TOPIC, json.dumps({"value": "OPEN"}))
            update = await run.next()
        assert update.value == "OPEN"
        event = run.signal(update)
        assert event is not None and event.signal == "breaker_open"
        skipped = [e for e in logs if e["event"] == "mqtt.unreadable_payload"]
        assert len(skipped) == len(garbage)
        assert all(e["topic"] == BREAKER_TOPIC for e in skipped)
        assert run.updates.empty() and not run.task.done()
        await run.stop()

    scenario(body)


def test_json_null_value_makes_the_point_invalid(mosquitto: Mosquitto) -> None:
    """A null value keeps the last state with quality invalid, so the Mapper reports the change."""

    async def body() -> None:
        await publish(mosquitto.port, BREAKER_TOPIC, json.dumps({"value": "closed"}))
        run = Running(source(mosquitto.port, "json", json_points()))
        run.signal(await run.next())
        await publish(mosquitto.port, BREAKER_TOPIC, json.dumps({"value": None}))
        event = run.signal(await run.next())
        assert event is not None and (event.signal, event.quality) == ("breaker_closed", "invalid")
        await run.stop()

    scenario(body)


@pytest.mark.parametrize("fmt", ["json", "sparkplug_b"])
def test_broker_stopping_raises_source_lost(mosquitto: Mosquitto, fmt: str) -> None:
    """Mosquitto going away ends `run` with SourceLost within a few seconds."""

    async def body() -> None:
        points = json_points() if fmt == "json" else sparkplug_points()
        run = Running(source(mosquitto.port, fmt, points))
        await asyncio.sleep(0.5)  # connected and subscribed
        assert not run.task.done()
        started = time.monotonic()
        await asyncio.to_thread(mosquitto.stop)
        lost = await run.lost(timeout=5)
        assert time.monotonic() - started < 5
        assert f"127.0.0.1:{mosquitto.port}" in lost.reason

    scenario(body)


def test_no_broker_raises_source_lost_at_once(tmp_path: Path) -> None:
    """Nothing listening on the port: `run` raises SourceLost instead of hanging."""

    async def body() -> None:
        run = Running(source(free_port(), "json", json_points()))
        lost = await run.lost(timeout=5)
        assert "refused" in lost.reason.lower()

    scenario(body)


def test_json_broker_restart_reads_back_the_same_state_without_a_new_event(
    mosquitto: Mosquitto,
) -> None:
    """A broker restart: the device republishes its retained state and the Mapper sends nothing."""

    async def body() -> None:
        tripped = {"value": "open", "timestamp": T0.isoformat()}
        await publish(mosquitto.port, BREAKER_TOPIC, json.dumps(tripped))
        run = Running(source(mosquitto.port, "json", json_points()))
        first = run.signal(await run.next())
        assert first is not None and first.signal == "breaker_open"
        await asyncio.to_thread(mosquitto.stop)
        await run.lost(timeout=5)
        await asyncio.to_thread(mosquitto.start)
        # persistence is off: the device publishes its retained state again when it reconnects
        await publish(mosquitto.port, BREAKER_TOPIC, json.dumps(tripped))
        again = Running(source(mosquitto.port, "json", json_points()))
        again.mapper = run.mapper  # the runner keeps one Mapper across reconnects
        update = await again.next()
        assert update == PointUpdate(BREAKER_TOPIC, "open", "good", T0)
        assert again.signal(update) is None
        await again.stop()

    scenario(body)


def openssl(directory: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=60)


def make_pki(directory: Path) -> tuple[Path, Path]:
    """(CA that signed the broker's certificate for 127.0.0.1, an unrelated CA)."""
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    for name in ("ca", "other-ca"):
        openssl(
            directory,
            *("req", "-x509", *ec, "-days", "2", "-keyout", f"{name}.key", "-out", f"{name}.pem"),
            *("-subj", f"/CN=outage test {name}", "-addext", "basicConstraints=critical,CA:TRUE"),
        )
    openssl(directory, "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=mq")
    (directory / "server.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        directory,
        *("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key"),
        *("-CAcreateserial", "-days", "2", "-out", "server.pem", "-extfile", "server.ext"),
    )
    return directory / "ca.pem", directory / "other-ca.pem"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl CLI is not installed")
def test_tls_and_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TLS checked against the site's CA and a password from the environment; wrong ones: lost."""
    ca, other_ca = make_pki(tmp_path)
    passwords = tmp_path / "passwords"
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(passwords), "scada", "s3cret"], check=True, timeout=30
    )
    broker = Mosquitto(
        tmp_path,
        f"certfile {tmp_path / 'server.pem'}\nkeyfile {tmp_path / 'server.key'}\n"
        f"allow_anonymous false\npassword_file {passwords}\n",
    )
    broker.start()
    monkeypatch.setenv("TEST_MQTT_PASSWORD", "s3cret")
    monkeypatch.setenv("TEST_MQTT_WRONG", "guess")
    secure = {"tls_ca_file": str(ca), "username": "scada", "password_env": "TEST_MQTT_PASSWORD"}

    async def body() -> None:
        tls = aiomqtt.TLSParameters(ca_certs=str(ca))
        await publish(
            broker.port,
            BREAKER_TOPIC,
            "closed",
            tls_params=tls,
            username="scada",
            password="s3cret",
        )
        run = Running(source(broker.port, "json", json_points(), **secure))
        assert (await run.next()).value == "closed"
        await run.stop()
        wrong_password = Running(
            source(
                broker.port, "json", json_points(), **{**secure, "password_env": "TEST_MQTT_WRONG"}
            )
        )
        assert "authori" in (await wrong_password.lost(timeout=5)).reason.lower()
        wrong_ca = Running(
            source(broker.port, "json", json_points(), **{**secure, "tls_ca_file": str(other_ca)})
        )
        assert "certificate" in (await wrong_ca.lost(timeout=5)).reason.lower()
        # Plain MQTT on the TLS port: the broker drops it before CONNACK, so the connect times out.
        plain = Running(source(broker.port, "json", json_points(), connect_timeout=1.0))
        assert "timed out" in (await plain.lost(timeout=5)).reason

    try:
        scenario(body)
    finally:
        broker.stop()


# --- Sparkplug B ------------------------------------------------------------------------------

GROUP, NODE, DEVICE = "plant", "rtu-7", "bay-1"
BREAKER = f"{GROUP}/{NODE}/{DEVICE}/Breaker/Closed"
TEMP = f"{GROUP}/{NODE}/Supply/Temperature"


def sparkplug_points() -> list[dict[str, Any]]:
    return [
        {"point": BREAKER, "device": "FDR-1"},
        {"point": TEMP, "device": "HSUB-1", "kind": "supply_temp", "low": 60, "hysteresis": 5},
    ]


class EdgeNode:
    """A Sparkplug B edge node with one device, on its own MQTT connection.

    Node metric `Supply/Temperature` (alias 1) and device metric `Breaker/Closed` (alias 2).
    BIRTHs carry names, aliases, types and each metric's last-change time; DATA carries aliases
    only. A rebirth request (NCMD) is answered with fresh BIRTHs, as the spec asks. It publishes
    with QoS 1 (Sparkplug uses 0) so that each publish has reached the broker when it returns.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.bd_seq = 0
        self.seq = 0
        self.temperature = (72.0, T0)
        self.breaker = (True, T0)
        self.rebirths = 0
        self.client: aiomqtt.Client | None = None
        self.listener: asyncio.Task[None] | None = None

    def _seq(self) -> int:
        self.seq = (self.seq + 1) % 256
        return self.seq

    def death(self, bd_seq: int | None = None) -> bytes:
        metric = spb.Metric(
            ms(T0), "bdSeq", spb.DataType.INT64, self.bd_seq if bd_seq is None else bd_seq
        )
        return spb.NDeath(ms(T0), metric).encode()

    async def connect(self, births: bool = True) -> None:
        will = aiomqtt.Will(f"spBv1.0/{GROUP}/NDEATH/{NODE}", self.death())
        self.client = aiomqtt.Client("127.0.0.1", self.port, will=will, identifier="edge-rtu-7")
        await self.client.__aenter__()
        await self.client.subscribe(f"spBv1.0/{GROUP}/NCMD/{NODE}", qos=1)
        self.listener = asyncio.create_task(self._commands())
        if births:
            await self.births()

    async def _commands(self) -> None:
        assert self.client is not None
        try:
            async for message in self.client.messages:
                assert isinstance(message.payload, bytes)
                command = spb.NCmd.decode(message.payload)
                if any(m.name == "Node Control/Rebirth" and m.value for m in command.metrics):
                    self.rebirths += 1
                    await self.births()
        except aiomqtt.MqttError:
            pass  # the broker went away; the test reconnects the node when it wants to

    async def births(self) -> None:
        assert self.client is not None
        self.seq = -1
        value, at = self.temperature
        nbirth = spb.NBirth(
            timestamp=ms(datetime.now(UTC)),
            seq=self._seq(),
            metrics=(
                spb.Metric(ms(at), "bdSeq", spb.DataType.INT64, self.bd_seq),
                spb.Metric(ms(at), "Node Control/Rebirth", spb.DataType.BOOLEAN, False),
                spb.Metric(ms(at), "Supply/Temperature", spb.DataType.DOUBLE, value, alias=1),
            ),
        )
        await self.client.publish(f"spBv1.0/{GROUP}/NBIRTH/{NODE}", nbirth.encode(), qos=1)
        closed, at = self.breaker
        dbirth = spb.DBirth(
            timestamp=ms(datetime.now(UTC)),
            seq=self._seq(),
            metrics=(spb.Metric(ms(at), "Breaker/Closed", spb.DataType.BOOLEAN, closed, alias=2),),
        )
        await self.client.publish(f"spBv1.0/{GROUP}/DBIRTH/{NODE}/{DEVICE}", dbirth.encode(), qos=1)

    async def breaker_changes(self, closed: bool | None, at: datetime) -> None:
        if closed is not None:
            self.breaker = (closed, at)
        metric = spb.Metric(
            ms(at), None, spb.DataType.BOOLEAN, closed, alias=2, is_null=closed is None
        )
        data = spb.DData(ms(datetime.now(UTC)), self._seq(), (metric,))
        assert self.client is not None
        await self.client.publish(f"spBv1.0/{GROUP}/DDATA/{NODE}/{DEVICE}", data.encode(), qos=1)

    async def temperature_changes(self, value: float, at: datetime) -> None:
        self.temperature = (value, at)
        metric = spb.Metric(ms(at), None, spb.DataType.DOUBLE, value, alias=1)
        data = spb.NData(ms(datetime.now(UTC)), self._seq(), (metric,))
        assert self.client is not None
        await self.client.publish(f"spBv1.0/{GROUP}/NDATA/{NODE}", data.encode(), qos=1)

    async def close(self) -> None:
        if self.listener is not None:
            self.listener.cancel()
        if self.client is not None:
            with contextlib.suppress(aiomqtt.MqttError):  # the broker may be gone already
                await self.client.__aexit__(None, None, None)


def sparkplug_scenario(
    mosquitto: Mosquitto, body: Callable[[EdgeNode], Awaitable[None]], connect: bool = True
) -> None:
    async def with_node() -> None:
        node = EdgeNode(mosquitto.port)
        if connect:
            await node.connect()
        try:
            await body(node)
        finally:
            await node.close()

    scenario(with_node)


def test_sparkplug_births_are_the_present_state(mosquitto: Mosquitto) -> None:
    """On connect the source asks for a rebirth; NBIRTH and DBIRTH give every value and its time."""

    async def body(node: EdgeNode) -> None:
        run = Running(source(mosquitto.port, "sparkplug_b", sparkplug_points()))
        got = {u.point: u for u in [await run.next(), await run.next()]}
        assert node.rebirths == 1
        assert got[TEMP] == PointUpdate(TEMP, 72.0, "good", T0)
        assert got[BREAKER] == PointUpdate(BREAKER, True, "good", T0)
        events = [run.signal(u) for u in got.values()]
        assert {(e.device_id, e.signal) for e in events if e} == {
            ("FDR-1", "breaker_closed"),
            ("HSUB-1", "normal"),
        }
        await run.stop()

    sparkplug_scenario(mosquitto, body)


def test_sparkplug_breaker_trip_by_alias_gives_breaker_open(mosquitto: Mosquitto) -> None:
    """A DDATA with only the alias is named through the DBIRTH; its metric time is occurred_at."""

    async def body(node: EdgeNode) -> None:
        run = Running(source(mosquitto.port, "sparkplug_b", sparkplug_points()))
        for _ in range(2):
            run.signal(await run.next())
        tripped = T0 + timedelta(minutes=7)
        await node.breaker_changes(False, tripped)
        update = await run.next()
        assert update == PointUpdate(BREAKER, False, "good", tripped)
        event = run.signal(update)
        assert event is not None
        assert (event.device_id, event.signal, event.occurred_at) == (
            "FDR-1",
            "breaker_open",
            tripped,
        )
        await run.stop()

    sparkplug_scenario(mosquitto, body)


def test_sparkplug_analogue_threshold_with_hysteresis(mosquitto: Mosquitto) -> None:
    """NDATA temperatures 58, 62, 66 against low 60 + 5: low, still low, normal."""

    async def body(node: EdgeNode) -> None:
        run = Running(source(mosquitto.port, "sparkplug_b", sparkplug_points()))
        for _ in range(2):
            run.signal(await run.next())
        signals = []
        for i, value in enumerate([58.0, 62.0, 66.0], start=1):
            await node.temperature_changes(value, T0 + timedelta(minutes=i))
            event = run.signal(await run.next_for(TEMP))
            signals.append(event.signal if event else None)
        assert signals == ["supply_temp_low", None, "normal"]
        await run.stop()

    sparkplug_scenario(mosquitto, body)


def test_sparkplug_null_metric_and_death_make_points_invalid(mosquitto: Mosquitto) -> None:
    """is_null makes a point invalid; NDEATH makes all the node's points invalid, unless stale."""

    async def body(node: EdgeNode) -> None:
        run = Running(source(mosquitto.port, "sparkplug_b", sparkplug_points()))
        for _ in range(2):
            run.signal(await run.next())
        await node.breaker_changes(None, T0 + timedelta(minutes=1))
        event = run.signal(await run.next())
        assert event is not None and (event.signal, event.quality) == ("breaker_closed", "invalid")
        assert node.client is not None
        topic = f"spBv1.0/{GROUP}/NDEATH/{NODE}"
        await node.client.publish(
            topic, node.death(bd_seq=node.bd_seq + 5), qos=1
        )  # an older session's
        assert await run.quiet(0.5) == []
        await node.client.publish(topic, node.death(), qos=1)
        dead = {u.point: u for u in [await run.next(), await run.next()]}
        assert {u.quality for u in dead.values()} == {"invalid"}
        events = [run.signal(u) for u in dead.values()]
        assert {(e.device_id, e.signal, e.quality) for e in events if e} == {
            ("HSUB-1", "normal", "invalid")
        }  # the breaker was already invalid
        await run.stop()

    sparkplug_scenario(mosquitto, body)


def test_sparkplug_data_before_birth_asks_for_a_rebirth(mosquitto: Mosquitto) -> None:
    """Alias-only DATA from a node whose BIRTH was missed makes the source send NCMD Rebirth."""

    async def body(node: EdgeNode) -> None:
        await node.connect(births=False)
        run = Running(
            source(mosquitto.port, "sparkplug_b", sparkplug_points(), rebirth_on_connect=False)
        )
        tripped = T0 + timedelta(minutes=2)
        while node.rebirths == 0:  # until the source has subscribed and seen one
            await node.breaker_changes(False, tripped)
            await asyncio.sleep(0.2)
        got = {u.point: u for u in [await run.next(), await run.next()]}
        assert got[BREAKER] == PointUpdate(BREAKER, False, "good", tripped)
        await run.stop()

    sparkplug_scenario(mosquitto, body, connect=False)


def test_sparkplug_unreadable_payload_is_skipped(mosquitto: Mosquitto) -> None:
    """A payload that is not Sparkplug protobuf is logged and skipped; the next DATA arrives."""

    async def body(node: EdgeNode) -> None:
        run = Running(source(mosquitto.port, "sparkplug_b", sparkplug_points()))
        for _ in range(2):
            await run.next()
        assert node.client is not None
        with capture_logs() as logs:
            await node.client.publish(
                f"spBv1.0/{GROUP}/DDATA/{NODE}/{DEVICE}", b"\xff\xff garbage", qos=1
            )
            await node.breaker_changes(False, T0 + timedelta(minutes=1))
            update = await run.next()
        assert update.point == BREAKER and update.value is False
        assert [e["topic"] for e in logs if e["event"] == "mqtt.unreadable_payload"] == [
            f"spBv1.0/{GROUP}/DDATA/{NODE}/{DEVICE}"
        ]
        await run.stop()

    sparkplug_scenario(mosquitto, body)


def test_sparkplug_broker_restart_gives_no_new_event(mosquitto: Mosquitto) -> None:
    """After a broker restart the rebirth reads the same state back; the Mapper sends nothing."""

    async def body(node: EdgeNode) -> None:
        run = Running(source(mosquitto.port, "sparkplug_b", sparkplug_points()))
        for _ in range(2):
            run.signal(await run.next())
        tripped = T0 + timedelta(minutes=4)
        await node.breaker_changes(False, tripped)
        event = run.signal(await run.next())
        assert event is not None and event.signal == "breaker_open"
        await asyncio.to_thread(mosquitto.stop)
        await run.lost(timeout=5)
        await node.close()
        await asyncio.to_thread(mosquitto.start)
        node.bd_seq += 1
        await node.connect()
        again = Running(source(mosquitto.port, "sparkplug_b", sparkplug_points()))
        again.mapper = run.mapper  # the runner keeps one Mapper across reconnects
        updates = [await again.next() for _ in range(2)]
        updates += await again.quiet(0.5)  # the rebirth answer: the same state once more
        assert {(u.point, u.value, u.quality) for u in updates} == {
            (BREAKER, False, "good"),
            (TEMP, 72.0, "good"),
        }
        assert [again.signal(u) for u in updates] == [None] * len(updates)
        await again.stop()

    sparkplug_scenario(mosquitto, body)


def test_config_refuses_points_that_do_not_fit_the_format() -> None:
    """A JSON point with a wildcard, or a Sparkplug point without group/node/metric, is refused."""
    with pytest.raises(ValueError, match="no wildcards"):
        source(1883, "json", [{"point": "plant/+/state", "device": "FDR-1"}])
    with pytest.raises(ValueError, match="edge node"):
        source(1883, "sparkplug_b", [{"point": "plant/Breaker", "device": "FDR-1"}])
    assert PointConfig(point=BREAKER, device="FDR-1").kind == "breaker"


@pytest.mark.parametrize("example", ["mqtt.yaml", "sparkplug.yaml"])
def test_deploy_examples_load_against_the_sample_networks(
    example: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """deploy/scada/mqtt.yaml and sparkplug.yaml are valid site configs of the sample networks."""
    monkeypatch.chdir(ROOT)
    site = load(ROOT / "deploy" / "scada" / example)
    [broker] = site.sources
    assert isinstance(broker, MqttSource)
    assert broker.format == ("json" if example == "mqtt.yaml" else "sparkplug_b")


def test_end_to_end_trip_confirms_incident_and_loss_alerts(
    broker: EmbeddedBroker, worker: Worker, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """`outage scada run`: a JSON trip confirms FDR-1, a stop alerts, a restart repeats nothing."""
    config = f"""
site: e2e-mqtt
utility: power
topology: [{ROOT / "topology" / "samples" / "power.csv"}]
sources:
  - name: plant-mqtt
    type: mqtt
    format: json
    host: 127.0.0.1
    port: {mosquitto.port}
    keepalive: 5
    reconnect_initial: 0.5
    reconnect_max: 1.0
    lost_after: 2.0
    points:
      - {{point: "{BREAKER_TOPIC}", device: FDR-1, kind: breaker}}
"""
    now = datetime.now(UTC).replace(microsecond=0)
    closed = json.dumps({"value": "closed", "timestamp": (now - timedelta(hours=1)).isoformat()})
    tripped_at = now - timedelta(seconds=5)
    tripped = json.dumps({"value": "open", "timestamp": ms(tripped_at)})
    asyncio.run(publish(mosquitto.port, BREAKER_TOPIC, closed))
    connector = start_connector(config, broker, tmp_path)
    try:
        connector.wait_connected("plant-mqtt")
        asyncio.run(publish(mosquitto.port, BREAKER_TOPIC, tripped))
        incident = wait_for(lambda: confirmed_incident(worker, "FDR-1"), timeout=60)
        assert incident["device_id"] == "FDR-1"
        signals = scada_signals(broker, "FDR-1")
        assert [s["signal"] for s in signals] == ["breaker_closed", "breaker_open"]
        assert datetime.fromisoformat(signals[1]["occurred_at"]) == tripped_at
        assert source_alerts(broker, "scada_source_lost") == []

        mosquitto.stop()
        wait_for(lambda: source_alerts(broker, "scada_source_lost"), timeout=30)

        mosquitto.start()
        # persistence is off: the gateway publishes its retained state again on reconnect
        asyncio.run(publish(mosquitto.port, BREAKER_TOPIC, tripped))
        connector.wait_connected("plant-mqtt", times=2)
        # A later change as a marker: once it is on the topic, the read-back would be too.
        reclosed = {"value": "closed", "timestamp": ms(datetime.now(UTC))}
        asyncio.run(publish(mosquitto.port, BREAKER_TOPIC, json.dumps(reclosed)))
        wait_for(lambda: len(scada_signals(broker, "FDR-1")) >= 3, timeout=30)
        assert [s["signal"] for s in scada_signals(broker, "FDR-1")] == [
            "breaker_closed",
            "breaker_open",
            "breaker_closed",
        ]
    finally:
        connector.stop()
