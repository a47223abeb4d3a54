"""The network model of a utility: nodes, the validated tree they form, and queries on it.

Owns what a correlator needs to know about the network: who feeds whom (ancestors, the root
as the correlation domain), how many customers sit below a node, and where a hotline call
lands (`resolve`). Pure: standard library and pydantic; address matching lives in
`topology.address` and is loaded on first use.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from topology.address import AddressIndex, AddressMatch

Utility = Literal["heat", "power", "water", "cable", "telecom"]
NodeKind = Literal[
    "premise",
    "building",
    "heat_substation",
    "heat_source",
    "transformer",
    "fuse",
    "switch",
    "feeder",
    "substation",
    "optical_node",
    "cable_cabinet",
    "pipe",
    "lateral",
]
ResolvedBy = Literal["premise_id", "building_id", "node_id", "address", "address_fuzzy"]

# A fuzzy address match below this is a guess, not a resolution.
FUZZY_CUTOFF = 90.0


class Node(BaseModel):
    """One element of the network; `parent` is the element that feeds it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    kind: NodeKind
    parent: str | None
    utility: Utility
    customers: int = Field(default=0, ge=0)
    address: str | None = None
    lat: float | None = None
    lon: float | None = None


class Suggestion(BaseModel):
    """A node offered for an address that did not resolve, with its match score (0-100)."""

    model_config = ConfigDict(frozen=True)

    node_id: str
    address: str
    score: float


class Resolution(BaseModel):
    """Where a call landed and which hint placed it there."""

    model_config = ConfigDict(frozen=True)

    node_id: str
    how: ResolvedBy
    score: float = 100.0


class TopologyError(ValueError):
    """A network description that cannot form a tree; the message names the line (and file)."""

    def __init__(self, message: str, line: int | None = None, source: str | None = None) -> None:
        self.reason = message
        self.line = line
        self.source = source
        super().__init__(_locate(source, line) + message)


class UnresolvedLocation(LookupError):
    """A call's location hints match no node; `suggestions` are the nearest addresses."""

    def __init__(self, reason: str, suggestions: Sequence[Suggestion] = ()) -> None:
        self.reason = reason
        self.suggestions = list(suggestions)
        super().__init__(reason)


def _locate(source: str | None, line: int | None) -> str:
    if source is not None and line is not None:
        return f"{source}, line {line}: "
    if source is not None:
        return f"{source}: "
    if line is not None:
        return f"line {line}: "
    return ""


