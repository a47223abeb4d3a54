"""Pure mapping from events to table rows: what the sink writes and a rebuild writes again.

`Projector.rows(message)` turns one message of an inbound topic or of the incident stream
into rows per table. Rows carry only what the event says, so writing the same event twice
gives identical rows, which the ReplacingMergeTree tables collapse.

Personal data: the caller's phone number goes only to `call_contacts` (operational, for
callbacks); the analytics tables hold a keyed hash (HMAC) of the reporter, so repeat callers
can be counted but a table dump cannot be turned back into numbers.
"""

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from correlators.correlator import caller_key
from correlators.routing import Unroutable, route
from events.codec import EventRejected, decode_derived, decode_inbound
from events.derived import (
    AcknowledgementRecorded,
    AlertRaised,
    CallAttached,
    CauseRecorded,
    DerivedBase,
    EtrRecorded,
    IncidentConfirmed,
    IncidentEscalated,
    IncidentOpened,
    IncidentRestored,
    IncidentsMerged,
    IncidentStale,
)
from events.inbound import CallReported, PlannedWorkCancelled, PlannedWorkScheduled, ScadaSignal
from topology.model import Topology

Rows = dict[str, list[dict[str, Any]]]
INBOUND_TOPICS = ("calls", "history", "scada", "planned-works")  # history: offline calls


