"""Unit tests for silences: which are active at an explicit instant and which alerts they mute."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from alerting.config import Matchers, OneOffSilence, RecurringSilence, Silence
from alerting.silence import active_silences, matches, silenced_by

BERLIN = ZoneInfo("Europe/Berlin")

SUNDAY_NIGHT = RecurringSilence.model_validate(
    {
        "weekdays": ["sun"],
        "start": "23:00",
        "end": "03:00",
        "timezone": "Europe/Berlin",
        "matchers": {"utility": "power", "severity": ["info", "warning"]},
        "comment": "SCADA maintenance",
    }
)
PRESSURE_TEST = OneOffSilence.model_validate(
    {
        "starts": "2024-05-07T09:00:00+02:00",
        "ends": "2024-05-07T12:00:00+02:00",
        "matchers": {"utility": "water", "area": "north"},
        "comment": "Pressure test",
        "created_by": "j.doe",
    }
)
SILENCES: list[Silence] = [SUNDAY_NIGHT, PRESSURE_TEST]


def berlin(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN)


def alert(**fields: Any) -> dict[str, Any]:
    return {
        "event_id": "a-1",
        "utility": "power",
        "severity": "warning",
        "kind": "incident_opened",
    } | fields


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # 2024-05-05 is a Sunday.
        (berlin("2024-05-05T22:59"), []),
        (berlin("2024-05-05T23:00"), [SUNDAY_NIGHT]),
        (berlin("2024-05-06T02:59"), [SUNDAY_NIGHT]),
        (berlin("2024-05-06T03:00"), []),
        (berlin("2024-05-04T23:30"), []),
        (berlin("2024-05-06T23:30"), []),
        (berlin("2024-05-07T08:59"), []),
        (berlin("2024-05-07T09:00"), [PRESSURE_TEST]),
        (berlin("2024-05-07T11:59"), [PRESSURE_TEST]),
        (berlin("2024-05-07T12:00"), []),
        # The window is local time: on the Sunday clocks go back it still starts at 23:00 CET.
        (datetime.fromisoformat("2024-10-27T22:00+00:00"), [SUNDAY_NIGHT]),
        (datetime.fromisoformat("2024-10-27T21:59+00:00"), []),
    ],
)
def test_active_silences_at_instant(now: datetime, expected: list[Silence]) -> None:
    """A silence is active from its start (inclusive) to its end (exclusive), across midnight."""
    assert active_silences(SILENCES, now) == expected


@pytest.mark.parametrize(
    ("fields", "now", "expected"),
    [
        ({}, berlin("2024-05-05T23:30"), SUNDAY_NIGHT),
        ({"severity": "critical"}, berlin("2024-05-05T23:30"), None),
        ({"utility": "heat"}, berlin("2024-05-05T23:30"), None),
        ({}, berlin("2024-05-06T10:00"), None),
        ({"utility": "water", "area": "north"}, berlin("2024-05-07T10:00"), PRESSURE_TEST),
        ({"utility": "water", "area": "south"}, berlin("2024-05-07T10:00"), None),
        ({"utility": "water"}, berlin("2024-05-07T10:00"), None),
    ],
)
def test_silenced_by(fields: dict[str, Any], now: datetime, expected: Silence | None) -> None:
    """An alert is silenced only by an active silence whose every matcher accepts it."""
    assert silenced_by(alert(**fields), SILENCES, now) == expected


@pytest.mark.parametrize(
    ("matchers", "fields", "expected"),
    [
        ({}, {}, True),
        ({"utility": "power"}, {}, True),
        ({"utility": ["heat", "water"]}, {}, False),
        ({"area": ""}, {}, True),
        ({"area": ""}, {"area": ""}, True),
        ({"area": "north"}, {}, False),
        ({"kind": "incident_opened", "severity": "warning"}, {}, True),
        ({"kind": "incident_opened", "severity": "critical"}, {}, False),
    ],
)
def test_matchers(matchers: dict[str, Any], fields: dict[str, Any], expected: bool) -> None:
    """Matchers are exact or any-of per field, all fields must hold, a missing area reads ""."""
    assert matches(Matchers.model_validate(matchers), alert(**fields)) is expected


def test_silence_refuses_naive_now() -> None:
    """A naive `now` is an error for one-off and recurring silences alike."""
    for silence in SILENCES:
        with pytest.raises(ValueError, match="time zone"):
            active_silences([silence], datetime(2024, 5, 7, 10, 0))
