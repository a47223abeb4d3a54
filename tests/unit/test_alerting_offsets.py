"""Unit tests for the alert feed's offsets: nothing committed past an alert still waiting."""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka import TopicPartition

from events.derived import IncidentOpened, IncidentsMerged
from projections.incidents import IncidentBook
from streams.alert_feed import Holds, survivor_in

P0, P1 = TopicPartition("alerts", 0), TopicPartition("alerts", 1)
T0 = datetime(2024, 5, 6, 10, 0, tzinfo=UTC)


def test_a_waiting_alert_holds_its_partition_back() -> None:
    """The commit stops at the first alert still in a group; other partitions move on."""
    holds = Holds()
    holds.consumed(P0, 0, None)
    holds.consumed(P0, 1, "a1")
    holds.consumed(P0, 2, "a2")
    holds.consumed(P1, 7, None)
    assert holds.to_commit() == {P0: 1, P1: 8}
    holds.committed_to(holds.to_commit())
    assert holds.to_commit() == {}
    holds.release({"a2"})  # a1's notification is recorded, a2 still waits
    assert holds.to_commit() == {P0: 2}
    holds.committed_to({P0: 2})
    holds.release(set())
    assert holds.to_commit() == {P0: 3}


def test_a_revoked_partition_gives_back_its_waiting_alerts() -> None:
    """Partitions moved to another worker: their held alert ids are returned and forgotten."""
    holds = Holds()
    holds.consumed(P0, 4, "a4")
    holds.consumed(P1, 0, "b0")
    assert holds.revoke([P0]) == {"a4"}
    assert holds.to_commit() == {P1: 0}


def test_survivor_in_follows_merges_of_merges() -> None:
    """The book's `merged_into` links are followed to the incident that still stands."""
    book = IncidentBook()
    assert survivor_in(book, "unknown") == "unknown"

    def opened(incident: str) -> IncidentOpened:
        return IncidentOpened(
            event_id=f"{incident}/opened",
            occurred_at=T0,
            domain="HS",
            incident_id=incident,
            device_id=incident,
            device_kind="building",
            utility="heat",
            path=("HS", incident),
            phase="suspected",
            cause="unknown",
            customers_affected=1,
        )

    def merged(survivor: str, *ids: str) -> IncidentsMerged:
        return IncidentsMerged(
            event_id=f"{survivor}/merged/{ids}",
            occurred_at=T0,
            domain="HS",
            incident_id=survivor,
            merged_ids=ids,
        )

    book.apply_all([opened("A"), opened("B"), opened("C"), merged("B", "C"), merged("A", "B")])
    assert [survivor_in(book, i) for i in "ABC"] == ["A", "A", "A"]
