"""Given/when/then tests of the correlator's rules on the sample power network.

`given(events).when(event)` feeds the given events through routing and `Correlator.handle`,
then the `when` event; `.then(types)` checks what the `when` event alone decided, and the
outcome keeps every derived event and the IncidentBook built from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from correlators.correlator import Correlator, reporter_of
from correlators.routing import Inbound, route
from correlators.rules import CorrelationRules
from correlators.state import DomainState
from events import (
    AlertRaised,
    CallAttached,
    CallPending,
    CallReported,
    IncidentConfirmed,
    IncidentEscalated,
    IncidentOpened,
    IncidentRestored,
    IncidentsMerged,
    IncidentStale,
    IndividualFault,
    PlannedWorkCancelled,
    PlannedWorkScheduled,
    ScadaSignal,
    Tick,
)
from events.derived import AcknowledgementRecorded, DerivedBase
from events.inbound import CauseSet, EtrSet, IncidentAcknowledged, IncidentResolved
from projections.incidents import IncidentBook, agent_sentence
from topology import Topology, load_topology
from topology.samples import POWER_CSV

POWER: Topology = load_topology(POWER_CSV)
DOMAIN = "SUB1"
T0 = datetime(2024, 4, 15, 22, 0, tzinfo=UTC)

BUILDING = "B-FDR1-T1-F2-3"  # 212 West 133rd Street
FUSE = "FU-FDR1-T1-2"
OTHER_FUSE = "FU-FDR1-T1-1"
TRANSFORMER = "T-FDR1-1"
FEEDER = "FDR-1"


def flat(b: int, n: int, fuse: int = 2, transformer: int = 1, feeder: int = 1) -> str:
    """A premise id of the sample network: building `b`, premise `n` under the given fuse."""
    return f"P-FDR{feeder}-T{transformer}-F{fuse}-B{b}-{n}"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def call(event_id: str, minute: float, premise: str | None = None, **fields: Any) -> CallReported:
    if premise is not None:
        fields["premise_id"] = premise
    return CallReported(event_id=event_id, occurred_at=at(minute), utility="power", **fields)


def scada(
    event_id: str, minute: float, device: str, signal: str = "breaker_open", **fields: Any
) -> ScadaSignal:
    return ScadaSignal(
        event_id=event_id, occurred_at=at(minute), device_id=device, signal=signal, **fields
    )


def work(
    event_id: str, minute: float, starts: float, ends: float, devices: Sequence[str]
) -> PlannedWorkScheduled:
    return PlannedWorkScheduled(
        event_id=event_id,
        occurred_at=at(minute),
        work_id="W-1",
        device_ids=tuple(devices),
        starts_at=at(starts),
        ends_at=at(ends),
        reason="cable jointing",
    )


def cancel(event_id: str, minute: float, devices: Sequence[str]) -> PlannedWorkCancelled:
    return PlannedWorkCancelled(
        event_id=event_id, occurred_at=at(minute), work_id="W-1", device_ids=tuple(devices)
    )


def tick(minute: float) -> Tick:
    return Tick(domain=DOMAIN, occurred_at=at(minute))


def action(event_id: str, minute: float, kind: type[Any], incident: str, **fields: Any) -> Any:
    """A shift lead's action (acknowledge, cause, ETR, resolve) on an incident."""
    return kind(event_id=event_id, occurred_at=at(minute), incident_id=incident, **fields)


class AnyIncident(dict[str, str]):
    """Every incident id maps to the one domain of the sample power network."""

    def __init__(self, domain: str) -> None:
        super().__init__()
        self.domain = domain

    def get(self, key: str, default: Any = None) -> Any:
        return self.domain


Item = Inbound | Tick
E = TypeVar("E", bound=DerivedBase)


@dataclass
class Outcome:
    """What the `when` events decided, on top of what the `given` events decided."""

    before: list[DerivedBase]
    derived: list[DerivedBase]
    correlator: Correlator
    states: dict[str, DomainState]
    book: IncidentBook = field(default_factory=IncidentBook)

    def then(self, *types: str) -> Outcome:
        assert kinds(self.derived) == list(types), self.derived
        return self

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.derived if isinstance(e, kind)]

    def one(self, kind: type[E]) -> E:
        found = self.of(kind)
        assert len(found) == 1, found
        return found[0]

    @property
    def everything(self) -> list[DerivedBase]:
        return self.before + self.derived


# The shift-lead timers (acknowledgement reminders, handling deadlines) out of the way, so each
# test pins its own rule (TIMERS below pins those), and the level rules these tests were written
# against pinned here: tuning the defaults (docs/QUALITY.md) must not change what they check.
LEVELS: dict[str, dict[str, float]] = {
    "building": {"min_reporters": 3, "whole_building_reporters": 2},
    "fuse": {"min_reporters": 3, "min_children": 2, "min_customer_share": 0},
    "switch": {"min_reporters": 3, "min_children": 2, "min_customer_share": 0},
    "lateral": {"min_reporters": 3, "min_children": 2, "min_customer_share": 0},
    "transformer": {"min_reporters": 3, "min_children": 2, "min_customer_share": 0},
    "feeder": {
        "min_reporters": 5,
        "min_children": 2,
        "min_child_share": 0.25,
        "min_customer_share": 0,
    },
    "substation": {
        "min_reporters": 10,
        "min_children": 2,
        "min_child_share": 0.5,
        "min_customer_share": 0,
    },
}
QUIET_RULES = CorrelationRules.load(
    power={"ack_reminders": 0, "handling_deadline_minutes": 10**6, "levels": LEVELS}
)


class given:  # lower case: reads as the first word of a given/when/then sentence
    """The events that already happened, and the rules they were correlated with."""

    def __init__(self, *events: Item, rules: CorrelationRules | None = None) -> None:
        self.events = events
        self.rules = rules or QUIET_RULES

    def when(self, *events: Item) -> Outcome:
        correlator = Correlator(POWER, self.rules)
        states: dict[str, DomainState] = {}
        before = feed(correlator, states, self.events)
        derived = feed(correlator, states, events)
        outcome = Outcome(before, derived, correlator, states)
        outcome.book.apply_all(outcome.everything)
        return outcome


def kinds(events: Sequence[DerivedBase]) -> list[str]:
    return [getattr(e, "type", "?") for e in events]


