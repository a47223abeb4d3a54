"""Offline replay: the live correlators run over a list of inbound events, without Kafka.

Deterministic: events are taken in the order given (as a topic partition would deliver them),
each domain keeps its own state, and every domain is flushed at the end.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from correlators.correlator import Correlator
from correlators.routing import Inbound, Unroutable, route
from correlators.state import DomainState
from events.derived import DerivedBase, IncidentOpened
from projections.incidents import IncidentBook


@dataclass
class ReplayResult:
    derived: list[DerivedBase] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)
    book: IncidentBook = field(default_factory=IncidentBook)

    def summary(self) -> dict[str, Any]:
        """`{"incidents": [...]}` as `outage replay --summary` writes it."""
        incidents = sorted(self.book.incidents.values(), key=lambda v: (v.opened_at, v.incident_id))
        return {
            "incidents": [
                {
                    "incident_id": v.incident_id,
                    "device_id": v.device_id,
                    "state": v.state,
                    "cause": v.cause,
                    "opened_at": v.opened_at.isoformat(),
                    "call_ids": list(v.call_ids),
                }
                for v in incidents
            ],
            "rejected": self.rejected,
        }


def replay(correlator: Correlator, events: Iterable[Inbound]) -> ReplayResult:
    """Correlate `events` in order and return every derived event and the incident book."""
    result = ReplayResult()
    states: dict[str, DomainState] = {}
    incident_domains: dict[str, str] = {}  # for operator actions, as the live book knows them
    for event in events:
        try:
            routed = route(correlator.topology, event, incident_domains)
        except Unroutable as error:
            result.rejected.append({"event_id": event.event_id, "reason": error.reason})
            continue
        for item in routed:
            state = states.setdefault(item.domain, correlator.initial_state(item.domain))
            decided = correlator.handle(state, item)
            incident_domains |= {
                d.incident_id: d.domain for d in decided if isinstance(d, IncidentOpened)
            }
            result.derived += decided
    for domain in sorted(states):
        result.derived += correlator.flush(states[domain])
    result.book.apply_all(result.derived)
    return result
