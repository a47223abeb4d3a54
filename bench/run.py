"""`make bench`: correlation throughput in-process, through broker + worker, and the raw broker.

Everything is measured in the same run on the same machine, so the ratios mean something:
the worker's events/s against the broker's own produce and consume rates, and against the
correlator alone. Figures go to stdout; docs/BENCHMARKS.md records them with this command.
"""

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.storm import storm
from correlators.correlator import Correlator
from correlators.replay import replay
from correlators.routing import route
from correlators.rules import CorrelationRules
from correlators.state import DomainState
from events.codec import encode
from streams import logs
from streams.broker import EmbeddedBroker, create_topics, free_port
from topology.load import load_topology
from topology.samples import POWER_CSV

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 4


def in_process(correlator: Correlator, events: list[Any]) -> dict[str, float]:
    started = time.perf_counter()
    result = replay(correlator, events)
    pure = time.perf_counter() - started
    # What the worker does besides: save the domain state after every event.
    states: dict[str, DomainState] = {}
    started = time.perf_counter()
    for event in events:
        for item in route(correlator.topology, event):
            state = states.setdefault(item.domain, correlator.initial_state(item.domain))
            correlator.handle(state, item)
            state.model_dump_json(exclude={"seen"})  # as streams.app.save_state does
    persisted = time.perf_counter() - started
    return {
        "events_per_s": len(events) / pure,
        "events_per_s_with_state_save": len(events) / persisted,
        "derived": len(result.derived),
        "incidents": len(result.book.incidents),
    }


async def raw_broker(bootstrap: str, payloads: list[bytes]) -> dict[str, float]:
    topic = "bench-raw"
    await asyncio.to_thread(create_topics, bootstrap, {topic: PARTITIONS})
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    started = time.perf_counter()
    for n, payload in enumerate(payloads):
        await producer.send(topic, payload, key=str(n).encode())
    await producer.flush()
    produce = time.perf_counter() - started
    await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(parts)
    await consumer.seek_to_beginning(*parts)
    seen = 0
    started = time.perf_counter()
    while seen < len(payloads):
        batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
        seen += sum(len(records) for records in batch.values())
    consume = time.perf_counter() - started
    await consumer.stop()
    return {"produce_per_s": len(payloads) / produce, "consume_per_s": len(payloads) / consume}


async def through_worker(bootstrap: str, events: list[Any]) -> dict[str, float]:
    """Produce the storm onto the inbound topics; time until every call has its outcome.

    Every call ends in exactly one of call_attached, call_pending or individual_fault when it
    is processed, so counting the distinct call ids on the incident stream proves nothing was
    lost, whatever order the partitions delivered the storm in.
    """
    outcome_types = {"call_attached", "call_pending", "individual_fault"}
    calls = {e.event_id for e in events if e.type == "call_reported"}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    parts = [TopicPartition("incidents", p) for p in range(PARTITIONS)]
    consumer.assign(parts)
    await consumer.seek_to_beginning(*parts)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    started = time.perf_counter()
    for event in events:
        topic = "calls" if event.type == "call_reported" else "scada"
        await producer.send(topic, encode(event), key=event.event_id.encode())
    await producer.flush()
    await producer.stop()
    accounted: set[str] = set()
    derived = 0
    last = time.perf_counter()
    while accounted != calls and time.perf_counter() - last < 20:
        batch = await consumer.getmany(timeout_ms=500, max_records=5000)
        for records in batch.values():
            for record in records:
                body = json.loads(record.value)
                derived += 1
                if body["type"] in outcome_types:
                    accounted.add(body["call_id"])
                last = time.perf_counter()
    await consumer.stop()
    elapsed = last - started
    return {
        "events_per_s": len(events) / elapsed,
        "seconds": elapsed,
        "derived": derived,
        "calls": len(calls),
        "calls_accounted": len(accounted & calls),
    }


def lookup_latency(base: str, premises: list[str], n: int = 400) -> dict[str, float]:
    rng = random.Random(1)
    timings = []
    for _ in range(n):
        url = f"{base}/v1/outages?premise={rng.choice(premises)}"
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=10) as response:
            response.read()
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return {
        "p50_ms": statistics.median(timings),
        "p99_ms": timings[int(len(timings) * 0.99) - 1],
    }


def start_worker(bootstrap: str, workdir: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "OUTAGE_BROKER": bootstrap,
        "OUTAGE_WEB_PORT": str(port),
        "OUTAGE_DATA_DIR": workdir,
        "OUTAGE_TICK_SECONDS": "3600",  # storm times are in the past: keep wall-clock ticks out
        "OUTAGE_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(Path(workdir) / "worker.log", "wb"),  # noqa: SIM115  # closed with the process
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/ready", timeout=2) as response:
                if response.status == 200:
                    return process, base
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit("worker did not become ready in 90 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waves", type=int, default=300, help="storm waves (about 16 events each)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    logs.configure("WARNING", "console")  # figures on stdout, not the services' chatter

    topology = load_topology(POWER_CSV)
    correlator = Correlator(topology, CorrelationRules.load())
    events = storm(topology, waves=args.waves)
    print(
        f"storm: {len(events)} inbound events on the sample power network ({len(topology)} nodes)"
    )

    figures: dict[str, Any] = {"events": len(events)}
    figures["in_process"] = in_process(correlator, events)
    payloads = [encode(e) for e in events]
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as workdir:
        figures["raw_broker"] = asyncio.run(raw_broker(broker.bootstrap, payloads))
        process, base = start_worker(broker.bootstrap, workdir)
        try:
            figures["worker"] = asyncio.run(through_worker(broker.bootstrap, events))
            premises = [n.id for n in topology.nodes.values() if n.kind == "premise"]
            figures["lookup"] = lookup_latency(base, premises)
        finally:
            process.terminate()
            process.wait(timeout=30)

    inp, raw, worker = figures["in_process"], figures["raw_broker"], figures["worker"]
    print(f"{'correlator in-process':38} {inp['events_per_s']:>10,.0f} events/s")
    print(
        f"{'  with state saved per event':38} "
        f"{inp['events_per_s_with_state_save']:>10,.0f} events/s"
    )
    print(f"{'broker raw produce':38} {raw['produce_per_s']:>10,.0f} msg/s")
    print(f"{'broker raw consume':38} {raw['consume_per_s']:>10,.0f} msg/s")
    print(f"{'broker + worker, end to end':38} {worker['events_per_s']:>10,.0f} events/s")
    print(
        f"{'  calls with an outcome / calls sent':38} "
        f"{worker['calls_accounted']:>10} / {worker['calls']}"
    )
    print(
        f"{'agent lookup over HTTP, p50 / p99':38} "
        f"{figures['lookup']['p50_ms']:>7.2f} / {figures['lookup']['p99_ms']:.2f} ms"
    )
    ratios = {
        "worker / raw produce": worker["events_per_s"] / raw["produce_per_s"],
        "worker / raw consume": worker["events_per_s"] / raw["consume_per_s"],
        "worker / in-process correlator": worker["events_per_s"] / inp["events_per_s"],
    }
    figures["ratios"] = ratios
    for name, value in ratios.items():
        print(f"{'ratio ' + name:38} {value:>10.3f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
