"""What the benchmarks share: the networks they run on, storms of a wanted size, the worker
process, percentiles, and the tables they print (and the JSON they can write).

Networks by name: `power-sample` (the shipped 400-node sample), `synthetic-1k` / `-10k` /
`-100k` (generated trees, deterministic, with addresses; `synthetic-100k-one-domain` has all
its feeders under one substation), and any source the pandapower importer reads
(`lv_schutterwald`, `mv_oberrhein`, simbench codes such as `1-MVLV-urban-all-0-sw`). Storms
come from the simulator (`simulation.storm.simulate`); `storm_events` repeats one in rounds,
a day apart, until it has enough events.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from correlators.correlator import Correlator
from correlators.replay import replay
from correlators.rules import CorrelationRules
from events.inbound import IncidentResolved
from simulation.networks import network
from simulation.storm import Storm, simulate
from topology.load import topology_from_rows
from topology.model import Topology

ROOT = Path(__file__).resolve().parents[1]
DATE = "2026-11-25"

# Fan-out below a feeder of the synthetic trees: transformers, fuses, buildings, premises.
FAN_OUT = (6, 3, 4, 4)
FEEDERS_PER_SUBSTATION = 20
STREET_WORDS = (
    "Birch", "Alder", "Maple", "Linden", "Rowan", "Hazel", "Willow", "Cedar", "Aspen", "Elm",
    "Poplar", "Juniper", "Laurel", "Holly", "Spruce", "Larch", "Chestnut", "Walnut", "Cherry",
    "Orchard", "Meadow", "Quarry", "Harbour", "Station", "Mill", "Brook", "Ridge", "Heath",
    "Church", "Market", "Castle", "Bridge", "Foundry", "Tannery", "Cannery", "Kingfisher",
    "Heron", "Falcon", "Lark", "Wren",
)  # fmt: skip
STREET_KINDS = ("Street", "Road", "Avenue", "Lane", "Drive", "Court", "Place", "Way")


def synthetic_rows(
    target_nodes: int, feeders_per_substation: int = FEEDERS_PER_SUBSTATION
) -> list[dict[str, Any]]:
    """A power network of about `target_nodes` nodes, shaped like the sample one.

    Substations of up to 20 feeders (or `feeders_per_substation`); under each feeder 6
    transformers, 3 fuses each, 4 buildings per fuse and 4 premises per building (385 nodes a
    feeder). Every transformer has its own street, so every building and premise address is
    unique.
    """
    transformers, fuses, buildings, premises = FAN_OUT
    per_feeder = 1 + transformers * (1 + fuses * (1 + buildings * (1 + premises)))
    feeders = max(1, round(target_nodes / per_feeder))
    rows: list[dict[str, Any]] = []
    street = 0

    def row(
        node_id: str, kind: str, parent: str | None, customers: int = 0, address: str | None = None
    ) -> None:
        rows.append(
            {
                "id": node_id,
                "kind": kind,
                "parent": parent,
                "utility": "power",
                "customers": customers,
                "address": address,
                "lat": None,
                "lon": None,
            }
        )

    for f in range(feeders):
        s, local = divmod(f, feeders_per_substation)
        substation = f"S{s + 1}"
        if local == 0:
            row(substation, "substation", None)
        feeder = f"{substation}-F{local + 1}"
        row(feeder, "feeder", substation)
        for t in range(transformers):
            transformer = f"{feeder}-T{t + 1}"
            row(transformer, "transformer", feeder)
            name = _street(street)
            street += 1
            for u in range(fuses):
                fuse = f"{transformer}-U{u + 1}"
                row(fuse, "fuse", transformer)
                for b in range(buildings):
                    building = f"{fuse}-B{b + 1}"
                    address = f"{2 + 2 * (u * buildings + b)} {name}"
                    row(building, "building", fuse, 0, address)
                    for p in range(premises):
                        row(
                            f"{building}-P{p + 1}",
                            "premise",
                            building,
                            1,
                            f"{address}, flat {p + 1}",
                        )
    return rows


def _street(n: int) -> str:
    word = STREET_WORDS[n % len(STREET_WORDS)]
    kind = STREET_KINDS[(n // len(STREET_WORDS)) % len(STREET_KINDS)]
    district = n // (len(STREET_WORDS) * len(STREET_KINDS))
    return f"{word} {kind}" + (f" {district + 1}" if district else "")


# name -> (nodes, feeders per substation); the one-domain tree is the worst case for a domain
SYNTHETIC = {
    "synthetic-1k": (1_000, FEEDERS_PER_SUBSTATION),
    "synthetic-10k": (10_000, FEEDERS_PER_SUBSTATION),
    "synthetic-100k": (100_000, FEEDERS_PER_SUBSTATION),
    "synthetic-100k-one-domain": (100_000, 10**6),
}


def network_rows(name: str) -> list[dict[str, Any]]:
    """The rows of a named network (see the module docstring)."""
    if name in SYNTHETIC:
        return synthetic_rows(*SYNTHETIC[name])
    # The suite's networks: the samples, heat-district and anything the pandapower importer reads.
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore")  # pandapower and simbench warn about numba, pandas
        topology = network(name)
    return [n.model_dump() for n in topology.nodes.values()]


def load_network(name: str) -> Topology:
    return topology_from_rows(network_rows(name))


def write_network_csv(name: str, path: Path) -> Path:
    """The network as a topology CSV (for a worker's OUTAGE_TOPOLOGY)."""
    from topology.importers.write import write_topology_csv
    from topology.model import Node

    write_topology_csv([Node(**row) for row in network_rows(name)], path)
    return path


def storm_events(
    topology: Topology,
    storm: Storm,
    *,
    min_events: int = 0,
    max_rounds: int = 10_000,
    resolve: bool = True,
) -> list[Any]:
    """Inbound events of `storm`, repeated with the next seeds a day apart until at least
    `min_events`; ids of later rounds get an `r<n>-` prefix so none repeats.

    After each round a shift lead resolves what is still open (an `incident_resolved` an hour
    after its last event; `resolve=False` leaves them open), as happens after a real storm.
    Without it an incident that no SCADA closes (a roll-up to a substation) stays open, stale,
    for days and takes every later round's calls, so the domain snapshot grows each round.
    """
    events: list[Any] = []
    for n in range(max_rounds):
        round_storm = dataclasses.replace(
            storm, seed=storm.seed + n, start=storm.start + timedelta(days=n)
        )
        drawn, _ = simulate(topology, round_storm)
        if not drawn:
            break
        if n:
            drawn = [e.model_copy(update={"event_id": f"r{n}-{e.event_id}"}) for e in drawn]
        events += drawn + (resolutions(topology, drawn) if resolve else [])
        if len(events) >= min_events:
            break
    return events


def resolutions(topology: Topology, events: Sequence[Any]) -> list[IncidentResolved]:
    """`incident_resolved` for every incident `events` leave open, an hour after the last."""
    result = replay(Correlator(topology, CorrelationRules.load()), events)
    at = max(e.occurred_at for e in events) + timedelta(hours=1)
    return [
        IncidentResolved(
            event_id=f"resolve-{view.incident_id}",
            occurred_at=at,
            incident_id=view.incident_id,
            by="bench.lead",
        )
        for view in sorted(result.book.active(), key=lambda v: v.incident_id)
    ]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank; nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain table on stdout: numbers right-aligned with thousands separators."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print(
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w)
            for i, (h, w) in enumerate(zip(headers, widths, strict=True))
        )
    )
    for row in cells:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    sys.stdout.flush()


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}" if abs(value) >= 0.1 or value == 0 else f"{value:.3f}"
    return str(value)


