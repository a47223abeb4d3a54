"""Scoring a replay against the truth: did correlation find the right device, and how fast?

For each planted fault, the incident holding most of its calls is its incident. Placement is
`exact` (the fault's device), `above` (an ancestor: too coarse), `below` (a descendant: too
fine) or `wrong` (elsewhere); `missed` when no incident holds any of its calls.
"""

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from correlators.correlator import Correlator
from correlators.replay import replay
from simulation.storm import Truth
from topology.model import Topology


class FaultScore(BaseModel):
    fault_id: str
    device_id: str
    calls: int
    incident_id: str | None
    incident_device: str | None
    placement: str  # exact | above | below | wrong | missed
    calls_attached_share: float
    minutes_to_detect: float | None
    calls_before_detection: int | None


class Score(BaseModel):
    faults: list[FaultScore]
    detected: int
    exact: int
    on_path: int  # exact, above or below
    mean_calls_attached_share: float
    noise_calls: int
    noise_calls_attached: int
    false_incidents: int
    median_minutes_to_detect: float | None

    def table(self) -> str:
        lines = [
            f"{'fault':6} {'device':22} {'calls':>5} {'placement':9} {'attached':>8} "
            f"{'detect min':>10} {'calls before':>12}  incident",
        ]
        for f in self.faults:
            detect = "" if f.minutes_to_detect is None else f"{f.minutes_to_detect:.1f}"
            before = "" if f.calls_before_detection is None else str(f.calls_before_detection)
            lines.append(
                f"{f.fault_id:6} {f.device_id:22} {f.calls:>5} {f.placement:9} "
                f"{f.calls_attached_share:>8.0%} {detect:>10} {before:>12}  "
                f"{f.incident_id or '-'} {f.incident_device or ''}"
            )
        lines += [
            "",
            f"faults detected        {self.detected} / {len(self.faults)}",
            f"at the exact device    {self.exact}",
            f"on the path            {self.on_path}",
            f"calls attached (mean)  {self.mean_calls_attached_share:.0%}",
            f"noise calls attached   {self.noise_calls_attached} / {self.noise_calls}",
            f"false incidents        {self.false_incidents}",
            "median minutes to detect  "
            + (
                "-"
                if self.median_minutes_to_detect is None
                else f"{self.median_minutes_to_detect:.1f}"
            ),
        ]
        return "\n".join(lines) + "\n"


def evaluate(correlator: Correlator, events: list[Any], truth: Truth) -> Score:
    """Replay `events` with the correlator and score the incidents against `truth`."""
    result = replay(correlator, events)
    incidents = [v for v in result.book.incidents.values() if v.state != "merged"]
    occurred = {e.event_id: e.occurred_at for e in events}
    topology = correlator.topology
    fault_calls = {c for f in truth.faults for c in f.call_ids}
    scores = []
    for fault in truth.faults:
        calls = set(fault.call_ids)
        best = max(
            incidents,
            key=lambda v: (len(calls & set(v.call_ids)), -v.opened_at.timestamp()),
            default=None,
        )
        held = len(calls & set(best.call_ids)) if best else 0
        if held == 0:  # no call of it in any incident: found only if SCADA opened one there
            best = next((v for v in incidents if v.device_id == fault.device_id), None)
        if best is None:
            scores.append(
                FaultScore(
                    fault_id=fault.fault_id,
                    device_id=fault.device_id,
                    calls=len(calls),
                    incident_id=None,
                    incident_device=None,
                    placement="missed",
                    calls_attached_share=0.0,
                    minutes_to_detect=None,
                    calls_before_detection=None,
                )
            )
            continue
        # Covered by an incident that was already open (a roll-up of other faults): the fault
        # counts as detected when its first call joined it, not before it began.
        joined = [occurred[c] for c in calls & set(best.call_ids)]
        opened: datetime = max([best.opened_at, *([min(joined)] if joined else [])])
        if best.opened_at >= fault.starts_at:
            opened = best.opened_at
        scores.append(
            FaultScore(
                fault_id=fault.fault_id,
                device_id=fault.device_id,
                calls=len(calls),
                incident_id=best.incident_id,
                incident_device=best.device_id,
                placement=_placement(topology, fault.device_id, best.device_id),
                calls_attached_share=held / len(calls) if calls else 1.0,
                minutes_to_detect=round((opened - fault.starts_at).total_seconds() / 60, 2),
                calls_before_detection=sum(1 for c in calls if occurred[c] <= opened),
            )
        )
    noise = set(truth.noise_call_ids)
    attached_noise = {c for v in incidents for c in v.call_ids if c in noise}
    found = {s.incident_id for s in scores if s.incident_id}
    false_incidents = sum(
        1
        for v in incidents
        if v.incident_id not in found and not v.planned and not (set(v.call_ids) & fault_calls)
    )
    detected = [s for s in scores if s.placement != "missed"]
    minutes = sorted(s.minutes_to_detect for s in detected if s.minutes_to_detect is not None)
    return Score(
        faults=scores,
        detected=len(detected),
        exact=sum(1 for s in scores if s.placement == "exact"),
        on_path=sum(1 for s in scores if s.placement in ("exact", "above", "below")),
        mean_calls_attached_share=(
            sum(s.calls_attached_share for s in scores) / len(scores) if scores else 0.0
        ),
        noise_calls=len(noise),
        noise_calls_attached=len(attached_noise),
        false_incidents=false_incidents,
        median_minutes_to_detect=minutes[len(minutes) // 2] if minutes else None,
    )


def _placement(topology: Topology, fault: str, found: str) -> str:
    if found == fault:
        return "exact"
    if topology.covers(found, fault):
        return "above"
    if topology.covers(fault, found):
        return "below"
    return "wrong"
