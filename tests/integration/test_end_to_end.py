"""End to end through a real Tansu broker and a real faust worker, over real HTTP."""

import asyncio
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from events.derived import IncidentOpened
from streams.broker import EmbeddedBroker
from tests.integration.conftest import Worker, start_worker, wait_for

pytestmark = pytest.mark.integration

BUILDING = "B-FDR1-T1-F2-3"  # 212 West 133rd Street, premises -1..-4, on feeder FDR-1
NEIGHBOUR = "P-FDR1-T1-F2-B3-4"
FEEDER = "FDR-2"
UNDER_FEEDER = "P-FDR2-T3-F1-B2-1"


def now() -> str:
    return datetime.now(UTC).isoformat()


def call(premise: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "call_reported",
        "schema_version": 1,
        "event_id": f"call-{uuid.uuid4()}",
        "occurred_at": now(),
        "utility": "power",
        "premise_id": premise,
        "symptom": "no_power",
        **extra,
    }


def signal(device: str, name: str) -> dict[str, Any]:
    return {
        "type": "scada_signal",
        "schema_version": 1,
        "event_id": f"scada-{uuid.uuid4()}",
        "occurred_at": now(),
        "device_id": device,
        "signal": name,
        "quality": "good",
    }


async def write_then_read_dead_letters(
    broker: EmbeddedBroker,
    writes: Sequence[tuple[str, bytes, int | None]],
    done: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 60,
) -> list[dict[str, Any]]:
    """Write (topic, value, partition) records in order, then read dead-letter from its start
    until `done(letters)` holds or `timeout` s have passed; the letters read."""
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        for topic, value, partition in writes:
            await producer.send_and_wait(topic, value, partition=partition)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        "dead-letter", bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not done(found) and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            found += [json.loads(r.value) for records in batch.values() for r in records]
    finally:
        await consumer.stop()
    return found


def lookup(worker: Worker, premise: str) -> dict[str, Any]:
    status, body = worker.get(f"/v1/outages?premise={premise}")
    assert status == 200, body
    return body


def test_calls_from_several_flats_make_a_known_fault_for_the_neighbour(worker: Worker) -> None:
    """Three flats of one building calling over HTTP make the lookup say 'known fault' next door."""
    assert lookup(worker, NEIGHBOUR)["status"] == "no_known_fault"
    ids = []
    for n in (1, 2, 3):
        body = call(f"P-FDR1-T1-F2-B3-{n}", caller=f"+1 212 555 01{n:02}")
        status, answer = worker.post("/v1/calls", body)
        assert status == 202, answer
        assert answer["event_id"] == body["event_id"]
        ids.append(body["event_id"])

    # The incident and the calls attached to it are separate events: wait for all of them.
    answer = wait_for(
        lambda: (
            (a := lookup(worker, NEIGHBOUR))["status"] == "known_fault"
            and len(a["incident"]["call_ids"]) == len(ids)
            and a
        )
    )
    incident = answer["incident"]
    assert incident["device_id"] == BUILDING
    assert sorted(incident["call_ids"]) == sorted(ids)
    assert "known" in answer["sentence"]
    status, outcome = worker.get(f"/v1/calls/{ids[0]}")
    assert status == 200 and outcome["incident_id"] == incident["incident_id"]
    status, detail = worker.get(f"/v1/incidents/{incident['incident_id']}")
    assert status == 200
    assert detail["timeline"][0]["type"] == "incident_opened"


def test_scada_trip_confirms_before_any_call_and_closing_restores(worker: Worker) -> None:
    """A feeder breaker trip makes a confirmed incident covering its premises; closing restores."""
    assert lookup(worker, UNDER_FEEDER)["status"] == "no_known_fault"
    status, _ = worker.post("/v1/scada", signal(FEEDER, "breaker_open"))
    assert status == 202
    answer = wait_for(lambda: (a := lookup(worker, UNDER_FEEDER))["status"] == "known_fault" and a)
    incident = answer["incident"]
    assert (incident["device_id"], incident["state"]) == (FEEDER, "confirmed")
    assert incident["call_ids"] == []

    status, _ = worker.post("/v1/scada", signal(FEEDER, "breaker_closed"))
    assert status == 202
    wait_for(lambda: lookup(worker, UNDER_FEEDER)["status"] == "no_known_fault")
    status, detail = worker.get(f"/v1/incidents/{incident['incident_id']}")
    assert detail["state"] == "restored"


