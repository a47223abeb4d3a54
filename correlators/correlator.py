"""The outage correlator: a decider over one correlation domain (one network tree).

    decide(state, event) -> derived events      pure: reads the state, never changes it
    evolve(state, derived event) -> state       folds one derived event in

`handle` drives both for the stream and for offline replay: it drops duplicates, holds events
for the lateness bound so out-of-order ones are placed by event time, runs the timers (window
expiry, staleness, planned-work windows) up to each event's time, then decides and evolves.
Time comes only from events and `Tick`s, never from a clock: the same input gives the same
incidents live and in a replay.
"""

import bisect
import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from correlators.rules import CorrelationRules, LevelRule
from correlators.state import DomainState, Incident, PendingCall, PlannedWork
from events.derived import (
    AcknowledgementRecorded,
    AlertRaised,
    CallAttached,
    CallPending,
    CauseRecorded,
    DeadlinePassed,
    DerivedBase,
    EtrRecorded,
    IncidentConfirmed,
    IncidentEscalated,
    IncidentOpened,
    IncidentRestored,
    IncidentsMerged,
    IncidentStale,
    IncidentUnacknowledged,
    IndividualFault,
    PlannedWorkRegistered,
    PlannedWorkWithdrawn,
)
from events.inbound import (
    FAULT_SIGNALS,
    RESTORE_SIGNALS,
    CallReported,
    CauseSet,
    EtrSet,
    IncidentAcknowledged,
    OperatorActions,
    PlannedWorkCancelled,
    PlannedWorkScheduled,
    ScadaSignal,
)
from events.internal import Routed, Tick
from topology.model import Topology


def reporter_of(call: CallReported, key: bytes | None = None) -> str:
    """Who reported: the premise, else the caller, else the call itself (public records).

    Phone numbers are hashed: the incident stream needs to count repeats, not to dial back.
    """
    if call.premise_id:
        return f"premise:{call.premise_id}"
    return caller_key(call.caller, key) or f"call:{call.event_id}"


def caller_key(phone: str | None, key: bytes | None = None) -> str | None:
    """'caller:<hash of the digits>', the same however the number was written; None if none.

    With a key (the service's HMAC key) the hash cannot be reversed by trying every phone
    number; the incident stream then holds nothing that leads back to a caller.
    """
    digits = "".join(ch for ch in phone or "" if ch.isdigit())
    if not digits:
        return None
    if key:
        return "caller:" + hmac.new(key, digits.encode(), hashlib.sha256).hexdigest()[:16]
    return "caller:" + hashlib.sha256(digits.encode()).hexdigest()[:16]


def _short_hash(*parts: str) -> str:
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:8]


@dataclass
class _Evidence:
    """What lies under one node: the reports and incidents that could explain a fault there."""

    reporters: set[str] = field(default_factory=set)
    children: dict[str, set[str]] = field(default_factory=dict)  # child -> reporters under it
    whole_building: bool = False


