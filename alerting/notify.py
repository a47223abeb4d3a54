"""Notifications: rendering an alert for a receiver, sending it, and recording the outcome.

`render` is pure. Channels (webhook, e-mail, log) each send one notification and raise
`DeliveryError` (or any exception) when they cannot; `deliver` retries with exponential backoff
and turns every outcome into a `Delivery` record, so a failure is kept, never raised or dropped.
`Dispatcher` ties routing, silences, rendering and delivery together and skips what it has
already delivered, through a `seen`/`remember` pair the caller can back with durable storage;
`Dispatcher.notify` sends one group of alerts (alerting/group.py) as one notification and keeps
a record per alert it covers, so every alert id ends in an outcome of its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from dataclasses import replace as dataclass_replace
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, Literal, Protocol

import aiohttp
import aiosmtplib
import structlog

from alerting.config import AlertingConfig, DeliveryConfig, Receiver, Silence, Smtp
from alerting.group import Batch
from alerting.route import receivers_for
from alerting.silence import silenced_by

SIGNATURE_HEADER = "X-Outage-Signature"
IDEMPOTENCY_HEADER = "X-Outage-Idempotency-Key"

Status = Literal["delivered", "failed", "silenced"]

_log = structlog.get_logger("alerting")


# ---------------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class Notification:
    """What one receiver is told about one alert; `key` is the idempotency key."""

    key: str
    receiver: str
    alert: Mapping[str, Any]
    subject: str
    text: str
    links: Mapping[str, str] = field(default_factory=dict)
    covers: tuple[Mapping[str, Any], ...] = ()  # every alert it tells of; () means `alert` only
    group: Mapping[str, Any] | None = None  # for a group: survivor, incidents, calls, update

    def payload(self) -> dict[str, Any]:
        """The JSON document a webhook receives."""
        body = {
            "key": self.key,
            "receiver": self.receiver,
            "alert": dict(self.alert),
            "alerts": [_brief(a) for a in self.covers or (self.alert,)],
            "subject": self.subject,
            "text": self.text,
            "links": dict(self.links),
        }
        if self.group is not None:
            body["group"] = dict(self.group)
        return body


_BRIEF = (
    "event_id",
    "kind",
    "incident_id",
    "severity",
    "device_id",
    "summary",
    "occurred_at",
    "escalation",
)
_SEVERITIES = ("info", "warning", "critical")
# A page stays readable: the text lists this many alerts; the webhook payload has them all.
LISTED_ALERTS = 20


def _brief(alert: Mapping[str, Any]) -> dict[str, Any]:
    return {name: alert.get(name) for name in _BRIEF}


def notification_key(alert: Mapping[str, Any], receiver: str) -> str:
    """`{alert_id}/{receiver}`: the same alert to the same receiver always has the same key."""
    return f"{alert['event_id']}/{receiver}"


def default_links(public_url: str | None, alert: Mapping[str, Any]) -> dict[str, str]:
    """Links a caller gets when it passes none: the incident in the service's HTTP API."""
    if not public_url or not alert.get("incident_id"):
        return {}
    return {"incident": f"{public_url.rstrip('/')}/v1/incidents/{alert['incident_id']}"}


def render(
    alert: Mapping[str, Any], receiver: str, links: Mapping[str, str] | None = None
) -> Notification:
    """The subject and plain-text body saying what changed, for one receiver."""
    kind = str(alert.get("kind", "alert"))
    what = kind.replace("_", " ")
    severity = str(alert.get("severity", "info"))
    utility = str(alert.get("utility", ""))
    summary = str(alert.get("summary", "")).strip()
    area = str(alert.get("area") or "")
    subject = f"[{severity.upper()}] {utility} {what}".replace("  ", " ")
    subject += f" in {area}" if area else ""
    subject += f": {summary}" if summary else ""
    lines = [
        f"{what.capitalize()} ({severity}, {utility})",
        "",
        summary,
        "",
        f"Incident:           {alert.get('incident_id', '')}",
        f"Device:             {alert.get('device_id', '')}",
    ]
    if area:
        lines.append(f"Area:               {area}")
    lines += [
        f"Customers affected: {alert.get('customers_affected', 'unknown')}",
        f"Severity:           {severity}",
        f"Occurred at:        {alert.get('occurred_at', '')}",
    ]
    if links:
        lines += ["", "Links:"] + [f"  {name}: {url}" for name, url in links.items()]
    lines += ["", f"Alert {alert['event_id']}"]
    return Notification(
        key=notification_key(alert, receiver),
        receiver=receiver,
        alert=alert,
        subject=subject,
        text="\n".join(lines) + "\n",
        links=dict(links or {}),
    )


