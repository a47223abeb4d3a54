"""Alerts from a real worker to real receivers: a webhook server and an SMTP server on loopback.

The worker's rules make the acknowledgement timers run in seconds; its own timer sends the
ticks that fire them, as in production (no test sleeps for minutes). Its notifications are
grouped with a wait of one second; a second worker on a network of its own runs a heat-source
storm through the default wait.
"""

import asyncio
import json
import os
import signal
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from aiosmtpd.controller import Controller

from alerting.notify import verify
from streams.broker import EmbeddedBroker, free_port
from streams.follow import TopicFollower
from tests.integration.conftest import Worker, http, start_worker, wait_for

pytestmark = pytest.mark.integration
SECRET = "hook-secret"


class Hooks:
    """A real HTTP receiver: records every notification it accepts; `/broken` always fails."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.broken_calls = 0
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/broken":
                    hooks.broken_calls += 1
                    self.send_response(500)
                    self.end_headers()
                    return
                assert verify(SECRET, body, self.headers["X-Outage-Signature"])
                hooks.received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self, incident: str, kind: str | None = None) -> list[dict[str, Any]]:
        """Every alert about `incident` the notifications so far covered, in order."""
        return [
            a
            for n in self.received
            for a in n.get("alerts") or [n["alert"]]
            if a["incident_id"] == incident and (kind is None or a["kind"] == kind)
        ]

    def covering(self, alert_ids: set[str]) -> list[dict[str, Any]]:
        """The notifications that covered any of `alert_ids`."""
        return [
            n for n in self.received if alert_ids & {a["event_id"] for a in n.get("alerts", [])}
        ]


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture(scope="module")
def receivers() -> Iterator[tuple[Hooks, Mailbox, int]]:
    hooks, mailbox, smtp_port = Hooks(), Mailbox(), free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    yield hooks, mailbox, smtp_port
    controller.stop()
    hooks.server.shutdown()


@pytest.fixture(scope="module")
def alerting_worker(
    broker: EmbeddedBroker,
    receivers: tuple[Hooks, Mailbox, int],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Worker, Path, dict[str, str]]]:
    hooks, _, smtp_port = receivers
    folder = tmp_path_factory.mktemp("alerting")
    silence_ends = datetime.now(UTC) + timedelta(seconds=25)
    # A shift that began this minute: its lead is owed a handover as soon as the worker runs.
    shift_start = datetime.now(UTC).strftime("%H:%M")
    shift_end = (datetime.now(UTC) + timedelta(hours=8)).strftime("%H:%M")
    config = folder / "alerting.toml"
    config.write_text(f"""
