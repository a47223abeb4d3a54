"""Unit tests for the event codec: what integrators may send, and how a rejection reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from events import (
    CallReported,
    EventRejected,
    IncidentOpened,
    PlannedWorkCancelled,
    PlannedWorkScheduled,
    ScadaSignal,
    decode_derived,
    decode_inbound,
    encode,
    json_schemas,
)
from events.inbound import InboundBase

CALL: dict[str, Any] = {
    "type": "call_reported",
    "schema_version": 1,
    "event_id": "call-1",
    "occurred_at": "2024-04-15T22:00:00Z",
    "utility": "power",
    "premise_id": "P-FDR1-T1-F2-B3-1",
}
SCADA: dict[str, Any] = {
    "type": "scada_signal",
    "schema_version": 1,
    "event_id": "scada-1",
    "occurred_at": "2024-04-15T22:00:00+02:00",
    "device_id": "FU-FDR1-T1-2",
    "signal": "breaker_open",
}
WORK: dict[str, Any] = {
    "type": "planned_work_scheduled",
    "schema_version": 1,
    "event_id": "work-1",
    "occurred_at": "2024-04-15T08:00:00Z",
    "work_id": "W-1",
    "device_ids": ["T-FDR1-1"],
    "starts_at": "2024-04-16T08:00:00Z",
    "ends_at": "2024-04-16T12:00:00Z",
}
CANCEL: dict[str, Any] = {
    "type": "planned_work_cancelled",
    "schema_version": 1,
    "event_id": "cancel-1",
    "occurred_at": "2024-04-15T09:00:00Z",
    "work_id": "W-1",
    "device_ids": ["T-FDR1-1"],
}


def without(body: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != field}


def rejection(raw: bytes | str | dict[str, Any]) -> str:
    with pytest.raises(EventRejected) as caught:
        decode_inbound(raw)
    assert caught.value.reason == str(caught.value)
    return caught.value.reason


@pytest.mark.parametrize(
    ("body", "model"),
    [
        (CALL, CallReported),
        (SCADA, ScadaSignal),
        (WORK, PlannedWorkScheduled),
        (CANCEL, PlannedWorkCancelled),
    ],
)
def test_each_inbound_type_decodes_from_json_and_mapping(
    body: dict[str, Any], model: type[InboundBase]
) -> None:
    """Every inbound type decodes to its model from bytes, text and a mapping alike."""
    from_bytes = decode_inbound(json.dumps(body).encode())
    from_text = decode_inbound(json.dumps(body))
    from_mapping = decode_inbound(body)
    assert isinstance(from_bytes, model)
    assert from_bytes == from_text == from_mapping
    assert from_bytes.event_id == body["event_id"]


def test_decoded_call_keeps_its_fields() -> None:
    """A call's place, utility, scope and tags come through decoding unchanged."""
    call = decode_inbound(
        {**CALL, "scope": "whole_building", "tags": ["arrears"], "caller": "+1 212 555 0100"}
    )
    assert isinstance(call, CallReported)
    assert call.premise_id == "P-FDR1-T1-F2-B3-1"
    assert call.utility == "power"
    assert call.scope == "whole_building"
    assert call.tags == ("arrears",)
    assert call.caller == "+1 212 555 0100"


def test_offset_timestamps_are_converted_to_utc() -> None:
    """A timestamp with an offset is stored as the same instant in UTC."""
    signal = decode_inbound(SCADA)
    assert signal.occurred_at == datetime(2024, 4, 15, 20, 0, tzinfo=UTC)
    assert signal.occurred_at.utcoffset() == timedelta(0)


def test_naive_timestamps_are_taken_as_utc() -> None:
    """A timestamp without a zone is read as UTC, not as local time."""
    call = decode_inbound({**CALL, "occurred_at": "2024-04-15T22:00:00"})
    assert call.occurred_at == datetime(2024, 4, 15, 22, 0, tzinfo=UTC)
    assert call.occurred_at.tzinfo is not None


def test_extra_fields_are_allowed_and_kept() -> None:
    """Integrators may add fields of their own; they are kept, not refused."""
    call = decode_inbound({**CALL, "crm_ticket": "T-42"})
    assert call.model_extra == {"crm_ticket": "T-42"}


def test_malformed_json_is_rejected() -> None:
    """Text that is not JSON is refused as malformed JSON."""
    assert rejection(b'{"type": "call_reported",').startswith("malformed JSON")


def test_invalid_utf8_is_rejected_as_malformed() -> None:
    """Bytes that are not UTF-8 are refused as malformed JSON, not with a crash."""
    assert rejection(b"\xff\xfe{}").startswith("malformed JSON")


@pytest.mark.parametrize("raw", ["[1, 2]", '"call"', "42", "null"])
def test_non_object_json_is_rejected(raw: str) -> None:
    """Valid JSON that is not an object is refused, naming what it was."""
    assert "must be a JSON object" in rejection(raw)


def test_oversized_event_is_rejected() -> None:
    """An event above the size limit is refused before parsing."""
    raw = json.dumps({**CALL, "notes": "x" * 70_000})
    assert "limit" in rejection(raw)


