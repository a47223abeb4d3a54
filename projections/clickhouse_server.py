"""The Store on a ClickHouse server over the native TCP protocol (clickhouse-driver).

The only module that imports clickhouse_driver. Same contract as the chDB backend (tests/
integration/test_store_contract.py); runs against ClickHouse 18.16 (Debian) and newer.

A server that cannot be reached raises `StoreUnavailable`; nothing is retried here (the sink
decides when to try again). The driver connects lazily: after a failure the connection is
dropped, and the next call connects afresh, so the store recovers by itself once the server is
back.

TLS (`secure=True`) checks the server certificate and host name against `ca_certs` (default:
the certifi bundle) unless `verify=False`; projections/backends.py maps the URL onto these.
"""

import ssl
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from clickhouse_driver import Client
from clickhouse_driver import errors as driver_errors

from projections import migrate, sql
from projections.store import StoreUnavailable

# Raised by the driver, or let through from the socket layer, when the server is not there.
UNREACHABLE: tuple[type[BaseException], ...] = (
    driver_errors.NetworkError,
    driver_errors.SocketTimeoutError,
    EOFError,
    OSError,
)


class ClickHouseServerStore:
    """Database `database` on a ClickHouse server; created on first use if missing."""

    def __init__(
        self,
        host: str,
        port: int = 9000,
        database: str = "outage",
        user: str = "default",
        password: str = "",
        secure: bool = False,
        connect_timeout: float = 3.0,
        send_receive_timeout: float = 60.0,
        ca_certs: str | None = None,
        verify: bool = True,
    ) -> None:
        sql.identifier(database)  # fail now on a name that cannot be quoted safely
        self.host, self.port, self.database = host, port, database
        self.secure = secure
        options: dict[str, Any] = {
            "host": host,
            "port": port,
            "user": user,
            "password": password,
            "secure": secure,
            "connect_timeout": connect_timeout,
            "send_receive_timeout": send_receive_timeout,
            "sync_request_timeout": connect_timeout,
        }
        if secure:
            # The driver checks the certificate and host name unless verify is False; without
            # ca_certs it trusts the certifi bundle (public CAs), not a private CA.
            options["verify"] = verify
            if ca_certs is not None:
                options["ca_certs"] = ca_certs
        self._options = options
        self._client = Client(database=database, **options)
        self._database_ready = False
        # A driver Client is one connection and not thread-safe; calls take turns.
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}/{self.database}"

    def migrate(self) -> list[str]:
        """Apply the numbered migrations not yet applied; return the names applied."""
        return migrate.apply(self)

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert rows (all with the same keys, the table's columns) in one native batch."""
        if not rows:
            return
        columns = list(rows[0])
        try:
            values = [tuple(_to_server(row[column]) for column in columns) for row in rows]
        except KeyError as missing:
            raise ValueError(
                f"every row must have the columns {columns}; missing {missing}"
            ) from None
        names = ", ".join(sql.identifier(column) for column in columns)
        with self._connected() as client:
            client.execute(f"INSERT INTO {sql.identifier(table)} ({names}) VALUES", values)

    def query(self, sql_text: str) -> list[dict[str, Any]]:
        """Run a SELECT and return its rows as dicts (DateTime as aware UTC datetimes)."""
        sql.check_query(sql_text)
        with self._connected() as client:
            rows, columns = client.execute(sql_text, with_column_types=True)
            server_zone = _zone(client.connection.server_info.timezone)
        names = [name for name, _ in columns]
        return [
            {name: _from_server(value, server_zone) for name, value in zip(names, row, strict=True)}
            for row in rows
        ]

    def command(self, sql_text: str) -> None:
        """Run a statement that returns nothing (DDL, TRUNCATE, INSERT ... SELECT)."""
        sql.check_command(sql_text)
        with self._connected() as client:
            client.execute(sql_text)

    def close(self) -> None:
        """Drop the connection; a later call would open a new one."""
        with self._lock:
            self._client.disconnect()

    def __enter__(self) -> "ClickHouseServerStore":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def _connected(self) -> Iterator[Client]:
        """The client, the database made sure of, unreachability turned into StoreUnavailable."""
        with self._lock, self._unreachable_as_unavailable():
            if not self._database_ready:
                self._create_database()
            yield self._client

    @contextmanager
    def _unreachable_as_unavailable(self) -> Iterator[None]:
        try:
            yield
        except UNREACHABLE as error:
            # The driver drops the connection on most errors; make sure, so that the next call
            # starts from a clean, lazily reconnecting client whatever state this one was in.
            self._client.disconnect()
            # A TLS failure is usually configuration (wrong CA, plain port): say where to look.
            what = (
                "TLS handshake failed (check secure= and ca_certs= in OUTAGE_CLICKHOUSE_URL)"
                if self.secure and _tls_failure(error)
                else "unreachable"
            )
            raise StoreUnavailable(
                f"ClickHouse server {self.address} {what}: {type(error).__name__}: {error}"
            ) from error

    def _create_database(self) -> None:
        # Connecting with database=X fails while X does not exist, so create it from `default`.
        bootstrap = Client(database="default", **self._options)
        try:
            bootstrap.execute(f"CREATE DATABASE IF NOT EXISTS {sql.identifier(self.database)}")
        finally:
            bootstrap.disconnect()
        self._database_ready = True


def _tls_failure(error: BaseException) -> bool:
    """Whether the connection failed in the TLS layer (the driver wraps ssl errors in text)."""
    return isinstance(error, ssl.SSLError) or "[SSL" in str(error)


def _to_server(value: Any) -> Any:
    """Values as the driver writes them: datetimes aware in UTC (naive ones are UTC)."""
    if isinstance(value, datetime):
        return sql.utc(value)
    if isinstance(value, list):
        return [_to_server(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_to_server(item) for item in value)
    return value


def _zone(name: str | None) -> tzinfo:
    try:
        return ZoneInfo(name) if name else UTC
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _from_server(value: Any, server_zone: tzinfo) -> Any:
    """Driver values as the Store contract has them: every datetime aware, in UTC.

    The driver gives a column with a zone (DateTime('UTC')) as an aware datetime and one
    without as a naive datetime in the server's zone.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=server_zone)
        return value.astimezone(UTC)
    if isinstance(value, list):
        return [_from_server(item, server_zone) for item in value]
    if isinstance(value, tuple):
        return tuple(_from_server(item, server_zone) for item in value)
    if isinstance(value, dict):
        return {key: _from_server(item, server_zone) for key, item in value.items()}
    return value
