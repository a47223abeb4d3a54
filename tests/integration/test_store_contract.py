"""The Store contract, run against both backends: Debian's clickhouse-server 18.16 and chDB."""

import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from projections import migrate
from projections.chdb_store import ChdbStore
from projections.clickhouse_server import ClickHouseServerStore
from projections.sql import one_of, render
from projections.store import Store, StoreUnavailable
from tests.integration.clickhouse_fixtures import ClickHouseServer

pytestmark = pytest.mark.integration

T0 = datetime(2024, 3, 31, 0, 30, 15, tzinfo=UTC)
NEW_YORK_WINTER = timezone(timedelta(hours=-5))
HOSTILE = [
    "it's",
    "back\\slash",
    "\\'",
    "line\nbreak\r\ttab",
    "'; DROP TABLE calls; --",
    "ünïcødé 電話 🔌",
    "{placeholder}",
    "",
]


def tables_of_initial_migration() -> set[str]:
    text = (migrate.MIGRATIONS / "0001_initial.sql").read_text()
    return set(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", text))


def call_row(n: int, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "event_id": f"call-{n:05d}",
        "occurred_at": T0 + timedelta(minutes=7 * n),
        "recorded_at": T0 + timedelta(minutes=7 * n, seconds=3),
        "utility": ("power", "water", "heat")[n % 3],
        "domain": "electric",
        "area": "Bronx",
        "node_id": f"B-{n % 5}",
        "premise_id": f"P-{n}",
        "building_id": f"B-{n % 5}",
        "caller_hash": f"h{n % 4}",
        "symptom": "no_power",
        "scope": "building",
        "tags": ["dark", f"t{n % 2}"],
        "has_notes": n % 2,
    }
    row.update(overrides)
    return row


def incident_row(incident_id: str, version: int, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "incident_id": incident_id,
        "version": version,
        "domain": "electric",
        "device_id": "FDR1-T2",
        "device_kind": "transformer",
        "utility": "power",
        "area": "Bronx",
        "state": "suspected",
        "cause": "",
        "planned": 0,
        "work_id": "",
        "etr": None,
        "opened_at": T0,
        "confirmed_at": None,
        "restored_at": None,
        "updated_at": T0 + timedelta(minutes=version),
        "customers_affected": 120,
        "merged_into": "",
    }
    row.update(overrides)
    return row


def assert_utc(value: datetime) -> None:
    assert isinstance(value, datetime)
    assert value.utcoffset() == timedelta(0)


def test_migrate_is_idempotent_and_creates_every_table(store: Store) -> None:
    """A second migrate applies nothing; every 0001 table and the bookkeeping table exist."""
    assert store.migrate() == []
    names = {
        row["name"]
        for row in store.query("SELECT name FROM system.tables WHERE database = currentDatabase()")
    }
    assert tables_of_initial_migration() <= names
    assert migrate.BOOKKEEPING_TABLE in names
    applied = store.query("SELECT name, applied_at FROM schema_migrations ORDER BY name")
    assert [row["name"] for row in applied] == [name for name, _ in migrate.migrations()]
    assert applied[0]["name"] == "0001_initial"
    assert_utc(applied[0]["applied_at"])


def test_calls_round_trip_every_column_type(store: Store) -> None:
    """DateTime (from any zone or naive), Array(String), UInt8 and hostile strings come back."""
    rows = [
        call_row(1, tags=HOSTILE, area=HOSTILE[0], symptom=HOSTILE[3], has_notes=1),
        call_row(2, tags=[], caller_hash=HOSTILE[4], scope=HOSTILE[5], has_notes=0),
        call_row(
            3,
            occurred_at=datetime(2024, 1, 5, 7, 0, 0, tzinfo=NEW_YORK_WINTER),
            recorded_at=datetime(2024, 1, 5, 12, 0, 1),  # naive is UTC
            node_id=HOSTILE[1],
            premise_id=HOSTILE[2],
            building_id=HOSTILE[6],
            has_notes=True,
        ),
    ]
    store.insert("calls", rows)
    back = store.query("SELECT * FROM calls FINAL ORDER BY event_id")
    expected = [dict(row, has_notes=int(row["has_notes"])) for row in rows]
    expected[2]["recorded_at"] = datetime(2024, 1, 5, 12, 0, 1, tzinfo=UTC)
    assert back == expected
    assert back[2]["occurred_at"] == datetime(2024, 1, 5, 12, 0, 0, tzinfo=UTC)
    for row in back:
        assert_utc(row["occurred_at"])
        assert_utc(row["recorded_at"])
        assert type(row["has_notes"]) is int
        assert isinstance(row["tags"], list)
    assert back[0]["tags"] == HOSTILE


def test_incidents_round_trip_nullable_datetimes(store: Store) -> None:
    """Nullable(DateTime) NULL comes back as None and a set one as an aware UTC datetime."""
    rows = [
        incident_row("inc-open", 1),
        incident_row(
            "inc-done",
            7,
            state="restored",
            cause=HOSTILE[4],
            planned=True,
            work_id=HOSTILE[0],
            etr=T0 + timedelta(hours=2),
            confirmed_at=T0 + timedelta(minutes=5),
            restored_at=T0 + timedelta(hours=1, seconds=1),
            customers_affected=4_294_967_295,
            merged_into=HOSTILE[1],
        ),
    ]
    store.insert("incidents", rows)
    back = store.query("SELECT * FROM incidents FINAL ORDER BY incident_id")
    # Later migrations add columns; the ones written here come back as written.
    back = [{column: row[column] for column in rows[0]} for row in back]
    assert back == [dict(rows[1], planned=1), rows[0]]
    assert back[1]["etr"] is None and back[1]["restored_at"] is None
    assert_utc(back[0]["restored_at"])
    assert type(back[0]["version"]) is int and type(back[0]["planned"]) is int


def test_incident_events_round_trip(store: Store) -> None:
    """UInt8 `repeat`, Nullable `call_occurred_at` (NULL and set) and free text come back."""
    base: dict[str, Any] = {
        "type": "call_attached",
        "domain": "electric",
        "incident_id": "inc-1",
        "device_id": "FDR1-T2",
        "node_id": "B-1",
        "reporter": "caller:abc",
        "reason": "",
    }
    rows = [
        dict(
            base,
            event_id="ev-1",
            occurred_at=T0,
            call_id="call-1",
            repeat=0,
            call_occurred_at=T0 - timedelta(seconds=30),
            detail=HOSTILE[3],
        ),
        dict(
            base,
            event_id="ev-2",
            occurred_at=T0 + timedelta(seconds=1),
            call_id="",
            repeat=1,
            call_occurred_at=None,
            detail=HOSTILE[4] + HOSTILE[1],
        ),
    ]
    store.insert("incident_events", rows)
    back = store.query("SELECT * FROM incident_events FINAL ORDER BY event_id")
    assert back == rows
    assert back[1]["call_occurred_at"] is None
    assert_utc(back[0]["call_occurred_at"])


def test_same_batch_twice_counts_once_with_final(store: Store) -> None:
    """A redelivered batch collapses on the sorting key: FINAL counts each call once."""
    batch = [call_row(n) for n in range(50)]
    store.insert("calls", batch)
    store.insert("calls", batch)
    assert store.query("SELECT count() AS n FROM calls FINAL") == [{"n": 50}]
    assert store.query("SELECT uniqExact(event_id) AS n FROM calls") == [{"n": 50}]


def test_replacing_merge_tree_keeps_the_highest_version(store: Store) -> None:
    """incidents: FINAL and argMax(…, version) both give the highest version, whatever the order."""
    for version, state in ((1, "suspected"), (3, "restored"), (2, "confirmed")):
        restored = T0 + timedelta(hours=1) if state == "restored" else None
        store.insert(
            "incidents", [incident_row("inc-1", version, state=state, restored_at=restored)]
        )
    store.insert("incidents", [incident_row("inc-2", 1)])
    final = store.query(
        "SELECT incident_id, version, state, restored_at FROM incidents FINAL ORDER BY incident_id"
    )
    latest = store.query(
        # Aliases must not reuse a column name used by another aggregate: on 18.16 `max(version)
        # AS version` makes argMax(state, version) an aggregate of an aggregate (code 184).
        "SELECT incident_id, max(version) AS latest, argMax(state, version) AS state,"
        " argMax(restored_at, version) AS restored_at"
        " FROM incidents GROUP BY incident_id ORDER BY incident_id"
    )
    expected = [
        {
            "incident_id": "inc-1",
            "version": 3,
            "state": "restored",
            "restored_at": T0 + timedelta(hours=1),
        },
        {"incident_id": "inc-2", "version": 1, "state": "suspected", "restored_at": None},
    ]
    assert final == expected
    renamed = [{**row, "version": row["latest"]} for row in latest]
    assert [{k: v for k, v in row.items() if k != "latest"} for row in renamed] == expected
    # WHERE applies after FINAL on both engines: the superseded "suspected" row is not seen.
    assert store.query("SELECT incident_id FROM incidents FINAL WHERE state = 'suspected'") == [
        {"incident_id": "inc-2"}
    ]


def test_empty_insert_is_a_no_op_and_inline_inserts_are_refused(store: Store) -> None:
    """insert([]) does nothing; command refuses INSERT ... VALUES and points to insert."""
    store.insert("calls", [])
    with pytest.raises(ValueError, match=r"Store\.insert"):
        store.command("INSERT INTO calls (event_id) VALUES ('x')")
    with pytest.raises(ValueError):
        store.insert("calls; DROP TABLE calls", [call_row(1)])
    assert store.query("SELECT count() AS n FROM calls") == [{"n": 0}]


def test_in_with_one_of_works_on_both_backends(store: Store) -> None:
    """`IN {ids}` with sql.one_of matches the listed rows; an empty one_of matches none."""
    store.insert("calls", [call_row(n) for n in range(5)])
    query = "SELECT event_id FROM calls FINAL WHERE event_id IN {ids} ORDER BY event_id"
    ids = ["call-00001", "call-00003", "nope'"]
    assert store.query(render(query, ids=one_of(ids))) == [
        {"event_id": "call-00001"},
        {"event_id": "call-00003"},
    ]
    assert store.query(render(query, ids=one_of([]))) == []


def test_server_stopped_raises_store_unavailable_then_recovers(
    clickhouse_server: ClickHouseServer,
) -> None:
    """Server down: every call raises StoreUnavailable; server back: the same store works."""
    store = ClickHouseServerStore(
        clickhouse_server.host, clickhouse_server.port, database=f"fault_{uuid.uuid4().hex[:8]}"
    )
    try:
        store.migrate()
        store.insert("calls", [call_row(1)])
        clickhouse_server.stop()
        try:
            with pytest.raises(StoreUnavailable, match="unreachable"):
                store.query("SELECT count() AS n FROM calls")
            with pytest.raises(StoreUnavailable):
                store.insert("calls", [call_row(2)])
            with pytest.raises(StoreUnavailable):
                store.command("TRUNCATE TABLE calls")
            with pytest.raises(StoreUnavailable):  # a second failure in a row is still clean
                store.query("SELECT 1 AS one")
        finally:
            clickhouse_server.start()
        store.insert("calls", [call_row(2)])
        assert store.query("SELECT count() AS n FROM calls FINAL") == [{"n": 2}]
        store.command(f"DROP DATABASE {store.database}")
    finally:
        store.close()


def test_unreachable_server_from_the_start_raises_store_unavailable() -> None:
    """A store pointed at a port nobody listens on raises StoreUnavailable, not a socket error."""
    from streams.broker import free_port

    store = ClickHouseServerStore("127.0.0.1", free_port(), connect_timeout=1)
    with pytest.raises(StoreUnavailable, match="unreachable"):
        store.query("SELECT 1 AS one")
    store.close()


AGGREGATES = [
    "SELECT utility, count() AS calls, countIf(has_notes = 1) AS with_notes,"
    " uniqExact(caller_hash) AS callers FROM calls FINAL GROUP BY utility ORDER BY utility",
    "SELECT toStartOfHour(occurred_at) AS hour, count() AS calls FROM calls FINAL"
    " GROUP BY hour ORDER BY hour",
    "SELECT toStartOfHour(occurred_at, 'America/New_York') AS hour, count() AS calls"
    " FROM calls FINAL GROUP BY hour ORDER BY hour",
    "SELECT avg(dateDiff('second', opened_at, restored_at)) AS avg_restore,"
    " avg(restored_at - opened_at) AS avg_minus, count() AS n"
    " FROM incidents FINAL WHERE restored_at IS NOT NULL",
    "SELECT tag, count() AS n FROM calls FINAL ARRAY JOIN tags AS tag GROUP BY tag ORDER BY tag",
    "SELECT arrayJoin(tags) AS tag, uniqExact(event_id) AS n FROM calls FINAL"
    " GROUP BY tag ORDER BY tag",
    "SELECT node_id, arraySort(groupArray(event_id)) AS ids FROM calls FINAL"
    " GROUP BY node_id ORDER BY node_id",
    "SELECT count() AS n FROM calls FINAL WHERE node_id IN"
    " (SELECT device_id FROM incidents FINAL WHERE state = 'restored')",
    "SELECT c.event_id AS event_id, i.state AS state FROM calls AS c FINAL"
    " ALL LEFT JOIN (SELECT device_id AS node_id, state FROM incidents FINAL) AS i USING node_id"
    " ORDER BY event_id, state",
    "SELECT state, argMax(customers_affected, version) AS customers, max(version) AS v"
    " FROM incidents GROUP BY state ORDER BY state",
]


def test_aggregates_equal_across_backends(
    clickhouse_server: ClickHouseServer, chdb_path: Path
) -> None:
    """countIf, uniqExact, toStartOfHour, dateDiff, ARRAY JOIN, IN, JOIN: same rows and types."""
    calls = [call_row(n) for n in range(40)]
    incidents = [
        incident_row(f"inc-{n}", v, device_id=f"B-{n}", state=state, restored_at=restored)
        for n in range(4)
        for v, state, restored in (
            (1, "suspected", None),
            (2, "restored", T0 + timedelta(minutes=37 * (n + 1), seconds=n)),
        )
        if not (n == 3 and v == 2)
    ]
    server = ClickHouseServerStore(
        clickhouse_server.host, clickhouse_server.port, database=f"agg_{uuid.uuid4().hex[:8]}"
    )
    chdb = ChdbStore(str(chdb_path))
    try:
        results: list[list[list[dict[str, Any]]]] = []
        for backend in (server, chdb):
            backend.migrate()
            backend.insert("calls", calls)
            backend.insert("incidents", incidents)
            backend.insert("calls", calls[:10])  # a redelivery, collapsed by FINAL
            results.append([backend.query(query) for query in AGGREGATES])
        on_server, on_chdb = results
        for query, left, right in zip(AGGREGATES, on_server, on_chdb, strict=True):
            assert left, query
            assert left == right, query
            typed = [{k: type(v) for k, v in row.items()} for row in left]
            assert typed == [{k: type(v) for k, v in row.items()} for row in right], query
        assert on_server[3] == [{"avg_restore": 4441.0, "avg_minus": 4441.0, "n": 3}]
        assert type(on_server[0][0]["calls"]) is int
    finally:
        server.command(f"DROP DATABASE IF EXISTS {server.database}")
        server.close()
        chdb.close()
