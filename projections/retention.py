"""Retention of caller data in the ClickHouse projections: delete what is past its time.

    call_contacts     phone numbers in clear (callbacks)     older than contact days
    calls             keyed caller hash, premise, tags       older than call days
    incident_events   the per-call rows (call_id set):       older than call days
                      keyed reporter hash, premise, tags

Callers' free-text notes are never stored here (`calls.has_notes` is a flag), nor addresses.
Rows are judged by `occurred_at`, the column every table is partitioned and reported by, so a
call, its contact row and its incident-stream rows leave together and a day's report is either
whole or gone.

Deletion is `ALTER TABLE ... DELETE WHERE`, a mutation, the only DELETE ClickHouse 18.16 has. On
18.16 it runs in the background (no `mutations_sync` setting there), so `enforce` polls
`system.mutations` until the table has none left to do; chDB runs it synchronously by default
and the poll finds nothing. A mutation applies to the parts that exist when it is created:
rows the worker inserts meanwhile are untouched, and an old row arriving late (a redelivery, a
rebuild) is deleted by the next run. A table with nothing to delete gets no mutation at all,
so running it again, or from cron every day, costs a count.
"""

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from projections.sql import render
from projections.store import Store, StoreUnavailable

DEFAULT_TIMEOUT = 600.0


class RetentionError(RuntimeError):
    """A deletion did not complete: its mutation failed or is still running at the timeout."""


@dataclass(frozen=True)
class Target:
    """One set of rows retention deletes: a table, which of its rows, and how long they stay."""

    table: str
    kind: str  # "contact" or "call": which retention period applies
    scope: str  # what is deleted, for people reading the output
    condition: str = ""  # SQL ANDed to the age condition (a fixed string, never user input)


TARGETS = (
    # Phone numbers first: the most sensitive rows go even if a later table fails.
    Target("call_contacts", "contact", "phone numbers"),
    Target("calls", "call", "call rows"),
    Target("incident_events", "call", "per-call rows", "call_id != ''"),
)


@dataclass
class TableRetention:
    table: str
    scope: str
    days: int
    cutoff: datetime  # rows with occurred_at before this go
    rows_before: int
    deleted: int  # in a dry run: the rows that would go
    rows_after: int | None = None  # counted after the deletion; None in a dry run


@dataclass
class RetentionResult:
    now: datetime
    dry_run: bool
    tables: list[TableRetention] = field(default_factory=list)

    def deleted(self, table: str) -> int:
        return sum(t.deleted for t in self.tables if t.table == table)

    def to_json(self) -> str:
        def jsonable(value: Any) -> Any:
            if isinstance(value, datetime):
                return value.isoformat()
            raise TypeError(f"not JSON: {type(value).__name__}")

        return json.dumps(asdict(self), default=jsonable, indent=2)

    def to_table(self) -> str:
        what = "would delete" if self.dry_run else "deleted"
        head = ["table", "what", "kept", "older than (UTC)", "rows before", what, "rows after"]
        cells = [
            [
                t.table,
                t.scope,
                f"{t.days} days",
                f"{t.cutoff:%Y-%m-%d %H:%M:%S}",
                str(t.rows_before),
                str(t.deleted),
                "" if t.rows_after is None else str(t.rows_after),
            ]
            for t in self.tables
        ]
        widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(head)]
        numeric = {4, 5, 6}

        def line(row: list[str]) -> str:
            parts = [
                c.rjust(w) if i in numeric else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ]
            return "  ".join(parts).rstrip()

        title = f"Retention {'dry run ' if self.dry_run else ''}at {self.now:%Y-%m-%d %H:%M:%S} UTC"
        lines = [title, line(head), *(line(row) for row in cells)]
        if self.dry_run:
            lines.append("dry run: nothing was deleted")
        return "\n".join(lines) + "\n"


def enforce(
    store: Store,
    now: datetime,
    contact_days: int,
    call_days: int,
    *,
    dry_run: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    poll: float = 0.2,
) -> RetentionResult:
    """Delete caller data older than its retention; return what each table had and lost.

    Raises ValueError on a period under one day, RetentionError when a deletion fails or does
    not finish within `timeout` seconds, StoreUnavailable when the store cannot be reached.
    """
    for name, days in (("contact_days", contact_days), ("call_days", call_days)):
        if days < 1:
            raise ValueError(f"{name} must be at least 1, not {days}")
    now = now.astimezone(UTC).replace(microsecond=0)  # DateTime has seconds
    # A phone number never outlives the call it belongs to, whatever the two settings say.
    periods = {"contact": min(contact_days, call_days), "call": call_days}
    result = RetentionResult(now=now, dry_run=dry_run)
    for target in TARGETS:
        days = periods[target.kind]
        cutoff = now - timedelta(days=days)
        expired = render("occurred_at < {cutoff}", cutoff=cutoff)
        if target.condition:
            expired += f" AND {target.condition}"
        entry = TableRetention(
            table=target.table,
            scope=target.scope,
            days=days,
            cutoff=cutoff,
            rows_before=_count(store, target.table),
            deleted=_count(store, target.table, expired),
        )
        result.tables.append(entry)
        if dry_run:
            continue
        if entry.deleted:  # no mutation when nothing matches: a rerun rewrites no part
            _delete(store, target.table, expired, timeout, poll)
        entry.rows_after = _count(store, target.table)
    return result


def _count(store: Store, table: str, where: str = "") -> int:
    # FINAL: rows as the reports see them, a redelivered duplicate counted once.
    sql_text = f"SELECT count() AS n FROM {table} FINAL" + (f" WHERE {where}" if where else "")
    return int(store.query(sql_text)[0]["n"])


def _delete(store: Store, table: str, where: str, timeout: float, poll: float) -> None:
    # A stuck earlier mutation blocks ours, and 18.16 has no KILL MUTATION: add none behind it,
    # so a daily cron run does not queue one more every day.
    wait_for_mutations(store, table, timeout, poll)
    try:
        store.command(f"ALTER TABLE {table} DELETE WHERE {where}")
    except StoreUnavailable:
        raise
    except Exception as error:  # chDB waits for the mutation and raises if it fails
        raise RetentionError(f"deleting from {table} failed: {error}") from error
    wait_for_mutations(store, table, timeout, poll)


def wait_for_mutations(
    store: Store,
    table: str,
    timeout: float,
    poll: float = 0.2,
) -> None:
    """Return once `table` has no unfinished mutation; RetentionError after `timeout` seconds.

    All of the table's mutations are waited for, not only ours: 18.16 does not say which one an
    ALTER created, and a part takes mutations in order, so ours is done only once those before
    it are.
    """
    pending_sql = render(
        "SELECT * FROM system.mutations "
        "WHERE database = currentDatabase() AND table = {table} AND is_done = 0",
        table=table,
    )
    deadline = time.monotonic() + timeout
    while True:
        pending = store.query(pending_sql)
        if not pending:
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(poll)
    # 18.16 has no latest_fail_reason column; chDB and newer servers say why it is stuck.
    reasons = sorted({str(row.get("latest_fail_reason") or "") for row in pending} - {""})
    raise RetentionError(
        f"deleting from {table}: {len(pending)} mutation(s) still not done after {timeout:g} s "
        f"(parts to do: {sum(int(row.get('parts_to_do') or 0) for row in pending)})"
        + (f"; last failure: {reasons[0]}" if reasons else "")
        + "; it goes on in the background (see system.mutations), run again later to check"
    )
