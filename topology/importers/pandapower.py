"""pandapower and SimBench network models to the supply tree (`radial.NetworkGraph`).

Owns the mapping from pandapower's tables to devices; assumptions worth knowing:

- Each in-service `ext_grid` is a `substation`. Its station (the infeed bus, what closed
  bus-bus switches reach, and HV/MV transformers with a secondary of 1 kV or more) is one
  point: transformers there fold into the substation, since their fault is a substation fault
  and customers sit under MV/LV units; parallel transformers and busbar couplers are then not
  loops. Other transformers (MV/LV, HV/MV inside an HV grid) are `transformer` devices.
- A line leaving a station busbar (or an in-grid HV/MV transformer's busbar) is a `feeder`,
  named by its breaker; so is a closed bus-bus breaker from a station busbar to a bus with
  nothing but MV/LV transformers (CIGRE LV).
- Other closed line switches are `switch` devices at their line end, so nested switches nest;
  below 1 kV they are `fuse`s, as LV circuits are fused and pandapower models fuses as
  switches. Open switches and out-of-service lines, transformers and buses cut.
- LV loads: one `building` per bus, one `premise` per load, except heat pumps and home
  chargers (SimBench scenarios 1-2) next to a household. MV loads stand for MV/LV stations
  whose LV side is not modelled: each becomes a `transformer` with made-up buildings of up to
  8 premises, one per 2 kW of `p_mw * scaling` (1 to 400), and a note says so.
- Addresses are synthetic ("Bus 12, cigre_lv"); coordinates come from the bus GeoJSON.

Loops through closed switches are refused with the loop named (meshed HV grids are). CIGRE MV
ships radial (S1-S3 open); lv_schutterwald ships one LV ring closed, which the named import
opens at one documented point (`_NORMALLY_OPEN`) and notes.
"""

from __future__ import annotations

import json
import logging
import math
import re
import warnings
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from topology.importers.radial import Device, ImportedNetwork, NetworkGraph, Progress

# name -> function in pandapower.networks
NAMED_NETWORKS = {
    "mv_oberrhein": "mv_oberrhein",
    "lv_schutterwald": "lv_schutterwald",
    "cigre_mv": "create_cigre_network_mv",
    "cigre_lv": "create_cigre_network_lv",
}
_SIMBENCH_CODE = re.compile(r"^\d+-")

# name -> (switch, its bus, its line, why) to open before import. lv_schutterwald ships one LV
# ring closed: lines 13417, 8820, 8293, 8294 and 8823 leave transformer T_idx_78's board
# (bus 3005) both ways round through closed breakers. LV rings are run open at one point, so
# the import opens the breaker at cable cabinet N3209 half-way round; the file as shipped
# (`import_network(pandapower.networks.lv_schutterwald(), ...)`) is refused with that loop.
_NORMALLY_OPEN: dict[str, tuple[tuple[int, int, int, str], ...]] = {
    "lv_schutterwald": (
        (273, 3209, 8820, "the model closes an LV ring at transformer T_idx_78 (bus 3005)"),
    ),
}

LV_KV = 1.0  # below this a bus is low voltage
KW_PER_HOUSEHOLD = 2.0  # diversified peak demand of one household
MAX_HOUSEHOLDS_PER_MV_LOAD = 400  # a large MV/LV station; CIGRE MV's 15 MW loads hit it
PREMISES_PER_BUILDING = 8

_LatLon = tuple[float | None, float | None]


def import_pandapower(
    sources: Sequence[str], *, progress: Progress | None = None
) -> ImportedNetwork:
    """Import one pandapower network: a name, a SimBench code or a pandapower JSON file."""
    if len(sources) != 1:
        raise ValueError(
            f"pandapower takes exactly one source (a network name, SimBench code or JSON file), "
            f"got {len(sources)}"
        )
    net, name, notes = load_network(sources[0])
    imported = import_network(net, name, progress=progress)
    imported.notes[:0] = notes
    return imported


