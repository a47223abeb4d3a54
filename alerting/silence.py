"""Silences: whether an alert is muted at an instant (pure, no clock).

A one-off silence covers [starts, ends); a recurring one covers a weekly local-time window. A
silence mutes an alert when every matcher it sets accepts the alert's value for that field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from alerting.config import Matchers, OneOffSilence, Silence
from alerting.weekly import require_aware, window_containing


def matches(matchers: Matchers, alert: Mapping[str, Any]) -> bool:
    """True when every field the matchers constrain has one of the accepted values."""
    # A missing field reads as "" so `area = ""` can address alerts raised without an area.
    return all(
        str(alert.get(field, "") or "") in values for field, values in matchers.allowed().items()
    )


def is_active(silence: Silence, now: datetime) -> bool:
    """True when the silence covers `now`, whatever it matches."""
    if isinstance(silence, OneOffSilence):
        instant = require_aware(now)
        return silence.starts <= instant < silence.ends
    return (
        window_containing(silence.weekdays, silence.start, silence.end, silence.tz, now) is not None
    )


def active_silences(silences: Iterable[Silence], now: datetime) -> list[Silence]:
    """The silences that cover `now`, in configuration order."""
    return [silence for silence in silences if is_active(silence, now)]


def silenced_by(
    alert: Mapping[str, Any], silences: Iterable[Silence], now: datetime
) -> Silence | None:
    """The first silence active at `now` that matches the alert, or None."""
    for silence in active_silences(silences, now):
        if matches(silence.matchers, alert):
            return silence
    return None
