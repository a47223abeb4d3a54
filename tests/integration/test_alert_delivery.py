"""Alert delivery against real receivers: an aiohttp webhook server and an aiosmtpd SMTP server.

Both listen on free loopback ports and record what arrives; the dispatcher under test is the
one `Dispatcher.open` builds from configuration, so routing, channels and retries are the real
ones. Backoff waits are recorded rather than slept.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from alerting.ack_link import ack_link
from alerting.config import AlertingConfig
from alerting.group import Batch
from alerting.notify import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    Delivery,
    DeliveryPolicy,
    Dispatcher,
    message_id,
    verify,
)
from streams.broker import free_port

pytestmark = pytest.mark.integration

NOW = datetime(2024, 5, 6, 10, 0, tzinfo=UTC)
SECRET = "webhook-secret"
SENDER = "outages@example.org"
ACK = ack_link("https://outages.example.org", b"key", "inc-7", NOW, timedelta(hours=24))
LINKS = {"acknowledge": ACK}


def alert(domain: str, event_id: str = "alert-1", **fields: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "occurred_at": "2024-05-06T09:58:00Z",
        "domain": domain,
        "incident_id": "inc-7",
        "kind": "incident_opened",
        "severity": "critical",
        "utility": "power",
        "device_id": "feeder-12",
        "customers_affected": 412,
        "summary": "Feeder 12 lost supply",
        "area": "north",
    } | fields


@dataclass
class Received:
    path: str
    key: str
    signed: bool
    payload: dict[str, Any]


@dataclass
class WebhookServer:
    """Answers per path from a script of statuses (then 200), recording every request."""

    base: str
    scripts: dict[str, list[int]]
    requests: list[Received] = field(default_factory=list)

    def keys(self, path: str) -> list[str]:
        return [r.key for r in self.requests if r.path == path]


@asynccontextmanager
async def webhook_server(scripts: dict[str, list[int]]) -> AsyncIterator[WebhookServer]:
    server = WebhookServer(base="", scripts={path: list(s) for path, s in scripts.items()})

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        server.requests.append(
            Received(
                path=request.path,
                key=request.headers.get(IDEMPOTENCY_HEADER, ""),
                signed=verify(SECRET, body, request.headers.get(SIGNATURE_HEADER, "")),
                payload=json.loads(body),
            )
        )
        script = server.scripts.get(request.path, [])
        status = script.pop(0) if script else 200
        return web.json_response({"status": status}, status=status)

    app = web.Application()
    app.router.add_post("/{name}", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    server.base = f"http://{host}:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


class Mailbox:
    """aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"


@dataclass
class SmtpServer:
    port: int
    mailbox: Mailbox


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd) on a free loopback port."""
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer(port=port, mailbox=mailbox)
    finally:
        controller.stop()


def config(base: str, smtp_port: int | None = None, **extra: Any) -> AlertingConfig:
    """One webhook receiver per server path, routed by the alert's `domain`."""
    paths = ("ok", "flaky", "down", "bad")
    receivers: dict[str, Any] = {
        name: {"webhook": {"url": f"{base}/{name}", "secret": SECRET}} for name in paths
    }
    # Nothing listens here: connection refused on every attempt.
    receivers["gone"] = {"webhook": {"url": f"http://127.0.0.1:{free_port()}/x", "secret": "s"}}
    routes = [{"match": {"domain": name}, "receiver": name} for name in receivers]
    data: dict[str, Any] = {"receivers": receivers, "route": {"receiver": "log", "routes": routes}}
    if smtp_port is not None:
        receivers["mail"] = {"email": {"to": ["ops@example.org", "lead@example.org"]}}
        routes.append({"match": {"domain": "mail"}, "receiver": "mail"})
        data["smtp"] = {
            "host": "127.0.0.1",
            "port": smtp_port,
            "sender": SENDER,
            "starttls": False,
            "timeout_seconds": 5,
        }
    return AlertingConfig.parse(data | extra)


def policy(waits: list[float]) -> DeliveryPolicy:
    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    return DeliveryPolicy(retries=3, backoff_initial=0.5, backoff_max=4, timeout=5, sleep=sleep)


