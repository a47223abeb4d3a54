"""Decoding and encoding of events: one TypeAdapter per stream, clear reasons for rejections.

Every rejection is an `EventRejected` whose message a person can act on: it names the field,
the type or the version at fault. Upcasters turn older versions into the current one, so
consumers only ever see the newest schema.
"""

import json
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from events.derived import DerivedEvent
from events.inbound import InboundEvent

INBOUND_TYPES = (
    "call_reported",
    "scada_signal",
    "planned_work_scheduled",
    "planned_work_cancelled",
    "incident_acknowledged",
    "cause_set",
    "etr_set",
    "incident_resolved",
)
CURRENT_VERSION: dict[str, int] = dict.fromkeys(INBOUND_TYPES, 1)

# (type, from_version) -> function producing the body of version from_version + 1.
# Empty while only v1 exists; add `("call_reported", 1): upcast_call_v1_v2` with v2.
UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}

_inbound: TypeAdapter[Any] = TypeAdapter(InboundEvent)
_derived: TypeAdapter[Any] = TypeAdapter(DerivedEvent)

MAX_EVENT_BYTES = 64 * 1024


class EventRejected(ValueError):
    """The input is not an acceptable event; `reason` says why in words a sender can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _as_mapping(raw: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(raw, Mapping):
        return dict(raw)
    if len(raw) > MAX_EVENT_BYTES:
        raise EventRejected(f"event is {len(raw)} bytes; the limit is {MAX_EVENT_BYTES}")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise EventRejected(f"malformed JSON: {error}") from None
    if not isinstance(body, dict):
        raise EventRejected(f"an event must be a JSON object, not {type(body).__name__}")
    return body


def describe(error: ValidationError) -> str:
    """One line per problem, naming the field: 'occurred_at: Input should be a valid datetime'."""
    parts = []
    for item in error.errors(include_url=False):
        location = ".".join(str(p) for p in item["loc"] if not str(p).startswith("function-"))
        # Drop the union tag pydantic puts first ("call_reported.utility" -> "utility").
        head, _, rest = location.partition(".")
        if head in INBOUND_TYPES:
            location = rest
        parts.append(f"{location or 'event'}: {item['msg']}")
    return "; ".join(parts)


def upcast(body: dict[str, Any]) -> dict[str, Any]:
    """Bring a known type to its current version, or refuse an unknown type or version."""
    kind = body.get("type")
    if kind not in CURRENT_VERSION:
        known = ", ".join(INBOUND_TYPES)
        raise EventRejected(f"unknown event type {kind!r}; expected one of: {known}")
    version = body.get("schema_version")
    if version is None:
        raise EventRejected(f"schema_version is required for {kind} (supported: 1)")
    if not isinstance(version, int) or isinstance(version, bool):
        raise EventRejected(f"schema_version must be an integer, not {version!r}")
    current = CURRENT_VERSION[kind]
    if not 1 <= version <= current:
        raise EventRejected(
            f"unsupported schema_version {version} for {kind} (supported: 1..{current})"
        )
    while version < current:
        body = UPCASTERS[(kind, version)](body)
        version += 1
        body["schema_version"] = version
    return body


def decode_inbound(raw: bytes | str | Mapping[str, Any]) -> Any:
    """Parse and validate one inbound event (call, SCADA signal, planned work)."""
    body = upcast(_as_mapping(raw))
    try:
        return _inbound.validate_python(body)
    except ValidationError as error:
        raise EventRejected(describe(error)) from None


def decode_derived(raw: bytes | str | Mapping[str, Any]) -> Any:
    """Parse one event of the incident stream."""
    try:
        return _derived.validate_python(_as_mapping(raw))
    except ValidationError as error:
        raise EventRejected(describe(error)) from None


def encode(event: BaseModel) -> bytes:
    """The wire form of any event: compact JSON, ISO 8601 times."""
    return event.model_dump_json(exclude_none=False).encode()


def json_schemas() -> dict[str, Any]:
    """JSON Schema of the inbound contract and of the incident stream, for `outage schema`."""
    return {
        "inbound": _inbound.json_schema(),
        "derived": _derived.json_schema(),
    }
