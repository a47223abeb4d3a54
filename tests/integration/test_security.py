"""Who may do what, logins and CSRF, rate limits, hostile input and caller data in logs.

Everything goes over real HTTP to a real worker on a real broker; users and keys are made in
the worker's own access file, as `outage users` / `outage keys` do.
"""

import http.client
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from aiokafka import AIOKafkaProducer

from access.roles import ROLES, parse_roles
from alerting.ack_link import ack_link
from streams.broker import EmbeddedBroker
from streams.web import LOGIN_COOKIE, SESSION_COOKIE
from tests.integration.conftest import ROOT, Person, Worker, start_worker, wait_for

pytestmark = pytest.mark.integration

A, S, OPS, ADMIN = "agent", "shift_lead", "operations", "admin"
PUBLIC, ANYONE = "public", "anyone logged in"

# The policy, written out on its own: a new endpoint fails the first test until it is here.
MATRIX: dict[tuple[str, str], set[str] | str] = {
    ("POST", "/v1/calls"): {A, S},
    ("POST", "/v1/history"): {A, S},
    ("POST", "/v1/scada"): {OPS},
    ("POST", "/v1/planned-works"): {OPS},
    ("GET", "/v1/outages"): {A, S, OPS},
    ("GET", "/v1/suggest"): {A, S, OPS},
    ("GET", "/v1/stream"): {A, S, OPS},
    ("GET", "/console"): {A, S, OPS},
    ("GET", "/board"): {S},
    ("GET", "/v1/calls/{event_id}"): {A, S, OPS},
    ("GET", "/v1/incidents"): {A, S, OPS},
    ("GET", "/v1/incidents/{incident_id}"): {A, S, OPS},
    ("POST", "/v1/incidents/{incident_id}/acknowledge"): {S},
    ("POST", "/v1/incidents/{incident_id}/cause"): {S},
    ("POST", "/v1/incidents/{incident_id}/etr"): {S},
    ("POST", "/v1/incidents/{incident_id}/resolve"): {S},
    ("GET", "/v1/incidents/{incident_id}/acknowledge"): PUBLIC,  # the link's token is the key
    ("POST", "/v1/incidents/{incident_id}/acknowledge-link"): PUBLIC,  # that page's button
    ("GET", "/v1/notifications"): {S},
    ("GET", "/v1/silences"): {S},
    ("POST", "/v1/silences"): {S},
    ("DELETE", "/v1/silences/{silence_id}"): {S},
    ("GET", "/v1/reports/daily"): {S},
    ("GET", "/v1/reports/handover"): {S},
    ("GET", "/v1/reports/callbacks"): {S},
    ("GET", "/v1/projections/lag"): {OPS},
    ("GET", "/v1/topology"): {OPS},
    ("GET", "/v1/topology/nodes/{node_id}"): {OPS},
    ("GET", "/v1/access/users"): {ADMIN},
    ("GET", "/v1/access/keys"): {ADMIN},
    ("POST", "/v1/access/keys"): {ADMIN},
    ("DELETE", "/v1/access/keys/{key_id}"): {ADMIN},
    ("GET", "/v1/me"): ANYONE,
    ("GET", "/"): ANYONE,
    ("POST", "/logout"): ANYONE,
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/static/{name}"): PUBLIC,
    ("GET", "/health"): PUBLIC,
    ("GET", "/ready"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
}
PATH_VALUES = {
    "event_id": "call-none",
    "incident_id": "INC-none",
    "node_id": "HSUB1",
    "key_id": "00000000",
    "name": "base.css",
    "silence_id": "silence-none",
}
PHONES = ["+1 212 555 0147", "(718) 555-0199", "+86 138 0013 8000", "020-7946-0321"]


def send(
    worker: Worker,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One request without following redirects: (status, headers, JSON or text)."""
    url = urlsplit(worker.base)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        raw = response.read()
        answer_headers: dict[str, str] = {}
        for name, value in response.getheaders():  # several Set-Cookie: one per line
            name = name.lower()
            answer_headers[name] = (
                f"{answer_headers[name]}\n{value}" if name in answer_headers else value
            )
    finally:
        connection.close()
    try:
        return response.status, answer_headers, json.loads(raw or b"null")
    except ValueError:
        return response.status, answer_headers, raw.decode(errors="replace")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "content-type": "application/json"}


QUERIES = {"/v1/stream": "?seconds=0", "/v1/suggest": "?q=Birch"}  # a stream that ends
PAGES = {"/", "/console", "/board"}  # HTML: a visitor without a session goes to /login


def concrete(path: str) -> str:
    return re.sub(r"{(\w+)}", lambda m: PATH_VALUES[m.group(1)], path) + QUERIES.get(path, "")


def call_body(premise: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "call_reported",
        "schema_version": 1,
        "event_id": f"sec-{premise}-{time.time_ns()}",
        "occurred_at": datetime.now(UTC).isoformat(),
        "utility": "heat",
        "premise_id": premise,
        "symptom": "no_heat",
        **extra,
    }


@pytest.fixture(scope="module")
def guarded(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """A worker with tight limits and DEBUG logs (the log test reads them)."""
    running = start_worker(
        broker,
        tmp_path_factory.mktemp("security"),
        OUTAGE_INGEST_RATE="0.2",
        OUTAGE_INGEST_BURST="8",
        OUTAGE_LOGIN_ATTEMPTS="3",
        OUTAGE_LOG_LEVEL="DEBUG",
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def role_keys(guarded: Worker) -> dict[str, str]:
    """One API key per role, each holding only that role."""
    return {role: guarded.access.create_key(f"only-{role}", parse_roles(role))[1] for role in ROLES}


def test_the_matrix_names_every_operation_the_service_documents(guarded: Worker) -> None:
    """No endpoint exists whose access rule this test does not state."""
    status, _, document = send(guarded, "GET", "/openapi.json")
    assert status == 200
    served = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    assert served == set(MATRIX)


@pytest.mark.parametrize(("method", "path"), sorted(MATRIX))
def test_without_credentials_only_public_operations_answer(
    guarded: Worker, method: str, path: str
) -> None:
    """No login and no key: 401 with a reason (pages redirect to /login); public ones answer."""
    status, headers, body = send(guarded, method, concrete(path))
    rule = MATRIX[(method, path)]
    if rule == PUBLIC:
        # It may refuse what was sent (a missing token, a form), but not for lack of a login.
        error = body.get("error", "") if isinstance(body, dict) else ""
        assert "API key" not in error and "needs the role" not in error, body
    elif path in PAGES:
        assert status == 303 and headers["location"].startswith("/login?next=")
    else:
        assert status == 401 and "API key" in body["error"]
        assert headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("role", ROLES)
def test_each_role_reaches_exactly_its_operations(
    guarded: Worker, role_keys: dict[str, str], role: str
) -> None:
    """A key with one role: 403 naming the needed role where the matrix says no, never elsewhere."""
    wrong = []
    for (method, path), rule in sorted(MATRIX.items()):
        body = b"{}" if method in ("POST", "DELETE") else None
        status, _, answer = send(guarded, method, concrete(path), body, bearer(role_keys[role]))
        allowed = rule in (PUBLIC, ANYONE) or role in rule
        refused = status == 403 and "needs the role" in str(answer)
        if allowed == refused or status == 401:
            wrong.append(f"{method} {path}: {status} {answer}")
    assert not wrong, "\n".join(wrong)


def test_an_unknown_malformed_or_revoked_key_gets_401(
    guarded: Worker, role_keys: dict[str, str]
) -> None:
    """Garbage, a tampered secret and a revoked key are refused at once, on this worker."""
    for header in ("Bearer nonsense", "Basic YWRtaW46YWRtaW4=", "Bearer " + role_keys[A] + "x"):
        status, _, body = send(guarded, "GET", "/v1/incidents", headers={"Authorization": header})
        assert status == 401 and body["error"], header
    key_id, key = guarded.access.create_key("short-lived", parse_roles(A))
    assert send(guarded, "GET", "/v1/incidents", headers=bearer(key))[0] == 200
    admin = bearer(role_keys[ADMIN])
    status, _, body = send(guarded, "DELETE", f"/v1/access/keys/{key_id}", headers=admin)
    assert status == 200 and body == {"revoked": key_id}
    status, _, body = send(guarded, "GET", "/v1/incidents", headers=bearer(key))
    assert status == 401 and "revoked" in body["error"]


def test_an_admin_makes_a_key_over_http_that_is_shown_once(
    guarded: Worker, role_keys: dict[str, str]
) -> None:
    """POST /v1/access/keys returns a working token; listings never show a secret."""
    admin = bearer(role_keys[ADMIN])
    made = json.dumps({"name": "crm", "roles": ["agent"]}).encode()
    status, _, body = send(guarded, "POST", "/v1/access/keys", made, admin)
    assert status == 201 and body["token"].startswith("ock_")
    assert (
        send(guarded, "GET", "/v1/outages?premise=P-HSUB1-B1-01", headers=bearer(body["token"]))[0]
        == 200
    )
    status, _, listing = send(guarded, "GET", "/v1/access/keys", headers=admin)
    assert status == 200 and body["key_id"] in {k["key_id"] for k in listing["keys"]}
    secret = body["token"].split("_", 2)[2]  # ock_<key id>_<secret>; the secret may hold "_"
    assert secret not in json.dumps(listing)
    bad = json.dumps({"name": "x", "roles": ["root"]}).encode()
    status, _, answer = send(guarded, "POST", "/v1/access/keys", bad, admin)
    assert status == 400 and "roles" in answer["error"]


def test_login_sets_a_protected_cookie_and_logout_ends_the_session(guarded: Worker) -> None:
    """Form login: HttpOnly SameSite cookie, redirect to a local `next` only; logout kills it."""
    guarded.access.add_user("agent.li", "long enough secret", parse_roles(A))
    status, headers, page = send(guarded, "GET", "/login?next=/v1/me")
    assert status == 200 and 'name="csrf_token"' in page
    login_cookie = headers["set-cookie"].split(";")[0]  # outage_login_csrf=...
    token = login_cookie.split("=", 1)[1]
    form = {"name": "agent.li", "password": "long enough secret", "csrf_token": token}
    form_headers = {"content-type": "application/x-www-form-urlencoded", "cookie": login_cookie}
    status, headers, _ = send(
        guarded, "POST", "/login", urlencode({**form, "next": "/v1/me"}).encode(), form_headers
    )
    assert status == 303 and headers["location"] == "/v1/me"
    cookies = headers["set-cookie"].splitlines()
    cookie = next(c for c in cookies if c.startswith(f"{SESSION_COOKIE}="))
    assert any(c.startswith(f'{LOGIN_COOKIE}=""') for c in cookies)  # the form's token is spent
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    session = cookie.split(";")[0]
    status, _, me = send(guarded, "GET", "/v1/me", headers={"cookie": session})
    assert status == 200 and me["name"] == "agent.li" and me["roles"] == [A]
    # A `next` pointing elsewhere is an open redirect: it goes to the start page instead.
    for target in ("//evil.example/x", "https://evil.example/"):
        status, headers, _ = send(
            guarded, "POST", "/login", urlencode({**form, "next": target}).encode(), form_headers
        )
        assert status == 303 and headers["location"] == "/"
    csrf = me["csrf_token"]
    status, _, body = send(guarded, "POST", "/logout", b"{}", {"cookie": session})
    assert status == 403 and "CSRF" in body["error"]  # logout is a state change too
    logout_headers = {"cookie": session, "x-csrf-token": csrf, "content-type": "application/json"}
    assert send(guarded, "POST", "/logout", b"{}", logout_headers)[0] == 200
    assert send(guarded, "GET", "/v1/me", headers={"cookie": session})[0] == 401


def test_a_login_without_the_forms_token_or_with_a_wrong_password_fails(guarded: Worker) -> None:
    """Login CSRF: the body must echo the login cookie; a wrong password is 401, no session."""
    guarded.access.add_user("agent.wu", "long enough secret", parse_roles(A))
    body = {"name": "agent.wu", "password": "long enough secret", "csrf_token": "guess"}
    status, _, answer = send(
        guarded, "POST", "/login", json.dumps(body).encode(), {"content-type": "application/json"}
    )
    assert status == 403 and "login form" in answer["error"]
    person = Person(guarded.base)
    status, answer = person.login("agent.wu", "not the password")
    assert status == 401 and answer["error"] == "wrong user name or password"
    assert person.cookie(SESSION_COOKIE) == ""
    status, answer = Person(guarded.base).login("nobody.here", "not the password")
    assert status == 401 and answer["error"] == "wrong user name or password"  # same words


def test_repeated_failed_logins_are_slowed_down_with_429(guarded: Worker) -> None:
    """After OUTAGE_LOGIN_ATTEMPTS failures, even the right password waits (Retry-After)."""
    guarded.access.add_user("agent.ng", "long enough secret", parse_roles(A))
    for _ in range(3):
        assert Person(guarded.base).login("agent.ng", "wrong password!")[0] == 401
    person = Person(guarded.base)
    assert person.request("GET", "/login")[0] == 200
    token = person.cookie(LOGIN_COOKIE)
    body = {"name": "agent.ng", "password": "long enough secret", "csrf_token": token}
    status, answer = person.request("POST", "/login", body)
    assert status == 429 and "too many failed logins" in answer["error"]


def test_a_session_needs_its_csrf_token_for_actions_and_roles_still_apply(
    guarded: Worker,
) -> None:
    """Cookie + no token: 403 CSRF; with the token the role decides; an agent may not act."""
    lead = guarded.person("lead.kim", "shift_lead")
    path = "/v1/incidents/INC-none/acknowledge"
    status, body = lead.request("POST", path, {}, csrf=False)
    assert status == 403 and "CSRF" in body["error"]
    lead.csrf = "forged-token"
    assert lead.request("POST", path, {})[0] == 403
    lead.csrf = lead.request("GET", "/v1/me")[1]["csrf_token"]
    status, body = lead.request("POST", path, {})
    assert status == 404 and "INC-none" in body["error"]  # through every check to the handler
    agent = guarded.person("agent.ko", "agent")
    status, body = agent.request("POST", path, {})
    assert status == 403 and "shift_lead" in body["error"]


def test_a_disabled_user_is_locked_out_of_an_open_session(guarded: Worker) -> None:
    """`outage users disable` ends sessions; within the credential cache time the door shuts."""
    person = guarded.person("agent.out", "agent")
    assert person.request("GET", "/v1/me")[0] == 200
    guarded.access.set_disabled("agent.out", True)
    wait_for(lambda: person.request("GET", "/v1/me")[0] == 401, timeout=15)
    assert Person(guarded.base).login("agent.out", "correct horse battery")[0] == 401


def test_ingest_is_rate_limited_per_key_with_429_and_retry_after(guarded: Worker) -> None:
    """Past the burst a key gets 429 with Retry-After; another key is not affected."""
    _, first = guarded.access.create_key("flood-1", parse_roles(A))
    _, second = guarded.access.create_key("flood-2", parse_roles(A))
    statuses = [send(guarded, "POST", "/v1/calls", b"{}", bearer(first))[0] for _ in range(8)]
    assert statuses == [400] * 8  # the burst: each reaches validation
    status, headers, body = send(guarded, "POST", "/v1/calls", b"{}", bearer(first))
    assert status == 429 and int(headers["retry-after"]) >= 1 and "rate limit" in body["error"]
    assert send(guarded, "POST", "/v1/calls", b"{}", bearer(second))[0] == 400


def test_hostile_bodies_get_a_4xx_with_a_reason_and_no_trace(
    guarded: Worker, role_keys: dict[str, str]
) -> None:
    """Oversize, wrong type, broken JSON, deep nesting, bad UTF-8: 4xx, reason, no traceback."""
    _, key = guarded.access.create_key("hostile", parse_roles(A))
    cases = {
        b"x" * (70 * 1024): 413,
        b"[" * 60_000: 400,
        b'{"type": "call_reported", "schema_version": 1, "event_id": "\xff\xfe"}': 400,
        b'{"type": "call_reported", "schema_version": true}': 400,
        b"null": 400,
        b'{"type": "call_reported", "schema_version": 1, "event_id": "e", "occurred_at": '
        b'"0001-01-01T00:00:00+14:00", "utility": "heat", "premise_id": "P"}': 400,
    }
    for body, expected in cases.items():
        status, _, answer = send(guarded, "POST", "/v1/calls", body, bearer(key))
        assert status == expected, (body[:60], status, answer)
        assert answer["error"] and "Traceback" not in json.dumps(answer)
    headers = {"Authorization": f"Bearer {key}", "content-type": "text/plain"}
    status, _, answer = send(guarded, "POST", "/v1/calls", b"{}", headers)
    assert status == 415 and "application/json" in answer["error"]
    lead = bearer(role_keys[S])
    status, _, answer = send(guarded, "GET", "/v1/reports/daily?date=" + "9" * 5000, headers=lead)
    assert 400 <= status < 500
    assert send(guarded, "GET", "/health")[0] == 200  # and the worker is still there


def test_phone_numbers_and_notes_never_reach_the_log_in_clear(
    guarded: Worker, broker: EmbeddedBroker
) -> None:
    """Accepted, rejected and dead-lettered calls with numbers and notes: only masked in logs."""
    _, key = guarded.access.create_key("privacy", parse_roles(A))
    note = "gate code 4711 ask for Mrs Alvarez"
    for n, phone in enumerate(PHONES):
        body = call_body(f"P-HSUB2-B1-0{n + 1}", caller=phone, notes=note)
        assert send(guarded, "POST", "/v1/calls", json.dumps(body).encode(), bearer(key))[0] == 202
        bad = call_body("P-NOWHERE", caller=phone, notes=note)
        assert send(guarded, "POST", "/v1/calls", json.dumps(bad).encode(), bearer(key))[0] == 422
    # Straight onto the topic, past the HTTP checks: the ingest agent dead-letters these.
    import asyncio

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        try:
            for phone in PHONES:
                bad = call_body("P-NOWHERE", caller=phone, notes=note, utility="gas")
                await producer.send_and_wait("calls", json.dumps(bad).encode())
                await producer.send_and_wait("calls", f"not json {phone} {note}".encode())
        finally:
            await producer.stop()

    asyncio.run(produce())
    wait_for(lambda: guarded.get("/health")[1]["counters"].get("dead_letter", 0) >= 8)
    wait_for(lambda: guarded.log.read_text().count('"event.accepted"') >= len(PHONES))
    log = guarded.log.read_text(errors="replace")
    assert '"caller": "+1 21' in log  # the accepted calls were logged, masked
    for phone in PHONES:
        digits = re.sub(r"\D", "", phone)
        anywhere = r"\D*".join(digits)  # the digits with any separators between them
        assert not re.search(anywhere, log), f"{phone} is in the log in clear"
    assert note not in log and "Alvarez" not in log


def test_the_report_cli_asks_the_service_with_its_key_only(
    guarded: Worker, role_keys: dict[str, str]
) -> None:
    """`outage report --api` sends OUTAGE_API_KEY; without one, or with an agent's, it says why."""

    def report(key: str | None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "OUTAGE_API_KEY"}
        if key:
            env["OUTAGE_API_KEY"] = key
        command = [sys.executable, "-m", "cli.main", "report", "handover", "--api", guarded.base]
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)

    done = report(role_keys[S])
    assert done.returncode == 0 and "andover" in done.stdout, done.stderr
    done = report(None)
    assert done.returncode == 2 and "OUTAGE_API_KEY" in done.stderr
    done = report(role_keys[A])
    assert done.returncode == 2 and "shift_lead" in done.stderr


def test_a_report_date_out_of_range_is_a_400_naming_the_range(
    guarded: Worker, role_keys: dict[str, str]
) -> None:
    """9999-12-31 (once a 500, OverflowError) and days before 1970: 400 with the days allowed."""
    lead = bearer(role_keys[S])
    for day in ("9999-12-31", "1969-12-31", "0001-01-01"):
        for fmt in ("json", "csv"):
            path = f"/v1/reports/daily?date={day}&format={fmt}"
            status, _, answer = send(guarded, "GET", path, headers=lead)
            assert status == 400, (day, answer)
            assert "date must be between 1970-01-01 and" in answer["error"]


def hash_key(worker: Worker) -> bytes:
    """The worker's HMAC key (made in its data directory): tests mint links as it does."""
    return (worker.data / "hash.key").read_text().strip().encode()


def open_heat_incident(worker: Worker, building: str) -> str:
    """Three flats of a heat building call (with a key of their own): its incident's id."""
    _, key = worker.access.create_key(f"calls-{building}", parse_roles(A))
    for n in (1, 2, 3):
        body = json.dumps(call_body(f"{building}-0{n}")).encode()
        assert send(worker, "POST", "/v1/calls", body, bearer(key))[0] == 202
    found = wait_for(
        lambda: (
            (a := worker.get(f"/v1/outages?premise={building}-04")[1])["status"] == "known_fault"
            and a
        )
    )
    return str(found["incident"]["incident_id"])


BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
FORM = {**BROWSER, "content-type": "application/x-www-form-urlencoded"}


def test_the_acknowledge_link_opens_a_page_and_changes_nothing(
    guarded: Worker, role_keys: dict[str, str]
) -> None:
    """A mail scanner's GETs show a page under the CSP; a lead acknowledging later owns it."""
    incident = open_heat_incident(guarded, "P-HSUB3-B1")
    link = ack_link(
        guarded.base, hash_key(guarded), incident, datetime.now(UTC), timedelta(hours=1)
    )
    path = link.removeprefix(guarded.base)
    for _ in range(2):
        status, headers, page = send(guarded, "GET", path, headers=BROWSER)
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert "form-action 'self'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
        assert "<script" not in page and 'href="/static/base.css"' in page
        assert f'<form method="post" action="/v1/incidents/{incident}/acknowledge-link">' in page
    # The opened link published nothing: had it acknowledged, it would be the first owner (the
    # same partition keeps order) and the timeline would have two lines.
    lead = bearer(role_keys[S])
    action = f"/v1/incidents/{incident}/acknowledge"
    assert send(guarded, "POST", action, b"{}", lead)[0] == 202
    view = wait_for(
        lambda: (v := guarded.get(f"/v1/incidents/{incident}")[1])["acknowledged_by"] and v
    )
    assert view["acknowledged_by"] == "key:only-shift_lead"
    lines = [e["summary"] for e in view["timeline"] if e["summary"].startswith("acknowledged")]
    assert lines == ["acknowledged by key:only-shift_lead"]


def test_acknowledging_an_owned_incident_names_the_owner_and_publishes_nothing(
    guarded: Worker, role_keys: dict[str, str]
) -> None:
    """The link's button, its page and a lead's POST: 200 with the first owner, no new event."""
    incident = open_heat_incident(guarded, "P-HSUB1-B3")
    lead = bearer(role_keys[S])
    action = f"/v1/incidents/{incident}/acknowledge"
    assert send(guarded, "POST", action, b'{"note": "crew sent"}', lead)[0] == 202
    wait_for(lambda: guarded.get(f"/v1/incidents/{incident}")[1]["acknowledged_by"])
    owner = "key:only-shift_lead"
    status, _, body = send(guarded, "POST", action, b"{}", lead)
    assert status == 200 and (body["status"], body["acknowledged_by"]) == (
        "already_acknowledged",
        owner,
    )
    assert body["acknowledged_at"] and "event_id" not in body
    link = ack_link(
        guarded.base, hash_key(guarded), incident, datetime.now(UTC), timedelta(hours=1)
    )
    query = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    button = f"/v1/incidents/{incident}/acknowledge-link"
    status, _, body = send(
        guarded, "POST", button, json.dumps(query).encode(), {"content-type": "application/json"}
    )
    assert status == 200 and body["acknowledged_by"] == owner and "event_id" not in body
    status, _, page = send(guarded, "POST", button, urlencode(query).encode(), FORM)
    assert status == 200 and owner in page and "<form" not in page
    status, _, page = send(guarded, "GET", link.removeprefix(guarded.base), headers=BROWSER)
    assert status == 200 and f"Acknowledged by <strong>{owner}</strong>" in page
    assert "<form" not in page
    lines = [
        e["summary"]
        for e in guarded.get(f"/v1/incidents/{incident}")[1]["timeline"]
        if e["summary"].startswith("acknowledged")
    ]
    assert lines == [f"acknowledged by {owner}: crew sent"]


def test_an_expired_forged_or_old_acknowledge_link_gets_a_403_saying_why(
    guarded: Worker,
) -> None:
    """Past its expiry, another expiry or incident, or no expiry at all: 403, page or JSON."""
    key, now = hash_key(guarded), datetime.now(UTC)
    expired = ack_link(guarded.base, key, "INC-none", now - timedelta(days=2), timedelta(days=1))
    valid = ack_link(guarded.base, key, "INC-none", now, timedelta(hours=1))
    token, expires = (parse_qs(urlsplit(valid).query)[k][0] for k in ("token", "expires"))
    base = "/v1/incidents/INC-none/acknowledge"
    cases = {
        expired.removeprefix(guarded.base): "expired",
        f"{base}?{urlencode({'token': token, 'expires': int(expires) + 86400})}": "not valid",
        f"/v1/incidents/INC-other/acknowledge?{urlencode({'token': token, 'expires': expires})}": (
            "not valid"
        ),
        f"{base}?{urlencode({'token': token})}": "no expiry",  # a link from before expiries
    }
    for path, reason in cases.items():
        status, headers, answer = send(guarded, "GET", path)
        assert status == 403 and reason in answer["error"], (path, answer)
        status, headers, page = send(guarded, "GET", path, headers=BROWSER)
        assert status == 403 and headers["content-type"].startswith("text/html")
        assert reason in page and "default-src 'self'" in headers["content-security-policy"]
    button = "/v1/incidents/INC-none/acknowledge-link"
    forged = urlencode({"token": "0" * 32, "expires": expires}).encode()
    status, _, page = send(guarded, "POST", button, forged, FORM)
    assert status == 403 and "not valid" in page
    # The right token for an incident that does not exist: only then is it named.
    status, _, answer = send(
        guarded,
        "POST",
        button,
        json.dumps({"token": token, "expires": expires}).encode(),
        {"content-type": "application/json"},
    )
    assert status == 404 and "INC-none" in answer["error"]


# Malformed HTTP, credentials on public endpoints, lookup text (issue 15) --------------------

PHONE_URL_ENCODED = "%2B1%20555%20123%204567"


def raw_request(worker: Worker, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Bytes straight onto a socket, for requests no HTTP client would send."""
    import socket

    url = urlsplit(worker.base)
    with socket.create_connection((url.hostname or "", url.port or 0), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
    return int(status_line.split()[1]), headers, body


def malformed_requests(marker: str) -> list[bytes]:
    """A request line over 8 KB and a bad header token, each with a phone number in it."""
    path = f"/v1/outages?m={marker}&q={PHONE_URL_ENCODED}&pad={'a' * 9000}"
    return [
        f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        f"GET /health HTTP/1.1\r\nHost: x\r\nBad Header {marker}: +1 555 123 4567\r\n\r\n".encode(),
    ]


def test_malformed_http_gets_a_short_json_400_with_the_security_headers(guarded: Worker) -> None:
    """What aiohttp cannot parse is answered in our JSON shape, echoing none of it."""
    for data in malformed_requests("markeranswer"):
        status, headers, body = raw_request(guarded, data)
        assert status == 400 and headers["content-type"].startswith("application/json"), body
        answer = json.loads(body)
        assert answer["error"].startswith("malformed HTTP request: ") and len(body) < 300
        assert "555" not in answer["error"] and "markeranswer" not in answer["error"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert "default-src 'self'" in headers["content-security-policy"]
    assert send(guarded, "GET", "/health")[0] == 200


def test_malformed_http_is_logged_as_one_json_line_with_the_number_masked(
    guarded: Worker,
) -> None:
    """One structlog line per malformed request, no traceback, no phone number in clear."""
    for data in malformed_requests("markerlog"):
        assert raw_request(guarded, data)[0] == 400

    def logged() -> list[str]:
        text = guarded.log.read_text(errors="replace")
        return [line for line in text.splitlines() if "markerlog" in line]

    lines = wait_for(lambda: len(logged()) >= 2 and logged())
    for line in lines:
        entry = json.loads(line)  # the whole line is one JSON object
        assert entry["event"] == "http.malformed" and entry["status"] == 400, entry
        assert not re.search(r"555\D*123\D*4567", line) and PHONE_URL_ENCODED not in line
    log = guarded.log.read_text(errors="replace")
    assert "Error handling request" not in log and "aiohttp.server" not in log


def test_public_endpoints_ignore_credentials_they_do_not_need(guarded: Worker) -> None:
    """/health and /login answer as without them when a wrong Authorization or key is sent."""
    wrong = [
        {"Authorization": "Bearer nonsense"},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {"X-API-Key": "ock_00000000_garbage"},
    ]
    for headers in wrong:
        assert send(guarded, "GET", "/health", headers=headers)[0] == 200, headers
        assert send(guarded, "GET", "/login", headers=headers)[0] == 200, headers
    guarded.access.add_user("agent.pub", "long enough secret", parse_roles(A))
    _, headers, _ = send(guarded, "GET", "/login")
    cookie = headers["set-cookie"].split(";")[0]
    assert cookie.startswith(f"{LOGIN_COOKIE}=")
    token = cookie.split("=", 1)[1]
    body = {"name": "agent.pub", "password": "long enough secret", "csrf_token": token}
    status, _, answer = send(
        guarded,
        "POST",
        "/login",
        json.dumps(body).encode(),
        {"content-type": "application/json", "cookie": cookie, **wrong[0]},
    )
    assert status == 200 and answer["name"] == "agent.pub", answer


def test_lookup_text_over_200_characters_gets_400_saying_so(guarded: Worker) -> None:
    """A 7.8 KB address or a long q= is refused with the cap; type-ahead cuts its text."""
    for query, reason in (
        ({"address": "Birch Street " * 600}, "address has 7800 characters; at most 200"),
        ({"q": "x" * 201}, "q has 201 characters; at most 200"),
    ):
        status, _, body = send(
            guarded, "GET", f"/v1/outages?{urlencode(query)}", None, guarded.auth
        )
        assert status == 400 and body["error"] == reason, body
    status, _, body = send(
        guarded, "GET", f"/v1/suggest?{urlencode({'q': 'Birch ' * 100})}", None, guarded.auth
    )
    assert status == 200 and isinstance(body["suggestions"], list)
