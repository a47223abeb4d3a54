"""Reports for shift leads and managers, from the ClickHouse read models.

    daily(store, day)          calls per utility/area/hour, incidents, time to detect/restore,
                               calls absorbed by known incidents, repeat callers, deadlines
    handover(store, now)       open incidents, unacknowledged alerts, callbacks pending
    callbacks(store, incident) every caller of a restored incident, once per caller

SQL stays to what ClickHouse 18.16 and chDB 26 both run (FINAL reads, plain aggregates, no
joins); the arithmetic over the few rows a report has is done here, in Python. Every CSV cell
that a spreadsheet would run as a formula is neutralised (`spreadsheet_safe`).
"""

import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from statistics import median
from typing import Any

from projections.sql import one_of, render
from projections.store import Store

ACTIVE_STATES = ("suspected", "confirmed", "stale")
# Excel, LibreOffice and Google Sheets run a cell that starts with one of these as a formula
# (OWASP "CSV Injection"); a caller's "=HYPERLINK(...)" would reach the shift lead's sheet.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
EPOCH = date(1970, 1, 1)


class ReportError(ValueError):
    """The report cannot be made as asked (unknown incident, not restored yet...)."""


@dataclass
class Section:
    title: str
    columns: list[str]
    rows: list[dict[str, Any]]


@dataclass
class Report:
    title: str
    summary: dict[str, Any] = field(default_factory=dict)
    sections: list[Section] = field(default_factory=list)
    chart: dict[str, Any] | None = None  # what `chart.calls_per_hour_png` draws

    def to_json(self) -> str:
        body = {
            "title": self.title,
            "summary": self.summary,
            "sections": {s.title: s.rows for s in self.sections},
        }
        return json.dumps(body, default=_jsonable, indent=2)

    def to_csv(self) -> str:
        out = io.StringIO()
        for section in self.sections:
            out.write(f"# {section.title}\n")
            writer = csv.DictWriter(out, fieldnames=section.columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows({k: _cell(v) for k, v in row.items()} for row in section.rows)
            out.write("\n")
        return out.getvalue()

    def to_table(self) -> str:
        lines = [self.title, "=" * len(self.title)]
        for key, value in self.summary.items():
            lines.append(f"{key.replace('_', ' '):40} {_text(value)}")
        for section in self.sections:
            lines += ["", section.title, "-" * len(section.title)]
            if not section.rows:
                lines.append("(none)")
                continue
            cells = [[_text(row.get(c)) for c in section.columns] for row in section.rows]
            widths = [
                max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(section.columns)
            ]
            lines.append(
                "  ".join(c.ljust(w) for c, w in zip(section.columns, widths, strict=True))
            )
            lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
        return "\n".join(lines) + "\n"

    def render(self, fmt: str) -> str:
        if fmt == "json":
            return self.to_json()
        if fmt == "csv":
            return self.to_csv()
        return self.to_table()


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return ", ".join(f"{k} {_text(v) or '-'}" for k, v in value.items())
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def spreadsheet_safe(text: str) -> str:
    """The text with a leading ' if a spreadsheet would read it as a formula (shown as is)."""
    if text.startswith(FORMULA_STARTS) or text.lstrip(" ").startswith(FORMULA_STARTS):
        return "'" + text
    return text


def _cell(value: Any) -> str:
    # A number of ours is data, not a formula: -1.5 stays a number in the sheet.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _text(value)
    return spreadsheet_safe(_text(value))


def report_day(day: date, today: date | None) -> date:
    """`day` if a daily report can be made for it: from 1970-01-01 to a day after `today`.

    Later days have no data, and 9999-12-31 overflows the window (its end is a day later)."""
    latest = today + timedelta(days=1) if today else date.max - timedelta(days=1)
    if not EPOCH <= day <= latest:
        raise ReportError(
            f"date must be between {EPOCH.isoformat()} and {latest.isoformat()}, "
            f"not {day.isoformat()}"
        )
    return day


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


def _minutes(delta: timedelta) -> float:
    return round(delta.total_seconds() / 60, 2)


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"count": 0, "mean": None, "median": None, "max": None}
    return {
        "count": len(values),
        "mean": round(sum(values) / len(values), 2),
        "median": round(median(values), 2),
        "max": round(max(values), 2),
    }


