"""Hypothesis fuzz of every decoder of untrusted input: no crash, every rejection a clear reason.

`decode_inbound` (HTTP bodies, inbound topics, JSONL lines), `decode_derived` (the incident
stream) and the worker's `_decode_work` (the correlate topic) get arbitrary bytes and text,
arbitrary JSON, valid events with one field replaced or extra keys added, huge strings, deep
nesting, NaN/Infinity, lone surrogates and invalid UTF-8. The codec either returns a validated
event that re-encodes to itself, or raises `EventRejected` with a short, printable reason.
Valid events are generated from the models themselves, so a new field is fuzzed as it lands.
"""

from __future__ import annotations

import json
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from events.codec import (
    MAX_EVENT_BYTES,
    EventRejected,
    decode_derived,
    decode_inbound,
    encode,
)
from events.derived import DerivedBase, DerivedEvent
from events.inbound import InboundBase, InboundEvent
from events.internal import Routed, Tick
from streams.app import _decode_work

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

MAX_REASON = 8 * 1024  # a rejection reason must fit a log line and an HTTP error body

INBOUND_MODELS: tuple[type[InboundBase], ...] = get_args(get_args(InboundEvent)[0])
DERIVED_MODELS: tuple[type[DerivedBase], ...] = get_args(get_args(DerivedEvent)[0])

# -- values ---------------------------------------------------------------------------------

SURROGATES = st.characters(categories=["Cs"])
TEXT = st.text(st.characters() | SURROGATES, max_size=30)  # st.characters() alone has none
NUMBERS_AS_TEXT = (
    st.integers(-(10**30), 10**30).map(str)
    | st.floats().map(str)
    | st.sampled_from(["1", "1.0", "01", "1e0", "-0", "0x1", "NaN", "Infinity", "1" * 5000])
)
EDGE_TIMES = st.sampled_from(
    [
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
        "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999Z",
        "2024-02-30T00:00:00Z",
        "2024-04-15T22:00:00+24:00",
    ]
)
WORDS = st.sampled_from(
    ["", "tick", "routed", "call_reported", "incident_opened", "true", "null", "2024-04-15"]
)


def hostile_scalars(edge_times: bool = True) -> st.SearchStrategy[Any]:
    """JSON leaves plus what JSON should not carry (NaN, infinities, lone surrogates), numbers
    as text, and (if `edge_times`) times that leave years 1..9999 once converted to UTC."""
    leaves = (
        st.none()
        | st.booleans()
        | st.integers(-(10**30), 10**30)
        | st.floats()
        | TEXT
        | NUMBERS_AS_TEXT
        | WORDS
    )
    return leaves | EDGE_TIMES if edge_times else leaves


def json_values(
    leaves: st.SearchStrategy[Any], keys: st.SearchStrategy[str]
) -> st.SearchStrategy[Any]:
    """Nested lists and objects of `leaves`, a few levels deep."""
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
        max_leaves=12,
    )


HOSTILE_JSON = json_values(hostile_scalars(), TEXT)
CLEAN_KEYS = st.text(max_size=12) | st.sampled_from(
    ["model_config", "model_fields", "__class__", "__dict__", "_private", "json", "copy", "id"]
)
CLEAN_JSON = json_values(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    st.text(max_size=12),
)

OFFSETS = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
SPAN = datetime(1900, 1, 1), datetime(2100, 1, 1)  # naive times are taken as UTC
TIMES = st.datetimes(*SPAN) | st.datetimes(*SPAN, timezones=st.just(UTC) | OFFSETS)


@st.composite
def wire(draw: st.DrawFn, value: Any, faithful: bool = False) -> bytes | str | dict[str, Any]:
    """`value` as a decoder may get it: a mapping, JSON text, or bytes in some encoding.
    Unless `faithful`, text with lone surrogates becomes invalid UTF-8 / UTF-16 bytes."""
    forms = ["mapping", "text", "utf-8"] if faithful else ["mapping", "text", "utf-8", "utf-16"]
    form = draw(st.sampled_from(forms))
    if form == "mapping" and isinstance(value, dict):
        return value
    text = json.dumps(value, allow_nan=True, ensure_ascii=draw(st.booleans()))
    if form in ("mapping", "text") or (faithful and not text.isascii()):
        return text
    return text.encode(form, errors="surrogatepass")


