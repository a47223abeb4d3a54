"""Retention on both ClickHouse backends (18.16 server, chDB), and `outage retention enforce`."""

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cli.main import main
from correlators.correlator import Correlator
from correlators.replay import replay
from correlators.routing import Inbound
from correlators.rules import CorrelationRules
from events.codec import encode
from events.inbound import CallReported, ScadaSignal
from projections.chdb_store import ChdbStore
from projections.clickhouse_server import ClickHouseServerStore
from projections.reports import callbacks
from projections.retention import RetentionError, enforce
from projections.rows import Projector
from projections.sink import Message, Sink
from projections.sql import one_of, render
from projections.store import Store
from streams.broker import EmbeddedBroker, free_port
from tests.integration.conftest import start_worker, wait_for
from topology.load import load_topology
from topology.samples import HEAT_CSV

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGY = load_topology(HEAT_CSV)
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CONTACT_DAYS, CALL_DAYS = 30, 400
# Storms by age: past both periods, past the contact period only, within both.
AGES = {"ancient": 500, "old": 100, "recent": 2}


def phones(prefix: str) -> list[str]:
    code = {"ancient": 1, "old": 2, "recent": 3, "late": 4}.get(prefix, 9)
    return [f"+1 212 555 0{code}0{n}" for n in (1, 2, 3)]


def storm(prefix: str, base: datetime) -> list[Inbound]:
    """Three callers with numbers and one without in one building; SCADA confirms, restores."""
    numbers = phones(prefix)

    def call(n: int, minutes: int, caller: str | None) -> CallReported:
        return CallReported(
            event_id=f"{prefix}-c{n}",
            occurred_at=base + timedelta(minutes=minutes),
            utility="heat",
            premise_id=f"P-HSUB1-B2-0{n}",
            caller=caller,
            symptom="no_heat",
            notes="door code 1234, ask for flat 2" if n == 1 else None,
        )

    def signal(n: int, minutes: int, name: str) -> ScadaSignal:
        return ScadaSignal(
            event_id=f"{prefix}-s{n}",
            occurred_at=base + timedelta(minutes=minutes),
            device_id="HSUB-1",
            signal=name,
        )

    return [
        call(1, 0, numbers[0]),
        call(2, 5, numbers[1]),
        call(3, 10, numbers[2]),
        signal(1, 20, "supply_temp_low"),
        call(4, 40, None),
        signal(2, 130, "normal"),
    ]


def messages(events: list[Inbound]) -> tuple[list[Message], list[Any]]:
    """What the sink sees for these inbound events: the inbound topics and the incident stream."""
    events = sorted(events, key=lambda e: e.occurred_at)
    derived = replay(Correlator(TOPOLOGY, CorrelationRules.load()), events).derived
    inbound = [
        Message("calls" if e.type == "call_reported" else "scada", 0, n, 0, encode(e))
        for n, e in enumerate(events)
    ]
    stream = [Message("incidents", 0, n, 0, encode(e)) for n, e in enumerate(derived)]
    return inbound + stream, derived


def sink_for(store: Store) -> Sink:
    return Sink(open_store=lambda: store, projector=Projector(TOPOLOGY, b"test-key"))


def storms(now: datetime) -> dict[str, list[Inbound]]:
    return {name: storm(name, now - timedelta(days=days)) for name, days in AGES.items()}


def contacts_of(store: Store, numbers: list[str]) -> int:
    """Rows holding these numbers, merged or not yet: what is on disk, not only what FINAL shows."""
    sql_text = "SELECT count() AS n FROM call_contacts WHERE caller IN {numbers}"
    return int(store.query(render(sql_text, numbers=one_of(numbers)))[0]["n"])


def restored_incident(store: Store, call_id: str) -> str:
    found = store.query(
        render("SELECT incident_id FROM incident_events FINAL WHERE call_id = {id}", id=call_id)
    )
    return str(next(row["incident_id"] for row in found if row["incident_id"]))


def _counts(store: Store, tables: tuple[str, ...]) -> dict[str, int]:
    return {t: int(store.query(f"SELECT count() AS n FROM {t} FINAL")[0]["n"]) for t in tables}


def unfinished_mutations(store: Store) -> int:
    sql_text = "SELECT count() AS n FROM system.mutations WHERE database = currentDatabase()"
    return int(store.query(sql_text + " AND is_done = 0")[0]["n"])


