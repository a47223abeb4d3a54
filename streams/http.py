"""HTTP API on the worker: ingest for integrators, the agent lookup, incidents for shift leads.

    POST /v1/calls | /v1/scada | /v1/planned-works   validate, route, publish -> 202 {event_id}
    GET  /v1/outages?premise=|building=|address=     is there a known fault at this place?
    GET  /v1/calls/{event_id}                         what became of a call
    GET  /v1/incidents, /v1/incidents/{id}            active incidents; one with its timeline
    POST /v1/incidents/{id}/acknowledge|cause|etr|resolve   a shift lead's action -> 202
    GET  /v1/incidents/{id}/acknowledge?token=         the one-click link in a notification
    GET  /v1/notifications?status=delivered|failed|silenced   what was sent, to whom, how
    GET  /v1/reports/daily?date=&format=              daily report: json, csv, table or png
    GET  /v1/reports/handover?format=                 shift handover
    GET  /v1/reports/callbacks?incident=&format=      callers of a restored incident
    GET  /v1/projections/lag                          events not yet in ClickHouse
    GET  /health                                      liveness and counters
    GET  /ready                                       200 once started, 503 before

Every rejection is a 4xx whose JSON body says why; nothing a client sends reaches a 5xx.
"""

from __future__ import annotations

import hmac
import json
import tempfile
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import structlog
from aiohttp import web
from faust.web import Request, Response, View

from correlators.routing import Unroutable, route
from events.codec import MAX_EVENT_BYTES, EventRejected, decode_inbound
from projections.chart import calls_per_hour_png
from projections.incidents import IncidentView, agent_sentence
from projections.reports import Report, ReportError, callbacks, daily, handover
from projections.store import StoreUnavailable
from streams.alert_feed import ack_token, recent_notifications
from streams.projection_feed import projection_lag
from topology.model import UnresolvedLocation

if TYPE_CHECKING:
    from streams.app import Service

log = structlog.get_logger("outage.http")

ENDPOINT_TYPES = {
    "calls": {"call_reported"},
    "scada": {"scada_signal"},
    "planned-works": {"planned_work_scheduled", "planned_work_cancelled"},
}


def incident_json(view: IncidentView, *, timeline: bool = False) -> dict[str, Any]:
    body = view.model_dump(mode="json", exclude={"timeline"} if not timeline else set())
    body["calls"] = len(view.call_ids)
    return body


