"""A seeded synthetic storm on a network: faults, callers who behave like callers, noise.

Not the storm simulator of the quality issue (that one writes truth files); just enough
realistic load for benchmarks: each wave fails one fuse or transformer, a share of its
customers call over the next half hour (some twice), a breaker trip arrives for telemetered
devices, unrelated single calls add noise, and the device is restored later.
"""

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from events.inbound import CallReported, ScadaSignal
from topology.model import Topology

START = datetime(2026, 1, 15, 6, 0, tzinfo=UTC)


def storm(
    topology: Topology, *, waves: int = 40, seed: int = 7, start: datetime = START
) -> list[Any]:
    """Inbound events of `waves` faults, in event-time order."""
    rng = random.Random(seed)
    devices = sorted(
        n.id for n in topology.nodes.values() if n.kind in ("fuse", "transformer", "feeder")
    )
    premises = sorted(n.id for n in topology.nodes.values() if n.kind == "premise")
    events: list[Any] = []
    for wave in range(waves):
        begins = start + timedelta(minutes=45 * wave)
        device = rng.choice(devices)
        kind = topology.node(device).kind
        if kind == "feeder" or rng.random() < 0.3:
            events.append(_signal(f"w{wave}-trip", begins, device, "breaker_open"))
        affected = topology.premises_under(device)
        for premise in affected:
            if rng.random() < 0.45:
                at = begins + timedelta(seconds=rng.expovariate(1 / 400))
                events.append(_call(f"w{wave}-{premise}", at, premise, rng))
                if rng.random() < 0.15:
                    again = at + timedelta(seconds=rng.uniform(120, 900))
                    events.append(_call(f"w{wave}-{premise}-again", again, premise, rng))
        for n in range(3):
            at = begins + timedelta(seconds=rng.uniform(0, 2400))
            events.append(_call(f"w{wave}-noise{n}", at, rng.choice(premises), rng))
        events.append(
            _signal(f"w{wave}-close", begins + timedelta(minutes=40), device, "breaker_closed")
        )
    return sorted(events, key=lambda e: (e.occurred_at, e.event_id))


def _call(event_id: str, at: datetime, premise: str, rng: random.Random) -> CallReported:
    scope = rng.choices(["whole_building", "only_me", "unknown"], [0.2, 0.2, 0.6])[0]
    tags = ("own_appliance",) if rng.random() < 0.03 else ()
    return CallReported(
        event_id=event_id,
        occurred_at=at,
        utility="power",
        premise_id=premise,
        caller=f"+1555{rng.randrange(10**7):07d}",
        symptom="no_power",
        scope=scope,
        tags=tags,
    )


def _signal(event_id: str, at: datetime, device: str, name: str) -> ScadaSignal:
    return ScadaSignal(
        event_id=event_id,
        occurred_at=at,
        device_id=device,
        signal=name,
    )
