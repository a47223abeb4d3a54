"""OPC UA client source: one subscription on the server, every point a monitored item.

Each point's `point` is a node id as the server's address space writes it: `ns=2;s=BRK-FDR-1`,
`ns=3;i=1042`, or `nsu=urn:vendor:site;s=BRK-FDR-1` (the namespace by URI, looked up after
connecting, for servers whose namespace indexes change between restarts). The node's Value
attribute is monitored; the subscription's initial notifications are the present state.

Each notification becomes a `PointUpdate`: the Variant's value, the quality from the
StatusCode's severity (Good -> good, Uncertain -> suspect, Bad -> invalid), and the source
time from SourceTimestamp (in UTC), else ServerTimestamp. `emit.connected()` is called once
every point is monitored. A Bad status with no value (a
device the server cannot reach) repeats the point's last value with quality invalid, so the
Mapper can publish the quality change rather than drop a value-less update.

The connection counts as lost, and `run` raises `SourceLost`, when asyncua's supervisor sees
the transport close or its health probe (a read every `watchdog_interval`) go unanswered, when
the server ends the subscription (lifetime expired, shutdown), or when notifications come in
faster than they can be published (the queue is never silently trimmed). Reconnecting is the
runner's job: asyncua's own auto-reconnect is off, so every reconnect reads the present state
again through a fresh subscription and the Mapper's de-duplication decides what is new.

A point whose node the server does not have (or that is not a readable variable) raises
`UnknownNodeError`, a ValueError naming every such point and its config line. Skipping it
would leave a breaker silently unmonitored; refusing the whole site at start would also stop
the healthy sources. So the runner logs it, keeps retrying with backoff (the server may be
mid-redeploy) and the source's `scada_source_lost` alert fires until the node exists or the
config is fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

import structlog
from pydantic import AfterValidator, Field, SecretStr, model_validator

from events.inbound import Quality
from scada.points import PointConfig
from scada.sources.base import Emit, PointUpdate, SourceConfig, SourceLost

if TYPE_CHECKING:
    from asyncua import Client, ua
    from asyncua.common.subscription import Subscription

log = structlog.get_logger("outage.scada.opcua")

SECURITY_POLICIES = frozenset({"Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss"})
SECURITY_MODES = frozenset({"Sign", "SignAndEncrypt"})
# Notifications waiting to be published before the source counts as lost (see module doc).
QUEUE_LIMIT = 10_000
# OPC UA's null DateTime (1601-01-01) and anything before it means "no timestamp".
_NO_TIME_BEFORE = datetime(1601, 1, 2, tzinfo=UTC)


class UnknownNodeError(ValueError):
    """Points whose node id the server does not have; the message names each one."""


def _check_node_id(point: PointConfig) -> PointConfig:
    from asyncua import ua  # asyncua's own parser, so what passes here is what it reads

    try:
        ua.NodeId.from_string(point.point)
    except ua.UaError:
        raise ValueError(
            f"{point.point!r} is not an OPC UA node id "
            "(write ns=2;s=NAME, ns=2;i=1042 or nsu=URI;s=NAME)"
        ) from None
    return point


OpcUaPoint = Annotated[PointConfig, AfterValidator(_check_node_id)]


class OpcUaSource(SourceConfig):
    """An OPC UA server, read through one subscription (package `asyncua`)."""

    type: Literal["opcua"]
    points: tuple[OpcUaPoint, ...] = Field(min_length=1)
    url: str = Field(
        pattern=r"^opc\.tcp://[^/\s]+",
        max_length=500,
        description="Endpoint, e.g. opc.tcp://10.1.2.3:4840/ (user:pass@ works, not advised).",
    )
    security_string: str | None = Field(
        default=None,
        description=(
            "Policy,Mode,client_cert,client_key[,server_cert] as asyncua takes it: policy "
            "Basic256Sha256, Aes128Sha256RsaOaep or Aes256Sha256RsaPss; mode Sign or "
            "SignAndEncrypt; paths to .der/.pem files (a key password as key.pem::secret). "
            "Without server_cert the server's certificate is taken from its endpoints. "
            "Empty: no security (SecurityPolicy None)."
        ),
    )
    application_uri: str | None = Field(
        default=None,
        description="The client's ApplicationUri; must match the URI in the client certificate.",
    )
    user: str | None = Field(default=None, max_length=200, description="User name token.")
    password: SecretStr | None = Field(
        default=None, description="Its password; prefer password_env to keep it out of the file."
    )
    password_env: str | None = Field(
        default=None, description="Name of an environment variable holding the password."
    )
    publishing_interval_ms: float = Field(
        default=200, gt=0, description="How often the server sends the changes it collected."
    )
    sampling_interval_ms: float = Field(
        default=0,
        ge=0,
        description="How often the server samples each node; 0 = its fastest (or on change).",
    )
    queue_size: int = Field(
        default=10,
        ge=1,
        le=1000,
        description=(
            "Changes kept per node between publishes: above 1 a trip and reclose inside one "
            "publishing interval both arrive instead of only the last value."
        ),
    )
    watchdog_interval: float = Field(
        default=1.0, gt=0, description="Seconds between health probes; loss seen within ~2x this."
    )
    request_timeout: float = Field(default=4.0, gt=0, description="Seconds per request.")
    session_timeout: float = Field(
        default=60.0,
        gt=0,
        description="Seconds the server keeps an abandoned session (frees server slots sooner).",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.password is not None and self.password_env is not None:
            raise ValueError("give password or password_env, not both")
        if (self.password is not None or self.password_env is not None) and self.user is None:
            raise ValueError("a password needs `user`")
        if self.security_string:
            parts = [part.strip() for part in self.security_string.split(",")]
            if len(parts) not in (4, 5) or not all(parts):
                raise ValueError(
                    "security_string is Policy,Mode,client_cert,client_key[,server_cert]"
                )
            if parts[0] not in SECURITY_POLICIES:
                raise ValueError(f"security policy {parts[0]!r} not in {sorted(SECURITY_POLICIES)}")
            if parts[1] not in SECURITY_MODES:
                raise ValueError(f"security mode {parts[1]!r} not in {sorted(SECURITY_MODES)}")
        seen: set[str] = set()
        for point in self.points:
            if point.point in seen:
                raise ValueError(f"line {point.line}: node id {point.point!r} is listed twice")
            seen.add(point.point)
        return self

    def _password(self) -> str | None:
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if value is None:
                raise SourceLost(f"environment variable {self.password_env} (password) is not set")
            return value
        return None

    async def run(self, emit: Emit) -> None:
        """Connect, subscribe to every point, emit the present state and each change."""
        from asyncua import Client, ua
        from asyncua.common.subscription import OverflowPolicy

        quiet_library_logs()
        client = Client(
            self.url, timeout=self.request_timeout, watchdog_intervall=self.watchdog_interval
        )
        client.name = client.description = f"outage-correlator scada {self.name}"
        if self.application_uri:
            client.application_uri = self.application_uri
        client.session_timeout = round(self.session_timeout * 1000)
        if self.user is not None:
            client.set_user(self.user)
            password = self._password()
            if password is not None:
                client.set_password(password)

        loop = asyncio.get_running_loop()
        lost: asyncio.Future[str] = loop.create_future()

        def lose(reason: str) -> None:
            if not lost.done():
                lost.set_result(reason)

        async def on_connection_lost(error: Exception) -> None:
            lose(f"connection to {self.url} lost: {_describe(error)}")

        client.connection_lost_callback = on_connection_lost
        try:
            async with asyncio.timeout(self.request_timeout * 3):
                if self.security_string:
                    await client.set_security_string(self.security_string)
                await client.connect()
        except (OSError, TimeoutError, ua.UaError) as error:
            with contextlib.suppress(Exception):  # ends the tasks a half-made session started
                await asyncio.wait_for(client.disconnect(), 1.0)
            raise SourceLost(f"cannot connect to {self.url}: {_describe(error)}") from error

        try:
            nodes = await self._resolve(client)

            def overflow() -> None:
                # Dropping queued changes could lose a trip: count as lost, reconnect reads anew.
                lose(f"more than {QUEUE_LIMIT} changes waiting to be published")
                client.uaclient.notify_transport_lost()

            subscription = await client.create_subscription(
                self.publishing_interval_ms,
                None,
                queue_maxsize=QUEUE_LIMIT,
                overflow=OverflowPolicy.DISCONNECT,
            )
            subscription.set_overflow_disconnect_handler(overflow)
            node_ids = list(nodes)
            results = await subscription.subscribe_data_change(
                [client.get_node(node_id) for node_id in node_ids],
                queuesize=self.queue_size,
                sampling_interval=ua.Double(self.sampling_interval_ms),
            )
            missing = [
                (nodes[node_id], result)
                for node_id, result in zip(node_ids, results, strict=True)
                if isinstance(result, ua.StatusCode)
            ]
            if missing:
                raise UnknownNodeError(self._missing_message(missing))
            log.info("scada.opcua.subscribed", source=self.name, url=self.url, nodes=len(nodes))
            await emit.connected()  # every point is monitored; its first values are on the way
            await self._pump_until_lost(subscription, nodes, emit, lost)
        except (OSError, TimeoutError, ua.UaError) as error:
            reason = lost.result() if lost.done() else _describe(error)
            raise SourceLost(f"{self.url}: {reason}") from error
        finally:
            protocol = client.uaclient.protocol
            if lost.done() and protocol is not None and protocol.transport is not None:
                # asyncua marks a lost client disconnected but leaves the socket open; on a
                # dead link the session close below would then wait out request_timeout.
                protocol.transport.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), self.request_timeout)

    async def _resolve(self, client: Client) -> dict[ua.NodeId, tuple[str, ...]]:
        """Node id -> the configured point strings naming it (`nsu=` looked up on the server)."""
        from asyncua import ua

        nodes: dict[ua.NodeId, tuple[str, ...]] = {}
        namespaces: list[str] | None = None
        unknown_namespaces = []
        for point in self.points:
            parsed = ua.NodeId.from_string(point.point)
            uri = getattr(parsed, "NamespaceUri", None)
            if uri:
                if namespaces is None:
                    namespaces = await client.get_namespace_array()
                if uri not in namespaces:
                    unknown_namespaces.append(point)
                    continue
                index = ua.Int16(namespaces.index(uri))
                parsed = ua.NodeId(parsed.Identifier, index, parsed.NodeIdType)
            node_id = ua.NodeId(parsed.Identifier, parsed.NamespaceIndex, parsed.NodeIdType)
            nodes[node_id] = (*nodes.get(node_id, ()), point.point)
        if unknown_namespaces:
            listed = "; ".join(f"{p.point!r} (line {p.line})" for p in unknown_namespaces)
            raise UnknownNodeError(
                f"source {self.name!r}: the server at {self.url} has no such namespace for "
                f"{listed}; its namespaces: {namespaces}"
            )
        return nodes

    def _missing_message(self, missing: list[tuple[tuple[str, ...], ua.StatusCode]]) -> str:
        lines = {p.point: p.line for p in self.points}
        listed = "; ".join(
            f"{point!r} (line {lines[point]}): {status.name}"
            for points, status in missing
            for point in points
        )
        return (
            f"source {self.name!r}: the server at {self.url} cannot give the value of "
            f"{len(missing)} configured node(s): {listed}"
        )

    async def _pump_until_lost(
        self,
        subscription: Subscription,
        nodes: dict[ua.NodeId, tuple[str, ...]],
        emit: Emit,
        lost: asyncio.Future[str],
    ) -> None:
        """Emit notifications until the connection or the subscription ends; raise SourceLost."""
        ended: list[str] = []
        pump = asyncio.create_task(self._pump(subscription, nodes, emit, ended.append))
        try:
            either: set[asyncio.Future[Any]] = {pump, lost}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if not pump.done():
                # Changes that arrived before the loss are true: let them through, up to the
                # end-of-subscription marker asyncua queues behind them, briefly.
                await asyncio.wait({pump}, timeout=2.0)
            if pump.done():
                pump.result()  # a failed emit propagates as itself
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        if lost.done():
            raise SourceLost(lost.result())
        raise SourceLost(f"{self.url} ended the subscription: {', '.join(ended) or 'closed'}")

    async def _pump(
        self,
        subscription: Subscription,
        nodes: dict[ua.NodeId, tuple[str, ...]],
        emit: Emit,
        ended: Callable[[str], None],
    ) -> None:
        from asyncua import ua
        from asyncua.common.subscription import DataChangeEvent, StatusChangeEvent

        last_values: dict[str, Any] = {}
        async for event in subscription:
            if isinstance(event, StatusChangeEvent):
                # Sent only when the subscription is over (BadTimeout, BadShutdown, transferred).
                ended(event.notification.Status.name)
                return
            if not isinstance(event, DataChangeEvent):
                continue
            data = event.data.monitored_item.Value
            points = nodes.get(event.node.nodeid)  # NodeId compares by namespace and id
            if points is None or data is None:
                continue
            status = data.StatusCode or ua.StatusCode()
            quality = _quality(status)
            value = _plain(event.value)
            source_time = _utc(data.SourceTimestamp) or _utc(data.ServerTimestamp)
            for point in points:
                if value is None and quality == "invalid":
                    # The server lost the device: its last value, now marked invalid.
                    value_for_point = last_values.get(point)
                else:
                    value_for_point = value
                    last_values[point] = value
                await emit(PointUpdate(point, value_for_point, quality, source_time))


def quiet_library_logs() -> None:
    """Keep asyncua's own logging to CRITICAL unless the entry point set a level for it.

    asyncua logs every lost connection as an ERROR with a traceback (its publish loop) plus
    teardown warnings; the connector already reports the loss once, as `scada.source_lost`
    with the reason. Configure the `asyncua` logger explicitly to see the library's detail.
    """
    library = logging.getLogger("asyncua")
    if library.level == logging.NOTSET:
        library.setLevel(logging.CRITICAL)


def _quality(status: ua.StatusCode) -> Quality:
    if status.is_good():
        return "good"
    if status.is_uncertain():
        return "suspect"
    return "invalid"


def _plain(value: object) -> bool | int | float | str | None:
    """The Variant's value as a PointUpdate takes it; None for what a point cannot mean."""
    if isinstance(value, bool | float | str):
        return value
    if isinstance(value, int):
        return int(value)  # an enumeration's member as its number
    text = getattr(value, "Text", None)  # LocalizedText, e.g. a multi-state "OPEN"/"CLOSED"
    return text if isinstance(text, str) else None


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return None if moment < _NO_TIME_BEFORE else moment


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
