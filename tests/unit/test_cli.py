"""The `outage` command: replay, schema and topology check, run in-process on files."""

import json
from pathlib import Path

import pytest

from cli.main import main
from topology.samples import HEAT_CSV

CALL = {
    "type": "call_reported",
    "schema_version": 1,
    "occurred_at": "2026-01-15T07:30:00Z",
    "utility": "heat",
    "symptom": "no_heat",
}


def write_events(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_replay_writes_derived_events_and_a_summary(tmp_path: Path) -> None:
    """Three flats of one building in the file give one incident holding all three calls."""
    lines = [
        json.dumps({**CALL, "event_id": f"c{n}", "premise_id": f"P-HSUB1-B2-0{n}"})
        for n in (1, 2, 3)
    ]
    events = write_events(tmp_path / "calls.jsonl", lines)
    out, summary = tmp_path / "derived.jsonl", tmp_path / "summary.json"
    code = main(
        [
            "replay",
            "--topology",
            str(HEAT_CSV),
            "--events",
            str(events),
            "--out",
            str(out),
            "--summary",
            str(summary),
        ]
    )
    assert code == 0
    incidents = json.loads(summary.read_text())["incidents"]
    assert [(i["device_id"], sorted(i["call_ids"])) for i in incidents] == [
        ("B-HSUB1-2", ["c1", "c2", "c3"])
    ]
    types = [json.loads(line)["type"] for line in out.read_text().splitlines()]
    assert "incident_opened" in types and types.count("call_attached") == 3


def test_replay_reports_bad_lines_and_unknown_places_without_stopping(tmp_path: Path) -> None:
    """A malformed line and an unknown premise are listed as rejected; good lines still count."""
    lines = [
        "{not json",
        json.dumps({**CALL, "event_id": "c1", "premise_id": "NOWHERE"}),
        json.dumps({**CALL, "event_id": "c2", "premise_id": "P-HSUB1-B2-01", "tags": ["arrears"]}),
    ]
    events = write_events(tmp_path / "calls.jsonl", lines)
    summary = tmp_path / "summary.json"
    assert (
        main(
            [
                "replay",
                "--topology",
                str(HEAT_CSV),
                "--events",
                str(events),
                "--summary",
                str(summary),
            ]
        )
        == 0
    )
    rejected = json.loads(summary.read_text())["rejected"]
    assert rejected[0]["line"] == 1 and "malformed JSON" in rejected[0]["reason"]
    assert rejected[1] == {"event_id": "c1", "reason": "unknown premise 'NOWHERE'"}


def test_schema_prints_inbound_and_derived_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    """`outage schema` prints parseable JSON Schema naming every inbound and derived event."""
    assert main(["schema"]) == 0
    schemas = json.loads(capsys.readouterr().out)
    inbound = set(schemas["inbound"]["$defs"])
    assert {"CallReported", "ScadaSignal", "PlannedWorkScheduled"} <= inbound
    assert {"IncidentOpened", "CallAttached", "AlertRaised"} <= set(schemas["derived"]["$defs"])


def test_topology_check_refuses_a_bad_model_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A network with an unknown parent exits 2 with the file and line in the message."""
    bad = tmp_path / "net.csv"
    bad.write_text(
        "id,kind,parent,utility,customers,address,lat,lon\n"
        "S1,substation,,power,0,,,\n"
        "F1,feeder,S9,power,0,,,\n"
    )
    assert main(["topology", "check", str(bad)]) == 2
    assert "line 3" in capsys.readouterr().err


def test_topology_check_counts_the_sample(capsys: pytest.CaptureFixture[str]) -> None:
    """The heat sample validates: one domain, its node kinds counted."""
    assert main(["topology", "check", str(HEAT_CSV)]) == 0
    out = capsys.readouterr().out
    assert "1 correlation domain(s): HS1" in out and "premise" in out


EXAMPLES = Path(__file__).resolve().parents[2] / "docs/examples/heating"


def test_topology_import_writes_a_model_that_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`topology import heating` writes a CSV that `topology check` accepts, and counts kinds."""
    out = tmp_path / "heat.csv"
    args = ["topology", "import", "heating", str(EXAMPLES / "network.geojson"), "--out", str(out)]
    assert main([*args, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"to {out}: 1 correlation domain(s)" in printed and "heat_substation  3" in printed
    assert main(["topology", "check", str(out)]) == 0


def test_topology_import_refuses_a_loop_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pipe network closed into a ring exits 2 naming the loop, and writes nothing."""
    nodes = tmp_path / "nodes.csv"
    nodes.write_text("id,kind\nHS,heat_source\nA,heat_substation\nB,heat_substation\n")
    pipes = tmp_path / "pipes.csv"
    pipes.write_text("id,from,to\nP1,HS,A\nP2,A,B\nP3,B,HS\n")
    out = tmp_path / "out.csv"
    args = ["topology", "import", "heating", str(nodes), str(pipes), "--out", str(out), "--quiet"]
    assert main(args) == 2
    assert "not radial" in capsys.readouterr().err
    assert not out.exists()


def test_records_union_power_refuses_a_malformed_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A malformed outage export exits 2 naming the file and record, without a traceback."""
    bad = tmp_path / "bad.js"
    bad.write_text('[{"Substation": "X"}]')
    assert main(["records", "union-power", str(bad)]) == 2
    assert "bad.js: record 1" in capsys.readouterr().err