def mutations(store: Store) -> int:
    sql_text = "SELECT count() AS n FROM system.mutations WHERE database = currentDatabase()"
    return int(store.query(sql_text)[0]["n"])


@pytest.fixture
def seeded(store: Store) -> Iterator[tuple[Sink, list[Any]]]:
    """The store with an ancient, an old and a recent storm projected; the derived events."""
    sink = sink_for(store)
    written, derived = messages([e for events in storms(NOW).values() for e in events])
    sink.write_now(written)
    yield sink, derived
    sink.close()


def run_enforce(sink: Sink, **options: Any) -> Any:
    # On the sink's thread, as every store call of the tests on chDB.
    return sink.run_now(lambda s: enforce(s, NOW, CONTACT_DAYS, CALL_DAYS, **options))


def test_enforce_deletes_expired_numbers_and_calls_and_keeps_recent(
    seeded: tuple[Sink, list[Any]],
) -> None:
    """Numbers past 30 days and calls past 400 days are gone from disk; recent rows stay."""
    sink, derived = seeded
    ancient_incident = sink.run_now(lambda s: restored_incident(s, "ancient-c1"))
    old_incident = sink.run_now(lambda s: restored_incident(s, "old-c1"))
    before = sink.run_now(lambda s: callbacks(s, old_incident)).sections[0].rows
    untouched = sink.run_now(lambda s: _counts(s, ("incidents", "alerts")))
    assert [row["caller"] for row in before] == phones("old")

    result = run_enforce(sink)

    call_cutoff = NOW - timedelta(days=CALL_DAYS)
    per_call_rows = sum(
        1 for e in derived if getattr(e, "call_id", "") and e.occurred_at < call_cutoff
    )
    assert per_call_rows > 0
    summary = {t.table: (t.rows_before, t.deleted, t.rows_after) for t in result.tables}
    assert summary["call_contacts"] == (9, 6, 3)
    assert summary["calls"] == (12, 4, 8)
    assert summary["incident_events"][1] == per_call_rows
    assert [t.cutoff for t in result.tables] == [
        NOW - timedelta(days=CONTACT_DAYS),
        call_cutoff,
        call_cutoff,
    ]

    gone = phones("ancient") + phones("old")
    assert sink.run_now(lambda s: contacts_of(s, gone)) == 0  # not merely hidden by FINAL
    assert sink.run_now(lambda s: contacts_of(s, phones("recent"))) == 3
    old_callbacks = sink.run_now(lambda s: callbacks(s, old_incident))
    assert old_callbacks.sections[0].rows == []
    assert old_callbacks.summary["calls_without_a_number"] == 4  # the calls are still counted
    assert sink.run_now(lambda s: callbacks(s, ancient_incident)).summary["calls"] == 0
    recent_incident = sink.run_now(lambda s: restored_incident(s, "recent-c1"))
    recent = sink.run_now(lambda s: callbacks(s, recent_incident)).sections[0].rows
    assert [row["caller"] for row in recent] == phones("recent")
    kept = sink.run_now(
        lambda s: s.query("SELECT event_id FROM calls ORDER BY event_id")  # without FINAL
    )
    assert [row["event_id"][: -len("-c1")] for row in kept] == ["old"] * 4 + ["recent"] * 4
    # Incidents and alerts hold no caller data: retention leaves them alone.
    assert sink.run_now(lambda s: _counts(s, ("incidents", "alerts"))) == untouched


def test_dry_run_counts_what_would_go_and_deletes_nothing(
    seeded: tuple[Sink, list[Any]],
) -> None:
    """A dry run reports the same counts as the real run, leaves every row and adds no mutation."""
    sink, _ = seeded
    mutations_before = sink.run_now(mutations)
    dry = run_enforce(sink, dry_run=True)
    assert dry.dry_run and all(t.rows_after is None for t in dry.tables)
    assert sink.run_now(mutations) == mutations_before
    gone = phones("ancient") + phones("old")
    assert sink.run_now(lambda s: contacts_of(s, gone)) == 6
    real = run_enforce(sink)
    assert [(t.table, t.rows_before, t.deleted) for t in dry.tables] == [
        (t.table, t.rows_before, t.deleted) for t in real.tables
    ]
    assert "would delete" in dry.to_table() and "nothing was deleted" in dry.to_table()


