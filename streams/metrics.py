"""Prometheus metrics of one worker: `GET /metrics` in the text exposition format.

Everything is computed when Prometheus scrapes, from what the worker keeps anyway (its
counters, the incident book, the faust consumer's offsets, the projection sink, the
notification records), so the hot path does no extra work. Each Service has a registry of its
own (never prometheus_client's global one), so several apps in one process do not clash.

    outage_events_in_total{source}              events accepted by this worker's ingest agents
    outage_events_dead_letter_total             messages parked on dead-letter, with a reason
    outage_derived_events_total                 events this worker's correlator published
    outage_alerts_raised_total                  alerts among them
    outage_incidents_open{utility,state}        active incidents (the book: whole cluster)
    outage_customers_affected{utility}          customers under them
    outage_consumer_lag{topic,partition}        end offset - committed, partitions it owns
    outage_backlog_events                       their sum: events not handled yet
    outage_consumer_assigned_partitions         how many of the agents' partitions it owns
    outage_projection_*                         events not yet in ClickHouse, store health
    outage_alert_deliveries_total{status}       notification records: delivered/failed/silenced
    outage_ready                                1 once joined, recovered and the book read
    process_*                                   CPU seconds and memory of the worker process

Access: public, like /health (which already shows the counters and active incidents): no
caller data, no ids, only bounded labels. Keep the port on an internal network; see
deploy/README.md.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector

from streams.projection_feed import projection_lag

if TYPE_CHECKING:
    from streams.app import Service
    from streams.web import Api, Call

log = structlog.get_logger("outage.metrics")

# The ingest agents of streams/app.py, named as their counters are (`in_<source>`); listed so
# each series exists from the first scrape, at 0.
SOURCES = ("calls", "scada", "planned-works", "operator-actions")
STATUSES = ("delivered", "failed", "silenced")
LAG_TIMEOUT_SECONDS = 2.0  # the projection lag asks the broker; a scrape must not hang on it


@dataclass
class Snapshot:
    """What one scrape reports, as plain data (so the formatting is testable on its own)."""

    counters: Mapping[str, int] = field(default_factory=dict)
    open_incidents: Mapping[tuple[str, str], int] = field(default_factory=dict)  # utility, state
    customers: Mapping[str, int] = field(default_factory=dict)  # utility -> affected
    # (topic, partition) -> end minus committed; None until its first fetch. None: not running.
    consumer_lag: Mapping[tuple[str, int], int | None] | None = None
    projection: Mapping[str, Any] | None = None  # projection_lag(); None: could not be read
    projections_enabled: bool = False
    deliveries: Mapping[str, int] = field(default_factory=dict)  # status -> records
    ready: bool = False


class DeliveryTally:
    """Counts notification records by status as they join the worker's bounded buffer.

    The buffer (`Service.notifications`, the last 5,000) drops old records, so counting what
    it holds would go down; this remembers the last record it counted and counts only what
    came after it. If more than the buffer's length arrived between two scrapes, the records
    that fell out are not counted.
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._last: object | None = None

    def update(self, records: Sequence[Mapping[str, Any]]) -> Counter[str]:
        start = 0
        if self._last is not None:
            for index in range(len(records) - 1, -1, -1):
                if records[index] is self._last:  # identity: two records may be equal
                    start = index + 1
                    break
        for record in records[start:]:
            self.counts[str(record.get("status", "unknown"))] += 1
        if records:
            self._last = records[-1]
        return self.counts


