"""Feeding the projection sink: a consumer group of its own, committed only after a write.

Runs as a task of the faust app. It does not use a faust agent's `take_events` because that
acknowledges a batch when the agent is cancelled, so a worker stopped while ClickHouse is
down would commit offsets of rows never written. Here the offsets move only after
`Sink.write` has returned, and the rows are idempotent, so a crash anywhere repeats at most
one batch and the query results stay exact.
"""

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError

from projections.sink import Message, Sink
from streams.tasks import keep_running

if TYPE_CHECKING:
    from streams.app import Service

log = structlog.get_logger("outage.projections")

TOPICS = ("calls", "history", "scada", "planned-works", "incidents")


async def feed_projections(
    sink: Sink,
    bootstrap: str,
    group_id: str,
    *,
    batch_size: int,
    flush_seconds: float,
    on_consumer: Callable[[AIOKafkaConsumer | None], None] = lambda _: None,
    kafka_options: Mapping[str, Any] | None = None,
    group_options: Mapping[str, int] | None = None,
) -> None:
    """Consume the inbound topics and the incident stream into the sink, forever.

    `kafka_options`: TLS/SASL keywords (`streams.transport.kafka_client_options`);
    `group_options`: the group's session and heartbeat (`Service.group_options`).
    """
    consumer = AIOKafkaConsumer(
        *TOPICS,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        metadata_max_age_ms=5000,
        # Joins on Tansu take half the session timeout; a long store outage must not make the
        # group evict us while `write` waits for the store.
        **(group_options or {"session_timeout_ms": 4000, "heartbeat_interval_ms": 1000}),
        max_poll_interval_ms=24 * 3600 * 1000,
        **(kafka_options or {}),
    )
    await consumer.start()
    on_consumer(consumer)
    try:
        while True:
            batch = await consumer.getmany(
                timeout_ms=int(flush_seconds * 1000), max_records=batch_size
            )
            messages = [
                Message(tp.topic, tp.partition, r.offset, r.timestamp, r.value or b"")
                for tp, records in batch.items()
                for r in records
            ]
            if not messages:
                continue
            await sink.write(messages)  # returns only once the rows are in the store
            try:
                await consumer.commit()
            except CommitFailedError:
                # The group moved on (rebalance): the batch will come again and collapse.
                log.warning("projections.commit_failed", messages=len(messages))
    finally:
        on_consumer(None)
        await consumer.stop()


async def projection_lag(service: "Service") -> dict[str, Any]:
    """The lag of this worker's sink (see `sink_lag`)."""
    if service.sink is None:
        return {"enabled": False}
    return {"enabled": True, **await sink_lag(service.sink, service.projection_consumer)}


async def sink_lag(sink: Sink, consumer: AIOKafkaConsumer | None) -> dict[str, Any]:
    """Events on the topics not yet in the store, and how old the newest written one is."""
    ends: dict[tuple[str, int], int] = {}
    if consumer is not None and consumer.assignment():
        assigned: set[TopicPartition] = consumer.assignment()
        # Ask the broker: the consumer's own highwater is only as fresh as its last fetch,
        # and it does not fetch while the sink waits for the store.
        for tp, end in (await consumer.end_offsets(list(assigned))).items():
            ends[(tp.topic, tp.partition)] = end
            if (tp.topic, tp.partition) not in sink.flushed:
                committed = await consumer.committed(tp)
                sink.flushed.setdefault((tp.topic, tp.partition), (committed or 0) - 1)
    return {"connected": consumer is not None, **sink.lag(ends)}


async def keep_feeding(service: "Service") -> None:
    """The worker's projection feed: migrations first, then `feed_projections`, for good."""
    sink = service.sink
    assert sink is not None
    settings = service.settings

    def attach(consumer: AIOKafkaConsumer | None) -> None:
        service.projection_consumer = consumer

    try:  # migrations are applied on start; if the store is down, the first write retries
        await sink.run(lambda store: None)
    except Exception as error:
        log.warning("store.unavailable_at_start", error=str(error))
    await keep_running(
        "projections",
        lambda: feed_projections(
            sink,
            service.bootstrap,
            f"{settings.app_id}-projections",
            batch_size=settings.sink_batch_size,
            flush_seconds=settings.sink_flush_seconds,
            on_consumer=attach,
            kafka_options=service.kafka_options,
            group_options=service.group_options(),
        ),
    )
