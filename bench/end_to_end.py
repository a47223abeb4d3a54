"""End to end through the broker and one worker: events/s, and the latency of each call from
the moment it is offered to the moment its first outcome is on the `incidents` topic.

A storm from the simulator (repeated in rounds until it is long enough, each round closed by
a shift lead's `incident_resolved`) is produced onto the inbound topics open-loop: at a fixed
rate (1,000 and 5,000 events/s by default, for a bounded time) and unpaced ("max"). Each call
is stamped with the time it was due to be sent, so a producer or broker that falls behind
shows as latency rather than hiding it. A consumer of `incidents` in the same process notes
the first `call_attached`, `call_pending` or `individual_fault` of each call.

Every run has its own broker and worker (`outage run` with its defaults: projections into
chDB, the Tansu workaround of one record per produce request); three more unpaced runs say what
those cost (`OUTAGE_TANSU_WORKAROUNDS=false`, `OUTAGE_PROJECTIONS=false`) and what the durable
broker costs (Tansu on s3:// over s3rver, as `OUTAGE_BROKER_STORAGE=durable`). A run waits at
most `--drain` seconds for outcomes: a call still without one counts as slower than that. The
ceilings come from the same run: Tansu's own produce and consume rates (batched, and one
record per request as the worker produces) and the correlator in-process over the same events.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.common import (
    DATE,
    cpu_seconds,
    load_network,
    percentile,
    print_table,
    storm_events,
    worker,
    write_json,
    write_network_csv,
)
from bench.correlator import correlate
from correlators.correlator import Correlator
from correlators.rules import CorrelationRules
from events.codec import encode
from simulation.storm import Storm
from streams import logs
from streams.app import INBOUND_TOPICS
from streams.broker import EmbeddedBroker, create_topics
from streams.s3server import LocalS3

PARTITIONS = 4
OUTCOMES = (b'"call_attached"', b'"call_pending"', b'"individual_fault"')


async def raw_broker(bootstrap: str, payloads: list[bytes]) -> dict[str, float]:
    """Tansu alone: produce batched, produce one record per request, consume."""
    figures: dict[str, float] = {}
    for label, options in (
        ("produce_per_s", {"linger_ms": 5}),
        ("produce_one_per_request_per_s", {"max_batch_size": 1}),
    ):
        topic = f"bench-{label}"
        await asyncio.to_thread(create_topics, bootstrap, {topic: PARTITIONS})
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **options)
        await producer.start()
        fifth = max(1, len(payloads) // 5)
        started = time.perf_counter()
        marks = []  # (records, seconds) as the topic grows: Tansu's memory storage slows down
        for n, payload in enumerate(payloads):
            await producer.send(topic, payload, key=str(n).encode())
            if n % fifth == 0:
                marks.append((n, time.perf_counter()))
        await producer.flush()
        ended = time.perf_counter()
        figures[label] = len(payloads) / (ended - started)
        figures[label.replace("_per_s", "_first_fifth_per_s")] = fifth / (marks[1][1] - marks[0][1])
        figures[label.replace("_per_s", "_last_fifth_per_s")] = (len(payloads) - marks[-1][0]) / (
            ended - marks[-1][1]
        )
        await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    parts = [TopicPartition("bench-produce_per_s", p) for p in range(PARTITIONS)]
    consumer.assign(parts)
    await consumer.seek_to_beginning(*parts)
    seen = 0
    started = time.perf_counter()
    while seen < len(payloads):
        batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
        seen += sum(len(records) for records in batch.values())
    figures["consume_per_s"] = len(payloads) / (time.perf_counter() - started)
    await consumer.stop()
    return figures


@dataclass
class Outcomes:
    """When each call's first outcome arrived (perf_counter)."""

    arrived: dict[str, float] = field(default_factory=dict)
    records: int = 0


async def follow_outcomes(bootstrap: str, outcomes: Outcomes, stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=20
    )
    await consumer.start()
    try:
        parts = [TopicPartition("incidents", p) for p in range(PARTITIONS)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100, max_records=5000)
            now = time.perf_counter()
            for records in batch.values():
                outcomes.records += len(records)
                for record in records:
                    value = record.value or b""
                    if any(kind in value for kind in OUTCOMES):
                        call_id = json.loads(value)["call_id"]
                        outcomes.arrived.setdefault(call_id, now)
    finally:
        await consumer.stop()


