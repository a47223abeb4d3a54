"""The agent lookup under concurrent load on loopback, against the same server's `/health`.

One broker and one worker on a generated 100k-node network (75k premises with addresses); a
storm leaves incidents open, then an aiohttp client keeps N requests in flight (1, 8, 32) for
a few seconds per kind of request:

    ready     GET /ready                           the cheapest answer the server gives
    health    GET /health                          the ceiling the ratios use: no lookup, but
                                                   it counts (sorts) the active incidents
    premise   GET /v1/outages?premise=P-...        id lookup, walk up the path
    address   GET /v1/outages?address=...          normalised exact address
    fuzzy     GET /v1/outages?address=(a typo)     fuzzy match among the same house numbers
    unknown   GET /v1/outages?address=(no match)   404 with type-ahead suggestions

The client shares the 2 cores with the worker (and the idle broker), so absolute rates are
the machine's, and the ratio to `/health` at the same concurrency is what carries over.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaProducer

from bench.common import (
    DATE,
    load_network,
    percentile,
    print_table,
    storm_events,
    worker,
    write_json,
    write_network_csv,
)
from events.codec import encode
from simulation.storm import Storm
from streams import logs
from streams.app import INBOUND_TOPICS
from streams.broker import EmbeddedBroker
from topology.model import Topology, UnresolvedLocation

KINDS = ("ready", "health", "premise", "address", "fuzzy", "unknown")


def typo(address: str, rng: random.Random) -> str:
    """Swap two letters inside the street name (never a number)."""
    words = address.split(" ")
    spots = [i for i, w in enumerate(words) if w.isalpha() and len(w) > 3]
    i = rng.choice(spots)
    word = words[i]
    k = rng.randrange(1, len(word) - 2)
    words[i] = word[:k] + word[k + 1] + word[k] + word[k + 2 :]
    return " ".join(words)


def queries(topology: Topology, count: int, seed: int = 5) -> dict[str, list[str]]:
    """Paths for each kind of request; fuzzy ones checked to resolve as `address_fuzzy`."""
    rng = random.Random(seed)
    premises = sorted(n.id for n in topology.nodes.values() if n.kind == "premise")
    chosen = rng.sample(premises, min(count, len(premises)))
    fuzzy: list[str] = []
    for premise in chosen:
        address = topology.node(premise).address
        if address is None or len(fuzzy) >= count // 4:
            continue
        wrong = typo(address, rng)
        try:
            if topology.resolve(address=wrong).how == "address_fuzzy":
                fuzzy.append(wrong)
        except UnresolvedLocation:
            continue

    def outages(**params: str) -> str:
        return "/v1/outages?" + urllib.parse.urlencode(params)

    return {
        "ready": ["/ready"],
        "health": ["/health"],
        "premise": [outages(premise=p) for p in chosen],
        "address": [outages(address=a) for p in chosen if (a := topology.node(p).address)],
        "fuzzy": [outages(address=a) for a in fuzzy],
        "unknown": [
            outages(address=f"{rng.randrange(900, 999)} Nowhere Boulevard {n}") for n in range(50)
        ],
    }


async def hammer(
    base: str, headers: dict[str, str], paths: list[str], concurrency: int, seconds: float
) -> dict[str, Any]:
    """Keep `concurrency` requests in flight for `seconds`; latency of each, in ms."""
    timings: list[float] = []
    statuses: dict[int, int] = {}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        for path in paths[:concurrency]:  # warm: connections open, indexes built
            async with session.get(base + path) as response:
                await response.read()
        deadline = time.perf_counter() + seconds

        async def client(n: int) -> None:
            k = n
            while time.perf_counter() < deadline:
                path = paths[k % len(paths)]
                k += concurrency
                started = time.perf_counter()
                async with session.get(base + path) as response:
                    await response.read()
                    statuses[response.status] = statuses.get(response.status, 0) + 1
                timings.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(client(n) for n in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "requests": len(timings),
        "per_s": len(timings) / elapsed,
        "p50_ms": percentile(timings, 50),
        "p99_ms": percentile(timings, 99),
        "statuses": statuses,
    }


async def load_storm(bootstrap: str, base: str, events: list[Any]) -> dict[str, Any]:
    """Produce the storm and wait until the worker has correlated all of it."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    for event in events:
        await producer.send(INBOUND_TOPICS[event.type], encode(event), key=event.event_id.encode())
    await producer.stop()
    calls = sum(1 for e in events if e.type == "call_reported")
    async with aiohttp.ClientSession() as session:
        last, still = None, 0
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            async with session.get(base + "/health") as response:
                health = await response.json()
            counters = health["counters"]
            state = (counters.get("in_calls", 0), counters.get("derived", 0))
            still = still + 1 if state == last and state[0] >= calls else 0
            if still >= 4:  # two seconds without a new derived event
                return dict(health)
            last = state
            await asyncio.sleep(0.5)
    raise SystemExit("the worker did not finish the storm in 300 s")


async def measure(
    base: str,
    headers: dict[str, str],
    paths: dict[str, list[str]],
    levels: list[int],
    seconds: float,
) -> list[dict[str, Any]]:
    results = []
    for concurrency in levels:
        for kind in KINDS:
            result = await hammer(base, headers, paths[kind], concurrency, seconds)
            results.append({"kind": kind, **result})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="synthetic-100k")
    parser.add_argument("--concurrency", default="1,8,32", help="requests in flight")
    parser.add_argument("--seconds", type=float, default=3, help="per kind and concurrency")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    logs.configure("WARNING", "console")

    topology = load_network(args.network)
    paths = queries(topology, 2000)
    storm = Storm(seed=3, faults=200, noise_calls=100, spread_minutes=60, restore_after_minutes=600)
    events = storm_events(topology, storm, resolve=False)
    levels = [int(c) for c in args.concurrency.split(",") if c]
    with (
        tempfile.TemporaryDirectory() as folder,
        EmbeddedBroker() as broker,
    ):
        network_csv = write_network_csv(args.network, Path(folder) / "network.csv")
        with worker(broker.bootstrap, Path(folder), [network_csv]) as running:
            health = asyncio.run(load_storm(broker.bootstrap, running.base, events))
            print(
                f"{args.network}: {len(topology):,} nodes; storm of {len(events):,} events left "
                f"{health['incidents_active']} incidents active"
            )
            results = asyncio.run(
                measure(running.base, running.headers, paths, levels, args.seconds)
            )
    ceiling = {r["concurrency"]: r for r in results if r["kind"] == "health"}
    print_table(
        f"agent lookup on loopback, one worker ({DATE}; ratio: against /health at the same "
        "concurrency)",
        [
            "request",
            "in flight",
            "requests",
            "per s",
            "p50 ms",
            "p99 ms",
            "rate ratio",
            "p50 ratio",
        ],
        [
            [
                r["kind"],
                r["concurrency"],
                r["requests"],
                r["per_s"],
                r["p50_ms"],
                r["p99_ms"],
                r["per_s"] / ceiling[r["concurrency"]]["per_s"],
                r["p50_ms"] / ceiling[r["concurrency"]]["p50_ms"],
            ]
            for r in results
        ],
    )
    write_json(
        args.json,
        {"date": DATE, "network": args.network, "incidents_active": health["incidents_active"]}
        | {"results": results},
    )


if __name__ == "__main__":
    main()
