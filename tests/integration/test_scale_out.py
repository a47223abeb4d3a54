"""Several workers, a worker killed mid-storm, a broker restarted mid-storm: the same incidents
as the offline replay of the same storm.

A seeded storm from the simulator on a generated network of four substations (four correlation
domains, on partitions of both workers) goes in over both workers' HTTP APIs, paced: event time
runs `SPEED` times faster than the wall clock. Every event keeps its storm time, and ticks move
a domain's time on by the wall time since its last event only, so the live service sees the
storm's times, not the test's.

Two front ends and separate topics for calls and SCADA deliver a domain's events slightly out
of order, and a failover delays a whole partition for seconds: the workers run with a lateness
bound (`RULES`) covering that, as the correlator offers for it; the replay uses the same rules.
When every storm event has reached `correlate`, each substation sends a reading three days on:
time passes in every domain, holding back nothing and firing every timer the storm left.

What the workers decided is read from the `incidents` topic and folded into an `IncidentBook`;
it must equal `correlators.replay` over the same events: the same incident ids, devices, states
and attached calls, the same outcome for every call. Alerts are read from `notifications`: one
delivery per key, for exactly the alerts the replay raises.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import pytest

from bench.common import storm_events, synthetic_rows
from correlators.correlator import Correlator
from correlators.replay import replay
from correlators.rules import CorrelationRules
from events.codec import decode_derived
from events.derived import AlertRaised
from events.inbound import ScadaSignal
from projections.incidents import IncidentBook
from simulation.storm import Storm
from streams.broker import EmbeddedBroker, free_port
from streams.follow import TopicFollower
from streams.s3server import LocalS3
from tests.integration.conftest import Worker, start_worker, wait_for
from topology.importers.write import write_topology_csv
from topology.load import topology_from_rows
from topology.model import Node, Topology

pytestmark = pytest.mark.integration

PARTITIONS = 4
HASH_KEY = "scale-out-test-hash-key"  # both workers hash reporters alike
SPEED = 1000.0  # event time over wall time while the storm is sent: 6.5 hours in 23 s
# Out of order by up to a failover (about 5 s, 80 minutes of storm) still lands in place; the
# storm began three days and an hour ago (below), so ids are remembered (and live events
# taken) four days back.
RULES = "lateness_seconds = 10800\ndedupe_hours = 96\n"
# Four substations of one feeder each: four domains, on partitions 3, 0, 1 and 1 of four.
ROWS = synthetic_rows(1540, feeders_per_substation=1)
# Past, so that the heartbeats three days on (below) are not ahead of the service's clock.
STARTED = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=3, hours=1)
STORM = Storm(
    seed=7, faults=14, noise_calls=20, telemetered_faults=3, call_share=0.3, start=STARTED
)


@dataclass(frozen=True)
class Scenario:
    network: Path
    rules: Path
    storm: list[Any]
    heartbeats: list[ScadaSignal]
    expected: IncidentBook
    alerts: set[str]  # ids of the alerts the replay raises

    @property
    def calls(self) -> set[str]:
        return {e.event_id for e in self.storm if e.type == "call_reported"}


def heartbeats(topology: Topology, storm: Storm) -> list[ScadaSignal]:
    """Each substation's next reading (invalid: it says nothing of the network), 3 days on."""
    at = storm.start + timedelta(days=3)
    return [
        ScadaSignal(
            event_id=f"heartbeat-{root}",
            occurred_at=at,
            device_id=root,
            signal="normal",
            quality="invalid",
        )
        for root in sorted(topology.roots())
    ]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    """The storm, the files the workers load, and what the offline replay makes of it."""
    folder = tmp_path_factory.mktemp("scenario")
    topology = topology_from_rows(ROWS)
    network, rules = folder / "network.csv", folder / "rules.toml"
    write_topology_csv([Node(**row) for row in ROWS], network)
    rules.write_text(RULES)
    storm = storm_events(topology, STORM, resolve=False)
    beats = heartbeats(topology, STORM)
    correlator = Correlator(topology, CorrelationRules.load(rules), reporter_key=HASH_KEY.encode())
    result = replay(correlator, storm + beats)
    alerts = {d.event_id for d in result.derived if isinstance(d, AlertRaised)}
    assert len(topology.roots()) == 4 and len(result.book.incidents) >= 5 and alerts
    return Scenario(network, rules, storm, beats, result.book, alerts)


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    """A broker per test: topics and consumer groups start empty."""
    with EmbeddedBroker() as running:
        yield running


class Reachable(Protocol):
    """A broker's address: an EmbeddedBroker here, or the one a whole service runs itself."""

    @property
    def bootstrap(self) -> str: ...


@dataclass(frozen=True)
class Address:
    bootstrap: str