async def dispatch_to(
    server: WebhookServer, *alerts: dict[str, Any], waits: list[float] | None = None, **extra: Any
) -> list[list[Delivery]]:
    async with Dispatcher.open(
        config(server.base, **extra), policy=policy(waits if waits is not None else [])
    ) as d:
        return [await d.dispatch(item, NOW, LINKS) for item in alerts]


def test_webhook_is_signed_and_carries_the_idempotency_key() -> None:
    """A 200 receiver gets one signed POST with the key header and the full payload."""

    async def scenario() -> tuple[list[list[Delivery]], WebhookServer]:
        async with webhook_server({}) as server:
            return await dispatch_to(server, alert("ok")), server

    [[record]], server = asyncio.run(scenario())
    assert (record.status, record.attempts, record.channel) == ("delivered", 1, "webhook")
    assert record.delivered_at is not None
    [received] = server.requests
    assert received.signed
    assert received.key == "alert-1/ok" == received.payload["key"]
    assert received.payload["alert"]["incident_id"] == "inc-7"
    assert received.payload["links"] == LINKS
    assert "Feeder 12 lost supply" in received.payload["subject"]


def test_webhook_retried_after_500s_is_delivered() -> None:
    """A receiver answering 500 twice then 200 is retried and delivered on attempt 3."""
    waits: list[float] = []

    async def scenario() -> tuple[list[list[Delivery]], WebhookServer]:
        async with webhook_server({"/flaky": [500, 500]}) as server:
            return await dispatch_to(server, alert("flaky"), waits=waits), server

    [[record]], server = asyncio.run(scenario())
    assert (record.status, record.attempts) == ("delivered", 3)
    assert record.last_error is not None and "HTTP 500" in record.last_error
    assert server.keys("/flaky") == ["alert-1/flaky"] * 3
    assert waits == [0.5, 1.0]


def test_webhook_that_always_fails_ends_in_a_failed_record() -> None:
    """A receiver that always answers 500 gives a "failed" record with the error, not a raise."""

    async def scenario() -> tuple[list[list[Delivery]], WebhookServer]:
        async with webhook_server({"/down": [500] * 10}) as server:
            return await dispatch_to(server, alert("down")), server

    [[record]], server = asyncio.run(scenario())
    assert (record.status, record.attempts, record.delivered_at) == ("failed", 4, None)
    assert record.last_error is not None and record.last_error.startswith("HTTP 500")
    assert len(server.keys("/down")) == 4


def test_unreachable_webhook_ends_in_a_failed_record() -> None:
    """Connection refused on every attempt is retried, then recorded as failed with the error."""

    async def scenario() -> list[list[Delivery]]:
        async with webhook_server({}) as server:
            return await dispatch_to(server, alert("gone"))

    [[record]] = asyncio.run(scenario())
    assert (record.status, record.attempts) == ("failed", 4)
    assert record.last_error is not None and "ClientConnectorError" in record.last_error


def test_webhook_400_is_not_retried() -> None:
    """A 400 is a permanent refusal: one attempt, a failed record."""

    async def scenario() -> tuple[list[list[Delivery]], WebhookServer]:
        async with webhook_server({"/bad": [400]}) as server:
            return await dispatch_to(server, alert("bad")), server

    [[record]], server = asyncio.run(scenario())
    assert (record.status, record.attempts) == ("failed", 1)
    assert record.last_error is not None and "HTTP 400" in record.last_error
    assert len(server.keys("/bad")) == 1


def test_silenced_alert_is_recorded_and_not_sent() -> None:
    """An alert under an active silence is recorded as silenced and nothing reaches the receiver."""
    silence = {
        "starts": "2024-05-06T09:00:00+00:00",
        "ends": "2024-05-06T11:00:00+00:00",
        "matchers": {"device_id": "feeder-12"},
        "comment": "Switching",
        "created_by": "me",
    }

    async def scenario() -> tuple[list[list[Delivery]], WebhookServer]:
        async with webhook_server({}) as server:
            return await dispatch_to(server, alert("ok"), silences=[silence]), server

    [[record]], server = asyncio.run(scenario())
    assert (record.key, record.status, record.attempts) == ("alert-1/ok", "silenced", 0)
    assert record.silenced_by is not None and "Switching" in record.silenced_by
    assert server.requests == []