def load_network(source: str) -> tuple[Any, str, list[str]]:
    """The pandapower net for `source`, the name its synthetic addresses carry, and notes on
    what was changed to bring a named network into its radial operating state."""
    path = Path(source)
    with _quiet():
        if source in NAMED_NETWORKS:
            import pandapower.networks as networks

            net = getattr(networks, NAMED_NETWORKS[source])()
            return net, source, _operate(net, source)
        if path.suffix.lower() == ".json" or path.is_file():
            if not path.is_file():
                raise ValueError(f"no such pandapower JSON file: {source}")
            import pandapower

            return pandapower.from_json(str(path)), path.stem, []
        if _SIMBENCH_CODE.match(source):
            import simbench

            if source in simbench.collect_all_simbench_codes():
                return simbench.get_simbench_net(source), source, []
    raise ValueError(
        f"unknown pandapower network {source!r}: expected one of {', '.join(NAMED_NETWORKS)}, "
        "a SimBench code such as 1-LV-rural1--0-sw, or a pandapower .json file"
    )


def _operate(net: Any, name: str) -> list[str]:
    """Open the normally-open points a named network ships closed; a note for each."""
    notes: list[str] = []
    table = net.switch
    for switch, bus, line, why in _NORMALLY_OPEN.get(name, ()):
        # only the switch studied: if the shipped file changes, the builder reports the loop
        at = (
            (table.at[switch, "bus"], table.at[switch, "element"])
            if switch in table.index
            else None
        )
        if at == (bus, line):
            table.at[switch, "closed"] = False
            notes.append(f"{name}: opened switch {switch} (line {line} at bus {bus}): {why}")
    return notes


@contextmanager
def _quiet() -> Iterator[None]:
    """pandapower logs a numba warning and pandas deprecations on load; the CLI output is a
    summary, so keep them out of it without changing logging for the rest of the process."""
    logger = logging.getLogger("pandapower")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def import_network(net: Any, name: str, *, progress: Progress | None = None) -> ImportedNetwork:
    """Build the supply tree of a loaded pandapower net; `name` goes into the addresses."""
    graph, infeeds = _Builder(net, name).build()
    return graph.build(infeeds, progress=progress)


@dataclass(frozen=True)
class _Switch:
    index: int
    bus: int
    element: int
    kind: str  # pandapower type in upper case, "" when not given
    closed: bool

    def other_bus(self, bus: int) -> int:
        """The far bus of a bus-bus switch."""
        return self.element if self.bus == bus else self.bus


@dataclass(frozen=True)
class _Trafo:
    id: str
    buses: tuple[int, ...]  # high voltage first
    usable: bool  # in service, every bus in service
    closed: tuple[bool, ...]  # per bus: no open switch at that side

    @property
    def hv(self) -> int:
        return self.buses[0]