def _calls_of(store: Store, incident_ids: list[str]) -> list[dict[str, Any]]:
    """call_attached events of these incidents (merged children included by the caller)."""
    if not incident_ids:
        return []
    return store.query(
        render(
            "SELECT incident_id, call_id, call_occurred_at, reporter, repeat "
            "FROM incident_events FINAL "
            "WHERE type = 'call_attached' AND incident_id IN {ids}",
            ids=one_of(incident_ids),
        )
    )


def _family(store: Store, incident_ids: list[str]) -> dict[str, str]:
    """incident id -> the incident it counts for (itself, or the one it was merged into)."""
    owner = {i: i for i in incident_ids}
    if incident_ids:
        for row in store.query(
            render(
                "SELECT incident_id, merged_into FROM incidents FINAL WHERE merged_into IN {ids}",
                ids=one_of(incident_ids),
            )
        ):
            owner[row["incident_id"]] = row["merged_into"]
    return owner


# -- daily ----------------------------------------------------------------------------------


def daily(
    store: Store, day: date, deadlines: dict[str, timedelta], now: datetime | None = None
) -> Report:
    """The day's report (UTC day). `deadlines`: handling deadline per utility; an incident
    still open counts as open until `now` (or the end of the day, if that is earlier)."""
    report_day(day, now.date() if now else None)
    start = datetime.combine(day, time(), tzinfo=UTC)
    end = start + timedelta(days=1)
    until = min(end, now) if now else end
    window = {"start": start, "end": end}
    per_hour = store.query(
        render(
            "SELECT utility, area, toStartOfHour(occurred_at) AS hour, count() AS calls "
            "FROM calls FINAL WHERE occurred_at >= {start} AND occurred_at < {end} "
            "GROUP BY utility, area, hour ORDER BY hour, utility, area",
            **window,
        )
    )
    total_calls = sum(int(r["calls"]) for r in per_hour)
    incidents = store.query(
        render(
            "SELECT incident_id, utility, area, device_id, device_kind, state, cause, planned, "
            "opened_at, confirmed_at, restored_at, customers_affected, merged_into "
            "FROM incidents FINAL WHERE opened_at < {end} "
            "AND (restored_at IS NULL OR restored_at >= {start})",
            **window,
        )
    )
    # A merged child counts in the incident it was merged into, even once restored with it.
    unplanned = [i for i in incidents if not i["planned"] and not i["merged_into"]]

    def within(value: datetime | None) -> bool:
        return value is not None and start <= value < end

    by_utility: dict[str, dict[str, int]] = defaultdict(
        lambda: {"opened": 0, "confirmed": 0, "restored": 0}
    )
    for i in unplanned:
        counts = by_utility[i["utility"]]
        counts["opened"] += within(i["opened_at"])
        counts["confirmed"] += within(i["confirmed_at"])
        counts["restored"] += within(i["restored_at"])

    # Time to detect: first report (call or signal) to incident opened.
    ids = [i["incident_id"] for i in incidents]
    owner = _family(store, ids)
    attached = _calls_of(store, list(owner))
    first_report: dict[str, datetime] = {}
    for call in attached:
        target, at = owner.get(call["incident_id"], call["incident_id"]), call["call_occurred_at"]
        if at is not None and (target not in first_report or at < first_report[target]):
            first_report[target] = at
    detect = []
    for i in unplanned:
        if within(i["opened_at"]):
            first = min(first_report.get(i["incident_id"], i["opened_at"]), i["opened_at"])
            detect.append(_minutes(i["opened_at"] - first))
    restore = [
        _minutes(i["restored_at"] - i["opened_at"]) for i in unplanned if within(i["restored_at"])
    ]

    # Calls absorbed: the incident was already known when the call came in.
    opened_at = {i["incident_id"]: i["opened_at"] for i in incidents}
    absorbed = sum(
        1
        for call in attached
        if within(call["call_occurred_at"])
        and call["incident_id"] in opened_at
        and call["call_occurred_at"] > opened_at[call["incident_id"]]
    )
    repeat_rows = store.query(
        render(
            "SELECT caller_hash, count() AS calls FROM calls FINAL "
            "WHERE occurred_at >= {start} AND occurred_at < {end} AND caller_hash != '' "
            "GROUP BY caller_hash HAVING calls > 1",
            **window,
        )
    )
    past_deadline = []
    for i in unplanned:
        limit = deadlines.get(i["utility"])
        finished = i["restored_at"] or until
        if limit is not None and finished - i["opened_at"] > limit:
            past_deadline.append(
                {
                    "incident_id": i["incident_id"],
                    "utility": i["utility"],
                    "device_id": i["device_id"],
                    "opened_at": i["opened_at"],
                    "restored_at": i["restored_at"],
                    "hours_open": round((finished - i["opened_at"]).total_seconds() / 3600, 2),
                    "deadline_hours": round(limit.total_seconds() / 3600, 2),
                }
            )

    report = Report(title=f"Daily report {day.isoformat()} (UTC)")
    report.summary = {
        "calls": total_calls,
        "calls_absorbed_by_known_incidents": absorbed,
        "share_absorbed": round(absorbed / total_calls, 4) if total_calls else 0.0,
        "repeat_callers": len(repeat_rows),
        "repeat_calls": sum(int(r["calls"]) - 1 for r in repeat_rows),
        "incidents_opened": sum(c["opened"] for c in by_utility.values()),
        "incidents_confirmed": sum(c["confirmed"] for c in by_utility.values()),
        "incidents_restored": sum(c["restored"] for c in by_utility.values()),
        "minutes_to_detect": _stats(detect),
        "minutes_to_restore": _stats(restore),
        "incidents_past_deadline": len(past_deadline),
    }
    report.sections = [
        Section("Calls per utility, area and hour", ["hour", "utility", "area", "calls"], per_hour),
        Section(
            "Incidents per utility",
            ["utility", "opened", "confirmed", "restored"],
            [{"utility": u, **c} for u, c in sorted(by_utility.items())],
        ),
        Section(
            "Incidents past their handling deadline",
            [
                "incident_id",
                "utility",
                "device_id",
                "opened_at",
                "restored_at",
                "hours_open",
                "deadline_hours",
            ],
            past_deadline,
        ),
    ]
    hours: dict[datetime, int] = defaultdict(int)
    for row in per_hour:
        hours[row["hour"]] += int(row["calls"])
    report.chart = {
        "day": day,
        "calls_per_hour": {h.hour: n for h, n in hours.items()},
        "opened": [i["opened_at"] for i in unplanned if within(i["opened_at"])],
        "restored": [i["restored_at"] for i in unplanned if within(i["restored_at"])],
    }
    return report


