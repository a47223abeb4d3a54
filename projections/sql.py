"""ClickHouse SQL literals and placeholder rendering: the one place values become SQL text.

Pure and standard library only. The literals are understood alike by ClickHouse 18.16 (Debian's
server) and by chDB 26.x, so a rendered statement runs unchanged on either backend.
"""

import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

# `{name}` only: an identifier between single braces. Anything else with braces (a JSON string,
# a `{name:Type}` server-side parameter, `{{name}}`) is left as it is.
PLACEHOLDER = re.compile(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)\}(?!\})")
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# INSERT with its data in the statement (VALUES, FORMAT): clickhouse-driver cannot send it to
# ClickHouse 18.16 (the server waits for a data block that never comes), so the Store refuses
# it on both backends and rows go through `Store.insert`. INSERT ... SELECT is fine.
INLINE_INSERT = re.compile(r"\s*INSERT\s+INTO\s+[^(]*?(\([^)]*\)\s*)?(VALUES|FORMAT)\b", re.I)
# A trailing FORMAT clause: the backends choose the wire format themselves.
FORMAT_CLAUSE = re.compile(r"\bFORMAT\s+[A-Za-z]\w*\s*;?\s*\Z", re.I)

# Backslash first, so the escapes added after it are not doubled.
_ESCAPES = (
    ("\\", "\\\\"),
    ("'", "\\'"),
    ("\n", "\\n"),
    ("\r", "\\r"),
    ("\t", "\\t"),
    ("\0", "\\0"),
)


class OneOf(tuple[Any, ...]):
    """Values for `x IN {name}`: rendered `(a, b)`, a set ClickHouse 18.16 takes for IN.

    A plain list renders as an array, which 18.16 refuses after IN (code 53, Type mismatch)
    while chDB accepts it. Empty renders `(NULL)`: IN matches nothing, NOT IN everything.
    """


def one_of(values: Iterable[Any]) -> OneOf:
    """Wrap values for an IN placeholder: `render("... IN {ids}", ids=one_of(ids))`."""
    return OneOf(values)


def quote_string(text: str) -> str:
    """`text` as a single-quoted ClickHouse string literal."""
    for raw, escaped in _ESCAPES:
        text = text.replace(raw, escaped)
    return f"'{text}'"


def utc(moment: datetime) -> datetime:
    """`moment` as an aware UTC datetime; a naive one is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def literal(value: Any) -> str:
    """Render a Python value as a ClickHouse SQL literal.

    None -> NULL, bool -> 1/0, int, float (nan/inf included), Decimal, str, datetime (to UTC,
    naive taken as UTC, seconds precision as DateTime has), date, lists or tuples of those as
    arrays, and `one_of(...)` as a parenthesised set for IN. Anything else raises TypeError
    rather than guessing.
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot render non-finite Decimal {value!r}")
        return str(value)
    if isinstance(value, str):
        return quote_string(value)
    if isinstance(value, datetime):  # before date: datetime is a date subclass
        return f"toDateTime('{utc(value):%Y-%m-%d %H:%M:%S}', 'UTC')"
    if isinstance(value, date):
        return f"toDate('{value.isoformat()}')"
    if isinstance(value, OneOf):
        return "(" + (", ".join(literal(item) for item in value) or "NULL") + ")"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(literal(item) for item in value) + "]"
    raise TypeError(f"no ClickHouse literal for {type(value).__name__}: {value!r}")


def identifier(name: str) -> str:
    """A table, column or database name, checked and back-quoted; raises ValueError otherwise."""
    if not IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return f"`{name}`"


def check_command(sql: str) -> None:
    """Refuse a statement the Store cannot run alike on both backends (ValueError)."""
    if INLINE_INSERT.match(sql):
        raise ValueError("INSERT with inline VALUES or FORMAT: use Store.insert(table, rows)")


def check_query(sql: str) -> None:
    """Refuse a query whose result the Store cannot read alike on both backends (ValueError)."""
    if FORMAT_CLAUSE.search(sql):
        raise ValueError("no FORMAT clause in Store.query: the backend picks the result format")


def render(sql: str, /, **params: Any) -> str:
    """Replace every `{name}` in `sql` by `literal(params[name])`.

    A placeholder without a parameter raises KeyError naming it; parameters that no
    placeholder uses are allowed (one dict can serve several queries).
    """
    return render_mapping(sql, params)


def render_mapping(sql: str, params: Mapping[str, Any]) -> str:
    """`render` with the parameters in a mapping (for names that are not Python identifiers)."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in params:
            raise KeyError(f"no value for placeholder {{{name}}} in SQL")
        return literal(params[name])

    return PLACEHOLDER.sub(substitute, sql)
