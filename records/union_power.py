"""The Union Power Cooperative outage log (2018, hurricanes Florence and Michael) as reports.

The log lists outages the utility recorded: start time, substation, feeder, customers affected,
cause and, in two of the three exports, coordinates. It says nothing of restoration. From it we
build the network the records imply, substation -> feeder -> place (one `building` node per
distinct coordinate on a feeder, or one per feeder for the export without coordinates; customers
= the most that place ever lost), and turn each record into an inbound event:

- a record with a feeder is one report (a call without a caller) at its place;
- a record without a feeder (whole-substation supply loss, thousands of customers) is what
  SCADA sees: a breaker trip at the substation.

The exports overlap by days; a record seen twice (same start, substation, feeder and customers)
is one outage. The question the replay answers: how does the service fold a storm's hundreds of
records into feeder and substation incidents? A record is not a call (it stands for up to
thousands of customers), so the replay uses its own rules (`union_power.toml`): counts of
records per place, feeder and substation, no shares of customers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from events import CallReported, ScadaSignal
from topology import Topology, topology_from_rows


@dataclass(frozen=True)
class OutageRecord:
    starts_at: datetime
    substation: str
    feeder: str
    customers: int
    cause: str
    lon: float | None
    lat: float | None


@dataclass
class OutageLog:
    topology: Topology
    records: list[OutageRecord]
    events: list[CallReported | ScadaSignal]
    duplicates: int


def read_union_power(paths: Iterable[str | Path]) -> OutageLog:
    """Every record of the given exports, de-duplicated, as a network and events in time order."""
    # The same outage in two exports: same start, place and customers. The exports word the
    # cause differently and only some carry coordinates: keep the record that has them.
    kept: dict[tuple[datetime, str, str, int], OutageRecord] = {}
    total = 0
    for path in paths:
        for record in _records(Path(path)):
            total += 1
            key = (record.starts_at, record.substation, record.feeder, record.customers)
            if key not in kept or (kept[key].lat is None and record.lat is not None):
                kept[key] = record
    records = list(kept.values())
    records.sort(key=lambda r: (r.starts_at, r.substation, r.feeder, r.customers, r.cause))
    topology = _network(records)
    events = [_event(i, r) for i, r in enumerate(records)]
    return OutageLog(
        topology=topology, records=records, events=events, duplicates=total - len(records)
    )


def substation_id(record: OutageRecord) -> str:
    return "UP-" + _slug(record.substation)


def feeder_id(record: OutageRecord) -> str:
    return f"{substation_id(record)}/{_slug(record.feeder)}"


RULES = Path(__file__).with_name("union_power.toml")


def place_id(record: OutageRecord) -> str | None:
    """The building a record's report lands on, or None for a substation-wide loss."""
    if not record.feeder:
        return None
    if record.lat is None or record.lon is None:
        return f"{feeder_id(record)}@unplaced"
    return f"{feeder_id(record)}@{record.lat:.5f},{record.lon:.5f}"


def _records(path: Path) -> Iterable[OutageRecord]:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        items: list[dict[str, Any]]
        if isinstance(body, dict):  # GeoJSON FeatureCollection
            items = [
                {**f["properties"], "_xy": (f.get("geometry") or {}).get("coordinates")}
                for f in body["features"]
            ]
        else:
            items = list(body)
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not an outage export ({error!r})") from None
    for number, item in enumerate(items, start=1):
        try:
            yield _record(item)
        except (ValueError, KeyError, TypeError, IndexError) as error:
            raise ValueError(f"{path}: record {number}: {error!r}") from None


def _record(item: dict[str, Any]) -> OutageRecord:
    xy = item.get("_xy")
    start = datetime.fromisoformat(item.get("StartTime") or item["OutageStartTime"])
    return OutageRecord(
        # The exports give local time without a zone; kept as given, labelled UTC.
        starts_at=start if start.tzinfo else start.replace(tzinfo=UTC),
        substation=str(item["Substation"]).strip(),
        feeder=str(item.get("Feeder") or "").strip(),
        customers=int(item.get("CustomersAffected") or 0),
        cause=str(item.get("Cause") or "").strip(),
        lon=float(xy[0]) if xy else None,
        lat=float(xy[1]) if xy else None,
    )


def _network(records: list[OutageRecord]) -> Topology:
    nodes: dict[str, dict[str, Any]] = {}
    for r in records:
        nodes.setdefault(substation_id(r), _row(substation_id(r), "substation", None, 0, r))
        place = place_id(r)
        if place is None:
            continue
        nodes.setdefault(feeder_id(r), _row(feeder_id(r), "feeder", substation_id(r), 0, r))
        row = nodes.setdefault(place, _row(place, "building", feeder_id(r), 0, r))
        row["customers"] = max(row["customers"], r.customers)
    return topology_from_rows(nodes.values())


def _row(
    node_id: str, kind: str, parent: str | None, customers: int, r: OutageRecord
) -> dict[str, Any]:
    located = kind == "building"
    return {
        "id": node_id,
        "kind": kind,
        "parent": parent,
        "utility": "power",
        "customers": customers,
        "lat": r.lat if located else None,
        "lon": r.lon if located else None,
    }


def _event(index: int, r: OutageRecord) -> CallReported | ScadaSignal:
    event_id = f"up-{r.starts_at:%Y%m%dT%H%M%S}-{index}"
    place = place_id(r)
    if place is None:
        return ScadaSignal(
            event_id=event_id,
            occurred_at=r.starts_at,
            device_id=substation_id(r),
            signal="breaker_open",
        )
    return CallReported(
        event_id=event_id,
        occurred_at=r.starts_at,
        utility="power",
        building_id=place,
        symptom="no_power",
    )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9()-]+", "-", text).strip("-") or "unknown"
