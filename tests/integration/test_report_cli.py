"""`outage replay`, `outage projections rebuild` and `outage report` chained on chDB."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from events.codec import encode
from tests.integration.test_projections import STORM, A, B, C
from topology.samples import HEAT_CSV

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def outage(*args: str, data: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "OUTAGE_DATA_DIR": str(data),
        "OUTAGE_HASH_KEY": "k",
        "OUTAGE_WEB_PORT": "1",
    }  # nothing listens there: no fallback to a service
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_replay_then_rebuild_then_reports_from_the_command_line(tmp_path: Path) -> None:
    """The offline path end to end: the daily report, its chart and the callback list."""
    events = tmp_path / "storm.jsonl"
    events.write_bytes(b"".join(encode(e) + b"\n" for e in STORM))
    derived, summary = tmp_path / "derived.jsonl", tmp_path / "summary.json"
    done = outage(
        "replay",
        "--topology",
        str(HEAT_CSV),
        "--events",
        str(events),
        "--out",
        str(derived),
        "--summary",
        str(summary),
        data=tmp_path,
    )
    assert done.returncode == 0, done.stderr

    done = outage(
        "projections", "rebuild", "--inbound", str(events), "--derived", str(derived), data=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "rows written" in done.stderr

    chart = tmp_path / "daily.png"
    done = outage(
        "report",
        "daily",
        "--date",
        "2026-01-15",
        "--format",
        "json",
        "--chart",
        str(chart),
        data=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    daily = json.loads(done.stdout)
    assert daily["summary"]["calls"] == 9 and daily["summary"]["incidents_restored"] == 1
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    restored = next(
        i for i in json.loads(summary.read_text())["incidents"] if i["state"] == "restored"
    )
    done = outage(
        "report",
        "callbacks",
        "--incident",
        restored["incident_id"],
        "--format",
        "csv",
        data=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1] == "caller,first_call,last_call,calls"
    # Numbers starting with + would be formulas in a spreadsheet: they arrive as text.
    assert [line.split(",")[0] for line in lines[2:5]] == [f"'{A}", f"'{B}", f"'{C}"]

    done = outage("report", "callbacks", "--incident", "INC-nope", data=tmp_path)
    assert done.returncode == 2 and "no incident 'INC-nope'" in done.stderr


def test_a_daily_report_for_a_date_out_of_range_is_refused_with_the_range(tmp_path: Path) -> None:
    """`--date 9999-12-31` exits 2 naming the days a report can be made for, not a traceback."""
    for day in ("9999-12-31", "1969-12-31"):
        done = outage("report", "daily", "--date", day, data=tmp_path)
        assert done.returncode == 2, done.stderr
        assert "date must be between 1970-01-01 and" in done.stderr
        assert "Traceback" not in done.stderr