def render_batch(
    batch: Batch, links: Mapping[str, str] | None = None, calls: int | None = None
) -> Notification:
    """One notification for a group: the survivor's latest state, what it covers, each alert.

    A batch of one alert reads exactly as `render` of that alert. `calls` is how many calls the
    surviving incident holds (from the incident book), when known.
    """
    if len(batch.alerts) == 1:
        one = render(batch.alerts[0], batch.receiver, links)
        return dataclass_replace(one, key=batch.key, group=_group_facts(batch, calls))
    latest = batch.latest
    what = str(latest.get("kind", "alert")).replace("_", " ")
    ranks = [_SEVERITIES.index(s) for a in batch.alerts if (s := a.get("severity")) in _SEVERITIES]
    severity = _SEVERITIES[max(ranks)] if ranks else "info"
    utility = str(latest.get("utility", ""))
    area = str(latest.get("area") or "")
    device = str(latest.get("device_id", ""))
    scope = f"{len(batch.incidents):,} incidents" + (f", {calls:,} calls" if calls else "")
    subject = f"[{severity.upper()}] {utility} {what}".replace("  ", " ")
    subject += f" in {area}" if area else ""
    subject += f": {device}, {scope}" + (" (update)" if batch.update else "")
    lines = [
        f"{what.capitalize()} ({severity}, {utility})" + (": update" if batch.update else ""),
        "",
        f"One fault: {scope} under incident {batch.incident_id} at {device}.",
        str(latest.get("summary", "")).strip(),
        "",
        f"Incident:           {batch.incident_id}",
        f"Device:             {device}",
    ]
    if area:
        lines.append(f"Area:               {area}")
    lines += [
        f"Customers affected: {latest.get('customers_affected', 'unknown')}",
        f"Incidents covered:  {len(batch.incidents):,}",
    ]
    if calls:
        lines.append(f"Calls:              {calls:,}")
    lines += [
        f"Severity:           {severity}",
        f"Occurred at:        {latest.get('occurred_at', '')}",
        "",
        f"Alerts ({len(batch.alerts)}):",
    ]
    for alert in batch.alerts[:LISTED_ALERTS]:
        kind = str(alert.get("kind", "alert")).replace("_", " ")
        lines.append(
            f"  {alert.get('occurred_at', '')} {kind} {alert.get('incident_id', '')}: "
            f"{str(alert.get('summary', '')).strip()}"
        )
    if len(batch.alerts) > LISTED_ALERTS:
        lines.append(f"  ... and {len(batch.alerts) - LISTED_ALERTS} more (in the webhook body)")
    if links:
        lines += ["", "Links:"] + [f"  {name}: {url}" for name, url in links.items()]
    lines += ["", f"Notification {batch.key}"]
    return Notification(
        key=batch.key,
        receiver=batch.receiver,
        alert=latest,
        subject=subject,
        text="\n".join(lines) + "\n",
        links=dict(links or {}),
        covers=batch.alerts,
        group=_group_facts(batch, calls),
    )


def _group_facts(batch: Batch, calls: int | None) -> dict[str, Any]:
    return {
        "incident_id": batch.incident_id,
        "incidents": list(batch.incidents),
        "calls": calls,
        "update": batch.update,
    }


# ----------------------------------------------------------------------------------- channels


class DeliveryError(Exception):
    """A channel could not deliver; `permanent` means a retry would get the same answer."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Channel(Protocol):
    """Sends one notification; returns on success, raises on failure."""

    name: str

    async def send(self, notification: Notification) -> None: ...


def sign(secret: str, body: bytes) -> str:
    """The signature header value: `sha256=` + hex HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    """True when `signature` is what `sign` gives for this body (constant-time compare)."""
    return hmac.compare_digest(sign(secret, body), signature)


def webhook_body(notification: Notification) -> bytes:
    """The exact bytes posted (and signed): compact JSON with sorted keys."""
    return json.dumps(
        notification.payload(), sort_keys=True, separators=(",", ":"), default=str
    ).encode()


