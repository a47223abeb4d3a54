"""Unit tests for SQL literals, placeholder rendering and migration file parsing."""

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from projections import migrate, sql

BERLIN_WINTER = timezone(timedelta(hours=1))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "NULL"),
        (True, "1"),
        (False, "0"),
        (0, "0"),
        (-42, "-42"),
        (2**64 - 1, "18446744073709551615"),
        (1.5, "1.5"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (float("-inf"), "-inf"),
        (Decimal("12.50"), "12.50"),
        ("", "''"),
        ("plain", "'plain'"),
        (date(2024, 2, 29), "toDate('2024-02-29')"),
        (datetime(2024, 1, 2, 3, 4, 5), "toDateTime('2024-01-02 03:04:05', 'UTC')"),
        (
            datetime(2024, 1, 2, 3, 4, 5, 999_999, tzinfo=UTC),
            "toDateTime('2024-01-02 03:04:05', 'UTC')",
        ),
        (
            datetime(2024, 1, 2, 3, 4, 5, tzinfo=BERLIN_WINTER),
            "toDateTime('2024-01-02 02:04:05', 'UTC')",
        ),
        ([], "[]"),
        (["a", "b"], "['a', 'b']"),
        ((1, None), "[1, NULL]"),
        ([["x"], []], "[['x'], []]"),
    ],
)
def test_literal_renders_each_type(value: object, expected: str) -> None:
    """Each supported Python type becomes the ClickHouse literal both backends parse."""
    assert sql.literal(value) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("it's", r"'it\'s'"),
        ("back\\slash", r"'back\\slash'"),
        ("\\'", r"'\\\''"),
        ("line\nbreak\r\ttab", r"'line\nbreak\r\ttab'"),
        ("nul\0byte", r"'nul\0byte'"),
        ("'; DROP TABLE calls; --", r"'\'; DROP TABLE calls; --'"),
        ("ünïcødé 電話", "'ünïcødé 電話'"),
        ("{name}", "'{name}'"),
    ],
)
def test_literal_escapes_hostile_strings(text: str, expected: str) -> None:
    """Quotes, backslashes and control characters are escaped; nothing closes the literal."""
    assert sql.literal(text) == expected


def test_literal_never_leaves_an_unescaped_quote() -> None:
    """Every quote inside a rendered literal follows an odd run of backslashes."""
    for text in ("'", "\\", "\\'", "''", "\\\\'", "a'\\'b", "'; DROP TABLE x; --"):
        inner = sql.literal(text)[1:-1]
        for index, char in enumerate(inner):
            if char == "'":
                run = len(inner[:index]) - len(inner[:index].rstrip("\\"))
                assert run % 2 == 1, (text, inner)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["a", "b'"], r"('a', 'b\'')"),
        ([1], "(1)"),
        ([], "(NULL)"),
        ((d for d in "xy"), "('x', 'y')"),
    ],
)
def test_one_of_renders_a_set_for_in(values: Any, expected: str) -> None:
    """one_of(...) renders `(a, b)` for IN (18.16 refuses an array there); empty is (NULL)."""
    assert sql.render("x IN {ids}", ids=sql.one_of(values)) == f"x IN {expected}"


def test_literal_refuses_unknown_types() -> None:
    """A value without a ClickHouse literal raises TypeError instead of being str()-ed."""
    with pytest.raises(TypeError, match="bytes"):
        sql.literal(b"raw")
    with pytest.raises(TypeError):
        sql.literal({"a": 1})


def test_render_substitutes_placeholders_with_literals() -> None:
    """`{name}` becomes the literal of its parameter, as often as it appears."""
    rendered = sql.render(
        "SELECT * FROM calls WHERE area = {area} AND occurred_at >= {since} OR area = {area}",
        area="it's",
        since=datetime(2024, 1, 1, tzinfo=UTC),
    )
    assert rendered == (
        r"SELECT * FROM calls WHERE area = 'it\'s' AND occurred_at >= "
        "toDateTime('2024-01-01 00:00:00', 'UTC') OR area = 'it\\'s'"
    )


def test_render_leaves_other_braces_alone() -> None:
    """Braces that are not `{identifier}` (JSON, `{x:Type}`, `{{`, `{1}`) pass through unchanged."""
    text = "SELECT '{\"a\": 1}', {x:UInt8}, '{{y}}', '{1}', '{ z }' WHERE a = {a}"
    assert sql.render(text, a=1) == text.replace("{a}", "1")


