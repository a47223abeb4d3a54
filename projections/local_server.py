"""A ClickHouse server of our own on loopback: Debian's clickhouse-server in a temp directory.

For tests and benchmarks (production points OUTAGE_CLICKHOUSE_URL at a real cluster): free
ports, its own data directory and config, `start()` waits until it answers, `stop()` and
`start()` again keep the ports and the data (fault tests stop it mid-stream).
"""

import shutil
import signal
import subprocess
import time
from pathlib import Path

from projections.clickhouse_server import ClickHouseServerStore
from projections.store import StoreUnavailable
from streams.broker import free_port

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
