"""Saving an imported tree in the topology CSV format (`topology.load.FIELDS`)."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from topology.load import FIELDS
from topology.model import Node


def write_topology_csv(nodes: Iterable[Node], path: str | Path) -> int:
    """Write `nodes` (parents first) to `path`; returns the number of rows."""
    count = 0
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(FIELDS)
        for node in nodes:
            writer.writerow(
                [
                    node.id,
                    node.kind,
                    node.parent or "",
                    node.utility,
                    node.customers,
                    node.address or "",
                    "" if node.lat is None else f"{node.lat:.6f}",
                    "" if node.lon is None else f"{node.lon:.6f}",
                ]
            )
            count += 1
    return count