def feed(
    correlator: Correlator, states: dict[str, DomainState], items: Sequence[Item]
) -> list[DerivedBase]:
    out: list[DerivedBase] = []
    for item in items:
        # Operator actions reach the incident's domain; this network has one: SUB1.
        routed: Sequence[Any] = (
            [item] if isinstance(item, Tick) else route(POWER, item, AnyIncident(DOMAIN))
        )
        for one in routed:
            state = states.setdefault(one.domain, correlator.initial_state(one.domain))
            out += correlator.handle(state, one)
    return out


def building_incident(start: float = 0) -> list[Item]:
    """Three flats of 212 West 133rd Street call: a suspected building incident."""
    return [
        call("c1", start, flat(3, 1)),
        call("c2", start + 1, flat(3, 2)),
        call("c3", start + 2, flat(3, 3)),
    ]


def fuse_incident(start: float = 0) -> list[Item]:
    """One flat in each of the three buildings on fuse 2 calls: a suspected fuse incident."""
    return [
        call("c1", start, flat(1, 1)),
        call("c2", start + 1, flat(2, 1)),
        call("c3", start + 2, flat(3, 1)),
    ]


def first_opened(events: Sequence[DerivedBase]) -> IncidentOpened:
    return next(e for e in events if isinstance(e, IncidentOpened))


def attached_ids(events: Sequence[DerivedBase], incident_id: str) -> list[str]:
    return [
        e.call_id for e in events if isinstance(e, CallAttached) and e.incident_id == incident_id
    ]


# -- building rule -------------------------------------------------------------------------


def test_three_reporters_in_a_building_open_a_building_incident() -> None:
    """The third distinct reporter in one building within the window opens a building incident."""
    outcome = (
        given(call("c1", 0, flat(3, 1)), call("c2", 1, flat(3, 2)))
        .when(call("c3", 2, flat(3, 3)))
        .then("incident_opened", "alert_raised", *["call_attached"] * 3)
    )
    opened = outcome.one(IncidentOpened)
    assert opened.device_id == BUILDING
    assert opened.device_kind == "building"
    assert opened.phase == "suspected"
    assert opened.path == ("SUB1", FEEDER, TRANSFORMER, FUSE, BUILDING)
    assert opened.customers_affected == 4
    assert attached_ids(outcome.derived, opened.incident_id) == ["c1", "c2", "c3"]
    assert kinds(outcome.before) == ["call_pending", "call_pending"]
    alert = outcome.one(AlertRaised)
    assert (alert.kind, alert.incident_id, alert.severity) == (
        "incident_opened",
        opened.incident_id,
        "info",
    )


def test_two_reporters_in_a_building_only_wait() -> None:
    """Two reporters without a whole-building claim are not enough: the call waits."""
    outcome = given(call("c1", 0, flat(3, 1))).when(call("c2", 1, flat(3, 2)))
    outcome.then("call_pending")
    assert outcome.one(CallPending).node_id == flat(3, 2)
    assert outcome.book.incidents == {}


def test_whole_building_caller_plus_one_opens_a_building_incident() -> None:
    """A caller saying 'the whole building' plus one more reporter opens a building incident."""
    outcome = (
        given(call("c1", 0, flat(3, 1), scope="whole_building"))
        .when(call("c2", 5, flat(3, 2)))
        .then("incident_opened", "alert_raised", "call_attached", "call_attached")
    )
    assert outcome.one(IncidentOpened).device_id == BUILDING


def test_whole_building_caller_alone_waits() -> None:
    """One whole-building caller is not a building incident on its own."""
    outcome = given().when(call("c1", 0, flat(3, 1), scope="whole_building"))
    outcome.then("call_pending")
    assert outcome.one(CallPending).whole_building is True


def test_only_me_scope_does_not_lower_the_threshold() -> None:
    """Two callers with scope 'only_me' do not make a building incident."""
    given(call("c1", 0, flat(3, 1), scope="only_me")).when(
        call("c2", 1, flat(3, 2), scope="only_me")
    ).then("call_pending")


def test_calls_outside_the_window_do_not_combine() -> None:
    """Reports more than the power window (60 min) apart never reach the threshold together."""
    outcome = given(call("c1", 0, flat(3, 1)), call("c2", 30, flat(3, 2))).when(
        call("c3", 61, flat(3, 3))
    )
    outcome.then("individual_fault", "call_pending")
    assert outcome.one(IndividualFault).call_id == "c1"
    assert outcome.book.incidents == {}


def test_same_phone_without_premise_counts_as_one_reporter() -> None:
    """Calls from one phone number (however written) count as one reporter."""
    outcome = given(
        call("c1", 0, building_id=BUILDING, caller="+1 212-555-0100"),
        call("c2", 1, building_id=BUILDING, caller="1 (212) 555 0100"),
    ).when(call("c3", 2, building_id=BUILDING, caller="12125550100"))
    outcome.then("call_pending")


def test_different_phones_without_premise_are_different_reporters() -> None:
    """Three different phone numbers in one building are three reporters."""
    given(
        call("c1", 0, building_id=BUILDING, caller="2125550100"),
        call("c2", 1, building_id=BUILDING, caller="2125550101"),
    ).when(call("c3", 2, building_id=BUILDING, caller="2125550102")).then(
        "incident_opened", "alert_raised", *["call_attached"] * 3
    )


def test_public_records_without_caller_count_each_call() -> None:
    """Calls with an address and no caller (public records) each count as a reporter."""
    address = "212 West 133rd Street"
    outcome = given(call("c1", 0, address=address), call("c2", 1, address=address)).when(
        call("c3", 2, address=address)
    )
    outcome.then("incident_opened", "alert_raised", *["call_attached"] * 3)
    assert outcome.one(IncidentOpened).device_id == BUILDING


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"premise_id": "P-1", "caller": "2125550100"}, "premise:P-1"),
        ({"building_id": "B-1", "caller": "+1 (212) 555-0100"}, "caller:"),
        ({"address": "1 Main St"}, "call:c9"),
        ({"address": "1 Main St", "caller": "anonymous"}, "call:c9"),
    ],
)
def test_reporter_is_premise_else_hashed_phone_else_the_call(
    fields: dict[str, str], expected: str
) -> None:
    """The reporter is the premise, else the caller's hashed digits, else the call itself."""
    reporter = reporter_of(CallReported(event_id="c9", occurred_at=T0, utility="power", **fields))
    assert reporter.startswith(expected)
    assert "555" not in reporter  # the phone number itself never reaches the incident stream


