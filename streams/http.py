"""HTTP API on the worker: ingest for integrators, the agent lookup, incidents for shift leads.

    POST /v1/calls | /v1/scada | /v1/planned-works   validate, route, publish -> 202 {event_id}
    GET  /v1/outages?premise=|building=|address=     is there a known fault at this place?
    GET  /v1/calls/{event_id}                         what became of a call
    GET  /v1/incidents, /v1/incidents/{id}            active incidents; one with its timeline
    POST /v1/incidents/{id}/acknowledge|cause|etr|resolve   a shift lead's action -> 202
    GET  /v1/incidents/{id}/acknowledge?expires=&token=   a notification's link: a page, no change
    POST /v1/incidents/{id}/acknowledge-link          that page's button -> 202 (200: owned already)
    GET  /v1/notifications?status=delivered|failed|silenced   what was sent, to whom, how
    GET  /v1/reports/daily?date=&format=              daily report: json, csv, table or png
    GET  /v1/reports/handover?format=                 shift handover
    GET  /v1/reports/callbacks?incident=&format=      callers of a restored incident
    GET  /v1/topology, /v1/topology/nodes/{id}        the network model, for operations
    GET  /v1/projections/lag                          events not yet in ClickHouse
    GET  /health, /ready                              liveness and readiness (no login)

Who may call what is in each operation (streams/web.py checks it); login, keys and the API
document are in streams/account.py. Every rejection is a 4xx whose JSON body says why.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import uuid
from collections.abc import Awaitable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import structlog
from aiohttp import web

from access.roles import Permission
from alerting.ack_link import refusal
from correlators.admission import Refused, admit_new
from correlators.routing import Unroutable, route
from events.codec import EventRejected, decode_inbound
from projections.chart import calls_per_hour_png
from projections.incidents import IncidentView, agent_sentence
from projections.reports import Report, ReportError, callbacks, daily, handover, report_day
from projections.store import StoreUnavailable
from streams.ack_page import confirm_page, done_page, owned_page, refused_page, wants_html
from streams.alert_feed import recent_notifications
from streams.metrics import backlog
from streams.projection_feed import projection_lag
from streams.web import SECURITY_HEADERS, Api, Call, Param, Rejected
from topology.model import Topology, UnresolvedLocation, Utility
from topology.phones import digits

if TYPE_CHECKING:
    from streams.app import Service

log = structlog.get_logger("outage.http")

CATCHING_UP = 50  # events behind from which /ready and the board say "catching up"
ENDPOINT_TYPES = {
    "calls": {"call_reported"},
    "scada": {"scada_signal"},
    "planned-works": {"planned_work_scheduled", "planned_work_cancelled"},
}
ACTIONS = {
    "acknowledge": "incident_acknowledged",
    "cause": "cause_set",
    "etr": "etr_set",
    "resolve": "incident_resolved",
}
ACTION_FIELDS = {"acknowledge": {"note"}, "cause": {"cause", "note"}, "etr": {"etr", "note"}}
ACTION_FIELDS["resolve"] = {"note"}
REPORT_FORMAT = Param(
    "format",
    "json, csv, table or png",
    schema={"type": "string", "enum": ["json", "csv", "table", "png"]},
)
ACK_LINK_BODY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["token", "expires"],
    "properties": {
        "token": {"type": "string", "minLength": 1, "maxLength": 64},
        "expires": {"type": "string", "pattern": "^[0-9]{1,12}$"},
    },
}


def incident_json(
    view: IncidentView, topology: Topology | None = None, *, timeline: bool = False
) -> dict[str, Any]:
    body = view.model_dump(mode="json", exclude={"timeline"} if not timeline else set())
    body["calls"] = len(view.call_ids)
    body["location"] = location(topology, view.device_id) if topology else None
    return body


def location(topology: Topology, node_id: str) -> dict[str, float] | None:
    """Where to draw a device: its own coordinates, else the nearest node below or above it."""
    if node_id not in topology:
        return None
    for candidate in (node_id, *topology.children(node_id), *reversed(topology.ancestors(node_id))):
        node = topology.node(candidate)
        if node.lat is not None and node.lon is not None:
            return {"lat": node.lat, "lon": node.lon}
    return None


def looks_like_phone(text: str) -> bool:
    return len(digits(text)) >= 7 and all(ch.isdigit() or ch in " +-().\t" for ch in text)


def sse(event: str, data: Any) -> bytes:
    """One server-sent event; JSON has no raw newlines, so one data line is enough."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def register(service: Service, api: Api) -> None:
    topology = service.correlator.topology
    op = api.op

    async def accept(call: Call, endpoint: str) -> web.Response:
        body = await call.body()
        if call.request.content_type != "application/json":
            raise Rejected(415, "send the event as application/json")
        try:
            event = decode_inbound(body)
        except EventRejected as error:
            raise Rejected(400, error.reason) from None
        if event.type not in ENDPOINT_TYPES[endpoint]:
            expected = " or ".join(sorted(ENDPOINT_TYPES[endpoint]))
            raise Rejected(400, f"/v1/{endpoint} takes {expected}, not {event.type}")
        event, digest = admitted(call, event)
        try:
            routed = route(topology, event)
        except Unroutable as error:
            raise Rejected(422, error.reason, suggestions=error.suggestions) from None
        await service.publish_inbound(event, key=routed[0].domain)
        service.recent_ids.remember(event.event_id, digest)
        first = routed[0]
        return web.json_response(
            {
                "event_id": event.event_id,
                "status": "accepted",
                "domain": first.domain,
                "node_id": first.node_id,
                "resolved_by": first.resolved_by,
            },
            status=202,
        )

    def admitted(call: Call, event: Any, *, history: bool = False) -> tuple[Any, str]:
        """The event stamped as accepted now by this caller, once its times can be placed and
        its id is not taken by other content (correlators/admission.py), and its digest."""
        now = datetime.now(UTC)
        try:
            digest = admit_new(event, now, service.time_bounds, service.recent_ids, history=history)
        except Refused as refusal:
            status = 409 if refusal.field == "event_id" else 400
            raise Rejected(status, refusal.reason, field=refusal.field) from None
        return event.model_copy(update={"recorded_at": now, "recorded_by": call.by}), digest

    @op(
        "POST",
        "/v1/history",
        Permission.REPORT_CALL,
        "Calls recorded offline (any age): kept for reports, never correlated or paged",
        body={
            "oneOf": [
                _ref("call"),
                {
                    "type": "object",
                    "required": ["events"],
                    "properties": {
                        "events": {"type": "array", "items": _ref("call"), "maxItems": 500}
                    },
                },
            ]
        },
        rate_limited=True,
        responses={202: "all accepted", 400: "one is not valid (none taken)", 409: "id reused"},
    )
    async def post_history(call: Call) -> web.Response:
        body = await call.body()
        if call.request.content_type != "application/json":
            raise Rejected(415, "send the calls as application/json")
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError) as error:
            raise Rejected(400, f"malformed JSON: {error}") from None
        items = (
            parsed.get("events") if isinstance(parsed, dict) and "events" in parsed else [parsed]
        )
        if not isinstance(items, list) or not 1 <= len(items) <= 500:
            raise Rejected(400, "events must be a list of 1 to 500 call_reported events")
        taken: list[tuple[Any, str]] = []
        digests: list[str] = []
        for index, item in enumerate(items):
            try:
                if not isinstance(item, dict):
                    raise EventRejected("an event must be a JSON object")
                event, digest = admitted(call, decode_inbound(item), history=True)
                domain = route(topology, event)[0].domain
            except EventRejected as error:
                raise Rejected(400, f"events[{index}]: {error.reason}", index=index) from None
            except Unroutable as error:
                raise Rejected(422, f"events[{index}]: {error.reason}", index=index) from None
            except Rejected as rejection:
                rejection.reason = f"events[{index}]: {rejection.reason}"
                rejection.extra["index"] = index
                raise
            taken.append((event, domain))
            digests.append(digest)
        await service.publish_history(taken)
        for (event, _), digest in zip(taken, digests, strict=True):
            service.recent_ids.remember(event.event_id, digest)
        return web.json_response(
            {"status": "accepted", "event_ids": [e.event_id for e, _ in taken]}, status=202
        )

    ingest = {
        "rate_limited": True,
        "responses": {202: "accepted", 400: "not a valid event", 422: "not on the network"},
    }

    @op("POST", "/v1/calls", Permission.REPORT_CALL, "Report a call", body=_ref("call"), **ingest)
    async def post_call(call: Call) -> web.Response:
        return await accept(call, "calls")

    @op(
        "POST", "/v1/scada", Permission.INGEST_SCADA, "A SCADA signal", body=_ref("scada"), **ingest
    )
    async def post_scada(call: Call) -> web.Response:
        return await accept(call, "scada")

    @op(
        "POST",
        "/v1/planned-works",
        Permission.INGEST_SCADA,
        "Schedule or cancel planned works",
        body=_ref("planned"),
        **ingest,
    )
    async def post_planned_work(call: Call) -> web.Response:
        return await accept(call, "planned-works")

    # Lookups get their own limit per key or user: 8 clients looking up addresses pushed /health
    # to p50 536 ms (issue 15). Text is capped at 200 characters, as type-ahead cuts it: a
    # 7.7 KB address held the event loop for ~50 ms.
    lookup_limit = api.limit("lookup", service.settings.lookup_rate, service.settings.lookup_burst)
    utilities = Param(
        "utility", "heat, power, ...", schema={"type": "string", "enum": list(get_args(Utility))}
    )

    @op(
        "GET",
        "/v1/outages",
        Permission.LOOKUP,
        "Is there a known fault at this place?",
        query=(
            *(
                Param(name, description, schema={"type": "string", "maxLength": 200})
                for name, description in (
                    ("q", "one search box: an address, a premise or building id, a phone number"),
                    ("premise", "premise id"),
                    ("building", "building id"),
                    ("address", "street address, fuzzy"),
                )
            ),
            utilities,
        ),
        responses={
            200: "the answer",
            404: "place not found, with suggestions",
            503: "too many address lookups at once (see Retry-After)",
        },
        rate_limited=lookup_limit,
    )
    async def get_outages(call: Call) -> web.Response:
        query = call.query
        premise, building = query.get("premise"), query.get("building")
        address = query.get("address")
        text = (query.get("q") or "").strip()
        if text:
            if text in topology and topology.node(text).kind in ("premise", "building"):
                premise, building = (
                    (text, None)
                    if topology.node(text).kind == "premise"
                    else (
                        None,
                        text,
                    )
                )
            elif looks_like_phone(text):
                premise = service.phone_book.premise(text)
                if premise is None:
                    reason = "no premise has this phone number in the phone book"
                    raise Rejected(404, reason, suggestions=[])
            else:
                address = text
        if not (premise or building or address):
            raise Rejected(400, "give q= (or premise=, building= or address=)")
        utility = query.get("utility")
        try:
            if address:  # fuzzy matching is pure Python: on a thread, not the event loop
                found = await api.matching.run(
                    lambda: topology.resolve(
                        premise_id=premise, building_id=building, address=address, utility=utility
                    )
                )
            else:  # ids are dict hits
                found = topology.resolve(premise_id=premise, building_id=building, utility=utility)
        except UnresolvedLocation as error:
            suggestions = [s.model_dump() for s in error.suggestions]
            raise Rejected(404, error.reason, suggestions=suggestions) from None
        path = topology.path(found.node_id)
        view = service.book.covering(path)
        node = topology.node(found.node_id)
        return web.json_response(
            {
                "status": "known_fault" if view else "no_known_fault",
                "node_id": found.node_id,
                "node_kind": node.kind,
                "utility": node.utility,
                "address": node.address,
                "resolved_by": found.how,
                "path": list(path),
                "incident": incident_json(view, topology) if view else None,
                "sentence": agent_sentence(view, service.settings.timezone),
            }
        )

    @op(
        "GET",
        "/v1/calls/{event_id}",
        Permission.LOOKUP,
        "What became of a call",
        responses={200: "its outcome", 404: "not known (yet)"},
    )
    async def get_call_outcome(call: Call) -> web.Response:
        event_id = call.params["event_id"]
        outcome = service.book.call_outcomes.get(event_id)
        if outcome is None:
            raise Rejected(404, f"no outcome known yet for call {event_id!r}")
        joined = outcome not in ("pending", "individual")
        return web.json_response(
            {
                "event_id": event_id,
                "outcome": "joined_incident" if joined else outcome,
                "incident_id": outcome if joined else None,
            }
        )

    @op("GET", "/v1/incidents", Permission.LOOKUP, "Active incidents", responses={200: "list"})
    async def get_incidents(call: Call) -> web.Response:
        active = service.book.active()
        return web.json_response({"incidents": [incident_json(v, topology) for v in active]})

    @op(
        "GET",
        "/v1/suggest",
        Permission.LOOKUP,
        "Addresses for type-ahead",
        query=(Param("q", "the text typed so far", required=True), utilities),
        responses={200: "up to 8 addresses", 503: "too many address lookups at once"},
        rate_limited=lookup_limit,
    )
    async def get_suggestions(call: Call) -> web.Response:
        text = call.query["q"].strip()[:200]  # typing on: a longer text is cut, not refused
        if len(text) < 2:
            return web.json_response({"suggestions": []})
        utility = call.query.get("utility")
        found = await api.matching.run(lambda: topology.suggest(text, limit=8, utility=utility))
        return web.json_response({"suggestions": [s.model_dump() for s in found]})

    @op(
        "GET",
        "/v1/stream",
        Permission.LOOKUP,
        "Server-sent events: a snapshot of active incidents, then every change",
        query=(
            Param(
                "seconds",
                "close after this long (default: stay open)",
                schema={"type": "integer", "minimum": 0, "maximum": 86400},
            ),
        ),
        produces=("text/event-stream",),
        responses={200: "the stream"},
    )
    async def get_stream(call: Call) -> web.StreamResponse:
        raw = call.query.get("seconds")
        try:
            seconds = float(raw) if raw is not None else None
        except ValueError:
            raise Rejected(400, f"seconds must be a number, not {raw!r}") from None
        if seconds is not None and not 0 <= seconds <= 86400:
            raise Rejected(400, "seconds must be between 0 and 86400")
        response = web.StreamResponse(
            headers={**SECURITY_HEADERS, "Content-Type": "text/event-stream"}
        )
        await response.prepare(call.request)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        service.subscribers.add(queue)
        deadline = None if seconds is None else time.monotonic() + seconds

        def snapshot() -> bytes:
            active = [incident_json(v, topology) for v in service.book.active()]
            return sse("snapshot", {"incidents": active})

        try:
            await response.write(snapshot())
            while deadline is None or time.monotonic() < deadline:
                wait = 15.0 if deadline is None else min(15.0, deadline - time.monotonic())
                try:
                    view = await asyncio.wait_for(queue.get(), max(wait, 0.0))
                except TimeoutError:
                    await response.write(b": still here\n\n")  # keeps proxies from closing it
                    continue
                await response.write(snapshot() if view.get("resync") else sse("incident", view))
        except (ConnectionResetError, RuntimeError):
            pass  # the browser went away
        finally:
            service.subscribers.discard(queue)
        return response

    @op(
        "GET",
        "/v1/incidents/{incident_id}",
        Permission.LOOKUP,
        "One incident with its timeline",
        responses={200: "the incident", 404: "no such incident"},
    )
    async def get_incident(call: Call) -> web.Response:
        incident_id = call.params["incident_id"]
        view = service.book.incidents.get(incident_id)
        if view is None:
            raise Rejected(404, f"no incident {incident_id!r}")
        return web.json_response(incident_json(view, topology, timeline=True))

    @op("GET", "/health", "public", "Liveness and counters", responses={200: "alive"})
    async def get_health(call: Call) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "ready": service.ready and service.book_caught_up,
                "network_nodes": len(topology),
                "incidents_active": len(service.book.active()),
                "backlog": backlog(service.app),
                "counters": service.counters,
            }
        )

    @op("GET", "/ready", "public", "Readiness", responses={200: "ready", 503: "starting"})
    async def get_ready(call: Call) -> web.Response:
        if service.ready and service.book_caught_up:
            # Behind under overload is still ready (taking every worker out of a load balancer
            # would help no one), but it says so: events not yet handled, and whether that is
            # more than a moment's worth.
            behind = backlog(service.app)
            return web.json_response(
                {"ready": True, "backlog": behind, "catching_up": (behind or 0) >= CATCHING_UP}
            )
        raise Rejected(503, "starting: joining the consumer group, reading incidents")

    async def report(call: Call, make: Any) -> web.Response:
        """Run a report on the store thread and answer it in the format asked for."""
        fmt = call.query.get("format", "json")
        if fmt not in ("json", "csv", "table", "png"):
            raise Rejected(400, "format must be json, csv, table or png")
        if service.sink is None:
            raise Rejected(503, "projections are switched off (OUTAGE_PROJECTIONS=false)")
        try:
            made: Report = await service.sink.run(make)
        except ReportError as error:
            raise Rejected(404 if "no incident" in str(error) else 409, str(error)) from None
        except StoreUnavailable as error:
            raise Rejected(503, f"the report store is unavailable: {error}") from None
        if fmt == "png":
            if made.chart is None:
                raise Rejected(400, "only the daily report has a chart")
            with tempfile.TemporaryDirectory() as folder:
                path = calls_per_hour_png(made.chart, Path(folder) / "chart.png")
                return web.Response(body=path.read_bytes(), content_type="image/png")
        types = {"json": "application/json", "csv": "text/csv", "table": "text/plain"}
        return web.Response(body=made.render(fmt).encode(), content_type=types[fmt])

    deadlines = service.correlator.rules.handling_deadlines()
    reports = {
        "produces": ("application/json", "text/csv", "text/plain", "image/png"),
        "responses": {
            200: "the report",
            404: "no such incident",
            409: "the report cannot be made (e.g. the incident is still open)",
            503: "projections off or store down",
        },
    }

    @op(
        "GET",
        "/v1/reports/daily",
        Permission.SUPERVISE,
        "Daily report",
        query=(Param("date", "YYYY-MM-DD", schema={"type": "string"}), REPORT_FORMAT),
        **reports,
    )
    async def get_daily_report(call: Call) -> web.Response:
        raw = call.query.get("date")
        now = datetime.now(UTC)
        try:
            day = report_day(date.fromisoformat(raw) if raw else now.date(), now.date())
        except ReportError as error:
            raise Rejected(400, str(error)) from None
        except ValueError:
            raise Rejected(400, f"date must be YYYY-MM-DD, not {raw!r}") from None
        return await report(call, lambda store: daily(store, day, deadlines, now))

    @op(
        "GET",
        "/v1/reports/handover",
        Permission.SUPERVISE,
        "Shift handover",
        query=(REPORT_FORMAT,),
        **reports,
    )
    async def get_handover_report(call: Call) -> web.Response:
        now = datetime.now(UTC)
        return await report(call, lambda store: handover(store, now))

    @op(
        "GET",
        "/v1/reports/callbacks",
        Permission.SUPERVISE,
        "Callers of a restored incident, to call back",
        query=(Param("incident", "incident id", required=True), REPORT_FORMAT),
        **reports,
    )
    async def get_callbacks_report(call: Call) -> web.Response:
        incident = call.query["incident"]
        return await report(call, lambda store: callbacks(store, incident))

    @op(
        "GET",
        "/v1/projections/lag",
        Permission.TOPOLOGY,
        "Events not yet in ClickHouse",
        responses={200: "lag per partition"},
    )
    async def get_projection_lag(call: Call) -> web.Response:
        return web.json_response(await projection_lag(service))

    @op("GET", "/v1/topology", Permission.TOPOLOGY, "The network model", responses={200: "ok"})
    async def get_topology(call: Call) -> web.Response:
        return web.json_response(
            {"nodes": len(topology), "kinds": topology.kinds(), "roots": topology.roots()}
        )

    @op(
        "GET",
        "/v1/topology/nodes/{node_id}",
        Permission.TOPOLOGY,
        "One network device: its path and the devices under it",
        responses={200: "the node", 404: "no such node"},
    )
    async def get_node(call: Call) -> web.Response:
        node_id = call.params["node_id"]
        node = topology.nodes.get(node_id)
        if node is None:
            raise Rejected(404, f"no network node {node_id!r}")
        return web.json_response(
            {
                **node.model_dump(mode="json"),
                "path": list(topology.path(node_id)),
                "children": sorted(topology.children(node_id)),
                "customers": topology.customers_under(node_id),
            }
        )

    @op(
        "GET",
        "/v1/notifications",
        Permission.SUPERVISE,
        "Notifications sent, failed or silenced",
        query=(
            Param(
                "status",
                "delivered, failed or silenced",
                schema={"type": "string", "enum": ["delivered", "failed", "silenced"]},
            ),
        ),
        responses={200: "recent notifications"},
    )
    async def get_notifications(call: Call) -> web.Response:
        status = call.query.get("status")
        if status not in (None, "delivered", "failed", "silenced"):
            raise Rejected(400, "status must be delivered, failed or silenced")
        return web.json_response({"notifications": recent_notifications(service, status)})

    def owner(incident: IncidentView) -> dict[str, Any]:
        """Who acknowledged first: the answer to every later acknowledgement of the incident."""
        at = incident.acknowledged_at
        return {
            "incident_id": incident.incident_id,
            "status": "already_acknowledged",
            "acknowledged_by": incident.acknowledged_by,
            "acknowledged_at": at.isoformat() if at else None,
        }

    async def act(call: Call, incident_id: str, kind: str, fields: dict[str, Any]) -> web.Response:
        """Validate and publish a shift lead's action on an open incident.

        Acknowledging is idempotent: an incident someone owns keeps its owner, the answer is 200
        naming them and nothing is published (the correlator ignores a racing second one too)."""
        incident = service.book.incidents.get(incident_id)
        if incident is None:
            raise Rejected(404, f"no incident {incident_id!r}")
        if not incident.active:
            raise Rejected(409, f"incident {incident_id!r} is {incident.state}")
        if kind == "incident_acknowledged" and incident.acknowledged_by:
            return web.json_response(owner(incident))
        try:
            event = decode_inbound(
                {
                    **fields,
                    "type": kind,
                    "schema_version": 1,
                    "event_id": f"action-{uuid.uuid4()}",
                    "occurred_at": datetime.now(UTC).isoformat(),
                    "incident_id": incident_id,
                }
            )
        except EventRejected as error:
            raise Rejected(400, error.reason) from None
        await service.publish_inbound(event, key=incident.domain)
        log.info("operator.action", action=kind, incident_id=incident_id, by=fields["by"])
        return web.json_response(
            {"event_id": event.event_id, "incident_id": incident_id}, status=202
        )

    async def follow_link(call: Call, token: str, expires: str, *, confirmed: bool) -> web.Response:
        """The acknowledge link: opened (a page; nothing changes) or confirmed by its button.

        The token is checked first, so a guessed link learns nothing about the incident."""
        incident_id = call.params["incident_id"]
        page = wants_html(call.request) or not confirmed  # the link itself is opened to read
        reason = refusal(service.hash_key, incident_id, token, expires, datetime.now(UTC))
        if reason:
            raise Rejected(403, reason)
        incident = service.book.incidents.get(incident_id)
        if incident is None:
            raise Rejected(404, f"no incident {incident_id!r}")
        if not incident.active:
            raise Rejected(409, f"incident {incident_id!r} is {incident.state}")
        if incident.acknowledged_by:
            return owned_page(incident) if page else web.json_response(owner(incident))
        if not confirmed:
            return confirm_page(incident, token, expires)
        response = await act(
            call, incident_id, "incident_acknowledged", {"by": "notification link"}
        )
        return done_page(incident_id) if page and response.status == 202 else response

    async def as_page(call: Call, answer: Awaitable[web.Response]) -> web.Response:
        """A refusal a browser can read: a page for the link's visitors, JSON for API clients."""
        try:
            return await answer
        except Rejected as rejection:
            if wants_html(call.request):
                return refused_page(rejection.status, rejection.reason)
            raise

    link_responses = {
        403: "the link's token is wrong or it expired",
        404: "no such incident",
        409: "the incident is no longer active",
    }

    @op(
        "GET",
        "/v1/incidents/{incident_id}/acknowledge",
        "public",
        "The acknowledge link of a notification: a page whose button acknowledges (token and "
        "expiry are the credential; opening it changes nothing)",
        query=(
            Param("token", "the link's token", required=True),
            # Not required: a link from before expiries gets the 403 page saying so, not a 400.
            Param("expires", "the link's expiry, unix seconds"),
        ),
        produces=("text/html",),
        responses={200: "the page: a button, or who acknowledged already", **link_responses},
    )
    async def get_acknowledge_link(call: Call) -> web.Response:
        token, expires = call.query.get("token", ""), call.query.get("expires", "")
        return await as_page(call, follow_link(call, token, expires, confirmed=False))

    @op(
        "POST",
        "/v1/incidents/{incident_id}/acknowledge-link",
        "public",
        "The acknowledge page's button: acknowledges as 'notification link' unless owned already",
        body=ACK_LINK_BODY,
        form=True,
        produces=("application/json", "text/html"),
        responses={
            200: "acknowledged already: who and when (nothing changes)",
            202: "acknowledged",
            **link_responses,
        },
    )
    async def post_acknowledge_link(call: Call) -> web.Response:
        async def answer() -> web.Response:
            body = await call.fields()
            extra = sorted(set(body) - {"token", "expires"})
            if extra:
                raise Rejected(400, f"unexpected field {extra[0]!r}; send token and expires")
            token, expires = body.get("token"), body.get("expires")
            if isinstance(expires, int) and not isinstance(expires, bool):
                expires = str(expires)
            if not (isinstance(token, str) and token and isinstance(expires, str) and expires):
                raise Rejected(400, "send token and expires as the link has them")
            return await follow_link(call, token, expires, confirmed=True)

        return await as_page(call, answer())

    def action(name: str) -> None:
        allowed = ACTION_FIELDS[name]

        async def post_action(call: Call) -> web.Response:
            body = await call.fields()
            body.pop("csrf_token", None)  # a page's form carries it; it is checked already
            extra = sorted(set(body) - allowed)
            if extra:
                reason = f"unexpected field {extra[0]!r}; {name} takes {', '.join(sorted(allowed))}"
                if "by" in extra:
                    reason = "'by' comes from your login or API key; do not send it"
                raise Rejected(400, reason)
            return await act(
                call, call.params["incident_id"], ACTIONS[name], {**body, "by": call.by}
            )

        op(
            "POST",
            f"/v1/incidents/{{incident_id}}/{name}",
            Permission.ACT,
            f"{name.capitalize()} an incident (who: the login or key)",
            body=_ref(f"action_{name}"),
            form=True,
            responses={202: "recorded", 404: "no such incident", 409: "not active"},
        )(post_action)

    for name in ACTIONS:
        action(name)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}
