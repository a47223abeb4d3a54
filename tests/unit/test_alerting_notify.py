"""Unit tests for rendering, retry policy and the dispatcher, with in-memory channels."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from alerting.config import AlertingConfig
from alerting.group import Batch
from alerting.notify import (
    LISTED_ALERTS,
    Channel,
    DeliveryError,
    DeliveryPolicy,
    Dispatcher,
    Notification,
    deliver,
    render,
    render_batch,
    sign,
    verify,
)

NOW = datetime(2024, 5, 6, 10, 0, tzinfo=UTC)
ALERT: dict[str, Any] = {
    "event_id": "alert-1",
    "occurred_at": "2024-05-06T09:58:00Z",
    "domain": "power-north",
    "incident_id": "inc-7",
    "kind": "incident_escalated",
    "severity": "critical",
    "utility": "power",
    "device_id": "feeder-12",
    "customers_affected": 412,
    "summary": "Outage rolled up to feeder-12",
    "area": "north",
}


class Scripted:
    """A channel that plays a script of outcomes: None delivers, an exception fails."""

    def __init__(self, *script: BaseException | None, name: str = "fake") -> None:
        self.name = name
        self.script = list(script)
        self.sent: list[Notification] = []

    async def send(self, notification: Notification) -> None:
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome
        self.sent.append(notification)


class Slow:
    name = "slow"

    async def send(self, notification: Notification) -> None:
        await asyncio.sleep(5)


def policy(retries: int = 3, waits: list[float] | None = None) -> DeliveryPolicy:
    async def sleep(seconds: float) -> None:
        if waits is not None:
            waits.append(seconds)

    return DeliveryPolicy(
        retries=retries,
        backoff_initial=1,
        backoff_max=3,
        timeout=0.05,
        sleep=sleep,
        clock=lambda: NOW,
    )


def test_render_says_what_changed() -> None:
    """Subject and body carry kind, summary, incident, device, customers, severity and links."""
    note = render(ALERT, "ops", {"acknowledge": "https://x/ack/inc-7"})
    assert note.key == "alert-1/ops"
    assert (
        note.subject
        == "[CRITICAL] power incident escalated in north: Outage rolled up to feeder-12"
    )
    for text in (
        "Incident escalated",
        "inc-7",
        "feeder-12",
        "412",
        "critical",
        "north",
        "acknowledge: https://x/ack/inc-7",
    ):
        assert text in note.text
    assert note.links == {"acknowledge": "https://x/ack/inc-7"}


def test_signature_round_trip() -> None:
    """`verify` accepts the signature `sign` made and refuses one over other bytes."""
    signature = sign("s3cret", b'{"a":1}')
    assert signature.startswith("sha256=")
    assert verify("s3cret", b'{"a":1}', signature)
    assert not verify("s3cret", b'{"a":2}', signature)
    assert not verify("other", b'{"a":1}', signature)


@pytest.mark.parametrize(("attempt", "seconds"), [(1, 1.0), (2, 2.0), (3, 3.0), (10, 3.0)])
def test_backoff_doubles_up_to_the_cap(attempt: int, seconds: float) -> None:
    """Waits double after each failed attempt and stop at the cap."""
    assert policy().backoff(attempt) == seconds


@pytest.mark.parametrize(
    ("script", "status", "attempts", "error", "waits"),
    [
        ((), "delivered", 1, None, []),
        ((OSError("refused"), DeliveryError("HTTP 500")), "delivered", 3, "HTTP 500", [1.0, 2.0]),
        ((DeliveryError("HTTP 400", permanent=True),), "failed", 1, "HTTP 400", []),
        ((OSError("down"),) * 9, "failed", 4, "OSError: down", [1.0, 2.0, 3.0]),
    ],
)
def test_deliver_retries_and_records(
    script: tuple[BaseException, ...],
    status: str,
    attempts: int,
    error: str | None,
    waits: list[float],
) -> None:
    """Transient failures are retried with backoff, permanent ones are not, all end in a record."""
    slept: list[float] = []
    record = asyncio.run(deliver(render(ALERT, "ops"), Scripted(*script), policy(waits=slept)))
    assert (record.status, record.attempts, slept) == (status, attempts, waits)
    if error is None:
        assert record.last_error is None
    else:
        assert record.last_error is not None and error in record.last_error
    assert record.delivered_at == (NOW if status == "delivered" else None)


def test_deliver_times_out_an_attempt() -> None:
    """An attempt that hangs is cut off by the policy's timeout and recorded as failed."""
    record = asyncio.run(deliver(render(ALERT, "ops"), Slow(), policy(retries=1)))
    assert (record.status, record.attempts, record.last_error) == ("failed", 2, "timed out")