def test_second_run_deletes_nothing_and_rewrites_nothing(seeded: tuple[Sink, list[Any]]) -> None:
    """Idempotent: a rerun finds nothing past its time and creates no mutation."""
    sink, _ = seeded
    first = run_enforce(sink)
    assert sum(t.deleted for t in first.tables) > 0
    mutations_after_first = sink.run_now(mutations)
    second = run_enforce(sink)
    assert [t.deleted for t in second.tables] == [0, 0, 0]
    assert [t.rows_before for t in second.tables] == [t.rows_after for t in first.tables]
    assert sink.run_now(mutations) == mutations_after_first


def test_an_old_call_delivered_late_goes_at_the_next_run(seeded: tuple[Sink, list[Any]]) -> None:
    """A redelivered or rebuilt old call reappears in the store; the next run deletes it again."""
    sink, _ = seeded
    run_enforce(sink)
    late, _ = messages(storm("late", NOW - timedelta(days=AGES["old"], hours=1)))
    sink.write_now(late)
    assert sink.run_now(lambda s: contacts_of(s, phones("late"))) == 3
    again = run_enforce(sink)
    assert again.deleted("call_contacts") == 3 and again.deleted("calls") == 0
    assert sink.run_now(lambda s: contacts_of(s, phones("late"))) == 0


def other_store(store: Store) -> Store:
    """A second connection to the same database, as the worker would have."""
    if isinstance(store, ClickHouseServerStore):
        return ClickHouseServerStore(store.host, store.port, database=store.database)
    assert isinstance(store, ChdbStore)
    return ChdbStore(store.path)


def test_rows_the_worker_writes_during_a_run_are_kept(
    store: Store, seeded: tuple[Sink, list[Any]]
) -> None:
    """Recent calls inserted while the deletions run survive them: safe from cron."""
    sink, _ = seeded
    worker = Sink(open_store=lambda: other_store(store), projector=Projector(TOPOLOGY, b"test-key"))
    stop = threading.Event()
    written: list[str] = []

    def write() -> None:
        n = 0
        while not stop.is_set() or n < 5:
            events = storm(f"live{n}", NOW - timedelta(hours=n + 1))[:3]
            worker.write_now([Message("calls", 0, n, 0, encode(e)) for e in events])
            written.extend(e.event_id for e in events)
            n += 1

    thread = threading.Thread(target=write)
    thread.start()
    try:
        result = run_enforce(sink)
    finally:
        stop.set()
        thread.join(timeout=120)
        worker.close()
    assert result.deleted("call_contacts") == 6
    live = sink.run_now(
        lambda s: s.query(
            render(
                "SELECT count() AS n FROM calls FINAL WHERE event_id IN {ids}", ids=one_of(written)
            )
        )
    )
    assert live == [{"n": len(written)}]


def test_a_stuck_deletion_raises_and_queues_no_second_mutation(
    store: Store, seeded: tuple[Sink, list[Any]]
) -> None:
    """A mutation that cannot finish: RetentionError after the timeout, and none added behind it."""
    sink, _ = seeded

    def stick(store: Store) -> None:
        # Fails on the one row whose number is this, in the background (18.16) or at once (chDB).
        with contextlib.suppress(RuntimeError):
            store.command(
                "ALTER TABLE call_contacts DELETE WHERE throwIf(caller = '+1 212 555 0101')"
            )

    sink.run_now(stick)
    try:
        assert sink.run_now(unfinished_mutations) == 1
        with pytest.raises(RetentionError, match="call_contacts"):
            run_enforce(sink, timeout=1, poll=0.1)
        assert sink.run_now(unfinished_mutations) == 1
    finally:
        if isinstance(store, ChdbStore):  # 18.16 has no KILL MUTATION: the fixture drops the db
            sink.run_now(lambda s: s.command("KILL MUTATION WHERE database = currentDatabase()"))


def test_periods_under_one_day_are_refused(store: Store) -> None:
    """enforce refuses a retention of zero days rather than deleting everything."""
    with pytest.raises(ValueError, match="contact_days"):
        enforce(store, NOW, 0, CALL_DAYS)


# -- the command line -----------------------------------------------------------------------


def seed_chdb(data: Path, now: datetime) -> None:
    store = ChdbStore(str(data / "chdb"))
    sink = sink_for(store)
    try:
        sink.write_now(messages([e for events in storms(now).values() for e in events])[0])
    finally:
        sink.close()
        store.close()


