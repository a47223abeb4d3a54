"""`make bench` (second part): rows/s into each ClickHouse backend, and projection lag under load.

1. A simulated storm (`simulation.storm`, in rounds until it has `--events`), correlated, is
   written through the real `Sink` in batches of several sizes into chDB and into Debian's
   clickhouse-server: rows/s per backend and size.
2. Calls are produced onto the broker at a steady rate (5,000/s by default) while the same
   projection feed that runs in the worker consumes them into chDB; the lag (events behind,
   seconds behind) is sampled every second.
"""

import argparse
import asyncio
import contextlib
import logging
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.common import DATE, print_table, storm_events, write_json
from correlators.correlator import Correlator
from correlators.replay import replay
from correlators.rules import CorrelationRules
from events.codec import encode
from events.inbound import CallReported
from projections.backends import open_store
from projections.local_server import ClickHouseServer, server_binary
from projections.rows import Projector
from projections.sink import Message, Sink
from simulation.storm import Storm
from streams import logs
from streams.app import INBOUND_TOPICS
from streams.broker import EmbeddedBroker, create_topics
from streams.projection_feed import TOPICS, feed_projections, sink_lag
from topology.load import load_topology
from topology.samples import POWER_CSV

TOPOLOGY = load_topology(POWER_CSV)
KEY = b"bench"


def storm_messages(count: int) -> list[Message]:
    events = storm_events(TOPOLOGY, Storm(seed=7, faults=20, noise_calls=20), min_events=count)
    derived = replay(Correlator(TOPOLOGY, CorrelationRules.load()), events).derived
    inbound = [Message(INBOUND_TOPICS[e.type], 0, n, 0, encode(e)) for n, e in enumerate(events)]
    return inbound + [Message("incidents", 0, n, 0, encode(e)) for n, e in enumerate(derived)]


def rows_per_second(open_one: Any, messages: list[Message], batch: int) -> float:
    sink = Sink(open_store=open_one, projector=Projector(TOPOLOGY, KEY))
    try:
        sink.run_now(lambda store: None)  # open and migrate outside the timing
        started = time.perf_counter()
        rows = 0
        for at in range(0, len(messages), batch):
            rows += sink.write_now(messages[at : at + batch])
        return rows / (time.perf_counter() - started)
    finally:
        sink.close()


def backends_bench(count: int, sizes: list[int]) -> dict[str, dict[int, float]]:
    messages = storm_messages(count)
    print(f"projection input: {len(messages)} messages (inbound and incident stream)")
    figures: dict[str, dict[int, float]] = {"chdb": {}, "clickhouse-server": {}}
    for size in sizes:
        with tempfile.TemporaryDirectory() as folder:
            figures["chdb"][size] = rows_per_second(
                lambda folder=folder: open_store(None, Path(folder)), messages, size
            )
    binary = server_binary()
    if binary is None:
        print("clickhouse-server not installed (make system-deps): server figures skipped")
        return figures
    with tempfile.TemporaryDirectory() as folder:
        server = ClickHouseServer(binary, Path(folder))
        server.start()
        try:
            for size in sizes:
                url = f"clickhouse://{server.host}:{server.port}/bench_{uuid.uuid4().hex[:8]}"
                figures["clickhouse-server"][size] = rows_per_second(
                    lambda url=url: open_store(url, Path(folder)), messages, size
                )
        finally:
            server.stop()
    return figures


async def lag_under_load(rate: int, seconds: int, batch: int) -> dict[str, float]:
    premises = sorted(n.id for n in TOPOLOGY.nodes.values() if n.kind == "premise")
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as folder:
        create_topics(broker.bootstrap, dict.fromkeys(TOPICS, 4))
        sink = Sink(
            open_store=lambda: open_store(None, Path(folder)),
            projector=Projector(TOPOLOGY, KEY),
        )
        holder: dict[str, AIOKafkaConsumer | None] = {"consumer": None}
        feed = asyncio.create_task(
            feed_projections(
                sink,
                broker.bootstrap,
                "bench-projections",
                batch_size=batch,
                flush_seconds=0.5,
                on_consumer=lambda c: holder.__setitem__("consumer", c),
            )
        )
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
        await producer.start()
        samples: list[tuple[int, float]] = []
        sent = 0
        started = time.perf_counter()
        next_sample = started + 1.0
        try:
            while time.perf_counter() - started < seconds:
                # 10 ms ticks: rate / 100 calls each, which is as steady as a producer gets.
                due = int((time.perf_counter() - started) * rate)
                while sent < due:
                    call = CallReported(
                        event_id=f"load-{sent}",
                        occurred_at=datetime.now(UTC),
                        utility="power",
                        premise_id=premises[sent % len(premises)],
                        caller=f"+1555{sent:07d}",
                    )
                    await producer.send("calls", encode(call), key=call.event_id.encode())
                    sent += 1
                if time.perf_counter() >= next_sample:
                    lag = await sink_lag(sink, holder["consumer"])
                    samples.append((lag["events_behind"], lag["seconds_behind"]))
                    next_sample += 1.0
                await asyncio.sleep(0.01)
            await producer.flush()
            produced_for = time.perf_counter() - started
            drain_started = time.perf_counter()
            while (await sink_lag(sink, holder["consumer"]))["events_behind"] > 0:
                await asyncio.sleep(0.2)
            drained = time.perf_counter() - drain_started
        finally:
            await producer.stop()
            feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feed
            sink.close()
    behind = [s[0] for s in samples[2:]] or [0]  # the first seconds include the group join
    seconds_behind = [s[1] for s in samples[2:]] or [0.0]
    return {
        "rate_asked": rate,
        "rate_achieved": sent / produced_for,
        "events_behind_median": statistics.median(behind),
        "events_behind_max": max(behind),
        "seconds_behind_median": statistics.median(seconds_behind),
        "seconds_behind_max": max(seconds_behind),
        "drained_after_s": drained,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000, help="inbound events of the storm")
    parser.add_argument("--rate", type=int, default=5000, help="calls per second under load")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    logs.configure("WARNING", "console")  # figures on stdout, not the services' chatter
    # clickhouse-driver logs every refused connection while the server starts: not a figure
    logging.getLogger("clickhouse_driver").setLevel(logging.CRITICAL)

    sizes = [100, 500, 2000, 5000]
    figures = backends_bench(args.events, sizes)
    print_table(
        f"rows/s into ClickHouse through the Sink, by batch size in messages ({DATE})",
        ["backend", *(f"{s:,}" for s in sizes)],
        [
            [backend, *(per_size[s] for s in sizes)]
            for backend, per_size in figures.items()
            if per_size
        ],
    )
    lag = asyncio.run(lag_under_load(args.rate, args.seconds, batch=2000))
    print_table(
        f"projection lag under {args.rate:,} calls/s for {args.seconds} s (chDB, batches of 2,000)",
        ["figure", "value"],
        [
            ["calls/s asked", lag["rate_asked"]],
            ["calls/s achieved", lag["rate_achieved"]],
            ["events behind, median", lag["events_behind_median"]],
            ["events behind, max", lag["events_behind_max"]],
            ["seconds behind, median", lag["seconds_behind_median"]],
            ["seconds behind, max", lag["seconds_behind_max"]],
            ["drained after the load stopped, s", lag["drained_after_s"]],
        ],
    )
    write_json(args.json, {"date": DATE, "rows_per_s": figures, "lag": lag})


if __name__ == "__main__":
    main()
