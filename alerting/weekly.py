"""Weekly local-time windows, shared by the shift roster and recurring silences.

A window opens at `start` local time on each listed weekday and closes at `end`; an `end` at or
before `start` means the window runs past midnight into the next day. Local times are turned
into instants through zoneinfo and compared in UTC, because aware datetimes sharing one tzinfo
compare by wall time, which is wrong across a DST change.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, get_args
from zoneinfo import ZoneInfo

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = get_args(Weekday)


def require_aware(now: datetime) -> datetime:
    """Return `now` in UTC; a naive datetime is refused rather than guessed."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"`now` must carry a time zone, got naive {now.isoformat()}")
    return now.astimezone(UTC)


def crosses_midnight(start: time, end: time) -> bool:
    """True when a window from `start` to `end` ends on the following day."""
    return end <= start


def window_on(day: date, start: time, end: time, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The [opens, closes) instants (UTC) of the window that opens on local date `day`."""
    closes_on = day + timedelta(days=1) if crosses_midnight(start, end) else day
    opens = datetime.combine(day, start, tzinfo=tz).astimezone(UTC)
    closes = datetime.combine(closes_on, end, tzinfo=tz).astimezone(UTC)
    return opens, closes


def window_containing(
    days: Collection[Weekday], start: time, end: time, tz: ZoneInfo, now: datetime
) -> tuple[datetime, datetime] | None:
    """The window that contains `now`, or None; a window can have opened yesterday."""
    instant = require_aware(now)
    today = instant.astimezone(tz).date()
    for day in (today, today - timedelta(days=1)):
        if WEEKDAYS[day.weekday()] not in days:
            continue
        opens, closes = window_on(day, start, end, tz)
        if opens <= instant < closes:
            return opens, closes
    return None


def openings(
    days: Collection[Weekday], start: time, tz: ZoneInfo, begin: datetime, end: datetime
) -> list[datetime]:
    """Every instant (UTC) in [begin, end) at which a window opens, in order."""
    first, last = require_aware(begin), require_aware(end)
    found: list[datetime] = []
    day = first.astimezone(tz).date() - timedelta(days=1)
    while day <= last.astimezone(tz).date() + timedelta(days=1):
        if WEEKDAYS[day.weekday()] in days:
            opens = datetime.combine(day, start, tzinfo=tz).astimezone(UTC)
            if first <= opens < last:
                found.append(opens)
        day += timedelta(days=1)
    return found
