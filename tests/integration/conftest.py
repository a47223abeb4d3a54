"""Fixtures that start real services: a Tansu broker and `outage run` worker processes."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import pytest

from access.roles import ROLES, parse_roles
from access.store import AccessStore
from streams.broker import EmbeddedBroker, dies_with_this_process, free_port
from streams.web import LOGIN_COOKIE

ROOT = Path(__file__).resolve().parents[2]


def http(
    method: str,
    url: str,
    body: Any = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One real HTTP request; returns (status, decoded JSON body)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"content-type": "application/json", **(headers or {})},
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


class Person:
    """Someone in a browser: a cookie jar, logged in through the real form flow."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.csrf = ""

    def cookie(self, name: str) -> str:
        return next((c.value or "" for c in self.jar if c.name == name), "")

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        form: dict[str, str] | None = None,
        csrf: bool = True,
    ) -> tuple[int, Any]:
        """(status, JSON or text); the session's CSRF header goes along unless csrf=False."""
        headers = {"X-CSRF-Token": self.csrf} if csrf and self.csrf else {}
        data = None
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["content-type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        request = urllib.request.Request(self.base + path, data, headers, method=method)
        try:
            with self.opener.open(request, timeout=10) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        try:
            return status, json.loads(raw or b"null")
        except ValueError:
            return status, raw.decode()

    def login(self, name: str, password: str) -> tuple[int, Any]:
        """The form flow: GET /login sets the login cookie, whose token the POST must echo."""
        assert self.request("GET", "/login")[0] == 200
        body = {"name": name, "password": password, "csrf_token": self.cookie(LOGIN_COOKIE)}
        status, answer = self.request("POST", "/login", body)
        if status == 200:
            self.csrf = answer["csrf_token"]
        return status, answer


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    base: str
    log: Path
    data: Path = Path()  # its OUTAGE_DATA_DIR
    key: str = ""  # an API key holding every role, so tests reach every endpoint

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def get(self, path: str) -> tuple[int, Any]:
        return http("GET", self.base + path, headers=self.auth)

    def post(self, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
        return http("POST", self.base + path, body, raw, headers=self.auth)

    @property
    def access(self) -> AccessStore:
        return AccessStore(self.data / "access.sqlite3")

    def person(self, name: str, roles: str, password: str = "correct horse battery") -> Person:
        """A user with these roles (made once), logged in through the login form."""
        if name not in {u["name"] for u in self.access.users()}:
            self.access.add_user(name, password, parse_roles(roles))
        person = Person(self.base)
        status, answer = person.login(name, password)
        assert status == 200, answer
        return person

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


def all_roles_key(workdir: Path) -> str:
    """An API key with every role in the access file of workers started in `workdir`."""
    access = AccessStore(workdir / "data" / "access.sqlite3")
    return access.create_key("tests", frozenset(ROLES))[1]


def start_worker(broker: EmbeddedBroker | None, workdir: Path, **env: str) -> Worker:
    """`outage run` on `broker`, or on its own embedded broker when None, ready to answer."""
    port = free_port()
    log = workdir / f"worker-{port}.log"
    key = all_roles_key(workdir)
    environment = {
        **os.environ,
        **({"OUTAGE_BROKER": broker.bootstrap} if broker is not None else {}),
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
        # Killed outright with the test run: a worker whose broker went too can hang in its
        # graceful stop (seen here: orphans at 7% CPU each after a killed run).
        preexec_fn=dies_with_this_process(signal.SIGKILL),
    )
    base = f"http://127.0.0.1:{port}"
    worker = Worker(process=process, base=base, log=log, data=workdir / "data", key=key)

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
