"""The pure parts of /metrics: families from a snapshot, the delivery tally, consumer lag."""

import asyncio
from collections import deque
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from faust.types import TP
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from access.store import AccessStore
from projections.incidents import IncidentBook
from streams.metrics import (
    DeliveryTally,
    Snapshot,
    _Latest,
    backlog,
    consumer_lag,
    families,
    register,
    render,
)
from streams.web import Api

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: bytes) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def exposed(snapshot: Snapshot) -> Samples:
    """What a scrape of this snapshot shows, through the real text format and parser."""
    registry = CollectorRegistry(auto_describe=False)
    latest = _Latest()
    registry.register(latest)
    return parse(render(registry, latest, snapshot))


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def test_every_source_is_listed_from_the_first_scrape() -> None:
    """No counters yet: each ingest source shows 0; a new in_ counter shows as its own source."""
    empty = exposed(Snapshot())
    for source in ("calls", "scada", "planned-works", "operator-actions"):
        assert empty[("outage_events_in_total", (("source", source),))] == 0
    later = exposed(Snapshot(counters={"in_calls": 7, "in_meters": 2, "dead_letter": 1}))
    assert later[("outage_events_in_total", (("source", "calls"),))] == 7
    assert later[("outage_events_in_total", (("source", "meters"),))] == 2
    assert later[("outage_events_dead_letter_total", ())] == 1


def test_open_incidents_and_customers_are_labelled_by_utility_and_state() -> None:
    """The incident counts come out with their utility and state labels."""
    samples = exposed(
        Snapshot(
            open_incidents={("heat", "confirmed"): 2, ("power", "suspected"): 1},
            customers={"heat": 240, "power": 12},
        )
    )
    assert samples[("outage_incidents_open", (("state", "confirmed"), ("utility", "heat")))] == 2
    assert samples[("outage_incidents_open", (("state", "suspected"), ("utility", "power")))] == 1
    assert samples[("outage_customers_affected", (("utility", "heat"),))] == 240


def test_consumer_lag_series_only_for_partitions_fetched_once() -> None:
    """Assigned counts every partition; a lag series appears only once its end is known."""
    samples = exposed(Snapshot(consumer_lag={("calls", 0): 5, ("calls", 1): None}))
    assert samples[("outage_consumer_assigned_partitions", ())] == 2
    assert samples[("outage_consumer_lag", (("partition", "0"), ("topic", "calls")))] == 5
    assert ("outage_consumer_lag", (("partition", "1"), ("topic", "calls"))) not in samples
    assert "outage_consumer_lag" not in names(exposed(Snapshot(consumer_lag=None)))


def test_projection_figures_follow_what_could_be_read() -> None:
    """Off: only the enabled gauge; broker away: no 'behind' figures; store error: store down."""
    off = exposed(Snapshot(projections_enabled=False))
    assert off[("outage_projection_enabled", ())] == 0
    assert not any(n.startswith("outage_projection_rows") for n in names(off))

    full = {
        "enabled": True,
        "events_behind": 12,
        "seconds_behind": 0.5,
        "rows_written": 100,
        "store_failures": 3,
        "store_error": "connection refused",
    }
    down = exposed(Snapshot(projections_enabled=True, projection=full))
    assert down[("outage_projection_events_behind", ())] == 12
    assert down[("outage_projection_rows_written_total", ())] == 100
    assert down[("outage_projection_store_up", ())] == 0

    no_broker = {"rows_written": 100, "store_failures": 0, "store_error": None}
    partial = exposed(Snapshot(projections_enabled=True, projection=no_broker))
    assert "outage_projection_events_behind" not in names(partial)
    assert partial[("outage_projection_store_up", ())] == 1


def test_the_text_is_prometheus_0_0_4_with_help_and_type() -> None:
    """Every family carries HELP and TYPE lines and counters end in _total."""
    registry = CollectorRegistry(auto_describe=False)
    latest = _Latest()
    registry.register(latest)
    latest.families = families(Snapshot(ready=True))
    text = generate_latest(registry).decode()
    assert "# TYPE outage_events_in_total counter" in text
    assert "# TYPE outage_ready gauge" in text
    assert "outage_ready 1.0" in text