def test_lone_call_becomes_individual_when_the_window_passes_on_a_tick() -> None:
    """A single caller is an individual fault ('alone') once the longest window has passed."""
    given(call("c1", 0, flat(3, 1))).when(tick(59)).then()
    outcome = given(call("c1", 0, flat(3, 1))).when(tick(60)).then("individual_fault")
    fault = outcome.one(IndividualFault)
    assert (fault.call_id, fault.reason, fault.occurred_at) == ("c1", "alone", at(60))
    assert outcome.book.call_outcomes["c1"] == "individual"


def test_lone_call_becomes_individual_when_a_later_event_passes_its_window() -> None:
    """Time advanced by a later event (anywhere in the domain) also judges a lone call."""
    far_away = flat(1, 1, fuse=1, transformer=4, feeder=3)
    given(call("c1", 0, flat(3, 1))).when(call("c2", 70, far_away)).then(
        "individual_fault", "call_pending"
    )


# -- roll-up -------------------------------------------------------------------------------


def test_reports_under_two_children_open_at_the_parent() -> None:
    """Three reporters from two buildings on one fuse open a fuse incident, not a building one."""
    outcome = given(call("c1", 0, flat(3, 1)), call("c2", 1, flat(3, 2))).when(
        call("c3", 2, flat(2, 1))
    )
    outcome.then("incident_opened", "alert_raised", *["call_attached"] * 3)
    opened = outcome.one(IncidentOpened)
    assert opened.device_id == FUSE
    assert opened.customers_affected == 12
    for premise in POWER.premises_under(FUSE):
        view = outcome.book.covering(POWER.path(premise))
        assert view is not None and view.incident_id == opened.incident_id


def test_the_highest_qualifying_ancestor_holds_the_incident() -> None:
    """When a transformer and its feeder both qualify, the incident opens at the feeder."""
    outcome = given(
        call("c1", 0, flat(1, 1, fuse=1, transformer=1)),
        call("c2", 1, flat(1, 1, fuse=1, transformer=2)),
        call("c3", 2, flat(1, 1, fuse=2, transformer=1)),
        call("c4", 3, flat(1, 1, fuse=2, transformer=2)),
    ).when(call("c5", 4, flat(2, 1, fuse=1, transformer=1)))
    opened = outcome.one(IncidentOpened)
    assert opened.device_id == FEEDER
    assert attached_ids(outcome.derived, opened.incident_id) == ["c1", "c2", "c3", "c4", "c5"]


def test_incident_rolls_up_keeping_its_id() -> None:
    """A report from a sibling building moves the building incident up to the fuse, same id."""
    outcome = given(*building_incident()).when(call("c4", 5, flat(1, 1)))
    outcome.then("incident_escalated", "alert_raised", "call_attached")
    original = first_opened(outcome.before)
    escalated = outcome.one(IncidentEscalated)
    assert escalated.incident_id == original.incident_id
    assert (escalated.reason, escalated.from_device, escalated.device_id) == (
        "rolled_up",
        BUILDING,
        FUSE,
    )
    assert escalated.reporters == 3
    assert outcome.one(AlertRaised).kind == "incident_escalated"
    view = outcome.book.incidents[original.incident_id]
    assert view.device_id == FUSE
    assert view.call_ids == ["c1", "c2", "c3", "c4"]


def test_customer_share_keeps_two_small_faults_from_rolling_up_to_the_feeder() -> None:
    """Reports under two transformers roll up to the feeder by count; with min_customer_share
    the feeder also needs that share of its customers reporting, so they stay apart."""
    calls = [
        call(f"t{t}-{n}", n, flat(b, 1, transformer=t))
        for t in (1, 2)
        for n, b in ((1, 1), (2, 2), (3, 3))
    ]
    by_count = given(*calls[:4]).when(*calls[4:])
    assert by_count.one(IncidentEscalated).device_id == FEEDER
    shared = CorrelationRules.load(
        power={
            "ack_reminders": 0,
            "handling_deadline_minutes": 10**6,
            "levels": {**LEVELS, "feeder": {**LEVELS["feeder"], "min_customer_share": 0.1}},
        }
    )
    by_share = given(*calls[:4], rules=shared).when(*calls[4:])
    assert not by_share.of(IncidentEscalated)
    devices = {e.device_id for e in by_share.everything if isinstance(e, IncidentOpened)}
    # 6 of the feeder's 96 customers: two fuse faults, not a feeder fault
    assert devices == {"FU-FDR1-T1-2", "FU-FDR1-T2-2"}


def test_a_stray_call_under_a_second_child_does_not_make_it_affected() -> None:
    """With min_customer_share, a child counts towards min_children only when that share of
    its own customers report: one call under a second transformer does not lift a transformer
    fault to the feeder."""
    shared = CorrelationRules.load(
        power={
            "ack_reminders": 0,
            "handling_deadline_minutes": 10**6,
            "levels": {**LEVELS, "feeder": {**LEVELS["feeder"], "min_customer_share": 0.1}},
        }
    )
    fault = [
        call(f"t1-{f}-{b}-{n}", 0, flat(b, n, fuse=f))
        for f in (1, 2)
        for b in (1, 2, 3)
        for n in (1, 2)
    ]  # 12 of transformer 1's 24 customers: 12 of the feeder's 96
    stray = call("stray", 5, flat(1, 1, transformer=2))
    assert given(*fault).when(stray).one(IncidentEscalated).device_id == FEEDER  # by count
    outcome = given(*fault, rules=shared).when(stray)
    assert not outcome.of(IncidentEscalated)
    places = [e.device_id for e in outcome.everything if isinstance(e, IncidentEscalated)]
    assert places[-1] == TRANSFORMER


