"""`scada.yaml`: one site's sources and point mappings, checked against the network model.

    site: north-grid                      # names the connector in event ids and alerts
    utility: power                        # of the alerts it raises
    topology: [topology/samples/power.csv]  # every point's device must be in it
    state_file: var/scada-north-grid.json # last state of each point across restarts
    sources:
      - {name: rtu-7, type: iec104, host: 127.0.0.1, port: 2404, points: [...]}

Every error names the file and line: a point that maps to an unknown device is refused at
start, before anything connects.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from events.base import Utility
from scada.sources.base import SourceConfig
from topology.load import load_topologies

# type -> "module:class"; imported on use, so a protocol's library is needed only if used.
SOURCE_TYPES = {
    "iec104": "scada.sources.iec104:Iec104Source",
    "dnp3": "scada.sources.dnp3:Dnp3Source",
    "opcua": "scada.sources.opcua:OpcUaSource",
    "mqtt": "scada.sources.mqtt:MqttSource",
}


class ConfigError(ValueError):
    """The config cannot be used; the message names the file and line."""


class SiteConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    site: str = Field(min_length=1, max_length=100)
    utility: Utility = "power"
    topology: tuple[Path, ...] = Field(
        default=(), description="Network model files; empty: the service's OUTAGE_TOPOLOGY."
    )
    state_file: Path | None = Field(default=None, description="Last point states (JSON).")
    sources: tuple[SourceConfig, ...] = Field(min_length=1)


def source_class(kind: str) -> type[SourceConfig]:
    try:
        module, _, name = SOURCE_TYPES[kind].partition(":")
    except KeyError:
        known = ", ".join(sorted(SOURCE_TYPES))
        raise ValueError(f"unknown source type {kind!r} (known: {known})") from None
    cls: type[SourceConfig] = getattr(importlib.import_module(module), name)
    return cls


def _lines(node: yaml.Node) -> Any:
    """The YAML document as plain data, each mapping given its line under key `__line__`."""
    if isinstance(node, yaml.MappingNode):
        out = {_lines(k): _lines(v) for k, v in node.value}
        out["__line__"] = node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_lines(v) for v in node.value]
    return yaml.safe_load(yaml.serialize(node))


def load(path: Path, default_topology: tuple[Path, ...] = ()) -> SiteConfig:
    """Read and check a site config; ConfigError with the file and line on any problem."""
    try:
        node = yaml.compose(path.read_text(), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: {error}") from None
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{path}: expected a mapping with site and sources")
    raw = _lines(node)
    raw.pop("__line__", None)
    sources = []
    for entry in raw.pop("sources", None) or []:
        line = entry.pop("__line__", "?") if isinstance(entry, dict) else "?"
        sources.append(_source(path, line, entry))
    try:
        site = SiteConfig.model_validate({**raw, "sources": sources})
    except ValidationError as error:
        raise ConfigError(f"{path}: {_first(error)}") from None
    _check_devices(path, site, site.topology or default_topology)
    names = [s.name for s in site.sources]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: source names must be unique, got {names}")
    return site


def _source(path: Path, line: object, entry: object) -> SourceConfig:
    if not isinstance(entry, dict):
        raise ConfigError(f"{path}:{line}: a source is a mapping with name, type and points")
    points = []
    for point in entry.get("points") or []:
        if isinstance(point, dict):
            line_of_point = point.pop("__line__", None)
            point = {**point, "line": line_of_point}
        points.append(point)
    body = {**entry, "points": points}
    try:
        return source_class(str(entry.get("type"))).model_validate(body)
    except ValidationError as error:
        where = _point_line(error, points) or line
        name = entry.get("name")
        raise ConfigError(f"{path}:{where}: source {name!r}: {_first(error)}") from None
    except ValueError as error:
        raise ConfigError(f"{path}:{line}: {error}") from None


def _point_line(error: ValidationError, points: list[Any]) -> int | None:
    loc = error.errors()[0]["loc"]
    if len(loc) >= 2 and loc[0] == "points" and isinstance(loc[1], int) and loc[1] < len(points):
        point = points[loc[1]]
        return point.get("line") if isinstance(point, dict) else None
    return None


def _first(error: ValidationError) -> str:
    detail = error.errors()[0]
    where = ".".join(str(part) for part in detail["loc"])
    return f"{where}: {detail['msg']}" if where else str(detail["msg"])


def _check_devices(path: Path, site: SiteConfig, topology_files: tuple[Path, ...]) -> None:
    if not topology_files:
        return
    topology = load_topologies(list(topology_files))
    for source in site.sources:
        for point in source.points:
            if point.device not in topology:
                raise ConfigError(
                    f"{path}:{point.line}: point {point.point!r} of source {source.name!r} "
                    f"maps to device {point.device!r}, which is not in the network model"
                )
