"""Reading a district heating network into the tree: nodes.csv + pipes.csv, or one GeoJSON.

Owns the heating format of docs/NETWORK_FORMATS.md. Nodes are heat sources, heat substations,
valves, buildings, junctions and premises; pipes join two nodes and carry no direction, since
GIS exports rarely know which way the heat flows. `NetworkGraph` finds the direction by walking
from the heat sources over open pipes, so a loop of open pipes is refused with the loop named.
Premises hang off the building named in their `building` column, as a flat hangs off its house.

Errors name the file and line (CSV) or the feature (`features[3]`, GeoJSON), so whoever made
the export can fix it there.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast, get_args

from topology.importers.radial import Device, ImportedNetwork, NetworkGraph, Progress
from topology.model import NodeKind, TopologyError

NODE_COLUMNS = ("id", "kind", "address", "customers", "building", "lat", "lon", "closed")
PIPE_COLUMNS = ("id", "from", "to", "closed")
_NODE_REQUIRED = ("id", "kind")
_PIPE_REQUIRED = ("id", "from", "to")
# A plain joint of pipes: a point of the graph, not a node of the tree.
JUNCTION = "junction"
# GIS layers call a valve a valve; the tree calls what can cut the supply a switch.
_ALIASES: dict[str, NodeKind] = {"valve": "switch"}
_KINDS: frozenset[str] = frozenset(get_args(NodeKind))
# Pipe ends this close (degrees, either axis; about 0.1 m) meet.
SNAP_DEGREES = 1e-6
_TRUE = frozenset({"true", "yes", "y", "1", "closed", "shut"})
_FALSE = frozenset({"", "false", "no", "n", "0", "open"})


@dataclass(frozen=True)
class _Where:
    """A row of a CSV file or a feature of a GeoJSON file, for error messages."""

    source: str
    line: int | None = None
    feature: int | None = None

    def error(self, message: str) -> TopologyError:
        if self.feature is not None:
            message = f"features[{self.feature}]: {message}"
        return TopologyError(message, self.line, self.source)

    def __str__(self) -> str:
        if self.feature is not None:
            return f"features[{self.feature}]"
        return f"line {self.line}"


@dataclass(frozen=True)
class _Node:
    id: str
    kind: str  # a NodeKind or JUNCTION
    where: _Where
    address: str | None = None
    customers: int | None = None
    building: str | None = None
    lat: float | None = None
    lon: float | None = None
    closed: bool = False


@dataclass(frozen=True)
class _Pipe:
    id: str
    a: str
    b: str
    closed: bool
    where: _Where


def import_heating(sources: Sequence[str], *, progress: Progress | None = None) -> ImportedNetwork:
    """Read nodes.csv and pipes.csv (told apart by their headers) or one .geojson/.json file."""
    paths = [Path(source) for source in sources]
    for path in paths:
        if not path.is_file():
            raise TopologyError("no such file", None, str(path))
    suffixes = sorted({path.suffix.lower() for path in paths})
    if suffixes in ([".geojson"], [".json"]) and len(paths) == 1:
        nodes, pipes, notes = _read_geojson(paths[0])
    elif suffixes == [".csv"] and len(paths) == 2:
        nodes, pipes = _read_csv_pair(paths)
        notes = []
    else:
        names = ", ".join(str(path) for path in paths)
        raise TopologyError(
            f"heating takes nodes.csv and pipes.csv, or one .geojson file; got {names}"
        )
    source = " + ".join(str(path) for path in paths)
    return _build(nodes, pipes, source, notes, progress)


def _build(
    nodes: list[_Node],
    pipes: list[_Pipe],
    source: str,
    notes: list[str],
    progress: Progress | None,
) -> ImportedNetwork:
    by_id: dict[str, _Node] = {}
    for node in nodes:
        first = by_id.setdefault(node.id, node)
        if first is not node:
            raise node.where.error(f"duplicate node id {node.id!r} (first at {first.where})")
    graph = NetworkGraph("heat", source)
    graph.notes.extend(notes)
    shut_valves = {node.id for node in nodes if node.closed}
    for node in nodes:
        if node.kind == "premise":
            continue
        if node.kind == JUNCTION:
            graph.add_point(node.id)
        elif node.id not in shut_valves:
            graph.add_point(node.id, _device(node))
    for node in nodes:
        if node.kind != "premise":
            continue
        building = by_id.get(node.building or "")
        if building is None or building.kind != "building":
            what = "no such node" if building is None else f"a {building.kind}"
            raise node.where.error(
                f"premise {node.id!r}: building {node.building!r} is {what}, not a building"
            )
        graph.hang(building.id, _device(node))
    _connect(graph, pipes, by_id, shut_valves)
    infeeds = [node.id for node in nodes if node.kind == "heat_source"]
    if not infeeds:
        raise TopologyError("no heat_source node: nothing feeds the network", None, source)
    if shut_valves:
        graph.notes.append(
            f"{len(shut_valves)} closed valve(s) left out, with their pipes: "
            + ", ".join(sorted(shut_valves))
        )
    return graph.build(infeeds, progress)


def _connect(
    graph: NetworkGraph, pipes: list[_Pipe], by_id: dict[str, _Node], shut_valves: set[str]
) -> None:
    seen: dict[str, _Pipe] = {}
    closed: list[str] = []
    for pipe in pipes:
        first = seen.setdefault(pipe.id, pipe)
        if first is not pipe:
            raise pipe.where.error(f"duplicate pipe id {pipe.id!r} (first at {first.where})")
        for end in (pipe.a, pipe.b):
            node = by_id.get(end)
            if node is None:
                raise pipe.where.error(f"pipe {pipe.id!r}: unknown node {end!r}")
            if node is not None and node.kind == "premise":
                raise pipe.where.error(
                    f"pipe {pipe.id!r} ends at premise {end!r}; premises hang off their building"
                )
        if pipe.closed or pipe.a in shut_valves or pipe.b in shut_valves:
            closed.append(pipe.id)
            continue
        graph.connect(pipe.a, pipe.b, pipe.id)
    if closed:
        graph.notes.append(
            f"{len(closed)} closed pipe(s) left out (no flow): " + ", ".join(sorted(closed))
        )


def _device(node: _Node) -> Device:
    kind = cast(NodeKind, node.kind)  # _kind checked it, and junctions are no devices
    customers = node.customers
    if customers is None:
        customers = 1 if kind == "premise" else 0  # a premise is one customer unless told
    return Device(
        node.id, kind, customers=customers, address=node.address, lat=node.lat, lon=node.lon
    )


# ---- field values, shared by both file types ----


def _kind(value: Any, where: _Where, node_id: str) -> str:
    text = _text(value, "kind", where)
    kind = (text or "").lower()
    kind = _ALIASES.get(kind, kind)
    if kind != JUNCTION and kind not in _KINDS:
        allowed = ", ".join(sorted(_KINDS | {JUNCTION, *_ALIASES}))
        raise where.error(f"unknown kind {text!r} for node {node_id!r} (one of {allowed})")
    return kind


def _text(value: Any, field: str, where: _Where) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise where.error(f"{field} must be text, got {value!r}")
    return str(value).strip() or None


def _customers(value: Any, where: _Where, node_id: str) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    # JSON numbers; bool is an int subclass, but `true` customers is a data error
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and value >= 0
        and float(value).is_integer()
    ):
        return int(value)
    raise where.error(f"customers must be a whole number >= 0, got {value!r} for {node_id!r}")


def _coordinate(value: Any, field: str, where: _Where, comma: bool = False) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value.replace(",", ".") if comma and isinstance(value, str) else value)
    except (TypeError, ValueError):
        number = math.nan
    limit = 90.0 if field == "lat" else 180.0
    if not math.isfinite(number) or abs(number) > limit:
        raise where.error(f"{field} must be a number within ±{limit:g}, got {value!r}")
    return number


def _closed(value: Any, where: _Where) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise where.error(f"closed must be true or false, got {value!r}")


def _node(record: dict[str, Any], where: _Where, comma: bool = False) -> _Node:
    node_id = _text(record.get("id"), "id", where)
    if node_id is None:
        raise where.error("node has no id")
    kind = _kind(record.get("kind"), where, node_id)
    building = _text(record.get("building"), "building", where)
    if kind == "premise" and building is None:
        raise where.error(f"premise {node_id!r} names no building")
    if kind != "premise" and building is not None:
        raise where.error(f"building is for premises; {node_id!r} is a {kind}")
    closed = _closed(record.get("closed"), where)
    if closed and kind != "switch":
        raise where.error(f"only a valve (switch) can be closed; {node_id!r} is a {kind}")
    return _Node(
        id=node_id,
        kind=kind,
        where=where,
        address=_text(record.get("address"), "address", where),
        customers=_customers(record.get("customers"), where, node_id),
        building=building,
        lat=_coordinate(record.get("lat"), "lat", where, comma),
        lon=_coordinate(record.get("lon"), "lon", where, comma),
        closed=closed,
    )


def _pipe(record: dict[str, Any], where: _Where) -> _Pipe:
    pipe_id = _text(record.get("id"), "id", where)
    if pipe_id is None:
        raise where.error("pipe has no id")
    ends = [_text(record.get(end), end, where) for end in ("from", "to")]
    if ends[0] is None or ends[1] is None:
        raise where.error(f"pipe {pipe_id!r} needs both from and to")
    return _Pipe(pipe_id, ends[0], ends[1], _closed(record.get("closed"), where), where)


# ---- CSV ----


def _read_csv_pair(paths: list[Path]) -> tuple[list[_Node], list[_Pipe]]:
    nodes: list[_Node] | None = None
    pipes: list[_Pipe] | None = None
    for path in paths:
        rows = _csv_rows(path)
        header, comma = next(rows)
        columns = set(header)
        if {"from", "to"} <= columns:
            _require(header, _PIPE_REQUIRED, path)
            pipes = [_pipe(record, where) for record, where in _records(rows, header, path)]
        elif "kind" in columns:
            _require(header, _NODE_REQUIRED, path)
            nodes = [_node(record, where, comma) for record, where in _records(rows, header, path)]
        else:
            raise TopologyError(
                "header is neither a nodes file (id,kind,...) nor a pipes file (id,from,to,...)",
                1,
                str(path),
            )
    if nodes is None or pipes is None:
        names = " and ".join(str(path) for path in paths)
        raise TopologyError(f"need one nodes file and one pipes file, got {names}")
    return nodes, pipes


def _csv_rows(path: Path) -> Iterator[Any]:
    """First the header (lower-cased) and whether numbers use a decimal comma, then
    (line, cells) per row."""
    source = str(path)
    # utf-8-sig: spreadsheets and GIS tools save a byte-order mark that would break the header.
    with path.open(newline="", encoding="utf-8-sig") as handle:
        first = handle.readline()
        # European spreadsheets write `;` between columns and a decimal comma
        delimiter = ";" if first.count(";") > first.count(",") else ","
        handle.seek(0)
        reader = csv.reader(handle, delimiter=delimiter)
        header = [cell.strip().lower() for cell in next(reader, [])]
        if not any(header):
            raise TopologyError("empty file (expected a header)", 1, source)
        duplicated = sorted({name for name in header if header.count(name) > 1})
        if duplicated:
            raise TopologyError(f"column(s) {', '.join(duplicated)} given twice", 1, source)
        yield header, delimiter == ";"
        for cells in reader:
            if any(cell.strip() for cell in cells):
                yield reader.line_num, cells


def _records(
    rows: Iterator[Any], header: list[str], path: Path
) -> Iterator[tuple[dict[str, Any], _Where]]:
    for line, cells in rows:
        where = _Where(str(path), line=line)
        if len(cells) != len(header):
            raise where.error(f"expected {len(header)} columns, got {len(cells)}")
        # Columns the format does not know (a GIS export's diameter, material, ...) are kept
        # out of the tree without complaint.
        yield dict(zip(header, cells, strict=True)), where


def _require(header: list[str], required: tuple[str, ...], path: Path) -> None:
    missing = [name for name in required if name not in header]
    if missing:
        raise TopologyError(f"missing column(s) {', '.join(missing)}", 1, str(path))


# ---- GeoJSON ----


def _read_geojson(path: Path) -> tuple[list[_Node], list[_Pipe], list[str]]:
    source = str(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise TopologyError(f"bad JSON: {error.msg}", error.lineno, source) from None
    if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
        raise TopologyError("expected a GeoJSON FeatureCollection", None, source)
    features = document.get("features")
    if not isinstance(features, list):
        raise TopologyError("FeatureCollection has no features list", None, source)
    nodes: list[_Node] = []
    lines: list[tuple[dict[str, Any], list[list[float]] | None, _Where]] = []
    for index, feature in enumerate(features):
        where = _Where(source, feature=index)
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            raise where.error("expected a Feature")
        properties = dict(feature.get("properties") or {})
        if "id" not in properties and "id" in feature:
            properties["id"] = feature["id"]
        geometry = feature.get("geometry")
        shape = geometry.get("type") if isinstance(geometry, dict) else None
        if geometry is not None and not isinstance(geometry, dict):
            raise where.error("geometry must be an object or null")
        if shape == "Point" or (geometry is None and "kind" in properties):
            # The geometry is where the node is; lat/lon properties would only disagree.
            position = _position(geometry["coordinates"], where) if geometry else None
            properties["lon"], properties["lat"] = position or (None, None)
            nodes.append(_node(properties, where))
        elif shape == "LineString" or (geometry is None and "from" in properties):
            coordinates = geometry["coordinates"] if geometry else None
            if coordinates is not None and (
                not isinstance(coordinates, list) or len(coordinates) < 2
            ):
                raise where.error("a LineString needs at least two positions")
            lines.append((properties, coordinates, where))
        else:
            raise where.error(
                f"unsupported geometry {shape!r}: nodes are Points (buildings as their "
                "centroid), pipes LineStrings"
            )
    snap = _Snap([node for node in nodes if node.kind != "premise"])
    pipes = [_geo_pipe(props, coordinates, where, snap) for props, coordinates, where in lines]
    return [*nodes, *snap.junctions], pipes, snap.notes()


def _position(value: Any, where: _Where) -> tuple[float, float]:
    if (
        not isinstance(value, list)
        or len(value) < 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value[:2])
    ):
        raise where.error(f"bad position {value!r} (expected [lon, lat])")
    lon = _coordinate(value[0], "lon", where)
    lat = _coordinate(value[1], "lat", where)
    assert lon is not None and lat is not None  # numbers, checked above
    return lon, lat


def _geo_pipe(
    properties: dict[str, Any], coordinates: list[Any] | None, where: _Where, snap: _Snap
) -> _Pipe:
    record = dict(properties)
    for end, position in (("from", 0), ("to", -1)):
        if _text(record.get(end), end, where) is None:
            if coordinates is None:
                raise where.error(f"pipe has no {end} and no geometry to find it by")
            lon, lat = _position(coordinates[position], where)
            record[end] = snap.point(lon, lat, where)
    return _pipe(record, where)


class _Snap:
    """Finds the node a pipe end touches; ends that touch no node meet other ends there."""

    def __init__(self, nodes: list[_Node]) -> None:
        self._nodes: dict[tuple[int, int], list[tuple[float, float, str]]] = {}
        self._joints: dict[tuple[int, int], list[tuple[float, float, str]]] = {}
        self._ends: dict[str, int] = {}  # implicit junction -> pipe ends meeting there
        self.junctions: list[_Node] = []
        for node in nodes:
            if node.lat is not None and node.lon is not None:
                self._add(self._nodes, node.lon, node.lat, node.id)

    def point(self, lon: float, lat: float, where: _Where) -> str:
        found = self._near(self._nodes, lon, lat)
        if len(found) > 1:
            raise where.error(
                f"pipe end ({lon}, {lat}) touches several nodes ({', '.join(sorted(found))}); "
                "give from/to"
            )
        if found:
            return found[0]
        joints = self._near(self._joints, lon, lat)
        name = joints[0] if joints else f"junction at {lat:.7f},{lon:.7f}"
        if not joints:
            self._add(self._joints, lon, lat, name)
            self.junctions.append(_Node(name, JUNCTION, where, lat=lat, lon=lon))
        self._ends[name] = self._ends.get(name, 0) + 1
        return name

    def notes(self) -> list[str]:
        loose = sorted(name for name, count in self._ends.items() if count == 1)
        if not loose:
            return []
        shown = ", ".join(loose[:5]) + (" ..." if len(loose) > 5 else "")
        return [f"{len(loose)} pipe end(s) touch no node and no other pipe: {shown}"]

    @staticmethod
    def _cell(lon: float, lat: float) -> tuple[int, int]:
        return round(lon / SNAP_DEGREES), round(lat / SNAP_DEGREES)

    def _add(
        self, grid: dict[tuple[int, int], list[Any]], lon: float, lat: float, name: str
    ) -> None:
        grid.setdefault(self._cell(lon, lat), []).append((lon, lat, name))

    def _near(
        self, grid: dict[tuple[int, int], list[tuple[float, float, str]]], lon: float, lat: float
    ) -> list[str]:
        x, y = self._cell(lon, lat)
        # a little slack, so that two ends 1e-6 apart meet despite float rounding
        limit = SNAP_DEGREES * (1 + 1e-9)
        return [
            name
            for dx in (-1, 0, 1)
            for dy in (-1, 0, 1)
            for other_lon, other_lat, name in grid.get((x + dx, y + dy), ())
            if abs(other_lon - lon) <= limit and abs(other_lat - lat) <= limit
        ]
