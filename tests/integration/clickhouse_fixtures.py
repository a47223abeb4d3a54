"""Fixtures for the real ClickHouse backends: Debian's clickhouse-server and chDB in-process.

    clickhouse_server   one server for the session, on loopback, free ports, its own data dir;
                        `stop()` and `start()` (same ports, same data) for fault tests
    chdb_path           a fresh directory for a ChdbStore
    store               a migrated Store of each backend ("clickhouse-server", "chdb"), fresh
                        database (server) or directory (chDB) per test

Without the clickhouse-server binary the server tests skip, or fail under CI /
OUTAGE_REQUIRE_CLICKHOUSE, pointing at `make system-deps`.
"""

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from projections.chdb_store import ChdbStore
from projections.clickhouse_server import ClickHouseServerStore
from projections.local_server import MISSING, ClickHouseServer, server_binary
from projections.store import Store, StoreUnavailable


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseServer]:
    """Debian's clickhouse-server on loopback for the whole session; killed at the end."""
    binary = server_binary()
    if binary is None:
        if os.environ.get("CI") or os.environ.get("OUTAGE_REQUIRE_CLICKHOUSE"):
            pytest.fail(MISSING)
        pytest.skip(MISSING)
    server = ClickHouseServer(binary, tmp_path_factory.mktemp("clickhouse-server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def chdb_path(tmp_path: Path) -> Path:
    """A fresh, empty directory for a ChdbStore."""
    path = tmp_path / "chdb"
    path.mkdir()
    return path


@pytest.fixture(params=["clickhouse-server", "chdb"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """A migrated store of each backend, on a database (or directory) of its own."""
    opened: Store
    database = ""
    if request.param == "clickhouse-server":
        server: ClickHouseServer = request.getfixturevalue("clickhouse_server")
        database = f"test_{uuid.uuid4().hex[:12]}"
        server_store = ClickHouseServerStore(server.host, server.port, database=database)
        opened = server_store
    else:
        opened = ChdbStore(str(request.getfixturevalue("chdb_path")))
    try:
        opened.migrate()
        yield opened
    finally:
        if database:
            # A fault test may have left the server down; its data dir goes with the session.
            with contextlib.suppress(StoreUnavailable):
                opened.command(f"DROP DATABASE IF EXISTS {database}")
        opened.close()