def test_same_alert_dispatched_twice_is_sent_once() -> None:
    """The second dispatch of an alert already delivered sends nothing and records nothing."""

    async def scenario() -> tuple[list[list[Delivery]], WebhookServer]:
        async with webhook_server({}) as server:
            return await dispatch_to(
                server, alert("ok"), alert("ok"), alert("ok", "alert-2")
            ), server

    (first, second, other), server = asyncio.run(scenario())
    assert [r.status for r in first] == ["delivered"]
    assert second == []
    assert [r.status for r in other] == ["delivered"]
    assert server.keys("/ok") == ["alert-1/ok", "alert-2/ok"]


def test_email_reaches_a_real_smtp_server(smtp_server: SmtpServer) -> None:
    """The mail arrives with the subject, a body saying what changed, the links and a stable id."""

    async def scenario() -> list[list[Delivery]]:
        async with webhook_server({}) as server:
            return await dispatch_to(server, alert("mail"), smtp_port=smtp_server.port)

    [[record]] = asyncio.run(scenario())
    assert (record.status, record.attempts, record.channel) == ("delivered", 1, "email")
    [message] = smtp_server.mailbox.messages
    assert message["Subject"] == "[CRITICAL] power incident opened in north: Feeder 12 lost supply"
    assert message["From"] == SENDER
    assert message["To"] == "ops@example.org, lead@example.org"
    assert message["Message-ID"] == message_id("alert-1/mail", SENDER)
    assert message[IDEMPOTENCY_HEADER] == "alert-1/mail"
    body = message.get_content()
    for text in (
        "Incident opened",
        "Feeder 12 lost supply",
        "inc-7",
        "feeder-12",
        "412",
        f"acknowledge: {ACK}",
    ):
        assert text in body


def test_a_group_is_one_webhook_and_one_mail_with_a_record_per_alert(
    smtp_server: SmtpServer,
) -> None:
    """Three incidents merged into one: one POST, one mail, three delivered records each."""
    alerts = tuple(
        alert("ok", f"alert-B{n}", incident_id=f"B{n}", device_id=f"B-{n}") for n in (1, 2, 3)
    )
    rolled = alert("ok", "alert-B1-up", incident_id="B1", kind="incident_escalated")

    def batch(receiver: str) -> Batch:
        return Batch(receiver, "B1", (*alerts, rolled), ("B1", "B2", "B3"), update=False)

    async def scenario() -> tuple[list[Any], list[Any], WebhookServer]:
        async with (
            webhook_server({}) as server,
            Dispatcher.open(
                config(server.base, smtp_port=smtp_server.port), policy=policy([])
            ) as dispatcher,
        ):
            hooked = await dispatcher.notify(batch("ok"), NOW, LINKS, calls=9)
            mailed = await dispatcher.notify(batch("mail"), NOW, LINKS, calls=9)
            return hooked, mailed, server

    hooked, mailed, server = asyncio.run(scenario())
    [received] = server.requests
    assert received.signed and received.key == batch("ok").key == received.payload["key"]
    assert received.payload["group"]["incidents"] == ["B1", "B2", "B3"]
    assert [a["event_id"] for a in received.payload["alerts"]] == list(batch("ok").alert_ids)
    [message] = smtp_server.mailbox.messages
    assert message[IDEMPOTENCY_HEADER] == batch("mail").key
    assert "3 incidents, 9 calls" in message["Subject"]
    assert "One fault: 3 incidents, 9 calls under incident B1" in message.get_content()
    for outcomes, receiver in ((hooked, "ok"), (mailed, "mail")):
        assert [(d.key, d.status, d.notification) for _, d in outcomes] == [
            (f"{a['event_id']}/{receiver}", "delivered", batch(receiver).key)
            for a in (*alerts, rolled)
        ]