class _Builder:
    """One pass over a net's tables into a `NetworkGraph`."""

    def __init__(self, net: Any, name: str) -> None:
        self.net = net
        self.name = name
        self.graph = NetworkGraph("power", name)
        bus = net.bus
        self.vn = {int(i): float(v) for i, v in zip(bus.index, bus.vn_kv, strict=True)}
        self.live = {int(i) for i, ok in zip(bus.index, bus.in_service, strict=True) if ok}
        geo = bus["geo"] if "geo" in bus.columns else [None] * len(bus)
        self.where = {int(i): _lat_lon(g) for i, g in zip(bus.index, geo, strict=True)}
        self.station_point: dict[int, str] = {}  # filled by `_stations`

        self.line_switches: dict[tuple[int, int], list[_Switch]] = defaultdict(list)
        trafo_switches: dict[tuple[str, int, int], list[_Switch]] = defaultdict(list)
        self.bus_switches: list[_Switch] = []
        self.bus_switches_at: dict[int, list[_Switch]] = defaultdict(list)
        table = net.switch
        for index, at, element, et, kind, closed in zip(
            table.index,
            table.bus,
            table.element,
            table.et,
            table["type"],
            table.closed,
            strict=True,
        ):
            text = kind.strip().upper() if isinstance(kind, str) else ""
            switch = _Switch(int(index), int(at), int(element), text, bool(closed))
            if et == "l":
                self.line_switches[switch.element, switch.bus].append(switch)
            elif et in ("t", "t3"):
                trafo_switches[str(et), switch.element, switch.bus].append(switch)
            elif et == "b":
                self.bus_switches.append(switch)
                self.bus_switches_at[switch.bus].append(switch)
                self.bus_switches_at[switch.element].append(switch)

        self.trafos: list[_Trafo] = []
        for table_name, et, prefix, columns in (
            ("trafo", "t", "TR", ("hv_bus", "lv_bus")),
            ("trafo3w", "t3", "TR3", ("hv_bus", "mv_bus", "lv_bus")),
        ):
            table = net.get(table_name)
            if table is None or table.empty:
                continue
            for index, ok, *ends in zip(
                table.index, table.in_service, *(table[c] for c in columns), strict=True
            ):
                buses = tuple(int(b) for b in ends)
                self.trafos.append(
                    _Trafo(
                        f"{prefix}-{int(index)}",
                        buses,
                        bool(ok) and all(b in self.live for b in buses),
                        tuple(
                            all(s.closed for s in trafo_switches[et, int(index), b]) for b in buses
                        ),
                    )
                )

    def build(self) -> tuple[NetworkGraph, list[str]]:
        table = self.net.ext_grid
        infeeds = [
            (int(index), int(at))
            for index, at, ok in zip(table.index, table.bus, table.in_service, strict=True)
            if ok and int(at) in self.live
        ]
        if not infeeds:
            raise ValueError(f"{self.name}: no ext_grid in service, so nothing feeds the network")
        folded, feeder_switches = self._stations(sorted({at for _, at in infeeds}))
        substations = []
        for index, at in infeeds:
            # a second infeed in the same station closes a loop the builder reports
            substation = self._device(f"SUB-{index}", "substation", at)
            self.graph.insert(substation, self._point(at))
            substations.append(substation.id)
        self._lines()
        self._bus_switches(feeder_switches)
        self._trafos(folded)
        self._impedances()
        self._loads()
        return self.graph, substations

    def _point(self, bus: int) -> str:
        """The graph point of a bus: every bus of one station is one point."""
        return self.station_point.get(bus) or _bus(bus)

    def _device(self, id_: str, kind: Any, bus: int, **more: Any) -> Device:
        lat, lon = self.where.get(bus, (None, None))
        return Device(id_, kind, lat=lat, lon=lon, **more)

    def _stations(self, infeed_buses: list[int]) -> tuple[set[str], set[int]]:
        """Fills `station_point` with the busbars that feeders leave; returns the transformers
        folded into a substation and the bus-bus breakers that are feeders.

        The buses of one station (busbar sections, couplers, parallel transformers) become one
        point: rings inside a station are how it is built, not loops a fault travels round."""
        big_at: dict[int, int] = defaultdict(int)  # transformers with a secondary >= 1 kV
        small_hv_at: dict[int, int] = defaultdict(int)  # MV/LV transformers fed from the bus
        by_hv: dict[int, list[_Trafo]] = defaultdict(list)
        for trafo in self.trafos:
            by_hv[trafo.hv].append(trafo)
            if self._secondary_is_mv(trafo):
                for bus in trafo.buses:
                    big_at[bus] += 1
            else:
                small_hv_at[trafo.hv] += 1
        lines_at: dict[int, int] = defaultdict(int)
        for a, b in zip(self.net.line.from_bus, self.net.line.to_bus, strict=True):
            lines_at[int(a)] += 1
            lines_at[int(b)] += 1

        def feeds_only_mv_lv(bus: int) -> bool:
            return (
                small_hv_at[bus] > 0
                and not big_at[bus]
                and not lines_at[bus]
                and len(self.bus_switches_at[bus]) == 1
            )

        folded: set[str] = set()
        feeder_switches: set[int] = set()

        def spread(seed: int, fold: bool) -> None:
            if seed not in self.live or seed in self.station_point:
                return
            point = _bus(seed)
            self.station_point[seed] = point
            queue = [seed]
            while queue:
                bus = queue.pop()
                reached: list[int] = []
                for switch in self.bus_switches_at[bus]:
                    other = switch.other_bus(bus)
                    if not switch.closed or other not in self.live:
                        continue
                    if switch.kind == "CB" and feeds_only_mv_lv(other):
                        feeder_switches.add(switch.index)
                    else:
                        reached.append(other)
                for trafo in by_hv[bus] if fold else ():
                    if trafo.usable and all(trafo.closed) and self._secondary_is_mv(trafo):
                        folded.add(trafo.id)
                        reached.extend(trafo.buses[1:])
                for other in reached:
                    if other not in self.station_point:
                        self.station_point[other] = point
                        queue.append(other)

        for bus in infeed_buses:
            spread(bus, fold=True)
        # an HV/MV transformer inside the grid has its own busbar for feeders to leave
        for trafo in self.trafos:
            if trafo.id not in folded and trafo.usable:
                for bus in trafo.buses[1:]:
                    if self.vn[bus] >= LV_KV:
                        spread(bus, fold=False)
        return folded, feeder_switches

    def _secondary_is_mv(self, trafo: _Trafo) -> bool:
        return min(self.vn[bus] for bus in trafo.buses[1:]) >= LV_KV

    def _lines(self) -> None:
        table = self.net.line
        names = table["name"] if "name" in table.columns else [None] * len(table)
        for index, a, b, ok, name in zip(
            table.index, table.from_bus, table.to_bus, table.in_service, names, strict=True
        ):
            index, a, b = int(index), int(a), int(b)
            if not ok or a not in self.live or b not in self.live or a == b:
                continue
            ends = [self._line_end(index, bus, far=(side == 1)) for side, bus in enumerate((a, b))]
            if ends[0] is not None and ends[1] is not None:
                label = f"line:{index}" + (f" ({name})" if isinstance(name, str) and name else "")
                self.graph.connect(ends[0], ends[1], label)

    def _line_end(self, line: int, bus: int, far: bool) -> str | None:
        """The point a line's end hangs from after the switches at that end; None if cut."""
        switches = sorted(self.line_switches.get((line, bus), ()), key=lambda s: s.index)
        if not all(switch.closed for switch in switches):
            return None
        point = self._point(bus)
        if bus in self.station_point:
            # one bay: the breaker (or whatever switch the bay has) is the feeder
            breaker = next(
                (s for s in switches if s.kind == "CB"), switches[0] if switches else None
            )
            if breaker is not None:
                id_ = f"FDR-sw{breaker.index}"
            else:
                id_ = f"FDR-line{line}" + ("-to" if far else "")
            feeder = self._device(id_, "feeder", bus)
            self.graph.insert(feeder, point)
            return feeder.id
        for switch in switches:
            device = self._device(*_switch_device(switch, self.vn[bus]), bus)
            self.graph.insert(device, point)
            point = device.id
        return point

    def _bus_switches(self, feeder_switches: set[int]) -> None:
        for switch in self.bus_switches:
            a, b = switch.bus, switch.element
            if not switch.closed or a not in self.live or b not in self.live:
                continue
            if switch.index in feeder_switches:
                self.graph.insert(
                    self._device(f"FDR-sw{switch.index}", "feeder", a),
                    self._point(a),
                    self._point(b),
                )
            else:
                self.graph.connect(self._point(a), self._point(b), f"switch:{switch.index}")

    def _trafos(self, folded: set[str]) -> None:
        for trafo in self.trafos:
            if trafo.id in folded:
                continue  # its sides are one station point
            # listed as unfed when cut on the high-voltage side or out of service
            device = self._device(trafo.id, "transformer", trafo.buses[-1])
            self.graph.add_point(device.id, device)
            if trafo.usable:
                for bus, closed in zip(trafo.buses, trafo.closed, strict=True):
                    if closed:
                        self.graph.connect(self._point(bus), device.id, device.id)

    def _impedances(self) -> None:
        """Impedance branches (SimBench HV equivalents) conduct like lines."""
        table = self.net.get("impedance")
        if table is None or table.empty:
            return
        for index, a, b, ok in zip(
            table.index, table.from_bus, table.to_bus, table.in_service, strict=True
        ):
            if ok and int(a) in self.live and int(b) in self.live:
                self.graph.connect(
                    self._point(int(a)), self._point(int(b)), f"impedance:{int(index)}"
                )

    def _loads(self) -> None:
        table = self.net.load
        lv: dict[int, list[tuple[int, bool]]] = defaultdict(list)  # bus -> (load, appliance)
        mv: list[tuple[int, int, float]] = []
        skipped = appliances = 0
        kinds = table["type"] if "type" in table.columns else [None] * len(table)
        profiles = table["profile"] if "profile" in table.columns else [None] * len(table)
        for index, at, p_mw, scaling, ok, kind, profile in zip(
            table.index,
            table.bus,
            table.p_mw,
            table.scaling,
            table.in_service,
            kinds,
            profiles,
            strict=True,
        ):
            if not ok:
                skipped += 1
            elif self.vn[int(at)] < LV_KV:
                lv[int(at)].append((int(index), _is_appliance(kind, profile)))
            else:
                mv.append((int(index), int(at), float(p_mw) * float(scaling)))
        for at, at_bus in sorted(lv.items()):
            metered = sorted(load for load, appliance in at_bus if not appliance)
            appliances += len(at_bus) - len(metered) if metered else 0
            address = f"Bus {at}, {self.name}"
            building = self._device(f"B-bus{at}", "building", at, address=address)
            self.graph.insert(building, self._point(at))
            for unit, load in enumerate(metered or sorted(load for load, _ in at_bus), 1):
                premise = self._device(
                    f"P-{load}", "premise", at, customers=1, address=f"{address}, unit {unit}"
                )
                self.graph.hang(building.id, premise)
        households = sum(self._mv_station(*load) for load in mv)
        if mv:
            self.graph.notes.append(
                f"{len(mv)} MV load(s) stand for MV/LV stations whose LV side is not modelled: "
                f"synthesised a transformer each and {households} premises "
                f"({KW_PER_HOUSEHOLD:g} kW per household, at most {MAX_HOUSEHOLDS_PER_MV_LOAD} "
                f"per load, {PREMISES_PER_BUILDING} per building)"
            )
        if appliances:
            self.graph.notes.append(
                f"{appliances} heat pump or home charging load(s) belong to a premise at their "
                "bus, so they are not premises of their own"
            )
        if skipped:
            self.graph.notes.append(f"{skipped} out-of-service load(s) left out")

    def _mv_station(self, load: int, at: int, p_mw: float) -> int:
        """A made-up MV/LV station for an MV load; returns its households."""
        households = min(MAX_HOUSEHOLDS_PER_MV_LOAD, max(1, round(p_mw * 1000 / KW_PER_HOUSEHOLD)))
        station = self._device(f"TR-load{load}", "transformer", at)
        self.graph.insert(station, self._point(at))
        buildings = math.ceil(households / PREMISES_PER_BUILDING)
        unit = 0
        for number in range(1, buildings + 1):
            # spread evenly, so no building is left with a single flat
            size = households // buildings + (1 if number <= households % buildings else 0)
            address = f"Station {load} house {number}, {self.name}"
            building = self._device(f"B-load{load}-{number}", "building", at, address=address)
            self.graph.insert(building, station.id)
            for flat in range(1, size + 1):
                unit += 1
                premise = self._device(
                    f"P-{load}-{unit}",
                    "premise",
                    at,
                    customers=1,
                    address=f"{address}, unit {flat}",
                )
                self.graph.hang(building.id, premise)
        return households


