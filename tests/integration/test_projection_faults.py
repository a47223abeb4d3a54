"""A real worker projecting into a real ClickHouse server that goes away and comes back."""

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from correlators.rules import CorrelationRules
from projections.backends import open_store
from projections.reports import daily, handover
from streams.broker import EmbeddedBroker
from streams.follow import TopicFollower
from tests.integration.conftest import ROOT, Worker, start_worker, wait_for

pytestmark = pytest.mark.integration


def call(premise: str) -> dict[str, Any]:
    return {
        "type": "call_reported",
        "schema_version": 1,
        "event_id": f"call-{uuid.uuid4()}",
        "occurred_at": datetime.now(UTC).isoformat(),
        "utility": "power",
        "premise_id": premise,
        "caller": "+1 212 555 0199",
        "symptom": "no_power",
    }


def incident_stream_ids(bootstrap: str) -> set[str]:
    """Every event id on the incidents topic, read from the beginning."""

    async def read() -> set[str]:
        follower = TopicFollower(bootstrap, "incidents", partitions=4)
        await follower.start()
        try:
            ids: set[str] = set()
            while not await follower.caught_up():
                ids |= {json.loads(r.value)["event_id"] for r in await follower.poll(500)}
            return ids
        finally:
            await follower.stop()

    return asyncio.run(read())


def test_store_outage_loses_nothing_and_duplicates_nothing(
    broker: EmbeddedBroker, clickhouse_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """ClickHouse stops while calls flow: correlation goes on; afterwards every event is in once."""
    url = f"clickhouse://{clickhouse_server.host}:{clickhouse_server.port}/fault_{uuid.uuid4().hex[:8]}"
    worker: Worker = start_worker(
        broker,
        tmp_path_factory.mktemp("fault"),
        OUTAGE_CLICKHOUSE_URL=url,
        OUTAGE_SINK_FLUSH_SECONDS="0.2",
    )
    store = open_store(url, tmp_path_factory.mktemp("unused"))
    try:
        posted = []
        for n in (1, 2, 3):
            body = call(f"P-FDR1-T2-F1-B1-{n}")
            assert worker.post("/v1/calls", body)[0] == 202
            posted.append(body["event_id"])
        wait_for(lambda: worker.get("/v1/projections/lag")[1]["rows_written"] > 0)
        wait_for(lambda: len(store.query("SELECT event_id FROM calls FINAL")) == 3)

        clickhouse_server.stop()
        for n in (1, 2, 3):
            body = call(f"P-FDR2-T2-F1-B1-{n}")
            assert worker.post("/v1/calls", body)[0] == 202
            posted.append(body["event_id"])
        # Correlation does not wait for the store.
        wait_for(
            lambda: (
                worker.get("/v1/outages?premise=P-FDR2-T2-F1-B1-4")[1]["status"] == "known_fault"
            )
        )
        lag = wait_for(lambda: (lag := worker.get("/v1/projections/lag")[1])["store_error"] and lag)
        assert lag["events_behind"] > 0

        clickhouse_server.start()
        wait_for(lambda: worker.get("/v1/projections/lag")[1]["events_behind"] == 0, timeout=90)
        calls = store.query("SELECT event_id, count() AS n FROM calls FINAL GROUP BY event_id")
        assert sorted(r["event_id"] for r in calls) == sorted(posted)
        assert all(r["n"] == 1 for r in calls)
        archived = store.query("SELECT event_id FROM incident_events FINAL")
        ids = [r["event_id"] for r in archived]
        assert len(ids) == len(set(ids))
        assert set(ids) == incident_stream_ids(broker.bootstrap)
    finally:
        store.close()
        worker.stop()


def test_rebuild_from_the_broker_matches_the_live_projection(
    broker: EmbeddedBroker, clickhouse_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`outage projections rebuild` into empty tables gives the live projection's reports."""
    base = f"clickhouse://{clickhouse_server.host}:{clickhouse_server.port}"
    live_url, rebuilt_url = (
        f"{base}/live_{uuid.uuid4().hex[:8]}",
        f"{base}/re_{uuid.uuid4().hex[:8]}",
    )
    workdir = tmp_path_factory.mktemp("live")
    worker = start_worker(
        broker,
        workdir,
        OUTAGE_CLICKHOUSE_URL=live_url,
        OUTAGE_SINK_FLUSH_SECONDS="0.2",
        OUTAGE_HASH_KEY="same-key",
        OUTAGE_APP_ID=f"live-{uuid.uuid4().hex[:6]}",
    )
    try:
        for n in (1, 2, 3):
            assert worker.post("/v1/calls", call(f"P-FDR3-T1-F2-B2-{n}"))[0] == 202
        signal = {
            "type": "scada_signal",
            "schema_version": 1,
            "event_id": f"s-{uuid.uuid4()}",
            "occurred_at": datetime.now(UTC).isoformat(),
            "device_id": "FDR-3",
            "signal": "breaker_open",
            "quality": "good",
        }
        assert worker.post("/v1/scada", signal)[0] == 202
        wait_for(
            lambda: (
                worker.get("/v1/outages?premise=P-FDR3-T1-F2-B2-4")[1]["incident"]
                and worker.get("/v1/outages?premise=P-FDR3-T1-F2-B2-4")[1]["incident"]["state"]
                == "confirmed"
            )
        )
        wait_for(
            lambda: (
                (lag := worker.get("/v1/projections/lag")[1])["rows_written"] > 0
                and lag["events_behind"] == 0
            )
        )
    finally:
        worker.stop()

    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "projections", "rebuild"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "OUTAGE_BROKER": broker.bootstrap,
            "OUTAGE_CLICKHOUSE_URL": rebuilt_url,
            "OUTAGE_HASH_KEY": "same-key",
            "OUTAGE_DATA_DIR": str(workdir),
        },
    )
    assert done.returncode == 0, done.stderr
    rules = CorrelationRules.load()
    now = datetime.now(UTC)
    results = []
    for url in (live_url, rebuilt_url):
        store = open_store(url, workdir)
        try:
            results.append(
                (
                    daily(store, now.date(), rules.handling_deadlines(), now).to_json(),
                    handover(store, now).to_json(),
                    store.query("SELECT event_id FROM incident_events FINAL ORDER BY event_id"),
                    store.query("SELECT * FROM incidents FINAL ORDER BY incident_id"),
                )
            )
        finally:
            store.close()
    assert results[0] == results[1]
    assert results[0][2], "the live projection wrote nothing to compare"
