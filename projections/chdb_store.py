"""The Store on chDB: ClickHouse in this process, its data in one directory.

The only module that imports chdb. Same contract as the server backend (tests/integration/
test_store_contract.py): tables live in database `outage`, DateTime values come back as aware
UTC datetimes, Nullable as None, integers as int, Array as list.

One directory per process at a time: chDB runs a single embedded engine per process, bound to
the first path opened. A second ChdbStore on another path raises RuntimeError until every store
on the first path is closed; `close()` releases the engine, so a test can open another path
afterwards. Several stores on the same path may be open together.

Rows are inserted as one `INSERT ... FORMAT JSONCompactEachRow` per batch (DateTime sent as Unix
seconds, so no time zone is involved): about 135k rows/s for 10k-row batches of `calls`, against
70k rows/s for the same batch as `VALUES` built with `sql.literal`. Results are read as
JSONCompact, whose header names every column's type, and each value is converted from that type.
"""

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from chdb import session as chdb_session

from projections import migrate, sql

DEFAULT_DATABASE = "outage"

# Output chosen so values can be converted without guessing: DateTime as Unix seconds (no
# zone to interpret), NaN as "nan" (JSON has no NaN), 64-bit integers as JSON numbers. The
# session zone is UTC like the server's, for expressions such as toDateTime('...') without one.
SESSION_SETTINGS = (
    "SET date_time_output_format = 'unix_timestamp'",
    "SET output_format_json_quote_64bit_integers = 0",
    "SET output_format_json_quote_denormals = 1",
    "SET session_timezone = 'UTC'",
)

Converter = Callable[[Any], Any]


class ChdbStore:
    """A ClickHouse database inside this process, persisted in `path` (see module docstring)."""

    def __init__(self, path: str, database: str = DEFAULT_DATABASE) -> None:
        self.path = str(path)
        self.database = database
        self._lock = threading.Lock()
        try:
            self._session: chdb_session.Session | None = chdb_session.Session(self.path)
        except RuntimeError as error:
            if "already initialized" in str(error):
                raise RuntimeError(
                    f"chDB cannot open {self.path!r}: this process already has a chDB store open "
                    "on another directory; close it first (one chDB path per process)"
                ) from error
            raise
        try:
            for statement in SESSION_SETTINGS:
                self._run(statement)
            self._run(f"CREATE DATABASE IF NOT EXISTS {sql.identifier(database)}")
            self._run(f"USE {sql.identifier(database)}")
        except Exception:
            self.close()
            raise

    def migrate(self) -> list[str]:
        """Apply the numbered migrations not yet applied; return the names applied."""
        return migrate.apply(self)

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert rows (all with the same keys, the table's columns) in one batch."""
        if not rows:
            return
        columns = list(rows[0])
        try:
            lines = [json.dumps([_json_value(row[column]) for column in columns]) for row in rows]
        except KeyError as missing:
            raise ValueError(
                f"every row must have the columns {columns}; missing {missing}"
            ) from None
        names = ", ".join(sql.identifier(column) for column in columns)
        body = "\n".join(lines)
        self._run(
            f"INSERT INTO {sql.identifier(table)} ({names}) FORMAT JSONCompactEachRow\n{body}"
        )

    def query(self, sql_text: str) -> list[dict[str, Any]]:
        """Run a SELECT and return its rows as dicts (DateTime as aware UTC datetimes)."""
        sql.check_query(sql_text)
        raw = self._run(sql_text, "JSONCompact")
        if not raw.strip():
            return []
        result = json.loads(raw)
        meta = result["meta"]
        names = [column["name"] for column in meta]
        converters = [converter(column["type"]) for column in meta]
        return [
            {
                name: convert(value)
                for name, convert, value in zip(names, converters, values, strict=True)
            }
            for values in result["data"]
        ]

    def command(self, sql_text: str) -> None:
        """Run a statement that returns nothing (DDL, TRUNCATE, INSERT ... SELECT)."""
        sql.check_command(sql_text)
        self._run(sql_text)

    def close(self) -> None:
        """Release the chDB session (and the engine, once no other store holds it). Idempotent."""
        with self._lock:
            if self._session is not None:
                session, self._session = self._session, None
                session.close()

    def __enter__(self) -> "ChdbStore":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _run(self, sql_text: str, fmt: str = "CSV") -> str:
        with self._lock:
            if self._session is None:
                raise RuntimeError(f"ChdbStore({self.path!r}) is closed")
            result = self._session.query(sql_text, fmt)
        data = result.bytes() if result is not None else b""
        return bytes(data).decode("utf-8")


def _json_value(value: Any) -> Any:
    """A Python value as JSONCompactEachRow input for its column."""
    kind = type(value)
    if kind is str or kind is int or value is None:  # most values: nothing to convert
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, datetime):
        return int(sql.utc(value).timestamp())
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list | tuple):
        return [_json_value(item) for item in value]
    return value


def _split_arguments(text: str) -> list[str]:
    """Top-level, comma-separated arguments of a type: 'String, Array(UInt8)' -> two parts."""
    parts: list[str] = []
    depth = 0
    quoted = False
    start = 0
    for index, char in enumerate(text):
        if char == "'" and (index == 0 or text[index - 1] != "\\"):
            quoted = not quoted
        elif quoted:
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:index].strip())
            start = index + 1
    parts.append(text[start:].strip())
    return [part for part in parts if part]


def _wrapped(type_name: str, outer: str) -> str | None:
    prefix = outer + "("
    if type_name.startswith(prefix) and type_name.endswith(")"):
        return type_name[len(prefix) : -1]
    return None


def _nullable(inner: Converter) -> Converter:
    return lambda value: None if value is None else inner(value)


def _from_unix(value: Any) -> datetime:
    return datetime.fromtimestamp(float(value), UTC)


def converter(type_name: str) -> Converter:
    """A function turning a JSONCompact value of ClickHouse type `type_name` into Python."""
    type_name = type_name.strip()
    for outer in ("Nullable", "LowCardinality"):
        inner = _wrapped(type_name, outer)
        if inner is not None:
            return _nullable(converter(inner))
    inner = _wrapped(type_name, "Array")
    if inner is not None:
        item = converter(inner)
        return lambda value: [item(element) for element in value]
    inner = _wrapped(type_name, "Tuple")
    if inner is not None:
        return _tuple_converter(_split_arguments(inner))
    inner = _wrapped(type_name, "Map")
    if inner is not None:
        _, value_type = _split_arguments(inner)
        convert_value = converter(value_type)
        return lambda value: {key: convert_value(item) for key, item in value.items()}
    if type_name.startswith("DateTime"):
        return _nullable(_from_unix)
    if type_name in ("Date", "Date32"):
        return _nullable(date.fromisoformat)
    if type_name.startswith(("Int", "UInt")):
        return _nullable(int)
    if type_name.startswith(("Float", "BFloat")):
        return _nullable(float)
    if type_name.startswith("Decimal"):
        return _nullable(lambda value: Decimal(str(value)))
    if type_name == "Bool":
        return _nullable(bool)
    return lambda value: value


def _tuple_converter(elements: list[str]) -> Converter:
    # A named tuple element reads "name Type"; JSON output gives such tuples as objects.
    named: list[tuple[str | None, Converter]] = []
    for element in elements:
        head, _, rest = element.partition(" ")
        if rest and "(" not in head:
            named.append((head, converter(rest)))
        else:
            named.append((None, converter(element)))

    def convert(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, dict):
            return tuple(
                function(value[name] if name is not None else None) for name, function in named
            )
        return tuple(function(item) for (_, function), item in zip(named, value, strict=True))

    return convert
