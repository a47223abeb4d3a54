"""The network model of a utility: the tree of nodes calls and signals are correlated on.

`model` holds the pure model and queries, `address` the address matching, `load` the file
formats, `samples` two small networks shipped for tests and demos.
"""

from topology.load import load_topologies, load_topology, topology_from_rows
from topology.model import (
    Node,
    NodeKind,
    Resolution,
    Suggestion,
    Topology,
    TopologyError,
    UnresolvedLocation,
    Utility,
)

__all__ = [
    "Node",
    "NodeKind",
    "Resolution",
    "Suggestion",
    "Topology",
    "TopologyError",
    "UnresolvedLocation",
    "Utility",
    "load_topologies",
    "load_topology",
    "topology_from_rows",
]