async def offer(
    bootstrap: str,
    events: list[Any],
    rate: float | None,
    *,
    quiet_timeout: float,
    drain_timeout: float,
    pids: dict[str, int | None],
) -> dict[str, Any]:
    """Produce `events` at `rate` per second (None: as fast as possible); wait for outcomes."""
    calls = {e.event_id for e in events if e.type == "call_reported"}
    due: dict[str, float] = {}
    outcomes = Outcomes()
    stop = asyncio.Event()
    follower = asyncio.create_task(follow_outcomes(bootstrap, outcomes, stop))
    await asyncio.sleep(1.0)  # the follower is assigned and polling before the first call
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2)
    await producer.start()
    payloads = [(INBOUND_TOPICS[e.type], e.event_id, encode(e)) for e in events]
    pids = {**pids, "bench": os.getpid()}  # the producer and the consumer of this benchmark
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.perf_counter()
    sent = 0
    while sent < len(payloads):
        now = time.perf_counter()
        upto = (
            len(payloads) if rate is None else min(len(payloads), int((now - started) * rate) + 1)
        )
        while sent < upto:
            topic, event_id, payload = payloads[sent]
            if event_id in calls:
                due[event_id] = time.perf_counter() if rate is None else started + sent / rate
            await producer.send(topic, payload, key=event_id.encode())
            sent += 1
        if rate is not None:
            await asyncio.sleep(0.002)
    await producer.flush()
    offered_for = time.perf_counter() - started
    answered_when_offered = len(outcomes.arrived)
    await producer.stop()
    last_progress, last_count = time.perf_counter(), -1
    deadline = time.perf_counter() + drain_timeout
    while len(outcomes.arrived) < len(calls) and time.perf_counter() < deadline:
        if len(outcomes.arrived) != last_count:
            last_progress, last_count = time.perf_counter(), len(outcomes.arrived)
        elif time.perf_counter() - last_progress > quiet_timeout:
            break  # nothing new for a while: what is missing is not coming
        await asyncio.sleep(0.05)
    cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    stop.set()
    await follower
    # A call with no outcome by the end of the wait counts as slower than any that came, so the
    # percentiles say "more than the wait" instead of leaving the slowest calls out.
    latencies = [
        (outcomes.arrived[c] - due[c]) * 1000 if c in outcomes.arrived else math.inf for c in calls
    ]
    finished = max(outcomes.arrived.values(), default=started)
    elapsed = finished - started
    answered = len(outcomes.arrived.keys() & calls)
    return {
        "rate_asked": rate,
        "events": len(events),
        "calls": len(calls),
        "rate_offered": len(events) / offered_for,
        "seconds_offered": offered_for,
        "calls_answered": answered,
        "backlog_when_offered": len(calls) - answered_when_offered,
        "seconds_to_last_outcome": elapsed,
        "waited_s": time.perf_counter() - started,
        # events/s: while calls go unanswered, the answered ones' events over the time taken
        "events_per_s": len(events) * answered / len(calls) / elapsed if elapsed > 0 else 0.0,
        "latency_p50_ms": finite(percentile(latencies, 50)),
        "latency_p99_ms": finite(percentile(latencies, 99)),
        "latency_max_ms": finite(max(latencies, default=0.0)),
        "cpu_s": cpu,
    }


def finite(value: float) -> float | None:
    """None for "no outcome within the wait" (JSON has no infinity)."""
    return None if math.isinf(value) else value


def one_run(
    network_csv: Path,
    events: list[Any],
    rate: float | None,
    drain_timeout: float,
    durable: bool = False,
    **env: str,
) -> dict[str, Any]:
    """A fresh broker (on s3rver when `durable`, as OUTAGE_BROKER_STORAGE=durable runs it) and
    worker, the events offered at `rate`."""
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        storage: dict[str, Any] = {}
        if durable:
            s3 = stack.enter_context(LocalS3(folder / "broker"))
            storage = {"storage": s3.storage, "extra_env": s3.tansu_env()}
        broker = stack.enter_context(EmbeddedBroker(**storage))
        running = stack.enter_context(worker(broker.bootstrap, folder, [network_csv], **env))
        return asyncio.run(
            offer(
                broker.bootstrap,
                events,
                rate,
                quiet_timeout=20,
                drain_timeout=drain_timeout,
                pids={"broker": broker.pid, "worker": running.process.pid},
            )
        )


