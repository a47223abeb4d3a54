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
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from projections.chdb_store import ChdbStore
from projections.clickhouse_server import ClickHouseServerStore
from projections.store import Store, StoreUnavailable

HOST = "127.0.0.1"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
MISSING = (
    "clickhouse-server is not installed; run `make system-deps` "
    "(installs Debian's clickhouse-server and clickhouse-client)"
)

CONFIG = """<?xml version="1.0"?>
<yandex>
  <logger>
    <level>warning</level>
    <log>{dir}/server.log</log>
    <errorlog>{dir}/err.log</errorlog>
  </logger>
  <tcp_port>{tcp_port}</tcp_port>
  <http_port>{http_port}</http_port>
  <listen_host>{host}</listen_host>
  <path>{dir}/data/</path>
  <tmp_path>{dir}/tmp/</tmp_path>
  <users_config>/etc/clickhouse-server/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>5368709</mark_cache_size>
</yandex>
"""


def free_port() -> int:
    """A loopback TCP port that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def server_binary() -> str | None:
    """Path of clickhouse-server; Debian puts it in /usr/sbin, not on every user's PATH."""
    found = shutil.which("clickhouse-server")
    if found:
        return found
    fallback = Path("/usr/sbin/clickhouse-server")
    return str(fallback) if fallback.exists() else None


class ClickHouseServer:
    """A clickhouse-server process this test session owns."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.host = HOST
        self.port = free_port()
        self.http_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.config = directory / "config.xml"
        self.config.write_text(
            CONFIG.format(dir=directory, host=HOST, tcp_port=self.port, http_port=self.http_port),
            encoding="utf-8",
        )

    @property
    def url(self) -> str:
        """`clickhouse://host:port` (append `/database`), as OUTAGE_CLICKHOUSE_URL takes it."""
        return f"clickhouse://{self.host}:{self.port}"

    def start(self) -> None:
        """Start the server (same ports, same data) and wait until it answers SELECT 1."""
        if self.process is not None and self.process.poll() is None:
            return
        output = (self.directory / "stdout.log").open("ab")
        self.process = subprocess.Popen(
            [self.binary, f"--config-file={self.config}"],
            cwd=self.directory,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C on pytest does not reach it half-way
        )
        output.close()
        deadline = time.monotonic() + START_TIMEOUT
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"clickhouse-server exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                probe = ClickHouseServerStore(self.host, self.port, database="default")
                try:
                    if probe.query("SELECT 1 AS ok") == [{"ok": 1}]:
                        return
                finally:
                    probe.close()
            except StoreUnavailable as error:
                last = error
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"clickhouse-server did not answer SELECT 1 within {START_TIMEOUT:.0f} s "
            f"(last error: {last}):\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 30 s); the data directory stays."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def log_tail(self, characters: int = 4000) -> str:
        """The end of the server's own logs, for error messages."""
        parts = []
        for name in ("stdout.log", "err.log", "server.log"):
            path = self.directory / name
            if path.exists():
                text = path.read_text(encoding="utf-8", errors="replace")[-characters:]
                parts.append(f"--- {name} ---\n{text}")
        return "\n".join(parts) or "(no server log written)"


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
