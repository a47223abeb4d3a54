"""Delivering alerts to people: the `alerts` topic through grouping and the dispatcher.

A consumer group of its own reads `alerts`; each alert is routed and waits in the group of its
incident (alerting/group.py) for the route's `group_wait`, so incidents opened and merged into
one within the wait are one notification for the survivor, and growth is an update at the
`group_interval`. Merges are read from the worker's incident book (the one fold of the incident
stream). A due group is checked against silences and sent (alerting/notify.py); every outcome,
delivered, failed or silenced, is recorded on the `notifications` topic, one record per alert
it covers (key: alert id and receiver; `notification`: the key of the message that carried it).

Offsets: an alert still waiting in a group holds its partition's committed offset back, so a
crash loses no page: the successor reads the uncommitted alerts again and groups them anew. At
start the worker reads `notifications` from the beginning, and before each batch of alerts on
to its end as it is then, so an alert delivered before a crash, or by another worker that owned
the partition before a rebalance, is not sent again: notifications are once per key, the key
being alert id and receiver (and channel); a revoked partition's waiting alerts are dropped
here, after any send in progress is recorded. What remains is the moment between a delivery and
its record: a worker killed exactly there sends that one notification again from its successor.
"""

import asyncio
import dataclasses
import json
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from alerting.ack_link import ack_link
from alerting.group import Batch, Groups
from alerting.notify import (
    Delivery,
    Dispatcher,
    Notification,
    default_links,
    deliver,
    notification_key,
)
from alerting.roster import shift_starts
from alerting.route import targets_for
from projections.incidents import IncidentBook

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


def record(delivery: Delivery, alert: Mapping[str, Any]) -> dict[str, Any]:
    body = dataclasses.asdict(delivery)
    body["delivered_at"] = delivery.delivered_at.isoformat() if delivery.delivered_at else None
    body["incident_id"] = alert.get("incident_id")
    body["kind"] = alert.get("kind")
    body["record_id"] = str(uuid.uuid4())
    return body


def remember_records(service: "Service", records: list[Any], groups: Groups | None = None) -> None:
    for r in records:
        remember_record(service, json.loads(r.value or b"{}"), groups)


def remember_record(service: "Service", body: dict[str, Any], groups: Groups | None = None) -> None:
    if body.get("record_id") in service.notification_ids:
        return  # our own record, read back
    service.notification_ids.add(body.get("record_id", ""))
    service.notifications.append(body)
    if body.get("status") == "delivered":
        service.delivered.add(f"{body['key']}/{body['channel']}")
        if groups is not None and body.get("group") and body.get("delivered_at"):
            # Sent before a restart (or by the partition's previous owner): growth of that
            # group waits for its interval from then, not for a fresh group's wait.
            at = datetime.fromisoformat(body["delivered_at"])
            groups.notified(body["receiver"], body["group"], at)


def survivor_in(book: IncidentBook, incident_id: str) -> str:
    """The incident `incident_id` was merged into, following merges of merges."""
    seen = {incident_id}
    view = book.incidents.get(incident_id)
    while view is not None and view.merged_into and view.merged_into not in seen:
        incident_id = view.merged_into
        seen.add(incident_id)
        view = book.incidents.get(incident_id)
    return incident_id


def calls_in(book: IncidentBook, incident_id: str) -> int | None:
    """Calls the incident holds, its merged incidents' included; None if the book lacks it."""
    view = book.incidents.get(incident_id)
    return len(view.call_ids) if view is not None else None


class Holds:
    """Per partition of `alerts`: how far it was read and which offsets hold alerts still
    waiting in a group, so the committed offset never passes an alert not yet recorded."""

    def __init__(self) -> None:
        self.read: dict[TopicPartition, int] = {}
        self.held: dict[TopicPartition, dict[int, str]] = {}  # offset -> alert id
        self.committed: dict[TopicPartition, int] = {}

    def consumed(self, tp: TopicPartition, offset: int, waiting: str | None) -> None:
        """Offset `offset` was read; `waiting` is its alert's id if it waits in a group."""
        self.read[tp] = max(self.read.get(tp, 0), offset + 1)
        if waiting is not None:
            self.held.setdefault(tp, {})[offset] = waiting

    def release(self, waiting: set[str]) -> None:
        """Alerts not in `waiting` any more are recorded: their offsets may be committed."""
        for held in self.held.values():
            for offset in [o for o, alert_id in held.items() if alert_id not in waiting]:
                del held[offset]

    def to_commit(self) -> dict[TopicPartition, int]:
        """Offsets to commit now: up to the first held alert, else all read; only moves."""
        out: dict[TopicPartition, int] = {}
        for tp, read in self.read.items():
            held = self.held.get(tp)
            safe = min(held) if held else read
            if safe > self.committed.get(tp, -1):
                out[tp] = safe
        return out

    def committed_to(self, offsets: Mapping[TopicPartition, int]) -> None:
        self.committed.update(offsets)

    def revoke(self, partitions: Iterable[TopicPartition]) -> set[str]:
        """Forget partitions another worker owns now; returns the ids of their held alerts."""
        ids: set[str] = set()
        for tp in partitions:
            ids.update(self.held.pop(tp, {}).values())
            self.read.pop(tp, None)
            self.committed.pop(tp, None)
        return ids


