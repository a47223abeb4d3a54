"""MQTT source: plain JSON topics or Sparkplug B edge nodes, through one broker connection.

`format: json` — each point is a topic (`plant/north/BRK-FDR-1/state`). The payload is a bare
JSON value (`"open"`, `true`, `2`, `71.5`), a plain-text word (`OPEN`), or an object
`{"value": ..., "quality": "good|suspect|invalid", "timestamp": ISO-8601 or epoch ms}`.
Retained messages are the present state: the broker sends them on every subscribe, so a
reconnect reads every point back (and `points.Mapper` drops what it already has). A payload
that cannot be read is logged with its topic and skipped.

`format: sparkplug_b` — each point is `<group>/<edge node>[/<device>]/<metric name>`. NBIRTH
and DBIRTH carry every metric's present value and the alias map; NDATA and DDATA carry the
changes; a metric's own timestamp is the source time. A null metric, and every point of a
node or device after its NDEATH / DDEATH, is sent on with quality `invalid` (its last value,
so the Mapper sees a quality change). Sparkplug messages are not retained, so on connect,
and whenever DATA comes for a node whose BIRTH was not seen or with an alias it does not
know, the source asks the edge node for a rebirth (NCMD `Node Control/Rebirth`).

Either way the connection going (or never opening, or a subscription refused) raises
`SourceLost`; `scada.runner` reconnects with backoff.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self, get_args

import structlog
from pydantic import Field, SecretStr, model_validator

from events.inbound import Quality
from scada.sources.base import Emit, PointUpdate, SourceConfig, SourceLost

if TYPE_CHECKING:
    import aiomqtt

log = structlog.get_logger("outage.scada.mqtt")

QUALITIES: frozenset[str] = frozenset(get_args(Quality))
SPARKPLUG = "spBv1.0"
REBIRTH_METRIC = "Node Control/Rebirth"
BD_SEQ = "bdSeq"
ONE_MS = timedelta(milliseconds=1)
Value = bool | int | float | str | None


class MqttSource(SourceConfig):
    """An MQTT broker: JSON topics or Sparkplug B metrics, one connection per source."""

    type: Literal["mqtt"]
    host: str = Field(min_length=1, description="Broker host name or address.")
    port: int = Field(default=1883, ge=1, le=65535)
    format: Literal["json", "sparkplug_b"] = "json"
    username: str | None = None
    password: SecretStr | None = None
    password_env: str | None = Field(
        default=None, description="Environment variable holding the password (not in the file)."
    )
    tls: bool = Field(default=False, description="TLS; on by itself when a CA file is given.")
    tls_ca_file: Path | None = Field(
        default=None, description="CA bundle the broker is checked with."
    )
    tls_cert_file: Path | None = Field(default=None, description="Client certificate (PEM).")
    tls_key_file: Path | None = Field(default=None, description="Client key (PEM).")
    tls_insecure: bool = Field(default=False, description="Skip the broker host name check.")
    client_id: str | None = Field(
        default=None, max_length=200, description="Unique per broker; random when not given."
    )
    clean_session: bool = Field(
        default=True,
        description="False (with a fixed client_id and qos 1) has the broker keep the changes "
        "made while the connector was away.",
    )
    keepalive: int = Field(
        default=15,
        ge=1,
        le=65535,
        description="Seconds; a silent broker is taken as lost after 1.5 times this.",
    )
    connect_timeout: float = Field(default=10.0, gt=0, description="Seconds to connect.")
    qos: Literal[0, 1, 2] = 1
    rebirth_on_connect: bool = Field(
        default=True, description="Sparkplug: ask every configured edge node for its BIRTH."
    )
    rebirth_interval: float = Field(
        default=5.0, ge=0, description="Sparkplug: least seconds between rebirth requests per node."
    )

    @model_validator(mode="after")
    def _points_fit_the_format(self) -> Self:
        for point in self.points:
            if self.format == "json" and ("+" in point.point or "#" in point.point):
                raise ValueError(f"point {point.point!r}: a JSON point is one topic, no wildcards")
            if self.format == "sparkplug_b" and not _sparkplug_node(point.point):
                raise ValueError(
                    f"point {point.point!r}: a Sparkplug point is "
                    "<group>/<edge node>[/<device>]/<metric name>"
                )
        if self.password is not None and self.password_env is not None:
            raise ValueError("give `password` or `password_env`, not both")
        if not self.clean_session and not self.client_id:
            raise ValueError("`clean_session: false` needs a fixed `client_id`")
        return self

    async def run(self, emit: Emit) -> None:
        """Connect, subscribe, emit every retained / BIRTH value and every change after."""
        import aiomqtt

        reader: _Reader = _JsonReader(self) if self.format == "json" else _SparkplugReader(self)
        where = f"mqtt://{self.host}:{self.port}"
        try:
            client = self._client(aiomqtt)
        except (OSError, ValueError) as error:  # a missing CA file, a bad TLS setting
            raise SourceLost(f"{where}: {error}") from error
        try:
            async with client:
                log.info("mqtt.connected", source=self.name, broker=where, format=self.format)
                await _subscribe(client, reader.subscriptions(), self.qos)
                await emit.connected()  # retained values or births may never come: up anyway
                await reader.started(client)
                async for message in client.messages:
                    await reader.handle(client, str(message.topic), _bytes(message.payload), emit)
        except aiomqtt.MqttError as error:
            raise SourceLost(f"{where}: {error or type(error).__name__}") from error
        raise SourceLost(f"{where}: the message stream ended")

    def _client(self, aiomqtt: Any) -> aiomqtt.Client:
        password = self.password.get_secret_value() if self.password else None
        if self.password_env is not None:
            password = os.environ.get(self.password_env)
            if password is None:
                raise ValueError(f"environment variable {self.password_env} is not set")
        tls = None
        if self.tls or self.tls_ca_file or self.tls_cert_file:
            tls = aiomqtt.TLSParameters(
                ca_certs=str(self.tls_ca_file) if self.tls_ca_file else None,
                certfile=str(self.tls_cert_file) if self.tls_cert_file else None,
                keyfile=str(self.tls_key_file) if self.tls_key_file else None,
            )
        client: aiomqtt.Client = aiomqtt.Client(
            self.host,
            self.port,
            username=self.username,
            password=password,
            identifier=self.client_id,
            clean_session=self.clean_session,
            keepalive=self.keepalive,
            timeout=self.connect_timeout,
            tls_params=tls,
            tls_insecure=self.tls_insecure if tls else None,
        )
        return client


async def _subscribe(client: aiomqtt.Client, topics: list[str], qos: int) -> None:
    """Subscribe to all topics at once; a refused one means its points would never arrive."""
    granted = await client.subscribe([(topic, qos) for topic in topics])
    for topic, code in zip(topics, granted, strict=False):
        value = code if isinstance(code, int) else int(getattr(code, "value", 0x80))
        if value >= 0x80:
            raise SourceLost(f"subscription to {topic!r} refused by the broker (code {value})")


def _bytes(payload: object) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode()
    return b"" if payload is None else str(payload).encode()


class _Reader:
    """What one payload format does with the connection: topics, start, each message."""

    def subscriptions(self) -> list[str]:
        raise NotImplementedError

    async def started(self, client: aiomqtt.Client) -> None:
        """Called once subscribed (Sparkplug asks for births here)."""

    async def handle(self, client: aiomqtt.Client, topic: str, payload: bytes, emit: Emit) -> None:
        raise NotImplementedError


# --- plain JSON -------------------------------------------------------------------------------


class UnreadablePayload(ValueError):
    """The payload is not a value this source understands; the message says why."""


class _JsonReader(_Reader):
    def __init__(self, source: MqttSource) -> None:
        self.source = source
        self.last: dict[str, Value] = {}

    def subscriptions(self) -> list[str]:
        return sorted({point.point for point in self.source.points})

    async def handle(self, client: aiomqtt.Client, topic: str, payload: bytes, emit: Emit) -> None:
        if not payload:
            return  # an empty retained message only clears the topic's retained value
        try:
            value, quality, at = read_json(payload)
        except UnreadablePayload as error:
            log.warning(
                "mqtt.unreadable_payload",
                source=self.source.name,
                topic=topic,
                error=str(error),
                payload=payload[:120].decode("utf-8", "replace"),
            )
            return
        if value is None:
            # No value now: keep the last one so the Mapper sees the quality change.
            if topic not in self.last:
                return
            value, quality = self.last[topic], "invalid"
        else:
            self.last[topic] = value
        await emit(PointUpdate(topic, value, quality, at))


def read_json(payload: bytes) -> tuple[Value, Quality, datetime | None]:
    """(value, quality, source time) of one JSON payload; UnreadablePayload when it is not one."""
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise UnreadablePayload("not UTF-8 text") from None
    try:
        body = json.loads(text)
    except ValueError:
        # Plain-text payloads ("ON", "open") are common on small devices; broken JSON is not one.
        if not text or text[0] in '{["' or any(ch.isspace() for ch in text) or len(text) > 40:
            raise UnreadablePayload("not JSON") from None
        return text, "good", None
    if not isinstance(body, dict):
        return _value(body), "good", None
    if "value" not in body:
        raise UnreadablePayload('an object payload needs a "value"')
    quality = body.get("quality", "good")
    if quality not in QUALITIES:
        raise UnreadablePayload(f"quality {quality!r} is not one of {sorted(QUALITIES)}")
    at = _timestamp(body["timestamp"]) if body.get("timestamp") is not None else None
    return _value(body["value"]), quality, at


def _value(value: object) -> Value:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise UnreadablePayload(f"value {value!r} is not a number, boolean, string or null")


def _timestamp(value: object) -> datetime:
    """ISO-8601 (UTC when it has no offset) or epoch milliseconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value / 1000, UTC)
        except (ValueError, OverflowError, OSError):
            raise UnreadablePayload(f"timestamp {value!r} is out of range") from None
    if isinstance(value, str):
        try:
            at = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise UnreadablePayload(f"timestamp {value!r} is not ISO-8601") from None
        return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    raise UnreadablePayload(f"timestamp {value!r} is neither ISO-8601 nor epoch milliseconds")