class Topology:
    """A validated forest of nodes. Immutable; build it with `from_nodes` or `topology.load`."""

    def __init__(
        self,
        nodes: Iterable[Node],
        lines: Sequence[int] | None = None,
        *,
        sources: Sequence[str | None] | None = None,
    ) -> None:
        node_list = list(nodes)
        if lines is not None and len(lines) != len(node_list):
            raise ValueError(f"got {len(lines)} line numbers for {len(node_list)} nodes")
        if sources is not None and len(sources) != len(node_list):
            raise ValueError(f"got {len(sources)} sources for {len(node_list)} nodes")
        where = [
            (
                sources[i] if sources is not None else None,
                lines[i] if lines is not None else i + 1,
            )
            for i in range(len(node_list))
        ]
        by_id = _check_unique(node_list, where)
        _check_parents(node_list, where, by_id)
        _check_acyclic(node_list, where, by_id)

        children: dict[str, list[str]] = {node.id: [] for node in node_list}
        for node in node_list:
            if node.parent is not None:
                children[node.parent].append(node.id)
        self._nodes: dict[str, Node] = {node.id: node for node in node_list}
        self._children: dict[str, tuple[str, ...]] = {
            node_id: tuple(sorted(kids)) for node_id, kids in children.items()
        }

        # Breadth-first from the roots: parents come before children, so the reverse order
        # lets each subtree total be summed in one pass without recursion.
        order = sorted(node.id for node in node_list if node.parent is None)
        self._depth: dict[str, int] = dict.fromkeys(order, 0)
        for node_id in order:
            for child in self._children[node_id]:
                self._depth[child] = self._depth[node_id] + 1
                order.append(child)
        self._customers: dict[str, int] = {}
        for node_id in reversed(order):
            below = sum(self._customers[child] for child in self._children[node_id])
            self._customers[node_id] = max(self._nodes[node_id].customers, below)
        # One index over every network, and one per utility, built on first use.
        self._address_index: dict[str | None, AddressIndex] = {}

    @classmethod
    def from_nodes(
        cls,
        nodes: Iterable[Node],
        lines: Sequence[int] | None = None,
        *,
        sources: Sequence[str | None] | None = None,
    ) -> Topology:
        """Validate and build; errors name `lines[i]` (else the 1-based position) of node i."""
        return cls(nodes, lines, sources=sources)

    @property
    def nodes(self) -> Mapping[str, Node]:
        return MappingProxyType(self._nodes)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    def kinds(self) -> dict[str, int]:
        """How many nodes of each kind, by kind name."""
        return dict(sorted(Counter(node.kind for node in self._nodes.values()).items()))

    def roots(self) -> list[str]:
        """The correlation domains: the nodes nothing feeds, sorted."""
        return sorted(node.id for node in self._nodes.values() if node.parent is None)

    def node(self, node_id: str) -> Node:
        try:
            return self._nodes[node_id]
        except KeyError:
            raise KeyError(f"unknown node {node_id!r}") from None

    def parent(self, node_id: str) -> str | None:
        return self.node(node_id).parent

    def children(self, node_id: str) -> tuple[str, ...]:
        self.node(node_id)
        return self._children[node_id]

    def ancestors(self, node_id: str) -> tuple[str, ...]:
        """Parent first, up to the root; excludes `node_id` itself."""
        out: list[str] = []
        current = self.node(node_id).parent
        while current is not None:
            out.append(current)
            current = self._nodes[current].parent
        return tuple(out)

    def path(self, node_id: str) -> tuple[str, ...]:
        """Root first, ending with `node_id`."""
        return (*reversed(self.ancestors(node_id)), node_id)

    def root(self, node_id: str) -> str:
        """The top of the tree holding `node_id`: calls under different roots never correlate."""
        return self.path(node_id)[0]

    def covers(self, ancestor_id: str, node_id: str) -> bool:
        """True if `ancestor_id` is `node_id` or feeds it."""
        self.node(ancestor_id)
        return ancestor_id == node_id or ancestor_id in self.ancestors(node_id)

    def child_towards(self, ancestor_id: str, node_id: str) -> str | None:
        """The child of `ancestor_id` on the way down to `node_id`; None if not strictly below."""
        self.node(ancestor_id)
        path = self.path(node_id)
        if ancestor_id not in path[:-1]:
            return None
        return path[path.index(ancestor_id) + 1]

    def depth(self, node_id: str) -> int:
        """Edges between `node_id` and its root (a root has depth 0)."""
        self.node(node_id)
        return self._depth[node_id]

    def customers_under(self, node_id: str) -> int:
        """Customers fed through `node_id`: its own count or its children's sum, whichever is
        larger (a building may carry a count while its flats are not modelled)."""
        self.node(node_id)
        return self._customers[node_id]

    def premises_under(self, node_id: str) -> tuple[str, ...]:
        """Premises at or below `node_id`, sorted."""
        stack = [self.node(node_id).id]
        found: list[str] = []
        while stack:
            current = stack.pop()
            if self._nodes[current].kind == "premise":
                found.append(current)
            stack.extend(self._children[current])
        return tuple(sorted(found))

    def resolve(
        self,
        *,
        premise_id: str | None = None,
        building_id: str | None = None,
        node_id: str | None = None,
        address: str | None = None,
        utility: str | None = None,
    ) -> Resolution:
        """Place a call on a node, trying the hints from most to least precise.

        A hint that fails falls through to the next one given (a mistyped premise id with a
        good address still lands); if none lands, the error gives the first hint's reason.
        With `utility`, an address resolves among that utility's nodes only: one street
        address is often on the heat and the power network both.
        """
        reasons: list[str] = []
        for given, kind, how in (
            (premise_id, "premise", "premise_id"),
            (building_id, "building", "building_id"),
            (node_id, None, "node_id"),
        ):
            if given is None or not given.strip():
                continue
            found = self._nodes.get(given.strip())
            if found is None:
                reasons.append(f"unknown {kind or 'node'} {given!r}")
            elif kind is not None and found.kind != kind:
                reasons.append(f"{given!r} is a {found.kind}, not a {kind}")
            else:
                return Resolution(node_id=found.id, how=how)
        suggestions: list[Suggestion] = []
        if address is not None and address.strip():
            index = self._addresses(utility)
            exact = index.exact(address)
            if exact is not None:
                return Resolution(node_id=exact.node_id, how="address")
            near = index.fuzzy(address, FUZZY_CUTOFF)
            if near is not None:
                return Resolution(node_id=near.node_id, how="address_fuzzy", score=near.score)
            where = f" on the {utility} network" if utility else ""
            reasons.append(f"no node matches address {address!r}{where}")
            suggestions = self.suggest(address, utility=utility)
        if not reasons:
            raise UnresolvedLocation("no location given")
        raise UnresolvedLocation(reasons[0], suggestions)

    def suggest(self, text: str, limit: int = 5, utility: str | None = None) -> list[Suggestion]:
        """Addresses for type-ahead: prefix matches on the normalised text, then fuzzy ones."""
        return [_suggestion(match) for match in self._addresses(utility).suggest(text, limit)]

    def _addresses(self, utility: str | None = None) -> AddressIndex:
        if utility not in self._address_index:
            from topology.address import AddressIndex

            # Several nodes may share an address (a building and the substation in its
            # basement): the building wins, then the deepest node, then the lowest id.
            carriers = sorted(
                (
                    node
                    for node in self._nodes.values()
                    if node.address and utility in (None, node.utility)
                ),
                key=lambda node: (node.kind != "building", -self._depth[node.id], node.id),
            )
            self._address_index[utility] = AddressIndex(
                (node.id, node.address) for node in carriers if node.address
            )
        return self._address_index[utility]