def test_roll_up_merges_younger_incidents_into_the_oldest() -> None:
    """Rolling up over two incidents keeps the oldest id and merges the other into it."""
    outcome = given(
        scada("s1", 0, OTHER_FUSE),
        scada("s2", 1, FUSE),
        call("c1", 2, flat(1, 1, fuse=1)),
        call("c2", 3, flat(1, 1, fuse=2)),
    ).when(call("c3", 4, flat(2, 1, fuse=1)))
    outcome.then("call_attached", "incident_escalated", "alert_raised", "incidents_merged")
    opened = [e for e in outcome.before if isinstance(e, IncidentOpened)]
    oldest, younger = opened[0].incident_id, opened[1].incident_id
    assert outcome.one(IncidentEscalated).incident_id == oldest
    assert outcome.one(IncidentEscalated).device_id == TRANSFORMER
    merged = outcome.one(IncidentsMerged)
    assert (merged.incident_id, merged.merged_ids) == (oldest, (younger,))
    book = outcome.book
    assert book.incidents[younger].state == "merged"
    assert book.incidents[younger].merged_into == oldest
    assert sorted(book.incidents[oldest].call_ids) == ["c1", "c2", "c3"]
    assert [v.incident_id for v in book.active()] == [oldest]


def test_roll_up_attaches_pending_calls_under_the_new_device() -> None:
    """Calls waiting under the node an incident rolls up to are attached to it."""
    outcome = given(
        scada("s1", 0, FUSE),
        call("p1", 1, flat(1, 1, fuse=1)),
        call("c2", 2, flat(1, 1)),
    ).when(call("c3", 3, flat(2, 1)))
    outcome.then("call_attached", "incident_escalated", "alert_raised", "call_attached")
    escalated = outcome.one(IncidentEscalated)
    assert escalated.device_id == TRANSFORMER
    assert attached_ids(outcome.derived, escalated.incident_id) == ["c3", "p1"]
    assert outcome.book.call_outcomes["p1"] == escalated.incident_id


# -- growth --------------------------------------------------------------------------------


