"""Silences set by shift leads at run time, shared by every worker through the `silences` topic.

    GET    /v1/silences          configured and run-time silences, with whether each is active
    POST   /v1/silences          mute matching alerts until `ends` (who: the login or key)
    DELETE /v1/silences/{id}     end a run-time silence now

A record keyed by the silence id either sets it or ends it; every worker reads the topic from
the beginning, so a silence holds on every worker and survives restarts.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from access.roles import Permission
from alerting.config import AwareDatetime, Matchers, OneOffSilence
from alerting.silence import is_active
from events.codec import describe
from streams.web import Api, Call, Rejected

if TYPE_CHECKING:
    from streams.app import Service

log = structlog.get_logger("outage.silences")
TOPIC = "silences"


class NewSilence(BaseModel):
    """What a shift lead sends; `created_by` comes from the login."""

    model_config = ConfigDict(extra="forbid")

    matchers: Matchers
    starts: AwareDatetime | None = Field(default=None, description="Default: now.")
    ends: AwareDatetime
    comment: str = Field(min_length=1, max_length=500)


def apply(service: Service, body: dict[str, Any]) -> None:
    """Fold one record of the topic into the worker's run-time silences."""
    silence_id = str(body.get("id", ""))
    if body.get("silence") is not None:
        service.silences[silence_id] = OneOffSilence.model_validate(body["silence"])
    else:
        service.silences.pop(silence_id, None)


async def follow_silences(service: Service) -> None:
    follower = service.follower(TOPIC)
    await follower.start()
    try:
        while True:
            for record in await follower.poll(timeout_ms=1000):
                try:
                    apply(service, json.loads(record.value or b"{}"))
                except (ValueError, ValidationError):
                    log.exception("silences.bad_record", offset=record.offset)
    finally:
        await follower.stop()


def register(service: Service, api: Api) -> None:
    def listing(silence: OneOffSilence | Any, silence_id: str | None, now: datetime) -> Any:
        return {
            "id": silence_id,
            "source": "run time" if silence_id else "configuration",
            "active": is_active(silence, now),
            **silence.model_dump(mode="json"),
        }

    @api.op(
        "GET",
        "/v1/silences",
        Permission.SILENCE,
        "Silences: from the configuration and set at run time",
        responses={200: "list"},
    )
    async def get_silences(call: Call) -> web.Response:
        now = datetime.now(UTC)
        configured = service.alerting.silences if service.alerting else []
        return web.json_response(
            {
                "silences": [listing(s, None, now) for s in configured]
                + [listing(s, i, now) for i, s in sorted(service.silences.items())]
            }
        )

    @api.op(
        "POST",
        "/v1/silences",
        Permission.SILENCE,
        "Mute matching alerts until `ends`",
        body=NewSilence.model_json_schema(ref_template="#/components/schemas/{model}"),
        form=False,
        responses={201: "the silence", 400: "not valid"},
    )
    async def post_silence(call: Call) -> web.Response:
        try:
            wanted = NewSilence.model_validate(await call.fields())
            silence = OneOffSilence(
                starts=wanted.starts or datetime.now(UTC),
                ends=wanted.ends,
                matchers=wanted.matchers,
                comment=wanted.comment,
                created_by=call.by,
            )
        except ValidationError as error:
            raise Rejected(400, describe(error)) from None
        silence_id = f"silence-{uuid.uuid4().hex[:12]}"
        body = {"id": silence_id, "silence": silence.model_dump(mode="json")}
        await publish(service, silence_id, body)
        log.info("silence.set", silence_id=silence_id, by=call.by, ends=silence.ends.isoformat())
        return web.json_response(listing(silence, silence_id, datetime.now(UTC)), status=201)

    @api.op(
        "DELETE",
        "/v1/silences/{silence_id}",
        Permission.SILENCE,
        "End a run-time silence now",
        responses={200: "ended", 404: "no such run-time silence"},
    )
    async def delete_silence(call: Call) -> web.Response:
        silence_id = call.params["silence_id"]
        if silence_id not in service.silences:
            raise Rejected(404, f"no run-time silence {silence_id!r}")
        await publish(service, silence_id, {"id": silence_id, "silence": None, "by": call.by})
        log.info("silence.ended", silence_id=silence_id, by=call.by)
        return web.json_response({"ended": silence_id, "by": call.by})


async def publish(service: Service, silence_id: str, body: dict[str, Any]) -> None:
    """To the topic (every worker), and to this worker at once (the answer reflects it)."""
    topic = service.topics[TOPIC]
    future = await topic.send(key=silence_id.encode(), value=json.dumps(body).encode())
    await future
    apply(service, body)