# --- Sparkplug B ------------------------------------------------------------------------------


def _sparkplug_node(point: str) -> tuple[str, str] | None:
    """(group, edge node) of a Sparkplug point, or None when it has too few parts."""
    parts = point.split("/")
    if len(parts) < 3 or not all(parts[:3]) or any(ch in point for ch in "+#"):
        return None
    return parts[0], parts[1]


@dataclass(frozen=True)
class SparkplugMetric:
    """One metric of a Sparkplug payload, its name resolved through the BIRTH's aliases."""

    name: str
    value: Value
    is_null: bool
    timestamp_ms: int | None
    is_historical: bool


@dataclass
class _Node:
    """What this connection knows of one edge node since its last NBIRTH."""

    # Per BIRTH seen (None: the node's own, else a device): alias -> name, name -> data type.
    aliases: dict[str | None, dict[int, str]] = field(default_factory=dict)
    datatypes: dict[str | None, dict[str, int]] = field(default_factory=dict)
    bd_seq: int | None = None
    last_rebirth: float = -math.inf


class _SparkplugReader(_Reader):
    def __init__(self, source: MqttSource) -> None:
        self.source = source
        self.configured = {point.point for point in source.points}
        self.nodes_of_points = {node for p in source.points if (node := _sparkplug_node(p.point))}
        self.nodes: dict[tuple[str, str], _Node] = {}
        # Last value and time of every point, for the `invalid` sent after a death.
        self.last: dict[str, tuple[Value, datetime]] = {}

    def subscriptions(self) -> list[str]:
        topics = []
        for group, node in sorted(self.nodes_of_points):
            for kind in ("NBIRTH", "NDATA", "NDEATH"):
                topics.append(f"{SPARKPLUG}/{group}/{kind}/{node}")
            for kind in ("DBIRTH", "DDATA", "DDEATH"):
                topics.append(f"{SPARKPLUG}/{group}/{kind}/{node}/+")
        return topics

    async def started(self, client: aiomqtt.Client) -> None:
        if self.source.rebirth_on_connect:
            # Births are not retained: asking is the only way to learn the present state.
            for group, node in sorted(self.nodes_of_points):
                await self.rebirth(client, group, node, "connected")

    async def handle(self, client: aiomqtt.Client, topic: str, payload: bytes, emit: Emit) -> None:
        parts = topic.split("/")
        if len(parts) not in (4, 5) or parts[0] != SPARKPLUG:
            return
        group, kind, node_id = parts[1], parts[2], parts[3]
        device = parts[4] if len(parts) == 5 else None
        node = self.nodes.setdefault((group, node_id), _Node())
        prefix = "/".join(p for p in (group, node_id, device) if p is not None)
        try:
            if kind in ("NBIRTH", "DBIRTH"):
                await self.birth(node, device, prefix, payload, emit)
            elif kind in ("NDATA", "DDATA"):
                if device not in node.aliases:
                    await self.rebirth(client, group, node_id, f"{kind} before its BIRTH")
                metrics, unknown = read_sparkplug(
                    payload, node.aliases.get(device, {}), node.datatypes.get(device, {})
                )
                if unknown:
                    await self.rebirth(client, group, node_id, f"{kind} with unknown aliases")
                await self.metrics(prefix, metrics, emit)
            elif kind in ("NDEATH", "DDEATH"):
                await self.death(node, device, prefix, payload, emit)
        except UnreadablePayload as error:
            log.warning(
                "mqtt.unreadable_payload", source=self.source.name, topic=topic, error=str(error)
            )

    async def birth(
        self, node: _Node, device: str | None, prefix: str, raw: bytes, emit: Emit
    ) -> None:
        metrics, _ = read_sparkplug(raw, {}, {}, birth=True)
        aliases, datatypes = sparkplug_maps(raw)
        if device is None:
            # An NBIRTH starts a new session: its devices birth again after it.
            node.aliases, node.datatypes = {}, {}
            node.bd_seq = next(
                (int(m.value) for m in metrics if m.name == BD_SEQ and isinstance(m.value, int)),
                None,
            )
        node.aliases[device], node.datatypes[device] = aliases, datatypes
        await self.metrics(prefix, metrics, emit)

    async def death(
        self, node: _Node, device: str | None, prefix: str, raw: bytes, emit: Emit
    ) -> None:
        if device is None:
            try:
                metrics, _ = read_sparkplug(raw, {}, {})
            except UnreadablePayload:
                metrics = []  # an NDEATH we cannot read still means the node is gone
            bd_seq = next((m.value for m in metrics if m.name == BD_SEQ), None)
            if node.bd_seq is not None and isinstance(bd_seq, int) and bd_seq != node.bd_seq:
                # The will of an older session, sent after the node already came back.
                log.info("mqtt.stale_ndeath", source=self.source.name, node=prefix, bd_seq=bd_seq)
                return
            node.aliases, node.datatypes, node.bd_seq = {}, {}, None
        else:
            node.aliases.pop(device, None)
            node.datatypes.pop(device, None)
        # The death's own timestamp may predate the last change (an NDEATH is the will set at
        # connect): the invalid is stamped now, and never before the point's last value.
        now = datetime.now(UTC)
        for point, (value, last_at) in sorted(self.last.items()):
            if point.startswith(prefix + "/"):
                at = max(now, last_at + ONE_MS)
                self.last[point] = (value, at)
                await emit(PointUpdate(point, value, "invalid", at))

    async def metrics(self, prefix: str, metrics: list[SparkplugMetric], emit: Emit) -> None:
        for metric in metrics:
            point = f"{prefix}/{metric.name}"
            if point not in self.configured or metric.is_historical:
                continue  # historical values are back-fill, not the present state
            at = _epoch_ms(metric.timestamp_ms)
            value = metric.value
            quality: Quality = "good"
            if metric.is_null or value is None:
                if point not in self.last:
                    continue
                value, quality = self.last[point][0], "invalid"
            self.last[point] = (value, at or datetime.now(UTC))
            await emit(PointUpdate(point, value, quality, at))

    async def rebirth(self, client: aiomqtt.Client, group: str, node_id: str, why: str) -> None:
        """Ask an edge node to publish its BIRTH again, at most once per `rebirth_interval`."""
        import pysparkplug

        node = self.nodes.setdefault((group, node_id), _Node())
        if time.monotonic() - node.last_rebirth < self.source.rebirth_interval:
            return
        node.last_rebirth = time.monotonic()
        metric = pysparkplug.Metric(
            timestamp=pysparkplug.get_current_timestamp(),
            name=REBIRTH_METRIC,
            datatype=pysparkplug.DataType.BOOLEAN,
            value=True,
        )
        command = pysparkplug.NCmd(timestamp=pysparkplug.get_current_timestamp(), metrics=(metric,))
        topic = f"{SPARKPLUG}/{group}/NCMD/{node_id}"
        log.info("mqtt.rebirth_requested", source=self.source.name, topic=topic, reason=why)
        await client.publish(topic, command.encode(include_dtypes=True), qos=0)