def dispatcher(channels: dict[str, list[Channel]], **config: Any) -> Dispatcher:
    receivers = {name: {"log": True} for name in channels}
    data = {"receivers": receivers, "route": {"receiver": next(iter(channels))}} | config
    return Dispatcher(AlertingConfig.parse(data), channels, policy=policy())


def test_dispatch_skips_what_was_delivered() -> None:
    """Dispatching the same alert twice sends once; the second dispatch yields no record."""
    channel = Scripted()
    subject = dispatcher({"ops": [channel]})
    first = asyncio.run(subject.dispatch(ALERT, NOW))
    second = asyncio.run(subject.dispatch(ALERT, NOW))
    assert [r.status for r in first] == ["delivered"] and second == []
    assert len(channel.sent) == 1


def test_dispatch_retries_only_the_channel_that_failed() -> None:
    """A failed channel is not remembered, so the next dispatch retries it and only it."""
    good, bad = Scripted(name="webhook"), Scripted(*(OSError("down"),) * 4, name="email")
    subject = dispatcher({"ops": [good, bad]})
    first = asyncio.run(subject.dispatch(ALERT, NOW))
    second = asyncio.run(subject.dispatch(ALERT, NOW))
    assert [(r.channel, r.status) for r in first] == [("webhook", "delivered"), ("email", "failed")]
    assert [(r.channel, r.status) for r in second] == [("email", "delivered")]
    assert len(good.sent) == 1


def test_dispatch_records_silenced_alerts() -> None:
    """A silenced alert yields a "silenced" record per receiver and reaches no channel."""
    channel = Scripted()
    silence = {
        "weekdays": ["mon"],
        "start": "09:00",
        "end": "11:00",
        "matchers": {"utility": "power"},
        "comment": "maintenance",
    }
    subject = dispatcher({"ops": [channel]}, silences=[silence])
    records = asyncio.run(subject.dispatch(ALERT, NOW))
    assert [(r.key, r.status, r.attempts) for r in records] == [("alert-1/ops", "silenced", 0)]
    assert records[0].silenced_by is not None and "maintenance" in records[0].silenced_by
    assert channel.sent == []


def test_dispatch_uses_the_injected_memory() -> None:
    """The caller's seen/remember pair decides what counts as already delivered."""
    store = {"alert-1/ops/fake"}
    channel = Scripted()
    config = AlertingConfig.parse(
        {"receivers": {"ops": {"log": True}}, "route": {"receiver": "ops"}}
    )
    subject = Dispatcher(
        config, {"ops": [channel]}, policy=policy(), seen=store.__contains__, remember=store.add
    )
    assert asyncio.run(subject.dispatch(ALERT, NOW)) == []
    assert channel.sent == []


def test_dispatch_default_links_point_at_the_incident() -> None:
    """Without links from the caller the notification links the incident under public_url."""
    channel = Scripted()
    subject = dispatcher({"ops": [channel]}, public_url="https://outages.example.org/")
    asyncio.run(subject.dispatch(ALERT, NOW))
    assert channel.sent[0].links == {"incident": "https://outages.example.org/v1/incidents/inc-7"}


