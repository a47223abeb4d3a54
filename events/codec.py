"""Decoding and encoding of events: one TypeAdapter per stream, clear reasons for rejections.

Every rejection is an `EventRejected` whose message a person can act on: it names the field,
the type or the version at fault. Upcasters turn older versions into the current one, so
consumers only ever see the newest schema.
"""

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from events.base import UtcDatetime
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
_utc_time: TypeAdapter[Any] = TypeAdapter(UtcDatetime)

MAX_EVENT_BYTES = 64 * 1024
MAX_DEPTH = 64  # objects and arrays inside one another; real events nest two or three deep
MAX_PROBLEMS = 10  # validation problems listed in one rejection; the rest are counted
MAX_PART = 600  # characters of one problem (a value quoted back, a location)
# Ingest stamps recorded_at: `null` becomes "2024-04-15T22:00:00.123456Z" in the wire form.
STAMP_BYTES = len('"2024-04-15T22:00:00.123456Z"') - len("null")


class EventRejected(ValueError):
    """The input is not an acceptable event; `reason` says why in words a sender can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _clip(text: str, limit: int = MAX_PART) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _lone_surrogate(text: str) -> int | None:
    """Where `text` holds half of a UTF-16 pair (JSON allows the escape; UTF-8 cannot carry it)."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return error.start
    return None


def _check_json(value: Any, where: str, depth: int) -> None:
    """Refuse what the wire form cannot carry back unchanged: lone surrogates in text, NaN and
    infinities, nesting deeper than MAX_DEPTH. An accepted event must re-encode to itself."""
    place = where or "event"
    if isinstance(value, str):
        if (position := _lone_surrogate(value)) is not None:
            raise EventRejected(
                f"{place}: text holds a lone surrogate at position {position} (not Unicode)"
            )
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise EventRejected(f"{place}: {json.dumps(value)} is not a number JSON allows")
    elif isinstance(value, Mapping | list | tuple):
        if depth > MAX_DEPTH:
            raise EventRejected(f"{place}: objects and arrays nest deeper than {MAX_DEPTH} levels")
        items = value.items() if isinstance(value, Mapping) else enumerate(value)
        for key, item in items:
            if isinstance(key, str) and _lone_surrogate(key) is not None:
                raise EventRejected(
                    f"{place}: key {_clip(repr(key))} holds a lone surrogate (not Unicode)"
                )
            _check_json(item, _clip(f"{where}.{key}" if where else str(key)), depth + 1)


def _as_mapping(raw: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(raw, Mapping):
        body: Any = dict(raw)
    else:
        size = len(raw)
        if isinstance(raw, str) and size <= MAX_EVENT_BYTES and not raw.isascii():
            size = len(raw.encode("utf-8", errors="surrogatepass"))
        if size > MAX_EVENT_BYTES:
            raise EventRejected(f"event is {size} bytes; the limit is {MAX_EVENT_BYTES}")
        try:
            body = json.loads(raw)
        except RecursionError:
            raise EventRejected(
                f"malformed JSON: objects and arrays nest deeper than {MAX_DEPTH} levels"
            ) from None
        except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, too many digits
            raise EventRejected(_clip(f"malformed JSON: {error}")) from None
    if not isinstance(body, dict):
        raise EventRejected(f"an event must be a JSON object, not {type(body).__name__}")
    _check_json(body, "", 1)
    return body


def _out_of_range(body: dict[str, Any]) -> str:
    """The rejection for a time that leaves years 1..9999 once converted to UTC."""
    where = "event"
    for key, value in body.items():
        try:
            _utc_time.validate_python(value)
        except OverflowError:
            where = key
            break
        except ValidationError:
            continue
    return f"{where}: time is out of range once converted to UTC (years 1 to 9999)"


def describe(error: ValidationError) -> str:
    """One line per problem, naming the field: 'occurred_at: Input should be a valid datetime'."""
    parts = []
    problems = error.errors(include_url=False)
    for item in problems[:MAX_PROBLEMS]:
        if item["type"] == "union_tag_invalid":  # quote the tag briefly, keep the known list
            tag, expected = item["ctx"]["tag"], item["ctx"]["expected_tags"]
            parts.append(f"unknown event type {_clip(repr(tag), 80)}; expected one of: {expected}")
            continue
        location = ".".join(str(p) for p in item["loc"] if not str(p).startswith("function-"))
        # Drop the union tag pydantic puts first ("call_reported.utility" -> "utility").
        head, _, rest = location.partition(".")
        if head in INBOUND_TYPES:
            location = rest
        parts.append(_clip(f"{location or 'event'}: {item['msg']}"))
    if len(problems) > MAX_PROBLEMS:
        parts.append(f"and {len(problems) - MAX_PROBLEMS} more problems")
    return "; ".join(parts)


def upcast(body: dict[str, Any]) -> dict[str, Any]:
    """Bring a known type to its current version, or refuse an unknown type or version."""
    kind = body.get("type")
    if not isinstance(kind, str) or kind not in CURRENT_VERSION:
        known = ", ".join(INBOUND_TYPES)
        raise EventRejected(f"unknown event type {_clip(repr(kind))}; expected one of: {known}")
    version = body.get("schema_version")
    if version is None:
        raise EventRejected(f"schema_version is required for {kind} (supported: 1)")
    if not isinstance(version, int) or isinstance(version, bool):
        raise EventRejected(f"schema_version must be an integer, not {_clip(repr(version))}")
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


def _fits(event: Any, headroom: int = 0) -> Any:
    """Refuse an event whose wire form would not be accepted back: the input may be under the
    limit while its encoding is not (defaults written out, 1e15 becoming 1000000000000000.0)."""
    try:
        size = len(encode(event)) + headroom
    except PydanticSerializationError as error:  # a mapping holding values JSON cannot carry
        raise EventRejected(_clip(f"event cannot be encoded as JSON: {error}")) from None
    if size > MAX_EVENT_BYTES:
        raise EventRejected(f"event is {size} bytes once encoded; the limit is {MAX_EVENT_BYTES}")
    return event


def decode_inbound(raw: bytes | str | Mapping[str, Any]) -> Any:
    """Parse and validate one inbound event (call, SCADA signal, planned work)."""
    body = upcast(_as_mapping(raw))
    try:
        event = _inbound.validate_python(body)
    except ValidationError as error:
        raise EventRejected(describe(error)) from None
    except OverflowError:  # events.base._as_utc moved a time past year 1 or 9999
        raise EventRejected(_out_of_range(body)) from None
    # What the API accepts, stamped with recorded_at, the ingest worker must accept too.
    return _fits(event, STAMP_BYTES if event.recorded_at is None else 0)


def decode_derived(raw: bytes | str | Mapping[str, Any]) -> Any:
    """Parse one event of the incident stream."""
    body = _as_mapping(raw)
    try:
        event = _derived.validate_python(body)
    except ValidationError as error:
        raise EventRejected(describe(error)) from None
    except OverflowError:  # events.base._as_utc moved a time past year 1 or 9999
        raise EventRejected(_out_of_range(body)) from None
    return _fits(event)


def encode(event: BaseModel) -> bytes:
    """The wire form of any event: compact JSON, ISO 8601 times."""
    return event.model_dump_json(exclude_none=False).encode()


def json_schemas() -> dict[str, Any]:
    """JSON Schema of the inbound contract and of the incident stream, for `outage schema`."""
    return {
        "inbound": _inbound.json_schema(),
        "derived": _derived.json_schema(),
    }
