"""The port every projection writes through: one contract, two ClickHouse backends.

    ClickHouseServerStore   projections/clickhouse_server.py   clickhouse-driver, native TCP
    ChdbStore               projections/chdb_store.py          chDB in-process, a directory

Both pass tests/integration/test_store_contract.py. Values are bound by `sql.literal`, never
by string concatenation of client input.
"""

from collections.abc import Mapping, Sequence
from typing import Any, Protocol


class StoreUnavailable(ConnectionError):
    """The database cannot be reached right now; the caller may retry later."""


class Store(Protocol):
    """A ClickHouse database the projections write to and the reports read from."""

    def migrate(self) -> list[str]:
        """Apply the numbered migrations not yet applied; return the names applied."""
        ...

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert rows (all with the same keys, the table's columns) in one batch."""
        ...

    def query(self, sql: str) -> list[dict[str, Any]]:
        """Run a SELECT and return its rows as dicts (DateTime as aware UTC datetimes)."""
        ...

    def command(self, sql: str) -> None:
        """Run a statement that returns nothing (DDL, TRUNCATE)."""
        ...

    def close(self) -> None: ...