def heat_storm(buildings: int = 50) -> Batch:
    """What a heat-source storm's group holds: every building opened, then the roll-up."""
    opened = tuple(
        ALERT
        | {
            "event_id": f"alert/B{n}/opened",
            "incident_id": f"B{n}",
            "kind": "incident_opened",
            "severity": "info",
            "utility": "heat",
            "device_id": f"B-{n}",
        }
        for n in range(1, buildings + 1)
    )
    rolled = ALERT | {
        "event_id": "alert/B1/rolled_up",
        "incident_id": "B1",
        "utility": "heat",
        "device_id": "HS-1",
        "summary": "rolled up from B-1 to heat_source HS-1",
        "area": "HS-1",
    }
    incidents = tuple(f"B{n}" for n in range(1, buildings + 1))
    return Batch("ops", "B1", (*opened, rolled), incidents, update=False)


def test_a_group_reads_as_one_fault_with_its_size() -> None:
    """The survivor's latest state leads; buildings, calls and every alert are in the page."""
    batch = heat_storm()
    note = render_batch(batch, {"incident": "https://x/v1/incidents/B1"}, calls=100)
    assert note.key == batch.key and note.alert["event_id"] == "alert/B1/rolled_up"
    assert note.subject == (
        "[CRITICAL] heat incident escalated in HS-1: HS-1, 50 incidents, 100 calls"
    )
    for text in ("One fault: 50 incidents, 100 calls under incident B1 at HS-1", "Calls:"):
        assert text in note.text
    assert note.text.count("incident opened B") == LISTED_ALERTS
    assert f"and {51 - LISTED_ALERTS} more" in note.text
    payload = note.payload()
    assert [a["event_id"] for a in payload["alerts"]] == list(batch.alert_ids)
    assert payload["group"] == {
        "incident_id": "B1",
        "incidents": list(batch.incidents),
        "calls": 100,
        "update": False,
    }


def test_a_group_of_one_reads_as_its_alert() -> None:
    """A batch of one alert is rendered exactly as the alert alone, under the alert's key."""
    one = Batch("ops", "inc-7", (ALERT,), ("inc-7",), update=False)
    note, alone = render_batch(one), render(ALERT, "ops")
    assert (note.key, note.subject, note.text) == (alone.key, alone.subject, alone.text)
    assert [a["event_id"] for a in note.payload()["alerts"]] == ["alert-1"]


def test_notify_sends_one_message_and_records_every_alert() -> None:
    """A group is one message per channel and one record per alert, carrying its key."""
    channel = Scripted(name="webhook")
    subject = dispatcher({"ops": [channel]})
    batch = heat_storm(3)
    outcomes = asyncio.run(subject.notify(batch, NOW, calls=6))
    assert len(channel.sent) == 1 and channel.sent[0].key == batch.key
    assert [(a["event_id"], d.key, d.status) for a, d in outcomes] == [
        (alert_id, f"{alert_id}/ops", "delivered") for alert_id in batch.alert_ids
    ]
    assert {d.notification for _, d in outcomes} == {batch.key}
    assert asyncio.run(subject.notify(batch, NOW)) == []  # every alert delivered already
    assert len(channel.sent) == 1


def test_notify_leaves_silenced_alerts_out_and_records_them() -> None:
    """Alerts a silence covers at `now` get "silenced" records; the rest still go out."""
    channel = Scripted(name="webhook")
    silence = {
        "weekdays": ["mon"],
        "start": "09:00",
        "end": "11:00",
        "matchers": {"device_id": "B-2"},
        "comment": "crew on site",
    }
    subject = dispatcher({"ops": [channel]}, silences=[silence])
    outcomes = asyncio.run(subject.notify(heat_storm(3), NOW))
    statuses = {a["event_id"]: d.status for a, d in outcomes}
    assert statuses.pop("alert/B2/opened") == "silenced"
    assert set(statuses.values()) == {"delivered"} and len(statuses) == 3
    assert [a["event_id"] for a in channel.sent[0].covers] == list(statuses)


def test_notify_failure_is_recorded_for_every_alert() -> None:
    """A channel that fails gives each alert of the group a "failed" record."""
    subject = dispatcher({"ops": [Scripted(*(OSError("down"),) * 4, name="webhook")]})
    outcomes = asyncio.run(subject.notify(heat_storm(2), NOW))
    assert [d.status for _, d in outcomes] == ["failed"] * 3