class WebhookChannel:
    """POSTs the signed JSON payload; 2xx delivers, 4xx (but 408/429) fails for good."""

    name = "webhook"

    def __init__(self, session: aiohttp.ClientSession, url: str, secret: str) -> None:
        self.session = session
        self.url = url
        self._secret = secret

    async def send(self, notification: Notification) -> None:
        body = webhook_body(notification)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, body),
            IDEMPOTENCY_HEADER: notification.key,
        }
        async with self.session.post(self.url, data=body, headers=headers) as response:
            if 200 <= response.status < 300:
                return
            detail = (await response.text())[:200]
            # 408 and 429 are the receiver asking us to come back later, not a refusal.
            permanent = 400 <= response.status < 500 and response.status not in (408, 429)
            raise DeliveryError(f"HTTP {response.status}: {detail}", permanent=permanent)


def message_id(key: str, sender: str) -> str:
    """A Message-ID derived from the key, so a duplicate mail is recognisable as such."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:40]
    return f"<{digest}@{sender.rpartition('@')[2]}>"


def email_message(notification: Notification, sender: str, to: Sequence[str]) -> EmailMessage:
    """The mail for one notification: subject, the text body (links included), a stable id."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Subject"] = notification.subject
    message["Message-ID"] = message_id(notification.key, sender)
    message[IDEMPOTENCY_HEADER] = notification.key
    message["Date"] = formatdate(usegmt=True)
    message.set_content(notification.text)
    return message


