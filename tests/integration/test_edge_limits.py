"""Login floods and sprays, and lookup floods, against a real worker with tight limits.

Each test speaks from loopback addresses of its own (127.0.x.y; Linux routes all of 127/8 to
the loopback), so per-address limits of one test never reach another.
"""

import http.client
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import pytest

from access.roles import parse_roles
from streams.broker import EmbeddedBroker
from streams.web import LOGIN_COOKIE
from tests.integration.conftest import Worker, start_worker, wait_for

pytestmark = pytest.mark.integration

PASSWORD = "long enough secret"


@pytest.fixture(scope="module")
def edge(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """A worker with small login and lookup limits (the service-wide one out of the way)."""
    running = start_worker(
        broker,
        tmp_path_factory.mktemp("edge"),
        OUTAGE_LOGIN_ATTEMPTS="2",
        OUTAGE_LOGIN_ADDRESS_ATTEMPTS="4",
        OUTAGE_LOGIN_FAILURES_PER_MINUTE="1000",
        OUTAGE_LOOKUP_RATE="0.2",
        OUTAGE_LOOKUP_BURST="3",
    )
    yield running
    running.stop()


class Client:
    """One client machine: requests from its own source address, the login form's cookie."""

    def __init__(self, worker: Worker, source: str = "127.0.0.1") -> None:
        url = urlsplit(worker.base)
        self.host, self.port, self.source = url.hostname or "", url.port or 0, source
        self.login_cookie = ""

    def send(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], Any]:
        connection = http.client.HTTPConnection(
            self.host, self.port, timeout=30, source_address=(self.source, 0)
        )
        try:
            data = json.dumps(body).encode() if body is not None else None
            sent = {"content-type": "application/json", **(headers or {})}
            connection.request(method, path, body=data, headers=sent)
            response = connection.getresponse()
            raw = response.read()
            answer = {k.lower(): v for k, v in response.getheaders()}
        finally:
            connection.close()
        return response.status, answer, json.loads(raw) if raw.startswith(b"{") else raw

    def open_form(self) -> None:
        """GET /login: the cookie whose token the POST must echo."""
        status, headers, _ = self.send("GET", "/login")
        assert status == 200
        self.login_cookie = headers["set-cookie"].split(";")[0]  # outage_login_csrf=...

    def login(self, name: str, password: str) -> tuple[int, dict[str, str], Any]:
        if not self.login_cookie:
            self.open_form()
        token = self.login_cookie.split("=", 1)[1]
        assert self.login_cookie.startswith(LOGIN_COOKIE)
        body = {"name": name, "password": password, "csrf_token": token}
        return self.send("POST", "/login", body, {"cookie": self.login_cookie})


def test_a_login_flood_is_refused_at_once_and_key_lookups_stay_fast(edge: Worker) -> None:
    """40 logins at once: those past the hashing cap get 503 fast; a new key answers meanwhile."""
    clients = [Client(edge, f"127.0.1.{n}") for n in range(1, 41)]
    for client in clients:
        client.open_form()
    _, fresh_key = edge.access.create_key("flood-witness", parse_roles("agent"))  # not cached
    start = threading.Barrier(len(clients) + 1)

    def attempt(n: int) -> tuple[int, str | None, float]:
        start.wait()
        began = time.monotonic()
        status, headers, _ = clients[n].login(f"spray-{n}", "not the password")
        return status, headers.get("retry-after"), time.monotonic() - began

    with ThreadPoolExecutor(len(clients)) as pool:
        attempts = [pool.submit(attempt, n) for n in range(len(clients))]
        start.wait()
        began = time.monotonic()
        status, _, me = Client(edge).send(
            "GET", "/v1/me", headers={"Authorization": f"Bearer {fresh_key}"}
        )
        key_took = time.monotonic() - began
        answers = [a.result() for a in attempts]
    assert status == 200 and me["name"] == "flood-witness"
    assert key_took < 1.0, f"an API-key lookup waited {key_took:.2f} s behind password checks"
    assert {s for s, _, _ in answers} <= {401, 503}, answers
    busy = [(retry, took) for s, retry, took in answers if s == 503]
    assert len(busy) >= 10, answers  # 2 hashing + 8 waiting at most: the rest are refused
    assert all(retry == "1" and took < 1.0 for retry, took in busy), busy


def test_the_right_password_works_once_the_names_delay_has_passed(edge: Worker) -> None:
    """Failures slow a name down (429 with Retry-After) but never lock its owner out."""
    edge.access.add_user("agent.slow", PASSWORD, parse_roles("agent"))
    client = Client(edge, "127.0.2.1")
    assert [client.login("agent.slow", "wrong password!")[0] for _ in range(2)] == [401, 401]
    status, headers, body = client.login("agent.slow", PASSWORD)
    assert status == 429 and "too many failed logins for 'agent.slow'" in body["error"]
    assert 1 <= int(headers["retry-after"]) <= 2
    # The wait doubles from 1 s; a hard lock-out would refuse for 5 minutes.
    wait_for(lambda: client.login("agent.slow", PASSWORD)[0] == 200, timeout=10)


def test_spraying_names_from_one_address_is_slowed_there_only(edge: Worker) -> None:
    """New names every time: the address's failures count, and only that address waits."""
    sprayer = Client(edge, "127.0.3.1")
    statuses = [sprayer.login(f"nobody-{n}", "not the password")[0] for n in range(4)]
    assert statuses == [401] * 4
    status, headers, body = sprayer.login("nobody-5", "not the password")
    assert status == 429 and "from your address" in body["error"]
    assert int(headers["retry-after"]) >= 1
    assert Client(edge, "127.0.3.2").login("nobody-6", "not the password")[0] == 401


def test_lookups_have_a_rate_limit_per_key_apart_from_ingest(edge: Worker) -> None:
    """OUTAGE_LOOKUP_RATE/BURST: past the burst 429 with Retry-After; ingest and others go on."""
    _, key = edge.access.create_key("lookup-flood", parse_roles("agent"))
    _, other = edge.access.create_key("lookup-calm", parse_roles("agent"))
    client = Client(edge)

    def lookup(token: str) -> tuple[int, dict[str, str], Any]:
        path = "/v1/outages?premise=P-HSUB1-B1-01"
        return client.send("GET", path, headers={"Authorization": f"Bearer {token}"})

    assert [lookup(key)[0] for _ in range(3)] == [200] * 3
    status, headers, body = lookup(key)
    assert status == 429 and "rate limit: 0.2 requests/s" in body["error"]
    assert int(headers["retry-after"]) >= 1
    ingest = client.send("POST", "/v1/calls", {}, {"Authorization": f"Bearer {key}"})
    assert ingest[0] == 400  # validation, not the ingest limit
    assert lookup(other)[0] == 200
