"""Reading one topic whole: every partition from its beginning, no consumer group, then live.

For state every worker needs in full (the incident book, the delivered notification keys):
a group would split the partitions between workers and resume from committed offsets.
"""

import asyncio
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from streams.broker import acreate_topics


class TopicFollower:
    """`start()` seeks to the beginning; `poll()` returns what came; `caught_up()` says
    whether everything that was on the topic at start has been read; `read_to_now()` reads
    on to the topic's end as it is at the call."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        kafka_options: Mapping[str, Any] | None = None,
        replication: int = 1,
    ) -> None:
        self.bootstrap, self.topic, self.partitions = bootstrap, topic, partitions
        self.replication = replication
        # TLS/SASL keywords from streams.transport.kafka_client_options ({} on PLAINTEXT).
        self.kafka_options = dict(kafka_options or {})
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            metadata_max_age_ms=2000,
            **self.kafka_options,
        )
        self._targets: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        # On a new broker nothing has written to the topic yet: create it first, so the
        # consumer's first metadata already lists its partitions.
        await acreate_topics(
            self.bootstrap,
            {self.topic: self.partitions},
            replication_factor=self.replication,
            kafka_options=self.kafka_options,
        )
        await self.consumer.start()
        known: set[int] = set()
        while not known:
            known = self.consumer.partitions_for_topic(self.topic) or set()
            if not known:
                await asyncio.sleep(0.2)
        assigned = [TopicPartition(self.topic, p) for p in sorted(known)]
        self.consumer.assign(assigned)
        await self.consumer.seek_to_beginning(*assigned)
        self._targets = await self.consumer.end_offsets(assigned)

    async def poll(self, timeout_ms: int = 0, max_records: int = 2000) -> list[ConsumerRecord]:
        batch = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        return [record for records in batch.values() for record in records]

    async def caught_up(self) -> bool:
        return await self.has_read(self._targets)

    async def ends_now(self) -> dict[TopicPartition, int]:
        """Each partition's end offset now: what has been written to it so far."""
        return await self.consumer.end_offsets(list(self._targets))

    async def has_read(self, ends: Mapping[TopicPartition, int]) -> bool:
        return all([await self.consumer.position(tp) >= end for tp, end in ends.items()])

    async def read_to_now(self) -> list[ConsumerRecord]:
        """Every record not polled yet up to the topic's end now (and any after it that came
        in the same fetch): what other processes had written when this was called."""
        ends = await self.ends_now()
        records: list[ConsumerRecord] = []
        while not await self.has_read(ends):
            records += await self.poll(timeout_ms=200)
        return records

    async def stop(self) -> None:
        await self.consumer.stop()