def test_incident_grows_when_reporters_reach_a_growth_level() -> None:
    """The tenth distinct reporter (a default power growth level) escalates with reason 'grew'."""
    more = [call(f"c{4 + i}", 5 + i, flat(1 + i % 3, 2 + i // 3)) for i in range(5)]
    given(*fuse_incident(), *more).when(call("c9", 20, flat(3, 3))).then("call_attached")
    outcome = given(*fuse_incident(), *more, call("c9", 20, flat(3, 3))).when(
        call("c10", 21, flat(3, 4))
    )
    outcome.then("call_attached", "incident_escalated", "alert_raised")
    grew = outcome.one(IncidentEscalated)
    assert (grew.reason, grew.reporters, grew.device_id) == ("grew", 10, FUSE)
    assert outcome.one(AlertRaised).kind == "incident_escalated"


def test_repeat_caller_does_not_grow_an_incident() -> None:
    """A repeat call at the ninth reporter is not a tenth reporter."""
    more = [call(f"c{4 + i}", 5 + i, flat(1 + i % 3, 2 + i // 3)) for i in range(6)]
    given(*fuse_incident(), *more).when(call("c10", 20, flat(1, 1))).then("call_attached")


# -- SCADA ---------------------------------------------------------------------------------


@pytest.mark.parametrize("signal", ["breaker_open", "pressure_low", "supply_temp_low", "alarm"])
def test_scada_fault_before_any_call_opens_a_confirmed_incident(signal: str) -> None:
    """A fault signal opens a confirmed incident at once, covering every premise below it."""
    outcome = given().when(scada("s1", 0, FUSE, signal)).then("incident_opened", "alert_raised")
    opened = outcome.one(IncidentOpened)
    assert (opened.device_id, opened.phase, opened.cause) == (FUSE, "confirmed", f"scada: {signal}")
    assert outcome.one(AlertRaised).severity == "warning"
    premises = POWER.premises_under(FUSE)
    assert len(premises) == 12
    for premise in premises:
        view = outcome.book.covering(POWER.path(premise))
        assert view is not None and view.incident_id == opened.incident_id
    assert outcome.book.covering(POWER.path(flat(1, 1, fuse=1))) is None


def test_call_under_a_confirmed_incident_is_attached() -> None:
    """A call below a SCADA-confirmed incident is attached to it at once."""
    outcome = given(scada("s1", 0, FUSE)).when(call("c1", 1, flat(3, 1))).then("call_attached")
    assert "confirmed outage" in agent_sentence(outcome.book.covering(POWER.path(flat(3, 1))))


def test_scada_at_an_incident_device_confirms_it() -> None:
    """A fault signal at the device of a suspected incident confirms that incident."""
    outcome = given(*building_incident()).when(scada("s1", 5, BUILDING, "alarm"))
    outcome.then("incident_confirmed", "alert_raised")
    opened = first_opened(outcome.before)
    confirmed = outcome.one(IncidentConfirmed)
    assert (confirmed.incident_id, confirmed.device_id) == (opened.incident_id, BUILDING)
    assert outcome.book.incidents[opened.incident_id].state == "confirmed"
    assert outcome.book.incidents[opened.incident_id].cause == "scada: alarm"


def test_scada_below_an_incident_confirms_the_covering_incident() -> None:
    """A fault signal under a suspected incident confirms it and opens nothing new."""
    outcome = given(*fuse_incident()).when(scada("s1", 5, BUILDING))
    outcome.then("incident_confirmed", "alert_raised")


def test_scada_above_an_incident_rolls_it_up_and_confirms_it() -> None:
    """A fault signal above a suspected incident moves it up to the device, keeping its id."""
    outcome = given(*building_incident()).when(scada("s1", 5, FUSE))
    outcome.then("incident_escalated", "incident_confirmed", "alert_raised")
    opened = first_opened(outcome.before)
    assert outcome.one(IncidentEscalated).incident_id == opened.incident_id
    assert outcome.one(IncidentConfirmed).incident_id == opened.incident_id
    view = outcome.book.incidents[opened.incident_id]
    assert (view.device_id, view.state) == (FUSE, "confirmed")


def test_second_fault_signal_on_a_confirmed_incident_changes_nothing() -> None:
    """A further fault signal for an already confirmed incident decides nothing."""
    given(scada("s1", 0, FUSE)).when(scada("s2", 1, FUSE, "alarm")).then()


@pytest.mark.parametrize("signal", ["breaker_open", "breaker_closed"])
def test_invalid_quality_signals_are_ignored(signal: str) -> None:
    """A signal of quality 'invalid' neither opens nor restores anything."""
    given(scada("s0", 0, OTHER_FUSE)).when(
        scada("s1", 1, FUSE, signal, quality="invalid"),
        scada("s2", 2, OTHER_FUSE, signal, quality="invalid"),
    ).then()


@pytest.mark.parametrize("signal", ["breaker_closed", "normal"])
def test_restore_signal_restores_the_incident_at_the_device(signal: str) -> None:
    """breaker_closed/normal at the incident's device restores it and says so in an alert."""
    outcome = given(scada("s1", 0, FUSE), call("c1", 1, flat(3, 1))).when(
        scada("s2", 30, FUSE, signal)
    )
    outcome.then("incident_restored", "alert_raised")
    restored = outcome.one(IncidentRestored)
    assert restored.reason == f"scada: {signal}"
    assert outcome.one(AlertRaised).kind == "incident_restored"
    assert outcome.book.incidents[restored.incident_id].state == "restored"
    assert outcome.book.covering(POWER.path(flat(3, 1))) is None


def test_restore_signal_restores_an_incident_confirmed_by_that_device() -> None:
    """A restore at the device that confirmed an incident higher up restores that incident."""
    outcome = given(*fuse_incident(), scada("s1", 5, BUILDING)).when(
        scada("s2", 30, BUILDING, "breaker_closed")
    )
    outcome.then("incident_restored", "alert_raised")
    assert outcome.book.active() == []


def test_restore_signal_elsewhere_restores_nothing() -> None:
    """A restore at an unrelated device leaves the incident open."""
    given(scada("s1", 0, FUSE)).when(scada("s2", 30, OTHER_FUSE, "breaker_closed")).then()


def test_calls_after_restoration_open_a_new_incident() -> None:
    """Once restored, new calls in the same place wait and open a new incident, not the old one."""
    outcome = given(
        scada("s1", 0, FUSE),
        *building_incident(1),
        scada("s2", 10, FUSE, "breaker_closed"),
        call("c4", 20, flat(3, 1)),
        call("c5", 21, flat(3, 2)),
    ).when(call("c6", 22, flat(3, 3)))
    outcome.then("incident_opened", "alert_raised", *["call_attached"] * 3)
    old = first_opened(outcome.before).incident_id
    new = outcome.one(IncidentOpened).incident_id
    assert new != old
    assert kinds(outcome.before[-2:]) == ["call_pending", "call_pending"]
    assert attached_ids(outcome.derived, new) == ["c4", "c5", "c6"]
    assert outcome.book.incidents[old].call_ids == ["c1", "c2", "c3"]


# -- planned works -------------------------------------------------------------------------


def test_planned_work_opens_a_planned_incident_when_its_window_starts() -> None:
    """A scheduled work opens a confirmed PLN- incident at starts_at, with its end as ETR."""
    scheduled = work("w1", 0, 60, 180, [TRANSFORMER])
    given(scheduled).when(tick(59)).then()
    outcome = given(scheduled).when(tick(60)).then("incident_opened")
    assert kinds(outcome.before) == ["planned_work_registered"]
    opened = outcome.one(IncidentOpened)
    assert opened.incident_id.startswith("PLN-")
    assert (opened.planned, opened.work_id, opened.phase) == (True, "W-1", "confirmed")
    assert opened.cause == "planned: cable jointing"
    assert (opened.occurred_at, opened.etr) == (at(60), at(180))
    assert opened.device_id == TRANSFORMER


def test_calls_inside_a_planned_window_are_attached_without_alerts() -> None:
    """Calls and signals under a running planned work go to it; nothing pages anyone."""
    outcome = given(work("w1", 0, 60, 180, [TRANSFORMER]), tick(60)).when(
        call("c1", 90, flat(3, 1)),
        call("c2", 91, flat(3, 2)),
        call("c3", 92, flat(3, 3)),
        call("c4", 93, flat(1, 1, fuse=1)),
        scada("s1", 94, FUSE),
    )
    # The planned incident is confirmed from the start: the signal opens nothing new.
    outcome.then(*["call_attached"] * 4)
    planned = first_opened(outcome.before)
    assert attached_ids(outcome.derived, planned.incident_id) == ["c1", "c2", "c3", "c4"]
    assert not [e for e in outcome.everything if isinstance(e, AlertRaised)]
    assert "planned work" in agent_sentence(outcome.book.covering(POWER.path(flat(3, 1))))


def test_calls_before_a_planned_window_are_not_attached() -> None:
    """A registered work whose window has not started explains no call."""
    given(work("w1", 0, 60, 180, [TRANSFORMER])).when(call("c1", 30, flat(3, 1))).then(
        "call_pending"
    )


def test_planned_incident_is_restored_at_its_end() -> None:
    """The planned incident ends at ends_at with incident_restored and no alert."""
    outcome = given(work("w1", 0, 60, 180, [TRANSFORMER]), tick(60)).when(tick(180))
    outcome.then("incident_restored")
    restored = outcome.one(IncidentRestored)
    assert (restored.occurred_at, restored.reason) == (at(180), "planned work ended")
    assert outcome.book.active() == []


def test_calls_after_a_planned_window_wait_as_usual() -> None:
    """After the planned work ended, calls are no longer explained by it."""
    given(work("w1", 0, 60, 180, [TRANSFORMER]), tick(60), tick(180)).when(
        call("c1", 200, flat(3, 1))
    ).then("call_pending")


def test_cancelled_running_work_is_withdrawn_and_restored() -> None:
    """Cancelling a running work withdraws it and restores its planned incident."""
    outcome = given(work("w1", 0, 60, 180, [TRANSFORMER]), tick(60)).when(
        cancel("x1", 90, [TRANSFORMER])
    )
    outcome.then("planned_work_withdrawn", "incident_restored")
    assert outcome.one(IncidentRestored).reason == "planned work cancelled"
    assert outcome.book.active() == []


def test_work_cancelled_before_its_window_never_opens() -> None:
    """A work cancelled before it starts opens no incident when its start passes."""
    outcome = given(work("w1", 0, 60, 180, [TRANSFORMER]), cancel("x1", 30, [TRANSFORMER])).when(
        tick(60), tick(120)
    )
    outcome.then()
    assert kinds(outcome.before) == ["planned_work_registered", "planned_work_withdrawn"]


def test_planned_work_between_two_events_still_opens_and_ends() -> None:
    """A window no event falls into still opens at starts_at and ends at ends_at."""
    far_away = flat(1, 1, fuse=1, transformer=4, feeder=3)
    outcome = given(work("w1", 0, 60, 120, [TRANSFORMER])).when(call("c1", 200, far_away))
    outcome.then("incident_opened", "incident_restored", "call_pending")
    assert outcome.one(IncidentOpened).occurred_at == at(60)
    assert outcome.one(IncidentRestored).occurred_at == at(120)
    # The same as when a tick happened to look inside the window.
    ticked = given(work("w1", 0, 60, 120, [TRANSFORMER]), tick(90)).when(call("c1", 200, far_away))
    assert ticked.everything == outcome.everything


def test_scada_restore_of_a_planned_incident_pages_nobody_and_is_final() -> None:
    """Supply back early on a planned work: restored once, no alert, nothing left to time."""
    outcome = given(work("w1", 0, 60, 180, [FUSE]), tick(60)).when(
        scada("s1", 90, FUSE, "breaker_closed"), tick(200), tick(300)
    )
    outcome.then("incident_restored")
    assert outcome.states[DOMAIN].is_idle


def test_planned_work_end_restores_only_devices_still_out() -> None:
    """When one device of a work came back early, its end restores only the others."""
    outcome = given(
        work("w1", 0, 60, 180, [FUSE, OTHER_FUSE]),
        tick(60),
        scada("s1", 90, FUSE, "breaker_closed"),
    ).when(tick(180))
    outcome.then("incident_restored")
    assert outcome.one(IncidentRestored).device_id == OTHER_FUSE
    assert outcome.states[DOMAIN].is_idle


# -- individual faults and repeat callers --------------------------------------------------


def test_tagged_call_is_an_individual_fault_at_once() -> None:
    """A call with tags is an individual fault immediately, with the tags as reason."""
    outcome = given().when(call("c1", 0, flat(3, 1), tags=["arrears", "prepaid_empty"]))
    outcome.then("individual_fault")
    assert outcome.one(IndividualFault).reason == "tagged: arrears, prepaid_empty"


def test_tagged_calls_never_count_toward_an_area_fault() -> None:
    """A tagged call does not count as the third reporter of a building."""
    outcome = given(call("c1", 0, flat(3, 1)), call("c2", 1, flat(3, 2))).when(
        call("c3", 2, flat(3, 3), tags=["own_appliance"])
    )
    outcome.then("individual_fault")
    # The next untagged neighbour opens it, without the tagged call.
    later = given(
        call("c1", 0, flat(3, 1)),
        call("c2", 1, flat(3, 2)),
        call("c3", 2, flat(3, 3), tags=["own_appliance"]),
    ).when(call("c4", 3, flat(3, 4)))
    opened = later.one(IncidentOpened)
    assert attached_ids(later.derived, opened.incident_id) == ["c1", "c2", "c4"]


def test_tagged_call_under_an_incident_is_not_attached() -> None:
    """A tagged call stays individual even under an open incident."""
    given(scada("s1", 0, FUSE)).when(call("c1", 1, flat(3, 1), tags=["arrears"])).then(
        "individual_fault"
    )


def test_repeat_caller_counts_once_toward_thresholds() -> None:
    """Two calls from one flat and one from another are two reporters: no incident."""
    given(call("c1", 0, flat(3, 1)), call("c2", 1, flat(3, 2))).when(
        call("c3", 2, flat(3, 1))
    ).then("call_pending")


def test_repeat_call_is_attached_as_repeat_when_the_incident_opens() -> None:
    """When the incident opens, a waiting repeat call is attached with repeat=True."""
    outcome = given(
        call("c1", 0, flat(3, 1)), call("c2", 1, flat(3, 2)), call("c3", 2, flat(3, 1))
    ).when(call("c4", 3, flat(3, 3)))
    repeats = {e.call_id: e.repeat for e in outcome.of(CallAttached)}
    assert repeats == {"c1": False, "c2": False, "c3": True, "c4": False}
    view = outcome.book.incidents[outcome.one(IncidentOpened).incident_id]
    assert (view.reporters, view.repeat_calls) == (3, 1)


def test_repeat_call_to_an_open_incident_is_attached_as_repeat() -> None:
    """A reporter calling again about an open incident is attached with repeat=True."""
    outcome = given(*building_incident()).when(call("c4", 10, flat(3, 2)))
    outcome.then("call_attached")
    assert outcome.one(CallAttached).repeat is True


# -- delivery: duplicates and lateness ----------------------------------------------------


def test_duplicate_event_id_changes_nothing() -> None:
    """A re-delivered event (same event_id) decides nothing, calls and signals alike."""
    given(*building_incident()).when(call("c3", 2, flat(3, 3))).then()
    given(scada("s1", 0, FUSE), scada("s2", 5, FUSE, "breaker_closed")).when(
        scada("s1", 0, FUSE)
    ).then()


def test_events_are_held_for_the_lateness_bound() -> None:
    """With lateness, an event is decided only once event time passes it by the bound."""
    rules = CorrelationRules.load(lateness_seconds=60)
    held = given(rules=rules).when(call("c1", 0, flat(3, 1)))
    held.then()
    released = given(call("c1", 0, flat(3, 1)), rules=rules).when(call("c2", 1, flat(1, 1, fuse=1)))
    released.then("call_pending")
    assert released.one(CallPending).call_id == "c1"


def test_late_events_within_the_bound_are_placed_by_event_time() -> None:
    """Out-of-order arrival inside the lateness bound decides the same as in-order arrival."""
    rules = CorrelationRules.load(lateness_seconds=120)
    calls = [call("c1", 0, flat(3, 1)), call("c2", 0.5, flat(3, 2)), call("c3", 1, flat(3, 3))]
    results = []
    for order in ([0, 1, 2], [2, 1, 0], [1, 2, 0]):
        outcome = given(*[calls[i] for i in order], rules=rules).when()
        state = outcome.states[DOMAIN]
        results.append(outcome.before + outcome.correlator.flush(state))
    assert results[0] == results[1] == results[2]
    assert kinds(results[0])[:2] == ["call_pending", "call_pending"]


def test_arrival_order_inside_the_bound_does_not_decide_a_planned_work() -> None:
    """Two arrivals swapped inside the lateness bound give the same planned incident."""
    rules = CorrelationRules.load(lateness_seconds=120)
    far_away = flat(1, 1, fuse=1, transformer=4, feeder=3)
    scheduled = PlannedWorkScheduled(
        event_id="w1",
        occurred_at=at(0),
        work_id="W-1",
        device_ids=(TRANSFORMER,),
        starts_at=T0 + timedelta(seconds=200),
        ends_at=T0 + timedelta(seconds=260),
    )
    later = [
        CallReported(
            event_id=f"c{s}",
            occurred_at=T0 + timedelta(seconds=s),
            utility="power",
            premise_id=far_away,
        )
        for s in (300, 350, 400)
    ]
    arrivals: list[list[Item]] = [
        [scheduled, *later],
        [scheduled, later[0], later[2], later[1]],
    ]
    runs = []
    for arrival in arrivals:
        outcome = given(*arrival, rules=rules).when()
        runs.append(outcome.before + outcome.correlator.flush(outcome.states[DOMAIN]))
    assert runs[0] == runs[1]
    assert "incident_opened" in kinds(runs[0])


# -- stale ---------------------------------------------------------------------------------


def test_suspected_incident_goes_stale_without_new_reports() -> None:
    """No report for stale_after (power: 240 min) makes a suspected incident stale, and alerts."""
    given(*fuse_incident()).when(tick(2 + 239)).then()
    outcome = given(*fuse_incident()).when(tick(2 + 240)).then("incident_stale", "alert_raised")
    stale = outcome.one(IncidentStale)
    assert (stale.occurred_at, stale.last_report_at) == (at(242), at(2))
    assert outcome.one(AlertRaised).kind == "incident_stale"
    assert outcome.book.incidents[stale.incident_id].state == "stale"


def test_a_later_event_also_makes_an_incident_stale() -> None:
    """Time advanced by an unrelated later event runs the stale timer too."""
    far_away = flat(1, 1, fuse=1, transformer=4, feeder=3)
    given(*fuse_incident()).when(call("c9", 300, far_away)).then(
        "incident_stale", "alert_raised", "call_pending"
    )


def test_new_report_revives_a_stale_incident() -> None:
    """A call attached to a stale incident makes it suspected again."""
    outcome = given(*fuse_incident(), tick(242)).when(call("c4", 250, flat(2, 2)))
    outcome.then("call_attached")
    assert outcome.book.incidents[outcome.one(CallAttached).incident_id].state == "suspected"


def test_confirmed_incident_never_goes_stale() -> None:
    """A SCADA-confirmed incident stays confirmed however long nobody calls."""
    given(scada("s1", 0, FUSE)).when(tick(24 * 60)).then()


def test_read_model_counts_a_reporter_in_two_merged_incidents_once() -> None:
    """After a merge, the incident book counts distinct reporters, not the sum of both sides."""
    from events.derived import CallAttached, IncidentOpened, IncidentsMerged
    from projections.incidents import IncidentBook

    at = datetime(2026, 1, 15, 8, 0, tzinfo=UTC)
    book = IncidentBook()
    for incident, device in (("A", "B-FDR1-T1-F2-3"), ("B", "B-FDR1-T1-F2-2")):
        book.apply(
            IncidentOpened(
                event_id=f"{incident}/opened",
                occurred_at=at,
                domain="SUB1",
                incident_id=incident,
                device_id=device,
                device_kind="building",
                utility="power",
                path=("SUB1", device),
                phase="suspected",
                cause="unknown",
                customers_affected=4,
            )
        )
    for incident, call, reporter in (
        ("A", "c1", "caller:x"),
        ("A", "c2", "caller:y"),
        ("B", "c3", "caller:x"),
    ):
        book.apply(
            CallAttached(
                event_id=f"{incident}/call/{call}",
                occurred_at=at,
                domain="SUB1",
                incident_id=incident,
                call_id=call,
                node_id="n",
                reporter=reporter,
                repeat=False,
                call_occurred_at=at,
            )
        )
    book.apply(
        IncidentsMerged(
            event_id="A/merged", occurred_at=at, domain="SUB1", incident_id="A", merged_ids=("B",)
        )
    )
    survivor = book.incidents["A"]
    assert survivor.reporters == 2
    assert sorted(survivor.call_ids) == ["c1", "c2", "c3"]
    assert book.incidents["B"].state == "merged"


# -- shift-lead timers: acknowledgement and handling deadlines -----------------------------

TIMERS = CorrelationRules.load(
    power={
        "ack_within_minutes": 15,
        "ack_reminders": 2,
        "handling_deadline_minutes": 120,
        "deadline_escalate_after_minutes": 60,
    }
)


def alerts_of(outcome: Outcome) -> list[tuple[str, int]]:
    return [(a.kind, a.escalation) for a in outcome.derived if isinstance(a, AlertRaised)]


def test_an_unacknowledged_incident_is_reminded_then_escalated_on_schedule() -> None:
    """15 minutes after opening a reminder to the lead; at 30 minutes to the supervisor."""
    opened_at = 2  # the building incident opens with the third flat, at minute 2
    early = given(*building_incident(), rules=TIMERS).when(tick(opened_at + 14))
    assert alerts_of(early) == []
    first = given(*building_incident(), rules=TIMERS).when(tick(opened_at + 15))
    assert alerts_of(first) == [("incident_unacknowledged", 1)]
    both = given(*building_incident(), rules=TIMERS).when(tick(opened_at + 45))
    assert alerts_of(both) == [("incident_unacknowledged", 1), ("incident_unacknowledged", 2)]
    assert "supervisor" in [a for a in both.derived if isinstance(a, AlertRaised)][1].summary


def test_acknowledgement_stops_the_reminders() -> None:
    """Once a lead acknowledges, no unacknowledged reminder follows."""
    acked = given(*building_incident(), rules=TIMERS).when(tick(2))
    incident = acked.book.active()[0].incident_id
    outcome = given(*building_incident(), rules=TIMERS).when(
        action("a1", 5, IncidentAcknowledged, incident, by="lead.anna"), tick(50)
    )
    assert outcome.derived[0].type == "acknowledgement_recorded"
    assert [k for k, _ in alerts_of(outcome)] == []
    assert outcome.book.incidents[incident].acknowledged_by == "lead.anna"


def test_the_handling_deadline_reminds_then_escalates_even_when_acknowledged() -> None:
    """Deadline at 2 h: a reminder; an hour later the supervisor. Acknowledging does not stop it."""
    incident = given(*building_incident(), rules=TIMERS).when(tick(2)).book.active()[0].incident_id
    outcome = given(
        *building_incident(),
        action("a1", 5, IncidentAcknowledged, incident, by="lead.anna"),
        rules=TIMERS,
    ).when(tick(2 + 120), tick(2 + 180))
    assert alerts_of(outcome) == [("deadline_reminder", 1), ("deadline_escalated", 2)]


def test_timers_fire_the_same_whether_ticked_often_or_once() -> None:
    """A tick every minute and one tick three hours later decide the same reminders."""
    every_minute = given(*building_incident(), rules=TIMERS).when(*[tick(m) for m in range(3, 190)])
    at_once = given(*building_incident(), rules=TIMERS).when(tick(189))
    assert [d.event_id for d in every_minute.derived] == [d.event_id for d in at_once.derived]


def test_resolving_restores_with_who_did_it_and_ends_the_timers() -> None:
    """A lead's resolve restores the incident, says who, and no reminder comes after."""
    incident = given(*building_incident(), rules=TIMERS).when(tick(2)).book.active()[0].incident_id
    outcome = given(*building_incident(), rules=TIMERS).when(
        action("a1", 10, IncidentResolved, incident, by="lead.bo", note="valve reopened"),
        tick(400),
    )
    restored = outcome.one(IncidentRestored)
    assert (restored.by, restored.reason) == ("lead.bo", "resolved by lead.bo: valve reopened")
    assert alerts_of(outcome) == [("incident_restored", 0)]


def test_cause_and_etr_set_by_a_lead_reach_the_agent_sentence() -> None:
    """The cause and ETR a lead sets are what the agent reads out."""
    incident = given(*building_incident()).when(tick(2)).book.active()[0].incident_id
    etr = T0 + timedelta(hours=3)
    outcome = given(*building_incident()).when(
        action("a1", 5, CauseSet, incident, by="lead.anna", cause="cable fault in the street"),
        action("a2", 6, EtrSet, incident, by="lead.anna", etr=etr),
    )
    view = outcome.book.incidents[incident]
    assert (view.cause, view.etr) == ("cable fault in the street", etr)
    sentence = agent_sentence(view)
    assert "cable fault in the street" in sentence and etr.strftime("%H:%M") in sentence


def test_an_action_on_an_unknown_incident_changes_nothing() -> None:
    """Acknowledging an incident that is not open in the domain decides nothing."""
    outcome = given(*building_incident()).when(
        action("a1", 5, IncidentAcknowledged, "INC-nope", by="lead.anna")
    )
    assert outcome.derived == []


def test_a_third_call_from_the_same_caller_raises_a_repeat_caller_alert() -> None:
    """The same flat calling three times about one incident is a complaint risk."""
    outcome = given(*building_incident(), call("r1", 10, flat(3, 1))).when(
        call("r2", 20, flat(3, 1))
    )
    assert [a.kind for a in outcome.derived if isinstance(a, AlertRaised)] == ["repeat_caller"]


def test_a_merged_child_reports_its_own_restoration() -> None:
    """Resolving the survivor restores the incident merged into it, with a notice of its own."""
    merge: list[Item] = [
        scada("s1", 0, OTHER_FUSE),
        scada("s2", 1, FUSE),
        call("c1", 2, flat(1, 1, fuse=1)),
        call("c2", 3, flat(1, 1, fuse=2)),
        call("c3", 4, flat(2, 1, fuse=1)),
    ]
    merged = next(e for e in given(*merge).when(tick(5)).before if isinstance(e, IncidentsMerged))
    survivor, child = merged.incident_id, merged.merged_ids[0]
    outcome = given(*merge).when(action("a1", 10, IncidentResolved, survivor, by="lead.bo"))
    restored = [e.incident_id for e in outcome.derived if isinstance(e, IncidentRestored)]
    assert restored == [survivor, child]
    notices = [(a.incident_id, a.kind) for a in outcome.derived if isinstance(a, AlertRaised)]
    assert notices == [(survivor, "incident_restored"), (child, "incident_restored")]
    assert outcome.book.incidents[child].state == "restored"
    assert outcome.book.incidents[child].merged_into == survivor


def test_a_second_acknowledgement_is_ignored_and_the_first_owner_stays() -> None:
    """Two acknowledgements racing: the second decides nothing; the lead who came first owns it."""
    incident = first_opened(given().when(*building_incident()).derived).incident_id
    first = action("a1", 5, IncidentAcknowledged, incident, by="lead.anna", note="crew sent")
    outcome = given(*building_incident(), first).when(
        action("a2", 6, IncidentAcknowledged, incident, by="notification link")
    )
    assert outcome.derived == []
    assert outcome.states[DOMAIN].incidents[incident].acknowledged_by == "lead.anna"
    view = outcome.book.incidents[incident]
    assert (view.acknowledged_by, view.acknowledged_at) == ("lead.anna", at(5))
    lines = [e.summary for e in view.timeline if e.summary.startswith("acknowledged by")]
    assert lines == ["acknowledged by lead.anna: crew sent"]


def test_a_second_acknowledgement_already_on_the_stream_keeps_the_first_owner() -> None:
    """A stream from before acknowledgements were idempotent: evolve and the book keep the first."""
    incident = first_opened(given().when(*building_incident()).derived).incident_id
    outcome = given(*building_incident()).when(
        action("a1", 5, IncidentAcknowledged, incident, by="lead.anna")
    )
    recorded = outcome.one(AcknowledgementRecorded)
    second = recorded.model_copy(
        update={"event_id": "late", "by": "notification link", "occurred_at": at(9)}
    )
    state = outcome.correlator.evolve(outcome.states[DOMAIN], second)
    assert state.incidents[incident].acknowledged_by == "lead.anna"
    outcome.book.apply(second)
    view = outcome.book.incidents[incident]
    assert (view.acknowledged_by, view.acknowledged_at) == ("lead.anna", at(5))
    assert [e.event_id for e in view.timeline if e.type == "acknowledgement_recorded"] == [
        recorded.event_id
    ]
