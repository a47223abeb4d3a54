"""`outage topology import FORMAT SOURCE... --out FILE`: real network models to topology CSV.

Each format's reader lives in `topology.importers`; this module picks it, shows a progress bar,
writes the CSV, reads it back through `topology.load` (so the file is known to load), and prints
what came out: nodes per kind, correlation domains, and devices no infeed reaches.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from tqdm import tqdm

from topology.importers.radial import ImportedNetwork, Progress
from topology.importers.write import write_topology_csv
from topology.load import load_topology

# format -> (module, function); imported on use, so pandapower loads only when asked for
FORMATS = {
    "pandapower": ("topology.importers.pandapower", "import_pandapower"),
    "opendss": ("topology.importers.opendss", "import_opendss"),
    "heating": ("topology.importers.heating", "import_heating"),
}


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "import",
        help="convert a network model to the topology CSV",
        description=(
            "pandapower: a network name (mv_oberrhein, lv_schutterwald, cigre_mv, cigre_lv, "
            "a simbench code such as 1-LV-rural1--0-sw) or a pandapower JSON file; "
            "opendss: the master .dss file; heating: nodes.csv and pipes.csv, or one .geojson "
            "(docs/NETWORK_FORMATS.md)."
        ),
    )
    parser.add_argument("format", choices=sorted(FORMATS))
    parser.add_argument("sources", nargs="+", metavar="SOURCE")
    parser.add_argument("--out", type=Path, required=True, metavar="topology.csv")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run_import(args: argparse.Namespace) -> int:
    module_name, function_name = FORMATS[args.format]
    reader = getattr(importlib.import_module(module_name), function_name)
    bar = tqdm(desc=f"importing {args.format}", unit="point", disable=args.quiet, file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    callback: Progress = progress
    try:
        network: ImportedNetwork = reader(args.sources, progress=callback)
    finally:
        bar.close()
    rows = write_topology_csv(network.nodes, args.out)
    topology = load_topology(args.out)  # what we wrote must load
    roots = topology.roots()
    print(f"wrote {rows} nodes to {args.out}: {len(roots)} correlation domain(s)")
    for kind, count in topology.kinds().items():
        print(f"  {kind:16} {count}")
    print(f"  customers        {sum(topology.customers_under(root) for root in roots)}")
    for note in network.notes:
        print(f"note: {note}")
    if network.unfed:
        shown = ", ".join(network.unfed[:10]) + (" ..." if len(network.unfed) > 10 else "")
        print(f"warning: {len(network.unfed)} device(s) no infeed reaches, left out: {shown}")
    return 0
