"""GET /metrics on a real worker (real Tansu, real faust, chDB projections), over real HTTP."""

import asyncio
import urllib.request
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from streams.broker import EmbeddedBroker
from streams.http import CATCHING_UP
from tests.integration.conftest import Worker, wait_for

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(worker: Worker) -> tuple[str, Samples]:
    """GET /metrics without credentials: (content type, {(name, labels): value})."""
    with urllib.request.urlopen(worker.base + "/metrics", timeout=10) as response:
        assert response.status == 200
        kind, text = response.headers["content-type"], response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return kind, samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def call(premise: str) -> dict[str, Any]:
    return {
        "type": "call_reported",
        "schema_version": 1,
        "event_id": f"call-{uuid.uuid4()}",
        "occurred_at": datetime.now(UTC).isoformat(),
        "utility": "heat",
        "premise_id": premise,
        "symptom": "no_heat",
        "scope": "whole_building",
    }


def test_metrics_answer_without_a_key_in_the_prometheus_text_format(worker: Worker) -> None:
    """A scrape needs no credentials and says the worker is ready and owns every partition."""
    kind, samples = scrape(worker)
    assert kind.startswith("text/plain") and "version=0.0.4" in kind
    assert samples[("outage_ready", ())] == 1
    # One worker owns all 4 partitions of the five agent topics; a lag once each was fetched.
    assert samples[("outage_consumer_assigned_partitions", ())] == 20
    _, samples = wait_for(
        lambda: (
            (s := scrape(worker)) and sum(n == "outage_consumer_lag" for n, _ in s[1]) == 20 and s
        )
    )
    lags = {ls for n, ls in samples if n == "outage_consumer_lag"}
    assert {dict(ls)["topic"] for ls in lags} == {
        "calls",
        "scada",
        "planned-works",
        "operator-actions",
        "correlate",
    }
    for source in ("calls", "scada", "planned-works", "operator-actions"):
        assert ("outage_events_in_total", (("source", source),)) in samples
    assert samples[("outage_projection_enabled", ())] == 1
    assert total(samples, "process_cpu_seconds_total") > 0


def test_calls_move_events_in_and_open_incidents(worker: Worker) -> None:
    """Three calls: calls in +3, one more open incident, its alert delivered, lags back to 0."""
    _, before = scrape(worker)
    calls_before = total(before, "outage_events_in_total", source="calls")
    open_before = total(before, "outage_incidents_open", utility="heat")
    delivered_before = total(before, "outage_alert_deliveries_total", status="delivered")
    for n in (1, 2, 3):
        status, answer = worker.post("/v1/calls", call(f"P-HSUB1-B3-0{n}"))
        assert status == 202, answer

    def moved() -> Samples | None:
        _, now = scrape(worker)
        done = (
            total(now, "outage_events_in_total", source="calls") == calls_before + 3
            and total(now, "outage_incidents_open", utility="heat") == open_before + 1
            and total(now, "outage_alert_deliveries_total", status="delivered") > delivered_before
            and total(now, "outage_consumer_lag") == 0
            and total(now, "outage_projection_events_behind") == 0
        )
        return now if done else None

    after = wait_for(moved, timeout=30)
    assert total(after, "outage_customers_affected", utility="heat") > 0
    assert total(after, "outage_derived_events_total") > total(
        before, "outage_derived_events_total"
    )
    assert total(after, "outage_projection_rows_written_total") > 0
    assert total(after, "outage_projection_store_up") == 1


def test_a_bad_message_on_the_topic_counts_as_dead_letter(
    broker: EmbeddedBroker, worker: Worker
) -> None:
    """Garbage written straight to `calls` moves the dead-letter counter, not calls in."""
    _, before = scrape(worker)

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait("calls", b"not json at all")
        finally:
            await producer.stop()

    asyncio.run(produce())
    dead = "outage_events_dead_letter_total"
    _, after = wait_for(
        lambda: (s := scrape(worker)) and total(s[1], dead) > total(before, dead) and s
    )
    calls = "outage_events_in_total"
    assert total(after, calls, source="calls") == total(before, calls, source="calls")


def test_ready_and_health_tell_the_backlog(worker: Worker) -> None:
    """/ready, /health and /metrics say how many events wait; an idle worker is not catching up
    (ticks pass through the correlation topic every second, so "idle" is a few at most)."""

    def settled() -> dict[str, Any] | None:
        status, body = worker.get("/ready")
        return body if status == 200 and body["backlog"] is not None else None

    body = wait_for(settled)
    assert body["catching_up"] is False and 0 <= body["backlog"] < CATCHING_UP
    assert 0 <= worker.get("/health")[1]["backlog"] < CATCHING_UP
    assert 0 <= total(scrape(worker)[1], "outage_backlog_events") < CATCHING_UP
