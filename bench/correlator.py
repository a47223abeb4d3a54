"""The correlator in-process: events/s by network size and by open incidents, and memory.

No broker, no worker: route and `Correlator.handle` over a simulated storm, as the `correlate`
agent runs them; "saving state" adds what the worker does after every event, serialising the
domain snapshot (`streams.app.save_state` writes it to the changelog), timed on a sample of
200 events.

1. By network size: the sample power network, generated trees of 1k, 10k and 100k nodes
   (`bench.common.synthetic_rows`) and real ones through the pandapower importer
   (lv_schutterwald, mv_oberrhein, simbench 1-MVLV-urban-all-0-sw). The same storm shape on
   each (20 faults, 20 noise calls), in rounds a day apart until there are enough events,
   each round's incidents resolved by a shift lead. Ratios against the sample network.
2. By open incidents: 10, 100 and 1,000 faults at fuses and transformers planted within
   30 minutes on a 100k-node tree under one substation (one domain), none restored. Memory of
   the correlation state by tracemalloc (rebuilt from its JSON, as a restarted worker does),
   the snapshot's size, and events/s. Ratios against 10 faults.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    DATE,
    load_network,
    network_rows,
    print_table,
    storm_events,
    write_json,
)
from correlators.correlator import Correlator
from correlators.routing import route
from correlators.rules import CorrelationRules
from correlators.state import DomainState
from events.derived import IncidentOpened
from simulation.storm import Storm
from topology.load import topology_from_rows
from topology.model import Topology

NETWORKS = (
    "power-sample",
    "synthetic-1k",
    "lv_schutterwald",
    "synthetic-10k",
    "mv_oberrhein",
    "1-MVLV-urban-all-0-sw",
    "synthetic-100k",
)
# Kinds a fault may sit at, on every network (the simulator skips kinds a network lacks).
FAULT_KINDS = (
    "building",
    "fuse",
    "switch",
    "lateral",
    "transformer",
    "feeder",
    "cable_cabinet",
    "heat_substation",
    "optical_node",
)
MIB = 1024 * 1024


@dataclass
class Run:
    """One pass of the correlator over a storm."""

    events: int
    seconds: float  # route and handle, snapshot timings left out
    states: dict[str, DomainState]
    snapshot_seconds: float  # mean time to serialise the domain snapshot after an event
    snapshot_bytes: float  # its mean size

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    @property
    def events_per_s_saving(self) -> float:
        """As the worker runs it: a snapshot serialised after every event."""
        return self.events / (self.seconds + self.events * self.snapshot_seconds)


def correlate(correlator: Correlator, events: list[Any], samples: int = 200) -> Run:
    """Correlate `events` from a fresh state, timing the snapshot the worker saves after each
    event (`streams.app.save_state`: the state without the dedupe ids) on `samples` of them."""
    states: dict[str, DomainState] = {}
    incident_domains: dict[str, str] = {}  # for operator actions, as the worker's book knows
    topology = correlator.topology
    every = max(1, len(events) // samples)
    dumps: list[tuple[float, int]] = []
    left_out = 0.0
    started = time.perf_counter()
    for n, event in enumerate(events):
        for item in route(topology, event, incident_domains):
            state = states.get(item.domain)
            if state is None:
                state = states[item.domain] = correlator.initial_state(item.domain)
            for derived in correlator.handle(state, item):
                if isinstance(derived, IncidentOpened):
                    incident_domains[derived.incident_id] = derived.domain
            if n % every == 0:
                dumped = time.perf_counter()
                size = len(state.model_dump_json(exclude={"seen"}))
                took = time.perf_counter() - dumped
                dumps.append((took, size))
                left_out += took
    seconds = time.perf_counter() - started - left_out
    return Run(
        events=len(events),
        seconds=seconds,
        states=states,
        snapshot_seconds=statistics.fmean(t for t, _ in dumps) if dumps else 0.0,
        snapshot_bytes=statistics.fmean(b for _, b in dumps) if dumps else 0.0,
    )


def best_of(correlator: Correlator, events: list[Any], repeat: int) -> Run:
    return min((correlate(correlator, events) for _ in range(repeat)), key=lambda r: r.seconds)


def state_memory(states: dict[str, DomainState]) -> int:
    """Bytes the correlation states hold, dedupe ids included: measured (tracemalloc) while
    rebuilding them from JSON, as a restarted worker recovers them from its tables."""
    dumped = [state.model_dump_json() for state in states.values()]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        rebuilt = [DomainState.model_validate_json(text) for text in dumped]
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    del rebuilt
    return held


def topology_memory(rows: list[dict[str, Any]]) -> tuple[Topology, float, int]:
    """The topology built from rows, seconds to build it, bytes it holds (tracemalloc)."""
    started = time.perf_counter()
    topology_from_rows(rows)
    seconds = time.perf_counter() - started
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        topology = topology_from_rows(rows)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return topology, seconds, held


def by_network(
    names: list[str], rules: CorrelationRules, min_events: int, faults: int, repeat: int = 2
) -> list[dict[str, Any]]:
    results = []
    for name in names:
        try:
            rows = network_rows(name)
        except Exception as error:  # an importer missing or refusing a model: say so, go on
            print(f"{name}: skipped ({type(error).__name__}: {error})")
            continue
        topology, build_s, held = topology_memory(rows)
        storm = Storm(seed=7, faults=faults, noise_calls=20, fault_kinds=FAULT_KINDS)
        events = storm_events(topology, storm, min_events=min_events)
        correlator = Correlator(topology, rules)
        run = best_of(correlator, events, repeat)
        kinds = topology.kinds()
        results.append(
            {
                "network": name,
                "nodes": len(topology),
                "domains": len(topology.roots()),
                "premises": kinds.get("premise", 0),
                "kinds": kinds,
                "build_s": build_s,
                "topology_mib": held / MIB,
                "events": len(events),
                "events_per_s": run.events_per_s,
                "events_per_s_saving": run.events_per_s_saving,
                "snapshot_bytes_mean": run.snapshot_bytes,
            }
        )
    return results


def by_open_incidents(
    network: str, rules: CorrelationRules, counts: list[int]
) -> list[dict[str, Any]]:
    """Faults planted at once in one domain, all left open (no restoration for 10 hours)."""
    topology = load_network(network)
    correlator = Correlator(topology, rules)
    results = []
    for count in counts:
        storm = Storm(
            seed=11,
            faults=count,
            fault_kinds=("fuse", "transformer"),
            spread_minutes=30,
            restore_after_minutes=600,
            noise_calls=count,
        )
        events = storm_events(topology, storm, resolve=False)
        run = correlate(correlator, events)
        states = run.states
        held = state_memory(states)
        open_by_domain = [len(s.incidents) for s in states.values()]
        snapshots = [len(s.model_dump_json(exclude={"seen"})) for s in states.values()]
        results.append(
            {
                "faults": count,
                "events": len(events),
                "open_incidents": sum(open_by_domain),
                "open_in_largest_domain": max(open_by_domain, default=0),
                "pending_calls": sum(len(s.pending) for s in states.values()),
                "events_per_s": run.events_per_s,
                "events_per_s_saving": run.events_per_s_saving,
                "snapshot_bytes_mean": run.snapshot_bytes,
                "snapshot_bytes_largest_end": max(snapshots, default=0),
                "state_mib": held / MIB,
                "state_bytes_per_open_incident": held / max(1, sum(open_by_domain)),
            }
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default=",".join(NETWORKS), help="comma-separated names")
    parser.add_argument("--min-events", type=int, default=5000, help="events per network")
    parser.add_argument("--faults", type=int, default=20, help="faults per storm round")
    parser.add_argument("--open", default="10,100,1000", help="faults planted at once")
    parser.add_argument("--open-network", default="synthetic-100k-one-domain")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    rules = CorrelationRules.load()

    sizes = by_network(args.networks.split(","), rules, args.min_events, args.faults)
    base = next((r for r in sizes if r["network"] == "power-sample"), sizes[0] if sizes else None)
    print_table(
        f"correlator in-process by network size ({DATE}; "
        f"ratio: events/s against {base and base['network']})",
        [
            "network",
            "nodes",
            "domains",
            "premises",
            "build s",
            "topology MiB",
            "events",
            "events/s",
            "saving state",
            "snapshot B",
            "ratio",
        ],
        [
            [
                r["network"],
                r["nodes"],
                r["domains"],
                r["premises"],
                r["build_s"],
                r["topology_mib"],
                r["events"],
                r["events_per_s"],
                r["events_per_s_saving"],
                r["snapshot_bytes_mean"],
                r["events_per_s"] / base["events_per_s"] if base else None,
            ]
            for r in sizes
        ],
    )
    counts = [int(c) for c in args.open.split(",") if c]
    loaded = by_open_incidents(args.open_network, rules, counts)
    print_table(
        f"correlator in-process by open incidents on {args.open_network} "
        f"(ratio: events/s against {counts[0] if counts else '-'} faults)",
        [
            "faults",
            "events",
            "open",
            "open, largest domain",
            "pending",
            "events/s",
            "saving state",
            "snapshot B mean",
            "snapshot B end",
            "state MiB",
            "B / incident",
            "ratio",
        ],
        [
            [
                r["faults"],
                r["events"],
                r["open_incidents"],
                r["open_in_largest_domain"],
                r["pending_calls"],
                r["events_per_s"],
                r["events_per_s_saving"],
                r["snapshot_bytes_mean"],
                r["snapshot_bytes_largest_end"],
                r["state_mib"],
                r["state_bytes_per_open_incident"],
                r["events_per_s"] / loaded[0]["events_per_s"],
            ]
            for r in loaded
        ],
    )
    write_json(args.json, {"date": DATE, "by_network": sizes, "by_open_incidents": loaded})


if __name__ == "__main__":
    main()
