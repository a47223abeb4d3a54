"""Placing inbound events on the network: the node a call or signal concerns and its domain.

The correlation domain is the root of the tree the node hangs from (a substation, a heat
source, a head end), so one partition sees every node a roll-up can reach. Used alike by the
HTTP API (to answer 4xx at once), the stream agents and the offline replay.
"""

from collections import defaultdict
from collections.abc import Mapping

from events.inbound import (
    CallReported,
    OperatorActions,
    PlannedWorkCancelled,
    PlannedWorkScheduled,
    ScadaSignal,
)
from events.internal import Routed
from topology.model import Topology, UnresolvedLocation

Inbound = CallReported | ScadaSignal | PlannedWorkScheduled | PlannedWorkCancelled | OperatorActions


class Unroutable(ValueError):
    """The event names no place on the network we know; `reason` says which and why."""

    def __init__(self, reason: str, suggestions: list[dict[str, object]] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.suggestions = suggestions or []


def route(
    topology: Topology, event: Inbound, incident_domains: Mapping[str, str] | None = None
) -> list[Routed]:
    """One `Routed` per domain the event concerns (several only for planned works).

    An operator action goes to its incident's domain, found in `incident_domains` (the
    incident book's, or the replay's own).
    """
    if isinstance(event, OperatorActions):
        domain = incident_domains.get(event.incident_id) if incident_domains is not None else None
        if domain is None:
            raise Unroutable(f"unknown incident {event.incident_id!r}")
        return [Routed(domain=domain, event=event)]
    if isinstance(event, CallReported):
        return [_route_call(topology, event)]
    if isinstance(event, ScadaSignal):
        if event.device_id not in topology:
            raise Unroutable(f"unknown device {event.device_id!r}")
        node = event.device_id
        return [
            Routed(domain=topology.root(node), node_id=node, resolved_by="node_id", event=event)
        ]
    if isinstance(event, PlannedWorkCancelled) and not event.device_ids:
        raise Unroutable("planned_work_cancelled needs the device_ids of the work it cancels")
    unknown = [d for d in event.device_ids if d not in topology]
    if unknown:
        raise Unroutable("unknown device(s) " + ", ".join(repr(d) for d in unknown))
    domains: dict[str, list[str]] = defaultdict(list)
    for device in event.device_ids:
        domains[topology.root(device)].append(device)
    return [Routed(domain=domain, event=event) for domain in sorted(domains)]


def _route_call(topology: Topology, call: CallReported) -> Routed:
    try:
        found = topology.resolve(
            premise_id=call.premise_id,
            building_id=call.building_id,
            address=call.address,
            utility=call.utility,
        )
    except UnresolvedLocation as error:
        raise Unroutable(error.reason, [s.model_dump() for s in error.suggestions]) from None
    node = topology.node(found.node_id)
    if node.utility != call.utility:
        raise Unroutable(
            f"{node.kind} {node.id!r} is on the {node.utility} network, "
            f"but the call is about {call.utility}"
        )
    return Routed(domain=topology.root(node.id), node_id=node.id, resolved_by=found.how, event=call)