def test_unknown_type_is_rejected_listing_known_types() -> None:
    """An unknown type is refused, naming it and the types that exist."""
    reason = rejection({**CALL, "type": "meter_read"})
    assert "unknown event type 'meter_read'" in reason
    assert "call_reported" in reason


def test_missing_type_is_rejected() -> None:
    """An event without a type is refused as an unknown type."""
    assert "unknown event type None" in rejection(without(CALL, "type"))


def test_missing_schema_version_is_rejected() -> None:
    """An event without schema_version is refused, naming the field."""
    assert "schema_version is required" in rejection(without(CALL, "schema_version"))


@pytest.mark.parametrize("version", [0, 2, 99])
def test_unknown_schema_version_is_rejected(version: int) -> None:
    """A version this service does not know is refused, naming it and the supported range."""
    reason = rejection({**CALL, "schema_version": version})
    assert f"unsupported schema_version {version}" in reason
    assert "supported: 1..1" in reason


@pytest.mark.parametrize("version", ["1", 1.5, True])
def test_non_integer_schema_version_is_rejected(version: object) -> None:
    """schema_version must be an integer; text, floats and booleans are refused."""
    assert "schema_version must be an integer" in rejection({**CALL, "schema_version": version})


def test_call_without_a_place_is_rejected_naming_the_place_fields() -> None:
    """A call with no premise, building or address is refused, naming those fields."""
    reason = rejection(without(CALL, "premise_id"))
    assert "premise_id, building_id or address" in reason


def test_bad_utility_is_rejected_naming_the_field() -> None:
    """A utility outside the known ones is refused with the reason starting at `utility`."""
    reason = rejection({**CALL, "utility": "gas"})
    assert reason.startswith("utility:")


@pytest.mark.parametrize("value", ["yesterday", "2024-13-45T00:00:00Z", ""])
def test_bad_datetime_is_rejected_naming_the_field(value: str) -> None:
    """An unparseable event time is refused with the reason starting at `occurred_at`."""
    assert rejection({**CALL, "occurred_at": value}).startswith("occurred_at:")


def test_missing_event_id_is_rejected_naming_the_field() -> None:
    """An event without an id is refused, naming `event_id`."""
    assert rejection(without(CALL, "event_id")).startswith("event_id:")


def test_bad_scope_is_rejected_naming_the_field() -> None:
    """A scope outside whole_building/only_me/unknown is refused, naming `scope`."""
    assert rejection({**CALL, "scope": "street"}).startswith("scope:")


def test_planned_work_with_reversed_window_is_rejected() -> None:
    """A planned work ending before it starts is refused, saying so."""
    reason = rejection({**WORK, "ends_at": "2024-04-16T07:00:00Z"})
    assert "ends_at must be after starts_at" in reason


def test_planned_work_without_devices_is_rejected() -> None:
    """A planned work must name at least one device."""
    assert rejection({**WORK, "device_ids": []}).startswith("device_ids:")


def test_scada_signal_with_unknown_signal_is_rejected() -> None:
    """A SCADA signal outside the known ones is refused, naming `signal`."""
    assert rejection({**SCADA, "signal": "exploded"}).startswith("signal:")


def test_derived_events_round_trip_through_the_wire_form() -> None:
    """A derived event encoded with `encode` decodes back to an equal event."""
    opened = IncidentOpened(
        event_id="INC-1/opened",
        occurred_at=datetime(2024, 4, 15, 22, 0, tzinfo=UTC),
        domain="SUB1",
        incident_id="INC-1",
        device_id="FU-FDR1-T1-2",
        device_kind="fuse",
        utility="power",
        path=("SUB1", "FDR-1", "T-FDR1-1", "FU-FDR1-T1-2"),
        phase="suspected",
        cause="unknown",
        customers_affected=12,
    )
    assert decode_derived(encode(opened)) == opened


def test_derived_events_refuse_unknown_fields() -> None:
    """The incident stream is ours: an unknown field in a derived event is refused."""
    opened = json.loads(
        IncidentOpened(
            event_id="INC-1/opened",
            occurred_at=datetime(2024, 4, 15, 22, 0, tzinfo=UTC),
            domain="SUB1",
            incident_id="INC-1",
            device_id="FU-FDR1-T1-2",
            device_kind="fuse",
            utility="power",
            path=("SUB1",),
            phase="suspected",
            cause="unknown",
            customers_affected=12,
        ).model_dump_json()
    )
    with pytest.raises(EventRejected, match="surprise"):
        decode_derived({**opened, "surprise": 1})


def test_json_schemas_describe_inbound_and_derived_streams() -> None:
    """json_schemas() gives a schema for the inbound contract and one for the incident stream."""
    schemas = json_schemas()
    assert set(schemas) == {"inbound", "derived"}
    inbound = json.dumps(schemas["inbound"])
    derived = json.dumps(schemas["derived"])
    for name in ("CallReported", "ScadaSignal", "PlannedWorkScheduled", "PlannedWorkCancelled"):
        assert name in inbound
    for name in ("IncidentOpened", "CallAttached", "AlertRaised", "IndividualFault"):
        assert name in derived
