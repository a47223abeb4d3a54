"""A naive baseline beside the correlator: group calls by building and feeder with a periodic
SQL query, on the same simulated storms; detection time and cost side by side.

The baseline is what a reporting database gives without a correlator: every `--poll` seconds
of event time the calls of that interval are inserted into ClickHouse (each call carries its
building and feeder, looked up once, which is the kind case for SQL), then one query counts
the calls of the last `--window` minutes per building and per feeder:

    SELECT 'building' AS level, building_id AS place, count() AS calls, groupArray(call_id)
    ... GROUP BY building_id HAVING calls >= 3  UNION ALL  (the same per feeder, >= 5)

A fault counts as detected at the first poll whose flagged building or feeder lies on its
path and holds one of its calls; a flag holding none of any fault's calls is a false alarm.
The correlator's figures for the same storms come from `simulation.evaluate` (minutes from
fault start to its incident; placement exact / on path). Cost: the correlator's CPU to replay
the storm against the baseline's time in inserts and queries (and the server's CPU).
The SQL runs unchanged on chDB and on Debian's ClickHouse 18.16 (no CTE, no `IN [array]`).
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import (
    DATE,
    cpu_seconds,
    load_network,
    percentile,
    print_table,
    write_json,
)
from correlators.correlator import Correlator
from correlators.rules import CorrelationRules
from projections import sql
from projections.backends import open_store
from projections.local_server import ClickHouseServer, server_binary
from projections.store import Store
from simulation.evaluate import evaluate
from simulation.storm import Storm, Truth, simulate
from topology.model import Topology

FAULT_KINDS = ("building", "fuse", "transformer", "feeder")
TABLE = "naive_calls"
CREATE = f"""
CREATE TABLE {TABLE} (
    call_id String,
    occurred_at DateTime,
    building_id String,
    feeder_id String
) ENGINE = MergeTree ORDER BY (occurred_at, call_id)
"""
QUERY = f"""
SELECT 'building' AS level, building_id AS place, count() AS calls, groupArray(call_id) AS ids
FROM {TABLE}
WHERE occurred_at > {{since}} AND occurred_at <= {{now}} AND building_id != ''
GROUP BY building_id
HAVING calls >= {{building_threshold}}
UNION ALL
SELECT 'feeder' AS level, feeder_id AS place, count() AS calls, groupArray(call_id) AS ids
FROM {TABLE}
WHERE occurred_at > {{since}} AND occurred_at <= {{now}} AND feeder_id != ''
GROUP BY feeder_id
HAVING calls >= {{feeder_threshold}}
"""


def places(topology: Topology, node_id: str) -> tuple[str, str]:
    """The building and the feeder of a node ('' where it has none)."""
    path = topology.path(node_id)
    kinds = {topology.node(n).kind: n for n in path}
    return kinds.get("building", ""), kinds.get("feeder", "")


def naive(
    store: Store,
    topology: Topology,
    events: list[Any],
    truth: Truth,
    *,
    poll_s: int,
    window_min: int,
    building_threshold: int,
    feeder_threshold: int,
    server_pid: int | None = None,
) -> dict[str, Any]:
    """Poll the storm as it happens; when each fault was first flagged, and what it cost."""
    calls = sorted(
        (e for e in events if e.type == "call_reported"), key=lambda e: (e.occurred_at, e.event_id)
    )
    node_of = {c.event_id: c.premise_id or c.building_id or "" for c in calls}
    store.command(f"DROP TABLE IF EXISTS {TABLE}")
    store.command(CREATE)
    start = min(f.starts_at for f in truth.faults).replace(second=0, microsecond=0)
    end = max(c.occurred_at for c in calls) + timedelta(seconds=poll_s)
    fault_of = {c: f.fault_id for f in truth.faults for c in f.call_ids}
    device_of = {f.fault_id: f.device_id for f in truth.faults}
    detected: dict[str, tuple[datetime, str, str]] = {}  # fault -> (when, level, place)
    false_places: set[str] = set()
    insert_ms: list[float] = []
    query_ms: list[float] = []
    cpu_before, server_before = time.process_time(), cpu_seconds(server_pid)
    now, at = start, 0
    while now <= end:
        batch = []
        while at < len(calls) and calls[at].occurred_at <= now:
            call = calls[at]
            building, feeder = places(topology, node_of[call.event_id])
            batch.append(
                {
                    "call_id": call.event_id,
                    "occurred_at": call.occurred_at,
                    "building_id": building,
                    "feeder_id": feeder,
                }
            )
            at += 1
        started = time.perf_counter()
        store.insert(TABLE, batch)
        insert_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        flagged = store.query(
            sql.render(
                QUERY,
                since=now - timedelta(minutes=window_min),
                now=now,
                building_threshold=building_threshold,
                feeder_threshold=feeder_threshold,
            )
        )
        query_ms.append((time.perf_counter() - started) * 1000)
        # UNION ALL returns its parts in any order: buildings first, so that a fault flagged
        # at its building and its feeder in the same poll is placed alike on every backend.
        for row in sorted(flagged, key=lambda r: (r["level"] != "building", r["place"])):
            faults = {fault_of[c] for c in row["ids"] if c in fault_of}
            if not faults:
                false_places.add(row["place"])
            for fault in faults:
                placed = detected.get(fault)
                exact = row["place"] == device_of[fault]
                if placed is None or (placed[0] == now and exact):
                    detected[fault] = (now, row["level"], row["place"])
        now += timedelta(seconds=poll_s)
    cpu = time.process_time() - cpu_before + cpu_seconds(server_pid) - server_before
    scores: list[dict[str, Any]] = []
    for planted in truth.faults:
        found = detected.get(planted.fault_id)
        if found is None:
            scores.append({"fault": planted.fault_id, "minutes": None, "placement": "missed"})
            continue
        when, _, place = found
        device = planted.device_id
        placement = (
            "exact"
            if place == device
            else "above"
            if topology.covers(place, device)
            else "below"
            if topology.covers(device, place)
            else "wrong"
        )
        minutes = (when - planted.starts_at).total_seconds() / 60
        scores.append({"fault": planted.fault_id, "minutes": minutes, "placement": placement})
    return {
        "scores": scores,
        "false_alarms": len(false_places),
        "polls": len(query_ms),
        "insert_ms_total": sum(insert_ms),
        "query_ms_total": sum(query_ms),
        "query_ms_p50": percentile(query_ms, 50),
        "query_ms_p99": percentile(query_ms, 99),
        "cpu_s": cpu,
    }


def plant(topology: Topology, seed: int, faults: int) -> tuple[str, ...]:
    """One fault per feeder (so none overlaps), cycling through buildings, fuses,
    transformers and whole feeders."""
    rng = random.Random(seed)
    feeders = sorted(n.id for n in topology.nodes.values() if n.kind == "feeder")
    devices = []
    for n, feeder in enumerate(rng.sample(feeders, min(faults, len(feeders)))):
        kind = FAULT_KINDS[n % len(FAULT_KINDS)]
        if kind == "feeder":
            devices.append(feeder)
            continue
        below = sorted(
            node.id
            for node in topology.nodes.values()
            if node.kind == kind and topology.covers(feeder, node.id)
        )
        devices.append(rng.choice(below))
    return tuple(devices)


def correlator_side(topology: Topology, events: list[Any], truth: Truth) -> dict[str, Any]:
    correlator = Correlator(topology, CorrelationRules.load())
    started = time.process_time()
    score = evaluate(correlator, events, truth)
    cpu = time.process_time() - started
    return {
        "scores": [
            {"fault": f.fault_id, "minutes": f.minutes_to_detect, "placement": f.placement}
            for f in score.faults
        ],
        "false_alarms": score.false_incidents,
        "cpu_s": cpu,
    }


def summary(name: str, runs: list[dict[str, Any]], events: int) -> dict[str, Any]:
    scores = [s for r in runs for s in r["scores"]]
    minutes = sorted(s["minutes"] for s in scores if s["minutes"] is not None)
    cpu = sum(r["cpu_s"] for r in runs)
    return {
        "method": name,
        "faults": len(scores),
        "detected": len(minutes),
        "exact": sum(1 for s in scores if s["placement"] == "exact"),
        "on_path": sum(1 for s in scores if s["placement"] in ("exact", "above", "below")),
        "minutes_p50": statistics.median(minutes) if minutes else None,
        "minutes_p90": percentile(minutes, 90) if minutes else None,
        "false_alarms": sum(r["false_alarms"] for r in runs),
        "cpu_s": cpu,
        "cpu_us_per_event": cpu / events * 1e6,
        "query_ms_p50": statistics.median([r["query_ms_p50"] for r in runs])
        if "query_ms_p50" in runs[0]
        else None,
        "query_ms_p99": max(r["query_ms_p99"] for r in runs) if "query_ms_p99" in runs[0] else None,
        "polls": sum(r.get("polls", 0) for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="synthetic-10k")
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--faults", type=int, default=10)
    parser.add_argument("--polls", default="60,300", help="poll intervals, s of event time")
    parser.add_argument("--window", type=int, default=60, help="minutes counted per poll")
    parser.add_argument("--building-threshold", type=int, default=3)
    parser.add_argument("--feeder-threshold", type=int, default=5)
    parser.add_argument("--backends", default="chdb,server", help="chdb and/or server (18.16)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    # clickhouse-driver logs every refused connection while the server starts: not a figure
    logging.getLogger("clickhouse_driver").setLevel(logging.CRITICAL)

    topology = load_network(args.network)
    storms = [
        simulate(
            topology,
            Storm(
                seed=int(seed),
                devices=plant(topology, int(seed), args.faults),
                noise_calls=50,
                spread_minutes=180,
            ),
        )
        for seed in args.seeds.split(",")
    ]
    events = sum(len(e) for e, _ in storms)
    calls = sum(1 for e, _ in storms for x in e if x.type == "call_reported")
    print(
        f"{len(storms)} storms on {args.network}: {events:,} events ({calls:,} calls), "
        f"{sum(len(t.faults) for _, t in storms)} faults"
    )
    rows = [summary("correlator", [correlator_side(topology, e, t) for e, t in storms], events)]
    options = {
        "window_min": args.window,
        "building_threshold": args.building_threshold,
        "feeder_threshold": args.feeder_threshold,
    }
    backends = [b for b in args.backends.split(",") if b]
    with tempfile.TemporaryDirectory() as folder:
        for backend in backends:
            server = None
            if backend == "server":
                binary = server_binary()
                if binary is None:
                    print("clickhouse-server not installed (make system-deps): server skipped")
                    continue
                (Path(folder) / "server").mkdir()
                server = ClickHouseServer(binary, Path(folder) / "server")
                server.start()
                url: str | None = f"{server.url}/naive_{uuid.uuid4().hex[:8]}"
            else:
                url = None
            store = open_store(url, Path(folder) / "chdb")
            try:
                for poll in [int(p) for p in args.polls.split(",") if p]:
                    runs = [
                        naive(
                            store,
                            topology,
                            e,
                            t,
                            poll_s=poll,
                            server_pid=server.process.pid if server and server.process else None,
                            **options,
                        )
                        for e, t in storms
                    ]
                    label = "chDB" if backend == "chdb" else "ClickHouse 18.16"
                    rows.append(summary(f"SQL every {poll} s, {label}", runs, events))
            finally:
                store.close()
                if server is not None:
                    server.stop()
    base = rows[0]
    print_table(
        f"detection and cost, correlator against a periodic GROUP BY ({DATE}; building >= "
        f"{args.building_threshold} calls or feeder >= {args.feeder_threshold} in "
        f"{args.window} min; ratio: CPU against the correlator)",
        [
            "method",
            "detected",
            "exact",
            "on path",
            "min p50",
            "min p90",
            "false alarms",
            "query ms p50",
            "p99",
            "CPU s",
            "µs/event",
            "ratio",
        ],
        [
            [
                r["method"],
                f"{r['detected']} / {r['faults']}",
                r["exact"],
                r["on_path"],
                r["minutes_p50"],
                r["minutes_p90"],
                r["false_alarms"],
                r["query_ms_p50"],
                r["query_ms_p99"],
                r["cpu_s"],
                r["cpu_us_per_event"],
                r["cpu_s"] / base["cpu_s"],
            ]
            for r in rows
        ],
    )
    write_json(args.json, {"date": DATE, "network": args.network, "rows": rows})


if __name__ == "__main__":
    main()