class EmailChannel:
    """Sends a plain-text mail through SMTP; a 5xx reply fails for good, 4xx is retried."""

    name = "email"

    def __init__(self, smtp: Smtp, to: Sequence[str]) -> None:
        self.smtp = smtp
        self.to = list(to)

    async def send(self, notification: Notification) -> None:
        message = email_message(notification, self.smtp.sender, self.to)
        try:
            await aiosmtplib.send(
                message,
                hostname=self.smtp.host,
                port=self.smtp.port,
                start_tls=self.smtp.starttls,
                username=self.smtp.username,
                password=self.smtp.password.get_secret_value() if self.smtp.password else None,
                timeout=self.smtp.timeout_seconds,
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            codes = [refused.code for refused in error.recipients]
            raise DeliveryError(
                f"SMTP recipients refused: {error}", permanent=all(code >= 500 for code in codes)
            ) from error
        except aiosmtplib.SMTPResponseException as error:
            raise DeliveryError(
                f"SMTP {error.code}: {error.message}", permanent=error.code >= 500
            ) from error


class LogChannel:
    """Writes the notification as one structured log line; never fails."""

    name = "log"

    def __init__(self, logger: Any = None) -> None:
        self.logger = logger if logger is not None else _log

    async def send(self, notification: Notification) -> None:
        # Warning, not info: with the default log-only configuration this line *is* the page.
        self.logger.warning(
            "alert.notified",
            key=notification.key,
            receiver=notification.receiver,
            subject=notification.subject,
            kind=notification.alert.get("kind"),
            incident_id=notification.alert.get("incident_id"),
            links=dict(notification.links),
        )


def channels_for(
    receiver: Receiver, smtp: Smtp | None, session: aiohttp.ClientSession
) -> list[Channel]:
    """The channels one configured receiver uses, in a fixed order."""
    channels: list[Channel] = []
    if receiver.webhook is not None:
        secret = receiver.webhook.secret.get_secret_value()
        channels.append(WebhookChannel(session, receiver.webhook.url, secret))
    if receiver.email is not None and smtp is not None:
        channels.append(EmailChannel(smtp, receiver.email.to))
    if receiver.log:
        channels.append(LogChannel())
    return channels


def build_channels(
    config: AlertingConfig, session: aiohttp.ClientSession
) -> dict[str, list[Channel]]:
    """Receiver name -> its channels, for every receiver in the configuration."""
    return {
        name: channels_for(receiver, config.smtp, session)
        for name, receiver in config.receivers.items()
    }


# ----------------------------------------------------------------------------------- delivery


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard to try: `retries` after the first attempt, doubling waits up to a cap."""

    retries: int = 3
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    timeout: float = 10.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    clock: Callable[[], datetime] = _utc_now

    @classmethod
    def from_config(
        cls,
        config: DeliveryConfig,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], datetime] = _utc_now,
    ) -> DeliveryPolicy:
        return cls(
            retries=config.retries,
            backoff_initial=config.backoff_initial_seconds,
            backoff_max=config.backoff_max_seconds,
            timeout=config.timeout_seconds,
            sleep=sleep,
            clock=clock,
        )

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return float(min(self.backoff_initial * 2 ** (attempt - 1), self.backoff_max))


@dataclass(frozen=True)
class Delivery:
    """The outcome of one notification on one channel (or of its silencing)."""

    key: str
    receiver: str
    channel: str
    status: Status
    attempts: int
    last_error: str | None = None
    delivered_at: datetime | None = None
    silenced_by: str | None = None
    notification: str | None = None  # key of the notification that carried it (groups)


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, DeliveryError):
        return str(error)
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


async def deliver(notification: Notification, channel: Channel, policy: DeliveryPolicy) -> Delivery:
    """Send with retries; every outcome, including giving up, comes back as a `Delivery`."""
    last_error: str | None = None
    attempts = 0
    for attempt in range(1, policy.retries + 2):
        attempts = attempt
        try:
            async with asyncio.timeout(policy.timeout):
                await channel.send(notification)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            # Anything a channel raises is a failed attempt; only the record may leave here.
            last_error = _describe(error)
            if isinstance(error, DeliveryError) and error.permanent:
                break
            if attempt <= policy.retries:
                await policy.sleep(policy.backoff(attempt))
            continue
        return Delivery(
            key=notification.key,
            receiver=notification.receiver,
            channel=channel.name,
            status="delivered",
            attempts=attempts,
            last_error=last_error,
            delivered_at=policy.clock(),
        )
    return Delivery(
        key=notification.key,
        receiver=notification.receiver,
        channel=channel.name,
        status="failed",
        attempts=attempts,
        last_error=last_error,
    )


# --------------------------------------------------------------------------------- dispatcher


class MemorySeen:
    """The default `seen`/`remember` pair: a set, forgotten on restart."""

    def __init__(self) -> None:
        self.keys: set[str] = set()

    def seen(self, key: str) -> bool:
        return key in self.keys

    def remember(self, key: str) -> None:
        self.keys.add(key)


class _NoChannel:
    """Stands in for a receiver that has no channel, so the gap shows up as a failed record."""

    name = "none"

    async def send(self, notification: Notification) -> None:
        raise DeliveryError(f"receiver {notification.receiver!r} has no channel", permanent=True)


class Dispatcher:
    """route -> silence check -> render -> deliver on each of the receivers' channels.

    Delivered notifications are remembered per channel (`{key}/{channel}`), so when a receiver's
    webhook went through and its e-mail did not, dispatching the alert again sends only the mail.
    A silenced alert yields one "silenced" record per receiver and is not remembered: it was
    never sent.
    """

    def __init__(
        self,
        config: AlertingConfig,
        channels: Mapping[str, Sequence[Channel]],
        *,
        policy: DeliveryPolicy | None = None,
        seen: Callable[[str], bool] | None = None,
        remember: Callable[[str], None] | None = None,
        logger: Any = None,
        extra_silences: Callable[[], Sequence[Silence]] = tuple,
    ) -> None:
        memory = MemorySeen()
        self.config = config
        self.extra_silences = extra_silences  # set at run time by shift leads (HTTP)
        self.channels = channels
        self.policy = policy if policy is not None else DeliveryPolicy.from_config(config.delivery)
        self.seen = seen if seen is not None else memory.seen
        self.remember = remember if remember is not None else memory.remember
        self.logger = logger if logger is not None else _log

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        config: AlertingConfig,
        *,
        policy: DeliveryPolicy | None = None,
        seen: Callable[[str], bool] | None = None,
        remember: Callable[[str], None] | None = None,
        extra_silences: Callable[[], Sequence[Silence]] = tuple,
    ) -> AsyncIterator[Dispatcher]:
        """A dispatcher with channels built from `config` and one HTTP session it closes."""
        async with aiohttp.ClientSession() as session:
            yield cls(
                config,
                build_channels(config, session),
                policy=policy,
                seen=seen,
                remember=remember,
                extra_silences=extra_silences,
            )

    async def dispatch(
        self,
        alert: Mapping[str, Any],
        now: datetime,
        links: Mapping[str, str] | None = None,
    ) -> list[Delivery]:
        """Deliver one alert to everyone its route names at `now`; one record per outcome.

        `now` decides who is on duty and which silences apply. Keys already delivered are
        skipped and produce no record. `links` default to the incident under `public_url`.
        """
        log = self.logger.bind(alert_id=alert.get("event_id"), incident_id=alert.get("incident_id"))
        receivers = receivers_for(alert, self.config, now)
        silence = silenced_by(alert, [*self.config.silences, *self.extra_silences()], now)
        if silence is not None:
            records = [
                Delivery(
                    key=notification_key(alert, receiver),
                    receiver=receiver,
                    channel="",
                    status="silenced",
                    attempts=0,
                    silenced_by=silence.describe(),
                )
                for receiver in receivers
            ]
            log.info("alert.silenced", receivers=receivers, silence=silence.describe())
            return records
        if links is None:
            links = default_links(self.config.public_url, alert)
        pending: list[tuple[str, Notification, Channel]] = []
        for receiver in receivers:
            notification = render(alert, receiver, links)
            for channel in self.channels.get(receiver) or [_NoChannel()]:
                channel_key = f"{notification.key}/{channel.name}"
                if not self.seen(channel_key):
                    pending.append((channel_key, notification, channel))
        # Receivers are independent: one slow or retrying webhook must not hold up the others.
        records = list(
            await asyncio.gather(
                *(
                    deliver(notification, channel, self.policy)
                    for _, notification, channel in pending
                )
            )
        )
        for (channel_key, _, _), record in zip(pending, records, strict=True):
            if record.status == "delivered":
                self.remember(channel_key)
            log.info(
                "alert.delivery",
                key=record.key,
                channel=record.channel,
                status=record.status,
                attempts=record.attempts,
                error=record.last_error,
            )
        return records

    async def notify(
        self,
        batch: Batch,
        now: datetime,
        links: Mapping[str, str] | None = None,
        calls: int | None = None,
    ) -> list[tuple[Mapping[str, Any], Delivery]]:
        """Send one group's notification on each of its receiver's channels.

        Returns one record per alert and outcome: `silenced` for an alert a silence covers at
        `now` (left out of the notification), else the outcome of the channel that carried it,
        with the notification's key. A channel that already delivered every alert is skipped.
        """
        log = self.logger.bind(notification=batch.key, incident_id=batch.incident_id)
        silences = [*self.config.silences, *self.extra_silences()]
        out: list[tuple[Mapping[str, Any], Delivery]] = []
        live: list[Mapping[str, Any]] = []
        for alert in batch.alerts:
            silence = silenced_by(alert, silences, now)
            if silence is None:
                live.append(alert)
                continue
            out.append(
                (
                    alert,
                    Delivery(
                        key=notification_key(alert, batch.receiver),
                        receiver=batch.receiver,
                        channel="",
                        status="silenced",
                        attempts=0,
                        silenced_by=silence.describe(),
                    ),
                )
            )
            log.info("alert.silenced", alert_id=alert.get("event_id"), silence=silence.describe())
        if not live:
            return out
        batch = dataclass_replace(batch, alerts=tuple(live))
        if links is None:
            links = default_links(self.config.public_url, {"incident_id": batch.incident_id})
        notification = render_batch(batch, links, calls)
        pending: list[tuple[Channel, list[Mapping[str, Any]]]] = []
        for channel in self.channels.get(batch.receiver) or [_NoChannel()]:
            todo = [
                alert
                for alert in live
                if not self.seen(f"{notification_key(alert, batch.receiver)}/{channel.name}")
            ]
            if todo:
                pending.append((channel, todo))
        results = await asyncio.gather(
            *(deliver(notification, channel, self.policy) for channel, _ in pending)
        )
        for (channel, todo), result in zip(pending, results, strict=True):
            for alert in todo:
                key = notification_key(alert, batch.receiver)
                out.append((alert, dataclass_replace(result, key=key, notification=batch.key)))
                if result.status == "delivered":
                    self.remember(f"{key}/{channel.name}")
            log.info(
                "notification.delivery",
                channel=result.channel,
                status=result.status,
                alerts=len(todo),
                attempts=result.attempts,
                error=result.last_error,
            )
        return out