def keyed_hash(key: bytes, value: str) -> str:
    """HMAC-SHA256 of a reporter, shortened: stable for counting, useless without the key."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:20]


def area_of(path: tuple[str, ...] | list[str]) -> str:
    """The area a node belongs to: the child of its root (feeder, heat substation), else root."""
    return path[1] if len(path) > 1 else (path[0] if path else "")


class IncidentRow(BaseModel):
    """The current state of one incident, as the `incidents` table holds it."""

    incident_id: str
    version: int
    domain: str
    device_id: str
    device_kind: str
    utility: str
    area: str
    state: str
    cause: str
    planned: int
    work_id: str
    etr: datetime | None
    opened_at: datetime
    confirmed_at: datetime | None
    restored_at: datetime | None
    updated_at: datetime
    customers_affected: int
    merged_into: str
    acknowledged_by: str = ""
    acknowledged_at: datetime | None = None
    resolved_by: str = ""


@dataclass
class Projector:
    """Turns messages into rows; keeps the current incident rows it has seen.

    `load_incident` fetches an incident row the projector has not seen (after a restart) from
    the store; it is the only I/O, injected so this module stays pure.
    """

    topology: Topology
    hash_key: bytes
    load_incident: Callable[[str], IncidentRow | None] = lambda _: None
    incidents: dict[str, IncidentRow] = field(default_factory=dict)

    def rows(self, topic: str, payload: bytes) -> Rows:
        """Rows for one message; an undecodable message yields none (it is on dead-letter)."""
        try:
            if topic in INBOUND_TOPICS:
                return self._inbound_rows(decode_inbound(payload))
            return self._derived_rows(decode_derived(payload))
        except EventRejected:
            return {}

    # -- inbound ----------------------------------------------------------------------------

    def _inbound_rows(self, event: Any) -> Rows:
        recorded = event.recorded_at or event.occurred_at
        if isinstance(event, CallReported):
            try:
                routed = route(self.topology, event)[0]
                node = routed.node_id or ""
                domain, path = routed.domain, self.topology.path(node)
            except Unroutable:
                node, domain, path = "", "", ()
            caller = caller_key(event.caller, self.hash_key)  # as the correlator keys it
            # Equal to the reporter hash on the incident stream when the caller is the
            # reporter, so the two tables join on it.
            caller_hash = keyed_hash(self.hash_key, caller) if caller else ""
            rows: Rows = {
                "calls": [
                    {
                        "event_id": event.event_id,
                        "occurred_at": event.occurred_at,
                        "recorded_at": recorded,
                        "utility": event.utility,
                        "domain": domain,
                        "area": area_of(path),
                        "node_id": node,
                        "premise_id": event.premise_id or "",
                        "building_id": event.building_id or "",
                        "caller_hash": caller_hash,
                        "symptom": event.symptom,
                        "scope": event.scope,
                        "tags": list(event.tags),
                        "has_notes": int(bool(event.notes)),
                    }
                ]
            }
            if event.caller:
                rows["call_contacts"] = [
                    {
                        "call_id": event.event_id,
                        "occurred_at": event.occurred_at,
                        "caller": event.caller,
                        "caller_hash": caller_hash,
                    }
                ]
            return rows
        if isinstance(event, ScadaSignal):
            known = event.device_id in self.topology
            return {
                "scada_signals": [
                    {
                        "event_id": event.event_id,
                        "occurred_at": event.occurred_at,
                        "recorded_at": recorded,
                        "domain": self.topology.root(event.device_id) if known else "",
                        "device_id": event.device_id,
                        "signal": event.signal,
                        "quality": event.quality,
                    }
                ]
            }
        if not isinstance(event, PlannedWorkScheduled | PlannedWorkCancelled):
            # Operator actions reach analytics as what they did, on the incident stream
            # (acknowledgement, cause, ETR, restoration): an inbound file of them adds no rows.
            return {}
        return {
            "planned_works": [
                {
                    "event_id": event.event_id,
                    "occurred_at": event.occurred_at,
                    "type": event.type,
                    "work_id": event.work_id,
                    "device_ids": list(event.device_ids),
                    "starts_at": event.starts_at,
                    "ends_at": event.ends_at,
                    "reason": event.reason,
                }
            ]
        }

    # -- the incident stream ----------------------------------------------------------------

    def _derived_rows(self, event: DerivedBase) -> Rows:
        incident_id = getattr(event, "incident_id", "")
        reporter = getattr(event, "reporter", "")
        detail = event.model_dump(mode="json", exclude={"reporter"})
        rows: Rows = {
            "incident_events": [
                {
                    "event_id": event.event_id,
                    "type": event.type,
                    "occurred_at": event.occurred_at,
                    "domain": event.domain,
                    "incident_id": incident_id,
                    "device_id": getattr(event, "device_id", ""),
                    "call_id": getattr(event, "call_id", ""),
                    "node_id": getattr(event, "node_id", ""),
                    "reporter": keyed_hash(self.hash_key, reporter) if reporter else "",
                    "repeat": int(getattr(event, "repeat", False)),
                    "call_occurred_at": getattr(event, "call_occurred_at", None),
                    "reason": str(getattr(event, "reason", "")),
                    "detail": _json(detail),
                }
            ]
        }
        if isinstance(event, AlertRaised):
            rows["alerts"] = [
                {
                    "alert_id": event.event_id,
                    "occurred_at": event.occurred_at,
                    "incident_id": event.incident_id,
                    "kind": event.kind,
                    "severity": event.severity,
                    "utility": event.utility,
                    "device_id": event.device_id,
                    "customers_affected": event.customers_affected,
                    "summary": event.summary,
                }
            ]
        changed = self._fold_incident(event)
        if changed:
            rows["incidents"] = [row.model_dump() for row in changed]
        return rows

    def _current(self, incident_id: str) -> IncidentRow | None:
        row = self.incidents.get(incident_id)
        if row is None:
            row = self.load_incident(incident_id)
            if row is not None:
                self.incidents[incident_id] = row
        return row

    def _fold_incident(self, event: DerivedBase) -> list[IncidentRow]:
        """The incident rows this event changes, each with its version one higher."""
        at = event.occurred_at
        if isinstance(event, IncidentOpened):
            opened = IncidentRow(
                incident_id=event.incident_id,
                version=1,
                domain=event.domain,
                device_id=event.device_id,
                device_kind=event.device_kind,
                utility=event.utility,
                area=area_of(event.path),
                state=event.phase,
                cause=event.cause,
                planned=int(event.planned),
                work_id=event.work_id or "",
                etr=event.etr,
                opened_at=at,
                confirmed_at=at if event.phase == "confirmed" else None,
                restored_at=None,
                updated_at=at,
                customers_affected=event.customers_affected,
                merged_into="",
            )
            previous = self._current(event.incident_id)
            if previous is not None:  # a redelivery: same content, newer version
                opened = opened.model_copy(update={"version": previous.version + 1})
            self.incidents[event.incident_id] = opened
            return [opened]
        incident_id = getattr(event, "incident_id", None)
        row = self._current(incident_id) if incident_id else None
        if row is None:
            return []
        update: dict[str, Any] = {"updated_at": max(row.updated_at, at)}
        changed: list[IncidentRow] = []
        match event:
            case CallAttached() if row.state == "stale":
                update["state"] = "suspected"
            case IncidentEscalated():
                update |= {
                    "device_id": event.device_id,
                    "device_kind": event.device_kind,
                    "area": area_of(event.path),
                    "customers_affected": event.customers_affected,
                }
            case IncidentConfirmed():
                update |= {"state": "confirmed", "confirmed_at": at}
                if row.cause == "unknown":
                    update["cause"] = f"scada: {event.signal}"
            case IncidentRestored():
                update |= {"state": "restored", "restored_at": at, "resolved_by": event.by or ""}
            case AcknowledgementRecorded():
                if not row.acknowledged_by:  # the first owner stays, as on the incident book
                    update |= {"acknowledged_by": event.by, "acknowledged_at": at}
            case CauseRecorded():
                update["cause"] = event.cause
            case EtrRecorded():
                update["etr"] = event.etr
            case IncidentStale():
                update["state"] = "stale"
            case IncidentsMerged():
                for merged_id in event.merged_ids:
                    merged = self._current(merged_id)
                    if merged is not None:
                        changed.append(
                            self._bump(
                                merged,
                                state="merged",
                                merged_into=row.incident_id,
                                updated_at=max(merged.updated_at, at),
                            )
                        )
            case CallAttached():
                pass
            case _:
                return []
        changed.insert(0, self._bump(row, **update))
        return changed

    def _bump(self, row: IncidentRow, **update: Any) -> IncidentRow:
        new = row.model_copy(update={**update, "version": row.version + 1})
        self.incidents[row.incident_id] = new
        return new


def _json(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"))
