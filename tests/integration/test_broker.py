"""Integration tests for the embedded Tansu broker."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.broker import EmbeddedBroker, acreate_topics, create_topics, kafka_metadata_ok
from streams.follow import TopicFollower

pytestmark = pytest.mark.integration


def _topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_broker_answers_metadata(broker: EmbeddedBroker) -> None:
    """The session broker is running and answers a Kafka Metadata request."""
    assert broker.is_running()
    assert broker.url == f"kafka://{broker.bootstrap}"
    host, port = broker.bootstrap.split(":")
    assert kafka_metadata_ok(host, int(port))


def test_create_topics_is_idempotent(broker: EmbeddedBroker) -> None:
    """CreateTopics via the admin API creates missing topics and leaves existing ones alone."""
    name = _topic("create")
    assert create_topics(broker.bootstrap, {name: 4}) == {name: True}
    assert create_topics(broker.bootstrap, {name: 4, f"{name}-b": 2}) == {
        name: False,
        f"{name}-b": True,
    }


def test_produce_consume_round_trip(broker: EmbeddedBroker) -> None:
    """Messages produced with aiokafka come back, per partition in order, from a consumer."""
    topic = _topic("roundtrip")
    sent = {f"key-{i}".encode(): f"value-{i}".encode() for i in range(20)}

    async def scenario() -> dict[bytes, bytes]:
        await acreate_topics(broker.bootstrap, {topic: 4})
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        await producer.start()
        try:
            for key, value in sent.items():
                await producer.send_and_wait(topic, value, key=key)
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
        await consumer.start()
        received: dict[bytes, bytes] = {}
        try:
            partitions = [TopicPartition(topic, p) for p in range(4)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            async with asyncio.timeout(15):
                while len(received) < len(sent):
                    batch = await consumer.getmany(timeout_ms=500)
                    for records in batch.values():
                        for record in records:
                            assert record.key is not None and record.value is not None
                            received[record.key] = record.value
        finally:
            await consumer.stop()
        return received

    assert asyncio.run(scenario()) == sent


def test_group_consumer_round_trip(broker: EmbeddedBroker) -> None:
    """A consumer-group member gets partitions assigned and reads a produced message."""
    topic = _topic("group")

    async def scenario() -> bytes | None:
        await acreate_topics(broker.bootstrap, {topic: 2})
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=broker.bootstrap,
            group_id=_topic("grp"),
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
        )
        await consumer.start()
        try:
            producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
            await producer.start()
            try:
                await producer.send_and_wait(topic, b"hello", key=b"k")
            finally:
                await producer.stop()
            async with asyncio.timeout(30):
                record = await consumer.getone()
            return record.value
        finally:
            await consumer.stop()

    assert asyncio.run(scenario()) == b"hello"


def test_a_follower_reads_to_now_what_others_wrote_after_it_started(
    broker: EmbeddedBroker,
) -> None:
    """read_to_now returns every record written since the follower started, whatever its
    partition, without a poll of its own first (what a worker reads before it decides)."""
    topic = _topic("follow")

    async def scenario() -> list[bytes]:
        follower = TopicFollower(broker.bootstrap, topic, 4)
        await follower.start()
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        try:
            for n in range(12):
                await producer.send_and_wait(topic, f"r{n}".encode(), partition=n % 4)
            got = await asyncio.wait_for(follower.read_to_now(), 30)
            return sorted(r.value or b"" for r in got)
        finally:
            await producer.stop()
            await follower.stop()

    assert asyncio.run(scenario()) == sorted(f"r{n}".encode() for n in range(12))


def test_stop_is_idempotent_and_frees_the_port() -> None:
    """stop() terminates the process, can be called twice, and the context manager restarts."""
    broker = EmbeddedBroker()
    with broker:
        pid = broker.pid
        assert pid is not None and broker.is_running()
    assert not broker.is_running()
    broker.stop()
    host, port = broker.bootstrap.split(":")
    assert not kafka_metadata_ok(host, int(port), timeout=0.3)
