"""The embedded broker's durable storage: Tansu on s3:// over s3rver behind the conditional-write
gate keeps every record across a restart of broker and S3 server, and concurrent topic
creations all take."""

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.broker import EmbeddedBroker, create_topics
from streams.follow import TopicFollower
from streams.s3gate import Entry, Listings, holds, newest_last, parse_listing, render_listing
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


async def end_offsets(bootstrap: str) -> dict[int, int]:
    """What the broker answers to ListOffsets "latest" for each partition of `t`."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition("t", p) for p in range(4)])
    finally:
        await consumer.stop()
    return {tp.partition: offset for tp, offset in ends.items()}


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
    """400 records produced at once are all there, in order, after both processes restart, and
    the end offsets count them all (Tansu 0.6 alone answered 81 of 100: see streams.s3gate)."""
    every = {0: 100, 1: 100, 2: 100, 3: 100}
    s3, broker = durable(tmp_path / "broker")
    try:
        create_topics(broker.bootstrap, {"t": 4})
        asyncio.run(produce(broker.bootstrap, 400))
        assert asyncio.run(end_offsets(broker.bootstrap)) == every
    finally:
        broker.stop()
        s3.stop()
    s3, broker = durable(tmp_path / "broker")
    try:
        assert asyncio.run(end_offsets(broker.bootstrap)) == every
        got = asyncio.run(read_all(broker.bootstrap))
    finally:
        broker.stop()
        s3.stop()
    assert {p: len(values) for p, values in got.items()} == every
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


def test_the_highest_offset_is_the_newest_batch_in_a_listing() -> None:
    """In a partition's records listing the last batch (highest offset) is dated 1 ms after
    the newest, also when it was written before the one below it; the others keep their
    dates, and a listing of anything else is only put in key order."""
    records = "clusters/c/topics/t/partitions/0000000001/records/"

    def batches(*stamps: str) -> list[Entry]:
        return [Entry(f"{records}{i:020d}.batch", t, '"e"', 70) for i, t in enumerate(stamps)]

    same_second = batches(*["2026-11-30T14:40:15.000Z"] * 3)
    mended = newest_last(records, list(reversed(same_second)))
    assert [e.key for e in mended] == [e.key for e in same_second]
    assert [e.last_modified for e in mended] == [
        "2026-11-30T14:40:15.000Z",
        "2026-11-30T14:40:15.000Z",
        "2026-11-30T14:40:15.001Z",
    ]
    late = newest_last(records, batches("2026-11-30T14:40:16.000Z", "2026-11-30T14:40:15.000Z"))
    assert late[-1].last_modified == "2026-11-30T14:40:16.001Z"
    assert newest_last("clusters/c/topics/", same_second[::-1]) == same_second


def test_a_listing_the_gate_makes_reads_back_as_s3rver_pages_do() -> None:
    """render_listing gives one complete page that parse_listing reads back whole, keys with
    XML's special characters included; a truncated s3rver page yields its next token."""
    entries = {
        key: Entry(key, "2026-11-30T14:40:15.000Z", '"etag-&-1"', 70)
        for key in ("p/meta/1.json", "p/meta/a&b<c>.json")  # not batches: no date mended
    }
    page = render_listing("tansu", "p/meta/", entries)
    assert parse_listing(page) == (sorted(entries.values(), key=lambda e: e.key), None)
    truncated = (
        b'<ListBucketResult xmlns="http://doc.s3.amazonaws.com/2006-03-01/"><IsTruncated>true'
        b"</IsTruncated><Contents><Key>k</Key><LastModified>2026-11-30T14:40:15.000Z"
        b"</LastModified><ETag>&quot;e&quot;</ETag><Size>1</Size></Contents>"
        b"<NextContinuationToken>next-page</NextContinuationToken></ListBucketResult>"
    )
    assert parse_listing(truncated) == (
        [Entry("k", "2026-11-30T14:40:15.000Z", '"e"', 1)],
        "next-page",
    )


def test_the_gates_listings_follow_every_write() -> None:
    """A write or delete changes the listings of the prefixes it falls under, and only those;
    a delete of unknown keys makes the gate read every prefix again."""
    listings = Listings()
    listings.prefixes = {"t/0/records/": {}, "t/1/records/": {}}
    empty = listings.answer("tansu", "t/0/records/")
    at = datetime(2026, 11, 30, 14, 40, 15, 123000, tzinfo=UTC)
    listings.wrote("t/0/records/00000000000000000000.batch", '"e0"', 70, at)
    assert empty != listings.answer("tansu", "t/0/records/")
    assert parse_listing(listings.answer("tansu", "t/0/records/"))[0] == [
        Entry("t/0/records/00000000000000000000.batch", "2026-11-30T14:40:15.123Z", '"e0"', 70)
    ]
    assert listings.prefixes["t/1/records/"] == {}
    listings.deleted("t/0/records/00000000000000000000.batch")
    assert listings.answer("tansu", "t/0/records/") == empty
    listings.deleted(None)
    assert listings.prefixes == {}