def families(snapshot: Snapshot) -> list[Metric]:
    """The metric families of one scrape (pure)."""
    out: list[Metric] = []
    counters = snapshot.counters

    events_in = CounterMetricFamily(
        "outage_events_in",
        "Inbound events accepted by this worker's ingest agents, by source topic.",
        labels=["source"],
    )
    extra = sorted(k[3:] for k in counters if k.startswith("in_") and k[3:] not in SOURCES)
    for source in (*SOURCES, *extra):
        events_in.add_metric([source], counters.get(f"in_{source}", 0))
    out.append(events_in)
    for name, key, text in (
        ("outage_events_dead_letter", "dead_letter", "Messages this worker sent to dead-letter."),
        ("outage_derived_events", "derived", "Derived events this worker's correlator published."),
        ("outage_alerts_raised", "alerts", "Alerts among the derived events of this worker."),
    ):
        out.append(CounterMetricFamily(name, text, value=counters.get(key, 0)))

    incidents = GaugeMetricFamily(
        "outage_incidents_open",
        "Active incidents in the incident book (every worker reads the whole stream).",
        labels=["utility", "state"],
    )
    for (utility, state), count in sorted(snapshot.open_incidents.items()):
        incidents.add_metric([utility, state], count)
    out.append(incidents)
    customers = GaugeMetricFamily(
        "outage_customers_affected",
        "Customers under active incidents.",
        labels=["utility"],
    )
    for utility, count in sorted(snapshot.customers.items()):
        customers.add_metric([utility], count)
    out.append(customers)

    if snapshot.consumer_lag is not None:
        lag = GaugeMetricFamily(
            "outage_consumer_lag",
            "Messages on the agents' partitions this worker owns not yet committed "
            "(end offset minus committed offset).",
            labels=["topic", "partition"],
        )
        for (topic, partition), behind in sorted(snapshot.consumer_lag.items()):
            if behind is not None:
                lag.add_metric([topic, str(partition)], behind)
        out.append(lag)
        out.append(
            GaugeMetricFamily(
                "outage_backlog_events",
                "Events on this worker's partitions not handled yet (the sum of "
                "outage_consumer_lag): the board says 'catching up' from 50.",
                value=sum(b for b in snapshot.consumer_lag.values() if b is not None),
            )
        )
        out.append(
            GaugeMetricFamily(
                "outage_consumer_assigned_partitions",
                "Partitions of the agents' topics assigned to this worker.",
                value=len(snapshot.consumer_lag),
            )
        )

    out.append(
        GaugeMetricFamily(
            "outage_projection_enabled",
            "1 when this worker writes the ClickHouse projections.",
            value=int(snapshot.projections_enabled),
        )
    )
    projection = snapshot.projection
    if snapshot.projections_enabled and projection is not None:
        if "events_behind" in projection:
            out.append(
                GaugeMetricFamily(
                    "outage_projection_events_behind",
                    "Events on the projected topics not yet written to ClickHouse.",
                    value=projection["events_behind"],
                )
            )
            out.append(
                GaugeMetricFamily(
                    "outage_projection_seconds_behind",
                    "Age of the newest event written while events are behind (0 when none).",
                    value=projection["seconds_behind"],
                )
            )
        out.append(
            CounterMetricFamily(
                "outage_projection_rows_written",
                "Rows this worker wrote to ClickHouse.",
                value=projection.get("rows_written", 0),
            )
        )
        out.append(
            CounterMetricFamily(
                "outage_projection_store_failures",
                "Failed writes to ClickHouse (each retried).",
                value=projection.get("store_failures", 0),
            )
        )
        out.append(
            GaugeMetricFamily(
                "outage_projection_store_up",
                "0 while the last write to ClickHouse failed.",
                value=int(not projection.get("store_error")),
            )
        )

    deliveries = CounterMetricFamily(
        "outage_alert_deliveries",
        "Notification records read by this worker, by outcome (every worker's, from the "
        "notifications topic: the same on each worker).",
        labels=["status"],
    )
    statuses = (*STATUSES, *sorted(set(snapshot.deliveries) - set(STATUSES)))
    for status in statuses:
        deliveries.add_metric([status], snapshot.deliveries.get(status, 0))
    out.append(deliveries)

    out.append(
        GaugeMetricFamily(
            "outage_ready",
            "1 when the worker has joined its group, recovered its tables and read the "
            "incident stream (as GET /ready).",
            value=int(snapshot.ready),
        )
    )
    return out


def agent_topics(app: Any) -> set[str]:
    """The topics the faust agents consume (not the table changelogs the worker writes)."""
    names: set[str] = set()
    for agent in app.agents.values():
        names.update(getattr(agent.channel, "topics", ()))
    return names


