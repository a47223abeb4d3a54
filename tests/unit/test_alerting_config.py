"""Unit tests for the alerting configuration: defaults, the shipped example, and clear errors."""

from __future__ import annotations

import re
from datetime import time
from pathlib import Path
from typing import Any

import pytest

from alerting.config import (
    AlertingConfig,
    AlertingConfigError,
    OneOffSilence,
    RecurringSilence,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "alerting.example.toml"


def test_defaults_send_everything_to_the_log() -> None:
    """With no file the only receiver is `log`, the root route's receiver."""
    config = AlertingConfig.load()
    assert list(config.receivers) == ["log"]
    assert config.receivers["log"].log
    assert config.route.receiver == "log"
    assert config.silences == [] and config.roster.shifts == [] and config.smtp is None
    assert (config.group_wait_seconds, config.group_interval_seconds) == (10, 300)


def test_example_file_loads() -> None:
    """The documented example loads: two shifts, webhook and e-mail receivers, a silence."""
    config = AlertingConfig.load(EXAMPLE)
    assert [shift.name for shift in config.roster.shifts] == ["day", "night"]
    assert config.roster.shifts[1].start == time(19, 0)
    assert any(r.webhook for r in config.receivers.values())
    assert any(r.email for r in config.receivers.values())
    assert config.smtp is not None and config.smtp.password is not None
    assert isinstance(config.silences[0], RecurringSilence)
    assert config.silences[0].weekdays == ["sun"]
    assert (config.group_wait_seconds, config.group_interval_seconds) == (10, 300)
    assert config.group_wait_max_seconds == 60
    assert any(r.group_wait_seconds is not None for r in config.route.routes)
    # Secrets stay out of reprs and logs.
    assert "change-me" not in repr(config)


def test_silences_tell_one_off_from_recurring() -> None:
    """A silence with weekdays is recurring; one with starts/ends is one-off."""
    config = AlertingConfig.parse(
        {
            "silences": [
                {
                    "starts": "2024-05-07T09:00:00+02:00",
                    "ends": "2024-05-07T12:00:00+02:00",
                    "matchers": {"utility": "water"},
                    "comment": "test",
                    "created_by": "me",
                },
                {
                    "weekdays": ["sun"],
                    "start": "23:00",
                    "end": "03:00",
                    "matchers": {"utility": "power"},
                    "comment": "maintenance",
                },
            ]
        }
    )
    assert [type(s) for s in config.silences] == [OneOffSilence, RecurringSilence]


def test_log_receiver_is_built_in() -> None:
    """A file that defines its own receivers still has `log` for the default root route."""
    config = AlertingConfig.parse({"receivers": {"ops": {"log": True}}})
    assert set(config.receivers) == {"ops", "log"}


SHIFT = {
    "name": "day",
    "days": ["mon"],
    "start": "07:00",
    "end": "19:00",
    "lead": "log",
    "supervisor": "log",
}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"recievers": {}}, "recievers: Extra inputs are not permitted"),
        ({"route": {"receiver": "pager"}}, "route.receiver: unknown receiver 'pager'"),
        ({"route": {"receiver": "on_duty_lead"}}, "route.receiver: the root route needs a named"),
        ({"route": {"receiver": "log", "match": {"utility": "heat"}}}, "route.match: the root"),
        (
            {"route": {"receiver": "log", "routes": [{"receiver": "x"}]}},
            "route.routes.0.receiver: unknown receiver 'x'",
        ),
        (
            {"route": {"receiver": "log", "routes": [{"receiver": "on_duty_lead"}]}},
            "route.routes.0.receiver: on_duty_lead needs roster.shifts",
        ),
        (
            {"route": {"receiver": "log", "routes": [{"match": {"utility": "gas"}}]}},
            "route.routes.0.match.utility.0: Input should be 'heat'",
        ),
        (
            {"route": {"receiver": "log", "routes": [{"match": {"kind": ["incident_opend"]}}]}},
            "route.routes.0.match.kind.0:",
        ),
        (
            {"route": {"receiver": "log", "routes": [{"match": {"colour": "red"}}]}},
            "route.routes.0.match.colour: Extra inputs",
        ),
        ({"receivers": {"ops": {}}}, "receivers.ops: a receiver needs at least one of"),
        (
            {"receivers": {"ops": {"email": {"to": ["ops@example.org"]}}}},
            "receivers.ops.email: needs an [smtp] section",
        ),
        (
            {"receivers": {"ops": {"email": {"to": ["not-an-address"]}}}},
            "receivers.ops.email.to.0:",
        ),
        (
            {"receivers": {"ops": {"webhook": {"url": "ftp://x", "secret": "s"}}}},
            "receivers.ops.webhook.url:",
        ),
        (
            {"receivers": {"ops": {"webhook": {"url": "https://x"}}}},
            "receivers.ops.webhook.secret: Field required",
        ),
        ({"roster": {"timezone": "Mars/Olympus"}}, "roster.timezone: unknown time zone"),
        (
            {"roster": {"shifts": [SHIFT | {"lead": "nobody"}]}},
            "roster.shifts.0.lead: unknown receiver 'nobody'",
        ),
        ({"roster": {"shifts": [SHIFT | {"days": ["monday"]}]}}, "roster.shifts.0.days.0:"),
        ({"roster": {"shifts": [SHIFT | {"start": "25:00"}]}}, "roster.shifts.0.start:"),
        (
            {
                "silences": [
                    {
                        "starts": "2024-05-07T09:00:00",
                        "ends": "2024-05-07T12:00:00+02:00",
                        "matchers": {"utility": "water"},
                        "comment": "c",
                        "created_by": "me",
                    }
                ]
            },
            "silences.0.starts: needs a UTC offset",
        ),
        (
            {
                "silences": [
                    {
                        "starts": "2024-05-07T12:00:00+02:00",
                        "ends": "2024-05-07T09:00:00+02:00",
                        "matchers": {"utility": "water"},
                        "comment": "c",
                        "created_by": "me",
                    }
                ]
            },
            "silences.0: ends must be after starts",
        ),
        (
            {
                "silences": [
                    {
                        "weekdays": ["sun"],
                        "start": "23:00",
                        "end": "03:00",
                        "matchers": {},
                        "comment": "c",
                    }
                ]
            },
            "silences.0: matchers: a silence needs at least one matcher",
        ),
        (
            {
                "silences": [
                    {
                        "weekdays": ["sun"],
                        "start": "23:00",
                        "end": "03:00",
                        "matchers": {"utility": "power"},
                    }
                ]
            },
            "silences.0.comment: Field required",
        ),
        ({"delivery": {"retries": -1}}, "delivery.retries:"),
        ({"group_wait_seconds": -1}, "group_wait_seconds:"),
        ({"group_interval_seconds": 0}, "group_interval_seconds:"),
        (
            {"route": {"receiver": "log", "routes": [{"group_wait_seconds": 7200}]}},
            "route.routes.0.group_wait_seconds:",
        ),
        ({"smtp": {"host": "mail", "sender": "x@y", "port": 0}}, "smtp.port:"),
    ],
)
def test_errors_name_the_field(data: dict[str, Any], expected: str) -> None:
    """A bad configuration fails with the source and the dotted path of the field at fault."""
    with pytest.raises(AlertingConfigError) as caught:
        AlertingConfig.parse(data, source="alerting.toml")
    assert f"alerting.toml: {expected}" in str(caught.value)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    """Errors from a file carry its path: a field error, bad TOML, and a missing file."""
    path = tmp_path / "alerting.toml"
    path.write_text('[route]\nreceiver = "pager"\n')
    with pytest.raises(
        AlertingConfigError, match=re.escape(f"{path}: route.receiver: unknown receiver")
    ):
        AlertingConfig.load(path)
    path.write_text("[route\n")
    with pytest.raises(AlertingConfigError, match=re.escape(f"{path}: not valid TOML")):
        AlertingConfig.load(path)
    with pytest.raises(AlertingConfigError, match="no such alerting file"):
        AlertingConfig.load(tmp_path / "missing.toml")
