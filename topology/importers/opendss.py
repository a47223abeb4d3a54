"""Reading an OpenDSS circuit (the master .dss file and what it redirects to) into the tree.

Owns the part of the OpenDSS script language that describes connectivity and its mapping onto
`NetworkGraph` (table in docs/NETWORK_FORMATS.md). What only matters to a power flow (line
codes, load shapes, controls, meters, solution settings) is recognised and skipped; a command
or class OpenDSS would not know is an error naming the file and line, because a skipped typo
could silently drop a branch of the network.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from topology.importers.radial import Device, ImportedNetwork, NetworkGraph, Progress
from topology.model import NodeKind, TopologyError

# One synthetic premise (one customer) per this many kW of load, at least one per load.
KW_PER_PREMISE = 5.0
# Redirects nested deeper than this are a file redirecting to itself.
_MAX_DEPTH = 32

# Commands that do not change connectivity. OpenDSS accepts any unambiguous abbreviation of a
# command (`calcv`), so they are matched by prefix together with the handled ones.
_HANDLED = (
    "new",
    "edit",
    "more",
    "open",
    "close",
    "redirect",
    "compile",
    "clear",
    "enable",
    "disable",
    "select",
)
_IGNORED = (
    "set",
    "solve",
    "show",
    "plot",
    "help",
    "reset",
    "dump",
    "export",
    "fileedit",
    "calcvoltagebases",
    "setkvbase",
    "buildy",
    "get",
    "init",
    "buscoords",
    "latlongcoords",
    "setbusxy",
    "makebuslist",
    "makeposseq",
    "reduce",
    "interpolate",
    "aligncache",
    "top",
    "rotate",
    "vdiffs",
    "summary",
    "distribute",
    "di_plot",
    "comparecases",
    "yearlycurves",
    "cd",
    "visualize",
    "closedi",
    "doscmd",
    "estimate",
    "reconductor",
    "allocateloads",
    "formedit",
    "totals",
    "capacity",
    "classes",
    "userclasses",
    "zsc",
    "zsc10",
    "zscrefresh",
    "ysc",
    "puvoltages",
    "varvalues",
    "varnames",
    "voltages",
    "currents",
    "powers",
    "seqvoltages",
    "seqcurrents",
    "seqpowers",
    "losses",
    "phaselosses",
    "cktlosses",
    "sample",
    "about",
    "save",
    "next",
    "panel",
    "quit",
    "nodediff",
    "rephase",
    "updatestorage",
    "obfuscate",
    "pstcalc",
    "variable",
    "var",
    "reprocessbuses",
    "clearbusmarkers",
    "addbusmarker",
    "relcalc",
    "uuids",
    "setloadandgenkv",
    "cvrtloadshapes",
    "nodelist",
    "cleanup",
    "finishtimestep",
    "batchedit",
    "clearall",
    "guids",
)
_COMMANDS = _HANDLED + _IGNORED

# Classes whose elements take part in the tree; all others in _KNOWN_CLASSES are skipped.
_TRACKED = frozenset(
    {
        "vsource",
        "line",
        "transformer",
        "autotrans",
        "reactor",
        "load",
        "xfmrcode",
        "fuse",
        "recloser",
        "relay",
        "swtcontrol",
    }
)
_KNOWN_CLASSES = _TRACKED | {
    "circuit",
    "linecode",
    "loadshape",
    "tshape",
    "priceshape",
    "xycurve",
    "growthshape",
    "tcc_curve",
    "spectrum",
    "wiredata",
    "cndata",
    "tsdata",
    "linegeometry",
    "linespacing",
    "capacitor",
    "capcontrol",
    "regcontrol",
    "invcontrol",
    "expcontrol",
    "gendispatcher",
    "storagecontroller",
    "storage",
    "generator",
    "pvsystem",
    "windgen",
    "isource",
    "gicsource",
    "gictransformer",
    "gicline",
    "equivalent",
    "indmach012",
    "generic5",
    "vccs",
    "upfc",
    "upfccontrol",
    "esppvlcontrol",
    "fault",
    "energymeter",
    "monitor",
    "sensor",
    "fmonitor",
    "dynamicexp",
}

# Property order for positional values (`New Line.x 632 633`), per class.
_POSITIONAL: dict[str, tuple[str, ...]] = {
    "vsource": ("bus1", "basekv", "pu", "angle"),
    "line": ("bus1", "bus2", "linecode", "length"),
    "reactor": ("bus1", "bus2"),
    "load": ("phases", "bus1", "kv", "kw", "pf"),
    "transformer": ("phases", "windings", "wdg", "bus", "conn", "kv", "kva"),
    "autotrans": ("phases", "windings", "wdg", "bus", "conn", "kv", "kva"),
    "xfmrcode": ("phases", "windings", "wdg", "conn", "kv", "kva"),
    "fuse": ("monitoredobj", "monitoredterm", "switchedobj", "switchedterm"),
    "recloser": ("monitoredobj", "monitoredterm", "switchedobj", "switchedterm"),
    "relay": ("monitoredobj", "monitoredterm", "switchedobj", "switchedterm"),
    "swtcontrol": ("switchedobj", "switchedterm"),
}
# Protective elements name the line they act on; that line becomes this kind of device.
_PROTECTION_KIND: dict[str, NodeKind] = {
    "fuse": "fuse",
    "recloser": "switch",
    "relay": "switch",
    "swtcontrol": "switch",
}
_QUOTES = {'"': '"', "'": "'", "(": ")", "[": "]", "{": "}"}
_SPACE = " \t,"

Param = tuple[str | None, str]  # (property or None for a positional value, value)


@dataclass
class _Element:
    cls: str
    name: str
    source: str
    line: int
    props: list[tuple[str, str]] = field(default_factory=list)
    closed: bool = True  # after `Open`/`Close` commands

    def last(self, key: str) -> str | None:
        for prop, value in reversed(self.props):
            if prop == key:
                return value
        return None

    def enabled(self) -> bool:
        value = self.last("enabled")
        return value is None or _flag(value)


def import_opendss(sources: Sequence[str], *, progress: Progress | None = None) -> ImportedNetwork:
    """Read the master .dss file (one source) and build the supply tree of its circuit."""
    if len(sources) != 1:
        raise TopologyError(f"opendss takes one source, the master .dss file; got {len(sources)}")
    master = Path(sources[0])
    if not master.is_file():
        raise TopologyError("no such file (expected the master .dss file)", None, str(master))
    script = _Script()
    script.run(master, depth=0)
    return _Circuit(script, str(master)).build(progress)


class _Script:
    """Runs the commands of a script and keeps the elements they define."""

    def __init__(self) -> None:
        self.elements: dict[tuple[str, str], _Element] = {}
        self.circuit: str | None = None
        self.notes: list[str] = []
        self._active: _Element | None = None  # what `~` continues; None for skipped classes
        self._continues = False  # whether `~` has a command to continue

    def run(self, path: Path, depth: int) -> None:
        source = str(path)
        text = path.read_text(encoding="utf-8", errors="replace")
        in_block = False
        for number, raw in enumerate(text.splitlines(), start=1):
            stripped = raw.strip()
            if in_block:  # /* ... */ spans lines
                in_block = "*/" not in stripped
                continue
            if stripped.startswith("/*"):
                in_block = "*/" not in stripped[2:]
                continue
            if stripped.startswith("~"):
                stripped = "~ " + stripped[1:]  # `~prop=value` continues as well as `~ prop=value`
            try:
                tokens = _tokens(stripped)
            except ValueError as error:
                raise TopologyError(str(error), number, source) from None
            if tokens:
                self._command(tokens, path, number, depth)

    def _command(self, tokens: list[Param], path: Path, line: int, depth: int) -> None:
        source = str(path)
        key, word = tokens[0]
        if key is not None:
            # `Class.Name.property=value`: an edit of an existing element
            parts = key.split(".")
            if len(parts) != 3:
                raise TopologyError(f"unknown command {key + '=' + word!r}", line, source)
            element = self._find(parts[0], parts[1], source, line)
            self._edit(element, [(parts[2], word), *tokens[1:]], source, line)
            return
        command = _command_name(word, source, line)
        params = tokens[1:]
        if command in _IGNORED:
            return
        if command in ("new", "edit", "select"):
            target, params = _target(params, command, source, line)
            cls, name = _class_and_name(target, source, line)
            if command == "new":
                element = self._new(cls, name, source, line)
            else:
                element = self._find(cls, name, source, line)
            self._edit(element, params, source, line)
        elif command == "more":
            if not self._continues:
                raise TopologyError("continuation '~' with no command to continue", line, source)
            if self._active is not None:
                self._edit(self._active, params, source, line)
        elif command in ("open", "close"):
            target, _ = _target(params, command, source, line)
            cls, name = _class_and_name(target, source, line)
            element = self._find(cls, name, source, line)
            if element is not None:
                element.closed = command == "close"
        elif command in ("enable", "disable"):
            target, _ = _target(params, command, source, line)
            cls, name = _class_and_name(target, source, line)
            element = self._find(cls, name, source, line)
            if element is not None:
                element.props.append(("enabled", "yes" if command == "enable" else "no"))
        elif command in ("redirect", "compile"):
            self._redirect(params, path, line, depth)
        elif command == "clear":
            self.elements.clear()
            self.circuit = None
            self._active = None
            self._continues = False

    def _new(self, cls: str, name: str, source: str, line: int) -> _Element | None:
        if cls == "circuit":
            # A circuit is a Vsource called "source" at its bus, plus the circuit's name.
            self.circuit = name
            cls, name = "vsource", "source"
        self._continues = True
        if cls not in _TRACKED:
            self._active = None
            return None
        element = _Element(cls, name, source, line)
        self.elements[(cls, name)] = element  # a second `New` redefines, as in OpenDSS
        self._active = element
        return element

    def _find(self, cls: str, name: str, source: str, line: int) -> _Element | None:
        if cls == "circuit":
            cls, name = "vsource", "source"
        if cls not in _KNOWN_CLASSES:
            raise TopologyError(f"unknown class {cls!r}", line, source)
        self._continues = True
        if cls not in _TRACKED:
            self._active = None
            return None
        element = self.elements.get((cls, name))
        if element is None:
            raise TopologyError(f"{cls}.{name} is not defined", line, source)
        self._active = element
        return element

    def _edit(self, element: _Element | None, params: list[Param], source: str, line: int) -> None:
        if element is None:
            return
        order = _POSITIONAL.get(element.cls, ())
        position = 0
        for key, value in params:
            if key is None:
                if position >= len(order):
                    continue  # a positional value of a property we do not read
                key = order[position]
            elif key in order:
                position = order.index(key)
            position += 1
            if key == "like":
                model = self.elements.get((element.cls, value.lower()))
                if model is None:
                    raise TopologyError(
                        f"like={value}: no {element.cls} of that name", line, source
                    )
                element.props.extend(model.props)
            else:
                element.props.append((key, value))

    def _redirect(self, params: list[Param], path: Path, line: int, depth: int) -> None:
        names = [value for key, value in params if key in (None, "file", "filename")]
        if not names or not names[0]:
            raise TopologyError("redirect needs a file name", line, str(path))
        if depth >= _MAX_DEPTH:
            raise TopologyError(
                "redirects nested too deep (a file redirecting to itself?)", line, str(path)
            )
        target = path.parent / names[0].replace("\\", "/")
        if not target.is_file():
            self.notes.append(f"skipped missing file {target} (redirected from {path}:{line})")
            return
        self.run(target, depth + 1)


def _command_name(word: str, source: str, line: int) -> str:
    lowered = word.lower()
    if lowered in _COMMANDS:
        return lowered
    if lowered in ("m", "~"):
        return "more"
    matches = [command for command in _COMMANDS if command.startswith(lowered)]
    if len(matches) == 1:
        return matches[0]
    if "." in lowered:
        # an implicit edit that lost its `=value`
        raise TopologyError(f"expected Class.Name.property=value, got {word!r}", line, source)
    if matches:
        raise TopologyError(f"ambiguous command {word!r} ({', '.join(matches)})", line, source)
    raise TopologyError(f"unknown command {word!r}", line, source)


def _target(params: list[Param], command: str, source: str, line: int) -> tuple[str, list[Param]]:
    """The element a command names: the first value, or `object=`/`element=`."""
    if params and params[0][0] in (None, "object", "element"):
        return params[0][1], params[1:]
    raise TopologyError(f"{command} needs an element (Class.Name)", line, source)


def _class_and_name(target: str, source: str, line: int) -> tuple[str, str]:
    cls, dot, name = target.partition(".")
    if not dot or not cls or not name:
        raise TopologyError(f"expected Class.Name, got {target!r}", line, source)
    cls = cls.lower()
    if cls not in _KNOWN_CLASSES:
        raise TopologyError(f"unknown class {cls!r} in {target!r}", line, source)
    return cls, name.lower()


def _tokens(text: str) -> list[Param]:
    """Split one line into (property, value) pairs; `!` and `//` start a comment."""
    out: list[Param] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _SPACE:
            i += 1
        if i >= n or text[i] == "!" or text.startswith("//", i):
            return out
        quoted = text[i] in _QUOTES
        word, i = _word(text, i, stop="=")
        j = i
        while j < n and text[j] in " \t":
            j += 1
        if not quoted and j < n and text[j] == "=":
            if not word:
                raise ValueError("'=' with no property name")
            i = j + 1
            while i < n and text[i] in " \t":
                i += 1
            value = ""
            if i < n and text[i] not in ",!" and not text.startswith("//", i):
                value, i = _word(text, i, stop="")
            out.append((word.lower(), value))
        else:
            out.append((None, word))


def _word(text: str, i: int, stop: str) -> tuple[str, int]:
    """One value starting at `i`: quoted or bracketed (without the quotes), or up to a space."""
    n = len(text)
    opener = text[i]
    if opener in _QUOTES:
        end = text.find(_QUOTES[opener], i + 1)
        if end < 0:
            raise ValueError(f"unbalanced {opener!r}")
        return text[i + 1 : end].strip(), end + 1
    start = i
    while (
        i < n
        and text[i] not in _SPACE
        and text[i] not in stop + "!"
        and not text.startswith("//", i)
    ):
        i += 1
    return text[start:i], i


def _flag(value: str) -> bool:
    """OpenDSS reads a yes/no property by its first letter."""
    return value.strip()[:1].lower() in ("y", "t")


def _bus(value: str) -> str:
    """A bus without its node (phase) suffix: `632.1.2.3` is bus `632`."""
    return value.strip().split(".", 1)[0].lower()


def _list(value: str) -> list[str]:
    return [part for part in re.split(r"[\s,]+", value.strip()) if part]


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None  # in-line RPN math such as (8 1000 /): not needed for the tree


@dataclass
class _Windings:
    buses: list[str | None]
    kvs: list[float | None]


class _Circuit:
    """The elements of a script, mapped onto a `NetworkGraph`."""

    def __init__(self, script: _Script, source: str) -> None:
        if script.circuit is None or ("vsource", "source") not in script.elements:
            raise TopologyError("no 'New Circuit' in the script", None, source)
        self.script = script
        self.prefix = script.circuit
        self.graph = NetworkGraph("power", source)
        self.graph.notes.extend(script.notes)
        self._ids: set[str] = set()
        self._parallel: dict[tuple[str, frozenset[str]], str] = {}  # (kind, buses) -> id
        self._connected: set[frozenset[str]] = set()

    def elements(self, *classes: str) -> list[_Element]:
        return [element for element in self.script.elements.values() if element.cls in classes]

    def build(self, progress: Progress | None) -> ImportedNetwork:
        infeeds = self._sources()
        transformers = [
            (element, self._windings(element))
            for element in self.elements("transformer", "autotrans")
            if element.enabled()
        ]
        zone = self._substation(infeeds, transformers)
        protected = self._protected()
        left_out: list[str] = []
        for element, windings in transformers:
            if not element.closed:
                left_out.append(f"{self.prefix}/{element.name}")
                continue
            self._transformer(element, windings, zone)
        for element in self.elements("line", "reactor"):
            if not element.enabled():
                continue
            if not element.closed:
                left_out.append(f"{self.prefix}/{element.name}")
                continue
            self._line(element, zone, protected.get(element.name))
        self._loads()
        if left_out:
            self.graph.notes.append(
                f"{len(left_out)} open element(s) left out (normally-open points): "
                + ", ".join(sorted(left_out))
            )
        return self.graph.build(infeeds, progress)

    def _claim(self, cls: str, name: str) -> str:
        """`prefix/name`, or `prefix/class.name` where two classes share a name."""
        for candidate in (f"{self.prefix}/{name}", f"{self.prefix}/{cls}.{name}"):
            if candidate not in self._ids:
                self._ids.add(candidate)
                return candidate
        raise TopologyError(f"two elements named {cls}.{name}", None, self.graph.source)

    def _sources(self) -> list[str]:
        infeeds: list[str] = []
        for element in self.elements("vsource"):
            if not element.enabled():
                continue
            bus = _bus(element.last("bus1") or "sourcebus")
            device = Device(self._claim("vsource", element.name), "substation")
            self.graph.add_point(bus, device)
            infeeds.append(bus)
        return infeeds

    def _windings(self, element: _Element) -> _Windings:
        windings = _Windings([None, None], [None, None])
        current = 0

        def resize(count: int) -> None:
            windings.buses[count:] = []
            windings.kvs[count:] = []
            windings.buses += [None] * (count - len(windings.buses))
            windings.kvs += [None] * (count - len(windings.kvs))

        def apply(props: list[tuple[str, str]], code: bool) -> None:
            nonlocal current
            for key, value in props:
                if key == "windings":
                    count = int(_number(value) or 0)
                    if count < 1:
                        raise self._error(element, f"bad windings={value}")
                    resize(count)
                elif key == "wdg":
                    number = int(_number(value) or 0)
                    if not 1 <= number <= len(windings.buses):
                        raise self._error(element, f"wdg={value} out of range")
                    current = number - 1
                elif key == "bus" and not code:
                    windings.buses[current] = _bus(value)
                elif key == "buses" and not code:
                    for index, bus in enumerate(_list(value)[: len(windings.buses)]):
                        windings.buses[index] = _bus(bus)
                elif key == "kv":
                    windings.kvs[current] = _number(value)
                elif key == "kvs":
                    for index, kv in enumerate(_list(value)[: len(windings.kvs)]):
                        windings.kvs[index] = _number(kv)
                elif key == "xfmrcode":
                    model = self.script.elements.get(("xfmrcode", value.lower()))
                    if model is None:
                        raise self._error(element, f"xfmrcode={value} is not defined")
                    apply(model.props, code=True)

        apply(element.props, code=False)
        if any(bus is None for bus in windings.buses):
            raise self._error(element, "a winding has no bus")
        return windings

    def _substation(
        self, infeeds: list[str], transformers: list[tuple[_Element, _Windings]]
    ) -> set[str]:
        """The buses of the substation: the source buses, then across the transformer that
        steps down from a source bus and any regulator (one voltage on all windings)."""
        zone = set(infeeds)
        grown = True
        while grown:
            grown = False
            for element, windings in transformers:
                buses = {bus for bus in windings.buses if bus is not None}
                if not element.closed or not buses & zone or buses <= zone:
                    continue
                if _is_regulator(windings) or windings.buses[0] in infeeds:
                    zone |= buses
                    grown = True
        return zone

    def _protected(self) -> dict[str, NodeKind]:
        """Lines a fuse, recloser, relay or switch control acts on, by line name."""
        kinds: dict[str, NodeKind] = {}
        for element in self.elements(*_PROTECTION_KIND):
            if not element.enabled():
                continue
            target = element.last("switchedobj") or element.last("monitoredobj")
            if target is None:
                continue
            cls, _, name = target.lower().partition(".")
            if cls == "line" and name:
                kinds.setdefault(name, _PROTECTION_KIND[element.cls])
        return kinds

    def _transformer(self, element: _Element, windings: _Windings, zone: set[str]) -> None:
        buses = [bus for bus in windings.buses if bus is not None]
        if set(buses) <= zone or _is_regulator(windings):
            for bus in buses[1:]:
                self._connect(buses[0], bus, f"{self.prefix}/{element.name}")
            return
        self._device(element, "transformer", buses)

    def _line(self, element: _Element, zone: set[str], protection: NodeKind | None) -> None:
        bus1, bus2 = element.last("bus1"), element.last("bus2")
        if bus1 is None:
            raise self._error(element, "no bus1")
        if bus2 is None:
            if element.cls == "reactor":
                return  # a shunt reactor: no path
            raise self._error(element, "no bus2")
        a, b = _bus(bus1), _bus(bus2)
        kind: NodeKind | None = protection
        if (a in zone) != (b in zone):
            kind = "feeder"  # the first element out of the substation is the feeder breaker
            if b in zone:
                a, b = b, a
        elif element.cls == "line" and _flag(element.last("switch") or "no"):
            kind = kind or "switch"
        if kind is None:
            self._connect(a, b, f"{self.prefix}/{element.name}")
        else:
            self._device(element, kind, [a, b])

    def _device(self, element: _Element, kind: NodeKind, buses: list[str]) -> None:
        # Single-phase units between the same buses (a bank of three regulators or
        # transformers, a gang of switches) are one piece of equipment to a caller.
        key = (kind, frozenset(buses))
        if key in self._parallel:
            self.graph.notes.append(
                f"{element.cls}.{element.name} merged into {self._parallel[key]} (same buses)"
            )
            return
        device = Device(self._claim(element.cls, element.name), kind)
        self._parallel[key] = device.id
        distinct = list(dict.fromkeys(buses))
        self.graph.insert(device, distinct[0], distinct[1] if len(distinct) > 1 else None)
        for bus in distinct[2:]:
            self.graph.connect(device.id, bus, device.id)

    def _connect(self, a: str, b: str, label: str) -> None:
        pair = frozenset((a, b))
        if pair in self._connected:
            return  # one more phase of a connection already made
        self._connected.add(pair)
        self.graph.connect(a, b, label)

    def _loads(self) -> None:
        by_bus: dict[str, list[_Element]] = {}
        for element in self.elements("load"):
            if element.enabled():
                bus1 = element.last("bus1")
                if bus1 is None:
                    raise self._error(element, "no bus1")
                by_bus.setdefault(_bus(bus1), []).append(element)
        total = 0
        for bus, loads in by_bus.items():
            premises: list[Device] = []
            for load in loads:
                load_id = self._claim("load", load.name)
                count = max(1, int(self._kw(load) / KW_PER_PREMISE + 0.5))
                for index in range(1, count + 1):
                    premise_id = f"{load_id}-{index}"
                    if premise_id in self._ids:
                        raise self._error(load, f"premise id {premise_id!r} is taken")
                    self._ids.add(premise_id)
                    premises.append(Device(premise_id, "premise", customers=1))
            building = Device(
                self._claim("bus", f"bus-{bus}"),
                "building",
                customers=len(premises),
                address=f"Bus {bus}, {self.prefix}",
            )
            self.graph.insert(building, bus)
            for premise in premises:
                self.graph.hang(building.id, premise)
            total += len(premises)
        if by_bus:
            self.graph.notes.append(
                f"OpenDSS loads carry no customer counts: synthesised {total} premise(s) of one "
                f"customer each, one per {KW_PER_PREMISE:g} kW of load (at least one per load), "
                f"under one building per load bus ({len(by_bus)}), addressed 'Bus <name>, "
                f"{self.prefix}'"
            )

    def _kw(self, load: _Element) -> float:
        """A load's kW: `kW=`, else `kVA=` times `pf=`, else the OpenDSS default of 10 kW."""
        for key, value in reversed(load.props):
            if key == "kw":
                number = _number(value)
                if number is None or number < 0:
                    raise self._error(load, f"cannot read kW={value}")
                return number
            if key == "kva":
                kva = _number(value)
                pf = _number(load.last("pf") or "0.88")
                if kva is None or pf is None:
                    raise self._error(load, f"cannot read kVA={value}")
                return kva * abs(pf)
        return 10.0

    def _error(self, element: _Element, message: str) -> TopologyError:
        return TopologyError(
            f"{element.cls}.{element.name}: {message}", element.line, element.source
        )


def _is_regulator(windings: _Windings) -> bool:
    """All windings at one voltage: a regulator (or an isolating transformer), not a step."""
    kvs = [kv for kv in windings.kvs if kv is not None]
    if len(kvs) < len(windings.kvs):
        # OpenDSS gives a winding without kV the default 12.47 kV
        kvs += [12.47] * (len(windings.kvs) - len(kvs))
    return max(kvs) - min(kvs) <= 1e-6 * max(kvs)