def backlog(app: Any) -> int | None:
    """Events this worker's agents have not handled yet (inbound and correlation work): the
    sum of `consumer_lag` over the partitions it owns; None before the first fetch."""
    lag = consumer_lag(app)
    if lag is None:
        return None
    known = [behind for behind in lag.values() if behind is not None]
    return sum(known) if known else None


def consumer_lag(app: Any) -> dict[tuple[str, int], int | None] | None:
    """End minus committed offset per agent partition this worker owns; None when stopped.

    No broker request: the end offset is the high watermark of the consumer's last fetch
    (every fetch, empty or not, carries it); the committed offset is faust's own record of
    what it committed or found committed at assignment. faust has no public accessor for the
    latter (its monitor only knows commits made since start), hence the private attribute.
    """
    consumer = app.consumer
    committed: Mapping[Any, int | None] = getattr(consumer, "_committed_offset", {})
    try:
        assigned = consumer.assignment()
    except Exception:  # not started yet, or stopping: nothing to report
        return None
    wanted = agent_topics(app)
    lag: dict[tuple[str, int], int | None] = {}
    for tp in assigned:
        if tp.topic not in wanted:
            continue
        try:
            end = consumer.highwater(tp)
        except Exception:
            end = None
        # Unknown until the first fetch; a partition never committed starts at 0 (earliest).
        lag[(tp.topic, tp.partition)] = (
            None if end is None else max(end - (committed.get(tp) or 0), 0)
        )
    return lag


def incident_counts(service: Service) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    """Open incidents by (utility, state) and customers affected by utility, from the book."""
    by_state: Counter[tuple[str, str]] = Counter()
    customers: Counter[str] = Counter()
    for view in list(service.book.incidents.values()):
        if view.active:
            by_state[(view.utility, view.state)] += 1
            customers[view.utility] += view.customers_affected
    return dict(by_state), dict(customers)


async def take_snapshot(service: Service, tally: DeliveryTally) -> Snapshot:
    """Read the figures of one scrape; the projection lag is the only broker request."""
    projection: Mapping[str, Any] | None = None
    if service.sink is not None:
        try:
            projection = await asyncio.wait_for(projection_lag(service), LAG_TIMEOUT_SECONDS)
        except Exception as error:  # broker slow or away: report what needs no broker
            log.warning("metrics.projection_lag_failed", error=str(error) or type(error).__name__)
            lag = service.sink.lag({})
            projection = {k: v for k, v in lag.items() if not k.endswith("_behind")}
    open_incidents, customers = incident_counts(service)
    return Snapshot(
        counters=dict(service.counters),
        open_incidents=open_incidents,
        customers=customers,
        consumer_lag=consumer_lag(service.app),
        projection=projection,
        projections_enabled=service.sink is not None,
        deliveries=dict(tally.update(list(service.notifications))),
        ready=service.ready and service.book_caught_up,
    )


class _Latest(Collector):
    """Hands the registry the families of the scrape in progress."""

    def __init__(self) -> None:
        self.families: Iterable[Metric] = ()

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def render(registry: CollectorRegistry, latest: _Latest, snapshot: Snapshot) -> bytes:
    # No await between setting and reading: concurrent scrapes cannot mix their figures.
    latest.families = families(snapshot)
    try:
        return generate_latest(registry)
    finally:
        latest.families = ()


def register(service: Service, api: Api) -> None:
    """Add `GET /metrics` (public) with a registry of this service's own."""
    registry = CollectorRegistry(auto_describe=False)
    latest = _Latest()
    registry.register(latest)
    # CPU seconds and memory: what bounds a worker (docs/BENCHMARKS.md); read from /proc.
    ProcessCollector(registry=registry)
    tally = DeliveryTally()

    @api.op(
        "GET",
        "/metrics",
        "public",
        "Prometheus metrics of this worker",
        responses={200: "Prometheus text format 0.0.4"},
        produces=("text/plain",),
    )
    async def get_metrics(call: Call) -> web.Response:
        snapshot = await take_snapshot(service, tally)
        body = render(registry, latest, snapshot)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})