def register(service: Service) -> None:
    app = service.app
    topology = service.correlator.topology

    def problem(view: View, status: int, reason: str, **extra: Any) -> Response:
        return view.json({"error": reason, **extra}, status=status)

    async def accept(view: View, request: Request, endpoint: str) -> Response:
        raw = cast(web.Request, request)  # faust's aiohttp driver passes aiohttp's request
        if (raw.content_length or 0) > MAX_EVENT_BYTES:
            return problem(view, 413, f"body over {MAX_EVENT_BYTES} bytes")
        body = await raw.content.read(MAX_EVENT_BYTES + 1)
        if len(body) > MAX_EVENT_BYTES:
            return problem(view, 413, f"body over {MAX_EVENT_BYTES} bytes")
        try:
            event = decode_inbound(body)
        except EventRejected as error:
            return problem(view, 400, error.reason)
        if event.type not in ENDPOINT_TYPES[endpoint]:
            expected = " or ".join(sorted(ENDPOINT_TYPES[endpoint]))
            return problem(view, 400, f"/v1/{endpoint} takes {expected}, not {event.type}")
        try:
            routed = route(topology, event)
        except Unroutable as error:
            return problem(view, 422, error.reason, suggestions=error.suggestions)
        event = event.model_copy(update={"recorded_at": datetime.now(UTC)})
        await service.publish_inbound(event, key=routed[0].domain)
        first = routed[0]
        return view.json(
            {
                "event_id": event.event_id,
                "status": "accepted",
                "domain": first.domain,
                "node_id": first.node_id,
                "resolved_by": first.resolved_by,
            },
            status=202,
        )

    def guarded(handler: Any) -> Any:
        """A bug must answer 500 with a reference, never a stack trace, and stay logged."""

        async def run(self: View, request: Request, **kwargs: Any) -> Response:
            try:
                response: Response = await handler(self, request, **kwargs)
                return response
            except Exception:
                log.exception("http.failed", path=str(request.url.path))
                return problem(self, 500, "internal error; the service log has the details")

        return run

    @app.page("/v1/calls")
    class Calls(View):
        @guarded
        async def post(self, request: Request) -> Response:
            return await accept(self, request, "calls")

    @app.page("/v1/scada")
    class Scada(View):
        @guarded
        async def post(self, request: Request) -> Response:
            return await accept(self, request, "scada")

    @app.page("/v1/planned-works")
    class PlannedWorks(View):
        @guarded
        async def post(self, request: Request) -> Response:
            return await accept(self, request, "planned-works")

    @app.page("/v1/outages")
    class Outages(View):
        @guarded
        async def get(self, request: Request) -> Response:
            query = cast(web.Request, request).query
            premise, building = query.get("premise"), query.get("building")
            address = query.get("address")
            if not (premise or building or address):
                return problem(self, 400, "give one of premise=, building= or address=")
            try:
                found = topology.resolve(
                    premise_id=premise,
                    building_id=building,
                    address=address,
                    utility=query.get("utility"),
                )
            except UnresolvedLocation as error:
                suggestions = [s.model_dump() for s in error.suggestions]
                return problem(self, 404, error.reason, suggestions=suggestions)
            path = topology.path(found.node_id)
            view = service.book.covering(path)
            return self.json(
                {
                    "status": "known_fault" if view else "no_known_fault",
                    "node_id": found.node_id,
                    "resolved_by": found.how,
                    "path": list(path),
                    "incident": incident_json(view) if view else None,
                    "sentence": agent_sentence(view, service.settings.timezone),
                }
            )

    @app.page("/v1/calls/{event_id}")
    class CallOutcome(View):
        @guarded
        async def get(self, request: Request, event_id: str) -> Response:
            outcome = service.book.call_outcomes.get(event_id)
            if outcome is None:
                return problem(self, 404, f"no outcome known yet for call {event_id!r}")
            joined = outcome not in ("pending", "individual")
            return self.json(
                {
                    "event_id": event_id,
                    "outcome": "joined_incident" if joined else outcome,
                    "incident_id": outcome if joined else None,
                }
            )

    @app.page("/v1/incidents")
    class Incidents(View):
        @guarded
        async def get(self, request: Request) -> Response:
            active = service.book.active()
            return self.json({"incidents": [incident_json(v) for v in active]})

    @app.page("/v1/incidents/{incident_id}")
    class Incident(View):
        @guarded
        async def get(self, request: Request, incident_id: str) -> Response:
            view = service.book.incidents.get(incident_id)
            if view is None:
                return problem(self, 404, f"no incident {incident_id!r}")
            return self.json(incident_json(view, timeline=True))

    @app.page("/health")
    class Health(View):
        @guarded
        async def get(self, request: Request) -> Response:
            return self.json(
                {
                    "status": "ok",
                    "ready": service.ready and service.book_caught_up,
                    "network_nodes": len(topology),
                    "incidents_active": len(service.book.active()),
                    "counters": service.counters,
                }
            )

    @app.page("/ready")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            if service.ready and service.book_caught_up:
                return self.json({"ready": True})
            return problem(self, 503, "starting: joining the consumer group, reading incidents")

    async def report(view: View, request: Request, make: Any) -> Response:
        """Run a report on the store thread and answer it in the format asked for."""
        query = cast(web.Request, request).query
        fmt = query.get("format", "json")
        if fmt not in ("json", "csv", "table", "png"):
            return problem(view, 400, "format must be json, csv, table or png")
        if service.sink is None:
            return problem(view, 503, "projections are switched off (OUTAGE_PROJECTIONS=false)")
        try:
            made: Report = await service.sink.run(make)
        except ReportError as error:
            return problem(view, 404 if "no incident" in str(error) else 409, str(error))
        except StoreUnavailable as error:
            return problem(view, 503, f"the report store is unavailable: {error}")
        if fmt == "png":
            if made.chart is None:
                return problem(view, 400, "only the daily report has a chart")
            with tempfile.TemporaryDirectory() as folder:
                path = calls_per_hour_png(made.chart, Path(folder) / "chart.png")
                return view.bytes(path.read_bytes(), content_type="image/png")
        types = {"json": "application/json", "csv": "text/csv", "table": "text/plain"}
        return view.bytes(made.render(fmt).encode(), content_type=types[fmt])

    deadlines = service.correlator.rules.handling_deadlines()

    @app.page("/v1/reports/daily")
    class DailyReport(View):
        @guarded
        async def get(self, request: Request) -> Response:
            raw = cast(web.Request, request).query.get("date")
            try:
                day = date.fromisoformat(raw) if raw else datetime.now(UTC).date()
            except ValueError:
                return problem(self, 400, f"date must be YYYY-MM-DD, not {raw!r}")
            return await report(
                self, request, lambda store: daily(store, day, deadlines, datetime.now(UTC))
            )

    @app.page("/v1/reports/handover")
    class HandoverReport(View):
        @guarded
        async def get(self, request: Request) -> Response:
            now = datetime.now(UTC)
            return await report(self, request, lambda store: handover(store, now))

    @app.page("/v1/reports/callbacks")
    class CallbacksReport(View):
        @guarded
        async def get(self, request: Request) -> Response:
            incident = cast(web.Request, request).query.get("incident")
            if not incident:
                return problem(self, 400, "give incident=<incident id>")
            return await report(self, request, lambda store: callbacks(store, incident))

    @app.page("/v1/projections/lag")
    class ProjectionLag(View):
        @guarded
        async def get(self, request: Request) -> Response:
            return self.json(await projection_lag(service))

    actions = {
        "acknowledge": "incident_acknowledged",
        "cause": "cause_set",
        "etr": "etr_set",
        "resolve": "incident_resolved",
    }

    async def act(view: View, incident_id: str, kind: str, fields: dict[str, Any]) -> Response:
        """Validate and publish a shift lead's action on an open incident."""
        incident = service.book.incidents.get(incident_id)
        if incident is None:
            return problem(view, 404, f"no incident {incident_id!r}")
        if not incident.active:
            return problem(view, 409, f"incident {incident_id!r} is {incident.state}")
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
            return problem(view, 400, error.reason)
        await service.publish_inbound(event, key=incident.domain)
        return view.json({"event_id": event.event_id, "incident_id": incident_id}, status=202)

    @app.page("/v1/notifications")
    class Notifications(View):
        @guarded
        async def get(self, request: Request) -> Response:
            status = cast(web.Request, request).query.get("status")
            return self.json({"notifications": recent_notifications(service, status)})

    @app.page("/v1/incidents/{incident_id}/{action}")
    class IncidentAction(View):
        @guarded
        async def get(self, request: Request, incident_id: str, action: str) -> Response:
            """The acknowledge link of a notification: the token proves it came from us."""
            token = cast(web.Request, request).query.get("token", "")
            if action != "acknowledge":
                return problem(self, 405, "only acknowledge has a link; POST the others")
            expected = ack_token(service.hash_key, incident_id)
            if not hmac.compare_digest(token, expected):
                return problem(self, 403, "the link's token is not valid for this incident")
            return await act(
                self, incident_id, "incident_acknowledged", {"by": "notification link"}
            )

        @guarded
        async def post(self, request: Request, incident_id: str, action: str) -> Response:
            kind = actions.get(action)
            if kind is None:
                return problem(self, 404, f"no action {action!r}; one of: {', '.join(actions)}")
            raw = await cast(web.Request, request).content.read(MAX_EVENT_BYTES + 1)
            try:
                body = json.loads(raw or b"{}")
            except ValueError as error:
                return problem(self, 400, f"malformed JSON: {error}")
            if not isinstance(body, dict):
                return problem(self, 400, "the body must be a JSON object")
            fields = {k: body[k] for k in ("by", "note", "cause", "etr") if k in body}
            return await act(self, incident_id, kind, fields)
