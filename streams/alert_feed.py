"""Delivering alerts to people: the `alerts` topic through the alerting dispatcher.

A consumer group of its own reads `alerts`; each alert is routed, checked against silences
and sent (alerting/); every outcome, delivered, failed or silenced, is recorded on the
`notifications` topic before the offset is committed. At start the worker reads
`notifications` from the beginning, and before each batch of alerts on to its end as it is
then, so a key delivered before a crash, or by another worker that owned the partition before
a rebalance, is not sent again: notifications are once per key, the key being alert id and
receiver (and channel). What remains is the moment between a delivery and its record: a
worker killed exactly there sends that one notification again from its successor.
"""

import dataclasses
import json
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import CommitFailedError

from alerting.ack_link import ack_link
from alerting.notify import Delivery, Dispatcher, Notification, default_links, deliver
from alerting.roster import shift_starts

if TYPE_CHECKING:
    from streams.app import Service

log = structlog.get_logger("outage.alerts")


def links_for(service: "Service", alert: dict[str, Any], now: datetime) -> dict[str, str]:
    """The incident's links; the acknowledge link works for OUTAGE_ACK_LINK_HOURS from `now`."""
    config = service.alerting
    assert config is not None
    links = default_links(config.public_url, alert)
    if config.public_url and alert.get("incident_id"):
        lifetime = timedelta(hours=service.settings.ack_link_hours)
        links["acknowledge"] = ack_link(
            config.public_url, service.hash_key, alert["incident_id"], now, lifetime
        )
    return links


def record(delivery: Delivery, alert: dict[str, Any]) -> dict[str, Any]:
    body = dataclasses.asdict(delivery)
    body["delivered_at"] = delivery.delivered_at.isoformat() if delivery.delivered_at else None
    body["incident_id"] = alert.get("incident_id")
    body["kind"] = alert.get("kind")
    body["record_id"] = str(uuid.uuid4())
    return body


def remember_records(service: "Service", records: list[Any]) -> None:
    for r in records:
        remember_record(service, json.loads(r.value or b"{}"))


def remember_record(service: "Service", body: dict[str, Any]) -> None:
    if body.get("record_id") in service.notification_ids:
        return  # our own record, read back
    service.notification_ids.add(body.get("record_id", ""))
    service.notifications.append(body)
    if body.get("status") == "delivered":
        service.delivered.add(f"{body['key']}/{body['channel']}")


def handover_text(service: "Service", now: datetime) -> str:
    """What the incoming lead takes over, from the incident book (open incidents, owners)."""
    open_incidents = service.book.active()
    lines = [f"Shift handover {now:%Y-%m-%d %H:%M} UTC: {len(open_incidents)} open incident(s)."]
    for view in open_incidents:
        etr = f", ETR {view.etr:%H:%M}" if view.etr else ""
        owner = (
            f", acknowledged by {view.acknowledged_by}"
            if view.acknowledged_by
            else (", NOT acknowledged")
        )
        lines.append(
            f"- {view.incident_id} {view.utility} {view.device_kind} {view.device_id}: "
            f"{view.state}, {view.cause}{etr}, {len(view.call_ids)} calls, "
            f"{view.customers_affected} customers{owner}"
        )
    lines.append("Reports: /v1/reports/handover (callbacks pending, alerts of this shift).")
    return "\n".join(lines)


async def send_handovers(
    service: "Service", dispatcher: Dispatcher, producer: AIOKafkaProducer, since: datetime
) -> datetime:
    """At each shift start since `since`, the handover to the incoming lead; returns now."""
    config = service.alerting
    assert config is not None
    now = datetime.now(UTC)
    for started, shift in shift_starts(config.roster, since, now):
        alert = {
            "event_id": f"handover/{started.astimezone(UTC).isoformat()}",
            "kind": "handover",
            "incident_id": "",
            "summary": f"handover to the {shift.name} shift",
        }
        notification = Notification(
            key=f"{alert['event_id']}/{shift.lead}",
            receiver=shift.lead,
            alert=alert,
            subject=f"[outage] {shift.name} shift handover",
            text=handover_text(service, now),
            links=default_links(config.public_url, alert),
        )
        for channel in dispatcher.channels.get(shift.lead, []):
            if f"{notification.key}/{channel.name}" in service.delivered:
                continue  # sent before a restart, or by another worker
            delivery = await deliver(notification, channel, dispatcher.policy)
            if delivery.status == "delivered":
                service.delivered.add(f"{notification.key}/{channel.name}")
            body = record(delivery, alert)
            remember_record(service, body)
            await producer.send_and_wait("notifications", json.dumps(body).encode())
    return now


async def feed_alerts(service: "Service") -> None:
    """Dispatch every alert once, record the outcome, then commit; forever."""
    config = service.alerting
    assert config is not None
    # Every key any worker delivered, read back before each batch: a worker that takes over
    # partitions after a rebalance knows what the previous owner already sent.
    follower = service.follower("notifications")
    await follower.start()
    while not await follower.caught_up():
        remember_records(service, await follower.poll(timeout_ms=500))
    producer = AIOKafkaProducer(
        bootstrap_servers=service.bootstrap, acks="all", **service.kafka_options
    )
    consumer = AIOKafkaConsumer(
        "alerts",
        bootstrap_servers=service.bootstrap,
        group_id=f"{service.settings.app_id}-alerting",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_interval_ms=3600 * 1000,
        **service.group_options(),
        **service.kafka_options,
    )
    await producer.start()
    await consumer.start()
    try:
        async with Dispatcher.open(
            config,
            seen=service.delivered.__contains__,
            remember=service.delivered.add,
            extra_silences=lambda: list(service.silences.values()),
        ) as dispatcher:
            # A shift that began while the worker was down still gets its handover.
            handovers_since = datetime.now(UTC) - timedelta(minutes=10)
            while True:
                remember_records(service, await follower.poll())
                handovers_since = await send_handovers(
                    service, dispatcher, producer, handovers_since
                )
                batch = await consumer.getmany(timeout_ms=500, max_records=100)
                if batch:
                    # After a rebalance these may be alerts the previous owner sent but had
                    # not committed: every notification recorded until now is read first.
                    remember_records(service, await follower.read_to_now())
                for records in batch.values():
                    for message in records:
                        alert = json.loads(message.value or b"{}")
                        now = datetime.now(UTC)
                        deliveries = await dispatcher.dispatch(
                            alert, now, links_for(service, alert, now)
                        )
                        for delivery in deliveries:
                            body = record(delivery, alert)
                            remember_record(service, body)
                            await producer.send_and_wait(
                                "notifications",
                                json.dumps(body).encode(),
                                key=str(alert.get("incident_id", "")).encode(),
                            )
                            if delivery.status == "failed":
                                log.error("notification.failed", **body)
                if batch:
                    try:
                        await consumer.commit()
                    except CommitFailedError:
                        log.warning("alerts.commit_failed")  # redelivered; keys stop resends
    finally:
        await consumer.stop()
        await producer.stop()
        await follower.stop()


def recent_notifications(service: "Service", status: str | None = None) -> list[dict[str, Any]]:
    return [n for n in service.notifications if status is None or n.get("status") == status]


def notifications_buffer() -> deque[dict[str, Any]]:
    return deque(maxlen=5000)