public_url = "http://127.0.0.1:1"
group_wait_seconds = 1
group_interval_seconds = 3
[receivers.lead]
webhook = {{ url = "http://127.0.0.1:{hooks.port}/hook", secret = "{SECRET}" }}
[receivers.supervisor]
email = {{ to = ["supervisor@example.org"] }}
[receivers.broken]
webhook = {{ url = "http://127.0.0.1:{hooks.port}/broken", secret = "{SECRET}" }}
[smtp]
host = "127.0.0.1"
port = {smtp_port}
sender = "outage@example.org"
starttls = false
[delivery]
retries = 2
backoff_initial_seconds = 0.1
backoff_max_seconds = 0.2
[roster]
timezone = "UTC"
[[roster.shifts]]
name = "test"
days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
start = "{shift_start}"
end = "{shift_end}"
lead = "lead"
supervisor = "supervisor"
[route]
receiver = "lead"
[[route.routes]]
match = {{ escalation = 2 }}
receiver = "supervisor"
[[route.routes]]
match = {{ utility = "heat" }}
receiver = "broken"
[[silences]]
starts = "2020-01-01T00:00:00+00:00"
ends = "{silence_ends.isoformat()}"
matchers = {{ device_id = "B-FDR3-T1-F1-1" }}
comment = "test window"
created_by = "tests"
""")
    rules = folder / "rules.toml"
    # Timers in seconds; no roll-up above transformers, so this module's incidents on
    # different feeders stay apart (roll-up has tests of its own).
    rules.write_text(
        "[power]\nack_within_minutes = 0.1\nack_reminders = 2\n"
        "levels.feeder = { min_reporters = 100000 }\n"
        "levels.substation = { min_reporters = 100000 }\n"
        "[heat]\nack_within_minutes = 600\n"
    )
    env = {
        "OUTAGE_ALERTING": str(config),
        "OUTAGE_RULES": str(rules),
        "OUTAGE_HASH_KEY": "k",
        "OUTAGE_PROJECTIONS": "false",
        "OUTAGE_APP_ID": f"alerting-{uuid.uuid4().hex[:6]}",
    }
    worker = start_worker(broker, folder, **env)
    yield worker, folder, {**env, "SILENCE_ENDS": silence_ends.isoformat()}
    worker.stop()


def call(premise: str, utility: str = "power") -> dict[str, Any]:
    return {
        "type": "call_reported",
        "schema_version": 1,
        "event_id": f"call-{uuid.uuid4()}",
        "occurred_at": datetime.now(UTC).isoformat(),
        "utility": utility,
        "premise_id": premise,
    }


def open_incident(worker: Worker, building: str, utility: str = "power") -> str:
    for n in range(1, 4):
        assert (
            worker.post(
                "/v1/calls",
                call(f"{building}-{n:02}" if utility == "heat" else f"{building}-{n}", utility),
            )[0]
            == 202
        )
    premise = f"{building}-04" if utility == "heat" else f"{building}-4"
    found = wait_for(
        lambda: (
            (a := worker.get(f"/v1/outages?premise={premise}")[1])["status"] == "known_fault" and a
        )
    )
    return str(found["incident"]["incident_id"])


def test_a_silence_suppresses_and_its_end_resumes(
    alerting_worker: tuple[Worker, Path, dict[str, str]], receivers: tuple[Hooks, Mailbox, int]
) -> None:
    """A configured silence (this building, until 25 s after the worker started) records its
    alerts as silenced; after the window the next change is delivered."""
    worker, _, env = alerting_worker
    hooks, _, _ = receivers
    incident = open_incident(worker, "P-FDR3-T1-F1-B1")
    silenced = wait_for(
        lambda: [
            n
            for n in worker.get("/v1/notifications?status=silenced")[1]["notifications"]
            if n["incident_id"] == incident
        ],
        timeout=20,
    )
    assert silenced[0]["silenced_by"]
    assert hooks.alerts(incident) == []
    ends = datetime.fromisoformat(env["SILENCE_ENDS"])
    wait_for(lambda: datetime.now(UTC) > ends, timeout=40)
    # After the window, the next change of the incident reaches the lead.
    assert worker.post(f"/v1/incidents/{incident}/resolve", {})[0] == 202
    wait_for(lambda: hooks.alerts(incident, "incident_restored"), timeout=20)


def test_a_shift_lead_silences_an_area_at_run_time_and_ends_it(
    alerting_worker: tuple[Worker, Path, dict[str, str]], receivers: tuple[Hooks, Mailbox, int]
) -> None:
    """POST /v1/silences mutes matching alerts, named after the lead; DELETE ends it."""
    worker, _, _ = alerting_worker
    hooks, _, _ = receivers
    lead = worker.person("lead.sam", "shift_lead")
    ends = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    body = {"matchers": {"area": "FDR-3"}, "ends": ends, "comment": "crew on site"}
    status, made = lead.request("POST", "/v1/silences", body)
    assert status == 201 and made["created_by"] == "lead.sam" and made["active"]
    status, answer = lead.request("POST", "/v1/silences", {**body, "matchers": {}})
    assert status == 400 and "matcher" in answer["error"]
    listed = lead.request("GET", "/v1/silences")[1]["silences"]
    assert {"run time", "configuration"} == {s["source"] for s in listed}

    incident = open_incident(worker, "P-FDR3-T2-F1-B1")
    silenced = wait_for(
        lambda: [
            n
            for n in worker.get("/v1/notifications?status=silenced")[1]["notifications"]
            if n["incident_id"] == incident
        ],
        timeout=20,
    )
    assert "crew on site (by lead.sam" in silenced[0]["silenced_by"]
    assert hooks.alerts(incident) == []

    status, ended = lead.request("DELETE", f"/v1/silences/{made['id']}")
    assert status == 200 and ended["by"] == "lead.sam"
    assert lead.request("DELETE", f"/v1/silences/{made['id']}")[0] == 404
    assert worker.post(f"/v1/incidents/{incident}/resolve", {})[0] == 202
    wait_for(lambda: hooks.alerts(incident, "incident_restored"), timeout=20)


def test_unacknowledged_incident_reminds_the_lead_then_escalates_to_the_supervisor(
    alerting_worker: tuple[Worker, Path, dict[str, str]], receivers: tuple[Hooks, Mailbox, int]
) -> None:
    """Opened: one webhook notice; 6 s later a reminder; 12 s later an e-mail to the supervisor."""
    worker, _, _ = alerting_worker
    hooks, mailbox, _ = receivers
    incident = open_incident(worker, "P-FDR1-T1-F1-B1")
    wait_for(lambda: hooks.alerts(incident, "incident_opened"), timeout=20)
    reminder = wait_for(lambda: hooks.alerts(incident, "incident_unacknowledged"), timeout=30)
    assert reminder[0]["escalation"] == 1
    mail = wait_for(
        lambda: [m for m in mailbox.messages if incident in m["Subject"] + m.get_payload()],
        timeout=30,
    )
    assert mail[0]["To"] == "supervisor@example.org"
    assert len(hooks.alerts(incident, "incident_opened")) == 1  # one notice per change


def test_the_acknowledge_link_stops_the_reminders(
    alerting_worker: tuple[Worker, Path, dict[str, str]], receivers: tuple[Hooks, Mailbox, int]
) -> None:
    """The link opens a page; its button acknowledges once; no reminder follows."""
    worker, _, _ = alerting_worker
    hooks, _, _ = receivers
    incident = open_incident(worker, "P-FDR2-T1-F1-B1")
    notice = wait_for(
        lambda: [n for n in hooks.received if n["alert"]["incident_id"] == incident], timeout=20
    )
    link = notice[0]["links"]["acknowledge"].replace("http://127.0.0.1:1", worker.base)
    query = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    hours = (int(query["expires"]) - datetime.now(UTC).timestamp()) / 3600
    assert 23.5 < hours <= 24  # OUTAGE_ACK_LINK_HOURS' default
    status, page = fetch("GET", link)
    assert status == 200 and 'action="/v1/incidents/' in page and "Acknowledge" in page
    status, _ = http("GET", link.replace("token=", "token=x"))
    assert status == 403
    button = f"{worker.base}/v1/incidents/{incident}/acknowledge-link"
    status, page = fetch("POST", button, urlencode(query).encode())
    assert status == 202 and "acknowledged" in page
    wait_for(lambda: worker.get(f"/v1/incidents/{incident}")[1]["acknowledged_by"])
    status, body = http("POST", button, query)
    assert status == 200 and body["acknowledged_by"] == "notification link"
    # Well past both reminder times (6 s and 12 s after opening): none came.
    deadline = datetime.now(UTC) + timedelta(seconds=14)
    while datetime.now(UTC) < deadline:
        assert hooks.alerts(incident, "incident_unacknowledged") == []
        wait_for(lambda: True, timeout=1)
    timeline = worker.get(f"/v1/incidents/{incident}")[1]["timeline"]
    lines = [e["summary"] for e in timeline if e["summary"].startswith("acknowledged")]
    assert lines == ["acknowledged by notification link"]


def fetch(method: str, url: str, form: bytes | None = None) -> tuple[int, str]:
    """What a browser gets: (status, page), following no links."""
    headers = {"Accept": "text/html"}
    if form is not None:
        headers["content-type"] = "application/x-www-form-urlencoded"
    request = urllib.request.Request(url, data=form, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_a_failing_receiver_is_retried_and_reported(
    alerting_worker: tuple[Worker, Path, dict[str, str]], receivers: tuple[Hooks, Mailbox, int]
) -> None:
    """Heat alerts go to a receiver that always fails: 3 attempts, then a 'failed' record."""
    worker, _, _ = alerting_worker
    hooks, _, _ = receivers
    incident = open_incident(worker, "P-HSUB2-B3", utility="heat")
    failed = wait_for(
        lambda: [
            n
            for n in worker.get("/v1/notifications?status=failed")[1]["notifications"]
            if n["incident_id"] == incident
        ],
        timeout=30,
    )
    assert failed[0]["attempts"] == 3 and "500" in failed[0]["last_error"]
    assert hooks.broken_calls >= 3


def test_the_incoming_lead_gets_the_handover_at_shift_change(
    alerting_worker: tuple[Worker, Path, dict[str, str]], receivers: tuple[Hooks, Mailbox, int]
) -> None:
    """The shift that began this minute: its lead receives the handover of open incidents."""
    hooks, _, _ = receivers
    handover = wait_for(
        lambda: [n for n in hooks.received if n["alert"]["kind"] == "handover"], timeout=20
    )
    assert handover[0]["receiver"] == "lead"
    assert handover[0]["text"].startswith("Shift handover")


def state_of(worker: Worker, path: str) -> str:
    return str(worker.get(path)[1]["state"])


def test_a_storm_gives_one_notification_per_incident_change(
    alerting_worker: tuple[Worker, Path, dict[str, str]], receivers: tuple[Hooks, Mailbox, int]
) -> None:
    """Calls, more calls, a breaker trip, its closing: the lead hears each change once."""
    worker, _, _ = alerting_worker
    hooks, _, _ = receivers
    incident = open_incident(worker, "P-FDR2-T4-F2-B3")
    base = f"/v1/incidents/{incident}"
    assert worker.post(f"{base}/acknowledge", {})[0] == 202  # no reminders
    for premise in ("P-FDR2-T4-F2-B3-4", "P-FDR2-T4-F2-B2-1"):  # more calls: no new change
        assert worker.post("/v1/calls", call(premise))[0] == 202
    for name in ("breaker_open", "breaker_closed"):
        signal = {
            "type": "scada_signal",
            "schema_version": 1,
            "event_id": f"s-{uuid.uuid4()}",
            "occurred_at": datetime.now(UTC).isoformat(),
            "device_id": "FU-FDR2-T4-2",
            "signal": name,
            "quality": "good",
        }
        assert worker.post("/v1/scada", signal)[0] == 202
        wait_for(lambda: state_of(worker, base) in ("confirmed", "restored"))
    wait_for(lambda: state_of(worker, base) == "restored")
    # The restore's notification is the last; then the timeline has every alert delivered
    # (the incident stream and the alerts topic are read apart: either may come first).
    wait_for(lambda: hooks.alerts(incident, "incident_restored"), timeout=20)

    def alerts_on_timeline() -> list[dict[str, Any]]:
        timeline = worker.get(base)[1]["timeline"]
        return [e for e in timeline if e["type"] == "alert_raised"]

    delivered_ids = {a["event_id"] for a in hooks.alerts(incident)}
    raised = wait_for(
        lambda: (r := alerts_on_timeline()) and len(r) >= len(delivered_ids) and r, timeout=20
    )
    kinds = [a["kind"] for a in hooks.alerts(incident)]
    assert kinds[0] == "incident_opened" and kinds[-1] == "incident_restored"
    assert "incident_confirmed" in kinds
    assert len(kinds) == len(raised)  # one notification per alert raised, none twice
    keys = [n["key"] for n in hooks.received if n["alert"]["incident_id"] == incident]
    assert len(keys) == len(set(keys))
    assert all(
        n["receiver"] == "lead" for n in hooks.received if n["alert"]["incident_id"] == incident
    )


def test_a_worker_killed_before_the_timer_fires_still_fires_it_once(
    broker: EmbeddedBroker,
    alerting_worker: tuple[Worker, Path, dict[str, str]],
    receivers: tuple[Hooks, Mailbox, int],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """SIGKILL after the incident opened, restart: its reminder arrives, exactly once."""
    worker, _, env = alerting_worker
    hooks, mailbox, _ = receivers
    incident = open_incident(worker, "P-FDR1-T3-F2-B2")
    wait_for(lambda: hooks.alerts(incident, "incident_opened"), timeout=20)
    os.kill(worker.process.pid, signal.SIGKILL)
    worker.process.wait()
    env = {k: v for k, v in env.items() if k != "SILENCE_ENDS"}
    restarted = start_worker(broker, tmp_path_factory.mktemp("again"), **env)
    try:
        wait_for(lambda: hooks.alerts(incident, "incident_unacknowledged"), timeout=40)
        # The supervisor's e-mail is the last timer: once it is in, every timer has fired.
        wait_for(
            lambda: [m for m in mailbox.messages if incident in m["Subject"] + m.get_payload()],
            timeout=40,
        )
        assert len(hooks.alerts(incident, "incident_unacknowledged")) == 1
        handovers = [n for n in hooks.received if n["alert"]["kind"] == "handover"]
        assert len(handovers) == 1  # the restarted worker did not send it again
        keys = [n["key"] for n in hooks.received if n["alert"]["incident_id"] == incident]
        assert len(keys) == len(set(keys))
        assert len(hooks.alerts(incident, "incident_opened")) == 1
    finally:
        restarted.stop()


# -- grouping: a heat-source storm on a network of its own, with the default wait ------------

STORM_BUILDINGS = 50


def storm_network(path: Path) -> None:
    """HS-T feeds 50 buildings of two flats; HS-U feeds two buildings of two flats."""
    rows = ["id,kind,parent,utility,customers,address,lat,lon"]
    for source, buildings in (("HS-T", STORM_BUILDINGS), ("HS-U", 2)):
        rows.append(f"{source},heat_source,,heat,0,,52.5,13.4")
        for b in range(1, buildings + 1):
            building = f"B-{source}-{b:02}"
            rows.append(f"{building},building,{source},heat,0,,52.5,13.4")
            rows += [f"P-{source}-{b:02}-{f},premise,{building},heat,1,,52.5,13.4" for f in (1, 2)]
    path.write_text("\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def storm_broker() -> Iterator[EmbeddedBroker]:
    """A broker of its own: the module's other worker reads every alert of its broker."""
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture(scope="module")
def storm_worker(
    storm_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Worker, Hooks]]:
    """A worker whose heat source takes all 50 buildings' incidents into one at the last call.

    Rules: two flats make a building incident; the heat source needs every building, so the
    storm opens 49 building incidents, then the 100th call rolls the first up to the source
    and merges the rest into it. HS-U's two buildings never roll up: separate faults.
    Grouping: the defaults (10 s wait), and restorations after 2 s (a route of their own).
    """
    hooks = Hooks()
    folder = tmp_path_factory.mktemp("storm")
    storm_network(folder / "network.csv")
    (folder / "rules.toml").write_text(
        "[heat]\nack_within_minutes = 600\n"
        "levels.building = { min_reporters = 2 }\n"
        f"levels.heat_source = {{ min_reporters = {2 * STORM_BUILDINGS}, "
        f"min_children = {STORM_BUILDINGS}, min_child_share = 0, min_customer_share = 0 }}\n"
    )
    (folder / "alerting.toml").write_text(f"""
[receivers.lead]
webhook = {{ url = "http://127.0.0.1:{hooks.port}/storm", secret = "{SECRET}" }}
[route]
receiver = "lead"
[[route.routes]]
match = {{ kind = "incident_restored" }}
group_wait_seconds = 2
""")
    worker = start_worker(
        storm_broker,
        folder,
        OUTAGE_TOPOLOGY=json.dumps([str(folder / "network.csv")]),
        OUTAGE_ALERTING=str(folder / "alerting.toml"),
        OUTAGE_RULES=str(folder / "rules.toml"),
        OUTAGE_HASH_KEY="k",
        OUTAGE_PROJECTIONS="false",
        OUTAGE_APP_ID=f"storm-{uuid.uuid4().hex[:6]}",
    )
    yield worker, hooks
    worker.stop()
    hooks.server.shutdown()


