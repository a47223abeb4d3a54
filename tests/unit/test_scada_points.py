"""Point values to scada_signal events: breaker states, thresholds, hysteresis, de-duplication."""

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from scada.points import Mapper, PointConfig, signal_for
from scada.sources.base import PointUpdate

T0 = datetime(2026, 1, 15, 8, 0, tzinfo=UTC)
BREAKER = PointConfig(point="1001", device="FDR-1", kind="breaker")
TEMP = PointConfig(point="2001", device="HSUB-1", kind="supply_temp", low=70.0, hysteresis=3.0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, "breaker_open"),
        (2, "breaker_closed"),
        (0, None),
        (3, None),
        (True, "breaker_closed"),
        (False, "breaker_open"),
        ("OPEN", "breaker_open"),
        ("closed", "breaker_closed"),
        ("tripped", "breaker_open"),
        ("banana", None),
        (None, None),
    ],
)
def test_breaker_values(value: object, expected: str | None) -> None:
    """IEC double points, booleans and words map to open/closed; in-between states say nothing."""
    assert signal_for(BREAKER, value) == expected


def test_inverted_breaker_and_alarm() -> None:
    """`invert` flips a single point whose true means tripped; alarms map true to alarm."""
    inverted = BREAKER.model_copy(update={"invert": True})
    assert signal_for(inverted, True) == "breaker_open"
    alarm = PointConfig(point="a", device="HSUB-1", kind="alarm")
    assert signal_for(alarm, True) == "alarm"
    assert signal_for(alarm, False) == "normal"


def test_analogue_hysteresis() -> None:
    """Below low alarms; the alarm holds inside the band and clears only at low + hysteresis."""
    assert signal_for(TEMP, 69.9) == "supply_temp_low"
    assert signal_for(TEMP, 71.0, last="supply_temp_low") == "supply_temp_low"
    assert signal_for(TEMP, 73.0, last="supply_temp_low") == "normal"
    assert signal_for(TEMP, 71.0, last="normal") == "normal"
    assert signal_for(TEMP, "n/a") is None


def test_analogue_needs_a_threshold() -> None:
    """A supply_temp or pressure point without `low` is refused; `low` on a breaker too."""
    with pytest.raises(ValidationError, match="needs `low`"):
        PointConfig(point="x", device="d", kind="pressure")
    with pytest.raises(ValidationError, match="`low` is for"):
        PointConfig(point="x", device="d", kind="breaker", low=1.0)


def test_mapper_emits_each_change_once_with_source_time() -> None:
    """A change emits one event at the source's time; the same state read back emits nothing."""
    mapper = Mapper("north", "rtu-7", (BREAKER, TEMP))
    first = mapper.update(PointUpdate("1001", 2, source_time=at(0)), received_at=at(1))
    assert first is not None and first.signal == "breaker_closed"
    trip = mapper.update(PointUpdate("1001", 1, source_time=at(10)), received_at=at(12))
    assert trip is not None
    assert (trip.device_id, trip.signal, trip.occurred_at) == ("FDR-1", "breaker_open", at(10))
    assert trip.recorded_at == at(12) and trip.recorded_by == "scada:north/rtu-7"
    # A reconnect's interrogation reads the open breaker back, with the same or a later time.
    assert mapper.update(PointUpdate("1001", 1, source_time=at(10)), received_at=at(30)) is None
    assert mapper.update(PointUpdate("1001", 1, source_time=at(40)), received_at=at(41)) is None
    assert mapper.update(PointUpdate("9999", 1), received_at=at(42)) is None  # not configured


def test_mapper_drops_values_older_than_what_it_has() -> None:
    """A replayed older value (a buffered event after a newer one) is not taken as a change."""
    mapper = Mapper("north", "rtu-7", (BREAKER,))
    mapper.update(PointUpdate("1001", 1, source_time=at(10)), received_at=at(10))
    assert mapper.update(PointUpdate("1001", 2, source_time=at(5)), received_at=at(11)) is None


def test_a_source_time_is_not_compared_with_a_receive_time() -> None:
    """A timed trip after an untimed static read counts, whatever the two clocks say."""
    mapper = Mapper("north", "rtu-7", (BREAKER,))
    mapper.update(PointUpdate("1001", 2), received_at=at(100))  # static poll: no source time
    trip = mapper.update(PointUpdate("1001", 1, source_time=at(60)), received_at=at(101))
    assert trip is not None and trip.occurred_at == at(60)


def test_quality_change_is_a_new_state() -> None:
    """The same position with invalid quality is emitted (the correlator ignores it) and back."""
    mapper = Mapper("north", "rtu-7", (BREAKER,))
    mapper.update(PointUpdate("1001", 1, source_time=at(0)), received_at=at(0))
    bad = mapper.update(PointUpdate("1001", 1, "invalid", at(5)), received_at=at(5))
    assert bad is not None and bad.quality == "invalid"


def test_ids_repeat_for_the_same_change() -> None:
    """Two connectors (or a restart without a state file) give the same id for one change."""
    one, two = Mapper("north", "rtu-7", (BREAKER,)), Mapper("north", "rtu-7", (BREAKER,))
    a = one.update(PointUpdate("1001", 1, source_time=at(3)), received_at=at(4))
    b = two.update(PointUpdate("1001", 1, source_time=at(3)), received_at=at(9))
    assert a is not None and b is not None and a.event_id == b.event_id


def test_export_and_restore_keep_the_last_state() -> None:
    """A restored mapper knows the last state: the same value after a restart emits nothing."""
    mapper = Mapper("north", "rtu-7", (BREAKER,))
    mapper.update(PointUpdate("1001", 1, source_time=at(3)), received_at=at(4))
    again = Mapper("north", "rtu-7", (BREAKER,))
    again.restore({**mapper.export(), "gone": {"signal": "alarm", "quality": "good", "at": "x"}})
    assert again.update(PointUpdate("1001", 1, source_time=at(50)), received_at=at(51)) is None
    assert "gone" not in again.states
