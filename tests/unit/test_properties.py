"""The correlator's laws, checked by Hypothesis on generated storms over the sample power network.

Replay equals incremental processing (also across a state restart), duplicates change nothing,
a call belongs to at most one open incident, and arrival order inside the lateness bound does
not matter.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from correlators.correlator import Correlator
from correlators.replay import replay
from correlators.routing import Inbound, route
from correlators.rules import CorrelationRules
from correlators.state import DomainState
from events import (
    CallReported,
    PlannedWorkCancelled,
    PlannedWorkScheduled,
    ScadaSignal,
    Tick,
)
from events.derived import DerivedBase
from projections.incidents import IncidentBook
from topology import Topology, load_topology
from topology.samples import POWER_CSV

POWER: Topology = load_topology(POWER_CSV)
T0 = datetime(2024, 4, 15, 22, 0, tzinfo=UTC)

# Most calls land under one feeder so they correlate; a few come from another one.
PREMISES = [*POWER.premises_under("T-FDR1-1"), *POWER.premises_under("T-FDR1-2")]
ELSEWHERE = list(POWER.premises_under("FU-FDR2-T1-1"))
# A few devices, so signals and works often meet the calls and each other.
DEVICES = ["B-FDR1-T1-F2-3", "FU-FDR1-T1-1", "FU-FDR1-T1-2", "T-FDR1-1", "T-FDR1-2", "FDR-1"]
PHONES = ["+1 212 555 0100", "2125550101", "(212) 555-0102"]
SIGNALS = ["breaker_open", "breaker_open", "alarm", "pressure_low", "breaker_closed", "normal"]
LATENESS = 120  # seconds

RULES = CorrelationRules.load()
LATE_RULES = CorrelationRules.load(lateness_seconds=LATENESS)

PROPERTY = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@st.composite
def a_call(draw: st.DrawFn, event_id: str, when: datetime) -> CallReported:
    premise = draw(st.sampled_from(PREMISES) | st.sampled_from(ELSEWHERE))
    how = draw(st.sampled_from(["premise", "premise", "premise", "phone", "public"]))
    place: dict[str, Any]
    if how == "premise":
        place = {"premise_id": premise}
    elif how == "phone":
        place = {"building_id": POWER.parent(premise), "caller": draw(st.sampled_from(PHONES))}
    else:
        place = {"address": POWER.node(POWER.parent(premise) or premise).address}
    tags = draw(st.sampled_from([(), (), (), (), (), (), ("arrears",)]))
    scope = draw(st.sampled_from(["unknown", "unknown", "whole_building", "only_me"]))
    return CallReported(
        event_id=event_id, occurred_at=when, utility="power", scope=scope, tags=tags, **place
    )


@st.composite
def a_signal(draw: st.DrawFn, event_id: str, when: datetime) -> ScadaSignal:
    return ScadaSignal(
        event_id=event_id,
        occurred_at=when,
        device_id=draw(st.sampled_from(DEVICES)),
        signal=draw(st.sampled_from(SIGNALS)),
        quality=draw(st.sampled_from(["good", "good", "good", "suspect", "invalid"])),
    )


@st.composite
def a_work(draw: st.DrawFn, event_id: str, when: datetime) -> PlannedWorkScheduled:
    starts = when + timedelta(seconds=draw(st.integers(-300, 1800)))
    return PlannedWorkScheduled(
        event_id=event_id,
        occurred_at=when,
        work_id=draw(st.sampled_from(["W-1", "W-2"])),
        device_ids=tuple(draw(st.lists(st.sampled_from(DEVICES), min_size=1, max_size=2))),
        starts_at=starts,
        ends_at=starts + timedelta(seconds=draw(st.integers(30, 300) | st.integers(300, 7200))),
    )


@st.composite
def a_cancel(draw: st.DrawFn, event_id: str, when: datetime) -> PlannedWorkCancelled:
    return PlannedWorkCancelled(
        event_id=event_id,
        occurred_at=when,
        work_id=draw(st.sampled_from(["W-1", "W-2"])),
        device_ids=(draw(st.sampled_from(DEVICES)),),
    )


@st.composite
def storms(draw: st.DrawFn, max_size: int = 40) -> list[Inbound]:
    """Events at distinct, increasing times: mostly calls, some SCADA, a few planned works."""
    gaps = draw(
        st.lists(
            st.integers(1, 240) | st.integers(600, 3 * 3600),
            min_size=1,
            max_size=max_size,
        )
    )
    events: list[Inbound] = []
    seconds = 0
    for i, gap in enumerate(gaps):
        seconds += gap
        when = T0 + timedelta(seconds=seconds)
        kind = draw(st.sampled_from(["call"] * 10 + ["scada"] * 4 + ["work"] * 2 + ["cancel"]))
        event: Inbound
        if kind == "call":
            event = draw(a_call(f"e{i}", when))
        elif kind == "scada":
            event = draw(a_signal(f"e{i}", when))
        elif kind == "work":
            event = draw(a_work(f"e{i}", when))
        else:
            event = draw(a_cancel(f"e{i}", when))
        events.append(event)
    return events


def incremental(
    correlator: Correlator,
    events: Sequence[Inbound],
    restarts: Collection[int] = (),
) -> list[DerivedBase]:
    """Handle events one at a time as the stream does; before event i in `restarts`, every
    domain state goes through JSON and a new correlator takes over (a worker restart)."""
    states: dict[str, DomainState] = {}
    out: list[DerivedBase] = []
    for i, event in enumerate(events):
        if i in restarts:
            states = {
                domain: DomainState.model_validate_json(state.model_dump_json())
                for domain, state in states.items()
            }
            correlator = Correlator(correlator.topology, correlator.rules)
        for routed in route(correlator.topology, event):
            state = states.setdefault(routed.domain, correlator.initial_state(routed.domain))
            out += correlator.handle(state, routed)
    for domain in sorted(states):
        out += correlator.flush(states[domain])
    return out


@PROPERTY
@given(storms(), st.sampled_from([RULES, LATE_RULES]))
def test_replay_equals_incremental_processing(
    events: list[Inbound], rules: CorrelationRules
) -> None:
    """Handling events one at a time and flushing decides exactly what `replay` decides."""
    correlator = Correlator(POWER, rules)
    assert incremental(correlator, events) == replay(correlator, events).derived


@PROPERTY
@given(storms(), st.sampled_from([RULES, LATE_RULES]), st.data())
def test_state_json_round_trip_mid_stream_changes_nothing(
    events: list[Inbound], rules: CorrelationRules, data: st.DataObject
) -> None:
    """Restarting from the JSON of the state at any points gives the same derived events."""
    restarts = data.draw(st.sets(st.integers(0, len(events) - 1), min_size=1, max_size=4))
    correlator = Correlator(POWER, rules)
    assert incremental(correlator, events, restarts) == replay(correlator, events).derived


@PROPERTY
@given(storms(), st.sampled_from([RULES, LATE_RULES]), st.sampled_from([45, 120, 600]))
def test_ticks_between_events_change_nothing(
    events: list[Inbound], rules: CorrelationRules, cadence: int
) -> None:
    """Live ticks between events, at any cadence, decide what a replay without ticks decides."""
    correlator = Correlator(POWER, rules)
    states: dict[str, DomainState] = {}
    out: list[DerivedBase] = []
    now = T0
    for event in events:
        while now + timedelta(seconds=cadence) < event.occurred_at:
            now += timedelta(seconds=cadence)
            for domain, state in states.items():
                out += correlator.handle(state, Tick(domain=domain, occurred_at=now))
        for routed in route(POWER, event):
            state = states.setdefault(routed.domain, correlator.initial_state(routed.domain))
            out += correlator.handle(state, routed)
    for domain in sorted(states):
        out += correlator.flush(states[domain])
    assert out == replay(correlator, events).derived


@PROPERTY
@given(storms(), st.sampled_from([RULES, LATE_RULES]), st.data())
def test_duplicates_change_nothing(
    events: list[Inbound], rules: CorrelationRules, data: st.DataObject
) -> None:
    """Re-delivering any events, anywhere after their first delivery, changes no derived event."""
    with_duplicates = list(events)
    for _ in range(data.draw(st.integers(1, 10))):
        original = data.draw(st.sampled_from(events))
        first = with_duplicates.index(original)
        position = data.draw(st.integers(first + 1, len(with_duplicates)))
        with_duplicates.insert(position, original.model_copy())
    correlator = Correlator(POWER, rules)
    assert replay(correlator, with_duplicates).derived == replay(correlator, events).derived


@PROPERTY
@given(storms(), st.sampled_from([RULES, LATE_RULES]))
def test_a_call_belongs_to_at_most_one_open_incident(
    events: list[Inbound], rules: CorrelationRules
) -> None:
    """After every event, each call id is in at most one active incident, and not also waiting."""
    correlator = Correlator(POWER, rules)
    book = IncidentBook()
    states: dict[str, DomainState] = {}
    for event in events:
        for routed in route(POWER, event):
            state = states.setdefault(routed.domain, correlator.initial_state(routed.domain))
            book.apply_all(correlator.handle(state, routed))
        active = Counter(c for view in book.active() for c in view.call_ids)
        assert [c for c, n in active.items() if n > 1] == []
        for view in book.active():
            for call_id in view.call_ids:
                assert book.call_outcomes[call_id] == view.incident_id
        waiting = {c for state in states.values() for c in state.pending}
        assert waiting & set(active) == set()


def swap_close_neighbours(events: list[Inbound], picks: Sequence[bool]) -> list[Inbound]:
    """Swap disjoint neighbour pairs whose event times differ by less than the lateness bound."""
    out = list(events)
    i = 0
    while i + 1 < len(out):
        close = out[i + 1].occurred_at - out[i].occurred_at < timedelta(seconds=LATENESS)
        if close and picks[i % len(picks)]:
            out[i], out[i + 1] = out[i + 1], out[i]
            i += 2
        else:
            i += 1
    return out


@PROPERTY
@given(storms(), st.lists(st.booleans(), min_size=1, max_size=40))
def test_shuffling_within_the_lateness_bound_gives_the_same_incidents(
    events: list[Inbound], picks: list[bool]
) -> None:
    """Arrival order of events closer than the lateness bound does not change the incidents."""
    correlator = Correlator(POWER, LATE_RULES)
    shuffled = swap_close_neighbours(events, picks)
    in_order = replay(correlator, events)
    out_of_order = replay(correlator, shuffled)
    assert out_of_order.summary() == in_order.summary()
    assert sorted(e.event_id for e in out_of_order.derived) == sorted(
        e.event_id for e in in_order.derived
    )
