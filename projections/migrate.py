"""Numbered ClickHouse migrations: which files exist, their statements, which are pending.

No database here: the backends (clickhouse_server.py, chdb_store.py) create the bookkeeping
table, ask `pending` what to run, run it and record each name. A migration is a file
`migrations/NNNN_name.sql`; its name is the file stem (`0001_initial`). Published migrations are
never edited; a change is a new, higher-numbered file.
"""

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from projections.store import Store

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
FILENAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")

BOOKKEEPING_TABLE = "schema_migrations"
CREATE_BOOKKEEPING = (
    f"CREATE TABLE IF NOT EXISTS {BOOKKEEPING_TABLE} "
    "(name String, applied_at DateTime('UTC')) ENGINE = MergeTree ORDER BY name"
)
APPLIED = f"SELECT DISTINCT name FROM {BOOKKEEPING_TABLE}"

Migration = tuple[str, list[str]]


def split_statements(text: str) -> list[str]:
    """The statements of one migration file.

    Lines starting with `--` are dropped (so a `;` in a comment splits nothing); a statement
    ends at a `;` that ends a line. Semicolons inside a line (a string literal) are kept.
    """
    statements: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.lstrip().startswith("--"):
            continue
        stripped = line.rstrip()
        if stripped.endswith(";"):
            current.append(stripped[:-1])
            statement = "\n".join(current).strip()
            if statement:
                statements.append(statement)
            current = []
        else:
            current.append(line)
    tail = "\n".join(current).strip()
    if tail:
        statements.append(tail)
    return statements


def migrations(directory: Path = MIGRATIONS) -> list[Migration]:
    """Every migration in `directory` as (name, statements), in number order.

    Raises ValueError on a `.sql` file that does not follow NNNN_name.sql or on two files with
    the same number, rather than applying them in a surprising order.
    """
    found: list[Migration] = []
    numbers: dict[str, str] = {}
    for path in sorted(directory.glob("*.sql")):
        match = FILENAME.fullmatch(path.name)
        if match is None:
            raise ValueError(f"migration file {path.name!r} is not named NNNN_name.sql")
        number = match.group(1)
        if number in numbers:
            raise ValueError(f"migrations {numbers[number]!r} and {path.stem!r} share {number}")
        numbers[number] = path.stem
        found.append((path.stem, split_statements(path.read_text(encoding="utf-8"))))
    return found


def pending(applied: Iterable[str], directory: Path = MIGRATIONS) -> list[Migration]:
    """The migrations not in `applied`, in the order they must run."""
    done = set(applied)
    return [(name, statements) for name, statements in migrations(directory) if name not in done]


def apply(store: "Store") -> list[str]:
    """Apply to `store` the migrations it has not had yet; return the names applied."""
    store.command(CREATE_BOOKKEEPING)
    applied = {row["name"] for row in store.query(APPLIED)}
    names: list[str] = []
    for name, statements in pending(applied):
        for statement in statements:
            store.command(statement)
        store.insert(BOOKKEEPING_TABLE, [{"name": name, "applied_at": datetime.now(UTC)}])
        names.append(name)
    return names
