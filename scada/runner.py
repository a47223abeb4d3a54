"""`outage scada run`: one process per site, every source supervised, signals to the broker.

Each source runs in a loop: connect, emit, and when the connection goes, retry with
exponential backoff (`reconnect_initial` doubling up to `reconnect_max`, with jitter). A
source down for `lost_after` seconds raises a `scada_source_lost` alert on the `alerts`
topic, so the shift lead hears that the control system went quiet instead of trusting
silence; the first value after a reconnect raises `scada_source_restored`.

Signals go to the `scada` topic keyed by device (one device's changes stay in order), each
with the source's own timestamp as `occurred_at`. The last state of every point is kept in
`state_file`, so a connector restart does not publish a state the service already has.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from events.codec import encode
from events.derived import AlertKind, AlertRaised
from events.inbound import ScadaSignal
from scada.config import SiteConfig
from scada.points import Mapper
from scada.sources.base import PointUpdate, SourceConfig, SourceLost

log = structlog.get_logger("outage.scada")

Publish = Callable[[str, bytes, bytes], Awaitable[None]]  # topic, key, value
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def source_alert(
    site: SiteConfig, source: SourceConfig, kind: AlertKind, since: datetime, at: datetime
) -> AlertRaised:
    """The alert for one episode of a source being lost (or back); ids repeat per episode."""
    incident = f"scada-source:{site.site}:{source.name}"
    lost = kind == "scada_source_lost"
    summary = (
        f"SCADA source {source.name} ({source.type}) of site {site.site} lost since "
        f"{since:%Y-%m-%d %H:%M:%S} UTC: its {len(source.points)} points are not monitored"
        if lost
        else f"SCADA source {source.name} ({source.type}) of site {site.site} is back"
    )
    return AlertRaised(
        event_id=f"{incident}/{'lost' if lost else 'restored'}/{since.isoformat()}",
        occurred_at=at,
        domain=f"scada:{site.site}",
        incident_id=incident,
        correlation_id=incident,
        kind=kind,
        severity="warning" if lost else "info",
        utility=site.utility,
        device_id=source.name,
        customers_affected=0,
        summary=summary,
        area=site.site,
    )


@dataclass
class SourceRunner:
    """Supervises one source: reconnects, maps updates, publishes signals and lost alerts."""

    site: SiteConfig
    source: SourceConfig
    mapper: Mapper
    publish: Publish
    save: Callable[[], None] = lambda: None
    clock: Clock = utc_now
    is_up: bool = False
    down_since: datetime | None = None
    lost_alerted: bool = False
    published: int = 0
    _alarm: asyncio.Task[None] | None = field(default=None, repr=False)

    async def run_forever(self) -> None:
        delay = self.source.reconnect_initial
        self._went_down("not connected yet")
        while True:
            try:
                await self.source.run(self)
                reason = "the source closed the connection"
            except SourceLost as error:
                reason = error.reason
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a library bug must not stop the other sources
                log.exception("scada.source_failed", source=self.source.name)
                reason = f"{type(error).__name__}: {error}"
            if self.is_up:
                delay = self.source.reconnect_initial  # it worked for a while: start over
                self.is_up = False
                self._went_down(reason)
            log.warning("scada.source_lost", source=self.source.name, reason=reason, retry_in=delay)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.source.reconnect_max)

    async def __call__(self, update: PointUpdate) -> None:
        """The source's `emit`: every value; the first one says the source is up."""
        await self.connected()
        before = self.mapper.states.get(update.point)
        event = self.mapper.update(update, self.clock())
        if event is None:
            return
        try:
            await self.publish_signal(event)
        except BaseException:
            # Not sent, so not the point's state yet: the next read of it sends it again.
            self.mapper.forget(update.point, before)
            raise

    async def publish_signal(self, event: ScadaSignal) -> None:
        await self.publish("scada", event.device_id.encode(), encode(event))
        self.published += 1
        self.save()
        log.info(
            "scada.signal",
            source=self.source.name,
            device_id=event.device_id,
            signal=event.signal,
            quality=event.quality,
            occurred_at=event.occurred_at.isoformat(),
        )

    def _went_down(self, reason: str) -> None:
        self.down_since = self.clock()
        if self._alarm is None or self._alarm.done():
            self._alarm = asyncio.create_task(self._alert_when_still_down(self.down_since))

    async def _alert_when_still_down(self, since: datetime) -> None:
        await asyncio.sleep(self.source.lost_after)
        if self.is_up or self.down_since != since:
            return
        alert = source_alert(self.site, self.source, "scada_source_lost", since, self.clock())
        await self.publish("alerts", alert.incident_id.encode(), encode(alert))
        self.lost_alerted = True
        log.error("scada.source_lost_alert", source=self.source.name, since=since.isoformat())

    async def connected(self) -> None:
        """The source's session is up (called by the source, or by its first value)."""
        if self.is_up:
            return
        self.is_up = True
        if self._alarm is not None and not self._alarm.done():
            self._alarm.cancel()
        log.info("scada.connected", source=self.source.name)
        if self.lost_alerted and self.down_since is not None:
            alert = source_alert(
                self.site, self.source, "scada_source_restored", self.down_since, self.clock()
            )
            await self.publish("alerts", alert.incident_id.encode(), encode(alert))
            self.lost_alerted = False


