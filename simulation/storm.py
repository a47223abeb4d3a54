"""A storm simulator with known answers: faults planted on a network, callers who behave
like callers, SCADA only where there is telemetry, noise, restoration, and the truth.

Seeded: the same seed and parameters give the same events, byte for byte. Time comes from
`Storm.start`, never from the clock.
"""

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from events.inbound import CallReported, ScadaSignal
from topology.model import Topology

SYMPTOMS = {
    "heat": "no_heat",
    "power": "no_power",
    "water": "no_water",
    "cable": "no_signal",
    "telecom": "no_signal",
}


@dataclass(frozen=True)
class Storm:
    """What to simulate. Shares are of affected customers (premises)."""

    seed: int = 7
    faults: int = 5
    devices: tuple[str, ...] = ()  # chosen fault devices; random ones when empty
    fault_kinds: tuple[str, ...] = (
        "building",
        "fuse",
        "transformer",
        "feeder",
        "heat_substation",
        "optical_node",
    )
    telemetered_kinds: tuple[str, ...] = ("feeder", "substation", "heat_source", "heat_substation")
    start: datetime = datetime(2026, 1, 15, 6, 0, tzinfo=UTC)
    spread_minutes: float = 240  # faults begin within this time
    call_share: float = 0.4  # of affected premises, how many call
    mean_delay_minutes: float = 12  # exponential: most call soon, a long tail later
    whole_building_share: float = 0.25  # callers who say the whole building is out
    repeat_share: float = 0.15  # callers who call again
    noise_calls: int = 10  # unrelated individual calls over the storm
    restore_after_minutes: float = 90
    scada: bool = True  # SCADA trips and closings for telemetered devices
    telemetered_faults: int = 0  # of the random faults, how many at least on telemetered kinds
    min_premises: int = 1  # random faults only where at least this many premises are cut off


class FaultTruth(BaseModel):
    fault_id: str
    device_id: str
    device_kind: str
    starts_at: datetime
    restored_at: datetime
    telemetered: bool
    premises: list[str]
    call_ids: list[str]


class Truth(BaseModel):
    """What really happened: the answer key of a scenario."""

    seed: int
    faults: list[FaultTruth]
    noise_call_ids: list[str]


@dataclass
class _Draw:
    rng: random.Random
    events: list[Any] = field(default_factory=list)


def simulate(topology: Topology, storm: Storm) -> tuple[list[Any], Truth]:
    """Inbound events in event-time order, and the truth about them."""
    draw = _Draw(random.Random(storm.seed))
    rng = draw.rng
    devices = list(storm.devices) or _pick_devices(topology, storm, rng)
    faults: list[FaultTruth] = []
    taken: set[str] = set()
    for n, device in enumerate(devices):
        node = topology.node(device)
        starts = storm.start + timedelta(minutes=rng.uniform(0, storm.spread_minutes))
        restored = starts + timedelta(minutes=storm.restore_after_minutes)
        premises = [p for p in topology.premises_under(device) if p not in taken]
        if not premises and node.kind in ("building", "premise"):
            premises = [device]  # a building modelled without premises (public records)
        taken.update(premises)
        telemetered = storm.scada and node.kind in storm.telemetered_kinds
        fault_id = f"F{n + 1}"
        call_ids: list[str] = []
        if telemetered:
            draw.events.append(_signal(f"{fault_id}-trip", starts, device, "breaker_open", node))
        for premise in premises:
            if rng.random() >= storm.call_share:
                continue
            at = starts + timedelta(minutes=rng.expovariate(1 / storm.mean_delay_minutes))
            if at >= restored:
                continue  # supply came back before this customer picked up the phone
            calls = [at]
            if rng.random() < storm.repeat_share:
                again = at + timedelta(minutes=rng.uniform(10, 45))
                if again < restored:
                    calls.append(again)
            for k, when in enumerate(calls):
                call_id = f"{fault_id}-{premise}-{k}"
                whole = rng.random() < storm.whole_building_share
                draw.events.append(_call(call_id, when, topology, premise, whole))
                call_ids.append(call_id)
        if telemetered:
            draw.events.append(_signal(f"{fault_id}-close", restored, device, "normal", node))
        faults.append(
            FaultTruth(
                fault_id=fault_id,
                device_id=device,
                device_kind=node.kind,
                starts_at=starts,
                restored_at=restored,
                telemetered=telemetered,
                premises=premises,
                call_ids=call_ids,
            )
        )
    noise = _noise(topology, storm, draw, taken)
    events = sorted(draw.events, key=lambda e: (e.occurred_at, e.event_id))
    return events, Truth(seed=storm.seed, faults=faults, noise_call_ids=noise)


def _pick_devices(topology: Topology, storm: Storm, rng: random.Random) -> list[str]:
    if storm.faults <= 0:
        return []
    candidates = sorted(
        n.id
        for n in topology.nodes.values()
        if n.kind in storm.fault_kinds
        and len(topology.premises_under(n.id)) >= max(storm.min_premises, 1)
    )
    telemetered = [c for c in candidates if topology.node(c).kind in storm.telemetered_kinds]
    chosen: list[str] = []
    # Telemetered faults first, so a SCADA scenario really has breakers to trip.
    for pool, wanted in (
        (telemetered, min(storm.telemetered_faults, storm.faults)),
        (candidates, storm.faults),
    ):
        if len(chosen) >= wanted:
            continue  # draw nothing, so scenarios without this option stay as they were
        for device in rng.sample(pool, len(pool)):
            if len(chosen) >= wanted:
                break
            # Faults that overlap would make the answer key ambiguous: keep them apart.
            if any(topology.covers(device, c) or topology.covers(c, device) for c in chosen):
                continue
            chosen.append(device)
    return chosen


def _noise(topology: Topology, storm: Storm, draw: _Draw, taken: set[str]) -> list[str]:
    """Unrelated individual calls (own appliance, a tripped flat fuse) anywhere unaffected."""
    free = sorted(
        n.id for n in topology.nodes.values() if n.kind == "premise" and n.id not in taken
    )
    ids: list[str] = []
    for n in range(storm.noise_calls if free else 0):
        premise = draw.rng.choice(free)
        at = storm.start + timedelta(
            minutes=draw.rng.uniform(0, storm.spread_minutes + storm.restore_after_minutes)
        )
        call_id = f"noise-{n}-{premise}"
        draw.events.append(_call(call_id, at, topology, premise, whole=False))
        ids.append(call_id)
    return ids


def _call(call_id: str, at: datetime, topology: Topology, place: str, whole: bool) -> CallReported:
    node = topology.node(place)
    where = {"premise_id": place} if node.kind == "premise" else {"building_id": place}
    return CallReported(
        event_id=call_id,
        occurred_at=at,
        utility=node.utility,
        symptom=SYMPTOMS[node.utility],
        scope="whole_building" if whole else "unknown",
        **where,
    )


def _signal(event_id: str, at: datetime, device: str, name: str, node: Any) -> ScadaSignal:
    kind = "supply_temp_low" if node.utility == "heat" and name != "normal" else name
    if name == "normal" and node.utility != "heat":
        kind = "breaker_closed"
    return ScadaSignal(event_id=event_id, occurred_at=at, device_id=device, signal=kind)
