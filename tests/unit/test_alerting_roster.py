"""Unit tests for the shift roster: who is on duty at an explicit instant, and shift changes."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from alerting.config import Roster, Shift
from alerting.roster import on_duty, shift_starts

BERLIN = ZoneInfo("Europe/Berlin")
EVERY_DAY = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def shift(name: str, start: str, end: str, days: list[str] | None = None) -> Shift:
    return Shift.model_validate(
        {
            "name": name,
            "days": days or EVERY_DAY,
            "start": start,
            "end": end,
            "lead": f"{name}-lead",
            "supervisor": f"{name}-supervisor",
        }
    )


DAY_NIGHT = Roster(
    timezone="Europe/Berlin",
    shifts=[shift("day", "07:00", "19:00"), shift("night", "19:00", "07:00")],
)
FRIDAY_NIGHT_ONLY = Roster(
    timezone="Europe/Berlin", shifts=[shift("night", "22:00", "06:00", ["fri"])]
)


def berlin(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("roster", "now", "expected"),
    [
        (DAY_NIGHT, berlin("2024-05-06T10:00"), "day"),
        (DAY_NIGHT, berlin("2024-05-06T07:00"), "day"),
        (DAY_NIGHT, berlin("2024-05-06T18:59"), "day"),
        (DAY_NIGHT, berlin("2024-05-06T19:00"), "night"),
        (DAY_NIGHT, berlin("2024-05-06T23:59"), "night"),
        (DAY_NIGHT, berlin("2024-05-07T00:00"), "night"),
        (DAY_NIGHT, berlin("2024-05-07T06:59"), "night"),
        # A Friday-only night shift covers the small hours of Saturday, not of Friday or Sunday.
        (FRIDAY_NIGHT_ONLY, berlin("2024-05-10T23:00"), "night"),
        (FRIDAY_NIGHT_ONLY, berlin("2024-05-11T03:00"), "night"),
        (FRIDAY_NIGHT_ONLY, berlin("2024-05-10T03:00"), None),
        (FRIDAY_NIGHT_ONLY, berlin("2024-05-11T06:00"), None),
        (FRIDAY_NIGHT_ONLY, berlin("2024-05-12T03:00"), None),
        # Spring forward (2024-03-31, 02:00 CET -> 03:00 CEST): 07:00 local is 05:00 UTC.
        (DAY_NIGHT, utc("2024-03-31T04:59"), "night"),
        (DAY_NIGHT, utc("2024-03-31T05:00"), "day"),
        # Fall back (2024-10-27, 03:00 CEST -> 02:00 CET): 07:00 local is 06:00 UTC.
        (DAY_NIGHT, utc("2024-10-27T05:30"), "night"),
        (DAY_NIGHT, utc("2024-10-27T06:00"), "day"),
        # The same instant given in another zone resolves the same way.
        (DAY_NIGHT, datetime(2024, 5, 6, 13, 30, tzinfo=ZoneInfo("America/New_York")), "night"),
        (Roster(), utc("2024-05-06T10:00"), None),
    ],
)
def test_on_duty_at_instant(roster: Roster, now: datetime, expected: str | None) -> None:
    """The shift on duty follows local wall time, crosses midnight and survives DST changes."""
    found = on_duty(roster, now)
    assert (found.name if found else None) == expected


def test_overlapping_shifts_hand_over_to_the_later_start() -> None:
    """During an overlap the shift that started last is on duty."""
    roster = Roster(
        timezone="Europe/Berlin",
        shifts=[shift("early", "06:00", "14:30"), shift("late", "14:00", "22:00")],
    )
    found = on_duty(roster, berlin("2024-05-06T14:15"))
    assert found is not None and found.name == "late"


def test_on_duty_refuses_naive_now() -> None:
    """A naive `now` is an error, not silently taken as some zone."""
    with pytest.raises(ValueError, match="time zone"):
        on_duty(DAY_NIGHT, datetime(2024, 5, 6, 10, 0))


def test_shift_starts_lists_each_change_in_order() -> None:
    """Shift changes in a range come in order, in the roster's zone, end exclusive."""
    starts = shift_starts(DAY_NIGHT, berlin("2024-05-06T06:00"), berlin("2024-05-07T19:00"))
    assert [(when.isoformat(), s.name) for when, s in starts] == [
        ("2024-05-06T07:00:00+02:00", "day"),
        ("2024-05-06T19:00:00+02:00", "night"),
        ("2024-05-07T07:00:00+02:00", "day"),
    ]


def test_shift_starts_across_spring_forward() -> None:
    """Across a DST change the shift changes stay on local 07:00 and 19:00."""
    starts = shift_starts(DAY_NIGHT, utc("2024-03-30T12:00"), utc("2024-03-31T23:00"))
    assert [when.astimezone(UTC).strftime("%d %H:%M") for when, _ in starts] == [
        "30 18:00",
        "31 05:00",
        "31 17:00",
    ]


def test_shift_starts_empty_range() -> None:
    """An empty range has no shift changes."""
    now = berlin("2024-05-06T07:00")
    assert shift_starts(DAY_NIGHT, now, now) == []