def test_cli_enforce_on_chdb_dry_run_then_real(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Defaults from OUTAGE_RETENTION_*; --dry-run --json deletes nothing; a real run does."""
    seed_chdb(tmp_path, datetime.now(UTC))
    capsys.readouterr()  # the seeding sink's log lines
    monkeypatch.setenv("OUTAGE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("OUTAGE_RETENTION_CONTACT_DAYS", "30")
    monkeypatch.setenv("OUTAGE_RETENTION_CALL_DAYS", "400")
    monkeypatch.delenv("OUTAGE_CLICKHOUSE_URL", raising=False)
    monkeypatch.delenv("OUTAGE_CHDB_PATH", raising=False)

    assert main(["retention", "enforce", "--dry-run", "--json"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["dry_run"] is True
    assert [(t["table"], t["days"], t["deleted"]) for t in dry["tables"]][:2] == [
        ("call_contacts", 30, 6),
        ("calls", 400, 4),
    ]

    assert main(["retention", "enforce", "--contact-days", "200"]) == 0
    table = capsys.readouterr().out
    assert table.startswith("Retention at ")
    lines = {line.split()[0]: line.split() for line in table.splitlines()[2:]}
    assert lines["call_contacts"][-3:] == ["9", "3", "6"]  # only the ancient numbers: 200 days
    assert lines["calls"][-3:] == ["12", "4", "8"]

    assert main(["retention", "enforce", "--json"]) == 0
    real = json.loads(capsys.readouterr().out)
    assert [t["deleted"] for t in real["tables"]][:2] == [3, 0]
    with ChdbStore(str(tmp_path / "chdb")) as store:
        assert contacts_of(store, phones("ancient") + phones("old")) == 0
        assert contacts_of(store, phones("recent")) == 3


def outage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`outage ...` in a process of its own, as cron runs it."""
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("OUTAGE_")}, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_unreachable_server_exits_2(tmp_path: Path) -> None:
    """OUTAGE_CLICKHOUSE_URL pointing nowhere: exit 2 with one line, no driver traceback."""
    url = f"clickhouse://127.0.0.1:{free_port()}/outage"
    done = outage("retention", "enforce", OUTAGE_CLICKHOUSE_URL=url, OUTAGE_DATA_DIR=str(tmp_path))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("outage retention: store unreachable, nothing deleted")
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_cli_chdb_held_by_another_process_exits_2(tmp_path: Path) -> None:
    """chDB directory held by the running service: exit 2 saying so, not a traceback."""
    with ChdbStore(str(tmp_path / "chdb")) as held:  # this process plays the service
        held.migrate()
        done = outage("retention", "enforce", OUTAGE_DATA_DIR=str(tmp_path))
    assert done.returncode == 2, done.stderr
    assert "held by the running service" in done.stderr and "Traceback" not in done.stderr


def test_cli_refuses_zero_days(capsys: pytest.CaptureFixture[str]) -> None:
    """--contact-days 0 is a usage error (exit 2) before any store is opened."""
    with pytest.raises(SystemExit) as exit_:
        main(["retention", "enforce", "--contact-days", "0"])
    assert exit_.value.code == 2
    assert "at least 1 day" in capsys.readouterr().err


def test_the_worker_enforces_retention_itself_on_its_chdb(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """With chDB (one process only) the worker deletes expired phone numbers on its timer."""

    worker = start_worker(
        broker,
        tmp_path_factory.mktemp("retention-worker"),
        OUTAGE_RETENTION_EVERY_HOURS="0.002",  # every 7.2 s
        OUTAGE_RETENTION_CONTACT_DAYS="1",
    )
    try:
        old = datetime.now(UTC) - timedelta(days=3)
        body = {
            "type": "call_reported",
            "schema_version": 1,
            "event_id": "retention-old-call",
            "occurred_at": old.isoformat(),
            "utility": "heat",
            "premise_id": "P-HSUB1-B1-01",
            "caller": "+1 212 555 0100",
        }
        # Three days old: past the 48 h that live calls may be, so it goes in as history.
        assert worker.post("/v1/history", body)[0] == 202

        def deleted_contacts() -> int:
            for line in worker.log.read_text().splitlines():
                if '"retention.enforced"' in line:
                    count = json.loads(line)["deleted"]["call_contacts"]
                    if count:
                        return int(count)
            return 0

        assert wait_for(deleted_contacts, timeout=60) == 1
    finally:
        worker.stop()