def _suggestion(match: AddressMatch) -> Suggestion:
    return Suggestion(node_id=match.node_id, address=match.address, score=match.score)


Where = tuple[str | None, int]


def _check_unique(nodes: Sequence[Node], where: Sequence[Where]) -> dict[str, int]:
    by_id: dict[str, int] = {}
    for i, node in enumerate(nodes):
        first = by_id.setdefault(node.id, i)
        if first != i:
            source, line = where[first]
            earlier = f"on line {line}" if source == where[i][0] else f"at {source}, line {line}"
            raise TopologyError(
                f"duplicate id {node.id!r} (first {earlier})", line=where[i][1], source=where[i][0]
            )
    return by_id


def _check_parents(nodes: Sequence[Node], where: Sequence[Where], by_id: dict[str, int]) -> None:
    for i, node in enumerate(nodes):
        if node.parent is not None and node.parent not in by_id:
            raise TopologyError(
                f"unknown parent {node.parent!r} for node {node.id!r}",
                line=where[i][1],
                source=where[i][0],
            )


def _check_acyclic(nodes: Sequence[Node], where: Sequence[Where], by_id: dict[str, int]) -> None:
    done: set[str] = set()
    for node in nodes:
        walk: list[str] = []
        on_walk: set[str] = set()
        current: str | None = node.id
        while current is not None and current not in done and current not in on_walk:
            walk.append(current)
            on_walk.add(current)
            current = nodes[by_id[current]].parent
        if current is not None and current in on_walk:
            cycle = walk[walk.index(current) :]
            # Blame the row that closed the loop: the cycle member that comes last.
            last = max(cycle, key=lambda node_id: by_id[node_id])
            start = cycle.index(last)
            shown = [*cycle[start:], *cycle[:start], last]
            raise TopologyError(
                "cycle through " + " -> ".join(shown),
                line=where[by_id[last]][1],
                source=where[by_id[last]][0],
            )
        done.update(walk)
