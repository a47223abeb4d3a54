"""A rebuild from the broker takes every record of a batch produced at once, though Tansu 0.6
reports a partition's end as its last batch's base offset + 1 (the edge now batches)."""

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from events.codec import encode
from events.inbound import CallReported
from projections.backends import open_store
from projections.rows import Projector
from projections.sink import Sink
from streams.broker import EmbeddedBroker
from streams.rebuild import rebuild_from_broker
from topology.load import load_topology
from topology.samples import HEAT_CSV

pytestmark = pytest.mark.integration

CALLS = 200


async def produce_in_batches(bootstrap: str) -> None:
    """Every call sent before any is awaited: the producer puts them in a few batches."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=50)
    await producer.start()
    try:
        at = datetime.now(UTC) - timedelta(minutes=5)
        futures = [
            await producer.send(
                "calls",
                encode(
                    CallReported(
                        event_id=f"batched-{n}",
                        occurred_at=at,
                        utility="heat",
                        premise_id=f"P-HSUB1-B1-{n % 12 + 1:02}",
                    )
                ),
                partition=0,
            )
            for n in range(CALLS)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def test_a_rebuild_reads_past_the_reported_end_of_a_batched_partition(tmp_path: Path) -> None:
    """200 calls produced in batches on one partition all reach the rebuilt tables."""
    with EmbeddedBroker() as broker:
        asyncio.run(produce_in_batches(broker.bootstrap))
        sink = Sink(
            open_store=lambda: open_store(None, tmp_path / "chdb"),
            projector=Projector(load_topology(HEAT_CSV), b"test-key"),
        )
        try:
            written = rebuild_from_broker(sink, broker.bootstrap, {})
            rows = sink.run_now(lambda store: store.query("SELECT count() AS n FROM calls FINAL"))
        finally:
            sink.close()  # one chDB directory per process: later tests open their own
    assert rows[0]["n"] == CALLS and written >= CALLS