def test_the_delivery_tally_counts_each_record_once_across_a_turning_buffer() -> None:
    """Counts only new records, even when the bounded buffer dropped old ones or two are equal."""
    buffer: deque[dict[str, Any]] = deque(maxlen=3)
    tally = DeliveryTally()
    buffer.extend([{"status": "delivered"}, {"status": "failed"}])
    assert tally.update(list(buffer)) == {"delivered": 1, "failed": 1}
    assert tally.update(list(buffer)) == {"delivered": 1, "failed": 1}  # nothing new
    buffer.extend([{"status": "delivered"}, {"status": "delivered"}])  # equal, distinct records
    assert tally.update(list(buffer)) == {"delivered": 3, "failed": 1}
    buffer.extend({"status": "silenced"} for _ in range(5))  # the buffer turned over
    assert tally.update(list(buffer))["silenced"] == 3  # two fell out before this scrape


class FakeConsumer:
    """The three things consumer_lag reads of a faust consumer."""

    def __init__(self, ends: dict[Any, int | None], committed: dict[Any, int | None]) -> None:
        self.ends, self._committed_offset = ends, committed

    def assignment(self) -> set[Any]:
        return set(self.ends)

    def highwater(self, tp: Any) -> int | None:
        return self.ends[tp]


def test_consumer_lag_is_end_minus_committed_on_the_agents_topics_only() -> None:
    """Changelogs are left out; never committed counts from 0; no fetch yet gives None."""
    calls0, calls1, correlate0 = TP("calls", 0), TP("calls", 1), TP("correlate", 0)
    changelog = TP("outage-correlator-domain-state-changelog", 0)
    consumer = FakeConsumer(
        ends={calls0: 10, calls1: 4, correlate0: None, changelog: 50},
        committed={calls0: 7, changelog: 1},
    )
    agents = {
        name: SimpleNamespace(channel=SimpleNamespace(topics=(topic,)))
        for name, topic in (("ingest-calls", "calls"), ("correlate", "correlate"))
    }
    app = SimpleNamespace(consumer=consumer, agents=agents)
    assert consumer_lag(app) == {("calls", 0): 3, ("calls", 1): 4, ("correlate", 0): None}


def test_the_backlog_is_the_lag_summed_over_what_is_known() -> None:
    """Inbound and correlation work not yet handled, added up; None before any fetch."""
    calls0, correlate0 = TP("calls", 0), TP("correlate", 0)
    agents = {
        name: SimpleNamespace(channel=SimpleNamespace(topics=(topic,)))
        for name, topic in (("ingest-calls", "calls"), ("correlate", "correlate"))
    }
    busy = FakeConsumer(ends={calls0: 80, correlate0: 30}, committed={calls0: 20, correlate0: 25})
    assert backlog(SimpleNamespace(consumer=busy, agents=agents)) == 65
    fresh = FakeConsumer(ends={calls0: None}, committed={})
    assert backlog(SimpleNamespace(consumer=fresh, agents=agents)) is None
    samples = exposed(Snapshot(consumer_lag={("calls", 0): 60, ("correlate", 0): 5}))
    assert samples[("outage_backlog_events", ())] == 65


def test_consumer_lag_is_none_before_the_consumer_runs() -> None:
    """A consumer that is not started yet gives no lag rather than an error."""

    class NotStarted:
        def assignment(self) -> set[Any]:
            raise RuntimeError("Consumer thread not yet started")

    assert consumer_lag(SimpleNamespace(consumer=NotStarted(), agents={})) is None


async def answer(handler: Any) -> Any:
    """Run an operation's handler; /metrics does not look at the request."""
    return await handler(None)


def test_two_services_in_one_process_keep_their_own_registries(tmp_path: Path) -> None:
    """Registering /metrics for two services works and each scrape shows its own counters."""

    def service(calls: int) -> Any:
        return SimpleNamespace(
            sink=None,
            book=IncidentBook(),
            counters={"in_calls": calls},
            app=SimpleNamespace(consumer=None, agents={}),
            notifications=deque(),
            ready=True,
            book_caught_up=True,
        )

    scrapes = []
    for n, calls in enumerate((1, 2)):
        api = Api(
            AccessStore(tmp_path / f"access-{n}.sqlite3"),
            session_lifetime=timedelta(hours=1),
            cookie_secure=False,
            ingest_rate=1.0,
            ingest_burst=1,
            login_attempts=1,
        )
        register(service(calls), api)
        (operation,) = [o for o in api.operations if o.path == "/metrics"]
        assert operation.access == "public"
        response = asyncio.run(answer(operation.handler))
        assert response.content_type == "text/plain"
        scrapes.append(parse(response.body))
    assert [s[("outage_events_in_total", (("source", "calls"),))] for s in scrapes] == [1, 2]
    assert all(s[("process_cpu_seconds_total", ())] > 0 for s in scrapes)
