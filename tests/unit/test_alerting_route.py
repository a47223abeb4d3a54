"""Unit tests for routing: the receiver tree, continue/first match, and on-duty resolution."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from alerting.config import AlertingConfig
from alerting.group import Timing
from alerting.route import receivers_for, targets_for

BERLIN = ZoneInfo("Europe/Berlin")
DAY = datetime(2024, 5, 6, 10, 0, tzinfo=BERLIN)
NIGHT = datetime(2024, 5, 7, 2, 0, tzinfo=BERLIN)
SATURDAY = datetime(2024, 5, 11, 10, 0, tzinfo=BERLIN)

CONFIG = AlertingConfig.parse(
    {
        "receivers": {
            name: {"log": True}
            for name in ("ops", "day-lead", "night-lead", "boss", "heat-desk", "north", "power")
        },
        "roster": {
            "timezone": "Europe/Berlin",
            "shifts": [
                {
                    "name": "day",
                    "days": ["mon", "tue", "wed", "thu", "fri"],
                    "start": "07:00",
                    "end": "19:00",
                    "lead": "day-lead",
                    "supervisor": "boss",
                },
                {
                    "name": "night",
                    "days": ["mon", "tue", "wed", "thu", "fri"],
                    "start": "19:00",
                    "end": "07:00",
                    "lead": "night-lead",
                    "supervisor": "boss",
                },
            ],
        },
        "route": {
            "receiver": "ops",
            "routes": [
                {
                    "match": {"severity": "critical"},
                    "receiver": "on_duty_supervisor",
                    "continue": True,
                },
                {"match": {"utility": "heat"}, "receiver": "on_duty_lead", "continue": True},
                {
                    "match": {"utility": "heat", "kind": ["incident_opened", "incident_restored"]},
                    "receiver": "heat-desk",
                },
                {"match": {"utility": ["heat", "power"]}, "receiver": "power"},
                {
                    "match": {"utility": "power"},
                    "receiver": "power",
                    "routes": [
                        {"match": {"area": "north"}, "receiver": "north"},
                        {"match": {"kind": "incident_stale"}},
                    ],
                },
            ],
        },
    }
)


def alert(**fields: Any) -> dict[str, Any]:
    base = {"event_id": "a-1", "utility": "water", "severity": "warning", "kind": "incident_opened"}
    return base | fields


@pytest.mark.parametrize(
    ("fields", "now", "expected"),
    [
        # Nothing matches: the root receiver.
        ({}, DAY, ["ops"]),
        # `continue` lets the heat lead and the heat desk both hear; the desk route stops there,
        # so the later heat-or-power route is not reached.
        ({"utility": "heat"}, DAY, ["day-lead", "heat-desk"]),
        ({"utility": "heat"}, NIGHT, ["night-lead", "heat-desk"]),
        # A heat kind the desk does not take falls to the first later match, not to the root.
        ({"utility": "heat", "kind": "incident_stale"}, DAY, ["day-lead", "power"]),
        # Critical goes to the supervisor and carries on to the utility routes.
        ({"utility": "heat", "severity": "critical"}, DAY, ["boss", "day-lead", "heat-desk"]),
        # As in Alertmanager, once any child matched (even with `continue`) the parent's own
        # receiver is not used: a critical water alert reaches the supervisor only.
        ({"severity": "critical"}, DAY, ["boss"]),
        # First match wins: the list route catches power before the power subtree.
        ({"utility": "power", "area": "north"}, DAY, ["power"]),
        # Nobody on duty at the weekend: the root receiver stands in for on-duty names.
        ({"utility": "heat"}, SATURDAY, ["ops", "heat-desk"]),
        ({"severity": "critical", "utility": "heat"}, SATURDAY, ["ops", "heat-desk"]),
    ],
)
def test_receivers_for(fields: dict[str, Any], now: datetime, expected: list[str]) -> None:
    """Routing follows first match per level, honours continue and resolves on-duty at `now`."""
    assert receivers_for(alert(**fields), CONFIG, now) == expected


NESTED = AlertingConfig.parse(
    {
        "receivers": {"ops": {"log": True}, "power": {"log": True}, "north": {"log": True}},
        "route": {
            "receiver": "ops",
            "routes": [
                {
                    "match": {"utility": "power"},
                    "receiver": "power",
                    "routes": [
                        {"match": {"area": "north"}, "receiver": "north"},
                        {"match": {"kind": "incident_stale"}},
                    ],
                },
            ],
        },
    }
)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"utility": "power", "area": "north"}, ["north"]),
        # A child without a receiver inherits its parent's.
        ({"utility": "power", "kind": "incident_stale"}, ["power"]),
        # No child matched: the parent's own receiver.
        ({"utility": "power", "area": "south"}, ["power"]),
        ({"utility": "heat", "area": "north"}, ["ops"]),
    ],
)
def test_nested_routes(fields: dict[str, Any], expected: list[str]) -> None:
    """A subtree sends to its deepest matching child, or to itself when none matches."""
    assert receivers_for(alert(**fields), NESTED, DAY) == expected


def test_receivers_are_not_repeated() -> None:
    """A receiver reached by two routes is named once, at its first position."""
    config = AlertingConfig.parse(
        {
            "receivers": {"a": {"log": True}},
            "route": {
                "receiver": "log",
                "routes": [
                    {"match": {"utility": "water"}, "receiver": "a", "continue": True},
                    {"match": {"severity": "warning"}, "receiver": "a"},
                ],
            },
        }
    )
    assert receivers_for(alert(), config, DAY) == ["a"]


def test_default_config_routes_everything_to_the_log() -> None:
    """With no configuration every alert goes to the log receiver."""
    assert receivers_for(alert(severity="critical"), AlertingConfig.load(), DAY) == ["log"]


GROUPED = AlertingConfig.parse(
    {
        "receivers": {name: {"log": True} for name in ("ops", "pager", "desk")},
        "group_wait_seconds": 30,
        "group_interval_seconds": 600,
        "route": {
            "receiver": "ops",
            "routes": [
                {
                    "match": {"utility": "heat"},
                    "receiver": "pager",
                    "group_wait_seconds": 5,
                    "group_wait_max_seconds": 5,
                    "continue": True,
                    "routes": [{"match": {"kind": "incident_restored"}, "receiver": "desk"}],
                },
                {"match": {"utility": "heat"}, "receiver": "desk", "group_interval_seconds": 60},
            ],
        },
    }
)


def timing(wait: float, interval: float, wait_max: float = 60) -> Timing:
    return Timing(
        wait=timedelta(seconds=wait),
        interval=timedelta(seconds=interval),
        wait_max=timedelta(seconds=wait_max),
    )


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        # The file's defaults.
        ({}, [("ops", timing(30, 600))]),
        # A route's own wait; its child inherits it; a receiver named twice keeps the first.
        ({"utility": "heat"}, [("pager", timing(5, 600, 5)), ("desk", timing(30, 60))]),
        ({"utility": "heat", "kind": "incident_restored"}, [("desk", timing(5, 600, 5))]),
    ],
)
def test_grouping_is_inherited_down_the_routes(
    fields: dict[str, Any], expected: list[tuple[str, Timing]]
) -> None:
    """group_wait/interval/wait_max: the file's defaults, overridden per route, inherited."""
    assert targets_for(alert(**fields), GROUPED, DAY) == expected