def test_bad_input_gets_clear_4xx_and_the_worker_keeps_going(worker: Worker) -> None:
    """Malformed JSON, unknown premise, unknown version: 4xx with the reason; work goes on."""
    status, body = worker.post("/v1/calls", raw=b'{"type": "call_reported",')
    assert status == 400 and "malformed JSON" in body["error"]

    status, body = worker.post("/v1/calls", call("P-NOWHERE-1"))
    assert status == 422 and "unknown premise 'P-NOWHERE-1'" in body["error"]

    status, body = worker.post("/v1/calls", {**call(NEIGHBOUR), "schema_version": 7})
    assert status == 400 and "unsupported schema_version 7" in body["error"]

    status, body = worker.post("/v1/scada", call(NEIGHBOUR))
    assert status == 400 and "scada_signal" in body["error"]

    status, body = worker.get("/v1/outages")
    assert status == 400

    # Still working: a fresh building fault on another feeder is still recognised.
    for n in (1, 2, 3):
        status, _ = worker.post("/v1/calls", call(f"P-FDR3-T4-F2-B1-{n}"))
        assert status == 202
    wait_for(lambda: lookup(worker, "P-FDR3-T4-F2-B1-4")["status"] == "known_fault")


def test_bad_messages_on_the_topic_go_to_dead_letter_with_the_reason(
    broker: EmbeddedBroker, worker: Worker
) -> None:
    """Garbage written straight to the calls topic lands on dead-letter with why; work goes on."""
    unknown = json.dumps(call("P-NOWHERE-2")).encode()
    writes = [("calls", b"not json at all", None), ("calls", unknown, None)]
    letters = asyncio.run(write_then_read_dead_letters(broker, writes, lambda f: len(f) >= 2))
    reasons = [letter["reason"] for letter in letters]
    assert any(r.startswith("malformed JSON") for r in reasons), reasons
    assert any("unknown premise 'P-NOWHERE-2'" in r for r in reasons), reasons
    assert worker.get("/health")[1]["counters"]["dead_letter"] >= 2
    status, _ = worker.post("/v1/calls", call(NEIGHBOUR))
    assert status == 202


def test_a_shift_lead_acknowledges_sets_cause_and_etr_and_resolves(worker: Worker) -> None:
    """Actions of logged-in leads land on the incident's timeline with who did them."""
    # On the heat network, which no other test here touches: nothing rolls up or merges.
    for n in (1, 2, 3):
        body = call(f"P-HSUB1-B2-0{n}", utility="heat", symptom="no_heat")
        assert worker.post("/v1/calls", body)[0] == 202
    found = wait_for(
        lambda: (a := lookup(worker, "P-HSUB1-B2-04"))["status"] == "known_fault" and a
    )
    incident = found["incident"]["incident_id"]
    base = f"/v1/incidents/{incident}"
    anna = worker.person("lead.anna", "shift_lead")
    bo = worker.person("lead.bo", "shift_lead")

    status, body = anna.request("POST", f"{base}/acknowledge", {"note": "crew sent"})
    assert status == 202 and body["incident_id"] == incident
    assert anna.request("POST", f"{base}/cause", {"cause": "cable fault"})[0] == 202
    etr = (datetime.now(UTC) + timedelta(days=1)).replace(hour=16, minute=0, second=0)
    assert anna.request("POST", f"{base}/etr", {"etr": etr.isoformat()})[0] == 202
    detail = wait_for(
        lambda: (
            (d := worker.get(base)[1])["acknowledged_by"] == "lead.anna"
            and d["cause"] == "cable fault"
            and d["etr"]
            and d
        )
    )
    summaries = [entry["summary"] for entry in detail["timeline"]]
    assert "acknowledged by lead.anna: crew sent" in summaries
    assert "cause set by lead.anna: cable fault" in summaries
    assert f"ETR set by lead.anna: {etr:%Y-%m-%d} 16:00 UTC" in summaries
    assert "cable fault" in lookup(worker, "P-HSUB1-B2-04")["sentence"]

    assert bo.request("POST", f"{base}/resolve", {})[0] == 202
    wait_for(lambda: lookup(worker, "P-HSUB1-B2-04")["status"] == "no_known_fault")
    detail = worker.get(base)[1]
    assert detail["resolved_by"] == "lead.bo"
    assert any("lead.bo" in entry["summary"] for entry in detail["timeline"])

    status, body = anna.request("POST", f"{base}/acknowledge", {})
    assert status == 409 and "restored" in body["error"]