def write_json(path: Path | None, figures: Any) -> None:
    if path is not None:
        path.write_text(json.dumps(figures, indent=2, default=str) + "\n")
        print(f"\nfigures written to {path}")


def start_worker(
    bootstrap: str, workdir: Path, topology_files: Sequence[Path], **env: str
) -> tuple[subprocess.Popen[bytes], str]:
    """`outage run` against `bootstrap`; returns the process and its base URL once ready."""
    from streams.broker import free_port

    port = free_port()
    environment = {
        **os.environ,
        "OUTAGE_BROKER": bootstrap,
        "OUTAGE_WEB_PORT": str(port),
        "OUTAGE_DATA_DIR": str(workdir),
        "OUTAGE_TOPOLOGY": json.dumps([str(p) for p in topology_files]),
        "OUTAGE_TICK_SECONDS": "3600",  # storm times are in the past: keep wall-clock ticks out
        "OUTAGE_LOG_LEVEL": "WARNING",
        **env,
    }
    log = (workdir / "worker.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "run"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    log.close()  # the child has its own copy of the descriptor
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (workdir / "worker.log").read_text(errors="replace")[-4000:]
            raise SystemExit(f"worker exited with {process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(base + "/ready", timeout=2) as response:
                if response.status == 200:
                    return process, base
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit("worker did not become ready in 120 s")


@dataclasses.dataclass(frozen=True)
class Worker:
    process: subprocess.Popen[bytes]
    base: str  # http://127.0.0.1:PORT
    key: str  # an API key with every role

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@contextlib.contextmanager
def worker(
    bootstrap: str, workdir: Path, topology_files: Sequence[Path], **env: str
) -> Iterator[Worker]:
    """A worker for the duration of the block."""
    from access.roles import ROLES
    from access.store import AccessStore

    key = AccessStore(workdir / "access.sqlite3").create_key("bench", frozenset(ROLES))[1]
    process, base = start_worker(bootstrap, workdir, topology_files, **env)
    try:
        yield Worker(process, base, key)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cpu_seconds(pid: int | None) -> float:
    """User and system CPU time of a process so far (Linux /proc), 0 when unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
