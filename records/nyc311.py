"""NYC 311 heating complaints as hotline calls on a heat network of one building per address.

Reads both column schemes the city has used: `complaint_type` / `created_date` (2024 export,
type `HEAT/HOT WATER`) and `Complaint Type` / `Created Date` (2013, type `HEATING`, dates as
`12/25/2013 11:59:08 PM`). Public records carry no caller, so every call is its own reporter.
The 2013 heat rows are stamped at midnight: they arrive as one burst.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from events import CallReported
from topology import Topology, topology_from_rows

HEAT_TYPES = {"HEAT/HOT WATER", "HEATING"}


@dataclass
class Complaints:
    topology: Topology
    calls: list[CallReported]
    address_of: dict[str, str]  # call id -> address as written in the record
    skipped: int  # heating rows without an address: nothing to place them on


def read_nyc311(paths: Iterable[str | Path]) -> Complaints:
    """Heating complaints of one or more 311 exports, in time order."""
    rows: list[_Row] = []
    for path in paths:
        with Path(path).open(newline="", encoding="utf-8-sig") as handle:
            rows += [_row(r) for r in csv.DictReader(handle)]
    heat = [r for r in rows if r.type in HEAT_TYPES]
    placed = [r for r in heat if r.address and r.created is not None]
    placed.sort(key=lambda r: (r.created, r.key))
    addresses = sorted({r.address for r in placed})
    topology = topology_from_rows(
        {
            "id": f"NYC-B{i:04d}",
            "kind": "building",
            "parent": None,
            "utility": "heat",
            "customers": 1,
            "address": address,
        }
        for i, address in enumerate(addresses)
    )
    calls = [
        CallReported(
            event_id=r.key,
            occurred_at=r.created,
            utility="heat",
            address=r.address,
            scope="whole_building" if r.descriptor == "ENTIRE BUILDING" else "unknown",
            symptom=r.descriptor.lower() or "no_heat",
        )
        for r in placed
    ]
    return Complaints(
        topology=topology,
        calls=calls,
        address_of={r.key: r.address for r in placed},
        skipped=len(heat) - len(placed),
    )


@dataclass(frozen=True)
class _Row:
    key: str
    type: str
    descriptor: str
    address: str
    created: datetime | None


def _row(row: dict[str, str]) -> _Row:
    def pick(*names: str) -> str:
        return next((row[n].strip() for n in names if row.get(n)), "")

    created = pick("created_date", "Created Date")
    return _Row(
        key=pick("unique_key", "Unique Key"),
        type=pick("complaint_type", "Complaint Type"),
        descriptor=pick("descriptor", "Descriptor"),
        address=pick("incident_address", "Incident Address"),
        created=_when(created) if created else None,
    )


def _when(text: str) -> datetime:
    """ISO (2024 export) or `MM/DD/YYYY hh:mm:ss AM` (2013); no zone given: taken as UTC."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        when = datetime.strptime(text, "%m/%d/%Y %I:%M:%S %p")
    return when if when.tzinfo else when.replace(tzinfo=UTC)
