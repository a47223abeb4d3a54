"""The embedded broker's durable storage: Tansu on s3:// over s3rver behind the conditional-write
gate keeps every record across a restart of broker and S3 server, and concurrent topic
creations all take."""

import asyncio
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.broker import EmbeddedBroker, create_topics
from streams.follow import TopicFollower
from streams.s3gate import holds
from streams.s3server import LocalS3


def durable(directory: Path) -> tuple[LocalS3, EmbeddedBroker]:
    s3 = LocalS3(directory).start()
    return s3, EmbeddedBroker(storage=s3.storage, extra_env=s3.tansu_env()).start()


async def produce(bootstrap: str, n: int) -> None:
    """n records over 4 partitions, sent at once (one record per produce, as the worker does)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_batch_size=1)
    await producer.start()
    try:
        sent = [await producer.send("t", f"m{i}".encode(), partition=i % 4) for i in range(n)]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def read_all(bootstrap: str, quiet: float = 3.0) -> dict[int, list[bytes]]:
    """Every record of `t` by partition, read from the beginning until nothing comes."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    partitions = [TopicPartition("t", p) for p in range(4)]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    got: dict[int, list[bytes]] = {}
    last = time.monotonic()
    try:
        while time.monotonic() - last < quiet:
            for tp, records in (await consumer.getmany(timeout_ms=300)).items():
                got.setdefault(tp.partition, []).extend(r.value or b"" for r in records)
                last = time.monotonic()
    finally:
        await consumer.stop()
    return got


def test_every_record_survives_a_restart_of_broker_and_storage(tmp_path: Path) -> None:
    """400 records produced at once are all there, in order, after both processes restart."""
    s3, broker = durable(tmp_path / "broker")
    try:
        create_topics(broker.bootstrap, {"t": 4})
        asyncio.run(produce(broker.bootstrap, 400))
    finally:
        broker.stop()
        s3.stop()
    s3, broker = durable(tmp_path / "broker")
    try:
        got = asyncio.run(read_all(broker.bootstrap))
    finally:
        broker.stop()
        s3.stop()
    assert {p: len(values) for p, values in got.items()} == {0: 100, 1: 100, 2: 100, 3: 100}
    assert got[1][:3] == [b"m1", b"m5", b"m9"]


def test_topics_created_at_once_all_exist(tmp_path: Path) -> None:
    """Three followers creating their topics at the same moment all start (s3rver alone lost
    all but one of such concurrent creations: a follower then waited forever)."""

    async def follow(bootstrap: str, topic: str) -> bool:
        follower = TopicFollower(bootstrap, topic, 4)
        await asyncio.wait_for(follower.start(), 20)
        try:
            return await follower.caught_up()
        finally:
            await follower.stop()

    async def together(bootstrap: str) -> list[bool]:
        names = ("incidents", "notifications", "silences")
        return list(await asyncio.gather(*(follow(bootstrap, n) for n in names)))

    s3, broker = durable(tmp_path / "broker")
    try:
        assert asyncio.run(together(broker.bootstrap)) == [True, True, True]
    finally:
        broker.stop()
        s3.stop()


def test_conditions_follow_s3() -> None:
    """If-Match needs the current ETag, If-None-Match: * needs no object (S3's semantics)."""
    assert holds("If-None-Match", "*", None)
    assert not holds("If-None-Match", "*", '"a"')
    assert holds("If-Match", '"a"', '"a"')
    assert not holds("If-Match", '"a"', '"b"')
    assert not holds("If-Match", '"a"', None)
    assert holds("If-Match", '"b", "a"', '"a"')