def seconds(ms: float | None, waited: float) -> str:
    return f"> {waited:.0f}" if ms is None else f"{ms / 1000:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="power-sample")
    parser.add_argument("--rates", default="1000,5000", help="offered events/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=5, help="offered load per paced run")
    parser.add_argument("--max-events", type=int, default=5_000, help="events of the max runs")
    parser.add_argument("--drain", type=float, default=60, help="longest wait for outcomes, s")
    parser.add_argument(
        "--no-variants",
        action="store_true",
        help="skip the max runs without the Tansu workaround and without projections",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    logs.configure("WARNING", "console")  # figures on stdout, not the services' chatter

    rates = [float(r) for r in args.rates.split(",") if r]
    wanted = max([int(r * args.seconds) for r in rates] + [args.max_events])
    topology = load_network(args.network)
    events = storm_events(topology, Storm(seed=7, faults=20, noise_calls=20), min_events=wanted)
    calls = sum(1 for e in events if e.type == "call_reported")
    print(
        f"storm: {len(events):,} inbound events ({calls:,} calls) on {args.network} "
        f"({len(topology):,} nodes)"
    )
    figures: dict[str, Any] = {"date": DATE, "network": args.network, "events": len(events)}
    correlator = Correlator(topology, CorrelationRules.load())
    figures["in_process"] = {"events_per_s": correlate(correlator, events).events_per_s}
    plans: list[tuple[str, float | None, int, bool, dict[str, str]]] = [
        (f"{rate:,.0f}/s", rate, int(rate * args.seconds), False, {}) for rate in rates
    ]
    plans.append(("max", None, args.max_events, False, {}))
    if not args.no_variants:  # what the workaround, the projections, durable storage cost
        batched = {"OUTAGE_TANSU_WORKAROUNDS": "false"}
        plans.append(("max, batched", None, args.max_events, False, batched))
        no_projections = {"OUTAGE_PROJECTIONS": "false"}
        plans.append(("max, no projections", None, args.max_events, False, no_projections))
        plans.append(("max, durable broker", None, args.max_events, True, {}))
    with tempfile.TemporaryDirectory() as folder:
        network_csv = write_network_csv(args.network, Path(folder) / "network.csv")
        with EmbeddedBroker() as broker:
            figures["raw_broker"] = asyncio.run(
                raw_broker(broker.bootstrap, [encode(e) for e in events[:wanted]])
            )
        runs = []
        for label, rate, count, durable, env in plans:
            run = one_run(network_csv, events[:count], rate, args.drain, durable, **env)
            runs.append({"run": label, **run})
    figures["runs"] = runs
    raw, inp = figures["raw_broker"], figures["in_process"]
    print_table(
        f"end to end through Tansu + one worker on {args.network} ({DATE}; latency: call due "
        "to its first outcome on `incidents`)",
        [
            "offered",
            "events",
            "offered/s",
            "answered",
            "backlog at end",
            "events/s",
            "p50 s",
            "p99 s",
            "max s",
            "CPU s worker",
            "broker",
            "bench",
            "wall s",
        ],
        [
            [
                r["run"],
                r["events"],
                r["rate_offered"],
                f"{r['calls_answered']:,} / {r['calls']:,}",
                r["backlog_when_offered"],
                r["events_per_s"],
                seconds(r["latency_p50_ms"], r["waited_s"]),
                seconds(r["latency_p99_ms"], r["waited_s"]),
                seconds(r["latency_max_ms"], r["waited_s"]),
                r["cpu_s"]["worker"],
                r["cpu_s"]["broker"],
                r["cpu_s"]["bench"],
                r["waited_s"],
            ]
            for r in runs
        ],
    )
    peak = next(r["events_per_s"] for r in runs if r["run"] == "max")
    ceilings = [
        ("Tansu produce, batched (linger 5 ms)", raw["produce_per_s"]),
        ("Tansu produce, one record per request", raw["produce_one_per_request_per_s"]),
        (
            "  the same, first fifth of the records",
            raw["produce_one_per_request_first_fifth_per_s"],
        ),
        (
            "  the same, last fifth (topic longer)",
            raw["produce_one_per_request_last_fifth_per_s"],
        ),
        ("Tansu consume", raw["consume_per_s"]),
        ("correlator in-process, same events", inp["events_per_s"]),
    ]
    print_table(
        "ceilings measured in the same run (ratio: worker at max / ceiling)",
        ["what", "per s", "ratio"],
        [[name, value, peak / value] for name, value in ceilings],
    )
    figures["ratios"] = {name: peak / value for name, value in ceilings}
    write_json(args.json, figures)


if __name__ == "__main__":
    main()
