"""Replaying public records and saying what the service made of them, as a table and JSON."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from correlators.correlator import Correlator
from correlators.replay import ReplayResult, replay
from correlators.rules import CorrelationRules
from events.derived import DeadlinePassed, DerivedBase, IncidentStale
from events.inbound import IncidentResolved, OperatorActions
from records.nyc311 import read_nyc311
from records.union_power import RULES as UNION_POWER_RULES
from records.union_power import read_union_power
from topology import Topology


class IncidentLine(BaseModel):
    device_id: str
    address: str | None
    device_kind: str
    opened_at: str
    reports: int
    state: str


class RecordsSummary(BaseModel):
    source: str
    events: int
    rejected: int
    network_nodes: int
    incidents: int
    incidents_by_kind: dict[str, int]
    reports_in_incidents: int
    reports_individual: int
    reports_pending: int
    largest: list[IncidentLine]
    notes: list[str]

    def table(self) -> str:
        lines = [
            f"{self.source}",
            f"  events replayed        {self.events} ({self.rejected} rejected)",
            f"  network nodes          {self.network_nodes}",
            f"  incidents              {self.incidents}  "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.incidents_by_kind.items())),
            f"  reports in incidents   {self.reports_in_incidents}",
            f"  reports individual     {self.reports_individual}",
            f"  reports still pending  {self.reports_pending}",
            "  largest incidents:",
        ]
        lines += [
            f"    {i.opened_at}  {i.device_kind:10} {i.address or i.device_id:40} "
            f"{i.reports:>4} reports  {i.state}"
            for i in self.largest
        ]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def replay_nyc311(paths: Sequence[str | Path], rules: CorrelationRules) -> RecordsSummary:
    complaints = read_nyc311(paths)
    result = replay(Correlator(complaints.topology, rules), complaints.calls, close_when_quiet)
    notes = [f"{complaints.skipped} heating complaint(s) without an address left out"]
    stamps = {c.occurred_at for c in complaints.calls}
    if len(stamps) == 1:
        notes.append("every complaint carries the same timestamp: they arrive as one burst")
    return summarise(
        ", ".join(map(str, paths)), complaints.topology, len(complaints.calls), result, notes
    )


def replay_union_power(
    paths: Sequence[str | Path], rules: CorrelationRules | None
) -> RecordsSummary:
    log = read_union_power(paths)
    rules = rules or CorrelationRules.load(UNION_POWER_RULES)
    result = replay(Correlator(log.topology, rules), log.events, close_when_quiet)
    notes = [
        f"{log.duplicates} record(s) seen in two exports counted once",
        "records without a feeder (whole-substation supply loss) replayed as a SCADA trip",
        "a scripted shift lead closes incidents that go stale or pass their deadline",
    ]
    return summarise(", ".join(map(str, paths)), log.topology, len(log.events), result, notes)


def close_when_quiet(event: DerivedBase) -> list[OperatorActions]:
    """The shift lead of a replay: records never say when supply came back, so whoever is on
    shift closes an incident once it goes stale (no new report for the utility's
    `stale_after`) or passes its handling deadline, as the alerts ask them to."""
    if not isinstance(event, IncidentStale | DeadlinePassed):
        return []
    return [
        IncidentResolved(
            event_id=f"replay-close/{event.event_id}",
            occurred_at=event.occurred_at,
            incident_id=event.incident_id,
            by="replay",
            note=f"closed on {event.type}: the records say nothing of restoration",
        )
    ]


def summarise(
    source: str,
    topology: Topology,
    events: int,
    result: ReplayResult,
    notes: list[str],
    top: int = 10,
) -> RecordsSummary:
    book = result.book
    views = [v for v in book.incidents.values() if v.merged_into is None]
    outcomes = Counter(
        "pending" if o == "pending" else "individual" if o == "individual" else "incident"
        for o in book.call_outcomes.values()
    )
    largest = sorted(views, key=lambda v: (-len(v.call_ids), v.opened_at, v.incident_id))[:top]
    return RecordsSummary(
        source=source,
        events=events,
        rejected=len(result.rejected),
        network_nodes=len(topology),
        incidents=len(views),
        incidents_by_kind=dict(Counter(v.device_kind for v in views)),
        reports_in_incidents=outcomes["incident"],
        reports_individual=outcomes["individual"],
        reports_pending=outcomes["pending"],
        largest=[
            IncidentLine(
                device_id=v.device_id,
                address=topology.node(v.device_id).address,
                device_kind=v.device_kind,
                opened_at=v.opened_at.isoformat(timespec="minutes"),
                reports=len(v.call_ids),
                state=v.state,
            )
            for v in largest
        ],
        notes=notes,
    )
