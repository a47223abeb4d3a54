"""Offline replay: the live correlators run over a list of inbound events, without Kafka.

Deterministic: events are taken in the order given (as a topic partition would deliver them),
each domain keeps its own state, and every domain is flushed at the end. An `operator` may stand
in for the shift lead: it sees every derived event and answers with operator actions, which are
correlated at once (records without restorations need someone to close what went quiet).
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from correlators.correlator import Correlator
from correlators.routing import Inbound, Unroutable, route
from correlators.state import DomainState
from events.derived import DerivedBase, IncidentOpened
from events.inbound import OperatorActions
from events.internal import Routed, Tick
from projections.incidents import IncidentBook

# A scripted shift lead: the actions it takes on seeing one derived event.
Operator = Callable[[DerivedBase], list[OperatorActions]]


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


def replay(
    correlator: Correlator, events: Iterable[Inbound], operator: Operator | None = None
) -> ReplayResult:
    """Correlate `events` in order and return every derived event and the incident book."""
    result = ReplayResult()
    states: dict[str, DomainState] = {}
    incident_domains: dict[str, str] = {}  # for operator actions, as the live book knows them

    def decide(domain: str, item: Routed | Tick) -> list[OperatorActions]:
        state = states.setdefault(domain, correlator.initial_state(domain))
        decided = correlator.handle(state, item)
        incident_domains.update(
            {d.incident_id: d.domain for d in decided if isinstance(d, IncidentOpened)}
        )
        result.derived += decided
        return [a for d in decided for a in operator(d)] if operator else []

    def feed(event: Inbound) -> None:
        try:
            routed = route(correlator.topology, event, incident_domains)
        except Unroutable as error:
            result.rejected.append({"event_id": event.event_id, "reason": error.reason})
            return
        for item in routed:
            if operator is not None:
                # Timers due before this event fire first, and the operator answers them
                # before the event is placed.
                for action in decide(
                    item.domain, Tick(domain=item.domain, occurred_at=item.occurred_at)
                ):
                    feed(action)
            for action in decide(item.domain, item):
                feed(action)

    for event in events:
        feed(event)
    for domain in sorted(states):
        result.derived += correlator.flush(states[domain])
    result.book.apply_all(result.derived)
    return result