# -- handover -------------------------------------------------------------------------------


def handover(store: Store, now: datetime, shift: timedelta = timedelta(hours=12)) -> Report:
    """What the incoming shift lead takes over."""
    open_incidents = store.query(
        render(
            "SELECT incident_id, utility, area, device_id, device_kind, state, cause, planned, "
            "etr, opened_at, updated_at, customers_affected, acknowledged_by "
            "FROM incidents FINAL WHERE state IN {states} ORDER BY customers_affected DESC, "
            "opened_at",
            states=one_of(ACTIVE_STATES),
        )
    )
    ids = [i["incident_id"] for i in open_incidents]
    owner = _family(store, ids)
    calls: dict[str, int] = defaultdict(int)
    for call in _calls_of(store, list(owner)):
        calls[owner.get(call["incident_id"], call["incident_id"])] += 1
    for incident in open_incidents:
        incident["calls"] = calls[incident["incident_id"]]
    unacknowledged = {i["incident_id"] for i in open_incidents if not i["acknowledged_by"]}
    alerts = store.query(
        render(
            "SELECT alert_id, occurred_at, incident_id, kind, severity, device_id, summary "
            "FROM alerts FINAL WHERE occurred_at >= {since} ORDER BY occurred_at",
            since=now - shift,
        )
    )
    # What the incoming lead must still pick up: alerts of open incidents nobody owns yet.
    alerts = [a for a in alerts if a["incident_id"] in unacknowledged]
    restored = store.query(
        render(
            "SELECT incident_id, device_id, restored_at FROM incidents FINAL "
            "WHERE state = 'restored' AND restored_at >= {since} ORDER BY restored_at",
            since=now - shift,
        )
    )
    pending_callbacks = []
    for incident in restored:
        callers = callbacks(store, incident["incident_id"]).sections[0].rows
        if callers:
            pending_callbacks.append({**incident, "callers": len(callers)})
    report = Report(title=f"Shift handover {now.astimezone(UTC):%Y-%m-%d %H:%M} UTC")
    report.summary = {
        "open_incidents": len(open_incidents),
        "unacknowledged_alerts": len(alerts),
        "incidents_with_callbacks_pending": len(pending_callbacks),
    }
    report.sections = [
        Section(
            "Open incidents",
            [
                "incident_id",
                "utility",
                "device_id",
                "state",
                "cause",
                "etr",
                "opened_at",
                "customers_affected",
                "calls",
                "acknowledged_by",
            ],
            open_incidents,
        ),
        Section(
            "Alerts not acknowledged (this shift)",
            ["occurred_at", "incident_id", "kind", "severity", "summary"],
            alerts,
        ),
        Section(
            "Callbacks pending",
            ["incident_id", "device_id", "restored_at", "callers"],
            pending_callbacks,
        ),
    ]
    return report


