"""Fixtures that start real services: a Tansu broker and `outage run` worker processes."""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from streams.broker import EmbeddedBroker, free_port

ROOT = Path(__file__).resolve().parents[2]


def http(method: str, url: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
    """One real HTTP request; returns (status, decoded JSON body)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(
        url, data=data, method=method, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def wait_for(check: Callable[[], Any], timeout: float = 30.0, every: float = 0.2) -> Any:
    """Poll `check` until it returns something truthy; fail with the last value otherwise."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s; last value: {value!r}")


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    base: str
    log: Path

    def get(self, path: str) -> tuple[int, Any]:
        return http("GET", self.base + path)

    def post(self, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
        return http("POST", self.base + path, body, raw)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    """A real Tansu broker of its own for each test module (topics do not leak between them)."""
    with EmbeddedBroker() as running:
        yield running


def start_worker(broker: EmbeddedBroker, workdir: Path, **env: str) -> Worker:
    port = free_port()
    log = workdir / f"worker-{port}.log"
    environment = {
        **os.environ,
        "OUTAGE_BROKER": broker.bootstrap,
        "OUTAGE_WEB_PORT": str(port),
        "OUTAGE_DATA_DIR": str(workdir / "data"),
        "OUTAGE_TICK_SECONDS": "1",
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "run"],
        cwd=ROOT,
        env=environment,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    worker = Worker(process=process, base=f"http://127.0.0.1:{port}", log=log)

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"worker exited early:\n{log.read_text()[-3000:]}")
        try:
            return worker.get("/ready")[0] == 200
        except OSError:
            return False

    wait_for(healthy, timeout=60)
    return worker


@pytest.fixture(scope="module")
def worker(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """One real faust worker (`outage run`) with its HTTP API, on the module's broker."""
    running = start_worker(broker, tmp_path_factory.mktemp("worker"))
    yield running
    running.stop()


from tests.integration.clickhouse_fixtures import chdb_path, clickhouse_server, store  # noqa: E402, F401
