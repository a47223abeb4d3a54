"""`outage projections rebuild`: empty the tables and project the event store again.

The incident stream is the event store: replaying it (and the inbound topics, for the call
archive) through the same projector gives the same query results as the live projection.
Sources are the broker's topics from the beginning up to their end at the start of the
rebuild, or exported JSONL files (`outage replay --out`, and the inbound events file).
"""

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from tqdm import tqdm

from projections.sink import TABLE_ORDER, Message, Sink
from projections.store import Store
from streams.projection_feed import TOPICS

BATCH = 5000


def empty_tables(sink: Sink) -> None:
    def truncate(store: Store) -> None:
        for table in TABLE_ORDER:
            store.command(f"TRUNCATE TABLE {table}")

    sink.run_now(truncate)
    sink.projector.incidents.clear()


def rebuild_from_files(sink: Sink, inbound: Sequence[Path], derived: Sequence[Path]) -> int:
    """Project JSONL files: inbound events, then incident-stream events. Returns rows written."""
    lines = [(path, "calls") for path in inbound] + [(path, "incidents") for path in derived]
    total = sum(1 for path, _ in lines for line in path.open() if line.strip())
    empty_tables(sink)
    written = 0
    with tqdm(total=total, unit="event", desc="rebuild") as bar:
        for batch in _file_batches(lines):
            written += sink.write_now(batch)
            bar.update(len(batch))
    return written


def _file_batches(sources: list[tuple[Path, str]]) -> Iterator[list[Message]]:
    batch: list[Message] = []
    for path, topic in sources:
        with path.open("rb") as lines:
            for number, line in enumerate(lines):
                if line.strip():
                    # Inbound files mix calls, signals and works: the projector decodes any.
                    batch.append(Message(topic, 0, number, 0, line.strip()))
                if len(batch) >= BATCH:
                    yield batch
                    batch = []
    if batch:
        yield batch


def rebuild_from_broker(
    sink: Sink, bootstrap: str, kafka_options: Mapping[str, Any] | None = None
) -> int:
    """Project every topic from its beginning to its end as it is now. Returns rows written.

    `kafka_options`: TLS/SASL keywords; by default those of the OUTAGE_KAFKA_* environment,
    the same the service uses (the CLI passes only the bootstrap servers).
    """
    if kafka_options is None:  # imported here: streams.transport pulls in faust
        from streams.settings import Settings
        from streams.transport import kafka_client_options

        kafka_options = kafka_client_options(Settings())
    return asyncio.run(_from_broker(sink, bootstrap, kafka_options))


async def _from_broker(sink: Sink, bootstrap: str, kafka_options: Mapping[str, Any]) -> int:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, **kafka_options
    )
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [
            TopicPartition(topic, p)
            for topic in TOPICS
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            raise ValueError(f"none of the topics {', '.join(TOPICS)} exists on {bootstrap}")
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp, end in ends.items() if end > 0}
        empty_tables(sink)
        written = 0
        # Tansu 0.6 reports a partition's end as its last batch's base offset + 1, so a
        # batch produced at once would be cut short there: a partition is done only once a
        # fetch past the reported end comes back empty (records written since are taken too;
        # the rows are idempotent).
        at_reported_end: set[TopicPartition] = set()
        with tqdm(total=sum(ends.values()), unit="event", desc="rebuild") as bar:
            while remaining:
                wait = 200 if remaining <= at_reported_end else 1000
                batch = await consumer.getmany(*remaining, timeout_ms=wait, max_records=BATCH)
                messages = [
                    Message(tp.topic, tp.partition, r.offset, r.timestamp, r.value or b"")
                    for tp, records in batch.items()
                    for r in records
                ]
                whole = len(messages) < BATCH  # a full batch may have left partitions out
                for tp in list(remaining):
                    if tp in at_reported_end and whole and not batch.get(tp):
                        remaining.discard(tp)
                    elif await consumer.position(tp) >= ends[tp]:
                        at_reported_end.add(tp)
                if messages:
                    written += await asyncio.to_thread(sink.write_now, messages)
                    bar.update(len(messages))
        return written
    finally:
        await consumer.stop()