class Correlator:
    """Correlates the events of one deployment's network with its rules."""

    def __init__(
        self, topology: Topology, rules: CorrelationRules, reporter_key: bytes | None = None
    ) -> None:
        self.topology = topology
        self.rules = rules
        self.reporter_key = reporter_key  # HMAC key of callers' numbers (None: plain SHA-256)

    def initial_state(self, domain: str) -> DomainState:
        return DomainState(domain=domain)

    # -- the driver: intake, ordering and timers ------------------------------------------

    def handle(self, state: DomainState, item: Routed | Tick) -> list[DerivedBase]:
        """Take one routed event or tick; return what it (and the events it released) decided."""
        if isinstance(item, Routed):
            if item.event_id in state.seen:
                return []  # delivery is at least once: a duplicate changes nothing
            state.seen[item.event_id] = item.occurred_at
            keys = [(e.occurred_at, e.event_id) for e in state.held]
            state.held.insert(bisect.bisect(keys, (item.occurred_at, item.event_id)), item)
        moved_to = self.time_moved_to(item)
        if state.watermark is None or moved_to > state.watermark:
            state.watermark = moved_to
        return self._release(state, state.watermark - self.rules.lateness)

    def time_moved_to(self, item: Routed | Tick) -> datetime:
        """How far an item moves its domain's time: its event time, but no further than the
        moment it was accepted plus the allowed clock skew. An event dated ahead is still placed
        at its own time (held until time gets there); it cannot fire timers early."""
        if isinstance(item, Routed) and item.event.recorded_at is not None:
            return min(item.occurred_at, item.event.recorded_at + self.rules.clock_skew)
        return item.occurred_at

    def flush(self, state: DomainState) -> list[DerivedBase]:
        """Release every held event (end of an offline replay), without running timers past them."""
        if not state.held:
            return []
        return self._release(state, state.held[-1].occurred_at)

    def _release(self, state: DomainState, until: datetime) -> list[DerivedBase]:
        out: list[DerivedBase] = []
        while state.held and state.held[0].occurred_at <= until:
            routed = state.held.pop(0)
            out += self._step(state, Tick(domain=state.domain, occurred_at=routed.occurred_at))
            out += self._step(state, routed)
        out += self._step(state, Tick(domain=state.domain, occurred_at=until))
        horizon = until - self.rules.dedupe_horizon
        # Ids arrive roughly in time order, so the first one tells whether pruning is due.
        if state.seen and next(iter(state.seen.values())) < horizon:
            state.seen = {k: t for k, t in state.seen.items() if t >= horizon}
        return out

    def _step(self, state: DomainState, item: Routed | Tick) -> list[DerivedBase]:
        if isinstance(item, Tick) and state.clock is not None and item.occurred_at <= state.clock:
            return []
        derived = self.decide(state, item)
        for event in derived:
            self.evolve(state, event)
        if isinstance(item, Tick):
            state.clock = item.occurred_at
        return derived

    # -- decide ---------------------------------------------------------------------------

    def decide(self, state: DomainState, item: Routed | Tick) -> list[DerivedBase]:
        """The derived events one released event (or the passing of time) implies."""
        if isinstance(item, Tick):
            return self._timers_due(state, item.occurred_at)
        event = item.event
        if isinstance(event, CallReported):
            assert item.node_id is not None, "a routed call always carries its node"
            return self._on_call(state, event, item.node_id)
        if isinstance(event, ScadaSignal):
            return self._on_signal(state, event)
        if isinstance(event, PlannedWorkScheduled):
            return self._on_work_scheduled(state, event)
        if isinstance(event, PlannedWorkCancelled):
            return self._on_work_cancelled(state, event)
        return self._on_action(state, event)

    def _timers_due(self, state: DomainState, now: datetime) -> list[DerivedBase]:
        due: list[tuple[datetime, str, list[DerivedBase]]] = []
        for call in state.pending.values():
            expires = call.occurred_at + self.rules.for_utility(call.utility).longest_window
            if expires <= now:
                fault = IndividualFault(
                    event_id=f"individual/{call.call_id}",
                    occurred_at=expires,
                    domain=state.domain,
                    causation_id=call.call_id,
                    call_id=call.call_id,
                    node_id=call.node_id,
                    utility=call.utility,
                    reason="alone",
                )
                due.append((expires, fault.event_id, [fault]))
        for incident in state.incidents.values():
            stale_at = (
                incident.last_report_at + self.rules.for_utility(incident.utility).stale_after
            )
            if incident.phase == "suspected" and not incident.planned and stale_at <= now:
                stale = IncidentStale(
                    event_id=f"{incident.incident_id}/stale/{incident.last_report_at.isoformat()}",
                    occurred_at=stale_at,
                    domain=state.domain,
                    incident_id=incident.incident_id,
                    correlation_id=incident.incident_id,
                    last_report_at=incident.last_report_at,
                )
                summary = f"no new report since {incident.last_report_at:%Y-%m-%d %H:%M} UTC"
                due.append(
                    (stale_at, stale.event_id, [stale, self._alert(stale, incident, summary)])
                )
        for incident in state.incidents.values():
            if not incident.planned:
                due += self._escalations_due(state, incident, now)
        for work in state.planned.values():
            if not work.incident_ids and work.starts_at <= now:
                # Open even when the whole window passed between two timer runs: how often
                # time is looked at (tick cadence, arrival order) must not change the incidents.
                events = [self._open_planned(state, work, device) for device in work.device_ids]
                due.append((work.starts_at, work.work_id, list(events)))
                still_out = {event.device_id: event.incident_id for event in events}
            else:
                # One SCADA already restored is not restored again.
                still_out = {d: i for d, i in work.incident_ids.items() if i in state.incidents}
            if still_out and work.ends_at <= now:
                ends: list[DerivedBase] = [
                    self._restored(
                        state.domain, incident_id, device, "planned work ended", work.ends_at
                    )
                    for device, incident_id in sorted(still_out.items())
                ]
                due.append((work.ends_at, work.work_id, ends))
        due.sort(key=lambda entry: (entry[0], entry[1]))
        return [event for _, _, events in due for event in events]

    def _escalations_due(
        self, state: DomainState, incident: Incident, now: datetime
    ) -> list[tuple[datetime, str, list[DerivedBase]]]:
        """Unacknowledged reminders and handling-deadline steps whose time has come.

        Every step due by `now` is emitted at its own time, so a tick every second and a
        replay that jumps an hour at once decide the same reminders.
        """
        rules = self.rules.for_utility(incident.utility)
        due: list[tuple[datetime, str, list[DerivedBase]]] = []
        if incident.acknowledged_by is None:
            for count in range(incident.reminders_sent + 1, rules.ack_reminders + 1):
                at = incident.opened_at + timedelta(minutes=rules.ack_within_minutes * count)
                if at > now:
                    break
                reminder = IncidentUnacknowledged(
                    event_id=f"{incident.incident_id}/unacknowledged/{count}",
                    occurred_at=at,
                    domain=state.domain,
                    incident_id=incident.incident_id,
                    correlation_id=incident.incident_id,
                    count=count,
                )
                last = count == rules.ack_reminders
                minutes = round((at - incident.opened_at).total_seconds() / 60, 1)
                summary = f"not acknowledged after {minutes:g} minutes" + (
                    "; escalated to the supervisor" if last else ""
                )
                alert = self._alert(reminder, incident, summary, escalation=2 if last else 1)
                due.append((at, reminder.event_id, [reminder, alert]))
        deadline = incident.opened_at + rules.handling_deadline
        later = deadline + timedelta(minutes=rules.deadline_escalate_after_minutes)
        for stage, at in ((1, deadline), (2, later)):
            if stage <= incident.deadline_stage or at > now:
                continue
            passed = DeadlinePassed(
                event_id=f"{incident.incident_id}/deadline/{stage}",
                occurred_at=at,
                domain=state.domain,
                incident_id=incident.incident_id,
                correlation_id=incident.incident_id,
                stage=stage,
                deadline=deadline,
            )
            hours = rules.handling_deadline.total_seconds() / 3600
            summary = f"open past its {hours:g}-hour handling deadline" + (
                "; escalated to the supervisor" if stage == 2 else ""
            )
            kind = "deadline_escalated" if stage == 2 else "deadline_reminder"
            alert = self._alert(passed, incident, summary, kind=kind, escalation=stage)
            due.append((at, passed.event_id, [passed, alert]))
        return due

    def _on_action(self, state: DomainState, action: OperatorActions) -> list[DerivedBase]:
        """A shift lead's action on an open incident; on a closed or unknown one, nothing.

        An incident has one owner: a second acknowledgement (two leads, or a lead and a mail
        link, racing past the HTTP check) is ignored, so the first owner stays."""
        incident = state.incidents.get(action.incident_id)
        if incident is None:
            return []
        if isinstance(action, IncidentAcknowledged) and incident.acknowledged_by is not None:
            return []
        common = {
            "occurred_at": action.occurred_at,
            "domain": state.domain,
            "incident_id": incident.incident_id,
            "correlation_id": incident.incident_id,
            "causation_id": action.event_id,
        }
        prefix = f"{incident.incident_id}/{action.type}/{action.event_id}"
        if isinstance(action, IncidentAcknowledged):
            return [
                AcknowledgementRecorded(event_id=prefix, by=action.by, note=action.note, **common)
            ]
        if isinstance(action, CauseSet):
            return [CauseRecorded(event_id=prefix, by=action.by, cause=action.cause, **common)]
        if isinstance(action, EtrSet):
            return [EtrRecorded(event_id=prefix, by=action.by, etr=action.etr, **common)]
        reason = f"resolved by {action.by}" + (f": {action.note}" if action.note else "")
        restored = self._restored(
            state.domain,
            incident.incident_id,
            incident.device_id,
            reason,
            action.occurred_at,
            causation=action.event_id,
            by=action.by,
        )
        if incident.planned:
            return [restored]
        return [
            restored,
            self._alert(restored, incident, reason),
            *self._children_restored(incident, restored),
        ]

    def _on_call(self, state: DomainState, call: CallReported, node_id: str) -> list[DerivedBase]:
        reporter = reporter_of(call, self.reporter_key)
        if call.tags:
            return [
                IndividualFault(
                    event_id=f"individual/{call.event_id}",
                    occurred_at=call.occurred_at,
                    domain=state.domain,
                    causation_id=call.event_id,
                    call_id=call.event_id,
                    node_id=node_id,
                    utility=call.utility,
                    reason="tagged: " + ", ".join(call.tags),
                )
            ]
        pending = PendingCall(
            call_id=call.event_id,
            node_id=node_id,
            reporter=reporter,
            utility=call.utility,
            occurred_at=call.occurred_at,
            whole_building=call.scope == "whole_building",
        )
        planned = self._covering(state, node_id, planned=True, at=call.occurred_at)
        if planned is not None:
            return [self._attach(state.domain, planned, pending)]
        incident = self._covering(state, node_id, planned=False, at=call.occurred_at)
        if incident is not None:
            attached = self._attach(state.domain, incident, pending)
            out: list[DerivedBase] = [attached]
            out += self._grown(state, incident, pending)
            out += self._repeat_caller(incident, attached)
            target = self._roll_up_target(state, incident.device_id, call.occurred_at, pending)
            if target is not None:
                # The call is attached above: rolling its incident up carries it along.
                out += self._claim(state, target, call.occurred_at, call.event_id, None)
            return out
        target = self._roll_up_target(state, node_id, call.occurred_at, pending, inclusive=True)
        if target is not None:
            return self._claim(state, target, call.occurred_at, call.event_id, pending)
        return [
            CallPending(
                event_id=f"pending/{call.event_id}",
                occurred_at=call.occurred_at,
                domain=state.domain,
                causation_id=call.event_id,
                call_id=call.event_id,
                node_id=node_id,
                reporter=reporter,
                utility=call.utility,
                whole_building=pending.whole_building,
            )
        ]

    def _on_signal(self, state: DomainState, signal: ScadaSignal) -> list[DerivedBase]:
        device = signal.device_id
        if signal.quality == "invalid" or device not in self.topology:
            return []  # an invalid reading says nothing about the network
        at = signal.occurred_at
        if signal.signal in RESTORE_SIGNALS:
            out: list[DerivedBase] = []
            for incident in self._sorted(state.incidents.values()):
                if incident.device_id == device or incident.confirmed_by == device:
                    restored = self._restored(
                        state.domain,
                        incident.incident_id,
                        device,
                        f"scada: {signal.signal}",
                        at,
                        causation=signal.event_id,
                    )
                    out.append(restored)
                    if not incident.planned:  # planned works never page
                        out.append(self._alert(restored, incident, f"restored ({signal.signal})"))
                        out += self._children_restored(incident, restored)
            return out
        if signal.signal not in FAULT_SIGNALS:
            return []
        planned = self._covering(state, device, planned=True, at=at)
        covering = planned or self._covering(state, device, planned=False, at=at)
        if covering is not None:
            if covering.phase == "confirmed":
                return []
            confirmed = IncidentConfirmed(
                event_id=f"{covering.incident_id}/confirmed/{signal.event_id}",
                occurred_at=at,
                domain=state.domain,
                incident_id=covering.incident_id,
                correlation_id=covering.incident_id,
                causation_id=signal.event_id,
                device_id=device,
                signal=signal.signal,
                quality=signal.quality,
            )
            if covering.planned:
                return [confirmed]  # planned works never page
            summary = f"confirmed by SCADA: {signal.signal} at {device}"
            return [confirmed, self._alert(confirmed, covering, summary)]
        return self._claim(state, device, at, signal.event_id, None, signal=signal)

    def _on_work_scheduled(
        self, state: DomainState, work: PlannedWorkScheduled
    ) -> list[DerivedBase]:
        devices = tuple(d for d in work.device_ids if d in self.topology)
        devices = tuple(d for d in devices if self.topology.root(d) == state.domain)
        if not devices:
            return []
        return [
            PlannedWorkRegistered(
                event_id=f"work/{work.event_id}/{state.domain}",
                occurred_at=work.occurred_at,
                domain=state.domain,
                causation_id=work.event_id,
                work_id=work.work_id,
                device_ids=devices,
                starts_at=work.starts_at,
                ends_at=work.ends_at,
                reason=work.reason,
            )
        ]

    def _on_work_cancelled(
        self, state: DomainState, cancel: PlannedWorkCancelled
    ) -> list[DerivedBase]:
        work = state.planned.get(cancel.work_id)
        if work is None:
            return []
        out: list[DerivedBase] = [
            PlannedWorkWithdrawn(
                event_id=f"work/{cancel.event_id}/{state.domain}",
                occurred_at=cancel.occurred_at,
                domain=state.domain,
                causation_id=cancel.event_id,
                work_id=work.work_id,
            )
        ]
        for device, incident_id in sorted(work.incident_ids.items()):
            out.append(
                self._restored(
                    state.domain,
                    incident_id,
                    device,
                    "planned work cancelled",
                    cancel.occurred_at,
                    causation=cancel.event_id,
                )
            )
        return out

    # -- the rules --------------------------------------------------------------------------

    def _covering(
        self, state: DomainState, node_id: str, *, planned: bool, at: datetime
    ) -> Incident | None:
        """The lowest open incident whose device is this node or above it."""
        path = self.topology.path(node_id)
        best: Incident | None = None
        best_depth = -1
        for incident in state.incidents.values():
            if incident.planned != planned or incident.device_id not in path:
                continue
            if planned and not self._work_active(state, incident, at):
                continue
            depth = path.index(incident.device_id)
            if depth > best_depth:
                best, best_depth = incident, depth
        return best

    def _work_active(self, state: DomainState, incident: Incident, at: datetime) -> bool:
        work = state.planned.get(incident.work_id or "")
        return work is not None and work.starts_at <= at < work.ends_at

    def _roll_up_target(
        self,
        state: DomainState,
        node_id: str,
        at: datetime,
        new_call: PendingCall,
        *,
        inclusive: bool = False,
    ) -> str | None:
        """The highest node above `node_id` (or at it) whose rule the evidence now satisfies."""
        path = self.topology.path(node_id)
        candidates = path if inclusive else path[:-1]
        evidence = self._evidence(state, path, candidates, at, new_call)
        for node in candidates:  # root first: the highest qualifying node explains the most
            kind = self.topology.node(node).kind
            rule = self.rules.level(self.topology.node(node).utility, kind)
            if rule is not None and self._qualifies(node, rule, evidence[node]):
                return node
        return None

    def _evidence(
        self,
        state: DomainState,
        path: Sequence[str],
        candidates: Sequence[str],
        at: datetime,
        new_call: PendingCall,
    ) -> dict[str, _Evidence]:
        """Reporters and reporting children under every candidate node, in one pass."""
        evidence = {node: _Evidence() for node in candidates}
        depth_of = {node: depth for depth, node in enumerate(path)}

        def add(
            item_node: str, reporters: Iterable[str], whole: bool, when: datetime | None
        ) -> None:
            item_path = self.topology.path(item_node)
            for depth, node in enumerate(item_path):
                if depth_of.get(node) != depth:
                    break  # left the candidates' path: no deeper node covers this item
                if node not in evidence:
                    continue
                kind = self.topology.node(node).kind
                window = self.rules.for_utility(self.topology.node(node).utility).window(kind)
                if when is not None and abs(at - when) >= window:
                    continue
                found = evidence[node]
                found.reporters.update(reporters)
                found.whole_building |= whole
                if depth + 1 < len(item_path):
                    found.children.setdefault(item_path[depth + 1], set()).update(reporters)

        for call in [*state.pending.values(), new_call]:
            add(call.node_id, (call.reporter,), call.whole_building, call.occurred_at)
        for incident in state.incidents.values():
            if not incident.planned:
                add(incident.device_id, incident.reporters, False, None)
        return evidence

    def _qualifies(self, node: str, rule: LevelRule, found: _Evidence) -> bool:
        reporters = len(found.reporters)
        whole = rule.whole_building_reporters
        if whole and found.whole_building and reporters >= whole:
            return True
        if reporters < rule.min_reporters:
            return False
        affected = found.children
        if rule.min_customer_share:
            # A fault high up takes many customers off supply at once; a few reports under a
            # large node are likelier separate small faults than one big one. The same holds
            # for each child: one stray call under a child does not make it part of the fault.
            if reporters / (self.topology.customers_under(node) or 1) < rule.min_customer_share:
                return False
            affected = {
                child: under
                for child, under in found.children.items()
                if len(under) >= rule.min_customer_share * self.topology.customers_under(child)
            }
        if len(affected) < rule.min_children:
            return False
        if rule.min_child_share:
            children = len(self.topology.children(node)) or 1
            return len(affected) / children >= rule.min_child_share
        return True

    def _claim(
        self,
        state: DomainState,
        device: str,
        at: datetime,
        causation: str,
        new_call: PendingCall | None,
        signal: ScadaSignal | None = None,
    ) -> list[DerivedBase]:
        """Make `device` the incident's place: open, roll up or merge, and attach the calls."""
        node = self.topology.node(device)
        below = self._sorted(
            i
            for i in state.incidents.values()
            if not i.planned and self.topology.covers(device, i.device_id)
        )
        customers = self.topology.customers_under(device)
        path = self.topology.path(device)
        out: list[DerivedBase] = []
        if below:
            # Keep the id shift leads already know: the oldest incident below moves up.
            survivor = below[0]
            escalated = IncidentEscalated(
                event_id=f"{survivor.incident_id}/rolled_up/{device}/{causation}",
                occurred_at=at,
                domain=state.domain,
                incident_id=survivor.incident_id,
                correlation_id=survivor.incident_id,
                causation_id=causation,
                reason="rolled_up",
                from_device=survivor.device_id,
                device_id=device,
                device_kind=node.kind,
                path=path,
                customers_affected=customers,
                reporters=len({r for i in below for r in i.reporters}),
            )
            summary = f"rolled up from {survivor.device_id} to {node.kind} {device}"
            if survivor.device_id != device:
                out.append(escalated)
            if signal is None:
                out.append(
                    self._alert(escalated, survivor, summary, device=device, customers=customers)
                )
            else:
                confirmed = IncidentConfirmed(
                    event_id=f"{survivor.incident_id}/confirmed/{signal.event_id}",
                    occurred_at=at,
                    domain=state.domain,
                    incident_id=survivor.incident_id,
                    correlation_id=survivor.incident_id,
                    causation_id=signal.event_id,
                    device_id=device,
                    signal=signal.signal,
                    quality=signal.quality,
                )
                summary = f"confirmed by SCADA: {signal.signal} at {device}; {summary}"
                out += [
                    confirmed,
                    self._alert(confirmed, survivor, summary, device=device, customers=customers),
                ]
            incident_id = survivor.incident_id
            merged = below[1:]
        else:
            incident_id = f"INC-{at:%Y%m%d}-{_short_hash(state.domain, device, causation)}"
            opened = IncidentOpened(
                event_id=f"{incident_id}/opened",
                occurred_at=at,
                domain=state.domain,
                incident_id=incident_id,
                correlation_id=incident_id,
                causation_id=causation,
                device_id=device,
                device_kind=node.kind,
                utility=node.utility,
                path=path,
                phase="confirmed" if signal else "suspected",
                cause=f"scada: {signal.signal}" if signal else "unknown",
                customers_affected=customers,
            )
            out.append(opened)
            what = f"{signal.signal} at {node.kind} {device}" if signal else f"{node.kind} {device}"
            record = self._incident_from(opened)
            out.append(self._alert(opened, record, f"outage recognised: {what}"))
            merged = below
        if merged:
            out.append(
                IncidentsMerged(
                    event_id=f"{incident_id}/merged/{causation}",
                    occurred_at=at,
                    domain=state.domain,
                    incident_id=incident_id,
                    correlation_id=incident_id,
                    causation_id=causation,
                    merged_ids=tuple(i.incident_id for i in merged),
                )
            )
        known = {r for i in below for r in i.reporters}
        calls = [
            c
            for c in state.pending.values()
            if self.topology.covers(device, c.node_id)
            and abs(at - c.occurred_at) < self.rules.for_utility(c.utility).window(node.kind)
        ]
        if new_call is not None:
            calls.append(new_call)
        for call in sorted(calls, key=lambda c: (c.occurred_at, c.call_id)):
            out.append(self._attach(state.domain, incident_id, call, repeat=call.reporter in known))
            known.add(call.reporter)
        return out

    def _children_restored(
        self, incident: Incident, restored: IncidentRestored
    ) -> list[DerivedBase]:
        """Incidents merged into this one are restored with it, each with its own notice:
        whoever was told about a child hears that it is over."""
        out: list[DerivedBase] = []
        for child_id in incident.merged_ids:
            child = incident.model_copy(update={"incident_id": child_id})
            reason = f"restored with {incident.incident_id} ({restored.reason})"
            done = self._restored(
                restored.domain,
                child_id,
                incident.device_id,
                reason,
                restored.occurred_at,
                causation=restored.event_id,
                by=restored.by,
            )
            out += [done, self._alert(done, child, reason)]
        return out

    def _repeat_caller(self, incident: Incident, attached: CallAttached) -> list[DerivedBase]:
        """The same caller the configured number of times about one incident: a complaint risk."""
        if not attached.repeat:
            return []
        calls = incident.repeats.get(attached.reporter, 0) + 2  # this one and the first
        if calls != self.rules.for_utility(incident.utility).repeat_caller_calls:
            return []
        summary = f"the same caller has called {calls} times about it (complaint risk)"
        return [self._alert(attached, incident, summary, kind="repeat_caller")]

    def _grown(
        self, state: DomainState, incident: Incident, call: PendingCall
    ) -> list[DerivedBase]:
        if call.reporter in incident.reporters:
            return []
        count = len(incident.reporters) + 1
        levels = self.rules.for_utility(incident.utility).growth_levels
        if count not in levels:
            return []
        grew = IncidentEscalated(
            event_id=f"{incident.incident_id}/grew/{count}",
            occurred_at=call.occurred_at,
            domain=state.domain,
            incident_id=incident.incident_id,
            correlation_id=incident.incident_id,
            causation_id=call.call_id,
            reason="grew",
            from_device=incident.device_id,
            device_id=incident.device_id,
            device_kind=incident.device_kind,
            path=self.topology.path(incident.device_id),
            customers_affected=incident.customers_affected,
            reporters=count,
        )
        return [grew, self._alert(grew, incident, f"{count} customers have reported it")]

    # -- event builders -----------------------------------------------------------------------

    def _attach(
        self, domain: str, incident: Incident | str, call: PendingCall, repeat: bool | None = None
    ) -> CallAttached:
        incident_id = incident if isinstance(incident, str) else incident.incident_id
        if repeat is None:
            repeat = not isinstance(incident, str) and call.reporter in incident.reporters
        return CallAttached(
            event_id=f"{incident_id}/call/{call.call_id}",
            occurred_at=call.occurred_at,
            domain=domain,
            incident_id=incident_id,
            correlation_id=incident_id,
            causation_id=call.call_id,
            call_id=call.call_id,
            node_id=call.node_id,
            reporter=call.reporter,
            repeat=repeat,
            call_occurred_at=call.occurred_at,
        )

    def _open_planned(self, state: DomainState, work: PlannedWork, device: str) -> IncidentOpened:
        node = self.topology.node(device)
        incident_id = f"PLN-{work.starts_at:%Y%m%d}-{_short_hash(work.work_id, device)}"
        return IncidentOpened(
            event_id=f"{incident_id}/opened",
            occurred_at=work.starts_at,
            domain=state.domain,
            incident_id=incident_id,
            correlation_id=incident_id,
            causation_id=work.work_id,
            device_id=device,
            device_kind=node.kind,
            utility=node.utility,
            path=self.topology.path(device),
            phase="confirmed",
            cause=f"planned: {work.reason}",
            planned=True,
            work_id=work.work_id,
            etr=work.ends_at,
            customers_affected=self.topology.customers_under(device),
        )

    def _restored(
        self,
        domain: str,
        incident_id: str,
        device: str,
        reason: str,
        at: datetime,
        causation: str | None = None,
        by: str | None = None,
    ) -> IncidentRestored:
        return IncidentRestored(
            by=by,
            event_id=f"{incident_id}/restored",
            occurred_at=at,
            domain=domain,
            incident_id=incident_id,
            correlation_id=incident_id,
            causation_id=causation,
            device_id=device,
            reason=reason,
        )

    def _alert(
        self,
        cause: DerivedBase,
        incident: Incident,
        summary: str,
        *,
        device: str | None = None,
        customers: int | None = None,
        kind: str | None = None,
        escalation: int = 0,
    ) -> AlertRaised:
        device = device or incident.device_id
        customers = incident.customers_affected if customers is None else customers
        confirmed = incident.phase == "confirmed" or isinstance(cause, IncidentConfirmed)
        path = self.topology.path(device)
        return AlertRaised(
            event_id=f"alert/{cause.event_id}",
            occurred_at=cause.occurred_at,
            domain=cause.domain,
            incident_id=incident.incident_id,
            correlation_id=incident.incident_id,
            causation_id=cause.event_id,
            kind=kind or cause.type,  # incident event types double as alert kinds
            severity=self.rules.severity(customers, confirmed),
            utility=incident.utility,
            device_id=device,
            customers_affected=customers,
            summary=summary,
            area=path[1] if len(path) > 1 else path[0],
            escalation=escalation,
        )

    @staticmethod
    def _incident_from(opened: IncidentOpened) -> Incident:
        return Incident(
            incident_id=opened.incident_id,
            device_id=opened.device_id,
            device_kind=opened.device_kind,
            utility=opened.utility,
            phase=opened.phase,
            cause=opened.cause,
            opened_at=opened.occurred_at,
            last_report_at=opened.occurred_at,
            customers_affected=opened.customers_affected,
            planned=opened.planned,
            work_id=opened.work_id,
            confirmed_by=opened.device_id if opened.phase == "confirmed" else None,
            etr=opened.etr,
        )

    @staticmethod
    def _sorted(incidents: Iterable[Incident]) -> list[Incident]:
        return sorted(incidents, key=lambda i: (i.opened_at, i.incident_id))

    # -- evolve ---------------------------------------------------------------------------------

    @staticmethod
    def _update(state: DomainState, incident_id: str, **changes: object) -> None:
        incident = state.incidents.get(incident_id)
        if incident is not None:
            state.incidents[incident_id] = incident.model_copy(update=changes)

    def evolve(self, state: DomainState, event: DerivedBase) -> DomainState:
        """Fold one derived event into the domain state (in place; returns it)."""
        match event:
            case CallPending():
                state.pending[event.call_id] = PendingCall(
                    call_id=event.call_id,
                    node_id=event.node_id,
                    reporter=event.reporter,
                    utility=event.utility,
                    occurred_at=event.occurred_at,
                    whole_building=event.whole_building,
                )
            case IndividualFault():
                state.pending.pop(event.call_id, None)
            case IncidentOpened():
                state.incidents[event.incident_id] = self._incident_from(event)
                if event.planned and event.work_id in state.planned:
                    work = state.planned[event.work_id]
                    ids = {**work.incident_ids, event.device_id: event.incident_id}
                    state.planned[event.work_id] = work.model_copy(update={"incident_ids": ids})
            case CallAttached():
                state.pending.pop(event.call_id, None)
                incident = state.incidents[event.incident_id]
                reporters, repeats = incident.reporters, incident.repeats
                if event.reporter not in reporters:
                    reporters = (*reporters, event.reporter)
                elif event.repeat:
                    repeats = {**repeats, event.reporter: repeats.get(event.reporter, 0) + 1}
                state.incidents[event.incident_id] = incident.model_copy(
                    update={
                        "reporters": reporters,
                        "repeats": repeats,
                        "last_report_at": max(incident.last_report_at, event.occurred_at),
                        "phase": "suspected" if incident.phase == "stale" else incident.phase,
                    }
                )
            case IncidentEscalated(reason="rolled_up"):
                incident = state.incidents[event.incident_id]
                state.incidents[event.incident_id] = incident.model_copy(
                    update={
                        "device_id": event.device_id,
                        "device_kind": event.device_kind,
                        "customers_affected": event.customers_affected,
                    }
                )
            case IncidentConfirmed():
                incident = state.incidents[event.incident_id]
                state.incidents[event.incident_id] = incident.model_copy(
                    update={"phase": "confirmed", "confirmed_by": event.device_id}
                )
            case IncidentsMerged():
                survivor = state.incidents[event.incident_id]
                merged_reporters = list(survivor.reporters)
                merged_ids = list(survivor.merged_ids)
                for merged_id in event.merged_ids:
                    merged = state.incidents.pop(merged_id)
                    merged_reporters += [r for r in merged.reporters if r not in merged_reporters]
                    merged_ids += [merged_id, *merged.merged_ids]
                    if merged.phase == "confirmed" and survivor.phase != "confirmed":
                        survivor = survivor.model_copy(
                            update={"phase": "confirmed", "confirmed_by": merged.confirmed_by}
                        )
                state.incidents[event.incident_id] = survivor.model_copy(
                    update={"reporters": tuple(merged_reporters), "merged_ids": tuple(merged_ids)}
                )
            case IncidentRestored():
                restored = state.incidents.pop(event.incident_id, None)
                if restored is not None and restored.work_id in state.planned:
                    work = state.planned[restored.work_id]
                    # Done at its end, or earlier once SCADA restored every device it took out
                    # (else its timer would restore the same incidents again and again).
                    still_out = [i for i in work.incident_ids.values() if i in state.incidents]
                    if work.ends_at <= event.occurred_at or not still_out:
                        del state.planned[restored.work_id]
            case IncidentStale():
                incident = state.incidents[event.incident_id]
                state.incidents[event.incident_id] = incident.model_copy(update={"phase": "stale"})
            case AcknowledgementRecorded():
                # Streams written before acknowledgements were idempotent may hold a second one.
                owned = state.incidents.get(event.incident_id)
                if owned is not None and owned.acknowledged_by is None:
                    self._update(state, event.incident_id, acknowledged_by=event.by)
            case CauseRecorded():
                self._update(state, event.incident_id, cause=event.cause)
            case EtrRecorded():
                self._update(state, event.incident_id, etr=event.etr)
            case IncidentUnacknowledged():
                self._update(state, event.incident_id, reminders_sent=event.count)
            case DeadlinePassed():
                self._update(state, event.incident_id, deadline_stage=event.stage)
            case PlannedWorkRegistered():
                state.planned[event.work_id] = PlannedWork(
                    work_id=event.work_id,
                    device_ids=event.device_ids,
                    starts_at=event.starts_at,
                    ends_at=event.ends_at,
                    reason=event.reason,
                )
            case PlannedWorkWithdrawn():
                state.planned.pop(event.work_id, None)
        return state
