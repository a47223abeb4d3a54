"""The networks the quality suite runs on, built in memory.

- `heat_district`: a synthetic district heating network the size of a town quarter (one heat
  source, 12 heat substations, 6 to 14 buildings each of 6 to 40 flats), seeded, because no
  public heating network model exists to import;
- `lv_schutterwald`: the real low-voltage grid of Schutterwald (pandapower), 14 transformers and
  1,506 households, through `topology.importers.pandapower`;
- the two small samples of `topology/samples`, kept so old figures stay comparable.
"""

from __future__ import annotations

import random
from functools import cache
from typing import Any

from topology.load import load_topology, topology_from_rows
from topology.model import Topology
from topology.samples import HEAT_CSV, POWER_CSV


def heat_district(seed: int = 11) -> Topology:
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = [_row("DH1", "heat_source", None, 0, "1 Plant Road")]
    for s in range(1, 13):
        sub = f"DH1-S{s:02d}"
        rows.append(_row(sub, "heat_substation", "DH1", 0, None))
        for b in range(1, rng.randint(6, 14) + 1):
            building = f"{sub}-B{b:02d}"
            address = f"{2 * b} Ring {s} Street"
            rows.append(_row(building, "building", sub, 0, address))
            rows += [
                _row(f"{building}-F{f:02d}", "premise", building, 1, f"{address}, flat {f}")
                for f in range(1, rng.randint(6, 40) + 1)
            ]
    return topology_from_rows(rows)


def _row(
    node_id: str, kind: str, parent: str | None, customers: int, address: str | None
) -> dict[str, Any]:
    return {
        "id": node_id,
        "kind": kind,
        "parent": parent,
        "utility": "heat",
        "customers": customers,
        "address": address,
    }


@cache
def network(name: str) -> Topology:
    """A suite network by name: heat-district, lv_schutterwald, heat-sample, power-sample."""
    if name == "heat-district":
        return heat_district()
    if name == "heat-sample":
        return load_topology(HEAT_CSV)
    if name == "power-sample":
        return load_topology(POWER_CSV)
    from topology.importers.pandapower import import_pandapower

    nodes = import_pandapower([name]).nodes
    return topology_from_rows(node.model_dump() for node in nodes)
