"""From a meshed description of a network to the radial tree the correlator works on.

Network models describe connectivity: buses or pipe junctions joined by lines, cables, pipes,
transformers and switches, some of them open. The correlator needs "who feeds whom". Every
importer describes its model as a `NetworkGraph` (points, devices, connections), and
`NetworkGraph.build` walks it from the infeeds over closed connections only. Each device's
parent is the nearest device on its way back to an infeed; plain buses and lines in between
collapse away. A model that is not radial (a ring closed through switches, or two infeeds
meeting) is refused with the loop spelled out, because a correlator given a guessed direction
of supply would blame the wrong device.

Pure: no files, no third-party libraries.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from topology.model import Node, NodeKind, TopologyError, Utility

# progress(done, total): called now and then while walking a large model
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Device:
    """Something the correlator can blame or a customer can call from: becomes one `Node`."""

    id: str
    kind: NodeKind
    customers: int = 0
    address: str | None = None
    lat: float | None = None
    lon: float | None = None


class NotRadial(TopologyError):
    """The closed connections form a loop; `loop` lists it point, connection, point, ..."""

    def __init__(self, loop: Sequence[str], source: str | None = None) -> None:
        self.loop = tuple(loop)
        super().__init__("not radial: closed loop " + " -> ".join(self.loop), None, source)


@dataclass
class ImportedNetwork:
    """The tree, in an order where every parent comes before its children."""

    nodes: list[Node]
    # devices no infeed reaches over closed connections (left out of `nodes`)
    unfed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class _Edge:
    a: str
    b: str
    label: str


class NetworkGraph:
    """Points joined by connections; a point may be a device. Build once all is added."""

    def __init__(self, utility: Utility, source: str | None = None) -> None:
        self.utility: Utility = utility
        self.source = source
        self._devices: dict[str, Device] = {}  # point -> the device that point is
        self._adjacent: dict[str, list[int]] = {}
        self._edges: list[_Edge] = []
        self._hangs: dict[str, list[Device]] = {}  # point -> devices hanging off it (loads)
        self.notes: list[str] = []

    def add_point(self, point: str, device: Device | None = None) -> None:
        """A bus, junction or device; adding a known point again only attaches `device`."""
        self._adjacent.setdefault(point, [])
        if device is not None:
            if point in self._devices and self._devices[point] != device:
                raise TopologyError(f"two devices at point {point!r}", None, self.source)
            self._devices[point] = device

    def connect(self, a: str, b: str, label: str) -> None:
        """A closed conductor between two points (line, cable, pipe, closed switch)."""
        if a == b:
            return  # a zero-length connection joins nothing
        self.add_point(a)
        self.add_point(b)
        self._adjacent[a].append(len(self._edges))
        self._adjacent[b].append(len(self._edges))
        self._edges.append(_Edge(a, b, label))

    def insert(self, device: Device, a: str, b: str | None = None) -> None:
        """A device in series between points `a` and `b` (a transformer, a switch, a fuse), or
        at the end of `a` when `b` is None. Its own point is named by its id."""
        self.add_point(device.id, device)
        self.connect(a, device.id, device.id)
        if b is not None:
            self.connect(device.id, b, device.id)

    def hang(self, point: str, device: Device) -> None:
        """A leaf device fed from `point` (a building or premise); never part of a loop."""
        self.add_point(point)
        self._hangs.setdefault(point, []).append(device)

    def has_point(self, point: str) -> bool:
        return point in self._adjacent

    def build(self, infeeds: Iterable[str], progress: Progress | None = None) -> ImportedNetwork:
        """Walk from every infeed (each must be a device point) over closed connections."""
        roots = list(dict.fromkeys(infeeds))
        for root in roots:
            if root not in self._devices:
                raise TopologyError(f"infeed {root!r} is not a device point", None, self.source)
        owner: dict[str, str] = {}  # point -> id of the nearest device at or above it
        via: dict[str, int | None] = {}  # point -> edge it was reached by
        nodes: list[Node] = []
        total = len(self._adjacent)
        queue: deque[str] = deque()
        for root in roots:
            via[root] = None
            owner[root] = self._devices[root].id
            nodes.append(self._node(self._devices[root], None))
            queue.append(root)
        while queue:
            point = queue.popleft()
            if progress is not None and len(via) % 1000 == 0:
                progress(len(via), total)
            for leaf in self._hangs.get(point, ()):
                nodes.append(self._node(leaf, owner[point]))
            for index in self._adjacent[point]:
                if index == via[point]:
                    continue
                edge = self._edges[index]
                other = edge.b if edge.a == point else edge.a
                if other in via:  # reached twice: the edge closes a ring
                    raise NotRadial(self._loop(point, other, edge, via), self.source)
                via[other] = index
                device = self._devices.get(other)
                if device is not None:
                    nodes.append(self._node(device, owner[point]))
                    owner[other] = device.id
                else:
                    owner[other] = owner[point]
                queue.append(other)
        if progress is not None:
            progress(total, total)
        unfed = sorted(
            [device.id for point, device in self._devices.items() if point not in via]
            + [
                leaf.id
                for point, leaves in self._hangs.items()
                if point not in via
                for leaf in leaves
            ]
        )
        return ImportedNetwork(nodes=nodes, unfed=unfed, notes=list(self.notes))

    def _node(self, device: Device, parent: str | None) -> Node:
        return Node(
            id=device.id,
            kind=device.kind,
            parent=parent,
            utility=self.utility,
            customers=device.customers,
            address=device.address,
            lat=device.lat,
            lon=device.lon,
        )

    def _loop(self, a: str, b: str, closing: _Edge, via: dict[str, int | None]) -> list[str]:
        """The ring a ... common point ... b, closed by `closing`; a device in series is its
        point and the label of both its connections, so repeats are shown once."""
        ring = self._ring(a, b, closing, via)
        return [step for i, step in enumerate(ring) if i == 0 or step != ring[i - 1]]

    def _ring(self, a: str, b: str, closing: _Edge, via: dict[str, int | None]) -> list[str]:
        up_a = self._way_up(a, via)
        up_b = self._way_up(b, via)
        common = set(up_a[::2]) & set(up_b[::2])
        if common:
            meet = next(p for p in up_a[::2] if p in common)
            left = up_a[: up_a.index(meet) + 1]
            right = up_b[: up_b.index(meet)]
            return [meet, *reversed(right), closing.label, *left]
        # fed from two infeeds: from one infeed down to `b`, across, and up to the other
        return [*reversed(up_b), closing.label, *up_a]

    def _way_up(self, point: str, via: dict[str, int | None]) -> list[str]:
        """point, edge label, point, ... up to the infeed."""
        way = [point]
        while (index := via[point]) is not None:
            edge = self._edges[index]
            point = edge.a if edge.b == point else edge.b
            way += [edge.label, point]
        return way