def raised(broker: EmbeddedBroker, domain: str, kind: str | None = None) -> set[str]:
    """Ids of the alerts on the `alerts` topic for `domain` (of `kind`), as the broker has them."""

    async def read() -> list[Any]:
        follower = TopicFollower(broker.bootstrap, "alerts", 1)
        await follower.start()
        try:
            return await follower.read_to_now()
        finally:
            await follower.stop()

    bodies = [json.loads(r.value) for r in asyncio.run(read())]
    return {
        b["event_id"]
        for b in bodies
        if b["domain"] == domain and (kind is None or b["kind"] == kind)
    }


def covered(hooks: Hooks, alert_ids: set[str]) -> list[dict[str, Any]]:
    """The notifications covering `alert_ids`, once every one of them is covered."""
    notes = hooks.covering(alert_ids)
    return notes if {a["event_id"] for n in notes for a in n["alerts"]} >= alert_ids else []


def test_a_heat_source_storm_is_one_notification_for_the_survivor(
    storm_broker: EmbeddedBroker, storm_worker: tuple[Worker, Hooks]
) -> None:
    """49 building incidents opened and merged into one within the wait: one notification
    naming the survivor, its incidents and calls; its restoration is one more."""
    worker, hooks = storm_worker
    for b in range(1, STORM_BUILDINGS + 1):
        for flat in (1, 2):
            assert worker.post("/v1/calls", call(f"P-HS-T-{b:02}-{flat}", "heat"))[0] == 202
    lookup = f"/v1/outages?premise=P-HS-T-{STORM_BUILDINGS:02}-1"
    found = wait_for(
        lambda: (
            (a := worker.get(lookup)[1])["status"] == "known_fault"
            and a["incident"]["device_id"] == "HS-T"
            and a
        )
    )
    survivor = found["incident"]["incident_id"]
    # 49 opened, 1 rolled up: on the topic before the merge the lookup saw.
    storm = wait_for(lambda: (ids := raised(storm_broker, "HS-T")) and len(ids) == 50 and ids)

    [page] = wait_for(lambda: covered(hooks, storm), timeout=40)
    assert page["group"]["incident_id"] == survivor == page["alert"]["incident_id"]
    assert len(page["group"]["incidents"]) == STORM_BUILDINGS - 1
    assert page["group"]["calls"] == 2 * STORM_BUILDINGS and not page["group"]["update"]
    assert f"HS-T, {STORM_BUILDINGS - 1} incidents, {2 * STORM_BUILDINGS} calls" in page["subject"]
    assert {a["event_id"] for a in page["alerts"]} == storm

    assert worker.post(f"/v1/incidents/{survivor}/resolve", {})[0] == 202
    # The survivor and each incident merged into it.
    restored = wait_for(
        lambda: (
            (ids := raised(storm_broker, "HS-T", "incident_restored"))
            and len(ids) == STORM_BUILDINGS - 1
            and ids
        )
    )
    [over] = wait_for(lambda: covered(hooks, restored), timeout=20)
    assert over["group"]["incident_id"] == survivor and over["alert"]["kind"] == "incident_restored"
    assert over["group"]["update"] and len(hooks.covering(storm | restored)) == 2


def test_two_separate_faults_are_two_notifications(
    storm_broker: EmbeddedBroker, storm_worker: tuple[Worker, Hooks]
) -> None:
    """Two building faults that never merge page separately, one notification each."""
    worker, hooks = storm_worker
    for b in (1, 2):
        for flat in (1, 2):
            assert worker.post("/v1/calls", call(f"P-HS-U-{b:02}-{flat}", "heat"))[0] == 202
    faults = wait_for(lambda: (ids := raised(storm_broker, "HS-U")) and len(ids) == 2 and ids)
    pages = wait_for(lambda: covered(hooks, faults), timeout=40)
    assert len(pages) == 2
    assert sorted(len(p["alerts"]) for p in pages) == [1, 1]
    assert len({p["alert"]["incident_id"] for p in pages}) == 2
