"""The projection sink: batches of messages become rows in the store, exactly once in results.

Idempotent by construction (rows come from events; the tables collapse equal keys), so the
only rule is: never acknowledge a batch before it is written. `write` retries with backoff
until the store takes the batch, however long the store is down; the worker's other agents
keep correlating meanwhile. All store calls run on one thread: chDB sessions are bound to it.
"""

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import structlog

from projections.rows import IncidentRow, Projector, Rows
from projections.sql import render
from projections.store import Store, StoreUnavailable

log = structlog.get_logger("outage.sink")

# Tables in the order a batch is written: the archive first, current state last, so a
# reader never sees an incident row whose events are not yet in the archive.
TABLE_ORDER = (
    "calls",
    "call_contacts",
    "scada_signals",
    "planned_works",
    "incident_events",
    "alerts",
    "incidents",
)


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    value: bytes


@dataclass
class Sink:
    open_store: Callable[[], Store]  # called on the store thread, again after a failure
    projector: Projector
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    rows_written: int = 0
    failures: int = 0
    last_error: str | None = None
    flushed: dict[tuple[str, int], int] = field(default_factory=dict)  # last offset written
    flushed_at_ms: int = 0  # broker timestamp of the newest message written
    _store: Store | None = None
    _executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="store")
    )

    def __post_init__(self) -> None:
        self.projector.load_incident = self._load_incident

    @property
    def store(self) -> Store:
        """The open, migrated store (on the store thread only)."""
        if self._store is None:
            try:
                store = self.open_store()
            except StoreUnavailable:
                raise
            except Exception as error:  # e.g. chDB: the directory is held by another process
                raise StoreUnavailable(f"cannot open the store: {error}") from error
            applied = store.migrate()
            if applied:
                log.info("store.migrated", applied=applied)
            self._store = store
        return self._store

    async def run(self, work: Callable[[Store], Any]) -> Any:
        """Run `work(store)` on the store thread (reports, lookups from the HTTP API)."""
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, lambda: work(self.store)
        )

    def run_now(self, work: Callable[[Store], Any]) -> Any:
        return self._executor.submit(lambda: work(self.store)).result()

    async def write(self, messages: Sequence[Message]) -> None:
        """Write the batch; return only once it is in the store (retrying with backoff)."""
        if not messages:
            return
        delay = self.backoff_initial
        while True:
            try:
                written = await asyncio.get_running_loop().run_in_executor(
                    self._executor, self._write_now, messages
                )
                break
            except Exception as error:  # the store is down or refused: wait, then try again
                self._drop_store()
                self.failures += 1
                self.last_error = f"{type(error).__name__}: {error}"
                log.warning("sink.retrying", error=self.last_error, in_seconds=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max)
        if self.last_error:
            log.info("sink.recovered", after_failures=self.failures)
            self.last_error = None
        self.rows_written += written
        for message in messages:
            key = (message.topic, message.partition)
            self.flushed[key] = max(self.flushed.get(key, -1), message.offset)
            self.flushed_at_ms = max(self.flushed_at_ms, message.timestamp_ms)

    def write_now(self, messages: Sequence[Message]) -> int:
        """The same, synchronously and without retries (rebuild and tests)."""
        return self._executor.submit(self._write_now, messages).result()

    def _drop_store(self) -> None:
        def drop() -> None:
            if self._store is not None:
                # Closing a broken connection may fail too; it is gone either way.
                with contextlib.suppress(Exception):
                    self._store.close()
                self._store = None

        self._executor.submit(drop).result()

    def _write_now(self, messages: Sequence[Message]) -> int:
        rows: Rows = {}
        for message in messages:
            for table, new in self.projector.rows(message.topic, message.value).items():
                rows.setdefault(table, []).extend(new)
        if "incidents" in rows:  # only the newest row of each incident in a batch matters
            newest: dict[str, dict[str, Any]] = {}
            for row in rows["incidents"]:
                newest[row["incident_id"]] = row
            rows["incidents"] = list(newest.values())
        count = 0
        for table in TABLE_ORDER:
            if rows.get(table):
                self.store.insert(table, rows[table])
                count += len(rows[table])
        return count

    def _load_incident(self, incident_id: str) -> IncidentRow | None:
        found = self.store.query(
            render("SELECT * FROM incidents FINAL WHERE incident_id = {id}", id=incident_id)
        )
        return IncidentRow.model_validate(found[0]) if found else None

    def lag(self, ends: dict[tuple[str, int], int]) -> dict[str, Any]:
        """Events behind the partition ends given, and how old the newest written one is."""
        behind = sum(max(end - 1 - self.flushed.get(key, -1), 0) for key, end in ends.items())
        seconds = 0.0
        if behind and self.flushed_at_ms:
            seconds = max(time.time() - self.flushed_at_ms / 1000, 0.0)
        return {
            "events_behind": behind,
            "seconds_behind": round(seconds, 3),
            "rows_written": self.rows_written,
            "store_failures": self.failures,
            "store_error": self.last_error,
        }

    def close(self) -> None:
        self._drop_store()
        self._executor.shutdown()