class HandOver(ConsumerRebalanceListener):
    """When partitions move away: finish the send in progress (its records go out first),
    then drop their waiting alerts; the next owner reads them again from the committed offset."""

    def __init__(self, groups: Groups, holds: Holds, sending: asyncio.Lock) -> None:
        self.groups, self.holds, self.sending = groups, holds, sending

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        async with self.sending:
            dropped = self.holds.revoke(revoked)
            self.groups.drop(dropped)
            self.holds.release(self.groups.pending_ids())
        if dropped:
            log.info("alerts.handed_over", alerts=len(dropped))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        pass


def hold(dispatcher: Dispatcher, groups: Groups, alert: dict[str, Any], now: datetime) -> bool:
    """Put the alert in the group of each receiver its route names that has not had it on
    every channel yet; True if it waits in some group."""
    waiting = False
    for receiver, timing in targets_for(alert, dispatcher.config, now):
        names = [c.name for c in dispatcher.channels.get(receiver, [])] or ["none"]
        key = notification_key(alert, receiver)
        if all(dispatcher.seen(f"{key}/{name}") for name in names):
            continue  # delivered before a restart or a rebalance
        groups.add(alert, receiver, timing, now)
        waiting = True
    return waiting


async def send_batch(
    service: "Service",
    dispatcher: Dispatcher,
    producer: AIOKafkaProducer,
    batch: Batch,
    now: datetime,
) -> None:
    """One group's notification, then a record per alert and outcome on `notifications`."""
    links = links_for(service, {"incident_id": batch.incident_id}, now)
    calls = calls_in(service.book, batch.incident_id)
    outcomes = await dispatcher.notify(batch, now, links, calls)
    for alert, delivery in outcomes:
        body = record(delivery, alert)
        body["group"] = batch.incident_id
        remember_record(service, body)
        # One record per produce: Tansu's end offsets count batches (see read_to_now).
        await producer.send_and_wait(
            "notifications",
            json.dumps(body).encode(),
            key=str(alert.get("incident_id", "")).encode(),
        )
        if delivery.status == "failed":
            log.error("notification.failed", **body)
    log.info(
        "notification.sent",
        key=batch.key,
        receiver=batch.receiver,
        incident_id=batch.incident_id,
        alerts=len(batch.alerts),
        incidents=len(batch.incidents),
        calls=calls,
        update=batch.update,
    )


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
    """Group every alert, send each group once when due, record the outcomes, then commit."""
    config = service.alerting
    assert config is not None
    groups = Groups()
    holds = Holds()
    sending = asyncio.Lock()  # a send and its records finish before partitions move away
    # Every key any worker delivered, read back before each batch: a worker that takes over
    # partitions after a rebalance knows what the previous owner already sent.
    follower = service.follower("notifications")
    await follower.start()
    while not await follower.caught_up():
        remember_records(service, await follower.poll(timeout_ms=500), groups)
    producer = AIOKafkaProducer(
        bootstrap_servers=service.bootstrap, acks="all", **service.kafka_options
    )
    consumer = AIOKafkaConsumer(
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
    consumer.subscribe(["alerts"], listener=HandOver(groups, holds, sending))
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
                remember_records(service, await follower.poll(), groups)
                handovers_since = await send_handovers(
                    service, dispatcher, producer, handovers_since
                )
                batch = await consumer.getmany(timeout_ms=500, max_records=100)
                if batch:
                    # After a rebalance these may be alerts the previous owner sent but had
                    # not committed: every notification recorded until now is read first.
                    remember_records(service, await follower.read_to_now(), groups)
                now = datetime.now(UTC)
                owned = consumer.assignment()
                for tp, records in batch.items():
                    if tp not in owned:
                        continue  # moved away while the notifications were read
                    for message in records:
                        alert = json.loads(message.value or b"{}")
                        waiting = hold(dispatcher, groups, alert, now)
                        holds.consumed(tp, message.offset, alert["event_id"] if waiting else None)
                # Merges are read from the book: until it has read the stream as it was at
                # start it may not know them, and a group sent early would page once per part.
                if service.book_caught_up:
                    groups.follow(lambda incident: survivor_in(service.book, incident))
                    async with sending:
                        for due in groups.due(now):
                            await send_batch(service, dispatcher, producer, due, now)
                        holds.release(groups.pending_ids())
                owned = consumer.assignment()
                offsets = {tp: at for tp, at in holds.to_commit().items() if tp in owned}
                if offsets:
                    try:
                        await consumer.commit(offsets)
                        holds.committed_to(offsets)
                    except (CommitFailedError, IllegalStateError):
                        log.warning("alerts.commit_failed")  # redelivered; keys stop resends
    finally:
        await consumer.stop()
        await producer.stop()
        await follower.stop()


def recent_notifications(service: "Service", status: str | None = None) -> list[dict[str, Any]]:
    return [n for n in service.notifications if status is None or n.get("status") == status]


def notifications_buffer() -> deque[dict[str, Any]]:
    return deque(maxlen=5000)
