"""Replay of real NYC 311 heating complaints (2024-04-15) through the heat rules.

Each distinct address becomes one building of its own; the facts checked are computed from
the data, so the test says what the rules imply for these calls, not what one run printed.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

from correlators.correlator import Correlator
from correlators.replay import ReplayResult, replay
from correlators.rules import CorrelationRules
from events import CallReported
from records.nyc311 import read_nyc311

DATA = Path(__file__).parents[2].parent / "shared/data/nyc311-2024-04-15.csv"
SANFORD = "142-30 SANFORD AVENUE"


@dataclass
class Replayed:
    calls: list[CallReported]
    address_of: dict[str, str]  # call id -> incident_address
    calls_at: dict[str, list[str]]  # incident_address -> call ids, in time order
    whole_building_at: dict[str, bool]  # some caller there said "entire building"
    result: ReplayResult


@pytest.fixture(scope="module")
def nyc() -> Replayed:
    if not DATA.exists():
        reason = f"real 311 sample not found at {DATA} (see shared/data/README.md)"
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI has shared/ beside the clone: a skip there would hide a loss
        pytest.skip(reason)
    complaints = read_nyc311([DATA])
    calls_at: dict[str, list[str]] = defaultdict(list)
    whole: dict[str, bool] = defaultdict(bool)
    for call in complaints.calls:
        address = complaints.address_of[call.event_id]
        calls_at[address].append(call.event_id)
        whole[address] |= call.scope == "whole_building"
    calls = complaints.calls
    result = replay(Correlator(complaints.topology, CorrelationRules.load()), calls)
    return Replayed(
        calls=calls,
        address_of=complaints.address_of,
        calls_at=dict(calls_at),
        whole_building_at=dict(whole),
        result=result,
    )


def qualifies(nyc: Replayed, address: str) -> bool:
    """Building rule for heat: 3 reporters, or 2 when one says the whole building is cold.

    Every call here is a public record (no caller), so each call is its own reporter, and the
    whole sample spans less than the 180-minute heat window.
    """
    count = len(nyc.calls_at[address])
    return count >= 3 or (count >= 2 and nyc.whole_building_at[address])


def test_sample_is_what_the_test_expects(nyc: Replayed) -> None:
    """The slice holds 100 heating calls, every one placed on its building."""
    assert len(nyc.calls) == 100
    assert nyc.result.rejected == []
    first, last = nyc.calls[0].occurred_at, nyc.calls[-1].occurred_at
    assert last - first < CorrelationRules.load().for_utility("heat").window()


def test_sanford_avenue_gets_one_incident_with_all_eleven_calls(nyc: Replayed) -> None:
    """The 11 calls from 142-30 Sanford Avenue fold into exactly one incident holding them all."""
    sanford = set(nyc.calls_at[SANFORD])
    assert len(sanford) == 11
    holding = [v for v in nyc.result.book.incidents.values() if sanford & set(v.call_ids)]
    assert len(holding) == 1
    assert set(holding[0].call_ids) == sanford
    assert holding[0].device_kind == "building"
    assert holding[0].state == "suspected"


def test_every_qualifying_building_holds_all_its_calls_in_one_incident(nyc: Replayed) -> None:
    """Each building that meets the building rule has one incident holding all of its calls."""
    qualifying = [a for a in nyc.calls_at if qualifies(nyc, a)]
    assert SANFORD in qualifying and len(qualifying) >= 2
    for address in qualifying:
        calls = set(nyc.calls_at[address])
        holding = [v for v in nyc.result.book.incidents.values() if calls & set(v.call_ids)]
        assert len(holding) == 1, address
        assert set(holding[0].call_ids) == calls, address


def test_no_incident_mixes_addresses(nyc: Replayed) -> None:
    """No incident holds calls from two different addresses."""
    assert nyc.result.book.incidents
    for view in nyc.result.book.incidents.values():
        assert len({nyc.address_of[c] for c in view.call_ids}) == 1, view.incident_id


def test_buildings_that_do_not_qualify_have_no_incident(nyc: Replayed) -> None:
    """Single calls, and pairs where nobody said 'entire building', end pending or individual."""
    others = [a for a in nyc.calls_at if not qualifies(nyc, a)]
    assert any(len(nyc.calls_at[a]) == 2 for a in others)  # a pair below the threshold exists
    outcomes = nyc.result.book.call_outcomes
    for address in others:
        for call_id in nyc.calls_at[address]:
            assert outcomes[call_id] in {"pending", "individual"}, (address, call_id)


def test_incident_count_matches_the_qualifying_buildings(nyc: Replayed) -> None:
    """There is one incident per qualifying building and no other."""
    qualifying = {a for a in nyc.calls_at if qualifies(nyc, a)}
    assert len(nyc.result.book.incidents) == len(qualifying)