def start(broker: EmbeddedBroker | None, workdir: Path, scenario: Scenario, **env: str) -> Worker:
    workdir.mkdir(parents=True, exist_ok=True)
    return start_worker(
        broker,
        workdir,
        **env,
        OUTAGE_TOPOLOGY=json.dumps([str(scenario.network)]),
        OUTAGE_RULES=str(scenario.rules),
        OUTAGE_PARTITIONS=str(PARTITIONS),
        OUTAGE_PROJECTIONS="false",  # chDB is one directory per process
        OUTAGE_HASH_KEY=HASH_KEY,
        OUTAGE_INGEST_RATE="100000",
        OUTAGE_INGEST_BURST="100000",
    )


def ready(worker: Worker) -> bool:
    return worker.get("/ready")[0] == 200


def kill(worker: Worker) -> None:
    os.kill(worker.process.pid, signal.SIGKILL)
    worker.process.wait()


class Pacer:
    """Holds each event back until its storm time, scaled by SPEED, has come on the wall clock."""

    def __init__(self, events: Sequence[Any]) -> None:
        self.origin = min(e.occurred_at for e in events)
        self.started = time.monotonic()
        self.lock = threading.Lock()

    def wait(self, event: Any) -> None:
        due = self.started + (event.occurred_at - self.origin).total_seconds() / SPEED
        time.sleep(max(0.0, due - time.monotonic()))

    def resume_at(self, event: Any) -> None:
        """After a pause: `event` is due now, the ones after it as far apart as before."""
        with self.lock:
            self.started = time.monotonic() - (event.occurred_at - self.origin).total_seconds() / (
                SPEED
            )


def post(worker: Worker, event: Any) -> None:
    path = "/v1/calls" if event.type == "call_reported" else "/v1/scada"
    status, body = worker.post(path, json.loads(event.model_dump_json()))
    assert status == 202, (event.event_id, status, body)


def post_paced(workers: Sequence[Worker], events: Sequence[Any], pacer: Pacer) -> None:
    """The events in storm order over the workers' APIs, one concurrent sender per worker."""

    def send(share: Sequence[Any], worker: Worker) -> None:
        for event in share:
            pacer.wait(event)
            post(worker, event)

    if not events:
        return
    pacer.resume_at(events[0])
    with ThreadPoolExecutor(len(workers)) as pool:
        shares = [events[n :: len(workers)] for n in range(len(workers))]
        for done in [pool.submit(send, s, w) for s, w in zip(shares, workers, strict=True)]:
            done.result()


async def read_topic(
    bootstrap: str, topic: str, done: Callable[[list[Any]], bool], quiet: float = 0.0
) -> list[Any]:
    """Every record of `topic`, read until `done(records)` holds and nothing came for `quiet` s."""
    follower = TopicFollower(bootstrap, topic, PARTITIONS)
    await follower.start()
    records: list[Any] = []
    try:
        last = time.monotonic()
        deadline = last + 120
        while time.monotonic() < deadline:
            batch = await follower.poll(timeout_ms=200)
            if batch:
                records += batch
                last = time.monotonic()
            elif time.monotonic() - last >= quiet and done(records):
                return records
        raise AssertionError(f"{topic}: not done after 120 s ({len(records)} records)")
    finally:
        await follower.stop()


def routed_ids(records: list[Any]) -> set[str]:
    found = set()
    for record in records:
        body = json.loads(record.value)
        if body.get("type") == "routed":
            found.add(body["event"]["event_id"])
    return found


def finish(broker: Reachable, worker: Worker, scenario: Scenario) -> None:
    """Once the whole storm has reached the correlators, three days pass in every domain."""
    wanted = {e.event_id for e in scenario.storm}
    asyncio.run(read_topic(broker.bootstrap, "correlate", lambda rs: wanted <= routed_ids(rs)))
    for beat in scenario.heartbeats:
        post(worker, beat)


def live_book(broker: Reachable, scenario: Scenario) -> IncidentBook:
    """The incident stream as the workers wrote it, once every call has an outcome."""

    def fold(records: list[Any]) -> IncidentBook:
        book = IncidentBook()
        book.apply_all(decode_derived(r.value) for r in records)
        return book

    def complete(records: list[Any]) -> bool:
        return scenario.calls <= fold(records).call_outcomes.keys()

    return fold(asyncio.run(read_topic(broker.bootstrap, "incidents", complete, quiet=3.0)))


def summary(book: IncidentBook) -> dict[str, Any]:
    return {
        v.incident_id: (v.device_id, v.state, sorted(v.call_ids), v.merged_into)
        for v in book.incidents.values()
    }