def test_render_does_not_rescan_substituted_values() -> None:
    """A parameter value that looks like a placeholder is not substituted again."""
    assert sql.render("{a} {b}", a="{b}", b=2) == "'{b}' 2"


def test_render_missing_parameter_names_it() -> None:
    """A placeholder without a value raises KeyError naming the placeholder."""
    with pytest.raises(KeyError, match="since"):
        sql.render("SELECT {area}, {since}", area="x")


def test_render_ignores_unused_parameters() -> None:
    """Extra parameters are allowed so one dict can serve several queries."""
    assert sql.render("SELECT 1", unused="x") == "SELECT 1"


@pytest.mark.parametrize("name", ["calls", "_tmp", "t1"])
def test_identifier_quotes_plain_names(name: str) -> None:
    """A plain identifier is back-quoted."""
    assert sql.identifier(name) == f"`{name}`"


@pytest.mark.parametrize("name", ["", "1a", "a b", "a`b", "calls; DROP TABLE x", "a.b"])
def test_identifier_refuses_anything_else(name: str) -> None:
    """Names that would need escaping are refused, not escaped."""
    with pytest.raises(ValueError):
        sql.identifier(name)


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO calls VALUES ('a')",
        "insert into calls (a, b) values (1, 2)",
        "  INSERT INTO outage.calls (a) FORMAT JSONEachRow\n{}",
    ],
)
def test_check_command_refuses_inline_inserts(statement: str) -> None:
    """INSERT with inline data is refused (clickhouse-driver hangs on it against 18.16)."""
    with pytest.raises(ValueError, match=r"Store\.insert"):
        sql.check_command(statement)


@pytest.mark.parametrize(
    "statement",
    ["INSERT INTO calls SELECT * FROM old", "INSERT INTO calls (a) SELECT 1", "TRUNCATE TABLE x"],
)
def test_check_command_allows_other_statements(statement: str) -> None:
    """INSERT ... SELECT and DDL pass."""
    sql.check_command(statement)


def test_check_query_refuses_a_format_clause() -> None:
    """A trailing FORMAT clause is refused; a column called format is not."""
    with pytest.raises(ValueError, match="FORMAT"):
        sql.check_query("SELECT 1 FORMAT JSON")
    sql.check_query("SELECT format FROM t WHERE format = 'x'")


def test_split_statements_drops_comments_and_splits_at_line_end_semicolons() -> None:
    """`--` lines vanish (with their semicolons); `;` inside a line does not split."""
    text = (
        "-- header; not a statement\n"
        "CREATE TABLE a (x String) ENGINE = Memory;\n"
        "\n"
        "  -- indented comment;\n"
        "CREATE TABLE b (\n"
        "    y String DEFAULT 'a;b'\n"
        ") ENGINE = Memory;\n"
        "SELECT 1\n"
    )
    assert migrate.split_statements(text) == [
        "CREATE TABLE a (x String) ENGINE = Memory",
        "CREATE TABLE b (\n    y String DEFAULT 'a;b'\n) ENGINE = Memory",
        "SELECT 1",
    ]


def test_shipped_migrations_parse_into_create_statements() -> None:
    """0001 parses into one CREATE TABLE per table, no comments left."""
    found = migrate.migrations()
    assert found[0][0] == "0001_initial"
    statements = found[0][1]
    assert statements
    assert all(statement.startswith("CREATE TABLE IF NOT EXISTS") for statement in statements)
    assert not any("--" in statement for statement in statements)


def test_pending_returns_unapplied_migrations_in_number_order(tmp_path: Path) -> None:
    """Files run by number; applied names are skipped."""
    (tmp_path / "0002_second.sql").write_text("SELECT 2;\n")
    (tmp_path / "0001_first.sql").write_text("SELECT 1;\n")
    (tmp_path / "0010_tenth.sql").write_text("SELECT 10;\n")
    assert [name for name, _ in migrate.pending(set(), tmp_path)] == [
        "0001_first",
        "0002_second",
        "0010_tenth",
    ]
    assert migrate.pending({"0001_first", "0010_tenth"}, tmp_path) == [
        ("0002_second", ["SELECT 2"])
    ]


@pytest.mark.parametrize("names", [["1_bad.sql"], ["0001_a.sql", "0001_b.sql"]])
def test_migrations_refuse_ambiguous_files(tmp_path: Path, names: list[str]) -> None:
    """A badly named file or a duplicated number is an error, not a silent reorder."""
    for name in names:
        (tmp_path / name).write_text("SELECT 1;\n")
    with pytest.raises(ValueError):
        migrate.migrations(tmp_path)