# -- valid events, built from the models -----------------------------------------------------


def strategy_for(annotation: Any, metadata: Sequence[Any] = ()) -> st.SearchStrategy[Any]:
    """Values of a field type: str with its length bounds, Literal, unions, tuples, times."""
    lo, hi = 0, None
    for item in metadata:
        for constraint in item.metadata if isinstance(item, FieldInfo) else [item]:
            lo = getattr(constraint, "min_length", lo)
            hi = getattr(constraint, "max_length", hi)
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *extra = get_args(annotation)
        return strategy_for(base, [*metadata, *extra])
    if origin is Literal:
        return st.sampled_from(get_args(annotation))
    if origin in (Union, types.UnionType):
        return st.one_of([strategy_for(arg) for arg in get_args(annotation)])
    if origin is tuple:
        item_type, _ = get_args(annotation)
        items = st.lists(strategy_for(item_type), min_size=lo, max_size=hi or 3)
        return items.map(tuple)
    if annotation is type(None):
        return st.none()
    if annotation is str:
        return st.text(min_size=lo, max_size=hi if hi is not None else 30)
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return st.integers()
    if annotation is datetime:
        return TIMES
    raise NotImplementedError(f"no strategy for {annotation!r}")


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _satisfy_validators(model: type[BaseModel], fields: dict[str, Any]) -> dict[str, Any]:
    """Meet the cross-field rules the field types cannot say: a call has a place, a window
    ends after it starts."""
    if model.model_fields.keys() >= {"premise_id", "building_id", "address"} and not (
        fields.get("premise_id") or fields.get("building_id") or fields.get("address")
    ):
        fields["premise_id"] = "P-1"
    if "starts_at" in fields and fields["starts_at"] and fields.get("ends_at"):
        starts, ends = _utc(fields["starts_at"]), _utc(fields["ends_at"])
        if model.__name__ == "PlannedWorkScheduled" and ends <= starts:
            fields["ends_at"] = starts + timedelta(minutes=1)
    return fields


def events_of(model: type[BaseModel]) -> st.SearchStrategy[Any]:
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for name, field in model.model_fields.items():
        values = strategy_for(field.annotation, field.metadata)
        (required if field.is_required() else optional)[name] = values
    fields = st.fixed_dictionaries(required, optional=optional)
    return fields.map(lambda f: model(**_satisfy_validators(model, f)))


INBOUND_EVENTS = st.one_of([events_of(m) for m in INBOUND_MODELS])
DERIVED_EVENTS = st.one_of([events_of(m) for m in DERIVED_MODELS])
WORK = st.one_of(
    st.builds(
        Routed,
        domain=st.text(max_size=20),
        node_id=st.none() | st.text(max_size=20),
        resolved_by=st.none() | st.text(max_size=20),
        event=INBOUND_EVENTS,
    ),
    st.builds(Tick, domain=st.text(max_size=20), occurred_at=TIMES),
)


def body_of(event: BaseModel) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(encode(event))
    return body


# -- hostile inputs --------------------------------------------------------------------------


@st.composite
def a_field_replaced(draw: st.DrawFn, events: st.SearchStrategy[Any], edge: bool = True) -> Any:
    """A valid event with one field (or one field of its nested event) set to any JSON value."""
    body = body_of(draw(events))
    target = body["event"] if "event" in body and draw(st.booleans()) else body
    key = draw(st.sampled_from(sorted(target)) | st.sampled_from(["type", "schema_version"]))
    target[key] = draw(json_values(hostile_scalars(edge), TEXT))
    return body