def assert_same_as_replay(broker: Reachable, scenario: Scenario) -> None:
    book = live_book(broker, scenario)
    assert summary(book) == summary(scenario.expected)
    assert book.call_outcomes == scenario.expected.call_outcomes

    def delivered(records: list[Any]) -> Counter[tuple[str, str]]:
        bodies = (json.loads(r.value) for r in records)
        return Counter((n["key"], n["channel"]) for n in bodies if n["status"] == "delivered")

    def all_alerts(records: list[Any]) -> bool:
        return {key.rsplit("/", 1)[0] for key, _ in delivered(records)} >= scenario.alerts

    notifications = asyncio.run(
        read_topic(broker.bootstrap, "notifications", all_alerts, quiet=2.0)
    )
    counts = delivered(notifications)
    assert {key.rsplit("/", 1)[0] for key, _ in counts} == scenario.alerts
    assert [k for k, n in counts.items() if n > 1] == []


def test_two_workers_make_the_incidents_the_replay_makes(
    broker: EmbeddedBroker, scenario: Scenario, tmp_path: Path
) -> None:
    """A storm split over two workers' APIs: same incidents, calls and alerts as the replay."""
    first = start(broker, tmp_path / "a", scenario)
    second = start(broker, tmp_path / "b", scenario)
    try:
        post_paced([first, second], scenario.storm, Pacer(scenario.storm))
        finish(broker, first, scenario)
        assert_same_as_replay(broker, scenario)
        # Each worker answers from the whole incident stream: the same incidents on both.
        assert first.get("/v1/incidents")[1] == second.get("/v1/incidents")[1]
    finally:
        second.stop()
        first.stop()


def test_a_worker_killed_mid_storm_and_started_again_loses_nothing(
    broker: EmbeddedBroker, scenario: Scenario, tmp_path: Path
) -> None:
    """SIGKILL one worker mid-storm, the other takes over, it comes back: the replay's result."""
    first = start(broker, tmp_path / "a", scenario)
    second = start(broker, tmp_path / "b", scenario)
    storm, pacer = scenario.storm, Pacer(scenario.storm)
    third, two_thirds = len(storm) // 3, 2 * len(storm) // 3
    try:
        post_paced([first, second], storm[:third], pacer)
        kill(second)  # with work in flight: accepted, routed, half correlated
        post_paced([first], storm[third:two_thirds], pacer)
        second = start(broker, tmp_path / "b", scenario)
        post_paced([first, second], storm[two_thirds:], pacer)
        finish(broker, second, scenario)
        assert_same_as_replay(broker, scenario)
    finally:
        second.stop()
        first.stop()


@pytest.fixture
def durable_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """Tansu on s3:// over a local s3rver: what it accepted survives its restart."""
    with LocalS3(tmp_path / "s3") as s3:
        broker = EmbeddedBroker(port=free_port(), storage=s3.storage, extra_env=s3.tansu_env())
        with broker:
            yield broker


def test_a_durable_broker_restarted_mid_storm_loses_nothing(
    durable_broker: EmbeddedBroker, scenario: Scenario, tmp_path: Path
) -> None:
    """Stop and start the broker (s3:// storage) mid-storm: the replay's result all the same."""
    broker = durable_broker
    first = start(broker, tmp_path / "a", scenario)
    second = start(broker, tmp_path / "b", scenario)
    storm, pacer = scenario.storm, Pacer(scenario.storm)
    half = len(storm) // 2
    try:
        post_paced([first, second], storm[:half], pacer)
        broker.stop()  # with work in flight, as in phase one
        broker.start()  # same port, same bucket
        for worker in (first, second):
            wait_for(partial(ready, worker), timeout=60)
        post_paced([first, second], storm[half:], pacer)
        finish(broker, first, scenario)
        assert_same_as_replay(broker, scenario)
    finally:
        second.stop()
        first.stop()


def test_the_whole_service_in_durable_mode_stopped_and_started_mid_storm_loses_nothing(
    scenario: Scenario, tmp_path: Path
) -> None:
    """`outage run` on its embedded durable broker (OUTAGE_BROKER_STORAGE=durable), stopped
    with SIGTERM mid-storm, broker and storage with it, and started again: the replay's result."""
    port = free_port()

    def whole_service() -> Worker:
        return start(
            None,
            tmp_path / "service",
            scenario,
            OUTAGE_BROKER_STORAGE="durable",
            OUTAGE_BROKER_PORT=str(port),
        )

    service = whole_service()
    broker = Address(f"127.0.0.1:{port}")
    storm, pacer = scenario.storm, Pacer(scenario.storm)
    half = len(storm) // 2
    try:
        post_paced([service], storm[:half], pacer)
        service.stop()  # everything accepted so far must be in DATA_DIR/broker
        service = whole_service()
        post_paced([service], storm[half:], pacer)
        finish(broker, service, scenario)
        assert_same_as_replay(broker, scenario)
    finally:
        service.stop()
