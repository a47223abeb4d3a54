"""The connector under test, for every protocol's end-to-end test: `outage scada run` as a real
process on the module's broker, and what it published read back from the topics.

    connector = start_connector(CONFIG, broker, tmp_path)   # CONFIG: the site YAML as text
    wait_for(lambda: confirmed_incident(worker, "FDR-2"))   # the worker fixture's incidents
    wait_for(lambda: source_alerts(broker, "scada_source_lost"))
    connector.stop()

The worker must be on the same broker (the `worker` fixture is) and the config's devices in
its network model (the samples: topology/samples/power.csv, heat.csv).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scada.points import Mapper
from scada.sources.base import PointUpdate, SourceConfig, SourceLost
from streams.broker import EmbeddedBroker, dies_with_this_process
from streams.follow import TopicFollower
from tests.integration.conftest import ROOT, Worker, wait_for

PARTITIONS = 4  # the worker's default (OUTAGE_PARTITIONS)


@dataclass
class Connector:
    """A running `outage scada run`; its log (JSON lines) is in `log`."""

    process: subprocess.Popen[bytes]
    log: Path
    config: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def events(self, name: str) -> list[dict[str, Any]]:
        """Log records of one event name (e.g. 'scada.connected', 'scada.signal')."""
        out = []
        for line in self.output().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("event") == name:
                out.append(record)
        return out

    def wait_connected(self, source: str, times: int = 1, timeout: float = 30.0) -> None:
        """Until the source has connected (and emitted) `times` times in this process."""

        def connected() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"connector exited early:\n{self.output()[-3000:]}")
            hits = [r for r in self.events("scada.connected") if r.get("source") == source]
            return len(hits) >= times

        wait_for(connected, timeout=timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_connector(config: str, broker: EmbeddedBroker, workdir: Path, **env: str) -> Connector:
    """Write the site config into `workdir` and start `outage scada run` on it."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "scada.yaml"
    path.write_text(config)
    log = workdir / "connector.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "scada", "run", "--config", str(path)],
        cwd=ROOT,
        env={
            **os.environ,
            "OUTAGE_BROKER": broker.bootstrap,
            "OUTAGE_PARTITIONS": str(PARTITIONS),
            "OUTAGE_LOG_FORMAT": "json",
            **env,
        },
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        # Killed outright with the test run: a worker whose broker went too can hang in its
        # graceful stop (seen here: orphans at 7% CPU each after a killed run).
        preexec_fn=dies_with_this_process(signal.SIGKILL),
    )
    return Connector(process=process, log=log, config=path)


def read_topic(broker: EmbeddedBroker, topic: str) -> list[dict[str, Any]]:
    """Every record on the topic now, decoded from JSON, in partition order."""

    async def read() -> list[dict[str, Any]]:
        follower = TopicFollower(broker.bootstrap, topic, PARTITIONS)
        await follower.start()
        records = []
        try:
            while not await follower.caught_up():
                records += await follower.poll(timeout_ms=200)
        finally:
            await follower.stop()
        return [json.loads(r.value) for r in records if r.value]

    return asyncio.run(read())


def scada_signals(broker: EmbeddedBroker, device: str | None = None) -> list[dict[str, Any]]:
    """The scada_signal events on the `scada` topic (of one device if given)."""
    return [
        s
        for s in read_topic(broker, "scada")
        if s.get("type") == "scada_signal" and device in (None, s.get("device_id"))
    ]


def source_alerts(broker: EmbeddedBroker, kind: str = "scada_source_lost") -> list[dict[str, Any]]:
    """Alerts of this kind on the `alerts` topic (scada_source_lost / scada_source_restored)."""
    return [a for a in read_topic(broker, "alerts") if a.get("kind") == kind]


def run(scenario: Callable[[], Coroutine[Any, Any, None]], timeout: float = 60) -> None:
    """One source-level scenario in its own event loop, bounded in time."""
    asyncio.run(asyncio.wait_for(scenario(), timeout))


def signals(mapper: Mapper, updates: list[PointUpdate]) -> list[tuple[str, str, str]]:
    """(device, signal, quality) of every event the Mapper makes of these updates."""
    out: list[tuple[str, str, str]] = []
    for update in updates:
        event = mapper.update(update, datetime.now(UTC))
        if event is not None:
            out.append((event.device_id, event.signal, event.quality))
    return out


class RunningSource:
    """A source's `run` as a task; it is the `emit`, keeping every update and session."""

    def __init__(self, source: SourceConfig) -> None:
        self.updates: list[PointUpdate] = []
        self.sessions = 0
        self.task = asyncio.create_task(source.run(self))

    async def __call__(self, update: PointUpdate) -> None:
        self.updates.append(update)

    async def connected(self) -> None:
        self.sessions += 1

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, SourceLost):
            await self.task


class Ignore:
    """An `emit` for tests that expect `run` to fail before any value or session."""

    async def __call__(self, update: PointUpdate) -> None:
        raise AssertionError(f"no value expected, got {update}")

    async def connected(self) -> None:
        raise AssertionError("no session expected")


def confirmed_incident(worker: Worker, device: str) -> dict[str, Any] | None:
    """The worker's active incident at this device, once SCADA has confirmed it."""
    status, body = worker.get("/v1/incidents")
    assert status == 200, body
    for incident in body["incidents"]:
        if incident["device_id"] == device and incident["state"] == "confirmed":
            return dict(incident)
    return None