@st.composite
def extra_keys_added(draw: st.DrawFn, events: st.SearchStrategy[Any], edge: bool = True) -> Any:
    """A valid event with random keys added (or overwritten) holding any JSON value."""
    body = body_of(draw(events))
    extra = st.dictionaries(TEXT | CLEAN_KEYS, json_values(hostile_scalars(edge), TEXT))
    body.update(draw(extra.filter(bool)))
    return body


@st.composite
def huge_strings(draw: st.DrawFn, events: st.SearchStrategy[Any]) -> Any:
    """A valid event with a field (existing or new) holding a long string: any length up to
    past the limit, or one that puts the whole event within a few hundred bytes of it."""
    body = body_of(draw(events))
    key = draw(st.sampled_from(sorted(body)) | CLEAN_KEYS)
    char = draw(st.sampled_from(["x", "é", "€", "😀", "\\", '"', "\x00", "\ud800"]))
    if draw(st.booleans()):
        length = draw(st.integers(0, 70_000))
    else:
        per_char = len(json.dumps(char, ensure_ascii=False).encode(errors="surrogatepass")) - 2
        room = MAX_EVENT_BYTES - len(json.dumps({**body, key: ""}, ensure_ascii=False))
        length = max(0, room // per_char + draw(st.integers(-300, 300)))
    body[key] = char * length
    return body


@st.composite
def deeply_nested(
    draw: st.DrawFn, events: st.SearchStrategy[Any], text_only: bool = False
) -> str | Any:
    """Arrays or objects nested up to far past the parser's recursion limit, alone or as a
    field of a valid event, as JSON text or (unless `text_only`) as a Python mapping."""
    depth = draw(st.integers(1, 200) | st.sampled_from([63, 64, 65, 999, 1000, 5000, 20_000]))
    array = draw(st.booleans())
    if text_only or draw(st.booleans()):  # text: the JSON parser meets the nesting
        opener, closer = ("[", "]") if array else ('{"a":', "}")
        deep = opener * depth + "1" + closer * draw(st.sampled_from([depth, 0]))
        if draw(st.booleans()):
            return deep
        text = encode(draw(events)).decode()
        return text[:-1] + ',"deep":' + deep + "}"
    value: Any = 1
    for _ in range(depth):
        value = [value] if array else {"a": value}
    return {**body_of(draw(events)), "deep": value}


@st.composite
def a_time_at_the_edge(draw: st.DrawFn, events: st.SearchStrategy[Any]) -> tuple[Any, str, bool]:
    """A valid event with one time field set near year 1 or 9999 with a UTC offset; the body,
    the field, and whether the time leaves years 1..9999 once converted to UTC."""
    body = body_of(draw(events))
    target = body.get("event", body)  # a routed event carries its times in `event`
    field = draw(st.sampled_from(sorted(k for k, v in target.items() if _is_time(v))))
    when = draw(
        st.datetimes(max_value=datetime(1, 1, 2)) | st.datetimes(min_value=datetime(9999, 12, 30))
    ).replace(tzinfo=draw(OFFSETS))
    try:
        when.astimezone(UTC)
        outside = False
    except OverflowError:
        outside = True
    target[field] = when.isoformat()
    return body, field, outside


def _is_time(value: Any) -> bool:
    try:
        datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return False
    return True


def hostile(events: st.SearchStrategy[Any], edge: bool = True) -> st.SearchStrategy[Any]:
    """Every kind of input at once: bytes, text, any JSON, valid events made invalid."""
    structured = (
        HOSTILE_JSON
        | a_field_replaced(events, edge)
        | extra_keys_added(events, edge)
        | events.map(body_of)
    )
    return st.one_of(
        st.binary(max_size=200),
        st.text(st.characters() | SURROGATES, max_size=200),
        structured.flatmap(wire),
    )


# -- the properties --------------------------------------------------------------------------


@dataclass(frozen=True)
class Decoder:
    decode: Callable[[Any], Any]
    base: type[BaseModel]
    events: st.SearchStrategy[Any]


BOTH = pytest.mark.parametrize(
    "decoder",
    [
        pytest.param(Decoder(decode_inbound, InboundBase, INBOUND_EVENTS), id="inbound"),
        pytest.param(Decoder(decode_derived, DerivedBase, DERIVED_EVENTS), id="derived"),
    ],
)


def assert_clear(rejected: EventRejected) -> None:
    reason = rejected.reason
    assert isinstance(reason, str)
    assert reason.strip(), "a rejection without a reason"
    assert reason == str(rejected)
    reason.encode("utf-8")  # printable: goes to a log line, an HTTP body, the dead-letter
    assert len(reason) <= MAX_REASON, f"reason of {len(reason)} characters"


def decoded_or_rejected(decoder: Decoder, raw: Any) -> EventRejected | None:
    """Decode `raw`: an accepted event must re-encode to itself, a rejection must be clear.
    Any other exception escapes and fails the property."""
    try:
        event = decoder.decode(raw)
    except EventRejected as rejected:
        assert_clear(rejected)
        return rejected
    assert isinstance(event, decoder.base)
    assert decoder.decode(encode(event)) == event
    return None


@BOTH
@FUZZ
@given(raw=st.binary(max_size=300) | st.text(st.characters() | SURROGATES, max_size=300))
def test_arbitrary_bytes_and_text_are_rejected_with_a_reason(decoder: Decoder, raw: Any) -> None:
    """Arbitrary bytes (invalid UTF-8 included) and text never crash a decoder."""
    decoded_or_rejected(decoder, raw)


@BOTH
@FUZZ
@given(raw=HOSTILE_JSON.flatmap(wire))
def test_arbitrary_json_is_rejected_with_a_reason(decoder: Decoder, raw: Any) -> None:
    """Any JSON value (NaN, Infinity, lone surrogates included), as text, bytes or mapping,
    never crashes a decoder."""
    decoded_or_rejected(decoder, raw)


@BOTH
@FUZZ
@given(data=st.data())
def test_a_field_replaced_by_any_json_is_decoded_or_rejected(
    decoder: Decoder, data: st.DataObject
) -> None:
    """A valid event with one field (type, schema_version...) set to any JSON value decodes to
    an event that round-trips or is rejected with a reason."""
    decoded_or_rejected(decoder, data.draw(a_field_replaced(decoder.events).flatmap(wire)))


@BOTH
@FUZZ
@given(data=st.data())
def test_extra_keys_are_decoded_or_rejected(decoder: Decoder, data: st.DataObject) -> None:
    """A valid event with random extra keys holding any JSON value decodes to an event that
    round-trips (inbound allows extras) or is rejected with a reason."""
    decoded_or_rejected(decoder, data.draw(extra_keys_added(decoder.events).flatmap(wire)))


@BOTH
@FEW
@given(data=st.data())
def test_huge_strings_are_decoded_or_rejected(decoder: Decoder, data: st.DataObject) -> None:
    """Strings up to and around the 64 KiB limit never crash a decoder, and an accepted event
    still fits the limit once re-encoded."""
    decoded_or_rejected(decoder, data.draw(huge_strings(decoder.events).flatmap(wire)))


@BOTH
@FEW
@given(data=st.data())
def test_deep_nesting_is_rejected_with_a_reason(decoder: Decoder, data: st.DataObject) -> None:
    """Nesting past any limit (the JSON parser's recursion included) never crashes a decoder."""
    decoded_or_rejected(decoder, data.draw(deeply_nested(decoder.events)))


@BOTH
@FUZZ
@given(data=st.data())
def test_times_leaving_years_1_to_9999_in_utc_are_rejected_naming_the_field(
    decoder: Decoder, data: st.DataObject
) -> None:
    """A time that leaves years 1..9999 once converted to UTC is refused naming its field."""
    body, field, outside = data.draw(a_time_at_the_edge(decoder.events))
    rejected = decoded_or_rejected(decoder, data.draw(wire(body)))
    if outside and field != "last_report_at":  # IncidentStale keeps that time as it came
        assert rejected is not None
        assert rejected.reason.startswith(f"{field}:"), rejected.reason


@FUZZ
@given(
    INBOUND_EVENTS,
    st.booleans()
    | st.floats()
    | st.integers(-(10**30), 10**30)
    | NUMBERS_AS_TEXT
    | TEXT
    | st.none()
    | st.lists(st.integers(), max_size=2),
    st.data(),
)
def test_schema_version_other_than_the_integer_1_is_refused_naming_it(
    event: InboundBase, version: Any, data: st.DataObject
) -> None:
    """Any schema_version but the integer 1 (True, 1.0, "1", NaN, lists...) is refused by name."""
    body = {**body_of(event), "schema_version": version}
    raw = data.draw(wire(body, faithful=True))
    if type(version) is int and version == 1:
        assert decode_inbound(raw) == event
        return
    with pytest.raises(EventRejected) as caught:
        decode_inbound(raw)
    assert_clear(caught.value)
    assert "schema_version" in caught.value.reason


@FUZZ
@given(INBOUND_EVENTS, st.dictionaries(CLEAN_KEYS, CLEAN_JSON, max_size=4), st.data())
def test_valid_inbound_events_round_trip_with_their_extra_fields(
    event: InboundBase, extra: dict[str, Any], data: st.DataObject
) -> None:
    """A valid inbound event with extra JSON fields decodes, and re-encodes to the same JSON."""
    body = body_of(event)
    extra = {key: value for key, value in extra.items() if key not in body}
    decoded = decode_inbound(data.draw(wire({**body, **extra})))
    assert decoded.model_dump(exclude=set(extra)) == event.model_dump()
    assert decoded.model_extra == extra
    assert json.loads(encode(decoded)) == {**body, **extra}
    assert decode_inbound(encode(decoded)) == decoded


@FUZZ
@given(DERIVED_EVENTS)
def test_valid_derived_events_round_trip(event: DerivedBase) -> None:
    """Every kind of derived event decodes from its wire form to an equal event."""
    assert decode_derived(encode(event)) == event
    assert decode_derived(body_of(event)) == event


# -- the worker's decoder of the correlate topic (streams/app.py) ---------------------------


def work_or_value_error(raw: bytes) -> None:
    """_decode_work may raise only ValueError: correlate_one dead-letters that, anything else
    would escape the agent."""
    try:
        item = _decode_work(raw)
    except ValueError:  # ValidationError, JSONDecodeError, UnicodeDecodeError are ValueErrors
        return
    assert isinstance(item, Routed | Tick)


def as_bytes(raw: bytes | str | dict[str, Any]) -> bytes:
    if isinstance(raw, bytes):
        return raw
    text = raw if isinstance(raw, str) else json.dumps(raw, allow_nan=True)
    return text.encode("utf-8", errors="surrogatepass")


@FUZZ
@given(
    hostile(WORK)
    | deeply_nested(WORK, text_only=True)
    | a_time_at_the_edge(WORK).map(lambda edge: edge[0])
)
def test_decode_work_gives_work_or_value_error(raw: Any) -> None:
    """Any payload on the correlate topic decodes to a Routed or Tick or raises ValueError."""
    work_or_value_error(as_bytes(raw))


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"[]", id="array"),
        pytest.param(b"null", id="null"),
        pytest.param(b"[" * 5000, id="deep-nesting"),
        pytest.param(
            b'{"type": "tick", "domain": "SUB1", "occurred_at": "0001-01-01T00:00:00+01:00"}',
            id="tick-before-year-1-in-UTC",
        ),
    ],
)
def test_decode_work_refuses_what_used_to_escape_with_value_error(payload: bytes) -> None:
    """Non-objects, deep nesting and times before year 1 in UTC raise ValueError, no crash."""
    with pytest.raises(ValueError):
        _decode_work(payload)
