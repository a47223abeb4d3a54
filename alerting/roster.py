"""Who is on duty: the shift roster evaluated at an explicit instant (pure, no clock)."""

from __future__ import annotations

from datetime import datetime

from alerting.config import Roster, Shift
from alerting.weekly import openings, window_containing


def on_duty(roster: Roster, now: datetime) -> Shift | None:
    """The shift on duty at `now`, or None when the roster leaves `now` uncovered.

    Where shifts overlap (a handover) the one that started last is on duty: the incoming lead
    owns new alerts from the minute the shift begins.
    """
    best: tuple[datetime, Shift] | None = None
    for shift in roster.shifts:
        window = window_containing(shift.days, shift.start, shift.end, roster.tz, now)
        if window is not None and (best is None or window[0] > best[0]):
            best = (window[0], shift)
    return best[1] if best is not None else None


def shift_starts(roster: Roster, start: datetime, end: datetime) -> list[tuple[datetime, Shift]]:
    """Every (instant, shift) at which a shift begins in [start, end), earliest first.

    Instants are in the roster's time zone, so a handover note can print them as they are.
    """
    found = [
        (opens.astimezone(roster.tz), shift)
        for shift in roster.shifts
        for opens in openings(shift.days, shift.start, roster.tz, start, end)
    ]
    # Sorting on the UTC instant keeps the order right across a DST change.
    return sorted(found, key=lambda item: item[0].timestamp())
