"""Event time with a bound: an event moves its domain's clock at most to its acceptance plus
the allowed skew, and the worker's tick and stamping never overflow (issue 15)."""

from datetime import UTC, datetime, timedelta
from typing import Any

from correlators.correlator import Correlator
from correlators.routing import route
from correlators.rules import CorrelationRules
from correlators.state import DomainState
from events import CallReported, Tick
from events.derived import DeadlinePassed, IncidentOpened, IncidentUnacknowledged
from streams.app import DomainClock, accepted, tick_time
from topology import load_topology
from topology.samples import POWER_CSV

POWER = load_topology(POWER_CSV)
T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
RULES = CorrelationRules.load()  # reminders after 15 min, deadline after 4 h


def call(n: int, occurred_at: datetime, recorded_at: datetime | None = None) -> CallReported:
    return CallReported(
        event_id=f"c{n}",
        occurred_at=occurred_at,
        recorded_at=recorded_at,
        utility="power",
        premise_id=f"P-FDR1-T1-F2-B3-{n}",
    )


def fold(correlator: Correlator, state: DomainState, event: CallReported | Tick) -> list[Any]:
    if isinstance(event, Tick):
        return correlator.handle(state, event)
    return [d for routed in route(POWER, event) for d in correlator.handle(state, routed)]


def test_a_call_dated_two_days_ahead_fires_no_timer_of_an_open_incident() -> None:
    """Accepted at T0+3 min but dated two days on, a call moves time to T0+8 min only: the
    incident opened at T0 gets no reminder yet; a tick at T0+16 min then brings the first."""
    correlator = Correlator(POWER, RULES)
    state = correlator.initial_state("SUB1")
    opened = [d for n in (1, 2, 3) for d in fold(correlator, state, call(n, T0, T0))]
    assert any(isinstance(d, IncidentOpened) for d in opened)
    ahead = call(4, T0 + timedelta(days=2), recorded_at=T0 + timedelta(minutes=3))
    derived = fold(correlator, state, ahead)
    assert not [d for d in derived if isinstance(d, IncidentUnacknowledged | DeadlinePassed)]
    assert state.watermark == T0 + timedelta(minutes=8)
    later = fold(correlator, state, Tick(domain="SUB1", occurred_at=T0 + timedelta(minutes=16)))
    assert [d for d in later if isinstance(d, IncidentUnacknowledged)]


def test_without_an_acceptance_stamp_the_event_time_moves_the_clock() -> None:
    """An offline replay's events carry no recorded_at: their own times place them."""
    correlator = Correlator(POWER, RULES)
    state = correlator.initial_state("SUB1")
    fold(correlator, state, call(1, T0 + timedelta(days=2)))
    assert state.watermark == T0 + timedelta(days=2)


def test_a_tick_never_runs_ahead_of_the_wall_clock_nor_overflows() -> None:
    """A clock saved with a negative lag (before the bound) ticks at the wall clock, not
    ahead of it; a lag that would leave the calendar gives no tick instead of an exception."""
    correlator = Correlator(POWER, RULES)
    state = correlator.initial_state("SUB1")
    fold(correlator, state, call(1, T0, T0))
    now = T0.timestamp() + 60
    assert tick_time(state, DomainClock(lag=0.0), now) == T0 + timedelta(seconds=60)
    assert tick_time(state, DomainClock(lag=-1e12), now) == T0 + timedelta(seconds=60)
    assert tick_time(state, DomainClock(lag=1e12), now) is None


def test_the_broker_time_stamps_an_event_no_edge_saw() -> None:
    """recorded_at is the broker's record time when missing or later than it; else the edge's."""
    broker = T0 + timedelta(seconds=2)
    bare = accepted(call(1, T0), broker.timestamp())
    assert bare.recorded_at == broker
    stamped = accepted(call(1, T0, T0 + timedelta(seconds=1)), broker.timestamp())
    assert stamped.recorded_at == T0 + timedelta(seconds=1)
    boastful = accepted(call(1, T0, datetime(9999, 1, 1, tzinfo=UTC)), broker.timestamp())
    assert boastful.recorded_at == broker