def _is_appliance(kind: Any, profile: Any) -> bool:
    """A heat pump (pandapower type HP/WP, SimBench profile Air_*/Soil_*) or home charging
    point (HLS_*): behind a household's meter, not a customer of its own."""
    if isinstance(kind, str) and kind.strip().upper() in ("HP", "WP"):
        return True
    return isinstance(profile, str) and profile.lower().startswith(("air_", "soil_", "hls_"))


def _switch_device(switch: _Switch, kv: float) -> tuple[str, Any]:
    """(id, kind) of a closed line switch away from a station busbar."""
    if "FUSE" in switch.kind or switch.kind == "FU" or kv < LV_KV:
        return f"FU-{switch.index}", "fuse"
    return f"SW-{switch.index}", "switch"


def _bus(index: int) -> str:
    return f"bus:{index}"


def _lat_lon(geo: Any) -> _LatLon:
    """(lat, lon) of a GeoJSON point (a string or a dict; lon comes first in GeoJSON)."""
    if isinstance(geo, str):
        try:
            geo = json.loads(geo)
        except ValueError:
            return None, None
    if not isinstance(geo, dict) or geo.get("type") != "Point":
        return None, None
    coordinates = geo.get("coordinates")
    if not isinstance(coordinates, list | tuple) or len(coordinates) < 2:
        return None, None
    try:
        lon, lat = float(coordinates[0]), float(coordinates[1])
    except (TypeError, ValueError):
        return None, None
    if not (math.isfinite(lat) and math.isfinite(lon) and abs(lat) <= 90 and abs(lon) <= 180):
        return None, None
    return lat, lon