# Sparkplug data types (spec 6.4.16) whose values a point can take.
_SIGNED_BITS = {1: 8, 2: 16, 3: 32, 4: 64}  # Int8..Int64, sent as two's complement
_SCALAR_FIELDS = frozenset(
    {"int_value", "long_value", "float_value", "double_value", "boolean_value", "string_value"}
)
_DATETIME = 13


def _parse(raw: bytes) -> Any:
    # pysparkplug's generated protobuf class: its own decoder refuses a whole payload for one
    # DataSet or Template metric, which Ignition edge nodes send in every BIRTH.
    from pysparkplug._protobuf import Payload

    try:
        return Payload.FromString(raw)
    except Exception as error:  # protobuf's DecodeError and friends: not a Sparkplug payload
        raise UnreadablePayload(f"not a Sparkplug B payload ({type(error).__name__})") from None


def sparkplug_maps(raw: bytes) -> tuple[dict[int, str], dict[str, int]]:
    """The alias -> name and name -> data type maps of a BIRTH payload."""
    payload = _parse(raw)
    aliases = {m.alias: m.name for m in payload.metrics if m.HasField("alias") and m.name}
    datatypes = {m.name: m.datatype for m in payload.metrics if m.name and m.datatype}
    return aliases, datatypes


def read_sparkplug(
    raw: bytes, aliases: dict[int, str], datatypes: dict[str, int], birth: bool = False
) -> tuple[list[SparkplugMetric], bool]:
    """The scalar metrics of a payload, and whether some alias or name was unknown."""
    payload = _parse(raw)
    if birth and not payload.HasField("timestamp"):
        raise UnreadablePayload("a BIRTH without its timestamp")
    payload_ms = payload.timestamp if payload.HasField("timestamp") else None
    out: list[SparkplugMetric] = []
    unknown = False
    for m in payload.metrics:
        name = (
            m.name if m.HasField("name") else aliases.get(m.alias) if m.HasField("alias") else None
        )
        if not name:
            unknown = True
            continue
        datatype = m.datatype or datatypes.get(name, 0)
        kind = m.WhichOneof("value")
        if (kind is not None and kind not in _SCALAR_FIELDS) or datatype == _DATETIME:
            continue  # datasets, templates, bytes, date-times: nothing a point maps
        value: Value = getattr(m, kind) if kind is not None else None
        if isinstance(value, int) and not isinstance(value, bool) and datatype in _SIGNED_BITS:
            bits = _SIGNED_BITS[datatype]
            value = value - (1 << bits) if value >= 1 << (bits - 1) else value
        out.append(
            SparkplugMetric(
                name=name,
                value=value,
                is_null=m.is_null or kind is None,
                timestamp_ms=m.timestamp if m.HasField("timestamp") else payload_ms,
                is_historical=m.is_historical,
            )
        )
    return out, unknown


def _epoch_ms(value: int | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(value / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        return None