class StateFile:
    """The last state of every point of every source, one JSON file, written atomically."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.mappers: dict[str, Mapper] = {}

    def load(self, mapper: Mapper) -> Mapper:
        self.mappers[mapper.source] = mapper
        if self.path is not None and self.path.exists():
            try:
                saved = json.loads(self.path.read_text())
            except (OSError, ValueError) as error:  # a torn or edited file: start afresh
                log.warning("scada.state_unreadable", path=str(self.path), error=str(error))
                saved = {}
            mapper.restore(saved.get(mapper.source, {}))
        return mapper

    def save(self) -> None:
        if self.path is None:
            return
        body = {name: mapper.export() for name, mapper in self.mappers.items()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(body, sort_keys=True))
        temporary.replace(self.path)


async def run_site(site: SiteConfig, publish: Publish) -> None:
    """Run every source of the site until cancelled."""
    state = StateFile(site.state_file)
    runners = [
        SourceRunner(
            site=site,
            source=source,
            mapper=state.load(Mapper(site.site, source.name, source.points)),
            publish=publish,
            save=state.save,
        )
        for source in site.sources
    ]
    log.info("scada.starting", site=site.site, sources=[s.name for s in site.sources])
    await asyncio.gather(*(runner.run_forever() for runner in runners))


async def run_with_broker(
    site: SiteConfig, bootstrap: str, partitions: int, options: Any, replication: int = 1
) -> None:
    """Publish to a Kafka-protocol broker; waits for it (a connector may start first)."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    from streams.broker import acreate_topics

    while True:
        try:
            # The worker makes these too; whoever starts first, partitions are the same.
            await acreate_topics(
                bootstrap,
                {"scada": partitions, "alerts": partitions},
                replication_factor=replication,
                kafka_options=options,
            )
            break
        except (KafkaError, OSError, RuntimeError) as error:
            log.warning("scada.broker_unreachable", broker=bootstrap, error=str(error))
            await asyncio.sleep(2.0)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **options)
    await producer.start()

    async def publish(topic: str, key: bytes, value: bytes) -> None:
        # Nothing lost: while the broker is away the source waits here, its point state not
        # yet taken as sent, rather than dropping a trip.
        delay = 0.5
        while True:
            try:
                await producer.send_and_wait(topic, value, key=key)
                return
            except KafkaError as error:
                log.warning("scada.publish_retry", topic=topic, error=str(error), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    try:
        await run_site(site, publish)
    finally:
        await producer.stop()
