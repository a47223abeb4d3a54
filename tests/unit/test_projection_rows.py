"""The pure event-to-row mapping of the projections: personal data, idempotency, versions."""

from datetime import UTC, datetime, timedelta

from correlators.correlator import Correlator
from correlators.replay import replay
from correlators.routing import Inbound
from correlators.rules import CorrelationRules
from events.codec import encode
from events.derived import AcknowledgementRecorded, IncidentOpened
from events.inbound import CallReported, IncidentResolved, ScadaSignal
from projections.rows import Projector, keyed_hash
from topology.load import load_topology
from topology.samples import HEAT_CSV

KEY = b"test-key"
T0 = datetime(2026, 1, 15, 8, 0, tzinfo=UTC)
TOPOLOGY = load_topology(HEAT_CSV)


def call(
    n: int, minutes: int, caller: str | None = None, premise: str | None = None
) -> CallReported:
    return CallReported(
        event_id=f"c{n}",
        occurred_at=T0 + timedelta(minutes=minutes),
        utility="heat",
        premise_id=premise or f"P-HSUB1-B2-0{n}",
        caller=caller,
        symptom="no_heat",
        notes="Mrs Smith, flat 3, call after 5",
    )


def storm() -> list[Inbound]:
    return [
        call(1, 0, "+1 212 555 0101"),
        call(2, 5, "+1 212 555 0102"),
        call(3, 10),
        ScadaSignal(
            event_id="s1",
            occurred_at=T0 + timedelta(minutes=20),
            device_id="HSUB-1",
            signal="supply_temp_low",
        ),
        ScadaSignal(
            event_id="s2",
            occurred_at=T0 + timedelta(minutes=90),
            device_id="HSUB-1",
            signal="normal",
        ),
    ]


def test_a_call_keeps_its_phone_only_in_the_contacts_table() -> None:
    """The analytics row of a call holds a keyed hash; the number is only in call_contacts."""
    rows = Projector(TOPOLOGY, KEY).rows("calls", encode(call(1, 0, "+1 212 555 0101")))
    archived = rows["calls"][0]
    assert "+1 212 555 0101" not in str(archived) and "5550101" not in str(archived)
    assert archived["caller_hash"] and archived["has_notes"] == 1
    assert "Mrs Smith" not in str(archived)
    assert (archived["node_id"], archived["area"], archived["domain"]) == (
        "P-HSUB1-B2-01",
        "HSUB-1",
        "HS1",
    )
    assert rows["call_contacts"][0]["caller"] == "+1 212 555 0101"
    assert rows["call_contacts"][0]["caller_hash"] == archived["caller_hash"]


def test_the_reporter_hash_depends_on_the_key() -> None:
    """Without the key the hash cannot be recomputed from a guessed number."""
    assert keyed_hash(b"a", "caller:123") != keyed_hash(b"b", "caller:123")
    assert keyed_hash(b"a", "caller:123") == keyed_hash(b"a", "caller:123")


def test_the_same_events_give_the_same_rows() -> None:
    """Projecting a replay twice with fresh projectors gives identical rows (rebuild = live)."""
    derived = replay(Correlator(TOPOLOGY, CorrelationRules.load()), storm()).derived

    def project() -> list[dict[str, object]]:
        projector = Projector(TOPOLOGY, KEY)
        rows = []
        for event in derived:
            for table, new in projector.rows("incidents", encode(event)).items():
                rows += [{"table": table, **row} for row in new]
        return rows

    assert project() == project()


def test_incident_rows_follow_the_incident_with_rising_versions() -> None:
    """Opened, confirmed, restored: one incident row per change, versions 1, 2, 3..."""
    derived = replay(Correlator(TOPOLOGY, CorrelationRules.load()), storm()).derived
    projector = Projector(TOPOLOGY, KEY)
    incident_rows = []
    for event in derived:
        incident_rows += projector.rows("incidents", encode(event)).get("incidents", [])
    versions = [row["version"] for row in incident_rows]
    assert versions == list(range(1, len(versions) + 1))
    last = incident_rows[-1]
    assert last["state"] == "restored" and last["device_id"] == "HSUB-1"
    assert last["confirmed_at"] == T0 + timedelta(minutes=20)
    assert last["restored_at"] == T0 + timedelta(minutes=90)
    assert last["area"] == "HSUB-1"


def test_undecodable_messages_give_no_rows() -> None:
    """Garbage on a topic is not projected (it is on dead-letter already)."""
    projector = Projector(TOPOLOGY, KEY)
    assert projector.rows("calls", b"{nope") == {}
    assert projector.rows("incidents", b'{"type": "who_knows"}') == {}


def test_an_operator_action_in_an_inbound_file_gives_no_rows() -> None:
    """A rebuild from an inbound file skips a lead's action (it is on the incident stream)."""
    resolved = IncidentResolved(
        event_id="a1", occurred_at=T0, incident_id="INC-1", by="lead.tom", note="crew done"
    )
    assert Projector(TOPOLOGY, KEY).rows("calls", encode(resolved)) == {}  # as rebuild reads files


def test_the_incident_row_keeps_its_first_owner() -> None:
    """A second acknowledgement on the stream does not replace who acknowledged first, nor when."""
    derived = replay(Correlator(TOPOLOGY, CorrelationRules.load()), storm()).derived
    opened = next(e for e in derived if isinstance(e, IncidentOpened))
    projector = Projector(TOPOLOGY, KEY)
    projector.rows("incidents", encode(opened))

    def acknowledged(n: int, by: str) -> AcknowledgementRecorded:
        return AcknowledgementRecorded(
            event_id=f"ack-{n}",
            occurred_at=opened.occurred_at + timedelta(minutes=n),
            domain=opened.domain,
            incident_id=opened.incident_id,
            by=by,
        )

    first = projector.rows("incidents", encode(acknowledged(1, "lead.anna")))["incidents"][0]
    later = projector.rows("incidents", encode(acknowledged(2, "notification link")))["incidents"]
    assert first["acknowledged_by"] == later[0]["acknowledged_by"] == "lead.anna"
    assert later[0]["acknowledged_at"] == first["acknowledged_at"]