def test_bad_shift_lead_actions_get_clear_4xx(worker: Worker) -> None:
    """Unknown incident or action 404; a `by` of one's own or a bad ETR 400 naming the field."""
    assert worker.post("/v1/incidents/INC-nope/acknowledge", {})[0] == 404
    for n in (1, 2, 3):  # heat, another substation than the test above
        body = call(f"P-HSUB3-B1-0{n}", utility="heat", symptom="no_heat")
        assert worker.post("/v1/calls", body)[0] == 202
    found = wait_for(
        lambda: (a := lookup(worker, "P-HSUB3-B1-04"))["status"] == "known_fault" and a
    )
    base = f"/v1/incidents/{found['incident']['incident_id']}"
    status, body = worker.post(f"{base}/shrug", {})
    assert status == 404 and "shrug" in body["error"]
    status, body = worker.post(f"{base}/acknowledge", {"by": "somebody else"})
    assert status == 400 and "by" in body["error"]
    status, body = worker.post(f"{base}/etr", {"etr": "soon"})
    assert status == 400 and "etr" in body["error"]
    status, body = worker.post(f"{base}/cause", {"cause": "x", "colour": "red"})
    assert status == 400 and "colour" in body["error"]


def test_an_action_right_behind_its_new_incident_is_routed_not_dead_lettered(
    broker: EmbeddedBroker, worker: Worker
) -> None:
    """An action written just after its incident reached the incident stream (as when another
    worker opened it a moment ago) is routed; one for an incident that is nowhere is
    dead-lettered with the reason."""
    fresh, nowhere = f"INC-fresh-{uuid.uuid4()}", f"INC-nowhere-{uuid.uuid4()}"
    opened = IncidentOpened(
        event_id=f"opened-{fresh}",
        occurred_at=datetime.now(UTC),
        domain="HS1",
        incident_id=fresh,
        device_id="P-HSUB2-B1-01",  # one flat no other test here calls from
        device_kind="premise",
        utility="heat",
        path=("HS1", "HSUB-2", "B-HSUB2-1", "P-HSUB2-B1-01"),
        phase="suspected",
        cause="unknown",
        customers_affected=1,
    )

    def acknowledge(incident: str) -> bytes:
        body = {
            "type": "incident_acknowledged",
            "schema_version": 1,
            "event_id": f"ack-{incident}",
            "occurred_at": now(),
            "incident_id": incident,
            "by": "lead.test",
        }
        return json.dumps(body).encode()

    writes = [
        ("incidents", opened.model_dump_json().encode(), None),
        # Both on one partition: handled in this order, so once the second is dead-lettered
        # the first has been decided.
        ("operator-actions", acknowledge(fresh), 0),
        ("operator-actions", acknowledge(nowhere), 0),
    ]

    def second_decided(found: list[dict[str, Any]]) -> bool:
        return any(nowhere in letter["reason"] for letter in found)

    letters = asyncio.run(write_then_read_dead_letters(broker, writes, second_decided))
    reasons = [letter["reason"] for letter in letters]
    assert f"unknown incident {nowhere!r}" in reasons
    assert not [r for r in reasons if fresh in r]
    wait_for(lambda: worker.get(f"/v1/incidents/{fresh}")[0] == 200)


# Last: it stops the module's worker.
def test_a_restarted_worker_still_knows_every_incident_and_its_state(
    broker: EmbeddedBroker, worker: Worker, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """After a restart the lookup still answers 'known fault', and correlation state resumes."""
    for n in (1, 2, 3):
        status, _ = worker.post("/v1/calls", call(f"P-FDR2-T1-F1-B1-{n}"))
        assert status == 202
    before = wait_for(
        lambda: (a := lookup(worker, "P-FDR2-T1-F1-B1-4"))["status"] == "known_fault" and a
    )
    worker.stop()

    restarted = start_worker(broker, tmp_path_factory.mktemp("restarted"))
    try:
        answer = lookup(restarted, "P-FDR2-T1-F1-B1-4")  # /ready waited for the book to catch up
        assert answer["status"] == "known_fault"
        assert answer["incident"]["incident_id"] == before["incident"]["incident_id"]
        # The correlation state survived too: one more flat joins the same incident.
        status, body = restarted.post("/v1/calls", call("P-FDR2-T1-F1-B1-4"))
        assert status == 202
        wait_for(
            lambda: (
                restarted.get(f"/v1/calls/{body['event_id']}")[1].get("incident_id")
                == before["incident"]["incident_id"]
            )
        )
    finally:
        restarted.stop()
