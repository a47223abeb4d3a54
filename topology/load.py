"""Reading network descriptions (CSV or JSON Lines) into a `Topology`.

Owns the file formats and their error messages: every problem in a file becomes a
`TopologyError` naming the file and the line, so whoever edits the file can fix it directly.
The only module in `topology` that touches the file system.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError

from topology.model import Node, NodeKind, Topology, TopologyError, Utility

FIELDS = ("id", "kind", "parent", "utility", "customers", "address", "lat", "lon")
_KINDS: frozenset[str] = frozenset(get_args(NodeKind))
_UTILITIES: frozenset[str] = frozenset(get_args(Utility))

# (node, source, line) for one row
_Row = tuple[Node, str | None, int]


def load_topology(path: str | Path) -> Topology:
    """Load one `.csv` or `.jsonl` file."""
    return load_topologies([path])


def load_topologies(paths: Iterable[str | Path]) -> Topology:
    """Load and merge several files; ids must be unique across all of them, and a node may
    name a parent from another file."""
    rows = [row for path in paths for row in _read(Path(path))]
    return _build(rows)


def topology_from_rows(rows: Iterable[Mapping[str, Any]]) -> Topology:
    """Build from in-memory rows shaped like the file records; errors name the 1-based row."""
    return _build([(_node(row, None, i), None, i) for i, row in enumerate(rows, start=1)])


def _build(rows: list[_Row]) -> Topology:
    return Topology.from_nodes(
        [node for node, _, _ in rows],
        [line for _, _, line in rows],
        sources=[source for _, source, _ in rows],
    )


def _read(path: Path) -> Iterator[_Row]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path)
    if suffix == ".jsonl":
        return _read_jsonl(path)
    raise TopologyError(
        f"unsupported file type {suffix!r} (expected .csv or .jsonl)", None, str(path)
    )


def _read_csv(path: Path) -> Iterator[_Row]:
    source = str(path)
    # utf-8-sig: spreadsheets save a byte-order mark that would otherwise break the header.
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(cell.strip() for cell in header) != FIELDS:
            got = ",".join(header) if header else "nothing"
            raise TopologyError(f"header must be {','.join(FIELDS)!r}, got {got!r}", 1, source)
        for cells in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(FIELDS):
                raise TopologyError(
                    f"expected {len(FIELDS)} columns, got {len(cells)}", line, source
                )
            yield _node(dict(zip(FIELDS, cells, strict=True)), source, line), source, line


def _read_jsonl(path: Path) -> Iterator[_Row]:
    source = str(path)
    with path.open(encoding="utf-8-sig") as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as error:
                raise TopologyError(f"bad JSON: {error.msg}", line, source) from None
            if not isinstance(record, dict):
                raise TopologyError("expected a JSON object", line, source)
            yield _node(record, source, line), source, line


def _node(row: Mapping[str, Any], source: str | None, line: int) -> Node:
    try:
        return _parse(row)
    except ValueError as error:
        raise TopologyError(str(error), line, source) from None


def _parse(row: Mapping[str, Any]) -> Node:
    unknown = sorted(set(row) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}")
    node_id = _text(row, "id")
    if node_id is None:
        raise ValueError("missing id")
    kind = _text(row, "kind")
    if kind not in _KINDS:
        raise ValueError(f"unknown kind {kind!r} for node {node_id!r}")
    utility = _text(row, "utility")
    if utility not in _UTILITIES:
        raise ValueError(f"unknown utility {utility!r} for node {node_id!r}")
    try:
        return Node(
            id=node_id,
            kind=kind,
            parent=_text(row, "parent"),
            utility=utility,
            customers=_customers(row, node_id),
            address=_text(row, "address"),
            lat=_coordinate(row, "lat", node_id),
            lon=_coordinate(row, "lon", node_id),
        )
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ValueError(f"{where}: {first['msg']} for node {node_id!r}") from None


def _text(row: Mapping[str, Any], field: str) -> str | None:
    """Empty cells and nulls mean "not given"."""
    value = row.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{field} must be text, got {value!r}")
    return value.strip() or None


def _customers(row: Mapping[str, Any], node_id: str) -> int:
    value = row.get("customers")
    if value is None or value == "":
        return 0
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    # bool is an int subclass; `true` customers is a data error, not 1.
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ValueError(f"customers must be a whole number >= 0, got {value!r} for node {node_id!r}")


def _coordinate(row: Mapping[str, Any], field: str, node_id: str) -> float | None:
    value = row.get(field)
    if value is None or value == "":
        return None
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise ValueError(f"{field} must be a number, got {value!r} for node {node_id!r}")
    return number
