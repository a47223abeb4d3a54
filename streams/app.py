"""The faust app: topics, the domain-state table and the agents, declared in one place.

    calls, scada, planned-works --ingest--> correlate (keyed by domain) --correlate--> incidents
                       \\--> dead-letter (with the reason)             \\--> alerts, log

Agents are thin: decode, route, correlate, publish. Bad input never stops a worker: it goes
to dead-letter with the reason. Correlation state lives in a table (its changelog survives a
worker restart); duplicates after a redelivery are dropped by the correlator itself.

Crash safety (a worker may be killed between any two instructions): the derived events of an
input are acknowledged by the broker before the state that records the input is written, and
the state is one table, one changelog partition per domain, written dedupe id first and
snapshot second, the snapshot numbering the inputs it holds. Whatever prefix of these writes
survives, the redelivered input is either dropped as folded already (its outputs are on the
stream) or decided again from the state before it (same ids: readers drop the copies).

Several workers: each owns the domains of its partitions of `correlate`. The cache of parsed
states is dropped at every rebalance and reloaded, for the owned partitions only, once faust
has recovered the table; ticks go only to owned domains.

Time: a tick carries the domain's latest event time moved on by the wall time elapsed since
that event reached the stream (kept in the snapshot), never the wall clock itself. Live it is
the wall clock less the ingest delay; for a storm of past events sent at once it moves time on
by seconds, not months, so the incidents are those of an offline replay.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import faust
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import IllegalStateError
from aiokafka.partitioner import murmur2

from access.store import AccessStore
from alerting.config import AlertingConfig, OneOffSilence
from correlators.admission import RecentIds, Refused, TimeBounds, admit_new
from correlators.correlator import Correlator
from correlators.routing import Unroutable, route
from correlators.state import DomainState
from events.codec import EventRejected, decode_derived, decode_inbound, encode
from events.derived import AlertRaised, DerivedBase
from events.inbound import ACTION_TYPES
from events.internal import Routed, Tick
from projections.backends import open_store
from projections.incidents import IncidentBook
from projections.retention import enforce
from projections.rows import Projector
from projections.sink import Sink
from streams import silences
from streams.alert_feed import feed_alerts, notifications_buffer
from streams.follow import TopicFollower
from streams.projection_feed import keep_feeding
from streams.settings import Settings
from streams.tasks import keep_running
from streams.transport import kafka_client_options, kafka_credentials
from streams.web import MAX_BODY_BYTES, json_errors
from topology.phones import PhoneBook, load_phone_book

log = structlog.get_logger("outage")

INBOUND_TOPICS = {
    "call_reported": "calls",
    "scada_signal": "scada",
    "planned_work_scheduled": "planned-works",
    "planned_work_cancelled": "planned-works",
    "incident_acknowledged": "operator-actions",
    "cause_set": "operator-actions",
    "etr_set": "operator-actions",
    "incident_resolved": "operator-actions",
}


RESYNC: dict[str, Any] = {"resync": True}  # tells a live page to take a new snapshot
PERSONAL_TOPICS = frozenset({"calls", "history", "correlate", "dead-letter"})
SEEN = b"\x00"  # table keys "domain\x00event id" are dedupe ids; plain "domain" is the snapshot


@dataclass
class DomainClock:
    """What the worker keeps per domain beside the correlation state (saved in the snapshot).

    `seq` numbers the inputs folded into the snapshot, so a dedupe id written without its
    snapshot (a crash in between) is not taken for folded. `lag` is wall time minus event
    time of the input that last moved the domain's watermark, as it reached the stream: a
    tick at wall time `now` carries event time `now - lag`.
    """

    seq: int = 0
    lag: float | None = None


@dataclass
class Service:
    """What the HTTP views and the agents share inside one worker process."""

    app: faust.App
    settings: Settings
    correlator: Correlator
    book: IncidentBook = field(default_factory=IncidentBook)
    states: dict[str, DomainState] = field(default_factory=dict)  # parsed cache, owned domains
    clocks: dict[str, DomainClock] = field(default_factory=dict)  # beside each cached state
    counters: dict[str, int] = field(default_factory=dict)
    topics: dict[str, Any] = field(default_factory=dict)
    # domain -> snapshot (seq, lag, state without the dedupe ids); "domain\x00event id" ->
    # "seq event-time": the dedupe ids, one entry each. One table: one changelog partition per
    # domain, so its writes reach the broker in the order they were made.
    table: Any = None
    recovered: bool = False  # the cache holds every owned domain (reloaded after a rebalance)
    sink: Sink | None = None  # the ClickHouse projections (None when switched off)
    projection_consumer: Any = None
    alerting: AlertingConfig | None = None
    delivered: set[str] = field(default_factory=set)  # notification keys already sent
    notification_ids: set[str] = field(default_factory=set)  # records already listed
    notifications: deque[dict[str, Any]] = field(default_factory=notifications_buffer)
    api: Any = None  # streams.web.Api: the endpoints and the checks they pass through
    silences: dict[str, OneOffSilence] = field(default_factory=dict)  # set at run time, by id
    subscribers: set[asyncio.Queue[dict[str, Any]]] = field(default_factory=set)  # live pages
    phone_book: PhoneBook = field(default_factory=lambda: PhoneBook({}))
    recent_ids: RecentIds = field(default_factory=RecentIds)  # event id -> content, to refuse reuse
    inbound_producer: AIOKafkaProducer | None = None  # the edge's publisher (batching)
    inbound_ready: asyncio.Event = field(default_factory=asyncio.Event)

    @cached_property
    def time_bounds(self) -> TimeBounds:
        return TimeBounds.of(self.correlator.rules)

    @property
    def bootstrap(self) -> str:
        """host:port,... for plain aiokafka clients."""
        return ",".join(url.split("://", 1)[-1] for url in self.settings.broker_urls)

    @cached_property
    def kafka_options(self) -> dict[str, Any]:
        """TLS/SASL keywords for plain aiokafka clients ({} on PLAINTEXT); one SSL context."""
        return kafka_client_options(self.settings)

    def group_options(self) -> dict[str, int]:
        """Session and heartbeat of the feeds' consumer groups: twice the workers' session, so
        a feed waiting on a slow store or mail server is not evicted first."""
        session_ms = round(self.settings.session_timeout * 2000)
        return {"session_timeout_ms": session_ms, "heartbeat_interval_ms": session_ms // 4}

    def follower(self, topic: str) -> TopicFollower:
        """A reader of the whole of `topic` (created if missing, with the configured layout)."""
        settings = self.settings
        return TopicFollower(
            self.bootstrap,
            topic,
            settings.partitions,
            self.kafka_options,
            replication=settings.topic_replication,
        )

    hash_key: bytes = b""  # HMAC key of reporter hashes and acknowledge links, read once
    ready: bool = False  # set once the worker has joined its group and recovered its tables
    book_caught_up: bool = False  # the incident book has read the stream as it was at start
    book_follower: TopicFollower | None = None  # its reader of `incidents`
    book_read: dict[int, int] = field(default_factory=dict)  # partition -> next offset applied

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    async def publish_inbound(self, event: Any, key: str) -> None:
        """Send an accepted inbound event to its topic and wait until the broker has it."""
        await self._publish(INBOUND_TOPICS[event.type], [(event, key)])

    async def publish_history(self, events: list[tuple[Any, str]]) -> None:
        """Send calls recorded offline, keyed by domain, to `history` (read by the projector
        only) and wait until the broker has every one."""
        await self._publish("history", events)

    async def _publish(self, topic: str, events: list[tuple[Any, str]]) -> None:
        # The inbound producer batches what concurrent requests send (a 202 still waits for
        # the broker's acknowledgement of its own record); see `inbound_producer`.
        await asyncio.wait_for(self.inbound_ready.wait(), timeout=30)
        producer = self.inbound_producer
        assert producer is not None
        futures = [
            await producer.send(topic, key=key.encode(), value=encode(event))
            for event, key in events
        ]
        await asyncio.gather(*futures)

    async def dead_letter(self, source: str, payload: bytes | None, reason: str) -> None:
        body = {
            "source": source,
            "reason": reason,
            "payload": (payload or b"").decode("utf-8", errors="replace")[:65536],
            "rejected_at": datetime.now(UTC).isoformat(),
        }
        self.count("dead_letter")
        log.warning("event.rejected", source=source, reason=reason)
        await self.topics["dead-letter"].send(value=json.dumps(body).encode())


def create_app(settings: Settings, correlator: Correlator) -> Service:
    # Tansu 0.6 reports a wrong end offset after a produce of several records, and faust
    # then recovers tables only partly; one record per produce request avoids it.
    tansu_options: dict[str, Any] = (
        {"producer_max_batch_size": 1} if settings.tansu_workarounds else {}
    )
    app = faust.App(
        settings.app_id,
        broker=settings.broker_urls,
        # TLS/SASL from OUTAGE_KAFKA_*; None on PLAINTEXT (faust's default). Raises ValueError
        # naming the variable when the combination cannot work, before anything connects.
        broker_credentials=kafka_credentials(settings),
        store="memory://",
        datadir=str(settings.data_dir / "faust"),
        web_bind=settings.web_host,  # the listen address; web_host alone only names it
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_enabled=True,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.topic_replication,
        # Tansu refuses transactions, so processing is at least once and handling idempotent.
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        # faust's defaults make a consumer-group join on Tansu take about 30 s; 2 s sessions
        # make it 2.4 s (measured here). Kafka itself wants at least 6 s (Settings).
        broker_rebalance_timeout=settings.session_timeout,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=settings.session_timeout / 4,
        producer_acks=-1,
        **tansu_options,
        autodiscover=False,
        # faust's own pages (/table/ shows table contents, /router/, /graph/, stats) would
        # answer without a login: only the views of streams/http.py and account.py are served.
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
        web_application_options={"middlewares": [json_errors], "client_max_size": MAX_BODY_BYTES},
    )
    keep_queues_on_resume(app)
    service = Service(
        app=app,
        settings=settings,
        correlator=correlator,
        hash_key=settings.analytics_key(),
        phone_book=load_phone_book(settings.phone_books, correlator.topology),
    )

    def topic(name: str) -> Any:
        # Topics that carry callers' numbers and notes in clear keep them no longer than the
        # contact retention (applies when this service creates the topic; see SECURITY.md).
        personal = name in PERSONAL_TOPICS
        t = app.topic(
            name,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
            retention=timedelta(days=settings.retention_contact_days) if personal else None,
        )
        service.topics[name] = t
        return t

    calls, scada, works = topic("calls"), topic("scada"), topic("planned-works")
    actions = topic("operator-actions")
    correlate_topic = topic("correlate")
    topic("incidents")
    topic("alerts")
    topic("dead-letter")
    topic("silences")
    topic("history")  # calls recorded offline: the projector's, never correlated
    table = app.Table(
        "domain-state",
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.partitions,
    )
    service.table = table

    # A rebalance may hand a domain to another worker and back: the cache would then be stale.
    # Forget it when partitions move; reload it once faust has recovered the table, before
    # the streams resume.
    @app.on_partitions_revoked.connect
    async def forget_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        forget_states(service)

    @app.on_partitions_assigned.connect
    async def forget_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        forget_states(service)

    @app.on_rebalance_complete.connect
    async def reload_states(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        await rewind_uncommitted(app)
        recover_states(service)

    def ingest_agent(source: str, inbound: Any) -> None:
        @app.agent(inbound, name=f"ingest-{source}")
        async def ingest_source(stream: Any) -> None:
            async for event in stream.events():
                await ingest(service, source, event.value, event.message.timestamp)

    for source, inbound in (
        ("calls", calls),
        ("scada", scada),
        ("planned-works", works),
        ("operator-actions", actions),
    ):
        ingest_agent(source, inbound)

    @app.agent(correlate_topic, name="correlate")
    async def correlate(stream: Any) -> None:
        async for event in stream.events():
            await correlate_one(service, event.value, event.message.timestamp)

    @app.task
    async def inbound_producer() -> None:
        await publish_inbound_events(service)

    @app.task
    async def incident_book() -> None:
        await keep_running("incident_book", lambda: follow_incident_stream(service))

    @app.timer(interval=settings.tick_seconds)
    async def tick() -> None:
        if not service.recovered:
            return  # partitions are moving: the next owner ticks its domains
        now = time.time()
        for domain, state in list(service.states.items()):
            try:
                at = tick_time(state, service.clocks.get(domain), now)
            except (ValueError, OverflowError, OSError):
                # A clock no event should have made; the worker (and its API) must live on.
                log.exception("tick.skipped", domain=domain)
                continue
            if at is not None:
                message = Tick(domain=domain, occurred_at=at).model_dump_json().encode()
                await correlate_topic.send(key=domain.encode(), value=message)

    if settings.projections:
        projector = Projector(correlator.topology, service.hash_key)
        service.sink = Sink(
            open_store=lambda: open_store(settings.clickhouse_url, settings.chdb_dir),
            projector=projector,
        )

        @app.task
        async def projections() -> None:
            await keep_feeding(service)

        if settings.retention_every_hours > 0:

            @app.task
            async def retention() -> None:
                await keep_running("retention", lambda: enforce_retention(service))

    service.alerting = AlertingConfig.load(settings.alerting)

    @app.task
    async def alerts() -> None:
        await keep_running("alerts", lambda: feed_alerts(service))

    @app.task
    async def run_time_silences() -> None:
        await keep_running("silences", lambda: silences.follow_silences(service))

    # The views need the service; imported here to avoid a cycle.
    from streams import account, http, metrics, pages
    from streams.web import Api

    service.api = Api(
        AccessStore(settings.access_path),
        session_lifetime=timedelta(hours=settings.session_hours),
        cookie_secure=settings.cookie_secure,
        ingest_rate=settings.ingest_rate,
        ingest_burst=settings.ingest_burst,
        login_attempts=settings.login_attempts,
    )
    http.register(service, service.api)
    silences.register(service, service.api)
    account.register(service, service.api)
    pages.register(service, service.api)
    metrics.register(service, service.api)
    service.api.mount(app)
    return service


async def enforce_retention(service: Service) -> None:
    """Delete expired caller data now and then, in the worker: chDB admits one process only."""
    settings, sink = service.settings, service.sink
    assert sink is not None
    every = settings.retention_every_hours * 3600
    while True:
        # Not during start-up: the store opens and the feed catches up first.
        await asyncio.sleep(min(60.0, every))
        result = await sink.run(
            lambda store: enforce(
                store,
                datetime.now(UTC),
                settings.retention_contact_days,
                settings.retention_call_days,
            )
        )
        log.info("retention.enforced", deleted={t.table: t.deleted for t in result.tables})
        await asyncio.sleep(max(0.0, every - 60.0))


async def publish_inbound_events(service: Service) -> None:
    """Run the producer the HTTP edge publishes accepted events with, until the app stops.

    Its own producer, not faust's: faust's sends one record per produce request on Tansu (its
    changelogs need exact end offsets, which Tansu 0.6 gets wrong after a batch), which
    measured as a fifth of the worker's time in a storm (docs/BENCHMARKS.md). Inbound topics
    are read by consumer groups and by rebuilds that read to the end of a fetch
    (streams/rebuild.py), never up to a reported end offset, so their records can batch:
    what concurrent requests send while a produce is in flight goes in the next request.
    """
    producer = AIOKafkaProducer(
        bootstrap_servers=service.bootstrap,
        acks="all",  # a 202 means every in-sync replica has the event
        linger_ms=2,  # a storm's concurrent posts share produce requests
        **service.kafka_options,
    )
    await producer.start()
    service.inbound_producer = producer
    service.inbound_ready.set()
    try:
        await asyncio.Event().wait()  # until the app cancels this task at stop
    finally:
        service.inbound_ready.clear()
        service.inbound_producer = None
        await producer.stop()


async def follow_incident_stream(service: Service) -> None:
    """Fold the whole incident stream into this process's book, from the beginning, live.

    No consumer group: every API process reads every partition, so a lookup answers the same
    on any worker and a restarted worker knows every incident again.
    """
    follower = service.follower("incidents")
    await follower.start()
    service.book = IncidentBook()  # (re)read from the beginning: start from an empty book
    service.book_caught_up = False
    service.book_follower, service.book_read = follower, {}
    try:
        while True:
            changed: set[str] = set()
            for record in await follower.poll(timeout_ms=500):
                service.book_read[record.partition] = record.offset + 1
                try:
                    event = decode_derived(record.value or b"")
                    service.book.apply(event)
                except Exception:
                    log.exception("incident_book.failed", offset=record.offset)
                    continue
                changed.update(getattr(event, "merged_ids", ()))
                if getattr(event, "incident_id", None):
                    changed.add(event.incident_id)
            if changed and service.subscribers and service.book_caught_up:
                tell_pages(service, changed)
            if not service.book_caught_up and await follower.caught_up():
                service.book_caught_up = True
                log.info("incident_book.caught_up", incidents=len(service.book.incidents))
                for queue in service.subscribers:  # a page opened during catch-up saw a part
                    resync(queue)
    finally:
        await follower.stop()


def tell_pages(service: Service, incident_ids: set[str]) -> None:
    """Push changed incidents to every open board (server-sent events).

    A page that fell 1,000 changes behind gets a fresh snapshot instead of the backlog.
    """
    from streams.http import incident_json

    topology = service.correlator.topology
    bodies = [  # made once, whatever the number of open pages
        incident_json(service.book.incidents[i], topology)
        for i in sorted(incident_ids)
        if i in service.book.incidents
    ]
    for queue in list(service.subscribers):
        try:
            for body in bodies:
                queue.put_nowait(body)
        except asyncio.QueueFull:
            resync(queue)


def resync(queue: asyncio.Queue[dict[str, Any]]) -> None:
    """Replace what a page has not read yet by one request to take a new snapshot."""
    while not queue.empty():
        queue.get_nowait()
    queue.put_nowait(RESYNC)


async def ingest(
    service: Service, source: str, payload: bytes | None, received_at: float | None = None
) -> None:
    """Validate and route one inbound message; anything wrong goes to dead-letter.

    `received_at`: when the broker got the record (its timestamp, wall seconds). An event
    written straight to a topic is stamped accepted then; the admission checks of the edge run
    again against that moment, so an event no edge saw cannot move a domain's clock either.
    """
    try:
        event = accepted(decode_inbound(payload or b""), received_at)
        digest = admit_new(event, event.recorded_at, service.time_bounds, service.recent_ids)
        if event.type in ACTION_TYPES:
            # An action names an incident: after a restart, wait until the book knows them all.
            while not service.book_caught_up:
                await asyncio.sleep(0.1)
        routed = await route_event(service, event)
    except (EventRejected, Unroutable, Refused) as error:
        await service.dead_letter(source, payload, error.reason)
        return
    except Exception as error:  # a bug must not stop the worker: park the message, say why
        log.exception("ingest.failed", source=source)
        await service.dead_letter(source, payload, f"internal error: {type(error).__name__}")
        return
    service.recent_ids.remember(event.event_id, digest)
    service.count(f"in_{source}")
    # Caller and notes are masked by the log processor (streams/logs.py), even at DEBUG.
    log.debug(
        "event.accepted",
        source=source,
        type=event.type,
        event_id=event.event_id,
        caller=getattr(event, "caller", None),
        notes=getattr(event, "notes", None),
    )
    for item in routed:
        await service.topics["correlate"].send(
            key=item.domain.encode(), value=item.model_dump_json().encode()
        )


def accepted(event: Any, received_at: float | None) -> Any:
    """The event with `recorded_at` set: the edge's stamp, or the broker's record time when
    none was given or the given one is later (a sender's clock cannot date its own acceptance)."""
    if received_at is None or received_at <= 0:
        return (
            event
            if event.recorded_at is not None
            else event.model_copy(update={"recorded_at": datetime.now(UTC)})
        )
    broker_time = datetime.fromtimestamp(received_at, UTC)
    if event.recorded_at is not None and event.recorded_at <= broker_time:
        return event
    return event.model_copy(update={"recorded_at": broker_time})


async def route_event(service: Service, event: Any) -> list[Routed]:
    """Route one inbound event. An action whose incident this worker's book does not know
    yet, one another worker opened a moment ago, is routed again once the book has read the
    incident stream as it is now; still unknown then, it is Unroutable."""
    try:
        return route(service.correlator.topology, event, service.book.domains)
    except Unroutable:
        if event.type not in ACTION_TYPES or not await book_read_to_now(service):
            raise
    return route(service.correlator.topology, event, service.book.domains)


async def book_read_to_now(service: Service, timeout: float = 30.0) -> bool:
    """Wait until the incident book has applied every record on `incidents` now; False when
    that takes longer than `timeout` seconds (a broker unreachable meanwhile)."""
    follower = service.book_follower
    if follower is None:
        return False
    ends = await follower.ends_now()
    deadline = time.monotonic() + timeout
    while any(service.book_read.get(tp.partition, 0) < end for tp, end in ends.items()):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def _decode_work(payload: bytes) -> Routed | Tick:
    """A routed event or a tick; anything else is a ValueError (the caller dead-letters it)."""
    try:
        body = json.loads(payload)
        if not isinstance(body, dict):
            raise ValueError(f"work must be a JSON object, not {type(body).__name__}")
        if body.get("type") == "tick":
            return Tick.model_validate(body)
        return Routed.model_validate(body)
    except (RecursionError, OverflowError, TypeError) as error:  # hostile nesting or times
        raise ValueError(f"{type(error).__name__}: {error}") from None


def keep_queues_on_resume(app: faust.App) -> None:
    """Resuming a flow that is not suspended must not empty the agents' queues.

    mode's `FlowControlEvent.resume` clears every queue it manages, whatever the state. faust
    suspends the flow when partitions are revoked (and clears the queues then, as it should),
    but resumes it up to three times per rebalance: after the active tables are recovered,
    for the standby partitions, and when the streams resume. The later calls find the flow
    running and records of the new assignment in the queues: they are dropped, the consumer
    counts them as read and faust commits past the hole. Measured here: a worker joining
    mid-storm lost runs of 13 and 47 calls. A resume now empties queues only when the flow
    was suspended.
    """
    flow = app.flow_control
    resume = flow.resume

    def resume_once() -> None:
        if not flow.is_active():
            resume()

    flow.resume = resume_once  # type: ignore[method-assign]  # one app's instance, on purpose


async def rewind_uncommitted(app: faust.App) -> None:
    """Start every partition of the agents' topics that has no committed offset at its beginning.

    faust drops records it fetched for a partition that a rebalance paused or moved in the
    meantime, and the consumer's position stays past them; after the rebalance it seeks back
    to the committed offsets, but leaves alone a partition never committed (a worker that
    owned it had not finished a record yet): its first records were never read. Measured
    here: a worker killed mid-storm, another taking over and a third joining lost the first
    33 calls of a partition. Called once the tables are recovered, before the streams resume.
    """
    consumer: Any = app.consumer  # faust's ConsumerT type lists neither seek call
    if not consumer.assignment():
        return  # more workers than partitions: this one has none (aiokafka would assert)
    sources = {t for agent in app.agents.values() for t in getattr(agent.channel, "topics", ())}
    try:
        committed = await consumer.seek_to_committed()
        fresh = [tp for tp, offset in committed.items() if tp.topic in sources and not offset]
        if fresh:
            await consumer.seek_wait(await consumer.earliest_offsets(*fresh))
    except (AssertionError, IllegalStateError) as error:
        # The assignment moved again meanwhile: the next rebalance ends here once more.
        log.warning("partitions.rewind_skipped", error=repr(error))
        return
    if fresh:
        log.info("partitions.rewound", partitions=sorted(f"{t.topic}-{t.partition}" for t in fresh))


def tick_time(state: DomainState, clock: DomainClock | None, now: float) -> datetime | None:
    """The event time a tick at wall time `now` carries, or None when it would change nothing.

    The domain's latest event time moved on by the wall time elapsed since that event reached
    the stream: the wall clock (less the ingest delay) while events come as they happen, and
    no further than the real time that passed when a backlog or a past storm is sent at once.
    """
    if state.is_idle or clock is None or clock.lag is None:
        return None
    try:  # never ahead of the wall clock, and never off the calendar
        at = datetime.fromtimestamp(now - max(0.0, clock.lag), UTC)
    except (ValueError, OverflowError, OSError):
        return None
    if state.watermark is not None and at <= state.watermark:
        return None  # time is already there
    return at


async def correlate_one(
    service: Service, payload: bytes | None, received_at: float | None = None
) -> None:
    """Fold one routed event or tick into its domain and publish what it decided.

    `received_at`: when the record reached the stream (its Kafka timestamp, wall seconds).
    """
    try:
        item = _decode_work(payload or b"")
    except ValueError as error:
        await service.dead_letter("correlate", payload, f"undecodable: {error}")
        return
    domain = item.domain
    try:
        if not service.recovered:
            recover_states(service)
        state = service.states.get(domain) or service.correlator.initial_state(domain)
        service.states[domain] = state
        clock = service.clocks.setdefault(domain, DomainClock())
        new_id = (
            item.event_id if isinstance(item, Routed) and item.event_id not in state.seen else None
        )
        watermark_before = state.watermark
        seen_before = state.seen
        derived = service.correlator.handle(state, item)
    except Exception as error:
        # Keep the worker going; the cached state may be half-updated: reload from the tables.
        forget_states(service)
        log.exception("correlate.failed", domain=domain)
        await service.dead_letter("correlate", payload, f"internal error: {type(error).__name__}")
        return
    # Published and acknowledged before the state is saved: after a crash in between, the
    # input is redelivered, decided again with the same ids, and readers drop the copies.
    await publish_derived(service, derived)
    if new_id is not None:
        clock.seq += 1
        if state.watermark is not None and state.watermark != watermark_before:
            wall = received_at if received_at else time.time()
            # Never negative: ticks run no further than the wall clock, whatever an event's
            # time (it moved the watermark at most the allowed skew ahead: Correlator).
            clock.lag = max(0.0, wall - state.watermark.timestamp())
    save_state(service, state, clock, new_id, seen_before)


def save_state(
    service: Service,
    state: DomainState,
    clock: DomainClock,
    new_id: str | None,
    seen_before: dict[str, Any],
) -> None:
    """Write what changed: the new dedupe id, pruned ids, then the snapshot of active state.

    Both go to the same changelog partition, in this order: a crash can lose a suffix of
    them, never keep the snapshot without the id it folded.
    """
    prefix = state.domain.encode() + SEEN
    if new_id is not None:
        seen_at = state.seen[new_id].isoformat()
        service.table[prefix + new_id.encode()] = f"{clock.seq} {seen_at}".encode()
    if state.seen is not seen_before:  # the correlator pruned ids past the dedupe horizon
        for event_id in seen_before.keys() - state.seen.keys():
            service.table.pop(prefix + event_id.encode(), None)
    service.table[state.domain.encode()] = snapshot(state, clock)


def snapshot(state: DomainState, clock: DomainClock) -> bytes:
    """`{"seq": n, "lag": s, "state": {...}}`: the state without its dedupe ids."""
    head = json.dumps({"seq": clock.seq, "lag": clock.lag})[:-1].encode()
    return head + b', "state": ' + state.model_dump_json(exclude={"seen"}).encode() + b"}"


def domain_partition(domain: str, partitions: int) -> int:
    """The partition of `correlate` a domain's work goes to (Kafka's default partitioner)."""
    return (murmur2(domain.encode()) & 0x7FFFFFFF) % partitions


def owned_partitions(service: Service) -> set[int] | None:
    """Partitions of `correlate` this worker owns now; None when the consumer cannot say."""
    try:
        assignment = service.app.consumer.assignment()
    except Exception:  # not started yet: a test driving correlate_one without a consumer
        return None
    return {tp.partition for tp in assignment if tp.topic == "correlate"}


def forget_states(service: Service) -> None:
    """Drop the cache; it is reloaded from the table before the next event or tick."""
    service.recovered = False
    service.states.clear()
    service.clocks.clear()


def recover_states(service: Service) -> None:
    """Rebuild the owned domains' states from the table (after a rebalance or a failed event).

    The table also holds other workers' domains (standby replicas, partitions owned before a
    rebalance): only the domains of owned partitions are loaded. A dedupe id numbered past
    its snapshot belongs to an input the snapshot does not hold: it is left out, so the
    redelivered input is folded again.
    """
    owned = owned_partitions(service)
    partitions = service.settings.partitions
    states: dict[str, DomainState] = {}
    clocks: dict[str, DomainClock] = {}
    seen: list[tuple[str, str, bytes]] = []
    for key, value in list(service.table.items()):
        if value is None:
            continue
        head, sep, event_id = key.partition(SEEN)
        domain = head.decode()
        if owned is not None and domain_partition(domain, partitions) not in owned:
            continue
        if sep:
            seen.append((domain, event_id.decode(), value))
            continue
        body = json.loads(value)
        if "state" in body:
            states[domain] = DomainState.model_validate(body["state"])
            lag = body.get("lag")  # a negative lag (saved before it was bounded) runs ahead
            clocks[domain] = DomainClock(seq=body.get("seq") or 0, lag=lag and max(0.0, lag))
        else:  # a snapshot from before the numbering: every id counts as folded
            states[domain] = DomainState.model_validate(body)
            clocks[domain] = DomainClock(seq=-1)
    for domain, event_id, value in seen:
        if domain not in states:
            continue
        seq, _, at = value.decode().partition(" ")
        if clocks[domain].seq < 0 or int(seq) <= clocks[domain].seq:
            states[domain].seen[event_id] = datetime.fromisoformat(at)
    for clock in clocks.values():
        clock.seq = max(clock.seq, 0)
    service.states, service.clocks = states, clocks
    service.recovered = True
    log.info("state.recovered", domains=len(states), partitions=sorted(owned or ()))


async def publish_derived(service: Service, derived: list[DerivedBase]) -> None:
    """Send the derived events and wait until the broker has every one of them."""
    pending: list[Any] = []
    for event in derived:
        body = encode(event)
        # force: never held back until the offset commit (stream_publish_on_commit).
        topic = service.topics["incidents"]
        pending.append(await topic.send(key=event.domain.encode(), value=body, force=True))
        service.count("derived")
        if isinstance(event, AlertRaised):
            service.count("alerts")
            topic = service.topics["alerts"]
            # Keyed by domain: incidents merge only within one, so one alert feed sees all the
            # alerts a merge groups into one notification (alerting/group.py).
            pending.append(await topic.send(key=event.domain.encode(), value=body, force=True))
            log.info(
                "alert.raised",
                incident_id=event.incident_id,
                kind=event.kind,
                severity=event.severity,
                device_id=event.device_id,
                summary=event.summary,
            )
        elif event.type in ("incident_opened", "incident_restored", "incidents_merged"):
            log.info(event.type, incident_id=getattr(event, "incident_id", None))
    if pending:
        await asyncio.gather(*pending)