# -- callbacks ------------------------------------------------------------------------------


def callbacks(store: Store, incident_id: str) -> Report:
    """Every caller of a restored incident (and of the incidents merged into it), once each."""
    found = store.query(
        render(
            "SELECT incident_id, state, restored_at, device_id FROM incidents FINAL "
            "WHERE incident_id = {id}",
            id=incident_id,
        )
    )
    if not found:
        raise ReportError(f"no incident {incident_id!r}")
    incident = found[0]
    if incident["state"] != "restored":
        raise ReportError(f"incident {incident_id!r} is {incident['state']}, not restored yet")
    owner = _family(store, [incident_id])
    attached = _calls_of(store, list(owner))
    call_ids = sorted({c["call_id"] for c in attached})
    contacts = (
        store.query(
            render(
                "SELECT call_id, occurred_at, caller, caller_hash FROM call_contacts FINAL "
                "WHERE call_id IN {ids} ORDER BY occurred_at, call_id",
                ids=one_of(call_ids),
            )
        )
        if call_ids
        else []
    )
    per_caller: dict[str, dict[str, Any]] = {}
    for contact in contacts:
        key = contact["caller_hash"] or contact["caller"]
        entry = per_caller.setdefault(
            key,
            {
                "caller": contact["caller"],
                "first_call": contact["occurred_at"],
                "last_call": contact["occurred_at"],
                "calls": 0,
                "call_ids": [],
            },
        )
        entry["calls"] += 1
        entry["last_call"] = max(entry["last_call"], contact["occurred_at"])
        entry["call_ids"].append(contact["call_id"])
    rows = sorted(per_caller.values(), key=lambda r: (r["first_call"], r["caller"]))
    report = Report(
        title=f"Callbacks for {incident_id} (restored {_text(incident['restored_at'])})"
    )
    report.summary = {
        "incident_id": incident_id,
        "device_id": incident["device_id"],
        "callers": len(rows),
        "calls": len(call_ids),
        "calls_without_a_number": len(call_ids) - sum(r["calls"] for r in rows),
    }
    report.sections = [
        Section("Callers to call back", ["caller", "first_call", "last_call", "calls"], rows)
    ]
    return report
