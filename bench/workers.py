"""Scale-out: events/s end to end with 1, 2 and 3 workers sharing the partitions.

One storm from the simulator on a generated network of 40 substations of one feeder each (40
correlation domains over the four partitions): a fault on every feeder within 8 hours, SCADA
trips and closings, 40 % of the customers calling, noise calls; no operator actions, whose
incidents would not exist yet when an unpaced offer delivers them. It is produced unpaced onto
the inbound topics, as `bench.end_to_end` does for its "max" run. Every run has a fresh Tansu
and N fresh `outage run` workers in one consumer group (projections off: chDB is one directory
per process, and the projection feed would measure chDB, not the scale-out). The offer starts
once every worker is ready and the group has settled. Events/s: the answered calls' share of
the events over the time to the last call's first outcome on `incidents`. Ratios are against
one worker measured in the same run; CPU seconds per process say what bounds it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    DATE,
    print_table,
    storm_events,
    synthetic_rows,
    worker,
    write_json,
)
from bench.end_to_end import PARTITIONS, offer, seconds
from simulation.storm import Storm
from streams import logs
from streams.broker import EmbeddedBroker
from topology.importers.write import write_topology_csv
from topology.load import topology_from_rows
from topology.model import Node

SUBSTATIONS = 40  # domains S1..S40, spread over the four partitions by key hash
SETTLE_SECONDS = 10.0  # after the last worker is ready: the group's last rebalance ends


def one_run(
    network_csv: Path, events: list[Any], workers: int, drain_timeout: float
) -> dict[str, Any]:
    """A fresh broker and `workers` workers; the events offered unpaced."""
    with (
        EmbeddedBroker() as broker,
        tempfile.TemporaryDirectory() as folder,
        contextlib.ExitStack() as stack,
    ):
        running = []
        for n in range(workers):
            workdir = Path(folder) / f"w{n}"
            workdir.mkdir()
            running.append(
                stack.enter_context(
                    worker(
                        broker.bootstrap,
                        workdir,
                        [network_csv],
                        OUTAGE_PARTITIONS=str(PARTITIONS),
                        OUTAGE_PROJECTIONS="false",
                        OUTAGE_HASH_KEY="bench-workers",
                    )
                )
            )
        time.sleep(SETTLE_SECONDS)
        pids: dict[str, int | None] = {"broker": broker.pid}
        pids.update({f"worker{n}": w.process.pid for n, w in enumerate(running)})
        return asyncio.run(
            offer(
                broker.bootstrap,
                events,
                None,
                quiet_timeout=60,  # a rebalance on a loaded machine pauses for tens of s
                drain_timeout=drain_timeout,
                pids=pids,
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000, help="events offered per run")
    parser.add_argument("--workers", default="1,2,3", help="worker counts, comma-separated")
    parser.add_argument("--drain", type=float, default=180, help="longest wait for outcomes, s")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    logs.configure("WARNING", "console")  # figures on stdout, not the services' chatter

    rows = synthetic_rows(SUBSTATIONS * 385, feeders_per_substation=1)
    topology = topology_from_rows(rows)
    storm = Storm(
        seed=7, faults=SUBSTATIONS, fault_kinds=("feeder",), noise_calls=40, spread_minutes=480
    )
    events = storm_events(topology, storm, min_events=args.events, resolve=False)[: args.events]
    calls = sum(1 for e in events if e.type == "call_reported")
    print(
        f"storm: {len(events):,} inbound events ({calls:,} calls) on {len(topology):,} nodes, "
        f"{len(topology.roots())} domains, {PARTITIONS} partitions"
    )
    counts = [int(n) for n in args.workers.split(",") if n]
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        network_csv = Path(folder) / "network.csv"
        write_topology_csv([Node(**row) for row in rows], network_csv)
        for n in counts:
            run = one_run(network_csv, events, n, args.drain)
            workers_cpu = sum(v for k, v in run["cpu_s"].items() if k.startswith("worker"))
            runs.append({"workers": n, **run, "cpu_s_workers": workers_cpu})
    base = next((r["events_per_s"] for r in runs if r["workers"] == 1), runs[0]["events_per_s"])
    print_table(
        f"end to end through Tansu + N workers, {PARTITIONS} partitions, projections off "
        f"({DATE}; latency: call offered to its first outcome on `incidents`)",
        [
            "workers",
            "events",
            "answered",
            "events/s",
            "ratio",
            "p50 s",
            "p99 s",
            "CPU s workers",
            "broker",
            "bench",
            "wall s",
        ],
        [
            [
                r["workers"],
                r["events"],
                f"{r['calls_answered']:,} / {r['calls']:,}",
                r["events_per_s"],
                r["events_per_s"] / base if base else 0.0,
                seconds(r["latency_p50_ms"], r["waited_s"]),
                seconds(r["latency_p99_ms"], r["waited_s"]),
                r["cpu_s_workers"],
                r["cpu_s"]["broker"],
                r["cpu_s"]["bench"],
                r["waited_s"],
            ]
            for r in runs
        ],
    )
    write_json(
        args.json,
        {"date": DATE, "events": len(events), "partitions": PARTITIONS, "runs": runs},
    )


if __name__ == "__main__":
    main()
