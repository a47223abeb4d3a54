"""The OpenAPI 3.1 document of the service, made from the same table that enforces access.

Event bodies are the pydantic models' own JSON Schema, so the document cannot drift from what
the decoders accept. Every error answer is `{"error": reason}`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from access.roles import Permission, roles_with
from events.inbound import (
    CallReported,
    PlannedWorkCancelled,
    PlannedWorkScheduled,
    ScadaSignal,
)

if TYPE_CHECKING:
    from streams.web import Api, Operation

REF = "#/components/schemas/{model}"
ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "minLength": 1}},
}
NOTE = {"type": "string", "maxLength": 2000}
ACTION_BODIES = {
    "action_acknowledge": {"note": NOTE},
    "action_resolve": {"note": NOTE},
    "action_cause": {"cause": {"type": "string", "minLength": 1, "maxLength": 200}, "note": NOTE},
    "action_etr": {"etr": {"type": "string", "format": "date-time"}, "note": NOTE},
}
REQUIRED = {"action_cause": ["cause"], "action_etr": ["etr"]}


def _schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {"Error": ERROR}
    bodies: dict[str, Any] = {
        "call": CallReported,
        "scada": ScadaSignal,
        "planned": PlannedWorkScheduled | PlannedWorkCancelled,
    }
    for name, model in bodies.items():
        schema = TypeAdapter(model).json_schema(ref_template=REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
    for name, properties in ACTION_BODIES.items():
        schemas[name] = {
            "type": "object",
            "additionalProperties": False,
            "properties": properties,
            "required": REQUIRED.get(name, []),
        }
    return schemas


def _operation(operation: Operation, schemas: dict[str, Any]) -> dict[str, Any]:
    errors: dict[int, str] = {}
    if operation.access != "public":
        errors[401] = "no or unknown credentials"
    if operation.access != "public" and operation.method in ("POST", "PUT", "PATCH", "DELETE"):
        errors[403] = "a session's CSRF token missing or wrong"
    if isinstance(operation.access, Permission):
        errors[403] = "needs the role " + " or ".join(roles_with(operation.access))
    if operation.body is not None:
        errors.update({400: "not valid", 413: "body too large", 415: "not JSON"})
    if operation.query:
        errors[400] = "bad query"
    if "{" in operation.path:
        errors[404] = "nothing by that name"
    if operation.rate_limited:
        errors[429] = "over the rate limit (see Retry-After)"
    responses: dict[str, Any] = {}
    error = {"application/json": {"schema": {"$ref": REF.format(model="Error")}}}
    for status, text in sorted({**errors, **operation.responses}.items()):
        content = error if status >= 400 else {kind: {} for kind in operation.produces}
        responses[str(status)] = {"description": text, "content": content}
    spec: dict[str, Any] = {
        "summary": operation.summary,
        "operationId": operation.handler.__name__,
        "responses": responses,
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", operation.path)
        ]
        + [
            {
                "name": p.name,
                "in": "query",
                "required": p.required,
                "description": p.description,
                "schema": dict(p.schema),
            }
            for p in operation.query
        ],
    }
    if operation.access == "public":
        spec["security"] = []
    elif isinstance(operation.access, Permission):
        spec["description"] = "Roles: " + ", ".join(roles_with(operation.access))
    if operation.body is not None:
        body = dict(operation.body)
        schemas.update(body.pop("$defs", {}))  # a model's own definitions join the shared ones
        bodies: dict[str, Any] = {"application/json": {"schema": body}}
        if operation.form:
            bodies["application/x-www-form-urlencoded"] = {"schema": body}
        spec["requestBody"] = {"required": True, "content": bodies}
    return spec


def document(api: Api) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas = _schemas()
    for operation in api.operations:
        paths.setdefault(operation.path, {})[operation.method.lower()] = _operation(
            operation, schemas
        )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "outage-correlator",
            "version": "1",
            "description": "Hotline calls and SCADA signals folded into outage incidents.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "an API key"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "session": {"type": "apiKey", "in": "cookie", "name": "outage_session"},
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}, {"session": []}],
    }
